"""Esper's event log vs TensorBoard on the same stream of scalar events, measured in one run.

    python bench/bench_telemetry.py [--events 1000000] [--tb-events 100000]

Measures Esper's emit path (``EventWriter.scalar``: ns/event, flush and close included),
bytes per event on disk, and replay + fold throughput (``read_log`` + ``fold_table``); then
TensorBoard's ``SummaryWriter.add_scalar`` and ``EventAccumulator`` on the same values.
Prints a table and, as its last line, one JSON object with the figures and ratios.
Needs the bench extra (``pip install -e ".[bench]"``) for TensorBoard.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa


def values(n: int) -> list[float]:
    return [2.0 * math.exp(-i / n) + 0.01 * math.sin(i) for i in range(n)]


def bench_esper(out: Path, vals: list[float]) -> dict:
    from telemetry_schema.fold import fold_table
    from telemetry_schema.reader import read_log
    from telemetry_schema.writer import EventWriter, WriterConfig

    pa.array([0.0]), pa.array(["warm"])  # pyarrow's one-off conversion set-up is not the emit path
    path = out / "esper.arrows"
    w = EventWriter(path, config=WriterConfig(heartbeat_s=0))
    scalar = w.scalar
    t0 = time.perf_counter()
    for i, v in enumerate(vals):
        scalar("train/loss", v, step=i)
    w.close()
    write_s = time.perf_counter() - t0
    timings = []
    for _ in range(2):  # the first pass pays one-off costs (fresh memory pages, Arrow's thread pool)
        t0 = time.perf_counter()
        table = read_log(path).table
        state = fold_table(table)
        timings.append(time.perf_counter() - t0)
    read_s = timings[1]
    series = state.scalars["train/loss"]
    assert len(series) == len(vals) and series["value"][-1] == vals[-1]
    n = len(vals)
    return {"ns": write_s / n * 1e9, "bytes": path.stat().st_size / n, "read_eps": n / read_s,
            "write_s": write_s, "read_s": read_s, "first_read_s": timings[0]}


def bench_tensorboard(out: Path, vals: list[float]) -> dict | None:
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        sys.stderr.write(f"TensorBoard not available ({exc}); install the bench extra\n")
        return None
    logdir = out / "tb"
    t0 = time.perf_counter()
    w = SummaryWriter(str(logdir), max_queue=1000, flush_secs=120)
    for i, v in enumerate(vals):
        w.add_scalar("train/loss", v, i)
    w.close()
    write_s = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in logdir.rglob("*") if p.is_file())
    t0 = time.perf_counter()
    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    got = acc.Scalars("train/loss")
    read_s = time.perf_counter() - t0
    assert len(got) == len(vals)
    n = len(vals)
    return {"ns": write_s / n * 1e9, "bytes": size / n, "read_eps": n / read_s,
            "write_s": write_s, "read_s": read_s}


def bench_quiet(out: Path, seconds: float, rate: float) -> dict:
    """A quiet run: ``rate`` scalar events a second for ``seconds``, into Esper's writer with its
    default flush policy and, beside it on the same schedule, with a flush every
    ``flush_interval`` (the policy before quiet logs waited), and into TensorBoard."""
    from telemetry_schema.writer import EventWriter, WriterConfig

    writers = {"esper": EventWriter(out / "quiet.arrows", config=WriterConfig(heartbeat_s=0)),
               "esper_every_interval": EventWriter(out / "quiet-busy.arrows",
                                                   config=WriterConfig(heartbeat_s=0, small_flush=0))}
    try:
        from torch.utils.tensorboard import SummaryWriter
        tb = SummaryWriter(str(out / "tb-quiet"))
    except ImportError:
        tb = None
    n = int(seconds * rate)
    t0 = time.perf_counter()
    for i in range(n):
        for w in writers.values():
            w.scalar("train/loss", 1.0 / (i + 1), step=i)
        if tb is not None:
            tb.add_scalar("train/loss", 1.0 / (i + 1), i)
        time.sleep(max(0.0, t0 + (i + 1) / rate - time.perf_counter()))
    result = {}
    for name, w in writers.items():
        w.close()
        result[name] = (out / ("quiet.arrows" if name == "esper" else "quiet-busy.arrows")).stat().st_size / n
    if tb is not None:
        tb.close()
        result["tensorboard"] = sum(p.stat().st_size for p in (out / "tb-quiet").rglob("*") if p.is_file()) / n
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=1_000_000, help="scalar events for Esper")
    p.add_argument("--tb-events", type=int, default=100_000, help="scalar events for TensorBoard (slower)")
    p.add_argument("--quiet-seconds", type=float, default=10.0,
                   help="length of the quiet-run measurement (0 skips it)")
    p.add_argument("--quiet-rate", type=float, default=20.0, help="events per second of the quiet run")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        esper = bench_esper(out, values(a.events))
        tb = bench_tensorboard(out, values(a.tb_events))
        quiet = bench_quiet(out, a.quiet_seconds, a.quiet_rate) if a.quiet_seconds > 0 else {}
    rows = [("esper", a.events, esper)] + ([("tensorboard", a.tb_events, tb)] if tb else [])
    sys.stdout.write(f"{'writer':<12} {'events':>9} {'emit ns/ev':>11} {'bytes/ev':>9} {'replay+fold ev/s':>17}\n")
    for name, n, r in rows:
        sys.stdout.write(f"{name:<12} {n:>9} {r['ns']:>11.0f} {r['bytes']:>9.1f} {r['read_eps']:>17,.0f}\n")
    if quiet:
        sys.stdout.write(f"quiet run, {a.quiet_rate:g} events/s for {a.quiet_seconds:g} s, bytes/event: "
                         + ", ".join(f"{k} {v:,.0f}" for k, v in quiet.items()) + "\n")
    result = {
        "events": a.events, "cpus": os.cpu_count(),
        "esper_emit_ns": round(esper["ns"], 1),
        "esper_bytes_per_event": round(esper["bytes"], 2),
        "esper_fold_events_per_s": round(esper["read_eps"]),
        "esper_replay_fold_1m_s": round(esper["read_s"] * 1_000_000 / a.events, 3),
        "esper_replay_fold_1m_first_s": round(esper["first_read_s"] * 1_000_000 / a.events, 3),
        "tb_emit_ns": round(tb["ns"], 1) if tb else None,
        "tb_bytes_per_event": round(tb["bytes"], 2) if tb else None,
        "tb_read_events_per_s": round(tb["read_eps"]) if tb else None,
        "tb_write_ratio": round(tb["ns"] / esper["ns"], 1) if tb else None,
        "tb_read_ratio": round(esper["read_eps"] / tb["read_eps"], 1) if tb else None,
        "quiet_bytes_per_event": {k: round(v, 1) for k, v in quiet.items()},
    }
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
