"""What a user saw go wrong, driven through the real app on synthetic logs."""

from __future__ import annotations

from textual.widgets import DataTable

from tui.app import EsperApp
from tui.source import resolve

from .conftest import FIXED_NOW, wait_for, wait_loaded


def make_app(path, **kw) -> EsperApp:
    return EsperApp(resolve(path), clock=lambda: FIXED_NOW, **kw)


def shown_line(widget, y: int) -> str:
    return "".join(segment.text for segment in widget.render_line(y))


async def test_slot_columns_keep_their_gap_when_seeds_grow_wider(run_dir):
    """The table is first laid out while every slot is dormant ('—'); once seeds germinate,
    their ids, blueprints and stages are wider and must still be shown whole, one space apart."""
    app = make_app(run_dir, replay=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_loaded(pilot)
        table = app.query_one("#slots", DataTable)
        await pilot.press(*["full_stop"] * 3)  # run_started: every slot, each still empty
        await pilot.pause(0.2)
        assert table.row_count == 3 and all(str(table.get_row_at(r)[1]).strip() == "—" for r in range(3))
        await pilot.press("G")
        await wait_for(pilot, lambda: app.session.cursor == app.session.length)
        await pilot.pause(0.2)
        assert any(str(table.get_row_at(r)[1]).strip() != "—" for r in range(table.row_count))
        widths = [c.get_render_width(table) for c in table.columns.values()]
        for r in range(table.row_count):
            line, at = shown_line(table, r + 1), 0
            for cell, width in zip(table.get_row_at(r), widths):
                assert line[at:at + width].rstrip() == str(cell).rstrip(), (line, str(cell))
                assert line[at + width - 1] == " "  # the gap before the next column
                at += width


async def test_header_counts_completed_epochs_as_the_console_does(run_dir):
    """One event into epoch 2 (a batch), the run has completed epoch 1: ``esper train`` prints
    'epoch 1/N', and so does the header (not the epoch under way)."""
    from .test_app import header

    app = make_app(run_dir, replay=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("right_square_bracket", "full_stop")
        await wait_for(pilot, lambda: app.session.cursor > 1)
        state = app.session.state
        assert state.epoch == 2 and state.epochs["epoch"].tolist() == [1]
        assert " epoch 1 " in header(app) and "epoch 2" not in header(app)


async def test_a_seek_that_finds_nothing_says_so_and_stays(run_dir):
    """Following a finished run, the cursor is past every event: p, x and s find nothing later."""
    app = make_app(run_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_loaded(pilot)
        for key, words in (("p", "no later panic"), ("x", "no later gate failure"), ("s", "no later stage change")):
            await pilot.press(key)
            await pilot.pause()
            assert [n.message for n in app._notifications][-1] == words
            assert app.session.replay is None and app.session.cursor == app.session.length
        await pilot.press("g", "P")  # replaying from the first event: nothing earlier
        await wait_for(pilot, lambda: app.session.replay is not None)
        await pilot.pause()
        assert [n.message for n in app._notifications][-1] == "no earlier panic" and app.session.cursor == 0


async def test_the_event_list_goes_to_each_seek(run_dir):
    """A seek (even with follow off, even made on another tab) shows and highlights the event
    the replay cursor is at: the panic sought."""
    from tui.widgets.eventlog import EventList

    app = make_app(run_dir, replay=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_loaded(pilot)
        events = app.query_one(EventList)

        async def highlighted() -> str:
            await wait_for(pilot, lambda: events.count == app.session.cursor)
            await pilot.pause(0.2)
            top = int(events.scroll_offset.y)
            assert events.cursor == app.session.cursor - 1 and top <= events.cursor < top + events.size.height
            return shown_line(events, events.cursor - top)

        await pilot.press("6", "p")
        assert "governor_panic" in await highlighted()
        await pilot.press("f", "p")  # follow off: a seek still moves the list
        first = app.session.cursor
        assert "governor_panic" in await highlighted()
        await pilot.press("3", "P", "6")
        assert app.session.cursor < first and "governor_panic" in await highlighted()


def test_timeline_legend_names_are_whole_at_any_width(run_state):
    from tui.widgets.timeline import timeline_lines

    for width in (60, 80, 160):
        lines = [line.plain for line in timeline_lines(run_state, width)]
        legend = " ".join(lines[len(run_state.slot_ids) + 2:])  # after the lanes, governor and axis
        words = legend.replace("█", " ").replace("◆", " ").replace("✗", " ").replace("↺", " ").replace("!", " ").split()
        assert words == ["germinated", "training", "blending", "holding", "fossilized", "pruned", "embargoed",
                         "fossilized", "pruned", "rollback", "panic"], width
        assert all(len(line.rstrip()) <= width for line in lines), width
