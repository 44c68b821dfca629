"""bench/bench_ppo_proxy.py: candidates parsed, and a tiny paired pass with a JSON last line."""

import json
import statistics

import pytest


@pytest.fixture(scope="module")
def bench(load_bench):
    return load_bench("bench_ppo_proxy")


def test_candidates(bench):
    assert bench.parse("24x2048") == (24, 2048, None)
    assert bench.parse("17x4096/4") == (17, 4096, 4)
    with pytest.raises(SystemExit, match="bad candidate '24-2048'"):
        bench.parse("24-2048")


def test_tiny_proxy_pass(bench, tmp_path, capsys):
    bench.main(["4x128", "--seeds", "2", "--val-size", "64", "--out", str(tmp_path / "r.json")])
    lines = capsys.readouterr().out.strip().splitlines()
    report = json.loads(lines[-1])
    assert report == json.loads((tmp_path / "r.json").read_text())
    assert report["seeds"] == [2001, 2002]
    (row,) = report["results"]
    assert (row["epochs"], row["train_size"], row["host_width"]) == (4, 128, None)
    assert len(row["diffs"]) == 2
    assert row["heuristic_minus_host_pp"][0] == pytest.approx(statistics.fmean(row["diffs"]))
    assert row["flops_ratio"][0] > 1.0  # the heuristic germinated: its runs cost more than the host's
    assert lines[0].lstrip().startswith("4x128: heuristic - host")
