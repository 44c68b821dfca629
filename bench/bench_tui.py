"""Benchmark esper-tui on big synthetic logs: time to first full screen, per-refresh cost, memory.

    python bench/bench_tui.py                 # a 1M-event log
    python bench/bench_tui.py --ten-million   # also a 10M-event log (slow to generate: minutes)

Prints figures (no pass/fail); the last line is one JSON object with every figure.
Logs are generated in a separate process (cached under --cache) so the peak memory reported
is the viewer's own. The first screen is timed as ``esper-tui RUN`` opens it, from the
process's start, in a fresh process each time, alternating with a 2k-event log (the peer:
Textual's start-up and paint, which any log costs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import asynccontextmanager
from pathlib import Path

SIZE = (160, 48)
PEER_EVENTS = 2_000
"""The peer: the same synthetic run, short; its first screen is the viewer's fixed cost."""


def ensure_log(cache: Path, events: int) -> Path:
    """A synthetic run of about ``events`` events (log format 2), generated once into ``cache``."""
    from telemetry_schema.reader import stream_files

    run = cache / f"bench-v2-{events}"
    if not stream_files(run) or not (run / "run.json").exists():
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "telemetry_schema.synth", "--out", str(cache), "--events",
                        str(events), "--seed", "7", "--run-id", run.name], check=True, stdout=subprocess.DEVNULL)
        print(f"generated {events:,} events in {time.perf_counter() - t0:.1f} s -> {run}", file=sys.stderr)
    return run


@asynccontextmanager
async def open_run(run: Path, t0: float):
    """What ``esper-tui RUN`` does (``tui.cli.main``), timed from ``t0``, the process's
    start: with the garbage collector paused until the first paint, the read starts in a
    thread, Textual is imported, and the app starts once the read is done (or
    ``HEAD_START_S`` later). Gives (app, pilot, figures) once the first full screen is drawn,
    every plot on it included."""
    from tui.cli import StartupGC, make_app

    startup = StartupGC()
    from tui.source import resolve

    app = make_app(resolve(str(run)), on_first_screen=startup.resume)
    from tui.widgets.plot import AsyncPlot

    out = {"app_made_s": time.perf_counter() - t0}
    async with app.run_test(size=SIZE) as pilot:
        while not app.session.loaded:
            await asyncio.sleep(0.005)
        out["loaded_s"] = time.perf_counter() - t0
        await pilot.pause()
        while not all(p.region.area == 0 or (not p.pending and p._drawn is not None)
                      for p in app.screen.query(AsyncPlot)):
            await asyncio.sleep(0.005)
        await pilot.pause()
        out["first_full_screen_s"] = time.perf_counter() - t0
        out["events"] = app.session.length
        yield app, pilot, out


async def first_screen(run: Path, t0: float) -> dict:
    async with open_run(run, t0) as (_, _, out):
        return out


async def measure(run: Path, refreshes: int, t0: float) -> dict:
    async with open_run(run, t0) as (app, pilot, out):
        await _measure_open(app, pilot, out, refreshes)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


async def _measure_open(app, pilot, out: dict, refreshes: int) -> None:
    from tui.app import TABS
    from tui.widgets.eventpanel import EventLogPanel

    s = app.session
    chunk = s.log.slice(s.length // 2, s.length // 2 + 400)  # ~ what a 0.2 s poll of a fast run brings
    for tab in TABS:
        await pilot.press(str(TABS.index(tab) + 1))
        await pilot.pause()
        sync, cycle = [], []
        for _ in range(refreshes):
            t = time.perf_counter()
            s.ingest(chunk, 0, False, time.time())
            app.refresh_panels(force=True)
            sync.append(time.perf_counter() - t)
            await pilot.pause()
            cycle.append(time.perf_counter() - t)
        out[f"refresh_{tab[4:]}_ms"] = {"median": 1e3 * statistics.median(sync), "max": 1e3 * max(sync),
                                         "with_paint_median": 1e3 * statistics.median(cycle)}
    await pilot.press("6")
    await pilot.pause()
    panel = app.query_one(EventLogPanel)
    for key, sync_rows in (("event_search_ui_thread", 10 ** 12), ("event_search", panel.sync_rows)):
        panel.sync_rows = sync_rows  # first as before: filtered on the UI thread
        await pilot.press("escape", "slash", *"low")
        stalls = [0.0]
        probing = True

        async def probe() -> None:  # the longest the event loop went without running
            last = time.perf_counter()
            while probing:
                await asyncio.sleep(0.002)
                now = time.perf_counter()
                stalls.append(now - last)
                last = now

        task = asyncio.create_task(probe())
        t = time.perf_counter()
        await pilot.press("enter")
        while panel.searching is not None:
            await asyncio.sleep(0.002)
        out[f"{key}_ms"] = 1e3 * (time.perf_counter() - t)
        probing = False
        await task
        out[f"{key}_stall_ms"] = 1e3 * max(stalls)
    t = time.perf_counter()
    await pilot.press("r")  # replay at the end: folded in a worker
    while s.replay is None:
        await asyncio.sleep(0.005)
    out["enter_replay_worker_s"] = time.perf_counter() - t
    t = time.perf_counter()
    await pilot.press("P")
    while s.replay.cursor >= s.length:
        await asyncio.sleep(0.005)
    out["seek_prev_panic_s"] = time.perf_counter() - t
    await pilot.pause(0.3)
    sync, cycle, pressed = [], [], []
    for _ in range(5):  # as a refresh above: the step's own work, then with the paint
        t = time.perf_counter()
        app.action_move("step+")
        sync.append(time.perf_counter() - t)
        await pilot.pause()
        cycle.append(time.perf_counter() - t)
        t = time.perf_counter()
        await pilot.press("full_stop")  # the key, through the pilot (which waits for a refresh)
        pressed.append(time.perf_counter() - t)
    out["step_one_event_ms"] = {"median": 1e3 * statistics.median(sync), "with_paint_median":
                                1e3 * statistics.median(cycle), "key_press_median": 1e3 * statistics.median(pressed)}


def in_fresh_process(call: str) -> dict:
    """``call`` (a coroutine of this module, given ``t0``) in a new interpreter, timed from its
    first line: what a user waits for, Python's own start-up (30 ms) aside."""
    code = (f"import time; t0 = time.perf_counter(); import asyncio, json, sys;"
            f"sys.path.insert(0, {str(Path(__file__).parent)!r}); import bench_tui as b;"
            f"print(json.dumps(asyncio.run(b.{call})))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=1_000_000, help="events in the log (default 1M)")
    p.add_argument("--ten-million", action="store_true", help="measure a 10M-event log as well")
    p.add_argument("--refreshes", type=int, default=10, help="refreshes timed per tab")
    p.add_argument("--opens", type=int, default=5, help="fresh opens timed per log (first screen)")
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "esper-bench-tui")
    a = p.parse_args(argv)
    a.cache.mkdir(parents=True, exist_ok=True)
    sizes = [a.events] + ([10_000_000] if a.ten_million else [])
    peer = ensure_log(a.cache, PEER_EVENTS)
    results = {}
    for n in sizes:
        run = ensure_log(a.cache, n)
        # each open in a fresh process (peak memory is per size), alternating with the peer
        opens, peers = [], []
        for _ in range(a.opens if n < 10_000_000 else 1):
            opens.append(in_fresh_process(f"first_screen(b.Path({str(run)!r}), t0)"))
            peers.append(in_fresh_process(f"first_screen(b.Path({str(peer)!r}), t0)"))
        r = results[n] = in_fresh_process(f"measure(b.Path({str(run)!r}), {a.refreshes}, t0)")
        r["opens"], r["peer_opens"] = opens, peers
        firsts = sorted(o["first_full_screen_s"] for o in opens)
        peer_firsts = sorted(o["first_full_screen_s"] for o in peers)
        print(f"== {r['events']:,} events ({SIZE[0]}x{SIZE[1]}), timed from the command's start")
        print(f"  app made (Textual imported, the read given a head start)"
              f" {statistics.median(o['app_made_s'] for o in opens):.3f} s")
        print(f"  read and folded                   {statistics.median(o['loaded_s'] for o in opens):.3f} s")
        print(f"  first full screen (plots drawn)   {statistics.median(firsts):.3f} s"
              f"  (median of {len(firsts)}: {', '.join(f'{x:.2f}' for x in firsts)})")
        print(f"  same, a {peers[0]['events']:,}-event log   {statistics.median(peer_firsts):.3f} s"
              f"  -> the log's own cost {statistics.median(firsts) - statistics.median(peer_firsts):+.3f} s")
        for key, v in r.items():
            if key.startswith("refresh_"):
                print(f"  live refresh {key[8:-3]:<11} median {v['median']:6.1f} ms  max {v['max']:6.1f} ms"
                      f"  (with paint {v['with_paint_median']:.1f} ms)")
        for key, label in (("event_search_ui_thread", "(UI thread)"), ("event_search", "(worker)   ")):
            print(f"  event text search {label} {r[key + '_ms']:.0f} ms"
                  f"  (UI stalled at most {r[key + '_stall_ms']:.0f} ms)")
        print(f"  enter replay (worker)    {r['enter_replay_worker_s']:.3f} s")
        print(f"  seek previous panic      {r['seek_prev_panic_s']:.3f} s")
        step = r["step_one_event_ms"]
        print(f"  replay step, one event   median {step['median']:6.1f} ms  (with paint {step['with_paint_median']:.1f} ms,"
              f" the key through the pilot {step['key_press_median']:.1f} ms)")
        print(f"  peak RSS                 {r['peak_rss_mb']:.0f} MB")
    print(json.dumps({"bench": "tui", "size": list(SIZE), "results": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
