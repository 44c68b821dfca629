"""Fixtures of the dashboard tests: synthetic run logs, a served app, a headless Chromium.

The browser is Playwright driving the Debian chromium (no `playwright install`), module-scoped:
a session-scoped sync Playwright breaks the asyncio tests of the TUI in the same pytest run.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from werkzeug.serving import WSGIRequestHandler, make_server

from telemetry_schema.summary import SUMMARY
from telemetry_schema.synth import SynthConfig, generate

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


@pytest.fixture(scope="module")
def logdir(tmp_path_factory) -> Path:
    """Two finished synthetic runs, a broken log and a run one of whose streams is corrupt."""
    root = tmp_path_factory.mktemp("runs")
    generate(root, SynthConfig(events=8_000, seed=1, run_id="alpha-run"))
    generate(root, SynthConfig(events=5_000, seed=2, run_id="beta-run"))
    broken = root / "broken-run"
    broken.mkdir()
    (broken / "events.arrows").write_bytes(b"this is not an arrow stream")
    generate(root, SynthConfig(events=2_000, seed=4, run_id="corrupt-run"))
    corrupt_middle(root / "corrupt-run" / CORRUPT_STREAM)
    # the writer's summary file knows nothing of a corruption on disk afterwards: without it the
    # run is listed from its log, which the viewers find corrupt
    (root / "corrupt-run" / SUMMARY).unlink()
    return root


CORRUPT_STREAM = "events/batch_metrics.rank0.arrows"
"""The stream of ``corrupt-run`` whose middle is overwritten."""


def corrupt_middle(path: Path) -> None:
    """Flip bytes in the middle of a stream: a complete message that fails its checksum (a
    corruption, not a torn tail)."""
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 64] = bytes(b ^ 0xFF for b in data[mid:mid + 64])
    path.write_bytes(bytes(data))


class QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs) -> None:
        pass


class Served:
    """A Dash app served by werkzeug on a free loopback port, in a thread."""

    def __init__(self, app) -> None:
        self.app = app
        self.server = make_server("127.0.0.1", 0, app.server, threaded=True,
                                  request_handler=QuietHandler)
        self.url = f"http://127.0.0.1:{self.server.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(5)


@pytest.fixture(scope="module")
def serve():
    started: list[Served] = []

    def _serve(app) -> Served:
        started.append(Served(app))
        return started[-1]

    yield _serve
    for s in started:
        s.stop()


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("no /usr/bin/chromium")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.errors = []
    pg.on("pageerror", lambda exc: pg.errors.append(str(exc)))
    yield pg
    context.close()


def pick_option(page, dropdown: str, text: str, attempts: int = 4) -> None:
    """Choose the option ``text`` of the dcc.Dropdown ``#dropdown`` as a user does: open it and
    click the option. On a loaded machine the page may still move as its charts arrive, leaving
    the open list where it was (outside the viewport); then the list is closed and opened again."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for attempt in range(attempts):
        page.locator(f"#{dropdown}").scroll_into_view_if_needed()
        page.locator(f"#{dropdown}").click()
        try:
            page.locator("[role=option]", has_text=text).first.click(timeout=8_000)
            break
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
            if attempt == attempts - 1:
                raise
            page.wait_for_timeout(500)
    page.keyboard.press("Escape")
