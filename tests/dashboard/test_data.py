"""The run cache, the run-id checks, table rows and the incremental-update logic."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dash import Patch, no_update

from telemetry_schema import events as ev
from telemetry_schema.eventlog import EventLog
from telemetry_schema.fold import Fold
from telemetry_schema.rundir import create_run, read_run
from telemetry_schema.runs import summarize
from telemetry_schema.search import search
from telemetry_schema.synth import SynthConfig, generate
from telemetry_schema.writer import WriterConfig

from dashboard import figures, live, tables
from dashboard.data import RunNotFound, RunStore
from dashboard.run_view import CHARTS, FIRST_CHARTS, LATER_CHARTS, RunRequest, chart_outputs, table_outputs
from dashboard.settings import DashboardConfig

from .conftest import CORRUPT_STREAM

NOW = 2_000_000_000.0


@pytest.mark.parametrize("bad", ["../etc", "..%2F..%2Fetc", "a/b", "/etc/passwd", "..", "", "x" * 200,
                                 "%2e%2e", "alpha-run/../beta-run", "no-such-run", ".hidden"])
def test_resolve_refuses_traversal_and_unknown_ids(logdir, bad):
    store = RunStore(logdir)
    with pytest.raises(RunNotFound):
        store.resolve(bad)


def test_resolve_refuses_symlink_out_of_logdir(logdir, tmp_path):
    outside = tmp_path / "outside-run"
    generate(tmp_path, SynthConfig(events=200, seed=5, run_id="outside-run"))
    link = logdir / "linked-run"
    link.symlink_to(outside)
    try:
        with pytest.raises(RunNotFound):
            RunStore(logdir).resolve("linked-run")
        rows = {r.run_id: r for r in RunStore(logdir).summaries()}  # the listing survives it
        assert rows["linked-run"].status == "error" and rows["alpha-run"].status == "completed"
    finally:
        link.unlink()


def test_runs_listed_with_outcomes_and_broken_log_isolated(logdir):
    store = RunStore(logdir)
    rows = {s.run_id: s for s in store.summaries()}
    assert set(rows) == {"alpha-run", "beta-run", "broken-run", "corrupt-run"}
    good = rows["alpha-run"]
    state = Fold().update(read_run(logdir / "alpha-run"))
    assert good.status == "completed" and good.task == state.task
    assert (good.epochs, good.fossilized, good.pruned, good.panics) == (
        state.epochs.length, state.seeds_fossilized(), state.seeds_pruned(), state.panics())
    assert good.best_val_acc == pytest.approx(state.best_val_acc())
    assert rows["broken-run"].status == "error" and "not a readable format 1 log" in rows["broken-run"].error
    md = tables.run_rows([good])[0]["run"]
    assert md == "[alpha-run](/run/alpha-run)"


def test_runs_page_rows_are_what_summarize_makes(logdir):
    """The runs page and esper-tui's picker show one row per run: ``runs.summarize``'s, made here
    from the run's followed fold (``summary_of``), corrupt streams included."""
    rows = {s.run_id: s for s in RunStore(logdir, clock=lambda: NOW).summaries()}
    for run_id in ("alpha-run", "beta-run", "broken-run", "corrupt-run"):
        assert rows[run_id] == summarize(logdir / run_id, NOW, read_log=True), run_id
    corrupt = rows["corrupt-run"]
    assert corrupt.status == "completed" and f"{CORRUPT_STREAM.split('/')[1]}: corrupt at byte" in corrupt.error
    shown = {r["run_id"]: r for r in tables.run_rows(list(rows.values()))}
    assert shown["corrupt-run"]["status"] == "completed · corrupt" and shown["corrupt-run"]["task"] == corrupt.task
    assert shown["alpha-run"]["status"] == "completed"
    assert shown["broken-run"]["status"] == "error" and "format 1" in shown["broken-run"]["task"]


def test_statuses_come_from_run_status_at_the_stores_clock(tmp_path):
    """An unfinished run is 'running' while its events are fresh and 'crashed' once silent,
    judged at the store's clock, as ``summarize`` judges it (never run.json's 'running')."""
    run_dir = generate(tmp_path, SynthConfig(events=1_000, seed=3, run_id="cut", finish=False))
    last = Fold().update(read_run(run_dir)).last_wall
    for now, status in ((last + 1.0, "running"), (last + 3600.0, "crashed")):
        (row,) = RunStore(tmp_path, clock=lambda: now).summaries()
        assert row.status == status == summarize(run_dir, now).status


def test_a_run_whose_every_stream_is_corrupt_is_an_error(tmp_path):
    bad = tmp_path / "garbage-run" / "events"
    bad.mkdir(parents=True)
    (bad / "batch_metrics.rank0.arrows").write_bytes(b"this is not an arrow stream at all")
    entry = RunStore(tmp_path).entry("garbage-run")
    (row,) = RunStore(tmp_path).summaries()
    assert row.status == "error" and "batch_metrics.rank0.arrows: corrupt at byte 0" in row.error
    entry.refresh()
    assert entry.failure() and entry.status() == "error" and entry.length == 0


def test_corrupt_streams_are_shown_apart_from_a_torn_tail(logdir, tmp_path):
    """A corrupt stream is named on the run page, its readable part and the other streams
    shown; a torn tail (a write under way) is no corruption: only the torn bytes count it."""
    from dashboard.run_view import header

    store = RunStore(logdir)
    text = str(header(store, "corrupt-run", None).to_plotly_json())
    whole = Fold().update(read_run(logdir / "corrupt-run"))
    entry = store.entry("corrupt-run")
    assert "corrupt-banner" in text and "Corrupt log" in text and "corrupt at byte" in text
    assert entry.length == whole.events > 0 and entry.state.status(NOW) == "completed"
    clean = str(header(store, "alpha-run", None).to_plotly_json())
    assert "Corrupt log" not in clean and "corrupt-banner" in clean  # the banner is there, hidden
    # a torn tail: the end of a stream cut inside its last message
    torn = tmp_path / "torn-run"
    generate(tmp_path, SynthConfig(events=2_000, seed=4, run_id="torn-run", finish=False))
    stream = max((torn / "events").iterdir(), key=lambda p: p.stat().st_size)
    stream.write_bytes(stream.read_bytes()[:-10])
    torn_store = RunStore(tmp_path)
    torn_entry = torn_store.entry("torn-run")
    torn_text = str(header(torn_store, "torn-run", None).to_plotly_json())
    assert torn_entry.model.torn_bytes > 0 and torn_entry.corrupt == []
    assert "Corrupt log" not in torn_text and f"{torn_entry.model.torn_bytes}" in torn_text


def test_new_runs_appear_without_restart(tmp_path):
    store = RunStore(tmp_path)
    assert store.run_ids() == []
    generate(tmp_path, SynthConfig(events=300, seed=3, run_id="late-run"))
    assert store.run_ids() == ["late-run"]


def write_epochs(writer, first: int, last: int) -> None:
    """Epochs ``first``..``last`` of 20 batches each, flushed at each epoch's end."""
    for epoch in range(first, last + 1):
        writer.epoch = epoch
        for _ in range(20):
            writer.step += 1
            writer.emit(ev.BatchMetrics(loss=1.0 / writer.step, lr=0.1, samples_per_s=100.0))
        writer.emit(ev.EpochCompleted(train_loss=1.0, train_acc=50.0, val_loss=1.0, val_acc=40.0 + epoch,
                                      total_params=10, host_params=10))
        writer.flush()


def test_refresh_reads_only_new_bytes(tmp_path):
    started = ev.RunStarted(run_id="grow", task="t", topology="cnn", host_params=10)
    run = create_run(tmp_path, started, config=WriterConfig(heartbeat_s=0, flush_interval=3600))
    write_epochs(run.writer, 1, 3)
    entry = RunStore(tmp_path, DashboardConfig(min_refresh_s=0)).entry("grow")
    entry.refresh()
    first = {p.name: f.offset for p, f in entry.follower.streams.items()}
    first_events = entry.length
    assert first == {p.name: p.stat().st_size for p in entry.follower.stream_files()}
    assert first_events == 1 + 3 * 21 and entry.state.epochs.length == 3
    write_epochs(run.writer, 4, 6)  # the writer appends
    run.close()
    entry.refresh()
    for path, follower in entry.follower.streams.items():  # each stream read on from where it was
        assert follower.offset == path.stat().st_size and follower.offset > first.get(path.name, 0)
    assert entry.length == Fold().update(read_run(tmp_path / "grow")).events == first_events + 3 * 21 + 1
    assert entry.reads == 2 and entry.ended and entry.state.epochs.length == 6


def test_format_1_run_is_read_once(tmp_path):
    """A format 1 run directory (one wide stream) is read whole, once, like esper-tui reads it."""
    src = Path(__file__).parents[1] / "telemetry" / "data" / "v1"
    run = next(p for p in sorted(src.iterdir()) if p.is_dir() and (p / "events.arrows").exists())
    shutil.copytree(run, tmp_path / "old-run")
    entry = RunStore(tmp_path, DashboardConfig(min_refresh_s=0)).entry("old-run")
    entry.refresh()
    entry.refresh()
    assert entry.failure() is None and entry.reads == 1 and entry.ended
    assert entry.length == read_run(tmp_path / "old-run").num_rows > 0


def test_replay_state_at_cursor(logdir):
    entry = RunStore(logdir).entry("alpha-run")
    entry.refresh()
    total = entry.length
    early = entry.state_at(total // 4)
    assert early.events == total // 4 and early.epoch < entry.state.epoch
    assert entry.state_at(None) is entry.state
    assert entry.state_at(total // 8).events == total // 8  # backwards works too


def test_figure_update_patches_appended_points_only(logdir):
    log = EventLog(read_run(logdir / "alpha-run"))
    fold = Fold()
    fold.update(log.slice(0, 3000))
    opts = figures.ChartOptions(max_points=100_000)
    first, meta = live.figure_update(figures.accuracy_figure(fold.state, opts), None)
    assert isinstance(first, dict) and isinstance(first["data"][0]["x"], list)
    n_before = len(first["data"][0]["x"])
    fold.update(log.slice(3000, 5000))
    patch, meta2 = live.figure_update(figures.accuracy_figure(fold.state, opts), meta)
    assert isinstance(patch, Patch)
    ops = patch.to_plotly_json()["operations"]
    x_ops = [op for op in ops if op["location"] == ["data", 0, "x"]]
    assert x_ops[0]["operation"] == "Extend"
    assert len(x_ops[0]["params"]["value"]) == fold.state.epochs.length - n_before
    again, _ = live.figure_update(figures.accuracy_figure(fold.state, opts), meta2)
    assert again is no_update
    changed, _ = live.figure_update(figures.accuracy_figure(fold.state, figures.ChartOptions(xaxis="step")), meta2)
    assert isinstance(changed, dict)  # options changed: whole figure


def test_figure_update_resends_when_prefix_changes(logdir):
    fold = Fold()
    fold.update(read_run(logdir / "alpha-run"))
    opts = figures.ChartOptions(max_points=200)  # downsampled: points move as data grows
    _, meta = live.figure_update(figures.loss_figure(fold.state, opts), None)
    meta["traces"][0][1] = "tampered"
    out, _ = live.figure_update(figures.loss_figure(fold.state, opts), meta)
    ops = out.to_plotly_json()["operations"]  # the changed trace's arrays are replaced, nothing else
    assert {op["operation"] for op in ops} == {"Assign"}
    assert {tuple(op["location"]) for op in ops} == {("data", 0, "x"), ("data", 0, "y")}


def test_next_cursor():
    assert live.next_cursor({"tick"}, "live", 5, 100, 1, 200) == 100
    assert live.next_cursor({"cursor"}, "replay", 40, 100, 1, 200) == 40
    assert live.next_cursor({"replay-timer"}, "replay", 40, 1000, 4, 200) == 60
    assert live.next_cursor({"replay-timer"}, "replay", 995, 1000, 64, 200) == 1000
    assert live.next_cursor({"mode"}, "replay", 100, 100, 1, 200) == 0
    # a poll tick batched with the switch to replay must not keep the cursor at the end
    assert live.next_cursor({"tick", "mode"}, "replay", 100, 100, 1, 200) == 0


def test_chart_outputs_for_broken_and_good_runs(logdir):
    store = RunStore(logdir)
    figs, shipped, optional = chart_outputs(store, RunRequest("alpha-run", cursor=2000), {})
    assert len(figs) == len(CHARTS) == 11 and set(shipped) >= {"g-loss", "g-swimlane"}
    assert optional == [{"display": "none"}] * 3  # synthetic runs have no PPO
    figs, _, _ = chart_outputs(store, RunRequest("broken-run"), {})
    assert all(len(f.data) == 0 for f in figs)


def test_chart_groups_split_the_page_and_keep_their_own_shipped_records(logdir):
    assert FIRST_CHARTS == ("g-loss", "g-acc")
    assert FIRST_CHARTS + LATER_CHARTS == tuple(CHARTS)  # every chart in exactly one group, page order
    store = RunStore(logdir)
    req = RunRequest("alpha-run", cursor=3000)
    every, _, _ = chart_outputs(store, req, {})
    first, shipped_first, _ = chart_outputs(store, req, {}, FIRST_CHARTS)
    later, shipped_later, optional = chart_outputs(store, req, {}, LATER_CHARTS)
    assert set(shipped_first) == {*FIRST_CHARTS, "_selection"}
    assert set(shipped_later) == {*LATER_CHARTS, "_selection"}
    assert optional == [{"display": "none"}] * 3
    # each group is the same figures as the whole page's, in its order
    assert first + later == every
    # a group's own record is the base of its patches: nothing new, nothing sent
    again, _, _ = chart_outputs(store, req, shipped_later, LATER_CHARTS)
    assert again == [no_update] * len(LATER_CHARTS)
    # a later cursor extends the later charts too
    grown, _, _ = chart_outputs(store, RunRequest("alpha-run", cursor=6000), shipped_later, LATER_CHARTS)
    params = grown[LATER_CHARTS.index("g-params")]
    assert isinstance(params, Patch)
    ops = params.to_plotly_json()["operations"]
    assert any(op["operation"] == "Extend" and op["location"] == ["data", 0, "x"] for op in ops)


def test_event_rows_filter_search_and_cursor(logdir):
    log = EventLog(read_run(logdir / "alpha-run"))
    rows = tables.event_rows(log, tables.find_events(log, "", ["gate_evaluated"]), 1000)
    assert rows and all(r["kind"] == "gate_evaluated" for r in rows)
    assert rows[0]["seq"] > rows[-1]["seq"]  # newest first
    assert len(rows) == len(log.positions("gate_evaluated"))
    failed = tables.event_rows(log, tables.find_events(log, "passed:false", ["gate_evaluated"]), 1000)
    assert 0 < len(failed) < len(rows) and all('"passed": false' in r["payload"] for r in failed)
    early = tables.event_rows(log, tables.find_events(log, "", [], stop=500), 10)
    assert len(early) == 10 and max(r["seq"] for r in early) < log.event(500)[1]["seq"]


@pytest.mark.parametrize("query", ["", "G2", "/r0c[12]/", "kind:gate passed:false", "slot=r0c1", "loss>1", "reason"])
def test_event_table_finds_what_the_shared_search_finds(logdir, query):
    """The events table lists the newest of what ``telemetry_schema.search`` finds (both viewers
    count the same events for a query), newest first."""
    store = RunStore(logdir)
    _, rows, error, count = table_outputs(store, RunRequest("alpha-run"), [], query)
    log = store.entry("alpha-run").log
    found = search(log, query)
    assert error == "" and len(rows) == min(len(found), store.config.event_rows)
    assert count.startswith(f"({len(found):,} found")
    assert [r["seq"] for r in rows] == [log.event(int(p))[1]["seq"] for p in found[::-1][:len(rows)]]


@pytest.mark.parametrize("query, message", [("loss>abc", "'abc' is not a number"),
                                            ("nosuchfield:1", "no event has a field 'nosuchfield'"),
                                            ("/a{2,1}/", "bad regular expression"),
                                            ("/(?=G2)/", "bad regular expression")])
def test_bad_query_is_a_one_line_message_never_a_500(logdir, query, message):
    store = RunStore(logdir)
    decisions, rows, error, _ = table_outputs(store, RunRequest("alpha-run"), [], query)
    assert rows == [] and message in error and "\n" not in error and decisions
    client = header_client(logdir)
    resp = client.post("/_dash-update-component", json=tables_body("alpha-run", query))
    assert resp.status_code == 200 and message in resp.get_json()["response"]["event-search-error"]["children"]
    ok = client.post("/_dash-update-component", json=tables_body("alpha-run", "G2"))
    assert ok.status_code == 200 and ok.get_json()["response"]["event-search-error"]["children"] == ""


TABLE_OUTPUTS = [("decisions-table", "data"), ("events-table", "data"), ("event-search-error", "children"),
                 ("events-count", "children")]


def tables_body(run_id, query) -> dict:
    """The request the browser sends for the run page's tables."""
    return {"output": ".." + "...".join(f"{i}.{p}" for i, p in TABLE_OUTPUTS) + "..",
            "outputs": [{"id": i, "property": p} for i, p in TABLE_OUTPUTS],
            "inputs": [{"id": "cursor", "property": "value", "value": 5},
                       {"id": "mode", "property": "value", "value": "live"},
                       {"id": "event-kinds", "property": "value", "value": []},
                       {"id": "event-search", "property": "value", "value": query},
                       {"id": "sel-rank", "property": "value", "value": 0},
                       {"id": "sel-env", "property": "value", "value": "all"}],
            "state": [{"id": "run-id", "property": "data", "value": run_id}],
            "changedPropIds": ["event-search.value"]}


def test_decision_rows_newest_first(logdir):
    state = Fold().update(read_run(logdir / "alpha-run"))
    rows = tables.decision_rows(state, 5)
    assert len(rows) == 5 and rows[0]["seq"] == state.decisions[-1].seq


def test_dashboard_never_imports_torch_or_esper():
    code = ("import sys, dashboard.app, dashboard.cli, dashboard.pages.run; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'esper')]; "
            "sys.exit(1 if bad else 0)")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def test_cli_warm_up_pays_pyarrows_lazy_pandas_import_before_serving():
    """What the first read of a log would import (pyarrow's pandas shim) is imported at start."""
    pytest.importorskip("pandas")
    code = ("import sys, dashboard.cli; assert 'pandas' not in sys.modules; "
            "dashboard.cli.warm_up(); sys.exit(0 if 'pandas' in sys.modules else 1)")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


@pytest.mark.parametrize("argv, message", [(["--bogus"], "unrecognized arguments"),
                                           (["--logdir", "/no/such/dir"], "no such directory"),
                                           (["--port", "0"], "not a port number"),
                                           (["--port", "abc"], "invalid int value"),
                                           (["--prefetch", "-1"], "not a number of runs")])
def test_cli_bad_flags_one_line_error(argv, message, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "dashboard.cli", *argv], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert proc.returncode != 0
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("run_id", ["../../etc", "alpha-run/../../x", "/etc/passwd"])
def test_forged_callback_run_id_is_refused(logdir, run_id):
    """The run id of a callback comes from the browser: a forged one updates nothing."""
    client = header_client(logdir)
    resp = client.post("/_dash-update-component", json=header_body(run_id, 0, "all"))
    assert resp.status_code == 204 and b"root" not in resp.data
    ok = client.post("/_dash-update-component", json=header_body("alpha-run", 0, "all"))
    assert ok.status_code == 200 and b"alpha-run" in ok.data


HEADER_OUTPUTS = [("run-header", "children"), ("cursor-info", "children"), ("sel-rank", "options"),
                  ("rank-pick", "style"), ("sel-env", "options"), ("env-pick", "style")]


def header_client(logdir):
    """A test client of a fresh app, its routes set up."""
    from dashboard.app import create_app

    client = create_app(logdir).server.test_client()
    client.get("/")  # let Dash set up its routes
    return client


def header_body(run_id, rank, env) -> dict:
    """The request the browser sends for the run header (values as given, forged or not)."""
    return {"output": ".." + "...".join(f"{i}.{p}" for i, p in HEADER_OUTPUTS) + "..",
            "outputs": [{"id": i, "property": p} for i, p in HEADER_OUTPUTS],
            "inputs": [{"id": "tick", "property": "n_intervals", "value": 1},
                       {"id": "cursor", "property": "value", "value": 5},
                       {"id": "sel-rank", "property": "value", "value": rank},
                       {"id": "sel-env", "property": "value", "value": env}],
            "state": [{"id": "mode", "property": "value", "value": "live"},
                      {"id": "run-id", "property": "data", "value": run_id},
                      {"id": "sel-rank", "property": "options", "value": []},
                      {"id": "sel-env", "property": "options", "value": []}],
            "changedPropIds": ["tick.n_intervals"]}


def test_cli_port_in_use_one_line_error(logdir):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "dashboard.cli", "--logdir", str(logdir), "--port", str(port)],
                              capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "cannot listen on" in proc.stderr


def test_apps_do_not_share_state(logdir):
    from dashboard.app import create_app

    a, b = create_app(logdir), create_app(logdir)
    assert a.run_store is not b.run_store
    a.run_store.entry("alpha-run").refresh()
    assert b.run_store.entry("alpha-run").length == 0  # b has not read anything yet


def test_poll_tick_never_sets_the_replay_cursor(logdir):
    """Of overlapping calls of one callback the one requested last wins in the browser (even
    with no_update); were the cursor an output of the tick's callback, a tick requested while
    "enter replay" or a slider move was in flight would undo it (the cursor stayed at the end)."""
    from dashboard.app import create_app

    def outputs(spec: str) -> set[str]:
        return {part.split("@")[0] for part in spec.strip(".").split("...")}

    callbacks = [(outputs(spec), {i["id"] for i in cb["inputs"]}) for spec, cb in create_app(logdir).callback_map.items()]
    ticked = [outs for outs, ins in callbacks if "tick" in ins]
    assert ticked and not any("cursor.value" in outs for outs in ticked)
    movers = [ins for outs, ins in callbacks if "cursor.value" in outs]
    assert movers == [{"live-total", "replay-timer", "mode", "seek-to"}]
