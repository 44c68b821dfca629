"""Fuzz the log readers: mutated copies of real logs must never crash a reader.

    python bench/fuzz_log.py [--logs 10000] [--workers 2] [--seed 0]

Each mutated log is a real run directory (format 2; every tenth a format 1 log) with one of
its streams changed: bits flipped, bytes overwritten, a run of garbage written over or
inserted, the tail cut off, two messages swapped, or another Arrow file put in its place. The
log is then read whole (``read_run``), followed in growing pieces (``RunFollower``), folded,
put in an ``EventLog`` and searched. Accepted outcomes: events read (possibly fewer),
corruption or a torn tail reported, or a one-line ``LogError``. Anything else is a failure: an
uncaught exception (counted with its type), or a crash of the worker process (a segfault: the
worker is restarted past the mutation that killed it). Each chunk runs in a child process, so a crash kills
only that chunk's process. Prints counts by outcome and, as its last line, one JSON object.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import shutil
import sys
import tempfile
import traceback
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

MUTATIONS = ("flip_bits", "overwrite_bytes", "garbage_over", "garbage_insert", "truncate", "swap_messages",
             "foreign_arrow", "empty")


def base_runs(root: Path) -> list[Path]:
    """The logs mutated: a synthetic run (format 2) and the format 1 fixtures."""
    from telemetry_schema.synth import SynthConfig, generate

    runs = [generate(root / "v2", SynthConfig(events=600, seed=11, run_id="synth"))]
    fixtures = Path(__file__).resolve().parents[1] / "tests" / "telemetry" / "data" / "v1"
    for name in ("v1-synth", "v1-ranks"):
        if (fixtures / name).is_dir():
            runs.append(Path(shutil.copytree(fixtures / name, root / "v1" / name)))
    return runs


def mutate(data: bytes, how: str, rng: random.Random) -> bytes:
    buf = bytearray(data)
    n = len(buf)
    if how == "flip_bits":
        for _ in range(rng.choice((1, 1, 2, 8, 64))):
            buf[rng.randrange(n)] ^= 1 << rng.randrange(8)
    elif how == "overwrite_bytes":
        for _ in range(rng.choice((1, 4, 32))):
            buf[rng.randrange(n)] = rng.randrange(256)
    elif how == "garbage_over":
        at, k = rng.randrange(n), rng.choice((4, 16, 256))
        buf[at:at + k] = rng.randbytes(k)
    elif how == "garbage_insert":
        at = rng.randrange(n + 1)
        buf[at:at] = rng.randbytes(rng.choice((1, 8, 100)))
    elif how == "truncate":
        del buf[rng.randrange(n):]
    elif how == "swap_messages":
        marks = [i for i in range(n - 4) if buf[i:i + 4] == b"\xff\xff\xff\xff"]
        if len(marks) >= 3:
            a, b = sorted(rng.sample(marks[1:], 2))
            buf = buf[:a] + buf[b:] + buf[a:b]
    elif how == "foreign_arrow":
        import pyarrow as pa

        table = pa.table({"x": [rng.random() for _ in range(5)], "s": ["[/]", "[link=x]y", None, "é", ""]})
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as w:
            w.write_table(table)
        buf = bytearray(sink.getvalue().to_pybytes())
    elif how == "empty":
        buf = bytearray()
    return bytes(buf)


def exercise(run: Path) -> str:
    """Read, follow, fold, order and search a run; the outcome's name (raises on a failure)."""
    from telemetry_schema.eventlog import EventLog
    from telemetry_schema.fold import fold_tables
    from telemetry_schema.reader import LogError, RunFollower
    from telemetry_schema.rundir import read_run
    from telemetry_schema.search import search

    try:
        tables = read_run(run)
    except LogError as exc:
        assert "\n" not in str(exc)
        return "log_error"
    fold_tables(tables, rank=None)
    log = EventLog(tables)
    search(log, "G2 /r0c[0-9]/")
    if (run / "events").is_dir():
        follower = RunFollower(run)
        try:
            follower.poll()
            follower.poll(final=True)
        except LogError:
            return "log_error"
    if tables.corrupt:
        return "corrupt"
    return "torn" if tables.torn_bytes else "read"


def worker(args: tuple[str, int, int, int]) -> dict:
    root, seed, start, count = args
    bases = sorted(p for p in Path(root, "base").glob("*/*") if p.is_dir())
    current = [b for b in bases if b.parent.name == "v2"]
    counts: Counter = Counter()
    errors: Counter = Counter()
    example = None
    for i in range(start, start + count):
        rng = random.Random(f"{seed}:{i}")
        base = rng.choice(current) if i % 10 else rng.choice(bases)
        work = Path(root, f"w{os.getpid()}")
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(base, work)
        files = sorted(p for p in work.rglob("*.arrows"))
        victim = rng.choice(files)
        victim.write_bytes(mutate(victim.read_bytes(), rng.choice(MUTATIONS), rng))
        progress = Path(root, f"progress{start}")
        progress.write_text(json.dumps({"at": i, "counts": counts, "errors": errors, "example": example}))
        try:
            counts[exercise(work)] += 1
        except Exception as exc:  # an uncaught exception: a failure of the reader
            errors[type(exc).__name__] += 1
            if example is None:
                example = f"mutation {i}: {''.join(traceback.format_exception_only(exc)).strip()[:300]}"
    shutil.rmtree(Path(root, f"w{os.getpid()}"), ignore_errors=True)
    return {"counts": dict(counts), "errors": dict(errors), "example": example}


def run_chunk(root: str, seed: int, start: int, count: int) -> dict:
    """One chunk in a child process; a crash restarts the chunk past the mutation that killed it
    (what the dead worker had counted before it is kept: it writes its progress as it goes)."""
    out = {"counts": Counter(), "errors": Counter(), "crashes": [], "example": None}
    while count > 0:
        with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
            try:
                got = pool.submit(worker, (root, seed, start, count)).result()
            except BrokenProcessPool:  # the worker died (a signal)
                got = None
        if got is None:
            got = json.loads(Path(root, f"progress{start}").read_text())
            out["crashes"].append(got["at"])
        out["counts"].update(got["counts"])
        out["errors"].update(got["errors"])
        out["example"] = out["example"] or got["example"]
        if "at" not in got:
            break
        count -= got["at"] - start + 1
        start = got["at"] + 1
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--logs", type=int, default=10_000, help="mutated logs to read")
    p.add_argument("--workers", type=int, default=2, help="processes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chunk", type=int, default=500, help="mutated logs per worker task")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        base_runs(Path(tmp, "base"))
        chunks = [(tmp, a.seed, s, min(a.chunk, a.logs - s)) for s in range(0, a.logs, a.chunk)]
        from multiprocessing.pool import ThreadPool

        with ThreadPool(a.workers) as pool:  # each thread runs its chunks in a child process
            results = pool.starmap(run_chunk, chunks)
    counts, errors, crashes, example = Counter(), Counter(), [], None
    for r in results:
        counts.update(r["counts"])
        errors.update(r["errors"])
        crashes += r["crashes"]
        example = example or r["example"]
    total = sum(counts.values()) + sum(errors.values()) + len(crashes)
    sys.stdout.write(f"mutated logs: {total}\n")
    for name, n in counts.most_common():
        sys.stdout.write(f"  {name:<10} {n}\n")
    sys.stdout.write(f"uncaught exceptions: {sum(errors.values())} {dict(errors)}\n")
    sys.stdout.write(f"crashes: {len(crashes)} {crashes[:20]}\n")
    if example:
        sys.stdout.write(f"first uncaught: {example}\n")
    sys.stdout.write(json.dumps({"logs": total, "outcomes": dict(counts), "uncaught": dict(errors),
                                 "crashes": len(crashes), "crash_mutations": crashes[:100], "seed": a.seed}) + "\n")
    return 1 if errors or crashes else 0


if __name__ == "__main__":
    raise SystemExit(main())
