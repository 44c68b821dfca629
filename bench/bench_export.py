"""``esper export`` against reading the same log, measured in one run.

    python bench/bench_export.py [--events 200000] [--seed 0] [--tensorboard]

Writes a synthetic run of ``--events`` events (``telemetry_schema.synth``), then times
``read_run`` of it (the peer: every export reads the log first) and each table export (CSV,
Parquet, JSON Lines: seconds, events per second, bytes written, time as a multiple of the
read). ``--tensorboard`` adds the TensorBoard export (torch's import timed apart). Prints a
table and, as its last line, one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from telemetry_schema.export import export_run  # noqa: E402
from telemetry_schema.rundir import read_run  # noqa: E402
from telemetry_schema.synth import SynthConfig, generate  # noqa: E402


def size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tensorboard", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        run = generate(Path(tmp) / "runs", SynthConfig(events=args.events, seed=args.seed))
        read_run(run)  # warm the page cache and imports: the peer and the exports read alike
        read_s, tables = timed(lambda: read_run(run))
        events = tables.num_rows
        figures = {"events": events, "log_bytes": size(run / "events"), "read_s": round(read_s, 3)}
        rows = [("read_run (peer)", read_s, figures["log_bytes"])]
        for fmt in ("csv", "parquet", "jsonl"):
            seconds, done = timed(lambda fmt=fmt: export_run(run, fmt, Path(tmp) / fmt))
            assert sum(done.rows.values()) == events
            figures[fmt] = {"s": round(seconds, 3), "bytes": size(Path(tmp) / fmt),
                            "events_per_s": round(events / seconds), "x_read": round(seconds / read_s, 2)}
            rows.append((f"export {fmt}", seconds, figures[fmt]["bytes"]))
        if args.tensorboard:
            import_s, _ = timed(lambda: __import__("torch.utils.tensorboard"))
            from esper.tensorboard_export import export_tensorboard
            seconds, done = timed(lambda: export_tensorboard(run, Path(tmp) / "tb"))
            figures["tensorboard"] = {"s": round(seconds, 3), "torch_import_s": round(import_s, 3),
                                      "points": done.points, "points_per_s": round(done.points / seconds),
                                      "bytes": size(Path(tmp) / "tb"), "x_read": round(seconds / read_s, 2)}
            rows.append((f"tensorboard ({done.points:,} points)", seconds, figures["tensorboard"]["bytes"]))
    print(f"{events:,} events, log {figures['log_bytes'] / 1e6:.1f} MB")
    print(f"{'':<34}{'seconds':>9}{'x read':>8}{'MB out':>9}")
    for name, seconds, nbytes in rows:
        print(f"{name:<34}{seconds:>9.2f}{seconds / read_s:>8.1f}{nbytes / 1e6:>9.1f}")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
