"""The app factory: the frame (navigation, location, poll interval) and the page router.

``create_app(logdir)`` builds everything a dashboard needs, the run cache included, so two apps
in one process never share state. Each page module offers ``match(path)``, ``layout(store, ...,
search=)`` (``search``: the URL query) and ``register(app, store)``; the router below picks the
page for the URL's path (a changed query alone re-renders nothing: pages that use it follow it).
"""

from __future__ import annotations

import re
from pathlib import Path

from dash import Dash, Input, Output, State, dcc, html

from dashboard import inputs
from dashboard.access import require_token
from dashboard.data import RunStore
from dashboard.pages import compare, run, runs
from dashboard.run_view import FIRST_CHARTS, RunRequest, chart_outputs
from dashboard.settings import DashboardConfig

PAGES = (runs, compare, run)
ASSETS = Path(__file__).parent / "assets"
PLOTLY_BUNDLE = ASSETS / "plotly-basic.min.js"
"""plotly.js's basic bundle (npm ``plotly.js-basic-dist-min``, MIT licence), of the version of
plotly.py's own plotly.js (``plotly.offline.get_plotlyjs_version()``). Served only while the two
agree (``basic_bundle_matches``): with another plotly installed, Dash's full bundle is used."""


def bundle_version(path: Path = PLOTLY_BUNDLE) -> str | None:
    """The plotly.js version named in a bundle's licence header, or None."""
    try:
        with path.open(encoding="utf-8") as f:
            head = f.read(200)
    except OSError:
        return None
    match = re.search(r"plotly\.js \(basic - minified\) v(\S+)", head)
    return match.group(1) if match else None


def basic_bundle_matches() -> bool:
    """Whether the vendored basic bundle is the plotly.js that installed plotly.py builds for."""
    from plotly.offline import get_plotlyjs_version

    return bundle_version() == get_plotlyjs_version()


def create_app(logdir: str | Path, config: DashboardConfig | None = None, prefetch: bool = False,
               token: str | None = None) -> Dash:
    """The dashboard of ``logdir``. With ``prefetch`` (``esper-dashboard`` sets it) the newest
    runs are read, folded and their first screen's charts built in a background thread at once
    (``RunStore.prefetch``): a run page opened meanwhile waits for that work, not a second read.
    With a ``token`` every request must carry it (``dashboard.access``)."""
    config = config or DashboardConfig()
    store = RunStore(logdir, config)
    prefetching = store.prefetch(then=lambda run_id: warm_charts(store, run_id)) if prefetch else None
    # assets/ holds plotly.js's "basic" bundle (scatter, bar, pie: the traces these pages draw), of
    # plotly.py's version. Dash loads assets' scripts with the page, so ``window.Plotly`` is set
    # before any graph mounts and dcc.Graph uses it instead of fetching its full bundle after the
    # layout arrives: a quarter of the JavaScript to parse, begun at once (see PLOTLY_BUNDLE).
    app = Dash(__name__, title="Esper dashboard", suppress_callback_exceptions=True,
               assets_folder=str(ASSETS), update_title=None,
               assets_ignore="" if basic_bundle_matches() else re.escape(PLOTLY_BUNDLE.name))
    if token:
        require_token(app.server, token)
    app.layout = frame(config)
    app.run_store = store  # for tests and the bench: the cache belongs to this app
    app.prefetch_thread = prefetching  # None without prefetch
    for page in PAGES:
        page.register(app, store)
    # The browser's colour-scheme preference, read in the browser before any page's charts are
    # built (they take it as a State): the charts' template follows it, as the stylesheet does.
    app.clientside_callback(
        "function(_) { return window.matchMedia && window.matchMedia('(prefers-color-scheme: dark)').matches"
        " ? 'dark' : 'light'; }", Output("theme", "data"), Input("url", "pathname"))

    @app.callback(Output("page", "children"), Input("url", "pathname"), State("url", "search"))
    def route(pathname, search):
        return render_page(store, inputs.path(pathname) or "/", inputs.path(search, ""))

    return app


def warm_charts(store: RunStore, run_id: str) -> None:
    """Build (into the run's memo) the first screen's charts of a run page opened as is: live,
    default selection and options, which is what its first chart callback asks for."""
    chart_outputs(store, RunRequest(run_id), {}, FIRST_CHARTS)


def frame(config: DashboardConfig) -> html.Div:
    nav = html.Nav([html.Span("Esper", className="brand"), dcc.Link("Runs", href="/"),
                    dcc.Link("Compare", href="/compare")], className="nav")
    # While the router builds a page (a run page whose log is still being read and folded: a
    # second or more for a large run on a cold server) the frame says so. Only the router's
    # output counts: the live polls' updates of the page's charts and tables never show it.
    loading = dcc.Loading(html.Main(id="page"), id="page-loading", target_components={"page": "children"},
                          delay_show=150, overlay_style={"visibility": "visible", "opacity": 0.5},
                          custom_spinner=html.Div("Reading the run logs…", id="page-loading-note",
                                                  className="card loading-note"))
    return html.Div([dcc.Location(id="url"), dcc.Store(id="theme", data="light"), nav,
                     dcc.Interval(id="tick", interval=config.poll_ms, n_intervals=0), loading])


def render_page(store: RunStore, pathname: str, search: str = ""):
    for page in PAGES:
        args = page.match(pathname)
        if args is not None:
            return page.layout(store, *args, search=search)
    return error_card("Not found", f"No page at {pathname}")


def error_card(title: str, message: str, id: str | None = None) -> html.Div:
    kw = {"id": id} if id else {}
    return html.Div([html.H3(title), html.P(message)], className="card error-card", **kw)
