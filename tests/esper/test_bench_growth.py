"""bench/bench_growth.py: its statistics, and a tiny end-to-end pass that prints a JSON last line."""

import json
import math

import pytest


@pytest.fixture(scope="module")
def bench(load_bench):
    return load_bench("bench_growth")


def test_paired_differences(bench):
    p = bench.paired([80.0, 82.0, 81.0], [78.0, 79.0, 80.0])
    d = [2.0, 3.0, 1.0]
    se = math.sqrt(sum((x - 2.0) ** 2 for x in d) / 2) / math.sqrt(3)
    assert p["mean"] == pytest.approx(2.0) and p["se"] == pytest.approx(se)
    assert p["t"] == pytest.approx(2.0 / se) and p["diffs"] == d
    assert bench.ratios([2.0, 6.0], [1.0, 2.0]) == {"mean": 2.5, "min": 2.0, "max": 3.0, "values": [2.0, 3.0]}


def test_width_for_params_picks_the_nearest_host(bench):
    cache = {}
    target = bench.host_params_at("synthetic-images", 11, cache) + 10
    assert bench.width_for_params("synthetic-images", target, 8, cache) == 11


def test_tiny_bench_end_to_end(bench, tmp_path, capsys):
    eager = "min_epoch=1,trigger=early,max_live_seeds=2"
    code = bench.main(["--seeds", "2", "--label", "t", "--runs-dir", str(tmp_path / "runs"), "--no-cache",
                       "--results-dir", str(tmp_path / "results"),
                       "--common", "--epochs 3 --train-size 128 --val-size 64",
                       "--growth", f"--heuristic {eager}"])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    report = json.loads(lines[-1])
    assert report == json.loads((tmp_path / "results" / "growth-t.json").read_text())
    runs = report["runs"]
    assert set(runs) == {"host", "growth", "static", "wide", "grown"}
    assert all(len(rows) == 2 for rows in runs.values())
    growth = runs["growth"][0]
    assert growth["germinated"] == 2 and growth["params"] > runs["host"][0]["params"]
    assert runs["wide"][0]["host_params"] > runs["host"][0]["host_params"]
    s = report["summary"]["growth-host"]
    assert s["final_acc_pp"]["n"] == 2 and s["flops_total_ratio"]["mean"] > 1.0
    assert "growth-wide" in report["summary"] and "final acc pp" in "\n".join(lines[:-1])
