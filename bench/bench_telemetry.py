"""Esper's event log (format 2) against format 1 and TensorBoard, measured in one run.

    python bench/bench_telemetry.py [--events 1000000] [--tb-events 100000] [--passes 5]

For each writer: emit cost per scalar event (``EventWriter.scalar``, flush and close
included), bytes per event of a burst, of a quiet run (20 events a second for 10 s, the
default flush policy) and of a 10-event log (run start, 8 scalars, run end; for format 2 also
split into event streams and summary file, and the floor: the same rows as bare Arrow IPC
streams, one per kind, with no metadata and no checksums); then replay +
fold of the burst (read every stream and fold it, median of ``--passes``; the first pass
apart). Format 1 is the writer and reader of commit ``--v1-rev``, taken from this repository's
history into a temporary directory and run in a subprocess of its own. Prints a table and, as
its last line, one JSON object with the figures, the targets and the memory pool.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

V1_REV = "a81920d"
"""The last commit whose telemetry_schema wrote format 1."""
TARGETS = {"quiet_bytes_per_event": 100, "ten_event_log_bytes": 4096, "burst_bytes_per_event": 25,
           "emit_ns": 500, "replay_fold_1m_s": 0.5}

COMMON = """
import json, math, statistics, sys, time
from pathlib import Path
import pyarrow as pa

def values(n):
    return [2.0 * math.exp(-i / n) + 0.01 * math.sin(i) for i in range(n)]

def size(path):
    path = Path(path)
    return sum(p.stat().st_size for p in path.rglob('*') if p.is_file()) if path.is_dir() else path.stat().st_size
"""

V2 = """
from telemetry_schema import events as ev
from telemetry_schema.arrays import choose_memory_pool
from telemetry_schema.fold import fold_tables
from telemetry_schema.rundir import create_run, read_run
from telemetry_schema.writer import EventWriter, WriterConfig

def open_writer(path, **cfg):
    return EventWriter(Path(path) / "events", config=WriterConfig(heartbeat_s=0, **cfg))

def read_and_fold(path):
    return fold_tables(read_run(path))

def log_of(path):
    return Path(path)

def bare_floor(run_dir):
    # the same streams' rows as bare Arrow IPC streams: no schema metadata, no checksum tags,
    # one batch each: the floor of any one-flat-stream-per-kind layout of these columns
    import io
    import pyarrow.ipc as ipc
    total = 0
    for f in sorted((Path(run_dir) / "events").glob("*.arrows")):
        table = ipc.open_stream(pa.memory_map(str(f))).read_all()
        table = table.replace_schema_metadata(None).combine_chunks()
        sink = io.BytesIO()
        with ipc.new_stream(sink, table.schema) as w:
            w.write_table(table)
        total += len(sink.getvalue())
    return total
"""

V1 = """
from telemetry_schema import events as ev
from telemetry_schema.arrays import choose_memory_pool
from telemetry_schema.fold import fold_table
from telemetry_schema.reader import read_log
from telemetry_schema.rundir import create_run
from telemetry_schema.writer import EventWriter, WriterConfig

def open_writer(path, **cfg):
    return EventWriter(Path(path + ".arrows"), config=WriterConfig(heartbeat_s=0, **cfg))

def read_and_fold(path):
    return fold_table(read_log(Path(path + ".arrows")).table)

def log_of(path):
    return Path(path + ".arrows")

def bare_floor(run_dir):
    return None
"""

MEASURE = """
out, events, passes, quiet_s, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
pool = choose_memory_pool()
pa.array([0.0]), pa.array(["warm"])  # pyarrow's one-off conversion set-up is not the emit path
vals = values(events)
burst = out + "/burst"
w = open_writer(burst)
scalar = w.scalar
t0 = time.perf_counter()
for i, v in enumerate(vals):
    scalar("train/loss", v, step=i)
w.close()
emit_s = time.perf_counter() - t0
timings = []
for _ in range(passes + 1):
    t0 = time.perf_counter()
    state = read_and_fold(burst)
    timings.append(time.perf_counter() - t0)
    assert len(state.scalars["train/loss"]) == events and state.scalars["train/loss"]["value"][-1] == vals[-1]
quiet = out + "/quiet"
w = open_writer(quiet)
n = int(quiet_s * rate)
t0 = time.perf_counter()
for i in range(n):
    w.scalar("train/loss", 1.0 / (i + 1), step=i)
    time.sleep(max(0.0, t0 + (i + 1) / rate - time.perf_counter()))
w.close()
small = Path(out) / "small"
with create_run(small, ev.RunStarted(run_id="r", task="synthetic-images", topology="cnn", host_params=6418,
                                     slot_ids=["block1", "block2"])) as run:
    for i in range(8):
        run.writer.scalar("train/loss", 1.0 / (i + 1), step=i)
print(json.dumps({"emit_ns": emit_s / events * 1e9, "burst_bytes_per_event": size(log_of(burst)) / events,
                  "replay_fold_first_s": timings[0], "replay_fold_s": statistics.median(timings[1:]),
                  "replay_fold_1m_s": statistics.median(timings[1:]) * 1e6 / events,
                  "quiet_bytes_per_event": size(log_of(quiet)) / n,
                  "ten_event_log_bytes": size(small / "r") - size(small / "r" / "run.json"),
                  "ten_event_summary_bytes": size(small / "r" / "summary.json") if (small / "r" / "summary.json").exists() else 0,
                  "ten_event_bare_floor_bytes": bare_floor(small / "r"),
                  "memory_pool": pool}))
"""


def measure(package_root: Path, flavour: str, out: Path, a: argparse.Namespace) -> dict:
    code = textwrap.dedent(COMMON) + textwrap.dedent(flavour) + textwrap.dedent(MEASURE)
    env = dict(os.environ, PYTHONPATH=str(package_root))
    res = subprocess.run([sys.executable, "-c", code, str(out), str(a.events), str(a.passes),
                          str(a.quiet_seconds), str(a.quiet_rate)], env=env, capture_output=True, text=True,
                         cwd=out)
    if res.returncode != 0:
        raise SystemExit(f"measurement failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def format1_package(rev: str, into: Path) -> Path | None:
    """telemetry_schema as of ``rev``, extracted from git into ``into`` (None without git)."""
    repo = Path(__file__).resolve().parents[1]
    try:
        archive = subprocess.run(["git", "-C", str(repo), "archive", rev, "telemetry_schema"],
                                 capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        sys.stderr.write(f"format 1 skipped: cannot take telemetry_schema at {rev} from git ({exc})\n")
        return None
    into.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def bench_tensorboard(out: Path, events: int, quiet_s: float, rate: float) -> dict | None:
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        sys.stderr.write(f"TensorBoard not available ({exc}); install the bench extra\n")
        return None
    import math

    vals = [2.0 * math.exp(-i / events) + 0.01 * math.sin(i) for i in range(events)]
    size = lambda d: sum(p.stat().st_size for p in d.rglob("*") if p.is_file())  # noqa: E731
    t0 = time.perf_counter()
    w = SummaryWriter(str(out / "tb"), max_queue=1000, flush_secs=120)
    for i, v in enumerate(vals):
        w.add_scalar("train/loss", v, i)
    w.close()
    emit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    acc = EventAccumulator(str(out / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    assert len(acc.Scalars("train/loss")) == events
    read_s = time.perf_counter() - t0
    q = SummaryWriter(str(out / "tb-quiet"))
    n = int(quiet_s * rate)
    t1 = time.perf_counter()
    for i in range(n):
        q.add_scalar("train/loss", 1.0 / (i + 1), i)
        time.sleep(max(0.0, t1 + (i + 1) / rate - time.perf_counter()))
    q.close()
    return {"emit_ns": emit_s / events * 1e9, "burst_bytes_per_event": size(out / "tb") / events,
            "replay_1m_s": read_s * 1e6 / events, "quiet_bytes_per_event": size(out / "tb-quiet") / n}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=1_000_000, help="scalar events of the burst")
    p.add_argument("--tb-events", type=int, default=100_000, help="scalar events for TensorBoard (slower)")
    p.add_argument("--passes", type=int, default=5, help="replay + fold passes after the first")
    p.add_argument("--quiet-seconds", type=float, default=10.0, help="length of the quiet run")
    p.add_argument("--quiet-rate", type=float, default=20.0, help="events per second of the quiet run")
    p.add_argument("--v1-rev", default=V1_REV, help="commit of the format 1 writer and reader")
    a = p.parse_args(argv)
    here = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "v2").mkdir()
        (tmp / "v1").mkdir()
        results = {"format 2": measure(here, V2, tmp / "v2", a)}
        old = format1_package(a.v1_rev, tmp / "v1-src")
        if old is not None:
            results["format 1"] = measure(old, V1, tmp / "v1", a)
        tb = bench_tensorboard(tmp, a.tb_events, a.quiet_seconds, a.quiet_rate)
    out = sys.stdout
    out.write(f"{'writer':<10} {'emit ns/ev':>10} {'burst B/ev':>10} {'quiet B/ev':>10} {'10-ev log B':>11} "
              f"{'replay+fold 1M s':>17}\n")
    for name, r in results.items():
        out.write(f"{name:<10} {r['emit_ns']:>10.0f} {r['burst_bytes_per_event']:>10.1f} "
                  f"{r['quiet_bytes_per_event']:>10.1f} {r['ten_event_log_bytes']:>11.0f} {r['replay_fold_1m_s']:>17.3f}\n")
    floor = results["format 2"].get("ten_event_bare_floor_bytes")
    if floor:
        r = results["format 2"]
        out.write(f"format 2's 10-event log: {r['ten_event_log_bytes']:.0f} B = "
                  f"{r['ten_event_log_bytes'] - r['ten_event_summary_bytes']:.0f} B of event streams + "
                  f"{r['ten_event_summary_bytes']:.0f} B of summary.json; the same rows as bare Arrow IPC streams, "
                  f"one per kind (no metadata, no checksums): {floor:.0f} B\n")
    if tb:
        out.write(f"{'tensorbd':<10} {tb['emit_ns']:>10.0f} {tb['burst_bytes_per_event']:>10.1f} "
                  f"{tb['quiet_bytes_per_event']:>10.1f} {'':>11} {tb['replay_1m_s']:>17.3f}\n")
    v2 = results["format 2"]
    out.write("targets (format 2): " + ", ".join(
        f"{k} {v2[k]:.3g} {'<=' if v2[k] <= t else '>'} {t} {'ok' if v2[k] <= t else 'MISSED'}"
        for k, t in TARGETS.items()) + f"; memory pool {v2['memory_pool']}\n")
    summary = {"events": a.events, "passes": a.passes, "cpus": os.cpu_count(), "results": results,
               "tensorboard": tb, "targets": TARGETS,
               "vs_format1": {k: round(results["format 1"][k] / v2[k], 2) for k in TARGETS} if "format 1" in results else None,
               "vs_tensorboard_emit": round(tb["emit_ns"] / v2["emit_ns"], 1) if tb else None}
    out.write(json.dumps(summary) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
