"""Who may read a served dashboard: an access token, and a warning for non-loopback hosts.

The dashboard shows every run of its log directory to whoever reaches its port. Bound to the
loopback interface (the default) that is this machine's users; bound to another interface it is
anyone on the network, so ``esper-dashboard`` warns, and a token can be required:

- ``--token TOKEN`` or the ``ESPER_DASHBOARD_TOKEN`` environment variable (preferred: a flag is
  visible to every user in ``ps``) sets it; ``esper-dashboard`` prints the URL that carries it.
- A request carries it in the URL once (``/?token=TOKEN``): the answer sets an HttpOnly,
  SameSite=Strict cookie and redirects to the same URL without the token, so it leaves the
  address bar and the history. Scripts may send ``Authorization: Bearer TOKEN`` instead.
- Without a token a request is answered 401, with a wrong one 403; nothing of the app runs.
"""

from __future__ import annotations

import hmac
import ipaddress
import socket
from urllib.parse import urlencode

TOKEN_ENV = "ESPER_DASHBOARD_TOKEN"
COOKIE = "esper_dashboard_token"
QUERY = "token"
REFUSED = "esper-dashboard: this dashboard needs its access token (open the URL it printed at start-up)\n"


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name) reaches only this machine."""
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


def exposure_warning(host: str, has_token: bool) -> str | None:
    """The one-line warning for serving on ``host`` (None for a loopback host)."""
    if is_loopback(host):
        return None
    guard = ("an access token is required" if has_token else
             f"anyone who can reach it can read every run: set --token or {TOKEN_ENV}")
    return f"esper-dashboard: warning: --host {host} is reachable from other machines; {guard}"


def cookie_name(host: str) -> str:
    """The token cookie's name for a request's ``Host``: one per port, since browsers share
    cookies across the ports of a host (two dashboards must not overwrite each other's)."""
    port = host.rpartition(":")[2] if ":" in host and not host.endswith("]") else ""
    return f"{COOKIE}_{port}" if port.isdigit() else COOKIE


def _same(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def require_token(server, token: str) -> None:
    """Make the Flask ``server`` answer only requests that carry ``token`` (see the module doc)."""
    from flask import Response, redirect, request

    def refuse(status: int) -> Response:
        return Response(REFUSED, status=status, mimetype="text/plain")

    @server.before_request
    def check_token():
        given = request.args.get(QUERY)
        if given is not None:
            if not _same(given, token):
                return refuse(403)
            if request.method not in ("GET", "HEAD"):
                return None
            rest = [(k, v) for k, v in request.args.items(multi=True) if k != QUERY]
            answer = redirect(request.path + ("?" + urlencode(rest) if rest else ""))
            answer.set_cookie(cookie_name(request.host), token, httponly=True, samesite="Strict", path="/")
            return answer
        scheme, _, bearer = request.headers.get("Authorization", "").partition(" ")
        presented = bearer if scheme.lower() == "bearer" else request.cookies.get(cookie_name(request.host))
        if presented is None:
            return refuse(401)
        return None if _same(presented, token) else refuse(403)
