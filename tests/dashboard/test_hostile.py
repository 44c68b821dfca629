"""Hostile input to the dashboard: log strings, run.json of any shape, forged callback values,
and who may read it (access token, non-loopback host). Through the Flask test client."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from dashboard.access import COOKIE, TOKEN_ENV, cookie_name, exposure_warning, is_loopback
from dashboard.app import create_app
from dashboard.run_view import CHARTS, build_charts
from dashboard.figures import ChartOptions
from tests.dashboard.callbacks import CallbackClient
from tests.viewers.hostile import HOSTILE, write_hostile_run

ODD_MANIFESTS = {"null-manifest": "null", "list-manifest": "[1, 2]", "string-manifest": '"running"',
                 "text-time": '{"started_at": "yesterday", "task": {"a": 1}}', "nan-time": '{"started_at": NaN}',
                 "huge-time": '{"started_at": 1e300}', "no-keys": "{}"}
FRESH = {"fresh-text-time": '{"started_at": "yesterday", "task": ["t"], "status": "running"}',
         "fresh-null": "null", "fresh-list": "[]"}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile-runs")
    write_hostile_run(root, "hostile-run")
    for name, text in ODD_MANIFESTS.items():
        write_hostile_run(root, name)
        (root / name / "run.json").write_text(text)
    for name, text in FRESH.items():  # a run whose writer has not written its first batch yet
        (root / name).mkdir()
        (root / name / "run.json").write_text(text)
    return root


@pytest.fixture(scope="module")
def client(root):
    return CallbackClient(create_app(root))


GOOD = {("tick", "n_intervals"): 1, ("mode", "value"): "replay", ("run-id", "data"): "hostile-run",
        ("cursor", "value"): 40, ("xaxis", "value"): "epoch", ("smoothing", "value"): 0.5,
        ("sel-rank", "value"): 0, ("sel-env", "value"): "all", ("shipped", "data"): {},
        ("shipped-later", "data"): {}, ("speed", "value"): 4, ("live-total", "data"): 5,
        ("event-kinds", "value"): ["log", "stage_changed"], ("event-search", "value"): "click",
        ("url", "pathname"): "/run/hostile-run", ("url", "search"): "?rank=0",
        ("compare-runs", "value"): ["hostile-run", "null-manifest"], ("compare-metric", "value"): "val_acc",
        ("replay-timer", "n_intervals"): 1, ("play", "n_clicks"): 1, ("replay-timer", "disabled"): True,
        ("run-url", "search"): "", ("sel-rank", "options"): [], ("sel-env", "options"): [],
        ("logy", "value"): ["log"], ("theme", "data"): "dark", ("seek-to", "data"): {"cursor": 10, "n": 1},
        ("metric-filter", "value"): "val_", ("metric-pick", "value"): ["val_acc"],
        ("metric-pick", "options"): [], ("seek-prev-panic", "n_clicks"): 1,
        ("compare-xaxis", "value"): "flops", ("compare-smoothing", "value"): 0.5, ("compare-logy", "value"): [],
        ("compare-filter", "value"): "loss", ("runs-filter", "value"): "", ("runs-status", "value"): None,
        ("runs-tag", "value"): None, ("runs-digest", "data"): None, ("runs-table", "data_timestamp"): 1,
        ("runs-table", "data"): [{"run_id": "hostile-run", "tags": "reviewed"}],
        ("runs-table", "data_previous"): [{"run_id": "hostile-run", "tags": ""}]}
"""A value the page itself could send for each input and state of every callback."""
FORGED = [float("inf"), float("-inf"), float("nan"), -1, -10**30, 10**30, 1e308, 2**63, True, "x", "",
          "../../etc/passwd", "<script>alert(1)</script>", "a" * 10_000, [], [1, "a", None], {}, {"a": [1]},
          [[["deep"]]], {"sig": 5, "traces": "x"}, {"_selection": [0, None], "g-loss": {"sig": "s", "traces": [[1]]}}]
"""Values no page sends: each replaces one input or state at a time."""


def test_every_callback_answers_forged_values_without_a_server_error(client):
    failures = []
    for key in client.keys():
        cb = client.app.callback_map[key]
        slots = [(s["id"], s["property"]) for s in cb["inputs"] + cb.get("state", [])]
        assert client.call(key, GOOD).status_code == 200, key  # the page's own values work
        for slot in slots:
            for value in FORGED + [None]:
                resp = client.call(key, GOOD | {slot: value})
                if resp.status_code not in (200, 204):
                    failures.append((key[:50], slot, repr(value)[:40], resp.status_code))
    assert not failures


def test_an_infinity_cursor_is_a_live_view(client):
    """The request of the issue: a replay cursor of Infinity answered 500."""
    key = client.key_for("decisions-table.data")
    body = json.dumps(client.body(key, GOOD)).replace('"value": 40', '"value": Infinity')
    assert "Infinity" in body
    resp = client.client.post("/_dash-update-component", data=body, content_type="application/json")
    assert resp.status_code == 200 and len(resp.get_json()["response"]["events-table"]["data"]) > 0


def _strings(obj):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _strings(v)


def test_log_strings_in_charts_are_escaped_for_plotly(client):
    entry = client.app.run_store.entry("hostile-run")
    with entry.view() as state:
        charts = build_charts(state, ChartOptions())
    assert set(charts) == set(CHARTS)
    texts = [s for fig in charts.values() for s in _strings(fig.to_plotly_json())]
    assert not [s for s in texts if "<a " in s or "<img" in s]  # tags of log strings never reach plotly raw
    assert any("&lt;a href=" in s for s in texts) and any("&lt;img src=x" in s for s in texts)
    assert not [s for s in texts if "\x1b" in s]
    assert any("<b>governor panic</b>" in s for s in texts)  # the charts' own markup still works


def test_runs_page_shows_run_json_of_any_shape(client):
    resp = client.call(client.key_for("runs-table.data"), GOOD)
    assert resp.status_code == 200
    rows = {r["run_id"]: r for r in resp.get_json()["response"]["runs-table"]["data"]}
    assert set(rows) == {"hostile-run", *ODD_MANIFESTS, *FRESH}
    assert all(r["status"] != "error" for r in rows.values())
    assert rows["text-time"]["task"] == HOSTILE[0]  # the log's own task; run.json's dict ignored
    assert rows["fresh-text-time"]["started"] == "" and rows["fresh-text-time"]["task"] == ""
    page = client.call("page.children", GOOD | {("url", "pathname"): "/"})
    assert page.status_code == 200


@pytest.mark.parametrize("run_id", ["hostile-run", *ODD_MANIFESTS])
def test_run_page_of_any_run_json_renders(client, run_id):
    """Header, facts and slots of a run whatever its run.json holds (a named slot's null stage:
    shown empty)."""
    page = client.call("page.children", GOOD | {("url", "pathname"): f"/run/{run_id}"})
    header = client.call(client.key_for("run-header.children"),
                         GOOD | {("run-id", "data"): run_id, ("mode", "value"): "live"})
    assert page.status_code == header.status_code == 200
    text = json.dumps(header.get_json())
    assert "r0c0: " in text and "None" not in text  # a null stage is shown empty


# -- who may read it ----------------------------------------------------------------------------

@pytest.fixture
def guarded(root):
    app = create_app(root, token="s3cret-token")
    return app.server.test_client()


def test_without_the_token_nothing_is_served(guarded):
    for path in ("/", "/run/hostile-run", "/_dash-layout", "/_dash-dependencies"):
        assert guarded.get(path).status_code == 401
    assert guarded.post("/_dash-update-component", json={}).status_code == 401
    assert guarded.get("/?token=wrong").status_code == 403
    guarded.set_cookie(COOKIE, "wrong")
    assert guarded.get("/").status_code == 403


def test_the_token_once_in_the_url_then_a_cookie(guarded):
    first = guarded.get("/run/hostile-run?rank=0&token=s3cret-token")
    assert first.status_code == 302 and first.headers["Location"] == "/run/hostile-run?rank=0"
    cookie = first.headers["Set-Cookie"]
    assert f"{COOKIE}=s3cret-token" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert guarded.get("/run/hostile-run?rank=0").status_code == 200  # the cookie carries it now
    assert guarded.get("/_dash-layout").status_code == 200


def test_a_bearer_header_works_for_scripts(root):
    client = create_app(root, token="s3cret-token").server.test_client()
    assert client.get("/", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
    assert client.get("/", headers={"Authorization": "Bearer nope"}).status_code == 403


def test_each_port_has_its_own_token_cookie():
    assert cookie_name("127.0.0.1:8050") == f"{COOKIE}_8050" != cookie_name("127.0.0.1:8051")
    assert cookie_name("[::1]:8050") == f"{COOKIE}_8050" and cookie_name("localhost") == COOKIE
    assert cookie_name("[::1]") == COOKIE


def test_loopback_hosts_and_the_warning():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("[::1]") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("192.0.2.7")
    assert exposure_warning("127.0.0.1", False) is None
    warning = exposure_warning("0.0.0.0", False)
    assert warning.count("\n") == 0 and TOKEN_ENV in warning and "--token" in warning
    assert "token is required" in exposure_warning("0.0.0.0", True)


def _serve(root, *args, env=None):
    """Start esper-dashboard on a free port (the process; it prints its URL first)."""
    import socket

    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "dashboard.cli", "--logdir", str(root), "--port", str(port), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
    return proc


def test_cli_warns_for_a_public_host_and_prints_the_token_url(root):
    proc = _serve(root, "--host", "0.0.0.0", env={TOKEN_ENV: "from-env"})
    try:
        line = proc.stdout.readline()
        assert "?token=from-env" in line
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "warning: --host 0.0.0.0 is reachable from other machines" in err and "Traceback" not in err


@pytest.mark.parametrize("flags", [["--token", ""], ["--token", "   "]])
def test_cli_refuses_an_empty_token(root, flags):
    proc = subprocess.run([sys.executable, "-m", "dashboard.cli", "--logdir", str(root), *flags],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--token: empty" in proc.stderr


@pytest.mark.parametrize("run_id", list(FRESH))
def test_run_page_of_a_run_without_events_renders(client, run_id):
    page = client.call("page.children", GOOD | {("url", "pathname"): f"/run/{run_id}"})
    header = client.call(client.key_for("run-header.children"),
                         GOOD | {("run-id", "data"): run_id, ("mode", "value"): "live"})
    assert page.status_code == header.status_code == 200
    assert run_id in json.dumps(header.get_json())
