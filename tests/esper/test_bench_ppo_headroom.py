"""bench/bench_ppo_headroom.py: variants parsed into the configs they override, and a tiny paired pass."""

import json
import statistics

import pytest


@pytest.fixture(scope="module")
def bench(load_bench):
    return load_bench("bench_ppo_headroom")


def test_variants_parse_into_slot_and_heuristic_overrides(bench):
    assert bench.parse_variant("curve=tanh+alpha_target=0.7") == ({"curve": "tanh", "alpha_target": 0.7}, {}, {})
    assert bench.parse_variant("blueprints=attention,bottleneck+max_live_seeds=2") == (
        {}, {"blueprints": ("attention", "bottleneck"), "max_live_seeds": 2}, {})
    assert bench.parse_variant("max_flops_ratio=0") == ({}, {"max_flops_ratio": 0.0}, {})
    assert bench.parse_variant("controller=none+host_width=12") == ({}, {}, {"controller": "none", "host_width": 12})
    for bad, why in (("bogus=1", "'bogus=1' is not KEY=VALUE"), ("curve", "'curve' is not KEY=VALUE"),
                     ("controller", "'controller' is not KEY=VALUE"),
                     ("max_live_seeds=two", "'two' is not a value of max_live_seeds"),
                     ("curve=wobbly", "'wobbly' is not a value of curve"),
                     ("alpha_target=0.9", "'0.9' is not a value of alpha_target"),
                     ("trigger=later", "'later' is not a value of trigger"),
                     ("controller=policy", "'policy' is not a value of controller"),
                     ("host_width=0", "'0' is not a value of host_width"),
                     ("host_width=wide", "'wide' is not a value of host_width")):
        with pytest.raises(SystemExit, match=why):
            bench.parse_variant(bad)


def test_compare_names_the_baseline_or_variants_of_the_run(bench):
    assert bench.parse_compare("heuristic:controller=none", ["controller=none"]) == ("heuristic", "controller=none")
    for bad in ("heuristic", "heuristic:tempo=slow", "a:b:c"):
        with pytest.raises(SystemExit, match="bad --compare"):
            bench.parse_compare(bad, ["controller=none"])


def test_default_variants_cover_every_other_setting_and_blueprint(bench):
    v = bench.default_variants()
    assert "curve=linear" not in v and "alpha_target=1" not in v  # the slot's own settings are the baseline
    assert {"blend=gate", "tempo=slow", "curve=tanh", "alpha_target=0.5", "blueprints=conv_heavy",
            "max_flops_ratio=0", "trigger=plateau", "slot_preference=last", "fossilize_se=0"} <= set(v)
    for text in v:
        bench.parse_variant(text)


def test_tiny_headroom_pass(bench, tmp_path, capsys):
    bench.main(["blueprints=attention", "--seeds", "2", "--epochs", "4", "--train-size", "128", "--val-size", "64",
                "--out", str(tmp_path / "r.json")])
    lines = capsys.readouterr().out.strip().splitlines()
    report = json.loads(lines[-1])
    assert report == json.loads((tmp_path / "r.json").read_text())
    assert report["seeds"] == [2001, 2002]
    assert report["proxy"] == {"epochs": 4, "train_size": 128, "val_size": 64}
    (row,) = report["results"]
    assert row["variant"] == "blueprints=attention"
    assert len(row["diffs"]) == 2 and row["minus_heuristic_pp"][0] == pytest.approx(statistics.fmean(row["diffs"]))
    # the override reached the run: the variant grew attention seeds only, the heuristic its rotation
    assert {b for run in row["blueprints"] for b in run} == {"attention"}
    assert any(b != "attention" for run in report["heuristic_blueprints"] for b in run)
    assert lines[1].lstrip().startswith("blueprints=attention:")


def test_static_hosts_grow_nothing_and_a_wider_one_costs_more(bench, capsys):
    bench.main(["controller=none", "controller=none+host_width=12", "--seeds", "2", "--epochs", "3",
                "--train-size", "128", "--val-size", "64",
                "--compare", "controller=none+host_width=12:controller=none", "--compare", "heuristic:controller=none"])
    lines = capsys.readouterr().out.strip().splitlines()
    report = json.loads(lines[-1])
    alone, wide = report["results"]
    assert alone["blueprints"] == wide["blueprints"] == [[], []]  # no controller, no seeds
    assert alone["flops_ratio"][0] < 1  # the heuristic's seeds cost FLOPs the host alone does not spend
    wider, heuristic = report["compared"]
    assert wider["a"] == "controller=none+host_width=12" and wider["b"] == "controller=none"
    # the pair is computed from the same seeds' runs: A - B = (A - heuristic) - (B - heuristic)
    assert wider["a_minus_b_pp"][0] == pytest.approx(statistics.fmean(
        a - b for a, b in zip(wide["diffs"], alone["diffs"])))
    assert wider["flops_ratio"][0] > 1.5  # a 12-wide conv host against an 8-wide one: about (12/8)^2
    assert heuristic["a_minus_b_pp"][0] == pytest.approx(-alone["minus_heuristic_pp"][0])
    assert lines[-3].startswith("controller=none+host_width=12 minus controller=none: ")
