"""The app factory: the frame (navigation, location, poll interval) and the page router.

``create_app(logdir)`` builds everything a dashboard needs, the run cache included, so two apps
in one process never share state. Each page module offers ``match(path)``, ``layout(store, ...,
search=)`` (``search``: the URL query) and ``register(app, store)``; the router below picks the
page for the URL's path (a changed query alone re-renders nothing: pages that use it follow it).
"""

from __future__ import annotations

from pathlib import Path

from dash import Dash, Input, Output, State, dcc, html

from dashboard.data import RunStore
from dashboard.pages import compare, run, runs
from dashboard.settings import DashboardConfig

PAGES = (runs, compare, run)


def create_app(logdir: str | Path, config: DashboardConfig | None = None) -> Dash:
    config = config or DashboardConfig()
    store = RunStore(logdir, config)
    app = Dash(__name__, title="Esper dashboard", suppress_callback_exceptions=True,
               assets_folder=str(Path(__file__).parent / "assets"), update_title=None)
    app.layout = frame(config)
    app.run_store = store  # for tests and the bench: the cache belongs to this app
    for page in PAGES:
        page.register(app, store)

    @app.callback(Output("page", "children"), Input("url", "pathname"), State("url", "search"))
    def route(pathname, search):
        return render_page(store, pathname or "/", search or "")

    return app


def frame(config: DashboardConfig) -> html.Div:
    nav = html.Nav([html.Span("Esper", className="brand"), dcc.Link("Runs", href="/"),
                    dcc.Link("Compare", href="/compare")], className="nav")
    return html.Div([dcc.Location(id="url"), nav,
                     dcc.Interval(id="tick", interval=config.poll_ms, n_intervals=0),
                     html.Main(id="page")])


def render_page(store: RunStore, pathname: str, search: str = ""):
    for page in PAGES:
        args = page.match(pathname)
        if args is not None:
            return page.layout(store, *args, search=search)
    return error_card("Not found", f"No page at {pathname}")


def error_card(title: str, message: str, id: str | None = None) -> html.Div:
    kw = {"id": id} if id else {}
    return html.Div([html.H3(title), html.P(message)], className="card error-card", **kw)
