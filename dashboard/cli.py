"""``esper-dashboard``: serve the dashboard for a directory of run logs."""

from __future__ import annotations

import argparse
import os
import socket
import sys
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlencode

from dashboard.access import QUERY, TOKEN_ENV, exposure_warning
from dashboard.settings import DashboardConfig


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit status 2
        sys.stderr.write(f"esper-dashboard: error: {message}\n")
        raise SystemExit(2)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = _Parser(prog="esper-dashboard", description="Serve the Esper web dashboard for a directory of runs.")
    p.add_argument("--logdir", default="./runs", help="directory holding one sub-directory per run (default ./runs)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only; "
                                                       "any other prints a warning)")
    p.add_argument("--port", type=int, default=8050, help="port to listen on (default 8050)")
    p.add_argument("--prefetch", type=int, default=DashboardConfig.prefetch_runs, metavar="N",
                   help="read the N newest runs in the background while starting "
                        f"(default {DashboardConfig.prefetch_runs}; 0: read a run when a page first asks)")
    p.add_argument("--token", default=None,
                   help=f"require this access token of every request (default: ${TOKEN_ENV}, which, unlike a "
                        "flag, other users cannot see in ps); the printed URL carries it once, a cookie then")
    args = p.parse_args(argv)
    if args.token is None:
        args.token = os.environ.get(TOKEN_ENV) or None
    elif not args.token.strip():
        p.error("--token: empty")
    if args.prefetch < 0:
        p.error(f"--prefetch {args.prefetch}: not a number of runs")
    if not 0 < args.port < 65536:
        p.error(f"--port {args.port}: not a port number")
    if not Path(args.logdir).is_dir():
        p.error(f"--logdir {args.logdir}: no such directory")
    return args


def port_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on (None when it can), tried the way werkzeug binds."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def _quiet_handler():
    """werkzeug's handler without one access-log line per poll (errors are still reported)."""
    from werkzeug.serving import WSGIRequestHandler

    class QuietHandler(WSGIRequestHandler):
        def log_request(self, *args, **kwargs) -> None:
            pass

    return QuietHandler


def warm_up() -> None:
    """Pay one-time lazy costs while starting, not on the first page someone opens: pyarrow's
    first conversion of Python values (``pa.array``, a Python scalar given to a compute
    function) imports its pandas shim (pandas itself, when installed), which the first page's
    event table and run status would otherwise do (0.3-0.8 s measured on 2 cores). The read and
    the fold no longer convert that way."""
    import pyarrow as pa

    pa.array([], pa.int64())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from werkzeug.serving import make_server

    from dashboard.app import create_app  # after argument checks: bad flags fail fast
    from telemetry_schema.arrays import choose_memory_pool

    problem = port_problem(args.host, args.port)
    if problem:  # werkzeug would print several lines and exit; say it in one
        sys.stderr.write(f"esper-dashboard: error: cannot listen on {args.host}:{args.port}: {problem}\n")
        return 1
    choose_memory_pool()  # before the first read: see its docstring
    warning = exposure_warning(args.host, bool(args.token))
    if warning:
        sys.stderr.write(warning + "\n")
    config = replace(DashboardConfig(), prefetch_runs=args.prefetch)
    # before the prefetch thread starts: a pandas that this thread is still importing is one
    # that plotly, in that thread, would find half-initialised in sys.modules
    warm_up()
    # the newest runs are read from now on, in the background
    app = create_app(args.logdir, config, prefetch=True, token=args.token)
    server = make_server(args.host, args.port, app.server, threaded=True, request_handler=_quiet_handler())
    host = f"[{args.host}]" if ":" in args.host else args.host
    query = f"?{urlencode({QUERY: args.token})}" if args.token else ""
    print(f"esper-dashboard: serving {Path(args.logdir).resolve()} at http://{host}:{server.port}/{query}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
