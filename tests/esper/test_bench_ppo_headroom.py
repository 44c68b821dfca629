"""bench/bench_ppo_headroom.py: variants parsed into the configs they override, and a tiny paired pass."""

import json
import statistics

import pytest


@pytest.fixture(scope="module")
def bench(load_bench):
    return load_bench("bench_ppo_headroom")


def test_variants_parse_into_slot_and_heuristic_overrides(bench):
    assert bench.parse_variant("curve=tanh+alpha_target=0.7") == ({"curve": "tanh", "alpha_target": 0.7}, {})
    assert bench.parse_variant("blueprints=attention,bottleneck+max_live_seeds=2") == (
        {}, {"blueprints": ("attention", "bottleneck"), "max_live_seeds": 2})
    assert bench.parse_variant("max_flops_ratio=0") == ({}, {"max_flops_ratio": 0.0})
    for bad, why in (("bogus=1", "'bogus=1' is not KEY=VALUE"), ("curve", "'curve' is not KEY=VALUE"),
                     ("max_live_seeds=two", "'two' is not a value of max_live_seeds"),
                     ("curve=wobbly", "'wobbly' is not a value of curve"),
                     ("alpha_target=0.9", "'0.9' is not a value of alpha_target")):
        with pytest.raises(SystemExit, match=why):
            bench.parse_variant(bad)


def test_default_variants_cover_every_other_setting_and_blueprint(bench):
    v = bench.default_variants()
    assert "curve=linear" not in v and "alpha_target=1" not in v  # the slot's own settings are the baseline
    assert {"blend=gate", "tempo=slow", "curve=tanh", "alpha_target=0.5", "blueprints=conv_heavy",
            "max_flops_ratio=0"} <= set(v)
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
