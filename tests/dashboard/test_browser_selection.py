"""The rank and env dropdowns, the URL query and the rank banner, served for real and driven in
headless Chromium. Expected point counts come from ``Fold(rank=..., env=...)`` on the same log."""

from __future__ import annotations

import re

import pytest

from telemetry_schema.eventlog import EventLog
from telemetry_schema.rundir import read_run
from telemetry_schema.runmodel import Scope, ScopedFold

from dashboard.app import create_app
from dashboard.settings import DashboardConfig

from .multistream import write_multi_root
from .test_browser import wait_points

TRACE_NAMES = "id => document.querySelector(`#${id} .js-plotly-plot`).data.map(t => t.name)"

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect  # noqa: E402

expect.set_options(timeout=15_000)  # the suite shares 2 cores with other engineers' runs


@pytest.fixture(scope="module")
def multi_root(tmp_path_factory):
    return write_multi_root(tmp_path_factory.mktemp("multi-runs"), synth_events=1500, seed=11)


@pytest.fixture(scope="module")
def url(multi_root, serve):
    return serve(create_app(multi_root, DashboardConfig(poll_ms=500, min_refresh_s=0.2))).url


def fold(root, run_id, rank=0, env=None, rows=None):
    """The state of a scope of the run read whole (of its first ``rows`` events)."""
    log = EventLog(read_run(root / run_id))
    f = ScopedFold(Scope(rank, env))
    f.update(log.slice(0, len(log) if rows is None else rows))
    return f.state


def choose(page, dropdown: str, label: str) -> None:
    """Open a dropdown and pick the option with this label (Dash 4's listbox)."""
    page.locator(f"#{dropdown}").click()
    page.get_by_role("option", name=label, exact=True).click()
    expect(page.locator(f"#{dropdown}")).to_contain_text(label)


def trace_y(page, gid: str, trace: int) -> list:
    return page.evaluate("([id, i]) => Array.from(document.querySelector(`#${id} .js-plotly-plot`).data[i].y)",
                         [gid, trace])


def test_rank_dropdown_switches_the_charts_and_the_url(page, url, multi_root):
    r0, r1 = fold(multi_root, "ddp-agree", 0), fold(multi_root, "ddp-agree", 1)
    page.goto(f"{url}/run/ddp-agree")
    wait_points(page, "g-loss", 0, lambda n: n == r0.batches.length)
    expect(page.locator("#rank-pick")).to_be_visible()
    expect(page.locator("#env-pick")).to_be_hidden()
    expect(page.locator("#rank-banner")).to_be_hidden()  # the ranks agree
    choose(page, "sel-rank", "rank 1")
    wait_points(page, "g-loss", 0, lambda n: n == r1.batches.length)
    page.wait_for_url(re.compile(r".*/run/ddp-agree\?rank=1$"))
    assert trace_y(page, "g-acc", 1) == r1.epochs["val_acc"].tolist()
    expect(page.locator("#run-facts")).to_contain_text("rank: 1 of 2")
    page.go_back()  # the URL drives the dropdown back
    wait_points(page, "g-loss", 0, lambda n: n == r0.batches.length)
    expect(page.locator("#sel-rank")).to_contain_text("rank 0")
    assert trace_y(page, "g-acc", 1) == r0.epochs["val_acc"].tolist()
    assert not page.errors


def test_a_shared_url_opens_its_selection(page, url, multi_root):
    r1 = fold(multi_root, "ddp-agree", 1)
    page.goto(f"{url}/run/ddp-agree?rank=1")
    wait_points(page, "g-loss", 0, lambda n: n == r1.batches.length)
    expect(page.locator("#sel-rank")).to_contain_text("rank 1")
    assert page.url.endswith("?rank=1")
    assert not page.errors


def test_bad_query_values_are_ignored(page, url, multi_root):
    run = fold(multi_root, "ppo-run")
    page.goto(f"{url}/run/ppo-run?env=zz&rank=4")
    wait_points(page, "g-reward", 0, lambda n: n == run.rewards.length)
    page.wait_for_url(re.compile(r".*/run/ppo-run$"))  # corrected to what is shown
    expect(page.locator("#sel-env")).to_contain_text("all envs")
    assert not page.errors


@pytest.mark.parametrize("run_id, text", [("ddp-diverge", "rank 1 diverged at move 2"),
                                          ("ddp-dead", "Rank 1 is silent")])
def test_banner_names_the_ranks_that_disagree_or_went_silent(page, url, run_id, text):
    page.goto(f"{url}/run/{run_id}")
    expect(page.locator("#rank-banner")).to_be_visible()
    expect(page.locator("#rank-banner")).to_contain_text(text)
    if run_id == "ddp-diverge":
        expect(page.locator("#rank-banner")).to_contain_text("at epoch 5")  # where
    assert not page.errors


def test_env_dropdown_keeps_the_ppo_panel(page, url, multi_root):
    run, env2 = fold(multi_root, "ppo-run"), fold(multi_root, "ppo-run", env=2)
    page.goto(f"{url}/run/ppo-run")
    wait_points(page, "g-reward", 0, lambda n: n == run.rewards.length)
    expect(page.locator("#env-pick")).to_be_visible()
    expect(page.locator("#rank-pick")).to_be_hidden()
    expect(page.locator("#rank-banner")).to_be_hidden()
    choose(page, "sel-env", "env 2")
    wait_points(page, "g-reward", 0, lambda n: n == env2.rewards.length)
    page.wait_for_url(re.compile(r".*/run/ppo-run\?env=2$"))
    wait_points(page, "g-acc", 0, lambda n: n == env2.epochs.length)
    assert trace_y(page, "g-acc", 1) == env2.epochs["val_acc"].tolist()
    expect(page.locator("#g-ppo")).to_be_visible()  # env 2 logs no PPO update: the run's are shown
    wait_points(page, "g-ppo", 0, lambda n: n == len(run.ppo) > 0)
    expect(page.locator("#g-actions")).to_be_visible()  # env 2's action mix
    assert page.evaluate(TRACE_NAMES, "g-actions") == sorted({d.op for d in env2.decisions})
    expect(page.locator("#decisions-table")).to_contain_text("policy")
    choose(page, "sel-env", "all envs")
    wait_points(page, "g-reward", 0, lambda n: n == run.rewards.length)
    page.wait_for_url(re.compile(r".*/run/ppo-run$"))
    assert not page.errors


def test_single_stream_run_has_no_pickers(page, url):
    page.goto(f"{url}/run/single-run")
    page.wait_for_selector("#g-swimlane .main-svg", timeout=15_000)
    expect(page.locator("#rank-pick")).to_be_hidden()
    expect(page.locator("#env-pick")).to_be_hidden()
    expect(page.locator("#rank-banner")).to_be_hidden()
    assert not page.errors


def test_replay_follows_the_selection(page, url, multi_root):
    half = read_run(multi_root / "ddp-agree").num_rows // 2
    expected = fold(multi_root, "ddp-agree", rank=1, rows=half).batches.length
    assert expected != fold(multi_root, "ddp-agree", rank=0, rows=half).batches.length
    page.goto(f"{url}/run/ddp-agree?rank=1")
    wait_points(page, "g-loss", 0, lambda n: n == fold(multi_root, "ddp-agree", 1).batches.length)
    page.get_by_text("Live", exact=True).click()  # a finished run opens on its final state, in replay
    page.get_by_text("Replay", exact=True).click()
    wait_points(page, "g-loss", 0, lambda n: n == 0)  # replay rewinds to the start
    box = page.locator("#cursor input")
    box.fill(str(half))
    box.press("Tab")  # the number box commits on blur
    wait_points(page, "g-loss", 0, lambda n: n == expected)
    expect(page.locator("#cursor-info")).to_contain_text(f"replay: event {half:,}")
    assert not page.errors
