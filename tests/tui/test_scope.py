"""The rank and environment selector, driven by the pilot on multi-rank and multi-env logs on disk.

Every check compares what the app shows with ``Fold(rank=..., env=...)`` of the same events.
"""

from __future__ import annotations

import io
import threading

import pytest
from textual.widgets import DataTable, TabbedContent

from telemetry_schema import events as ev
from telemetry_schema.eventlog import EventLog
from telemetry_schema.fold import Fold
from telemetry_schema.rundir import create_run, read_run
from telemetry_schema.runmodel import Scope, ScopedFold, ScopedReplay, refold
from telemetry_schema.writer import WriterConfig
from tui.screens.help import help_table
from tui.widgets.metrics import draw_acc
from tui.widgets.plot import AsyncPlot
from tui.widgets.policy import PolicyPanel
from tui.widgets.scopebar import ScopeBar

from .conftest import press_and_settle, run_events, wait_for, wait_loaded
from .test_app import cells, header, make_app, text_of

SLOTS = ["r0c0", "r0c1"]
MOVES = [(1, "r0c0", "GERMINATED"), (2, "r0c0", "TRAINING"), (4, "r0c0", "BLENDING"), (5, "r0c1", "GERMINATED")]
"""(epoch, slot, to_stage): the lifecycle every rank of the agreeing run goes through."""
FIXED = {"config": WriterConfig(heartbeat_s=0), "clock": lambda: 0.0, "wall_clock": lambda: 1_700_000_000.0}
"""Writer options: no heartbeats, every event at one fixed wall time (snapshots stay stable)."""


def emit_epoch(w, epoch: int, moves, val_acc: float, env: int = 0) -> None:
    """One epoch's lifecycle moves (a germination first where a seed starts) and its result."""
    for e, slot, stage in moves:
        if e != epoch:
            continue
        seed = f"{slot}-s{env}"
        if stage == "GERMINATED":
            w.emit(ev.SeedGerminated(blueprint="conv_light", params=100), slot=slot, seed=seed, epoch=epoch, env=env)
        w.emit(ev.StageChanged(from_stage="?", to_stage=stage), slot=slot, seed=seed, epoch=epoch, env=env)
    w.emit(ev.EpochCompleted(train_loss=1.0, train_acc=50.0, val_loss=1.0, val_acc=val_acc), epoch=epoch, env=env)


def write_ranked_run(runs_dir, run_id: str, *, diverge: bool = False, epochs=(6, 5), finish: bool = True):
    """A 2-rank run: rank 1 is one epoch behind; with ``diverge`` it holds r0c0 where rank 0 blends.

    Returns the run directory, or (directory, open writers) when ``finish`` is False.
    """
    writers = []
    for rank in (0, 1):
        started = ev.RunStarted(run_id=run_id, task="synthetic-images", topology="cnn", host_params=10,
                                slot_ids=SLOTS, world_size=2, heartbeat_s=3600.0)
        run = create_run(runs_dir, started, rank=rank, **FIXED)
        moves = list(MOVES)
        if diverge and rank == 1:
            moves[2] = (4, "r0c0", "HOLDING")
        for epoch in range(1, epochs[rank] + 1):
            emit_epoch(run.writer, epoch, moves, val_acc=10.0 * rank + epoch)
        run.writer.flush()
        writers.append(run)
    if not finish:
        return runs_dir / run_id, writers
    for run in writers:
        run.close()
    return runs_dir / run_id


def write_env_run(runs_dir, run_id: str = "ppo-envs"):
    """A PPO-like log: 3 envs in one stream (env k runs 3 + k epochs, its own lifecycle), and the
    learner's run-wide events (ppo_update, scalars) with the default env 0."""
    started = ev.RunStarted(run_id=run_id, task="synthetic-images", topology="cnn", host_params=10,
                            slot_ids=SLOTS, num_envs=3, heartbeat_s=3600.0)
    with create_run(runs_dir, started, **FIXED) as run:
        w = run.writer
        for epoch in range(1, 6):
            for env in range(3):
                if epoch <= 3 + env:
                    moves = MOVES[:env + 2]  # env 0 stops at TRAINING, env 1 blends, env 2 germinates r0c1
                    emit_epoch(w, epoch, moves, val_acc=10.0 * env + epoch, env=env)
                    w.emit(ev.ControllerDecision(controller="policy", op="WAIT"), epoch=epoch, env=env)
                    w.emit(ev.Reward(total=float(env), components={"rent": -0.1 * env}), epoch=epoch, env=env)
            w.emit(ev.PPOUpdate(policy_loss=0.1 * epoch, value_loss=1.0, entropy=1.5, approx_kl=0.01,
                                clip_fraction=0.2, explained_variance=0.1, lr=3e-4, head_entropy={"op": 1.0},
                                early_stopped=False), step=epoch)
            w.scalar("ppo/reward_per_step", float(epoch), step=epoch)
    return runs_dir / run_id


def folded(run, rank: int = 0, env: int | None = None):
    fold = Fold(rank=rank, env=env)
    fold.update(read_run(run))
    return fold.state


def slot_stages(app) -> dict[str, str]:
    table = app.query_one("#slots", DataTable)
    return {cells(table, i)[0]: cells(table, i)[3] for i in range(table.row_count)}


def expected_stages(state) -> dict[str, str]:
    return {sid: state.slots[sid].stage if sid in state.slots else "DORMANT" for sid in SLOTS}


def bar_text(app) -> str:
    return text_of(app.query_one(ScopeBar))


async def press(pilot, *keys: str) -> None:
    await pilot.press(*keys)
    await wait_for(pilot, lambda: pilot.app.session.pending is None)
    await pilot.pause()


# -- ranks -------------------------------------------------------------------------------------

async def test_rank_keys_show_each_ranks_fold(tmp_path):
    run = write_ranked_run(tmp_path, "two-ranks")
    want = {r: folded(run, rank=r) for r in (0, 1)}
    assert want[0].epoch == 6 and want[1].epoch == 5  # the two ranks differ where it shows
    app = make_app(run)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_loaded(pilot)
        assert app.query_one(ScopeBar).display
        assert "rank 0/2" in header(app) and "epoch 6" in header(app) and "DIVERGED" not in header(app)
        for rank in (1, 0, 1):
            await press(pilot, "n")
            st = app.session.state
            assert app.session.scope == Scope(rank=rank)
            assert f"rank {rank}/2" in header(app) and f"epoch {want[rank].epoch} " in header(app)
            assert st.epochs["val_acc"].tolist() == want[rank].epochs["val_acc"].tolist()
            assert slot_stages(app) == expected_stages(want[rank])
        await press_and_settle(pilot, "2")  # rank 1's accuracy curve, then rank 0's
        acc = app.query_one("#metrics .plot-acc", AsyncPlot)
        assert acc.spec == draw_acc(want[1], app.chart) and acc._drawn[0] == acc.spec
        await press(pilot, "N")
        await press_and_settle(pilot)
        assert app.session.scope == Scope(rank=0)
        assert app.session.state.epochs["val_acc"].tolist() == want[0].epochs["val_acc"].tolist()
        assert acc.spec == draw_acc(want[0], app.chart) != draw_acc(want[1], app.chart) and acc._drawn[0] == acc.spec
        assert app.check_action("rank", (1,)) and not app.check_action("env", (1,))
        assert "n/N" in bar_text(app) and "env" not in bar_text(app)


async def test_event_log_keeps_to_the_chosen_rank_and_env(tmp_path):
    from tui.widgets.eventlog import EventList

    run = write_ranked_run(tmp_path, "two-ranks")
    every = run_events(read_run(run))
    app = make_app(run)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("6")
        events = app.query_one(EventList)
        rank0 = [p for p, e in enumerate(every) if e["rank"] == 0]
        assert events.rows.tolist() == rank0 and 0 < len(rank0) < len(every)
        await press(pilot, "n")
        await pilot.pause()
        assert events.rows.tolist() == [p for p, e in enumerate(every) if e["rank"] == 1]
        assert "rank 1" in text_of(app.query_one("#event-filter-line"))
    envs_run = write_env_run(tmp_path)
    every = run_events(read_run(envs_run))
    app = make_app(envs_run)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("6")
        events = app.query_one(EventList)
        assert events.count == len(every) and events.rows is None  # every env
        await press(pilot, "e", "e")  # all -> 0 -> 1
        await pilot.pause()
        assert app.session.scope.env == 1
        # env 1's events, and those of kinds about the whole run (run start and end: no env)
        env1 = [p for p, e in enumerate(every) if e.get("env", 1) == 1]
        assert events.rows.tolist() == env1
        assert {every[p]["kind"] for p in env1 if "env" not in every[p]} == {"run_started", "run_finished"}
        assert any(e.get("env") == 0 for e in every) and any(e.get("env") == 2 for e in every)


async def test_divergence_names_the_rank_the_slot_and_the_epoch(tmp_path):
    run = write_ranked_run(tmp_path, "split-ranks", diverge=True)
    assert "rank 1 diverged" in folded(run).ranks.divergence
    app = make_app(run)
    async with app.run_test(size=(160, 40)) as pilot:
        await wait_loaded(pilot)
        assert "DIVERGED: rank 1 @ r0c0 epoch 4" in header(app)
        bar = bar_text(app)
        assert " 1✗ " in bar and " 0✗ " not in bar
        assert "rank 1 diverged at move 2: r0c0 → HOLDING at epoch 4 (rank 0: r0c0 → BLENDING at epoch 4)" in bar
        await press(pilot, "n")
        assert slot_stages(app)["r0c0"] == "HOLDING" == folded(run, rank=1).slots["r0c0"].stage
        assert "DIVERGED: rank 1" in header(app)  # the check covers every rank, whichever is shown


async def test_rank_switch_keeps_following_a_live_run(tmp_path):
    run, writers = write_ranked_run(tmp_path, "live-ranks", finish=False)
    try:
        app = make_app(run, poll_interval=0.05)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_loaded(pilot)
            await press(pilot, "n")
            assert app.session.state.epoch == 5
            emit_epoch(writers[1].writer, 6, MOVES, val_acc=16.0)
            writers[1].writer.flush()
            await wait_for(pilot, lambda: app.session.state.epoch == 6)
            await wait_for(pilot, lambda: "epoch 6 " in header(app))
            assert app.session.state.epochs["val_acc"].tolist()[-1] == 16.0
            assert app.session.state.ranks.count == 2
    finally:
        for w in writers:
            w.close()


async def test_rank_switch_in_replay_keeps_the_cursor(tmp_path):
    run = write_ranked_run(tmp_path, "replay-ranks")
    log = EventLog(read_run(run))
    every = run_events(log.tables)
    app = make_app(run, replay=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("]", "]", "]")  # just after rank 0's third epoch
        cursor = app.session.cursor
        await press(pilot, "n")
        assert app.session.replay is not None and app.session.cursor == cursor
        want = Fold(rank=1)
        want.update(log.slice(0, cursor))
        assert app.session.state.epochs["val_acc"].tolist() == want.state.epochs["val_acc"].tolist()
        await pilot.press("]")  # next epoch of rank 1, not of rank 0
        last = every[app.session.cursor - 1]
        assert app.session.cursor > cursor and last["kind"] == "epoch_completed" and last["rank"] == 1


async def test_a_long_log_refolds_in_a_worker(tmp_path, monkeypatch):
    import tui.app

    run = write_ranked_run(tmp_path, "worker-ranks")
    release = threading.Event()

    def slow_refold(*args):
        release.wait(10)
        return refold(*args)

    monkeypatch.setattr("telemetry_schema.runmodel.SYNC_EVENTS", 0)  # every log counts as long
    monkeypatch.setattr(tui.app, "refold", slow_refold)
    app = make_app(run)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("n")
        await pilot.pause()
        # the UI answers while the worker folds: the choice shows at once, the data is still rank 0's
        assert app.session.pending == Scope(rank=1) and app.session.scope == Scope(rank=0)
        assert "rank 1/2 folding…" in header(app) and "epoch 6 " in header(app)
        await pilot.press("2")
        assert app.query_one(TabbedContent).active == "tab-metrics"
        release.set()
        await wait_for(pilot, lambda: app.session.pending is None)
        await wait_for(pilot, lambda: "epoch 5 " in header(app))
        assert app.session.scope == Scope(rank=1) and "folding" not in header(app)
        assert app.session.state.epochs["val_acc"].tolist() == folded(run, rank=1).epochs["val_acc"].tolist()


async def test_single_rank_single_env_runs_have_no_selector(run_dir, run_state):
    app = make_app(run_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_loaded(pilot)
        assert not app.query_one(ScopeBar).display and app.query_one(ScopeBar).region.height == 0
        assert not app.check_action("rank", (1,)) and not app.check_action("env", (1,))
        await pilot.press("n", "e", "E", "N")
        await pilot.pause()
        assert app.session.scope == Scope() and app.session.pending is None
        assert "rank" not in header(app) and "env " not in header(app)
        assert app.session.state.epoch == run_state.epoch


# -- environments ------------------------------------------------------------------------------

async def test_env_keys_show_each_envs_fold_and_keep_the_ppo_curves(tmp_path):
    run = write_env_run(tmp_path)
    every = folded(run)
    app = make_app(run)
    async with app.run_test(size=(160, 50)) as pilot:
        await wait_loaded(pilot)
        assert "env all/3" in header(app) and "rank" not in header(app)
        assert app.check_action("env", (1,)) and not app.check_action("rank", (1,))
        assert len(app.session.state.epochs) == len(every.epochs) == 3 + 4 + 5
        for env in (0, 1, 2):
            await press(pilot, "e")
            want = folded(run, env=env)
            st = app.session.state
            assert app.session.scope == Scope(env=env) and f"env {env}/3" in header(app)
            assert len(st.epochs) == 3 + env and st.epoch == want.epoch == 3 + env
            assert f"epoch {3 + env} " in header(app)
            assert st.epochs["val_acc"].tolist() == want.epochs["val_acc"].tolist()
            assert slot_stages(app) == expected_stages(want)
            assert st.rewards["total"].tolist() == want.rewards["total"].tolist() == [float(env)] * (3 + env)
            # run-wide: written once by the learner (env 0), shown whichever env is chosen
            assert len(st.ppo) == 5 and st.ppo["policy_loss"].tolist() == every.ppo["policy_loss"].tolist()
            assert st.run_id == "ppo-envs" and st.end_status == "completed"
            assert "ppo/reward_per_step" in st.scalars
            await pilot.press("7")
            await pilot.pause()
            policy = text_of(app.query_one(PolicyPanel))
            assert "PPO updates (5)" in policy and f"reward ({3 + env} steps)" in policy
            await pilot.press("1")
        await press(pilot, "e")
        assert app.session.scope == Scope(env=None) and "env all/3" in header(app)
        await press(pilot, "E")
        assert app.session.scope == Scope(env=2)


async def test_env_switch_redraws_the_history_tables(tmp_path):
    run = write_env_run(tmp_path)
    app = make_app(run)
    async with app.run_test(size=(160, 50)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("5")
        await pilot.pause()
        decisions = app.query_one("#decisions", DataTable)
        assert decisions.row_count == 3 + 4 + 5
        for env in (0, 1, 2):  # each env has one decision more than the last: rows must be replaced
            await press(pilot, "e")
            assert decisions.row_count == 3 + env
            assert {cells(decisions, i)[1] for i in range(3 + env)} == {str(env)}


# -- pieces without the app ----------------------------------------------------------------------

@pytest.mark.parametrize("scope", [Scope(0, None), Scope(1, None), Scope(0, 1)], ids=str)
def test_scoped_replay_backward_seek_matches_a_fresh_fold(tmp_path, scope):
    run = write_ranked_run(tmp_path, "seek-ranks") if scope.env is None else write_env_run(tmp_path)
    log = EventLog(read_run(run))
    replay = ScopedReplay(log, len(log), scope)
    epochs = [p for p, e in enumerate(run_events(log.tables))
              if e["kind"] == "epoch_completed" and e["rank"] == scope.rank and scope.env in (None, e["env"])]
    cursor = epochs[2] + 1  # just after the scope's third epoch: a backward seek from the end
    replay.seek(cursor)
    want = Fold(rank=scope.rank, env=scope.env)
    want.update(log.slice(0, cursor))
    st = replay.state
    assert replay.cursor == cursor and len(st.epochs) == 3 < len(epochs)
    assert st.epochs["val_acc"].tolist() == want.state.epochs["val_acc"].tolist()
    assert st.epoch == want.state.epoch and expected_stages(st) == expected_stages(want.state)
    assert st.run_id == run.name  # run_started is run-wide: kept whichever env is chosen
    assert replay.positions("epoch").tolist() == epochs  # seek targets keep to the scope too


def test_help_lists_the_scope_keys():
    from rich.console import Console

    console = Console(width=200, record=True, file=io.StringIO())
    console.print(help_table())
    text = console.export_text()
    assert "n / N" in text and "e / E" in text


@pytest.mark.parametrize("env", [None, 0, 2])
def test_scoped_fold_in_small_pieces_equals_one_fold(tmp_path, env):
    log = EventLog(read_run(write_env_run(tmp_path)))
    fold = ScopedFold(Scope(env=env))
    for start in range(0, len(log), 7):
        fold.update(log.slice(start, start + 7))
    want = Fold(env=env)
    want.update(log.tables)
    st, ws = fold.state, want.state
    assert fold.rows == len(log) and len(st.epochs) == len(ws.epochs) > 0
    for name in ("epoch", "val_acc", "seq"):
        assert st.epochs[name].tolist() == ws.epochs[name].tolist()
    assert expected_stages(st) == expected_stages(ws) and st.epoch == ws.epoch
    assert [d.seq for d in st.decisions] == [d.seq for d in ws.decisions]
    assert st.rewards["total"].tolist() == ws.rewards["total"].tolist()
