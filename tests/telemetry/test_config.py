"""telemetry_schema.config: a run's configuration flattened for display and diffed across runs."""
import math

from telemetry_schema.config import MISSING, DiffRow, diff, flatten, value_text


def test_nested_objects_become_dotted_keys_sorted():
    config = {"training": {"lr": 0.01, "epochs": 40}, "task": "synthetic-images", "seed": 0}
    assert flatten(config) == [("seed", "0"), ("task", "synthetic-images"),
                               ("training.epochs", "40"), ("training.lr", "0.01")]


def test_values_are_plain_text_whatever_their_type():
    assert value_text(None) == "null"
    assert value_text(True) == "true"
    assert value_text([1, "a"]) == '[1, "a"]'
    assert value_text(math.inf) == "inf"
    assert value_text("[bold]x[/]") == "[bold]x[/]"


def test_an_empty_nested_object_stays_a_key():
    assert flatten({"gates": {}, "a": 1}) == [("a", "1"), ("gates", "{}")]


def test_diff_lists_only_differing_keys_and_marks_missing_ones():
    a = {"training": {"lr": 0.01, "epochs": 40}, "seed": 0}
    b = {"training": {"lr": 0.02, "epochs": 40}, "seed": 0, "tag": "wide"}
    assert diff([a, b]) == [DiffRow("tag", (MISSING, "wide")), DiffRow("training.lr", ("0.01", "0.02"))]
    assert [r.key for r in diff([a, b], all_keys=True)] == ["seed", "tag", "training.epochs", "training.lr"]


def test_diff_of_identical_or_no_runs_is_empty():
    assert diff([{"a": 1}, {"a": 1}]) == []
    assert diff([]) == []


def test_run_config_prefers_the_started_event_then_run_json():
    from telemetry_schema.config import run_config

    assert run_config({"a": 1}, {"config": {"b": 2}}) == {"a": 1}
    assert run_config({}, {"config": {"b": 2}}) == {"b": 2}
    assert run_config(None, {"config": "not an object"}) == {} and run_config(None, None) == {}
