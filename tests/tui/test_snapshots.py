"""SVG snapshots of the main screen on a fixed synthetic log (seed 0) and a fixed clock.

Regenerate after an intended change: ``pytest tests/tui --snapshot-update``.
"""

from __future__ import annotations

import pytest

from tui.app import EsperApp
from tui.source import resolve

from .conftest import FIXED_NOW, press_and_settle, wait_loaded


def make_app(run_dir, **kw) -> EsperApp:
    return EsperApp(resolve(run_dir), clock=lambda: FIXED_NOW, **kw)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_main_screen(snap_compare, run_dir, size):
    assert snap_compare(make_app(run_dir), terminal_size=size, run_before=wait_loaded)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_metrics_tab(snap_compare, run_dir, size):
    async def before(pilot):
        await wait_loaded(pilot)
        await press_and_settle(pilot, "2")

    assert snap_compare(make_app(run_dir), terminal_size=size, run_before=before)


def test_replay_at_second_panic(snap_compare, run_dir):
    async def before(pilot):
        await wait_loaded(pilot)
        await pilot.press("p", "p", "3")

    assert snap_compare(make_app(run_dir, replay=True), terminal_size=(80, 24), run_before=before)


def test_event_log_panic_filter(snap_compare, run_dir):
    async def before(pilot):
        await wait_loaded(pilot)
        await pilot.press("6", *["t"] * 7)  # kinds sorted: the 7th is governor_panic

    assert snap_compare(make_app(run_dir), terminal_size=(100, 30), run_before=before)


def test_diverged_ranks_on_rank_1(snap_compare, tmp_path):
    from .test_scope import write_ranked_run

    run = write_ranked_run(tmp_path, "split-ranks", diverge=True)

    async def before(pilot):
        await wait_loaded(pilot)
        await press_and_settle(pilot, "n")

    assert snap_compare(make_app(run), terminal_size=(100, 30), run_before=before)


def test_env_1_of_a_ppo_log(snap_compare, tmp_path):
    from .test_scope import write_env_run

    run = write_env_run(tmp_path)

    async def before(pilot):
        await wait_loaded(pilot)
        await press_and_settle(pilot, "e", "e")

    assert snap_compare(make_app(run), terminal_size=(100, 30), run_before=before)


def test_scalars_tab_filtered_smoothed_log(snap_compare, run_dir):
    async def before(pilot):
        await wait_loaded(pilot)
        await press_and_settle(pilot, "8", "slash", *"alpha", "enter", "w", "w", "y")

    assert snap_compare(make_app(run_dir), terminal_size=(100, 30), run_before=before)


def test_compare_two_runs(snap_compare, runs_dir):
    async def before(pilot):
        from tui.screens.compare import CompareScreen

        from .conftest import wait_for

        await wait_for(pilot, lambda: pilot.app.screen.query("#picker-table"))
        table = pilot.app.screen.query_one("#picker-table")
        await wait_for(pilot, lambda: all(str(table.get_row_at(i)[2]) != "…" for i in range(table.row_count)))
        names = [str(table.get_row_at(i)[1]) for i in range(table.row_count)]
        await pilot.press(*["j"] * names.index("alpha-run"), "m")
        await pilot.press(*["k"] * 5, *["j"] * names.index("beta-run"), "m", "c")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, CompareScreen) and pilot.app.screen.states)
        await press_and_settle(pilot, "slash", *"val_acc", "enter")

    assert snap_compare(EsperApp(resolve(runs_dir), clock=lambda: FIXED_NOW), terminal_size=(120, 36),
                        run_before=before)
