"""Dashboard benchmark: first render of a large run, and callback latency under concurrent polling.

    python bench/bench_dashboard.py                      # 1M-event run, 10 clients, 15 polls each
    python bench/bench_dashboard.py --events 200000 --clients 4 --polls 5   # quicker

1. Time to first render of a synthetic run of ``--events`` events: read + fold the log (the
   run's follower), build every chart of the run page (downsampled, as shipped to the browser),
   the header and the tables. Peer measured in the same run: ``pyarrow.ipc.open_stream(...).
   read_all()`` of each of the run's stream files, the floor of any reader of that log.
2. Live polling: a writer process appends a live synthetic run; ``--clients`` threads act as
   browsers, each POSTing the run page's live callbacks (cursor, then the first screen's charts,
   then the other charts, each chart group with the shipped-figure store it got back) once per
   second over loopback HTTP to the real server,
   ``--polls`` times. Reports p50/p95 callback latency, the share of chart responses that were
   Patch()es, and the bytes each refresh read. Peer: a full re-read + fold of the same log.

3. Browser open (when Playwright and a Chromium are installed): ``esper-dashboard`` served in
   its own process, the run page opened in headless Chromium, timed until the loss chart holds
   points (and until the charts drawn after it do too); ``--cold-opens`` times on a cold server
   (a fresh process each, the page opened as soon as it answers: read + fold included; median
   reported; each interleaved with a cold open of a server started with ``--prefetch 0``, which
   reads the run only when the page asks), then twice warm. Peer: the same browser opening the
   runs page (no charts), the floor of any page of this app.

4. Runs page at scale (``--scale`` runs this part alone): ``--scale-runs`` finished synthetic
   runs of ``--scale-events`` events each (default 100 x 30,000, then 1,000 x 2,000), served by
   ``esper-dashboard`` in its own process (as a user starts it: the newest runs prefetched). Times
   the runs page's first build on the cold server (the router's answer for ``/``, as the browser
   asks for it, once the server answers), a poll of the table that re-sends every row, three
   polls that find nothing new (the steady state), and the server's resident memory after them. Targets (issue 17): 100 x 30k open in <= 2 s with
   <= 300 MB; 1,000 runs in <= 5 s. Peer: reading and folding every run's whole log in this
   process (``summarize(..., read_log=True)``, what listing a run cost before summary files).

Prints figures, never pass/fail. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pyarrow as pa
from werkzeug.serving import WSGIRequestHandler, make_server

from telemetry_schema.arrays import choose_memory_pool
from telemetry_schema.fold import Fold
from telemetry_schema.reader import stream_files
from telemetry_schema.rundir import read_run
from telemetry_schema.synth import SynthConfig, generate

from dashboard.app import create_app
from dashboard.run_view import RunRequest, chart_outputs, header, table_outputs


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args, **kwargs) -> None:
        pass


def first_render(logdir: Path, run_id: str) -> dict:
    """Seconds to read + fold the run, then to build what the run page shows first."""
    store = create_app(logdir).run_store
    t0 = time.perf_counter()
    entry = store.entry(run_id)
    entry.refresh(force=True)
    t1 = time.perf_counter()
    figs, _, _ = chart_outputs(store, RunRequest(run_id), {})
    header(store, run_id, None)
    table_outputs(store, RunRequest(run_id), ["gate_evaluated", "governor_panic"], "")
    t2 = time.perf_counter()
    points = max(len(t.get("x") or []) for f in figs for t in f["data"])
    return {"read_fold_s": t1 - t0, "figures_s": t2 - t1, "total_s": t2 - t0, "max_trace_points": points,
            "events": entry.length}


def peer_read_all(run_dir: Path) -> float:
    """Seconds for pyarrow to read every stream file of the run (no checks, no fold)."""
    t0 = time.perf_counter()
    for path in stream_files(run_dir):
        pa.ipc.open_stream(str(path)).read_all()
    return time.perf_counter() - t0


def full_reread(run_dir: Path) -> float:
    t0 = time.perf_counter()
    Fold().update(read_run(run_dir))
    return time.perf_counter() - t0


# -- live polling ------------------------------------------------------------------------------

def _outputs(spec: str) -> list[dict]:
    parts = spec.strip(".").split("...")
    return [dict(zip(("id", "property"), p.rsplit(".", 1))) for p in parts]


class Client:
    """One simulated browser on a run page: the cursor callback, then the two chart callbacks
    (the first screen's charts, then, chained after them, the others)."""

    def __init__(self, url: str, deps: list[dict], run_id: str) -> None:
        self.url, self.run_id = url + "/_dash-update-component", run_id
        self.cursor_dep = next(d for d in deps if "cursor.value" in d["output"])
        self.chart_deps = [(next(d for d in deps if f"{gid}.figure" in d["output"]), store)
                           for gid, store in (("g-loss", "shipped"), ("g-params", "shipped-later"))]
        self.cursor, self.shipped, self.n = 0, {"shipped": {}, "shipped-later": {}}, 0
        self.latencies: list[float] = []
        self.patches = self.full = 0

    def _post(self, dep: dict, values: dict, changed: str) -> dict:
        body = {"output": dep["output"], "outputs": _outputs(dep["output"]),
                "inputs": [{**i, "value": values.get(f"{i['id']}.{i['property']}")} for i in dep["inputs"]],
                "state": [{**s, "value": values.get(f"{s['id']}.{s['property']}")} for s in dep["state"]],
                "changedPropIds": [changed]}
        req = urllib.request.Request(self.url, json.dumps(body).encode(), {"Content-Type": "application/json"})
        t0 = time.perf_counter()
        with urllib.request.urlopen(req, timeout=30) as resp:
            data = resp.read()
        self.latencies.append(time.perf_counter() - t0)
        return json.loads(data) if data else {}

    def poll(self) -> None:
        self.n += 1
        values = {"tick.n_intervals": self.n, "replay-timer.n_intervals": None, "mode.value": "live",
                  "cursor.value": self.cursor, "speed.value": 1, "run-id.data": self.run_id,
                  "xaxis.value": "epoch", "smoothing.value": 0,
                  **{f"{store}.data": shipped for store, shipped in self.shipped.items()}}
        out = self._post(self.cursor_dep, values, "tick.n_intervals").get("response", {})
        new = out.get("cursor", {}).get("value")
        if new is None or new == self.cursor:
            return  # nothing new: the browser would not call the charts callbacks
        self.cursor = values["cursor.value"] = new
        for dep, store in self.chart_deps:  # in turn: the second takes the first's store as input
            out = self._post(dep, values, "cursor.value").get("response", {})
            self.shipped[store] = values[f"{store}.data"] = out.get(store, {}).get("data", self.shipped[store])
            for gid, props in out.items():
                fig = props.get("figure") if gid.startswith("g-") else None
                if isinstance(fig, dict) and "__dash_patch_update" in fig:
                    self.patches += 1
                elif fig is not None:
                    self.full += 1


def live_polling(workdir: Path, clients: int, polls: int, period: float) -> dict:
    logdir = workdir / "live"
    logdir.mkdir()
    writer = subprocess.Popen([sys.executable, "-m", "telemetry_schema.synth", "--out", str(logdir), "--events",
                               "200000", "--seed", "11", "--run-id", "live-run", "--live", "--epoch-seconds", "0.2"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not stream_files(logdir / "live-run"):
            time.sleep(0.05)
        time.sleep(1.0)
        app = create_app(logdir)
        server = make_server("127.0.0.1", 0, app.server, threaded=True, request_handler=_Quiet)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.port}"
        deps = json.loads(urllib.request.urlopen(url + "/_dash-dependencies", timeout=30).read())
        entry = app.run_store.entry("live-run")
        entry.refresh(force=True)  # the page layout does this before the first poll
        offsets = []
        original = entry.follower.poll

        def counting_poll(final=False):  # how many bytes each refresh reads
            before = sum(f.offset for f in entry.follower.streams.values())
            tables = original(final)
            offsets.append(sum(f.offset for f in entry.follower.streams.values()) - before)
            return tables

        entry.follower.poll = counting_poll
        group = [Client(url, deps, "live-run") for _ in range(clients)]

        def run(c: Client) -> None:
            for _ in range(polls):
                t0 = time.perf_counter()
                c.poll()
                time.sleep(max(0.0, period - (time.perf_counter() - t0)))

        threads = [threading.Thread(target=run, args=(c,)) for c in group]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        server.shutdown()
        lat = sorted(x for c in group for x in c.latencies)
        log_bytes = sum(p.stat().st_size for p in stream_files(logdir / "live-run"))
        reread = full_reread(logdir / "live-run")
        return {"requests": len(lat), "p50_ms": 1e3 * statistics.median(lat),
                "p95_ms": 1e3 * lat[int(0.95 * (len(lat) - 1))], "max_ms": 1e3 * lat[-1],
                "chart_patches": sum(c.patches for c in group), "chart_full": sum(c.full for c in group),
                "refreshes": len(offsets), "mean_bytes_per_refresh": statistics.mean(offsets) if offsets else 0,
                "log_bytes": log_bytes, "events": entry.length, "full_reread_ms": 1e3 * reread}
    finally:
        writer.kill()
        writer.wait(10)


def _start_server(logdir: Path, port: int, *args: str) -> subprocess.Popen:
    """``esper-dashboard`` in its own process, returned once it answers (a cold server: it has read
    no run yet, whatever it started doing in the background)."""
    server = subprocess.Popen([sys.executable, "-m", "dashboard.cli", "--logdir", str(logdir), "--port", str(port),
                               *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}", timeout=1)
            return server
        except OSError:
            time.sleep(0.05)
    server.terminate()
    raise RuntimeError("esper-dashboard did not start")


def browser_open(logdir: Path, run_id: str, chromium: str, cold_opens: int = 3) -> dict | None:
    """Seconds to open the run page in headless Chromium: on a cold server (``cold_opens`` times, a
    fresh server each time, the page opened as soon as the server answers: Chromium is started
    first), then warm (best of two); and the runs page's open time as the peer. None when
    Playwright is not installed."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sys.stderr.write("playwright not installed: browser open not measured\n")
        return None
    port = 8000 + os.getpid() % 1000
    url = f"http://127.0.0.1:{port}"
    holds = """id => { const g = document.querySelector(`#${id} .js-plotly-plot`);
                       return g && g.data && g.data.length > 0 && (g.data[0].x || []).length > 0; }"""
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])

        def open_page(path: str, *ready) -> list[float]:
            """Seconds from navigation until each of ``ready`` in turn is met."""
            page = browser.new_page()
            t0 = time.perf_counter()
            page.goto(url + path)
            times = []
            for wait in ready:
                wait(page)
                times.append(time.perf_counter() - t0)
            page.close()
            return times

        def chart(gid: str):  # the chart holds points
            return lambda page: page.wait_for_function(f"({holds})('{gid}')", timeout=120_000)

        # the loss chart is drawn first; the parameter chart with the charts drawn after it
        run_page = (f"/run/{run_id}", chart("g-loss"), chart("g-params"))
        blank = browser.new_page()  # Chromium's first page (renderer start) is not the app's cost
        blank.goto("about:blank")
        blank.close()
        colds, unprefetched = [], []
        for i in range(cold_opens):  # interleaved: both see the same machine load
            server = _start_server(logdir, port, "--prefetch", "0")
            try:
                unprefetched.append(open_page(*run_page))
            finally:
                server.terminate()
                server.wait(10)
            server = _start_server(logdir, port)
            try:
                colds.append(open_page(*run_page))
                if i == cold_opens - 1:
                    warm, warm_all = min(open_page(*run_page) for _ in range(2))
                    runs = min(open_page("/", lambda page: page.wait_for_selector("#runs-table", timeout=60_000))[0]
                               for _ in range(2))
            finally:
                server.terminate()
                server.wait(10)
        browser.close()
    return {"cold_s": statistics.median(c[0] for c in colds), "warm_s": warm,
            "cold_all_charts_s": statistics.median(c[1] for c in colds), "warm_all_charts_s": warm_all,
            "runs_page_s": runs, "cold_runs_s": [round(c[0], 3) for c in colds],
            "cold_no_prefetch_s": statistics.median(c[0] for c in unprefetched),
            "cold_no_prefetch_runs_s": [round(c[0], 3) for c in unprefetched]}


def _post_json(url: str, body: dict) -> tuple[float, bytes]:
    req = urllib.request.Request(url + "/_dash-update-component", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=300) as resp:
        data = resp.read()
    return time.perf_counter() - t0, data


def runs_page_at_scale(workdir: Path, runs: int, events: int, peer_runs: int) -> dict:
    """The runs page of ``runs`` runs of ``events`` events on a cold ``esper-dashboard``: seconds
    to build it, to refresh its table, and the server's RSS; the peer reads ``peer_runs`` of the
    logs whole (scaled to all of them)."""
    import psutil

    from telemetry_schema.runs import summarize

    logdir = workdir / f"scale-{runs}x{events}"
    t0 = time.perf_counter()
    for i in range(runs):
        generate(logdir, SynthConfig(events=events, seed=i, run_id=f"run-{i:04d}"))
    print(f"generated {runs:,} runs of {events:,} events in {time.perf_counter() - t0:.1f} s")
    port = 9000 + os.getpid() % 900
    url = f"http://127.0.0.1:{port}"
    route = {"output": "page.children", "outputs": {"id": "page", "property": "children"},
             "inputs": [{"id": "url", "property": "pathname", "value": "/"}],
             "state": [{"id": "url", "property": "search", "value": ""}], "changedPropIds": ["url.pathname"]}
    outputs = [("runs-table", "data"), ("runs-table", "tooltip_data"), ("runs-count", "children"),
               ("runs-tag", "options"), ("runs-digest", "data")]

    def refresh(digest):
        return {"output": ".." + "...".join(f"{i}.{p}" for i, p in outputs) + "..",
                "outputs": [{"id": i, "property": p} for i, p in outputs],
                "inputs": [{"id": "tick", "property": "n_intervals", "value": 1},
                           {"id": "runs-filter", "property": "value", "value": None},
                           {"id": "runs-status", "property": "value", "value": None},
                           {"id": "runs-tag", "property": "value", "value": None}],
                "state": [{"id": "runs-digest", "property": "data", "value": digest}],
                "changedPropIds": ["tick.n_intervals"]}
    t_spawn = time.perf_counter()
    server = _start_server(logdir, port)
    try:
        started = time.perf_counter() - t_spawn
        open_s, page = _post_json(url, route)
        shown = page.count(b'"run_id":"run-')
        full_s, data = _post_json(url, refresh(None))  # a poll of a browser that holds no table
        digest = json.loads(data)["response"]["runs-digest"]["data"]
        refreshes = [_post_json(url, refresh(digest))[0] for _ in range(3)]  # polls that find nothing new
        rss = psutil.Process(server.pid).memory_info().rss
    finally:
        server.terminate()
        server.wait(10)
    sample = [logdir / f"run-{i:04d}" for i in range(0, runs, max(1, runs // max(1, peer_runs)))][:peer_runs]
    t0 = time.perf_counter()
    for run_dir in sample:
        summarize(run_dir, read_log=True)
    peer = (time.perf_counter() - t0) * runs / max(1, len(sample))
    return {"runs": runs, "events": events, "rows": shown, "server_start_s": started, "open_s": open_s,
            "refresh_full_s": full_s, "refresh_s": statistics.median(refreshes), "server_rss_mb": rss / 2 ** 20, "peer_full_read_s": peer}


def scale_main(a) -> int:
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-scale-") as tmp:
        for runs, events in zip(a.scale_runs, a.scale_events):
            r = runs_page_at_scale(Path(tmp), runs, events, a.scale_peer_runs)
            results.append(r)
            print(f"runs page, {r['runs']:,} runs x {r['events']:,} events: {r['rows']:,} rows built in "
                  f"{r['open_s']:.2f} s on a cold server (it answered {r['server_start_s']:.2f} s after its start); "
                  f"table poll {r['refresh_s']:.3f} s ({r['refresh_full_s']:.3f} s re-sending every row); server RSS {r['server_rss_mb']:.0f} MB; "
                  f"peer full read + fold of every log {r['peer_full_read_s']:.1f} s "
                  f"-> open / peer = {r['open_s'] / max(r['peer_full_read_s'], 1e-9):.3f}x")
    print(f"machine: {os.cpu_count()} CPUs, 1-minute load average {os.getloadavg()[0]:.2f}")
    print(json.dumps({"scale": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}
                                for r in results], "loadavg_1m": round(os.getloadavg()[0], 2),
                      "cpus": os.cpu_count()}))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--polls", type=int, default=15)
    p.add_argument("--period", type=float, default=1.0, help="seconds between a client's polls")
    p.add_argument("--repeats", type=int, default=3, help="first-render measurements (best is reported)")
    p.add_argument("--chromium", default="/usr/bin/chromium", help="Chromium for the browser-open figure")
    p.add_argument("--cold-opens", type=int, default=3, help="browser opens on a fresh server (median reported)")
    p.add_argument("--scale", action="store_true", help="measure only the runs page at scale (part 4)")
    p.add_argument("--scale-runs", type=int, nargs="+", default=[100, 1000], help="runs per scale case")
    p.add_argument("--scale-events", type=int, nargs="+", default=[30_000, 2_000], help="events per run, per case")
    p.add_argument("--scale-peer-runs", type=int, default=10, help="runs the peer reads whole (scaled to all)")
    a = p.parse_args(argv)
    if a.scale:
        if len(a.scale_runs) != len(a.scale_events):
            p.error("--scale-runs and --scale-events need as many values each")
        return scale_main(a)
    choose_memory_pool()  # as esper-dashboard does (the first render is timed in this process)
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        run_dir = generate(tmp / "big", SynthConfig(events=a.events, seed=0, run_id="big"))
        print(f"generated {a.events:,}-event run in {time.perf_counter() - t0:.1f} s")
        renders, peers = [], []
        for _ in range(a.repeats):  # interleaved: both see the same machine load
            renders.append(first_render(tmp / "big", "big"))
            peers.append(peer_read_all(run_dir))
        best = min(renders, key=lambda r: r["total_s"])
        peer = min(peers)
        print(f"first render: {best['total_s']:.3f} s (read+fold {best['read_fold_s']:.3f} s, figures+tables "
              f"{best['figures_s']:.3f} s) for {best['events']:,} events; max trace {best['max_trace_points']} points")
        print(f"peer pyarrow read_all: {peer:.3f} s  -> first render / read_all = {best['total_s'] / peer:.2f}x")
        browser = browser_open(tmp / "big", "big", a.chromium, a.cold_opens) if Path(a.chromium).exists() else None
        if browser:
            print(f"browser open of the run page: {browser['cold_s']:.2f} s on a cold server (median of "
                  f"{browser['cold_runs_s']}), "
                  f"{browser['warm_s']:.2f} s warm (every chart drawn: {browser['cold_all_charts_s']:.2f} s, "
                  f"{browser['warm_all_charts_s']:.2f} s); peer: the runs page opens in {browser['runs_page_s']:.2f} s")
            print(f"browser open on a cold server started with --prefetch 0: {browser['cold_no_prefetch_s']:.2f} s "
                  f"(median of {browser['cold_no_prefetch_runs_s']})")
        live = live_polling(tmp, a.clients, a.polls, a.period)
        print(f"live: {a.clients} clients x {a.polls} polls, {live['requests']} requests: p50 {live['p50_ms']:.1f} ms, "
              f"p95 {live['p95_ms']:.1f} ms, max {live['max_ms']:.1f} ms")
        print(f"live: chart outputs {live['chart_patches']} Patch / {live['chart_full']} full figure; "
              f"{live['refreshes']} refreshes read {live['mean_bytes_per_refresh']:.0f} B each on average "
              f"(log {live['log_bytes']:,} B); full re-read + fold {live['full_reread_ms']:.1f} ms "
              f"-> p95 / full re-read = {live['p95_ms'] / max(live['full_reread_ms'], 1e-9):.2f}x")
    result = {"events": best["events"], "first_render_s": round(best["total_s"], 4),
              "first_render_read_fold_s": round(best["read_fold_s"], 4),
              "first_render_figures_s": round(best["figures_s"], 4), "peer_read_all_s": round(peer, 4),
              "first_render_vs_read_all": round(best["total_s"] / peer, 3),
              "max_trace_points": best["max_trace_points"], "clients": a.clients,
              **({f"browser_{k}": (round(v, 3) if isinstance(v, float) else v) for k, v in browser.items()}
                 if browser else {}),
              **{f"live_{k}": (round(v, 3) if isinstance(v, float) else v) for k, v in live.items()},
              "loadavg_1m": round(os.getloadavg()[0], 2), "cpus": os.cpu_count()}
    print(f"machine: {os.cpu_count()} CPUs, 1-minute load average {os.getloadavg()[0]:.2f}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
