"""The run picker's filter (text, status:NAME, tag:NAME: the run list rule both viewers use) and
tagging a run from the picker (tags.json rewritten, the row and the filter follow)."""

from __future__ import annotations

import json

import pytest
from textual.widgets import DataTable

from telemetry_schema.runs import parse_filter
from tui.app import EsperApp
from tui.source import resolve

from tests.viewers.logs import NOW, write_all
from .conftest import wait_for
from .test_app import cells


@pytest.fixture
def logdir(tmp_path):
    return write_all(tmp_path / "runs")


def test_parse_filter_takes_status_and_tag_words():
    assert parse_filter("crashed tag:baseline lr") == ("crashed lr", "", "baseline")
    assert parse_filter(" status:crashed ") == ("", "crashed", "")
    assert parse_filter("status: tag:") == ("status: tag:", "", "")


def shown(table: DataTable) -> dict[str, list[str]]:
    return {cells(table, i)[1]: cells(table, i)[1:] for i in range(table.row_count)}


async def test_the_picker_filters_by_status_text_and_tag_and_tags_a_run(logdir):
    app = EsperApp(resolve(logdir), clock=lambda: NOW)
    async with app.run_test(size=(160, 40)) as pilot:
        table = app.screen.query_one("#picker-table", DataTable)
        await wait_for(pilot, lambda: table.row_count == 7 and all(r[1] != "…" for r in shown(table).values()))
        await pilot.press("slash", *"status:crashed", "enter")
        await wait_for(pilot, lambda: table.row_count == 1)
        assert list(shown(table)) == ["crashed"]

        await pilot.press("t", *"baseline, lr 1e-3", "enter")
        await wait_for(pilot, lambda: shown(table)["crashed"][-1] == "baseline, lr 1e-3")
        assert json.loads((logdir / "crashed" / "tags.json").read_text()) == ["baseline", "lr 1e-3"]

        await pilot.press("slash", "ctrl+u", *"tag:baseline", "enter")
        await wait_for(pilot, lambda: list(shown(table)) == ["crashed"])
        await pilot.press("slash", "ctrl+u", *"pp", "enter")  # text in the run id: ppo
        await wait_for(pilot, lambda: list(shown(table)) == ["ppo"])

        await pilot.press("t", *"[bad]", "enter")  # not a tag: refused, the file untouched
        await pilot.pause(0.2)
        assert not (logdir / "ppo" / "tags.json").exists()
        await pilot.press("escape", "slash", "ctrl+u", "enter")
        await wait_for(pilot, lambda: table.row_count == 7)
