"""Rank and env selections of multi-stream runs: choices, checks, folds per selection, replay,
the shipped-figure reset, the rank banner, on real Arrow logs on disk."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pytest
from dash import Patch, no_update

from telemetry_schema.eventlog import EventLog
from telemetry_schema.fold import fold_tables
from telemetry_schema.reader import StreamFollower
from telemetry_schema.rundir import read_run
from telemetry_schema.runmodel import Scope, ScopedFold

from dashboard import tables
from dashboard.data import RunStore
from dashboard.run_view import (CHARTS, RunRequest, chart_outputs, header, rank_banner, selector_props,
                                selector_update, sync_selection, table_outputs)
from dashboard.selection import DEFAULT, BadSelection, Choices, scope_query
from dashboard.settings import DashboardConfig

from .multistream import write_multi_root, write_ppo_run
from .test_data import header_body, header_client

GIDS = list(CHARTS)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return write_multi_root(tmp_path_factory.mktemp("multi"), synth_events=2000, seed=3)


def folded(root, run_id, rank=0, env=None, rows=None):
    """The state of a scope of the run read whole (of its first ``rows`` events)."""
    log = EventLog(read_run(root / run_id))
    fold = ScopedFold(Scope(rank, env))
    fold.update(log.slice(0, len(log) if rows is None else rows))
    return fold.state


def points(fig, trace=0) -> int:
    return len(fig["data"][trace]["x"])


def store_of(root) -> RunStore:
    return RunStore(root, DashboardConfig(min_refresh_s=0))


def test_choices_of_each_kind_of_run(runs):
    store = store_of(runs)
    assert store.entry("ddp-agree").choices() == Choices(ranks=(0, 1), envs=(0,))
    assert store.entry("ppo-run").choices() == Choices(ranks=(0,), envs=(0, 1, 2))
    single = store.entry("single-run").choices()
    assert not single.multi_rank and not single.multi_env


@pytest.mark.parametrize("rank, env, expected", [(1, "all", Scope(1)), ("1", None, Scope(1)),
                                                  (0, 2, Scope(0, 2)), (0, "2", Scope(0, 2))])
def test_parse_accepts_what_the_run_has(rank, env, expected):
    assert Choices(ranks=(0, 1), envs=(0, 1, 2)).parse(rank, env) == expected


@pytest.mark.parametrize("rank, env", [(2, "all"), (-1, "all"), (True, "all"), ("1.0", "all"), ("x", "all"),
                                       (1.5, "all"), ([1], "all"), ({"a": 1}, "all"), ("9" * 50, "all"),
                                       ("١", "all"), (0, 3), (0, "zz"), (0, -1), (0, False)])
def test_parse_refuses_what_the_run_lacks(rank, env):
    with pytest.raises(BadSelection):
        Choices(ranks=(0, 1), envs=(0, 1, 2)).parse(rank, env)


def test_query_round_trip_and_bad_query_ignored():
    choices = Choices(ranks=(0, 1), envs=(0, 1, 2))
    for scope in (Scope(1, 2), Scope(0, 0), Scope(1), DEFAULT):
        assert choices.from_query(scope_query(scope)) == scope
    assert scope_query(DEFAULT) == "" and scope_query(Scope(1, 2)) == "?rank=1&env=2"
    assert choices.from_query("?rank=7&env=zz") == DEFAULT
    assert choices.from_query("?rank=1&env=9") == Scope(1)  # the good half is kept
    assert choices.from_query("?env=1&env=%00") == DEFAULT
    assert Choices().from_query("?env=0") == DEFAULT  # one env: nothing to choose


@pytest.mark.parametrize("run_id, rank, env", [("ddp-agree", 1, None), ("ddp-agree", 0, None),
                                               ("ppo-run", 0, 1), ("ppo-run", 0, 2), ("ppo-run", 0, 0),
                                               ("ppo-run", 0, None)])
def test_selection_state_equals_fold_of_that_stream(runs, run_id, rank, env):
    entry = store_of(runs).entry(run_id)
    entry.refresh()
    got = entry.state_at(None, Scope(rank, env))
    whole = read_run(runs / run_id)  # a plain fold of that stream, and of its rank for the run-wide facts
    want, run = fold_tables(whole, rank, env), fold_tables(whole, rank, None)
    assert (got.events, got.batches.length, got.epochs.length, got.rewards.length, len(got.decisions)) \
        == (want.events, want.batches.length, want.epochs.length, want.rewards.length, len(want.decisions))
    assert got.epochs["val_acc"].tolist() == want.epochs["val_acc"].tolist()
    assert len(got.ppo) == len(run.ppo) and got.task == run.task  # an env's view: the rank's PPO updates


def test_selection_folds_follow_a_growing_log_without_copying_it(tmp_path):
    """Folds of several scopes catch up from the run's one EventLog; none copies it."""
    src = write_ppo_run(tmp_path / "src", "ppo-run", envs=3, rounds=4)
    view = tmp_path / "view" / "ppo-run"
    (view / "events").mkdir(parents=True)
    data = {p.name: p.read_bytes() for p in (src / "events").iterdir()}
    for name, blob in data.items():  # two rounds of four on disk: cut after the 2nd flush
        (view / "events" / name).write_bytes(blob[:flush_end(blob, 2)])
    entry = store_of(tmp_path / "view").entry("ppo-run")
    entry.refresh()
    early = entry.state_at(None, Scope(0, 2)).rewards.length
    for name, blob in data.items():  # the writer appended the rest
        (view / "events" / name).write_bytes(blob)
    entry.refresh()
    tables_ = dict(entry.log.tables.tables)
    assert tables_["reward"].column(0).num_chunks > 1  # one chunk per poll: a copy would have combined them
    before = pa.total_allocated_bytes()
    for env in (None, 0, 1, 2):
        want = folded(tmp_path / "src", "ppo-run", 0, env)
        assert entry.state_at(None, Scope(0, env)).rewards.length == want.rewards.length
    assert all(entry.log.tables.tables[k] is t for k, t in tables_.items())
    assert pa.total_allocated_bytes() - before < sum(t.nbytes for t in tables_.values()) // 2
    assert 0 < early < folded(tmp_path / "src", "ppo-run", 0, 2).rewards.length


def flush_end(blob: bytes, flushes: int) -> int:
    """The length of the shortest prefix of a stream that holds its first ``flushes`` record
    batches (the whole stream when it has fewer)."""
    for n in range(1, len(blob) + 1):
        follower = StreamFollower(Path("s.arrows"), source=lambda offset, d=blob[:n]: pa.py_buffer(d[offset:]))
        if len(follower.poll()) >= flushes:
            return n
    return len(blob)


def test_replay_of_a_selection(runs):
    entry = store_of(runs).entry("ddp-agree")
    entry.refresh()
    total = entry.length
    for rows in (total // 3, total // 2, total // 5):  # forward, then back
        state = entry.state_at(rows, Scope(1))
        want = folded(runs, "ddp-agree", 1, rows=rows)
        assert (state.events, state.batches.length) == (want.events, want.batches.length)
    assert entry.length == read_run(runs / "ddp-agree").num_rows  # rows of both ranks


def test_charts_of_a_rank_and_memo_keyed_by_selection(runs):
    """Both ranks log as many events, so a memo keyed on events alone would mix them up."""
    store = store_of(runs)
    r0, r1 = folded(runs, "ddp-agree", 0), folded(runs, "ddp-agree", 1)
    assert r0.events == r1.events and r0.batches.length != r1.batches.length
    for rank, want in ((0, r0), (1, r1), (0, r0)):
        figs, _, _ = chart_outputs(store, RunRequest("ddp-agree", scope=Scope(rank)), {})
        assert points(figs[GIDS.index("g-loss")]) == want.batches.length
        assert figs[GIDS.index("g-acc")]["data"][1]["y"] == want.epochs["val_acc"].tolist()


def test_env_charts_keep_the_run_wide_ppo_panel(runs):
    store = store_of(runs)
    run = folded(runs, "ppo-run")
    for env in (1, 2, 0):
        figs, _, optional = chart_outputs(store, RunRequest("ppo-run", scope=Scope(0, env)), {})
        mine = folded(runs, "ppo-run", 0, env)
        assert points(figs[GIDS.index("g-reward")]) == mine.rewards.length == 4 * (env + 1)
        assert points(figs[GIDS.index("g-acc")]) == mine.epochs.length == 4
        assert points(figs[GIDS.index("g-ppo")]) == len(run.ppo) == 4  # env 1 and 2 log no update
        assert optional == [{}, {}, {}]
    figs, _, _ = chart_outputs(store, RunRequest("ppo-run"), {})
    assert points(figs[GIDS.index("g-reward")]) == run.rewards.length == 24


def test_a_new_selection_ships_whole_figures(runs):
    store = store_of(runs)
    req = RunRequest("ddp-agree", scope=Scope(0))
    _, shipped, _ = chart_outputs(store, req, {})
    again, shipped, _ = chart_outputs(store, req, shipped)
    assert all(f is no_update for f in again)  # same selection, nothing new
    other, shipped1, _ = chart_outputs(store, RunRequest("ddp-agree", scope=Scope(1)), shipped)
    assert all(isinstance(f, dict) for f in other)  # whole figures, no Patch against rank 0's
    assert shipped1["_selection"] == [1, None]
    # a Patch would have done for the alpha chart (same shape, rank 1's points): whole anyway
    back, _, _ = chart_outputs(store, RunRequest("ddp-agree", scope=Scope(0)), shipped1)
    assert not any(isinstance(f, Patch) for f in back) and all(isinstance(f, dict) for f in back)


def test_rank_alerts(runs):
    store = store_of(runs)
    for run_id in ("ddp-agree", "ddp-diverge", "ddp-dead", "single-run"):
        store.entry(run_id).refresh()
    assert not store.entry("ddp-agree").alerts() and not store.entry("single-run").alerts()
    diverge = store.entry("ddp-diverge").alerts()
    (d,) = diverge.divergences
    assert (d.rank, d.move, d.mine, d.base) == (1, 2, (5, "s0", "BLENDING"), (4, "s0", "BLENDING"))
    assert "rank 1 diverged at move 2" in d.describe() and not diverge.silent
    dead = store.entry("ddp-dead").alerts()
    assert dead.silent == ((1, 40.0),) and dead.divergences == ()  # rank 0 finished: not silent


def test_rank_that_never_wrote_is_missing(runs, tmp_path):
    shutil.copytree(runs / "ddp-agree", tmp_path / "half")
    for stream in (tmp_path / "half" / "events").glob("*.rank1.arrows"):
        stream.unlink()
    entry = store_of(tmp_path).entry("half")
    entry.refresh()
    assert entry.alerts().missing == (1,)
    assert entry.choices().ranks == (0, 1)  # the run started with two: rank 1 can still be looked at


def test_banner_text(runs):
    store = store_of(runs)
    text = str(header(store, "ddp-diverge", None).children[-1].to_plotly_json())
    assert "Ranks disagree" in text and "rank 1 diverged at move 2: s0 → BLENDING at epoch 5" in text
    dead = str(header(store, "ddp-dead", None, Scope(1)).children[-1].to_plotly_json())
    assert "Rank 1 is silent" in dead and "40 s" in dead
    assert rank_banner(store.entry("ddp-agree").alerts()).style == {"display": "none"}


def test_event_rows_of_a_selection(runs):
    log = EventLog(read_run(runs / "ppo-run"))
    rows = tables.event_rows(log, tables.find_events(log, "", ["reward"], env=2), 1000)
    assert len(rows) == folded(runs, "ppo-run", 0, 2).rewards.length == 12
    ranked = EventLog(read_run(runs / "ddp-agree"))
    rank1 = tables.event_rows(ranked, tables.find_events(ranked, "", ["batch_metrics"], rank=1), 1000)
    assert len(rank1) == folded(runs, "ddp-agree", 1).batches.length == 30
    store = store_of(runs)  # the run page: the scope's events only, run-wide kinds in every env
    _, rows, _, _ = table_outputs(store, RunRequest("ppo-run", scope=Scope(0, 1)), [], "")
    assert {r["kind"] for r in rows} >= {"reward", "run_started", "run_finished"}
    assert sum(r["kind"] == "reward" for r in rows) == 8 and not any(r["kind"] == "ppo_update" for r in rows)


def test_sync_selection_between_url_and_dropdowns():
    choices = Choices(ranks=(0, 1), envs=(0, 1, 2))
    # a dropdown changed: the URL follows (no_update when it already says so)
    assert sync_selection(choices, 1, 2, "", {"sel-rank.value"}) == ("?rank=1&env=2", no_update, no_update)
    assert sync_selection(choices, 1, "all", "?rank=1", {"sel-rank.value"}) == (no_update, no_update, no_update)
    # back/forward changed the URL alone: the dropdowns follow
    assert sync_selection(choices, 1, 2, "", {"run-url.search"}) == (no_update, 0, "all")
    # a bad URL is corrected to what is shown
    assert sync_selection(choices, 0, "all", "?rank=9", {"run-url.search"}) == ("", no_update, no_update)
    # batched with a dropdown change, the dropdown wins
    assert sync_selection(choices, 1, "all", "", {"run-url.search", "sel-rank.value"})[0] == "?rank=1"
    with pytest.raises(BadSelection):
        sync_selection(choices, 5, "all", "", {"sel-rank.value"})


@pytest.mark.parametrize("rank, env", [(5, "all"), ("1; drop", "all"), (None, 7), (0, "../../etc"), ([0], "all")])
def test_forged_selection_is_refused(runs, rank, env):
    client = header_client(runs)
    resp = client.post("/_dash-update-component", json=header_body("ddp-agree", rank, env))
    assert resp.status_code == 204
    ok = client.post("/_dash-update-component", json=header_body("ddp-agree", 1, "all"))
    assert ok.status_code == 200 and b"1 of 2" in ok.data


def test_pickers_hidden_for_one_stream_and_not_resent_when_current():
    ranks, rank_style, envs, env_style = selector_props(Choices(ranks=(0, 1), envs=(0,)))
    assert [o["value"] for o in ranks] == [0, 1] and rank_style == {} and env_style == {"display": "none"}
    one = selector_props(Choices())
    assert one[1] == one[3] == {"display": "none"}
    assert selector_update(Choices(ranks=(0, 1)), ranks, envs) == (no_update,) * 4
    grown = selector_update(Choices(ranks=(0, 1, 2)), ranks, envs)  # a third rank started writing
    assert [o["value"] for o in grown[0]] == [0, 1, 2]
