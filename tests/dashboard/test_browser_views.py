"""What a user sets and sees on the run and compare pages, in headless Chromium: view state kept
across a reload, the seek buttons, the dark theme, the configuration, the metric picker."""

from __future__ import annotations

import pytest

from telemetry_schema.eventlog import EventLog
from telemetry_schema.rundir import read_run

from dashboard.app import create_app
from dashboard.figures import TEMPLATES
from dashboard.settings import DashboardConfig

from .conftest import pick_option

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect  # noqa: E402

expect.set_options(timeout=20_000)  # the suite shares 2 cores with other engineers' runs

LAYOUT = "([id, path]) => path.split('.').reduce((o, k) => o && o[k], document.querySelector(`#${id} .js-plotly-plot`))"


@pytest.fixture(scope="module")
def app_url(logdir, serve):
    return serve(create_app(logdir, DashboardConfig(poll_ms=500, min_refresh_s=0.2))).url


def layout_value(page, gid: str, path: str):
    return page.evaluate(LAYOUT, [gid, path])


def wait_layout(page, gid: str, path: str, want) -> None:
    page.wait_for_function(f"() => {{ const f = {LAYOUT}; return f([{gid!r}, {path!r}]) === {want!r}; }}",
                           timeout=20_000)


def pick(page, dropdown: str, text: str) -> None:
    """Choose the option ``text`` of a dcc.Dropdown."""
    pick_option(page, dropdown, text)


def test_view_state_survives_a_reload(page, app_url):
    page.goto(f"{app_url}/run/alpha-run")
    wait_layout(page, "g-loss", "layout.xaxis.title.text", "epoch")
    page.locator("#xaxis").get_by_text("step", exact=True).click()
    page.locator("#logy").get_by_text("log scale").click()
    page.locator("#smoothing [role=slider]").focus()
    page.keyboard.press("End")  # smoothing 0.99
    expect(page.locator("#smoothing [role=slider]")).to_have_attribute("aria-valuenow", "0.99")
    page.locator("#metric-filter").fill("^val")
    page.locator("#metric-filter").press("Enter")
    pick(page, "metric-pick", "val_loss")
    wait_layout(page, "g-loss", "layout.yaxis.type", "log")
    wait_layout(page, "g-metrics", "data.0.name", "val_loss")
    smoothed = layout_value(page, "g-loss", "data.1.y.1")  # train loss, smoothed
    page.reload()
    wait_layout(page, "g-loss", "layout.xaxis.title.text", "step")
    wait_layout(page, "g-loss", "layout.yaxis.type", "log")
    wait_layout(page, "g-metrics", "data.0.name", "val_loss")
    expect(page.locator("#xaxis input[value=step]")).to_be_checked()
    expect(page.locator("#smoothing [role=slider]")).to_have_attribute("aria-valuenow", "0.99")
    expect(page.locator("#metric-filter")).to_have_value("^val")
    wait_layout(page, "g-loss", "data.1.y.1", smoothed)
    assert not page.errors


def test_seek_buttons_move_the_replay_cursor_to_a_panic(page, app_url, logdir):
    log = EventLog(read_run(logdir / "alpha-run"))
    panics = log.positions("governor_panic").tolist()
    assert len(panics) >= 2
    page.goto(f"{app_url}/run/alpha-run")
    expect(page.locator("#cursor-info")).to_contain_text("final:")
    page.get_by_text("Live", exact=True).click()
    page.locator("#seek-prev-panic").click()  # from the end, following live: replay at the last panic
    expect(page.locator("#cursor-info")).to_contain_text(f"replay: event {panics[-1] + 1:,} /")
    expect(page.locator("#mode input[value=replay]")).to_be_checked()
    page.locator("#seek-prev-panic").click()
    expect(page.locator("#cursor-info")).to_contain_text(f"replay: event {panics[-2] + 1:,} /")
    page.locator("#seek-next-panic").click()
    expect(page.locator("#cursor-info")).to_contain_text(f"replay: event {panics[-1] + 1:,} /")
    page.locator("#seek-next-panic").click()  # none after the last: the page says so, the cursor stays
    expect(page.locator("#seek-note")).to_have_text("no later panic")
    expect(page.locator("#cursor-info")).to_contain_text(f"replay: event {panics[-1] + 1:,} /")
    assert not page.errors


def test_dark_theme_follows_the_browser_preference(browser, app_url):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, color_scheme="dark")
    try:
        page = context.new_page()
        page.goto(f"{app_url}/run/alpha-run")
        dark = TEMPLATES["dark"]["layout"]["paper_bgcolor"]
        wait_layout(page, "g-loss", "_fullLayout.paper_bgcolor", dark)
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(21, 23, 28)"
    finally:
        context.close()


def test_light_theme_by_default(page, app_url):
    page.goto(f"{app_url}/run/alpha-run")
    wait_layout(page, "g-loss", "_fullLayout.paper_bgcolor", "white")
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(245, 246, 248)"


def test_configuration_and_compare_config_diff(page, app_url):
    page.goto(f"{app_url}/run/alpha-run")
    expect(page.locator("#config-table")).to_contain_text("synthetic")
    expect(page.locator("#config-table")).to_contain_text("seed")
    page.goto(f"{app_url}/compare")
    # the synthetic runs differ only in their seed
    expect(page.locator("#compare-config-note")).to_have_text("1 keys differ")
    expect(page.locator("#compare-config")).to_contain_text("seed")
    pick(page, "compare-metric", "batch/loss")
    wait_layout(page, "g-compare", "layout.title.text", "Compare: batch/loss")
    page.locator("#compare-xaxis").get_by_text("step", exact=True).click()
    page.locator("#compare-logy").get_by_text("log scale").click()
    wait_layout(page, "g-compare", "layout.yaxis.type", "log")
    page.reload()  # the compare page's metric and options are kept too
    wait_layout(page, "g-compare", "layout.title.text", "Compare: batch/loss")
    wait_layout(page, "g-compare", "layout.xaxis.title.text", "step")
    wait_layout(page, "g-compare", "layout.yaxis.type", "log")
    assert not page.errors
