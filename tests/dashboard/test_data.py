"""The run cache, the run-id checks, table rows and the incremental-update logic."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from dash import Patch, no_update

from telemetry_schema.fold import Fold
from telemetry_schema.rundir import RunFollower
from telemetry_schema.synth import SynthConfig, generate

from dashboard import figures, live, tables
from dashboard.data import RunNotFound, RunStore
from dashboard.run_view import CHARTS, FIRST_CHARTS, LATER_CHARTS, RunRequest, chart_outputs
from dashboard.settings import DashboardConfig


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
        assert rows["linked-run"].status == "error" and rows["alpha-run"].status == "finished"
    finally:
        link.unlink()


def test_runs_listed_with_outcomes_and_broken_log_isolated(logdir):
    store = RunStore(logdir)
    rows = {s.run_id: s for s in store.summaries()}
    assert set(rows) == {"alpha-run", "beta-run", "broken-run"}
    good = rows["alpha-run"]
    state = Fold().update(RunFollower(logdir / "alpha-run").poll())
    assert good.status == "finished" and good.task == state.task
    assert (good.epochs, good.fossilized, good.pruned, good.panics) == (
        state.epochs.length, state.seeds_fossilized(), state.seeds_pruned(), state.panics())
    assert good.best_val_acc == pytest.approx(state.best_val_acc())
    assert rows["broken-run"].status == "error" and "not an Arrow IPC stream" in rows["broken-run"].error
    md = tables.run_rows([good])[0]["run"]
    assert md == "[alpha-run](/run/alpha-run)"


def test_new_runs_appear_without_restart(tmp_path):
    store = RunStore(tmp_path)
    assert store.run_ids() == []
    generate(tmp_path, SynthConfig(events=300, seed=3, run_id="late-run"))
    assert store.run_ids() == ["late-run"]


def test_refresh_reads_only_new_bytes(tmp_path):
    generate(tmp_path, SynthConfig(events=3000, seed=4, run_id="grow", finish=False, max_epochs=5))
    src = tmp_path / "grow" / "events.arrows"
    store = RunStore(tmp_path / "view", DashboardConfig(min_refresh_s=0))
    (tmp_path / "view" / "grow").mkdir(parents=True)
    shutil.copy(tmp_path / "grow" / "run.json", tmp_path / "view" / "grow" / "run.json")
    data = src.read_bytes()
    dst = tmp_path / "view" / "grow" / "events.arrows"
    dst.write_bytes(data[: len(data) // 2])
    entry = store.entry("grow")
    entry.refresh()
    first_offset, first_events = entry.follower.followers[dst].offset, entry.length
    assert 0 < first_offset <= len(data) // 2
    dst.write_bytes(data)  # the writer appended the rest
    entry.refresh()
    follower = entry.follower.followers[dst]
    assert follower.offset == len(data) - entry.follower.torn_bytes
    assert entry.length == Fold().update(RunFollower(tmp_path / "grow").poll()).events > first_events


def test_replay_state_at_cursor(logdir):
    entry = RunStore(logdir).entry("alpha-run")
    entry.refresh()
    total = entry.length
    early = entry.state_at(total // 4)
    assert early.events == total // 4 and early.epoch < entry.state.epoch
    assert entry.state_at(None) is entry.state
    assert entry.state_at(total // 8).events == total // 8  # backwards works too


def test_figure_update_patches_appended_points_only(logdir):
    table = RunFollower(logdir / "alpha-run").poll()
    fold = Fold()
    fold.update(table.slice(0, 3000))
    opts = figures.ChartOptions(max_points=100_000)
    first, meta = live.figure_update(figures.accuracy_figure(fold.state, opts), None)
    assert isinstance(first, dict) and isinstance(first["data"][0]["x"], list)
    n_before = len(first["data"][0]["x"])
    fold.update(table.slice(3000, 2000))
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
    fold.update(RunFollower(logdir / "alpha-run").poll())
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
    assert len(figs) == 10 and set(shipped) >= {"g-loss", "g-swimlane"}
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
    table = RunFollower(logdir / "alpha-run").poll()
    rows = tables.event_rows(table, None, ["gate_evaluated"], "", 1000)
    assert rows and all(r["kind"] == "gate_evaluated" for r in rows)
    assert rows[0]["seq"] > rows[-1]["seq"]  # newest first
    failed = tables.event_rows(table, None, ["gate_evaluated"], '"passed": false', 1000)
    assert 0 < len(failed) < len(rows)
    early = tables.event_rows(table, 500, [], "", 10)
    assert len(early) == 10 and max(r["seq"] for r in early) < table.column("seq")[500].as_py()


def test_decision_rows_newest_first(logdir):
    state = Fold().update(RunFollower(logdir / "alpha-run").poll())
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
    assert movers == [{"live-total", "replay-timer", "mode"}]
