"""Fixtures for the esper-tui tests: small synthetic runs (fixed seeds) and app helpers."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

import pytest

from telemetry_schema.fold import RunState, fold_tables
from telemetry_schema.rundir import read_run
from telemetry_schema.synth import SynthConfig, generate
from telemetry_schema.tables import KindTables


@pytest.fixture(autouse=True)
def _unfreeze_gc():
    """``esper-tui``'s start-up freezes the objects it made (``tui.cli.StartupGC``); in the
    test process, that would keep every earlier test's cyclic garbage for good."""
    yield
    gc.unfreeze()

FIXED_NOW = 1_700_000_000.0 + 86_400.0
"""The clock every app under test sees (the synthetic runs of seed 0 start at 1.7e9)."""


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory) -> Path:
    """A finished 10k-event synthetic run (seed 0): panics, a rollback, gate failures."""
    return generate(tmp_path_factory.mktemp("runs"), SynthConfig(events=10_000, seed=0, run_id="synth-run"))


@pytest.fixture(scope="session")
def run_state(run_dir) -> RunState:
    """The fold of the whole run, computed without the TUI: what the panels must show."""
    return fold_tables(read_run(run_dir))


@pytest.fixture(scope="session")
def runs_dir(tmp_path_factory) -> Path:
    """Three runs (one broken) in one directory, for the picker."""
    out = tmp_path_factory.mktemp("many")
    generate(out, SynthConfig(events=3_000, seed=1, run_id="alpha-run"))
    generate(out, SynthConfig(events=3_000, seed=2, run_id="beta-run", finish=False))
    broken = out / "broken-run" / "events"
    broken.mkdir(parents=True)
    (broken / "run_started.rank0.arrows").write_bytes(b"this is not an arrow stream at all")
    return out


def run_events(tables: KindTables) -> list[dict]:
    """Every event of a run as a dict (its ``kind``, envelope and payload, no wall time), in the
    run's order, computed here without ``EventLog``: by sequence number for one rank, by (wall
    time, rank, sequence number) for several. Index ``p`` is the event at position ``p``."""
    rows = []
    for kind in tables.kinds:
        table = tables.table(kind)
        walls = table.column("wall_time").cast("int64").to_pylist()
        for wall, row in zip(walls, table.drop_columns(["wall_time"]).to_pylist()):
            rows.append((wall, {"kind": kind, **row}))
    one_rank = len({r["rank"] for _, r in rows}) <= 1
    rows.sort(key=lambda wr: (wr[1]["seq"],) if one_rank else (wr[0], wr[1]["rank"], wr[1]["seq"]))
    return [r for _, r in rows]


async def wait_for(pilot, predicate, timeout: float = 10.0) -> None:
    """Let the app run until ``predicate()`` holds (fails the test after ``timeout``)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError("timed out waiting for the app")
        await pilot.pause(0.05)
    await pilot.pause()


async def wait_loaded(pilot) -> None:
    """Until the log is loaded and every plot on screen is drawn (plots draw in workers)."""
    from tui.widgets.plot import AsyncPlot

    await wait_for(pilot, lambda: pilot.app.session.loaded)
    await pilot.pause(0.1)  # let a resize to the big layout (more plots) take effect first
    await wait_for(pilot, lambda: all(plots_settled(p) for p in pilot.app.screen.query(AsyncPlot)))
    await pilot.wait_for_scheduled_animations()
    await pilot.pause(0.2)  # DataTable measures new rows' column widths on a later refresh


def plots_settled(plot) -> bool:
    """A plot on screen has drawn for its current spec and size; one off screen needs nothing."""
    if plot.region.area == 0:
        return True
    return not plot.pending and plot._drawn is not None


async def press_and_settle(pilot, *keys: str) -> None:
    """Press keys, then wait until every plot on screen is drawn."""
    from tui.widgets.plot import AsyncPlot

    await pilot.press(*keys)
    await pilot.pause(0.1)
    await wait_for(pilot, lambda: all(plots_settled(p) for p in pilot.app.screen.query(AsyncPlot)))
