"""What protects ``vaelab serve`` from the other web pages a user has open.

The explorer has no authentication: it relies on being reachable only from this machine. A page on
another site can still try to reach it through the user's browser, in three ways, each closed here:

- DNS rebinding: a hostile name re-pointed at 127.0.0.1 makes the browser treat the explorer as that
  site. The browser still sends the hostile name in ``Host``, so only the names the server was started
  for are answered (loopback names and the bound address, each with the port; ``--allow-host`` adds more).
- Cross-site requests: a page may POST ``text/plain`` or a form anywhere without asking first. Bodies are
  accepted only as ``application/json``, which a browser sends cross-site only after a CORS preflight
  this server never grants; an ``Origin`` that is not one of the served names is refused too.
- Injection and framing: every response carries a Content-Security-Policy that allows only this
  server's own script, style, images and connections (no inline script or style attributes) and no
  framing, and ``X-Content-Type-Options: nosniff``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from flask import Flask, Response, request
from werkzeug.exceptions import Forbidden, HTTPException, UnsupportedMediaType

ALLOWED_HOSTS = "VAELAB_ALLOWED_HOSTS"  # the app.config key: the Host values the server answers
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
BODY_METHODS = ("POST", "PUT", "PATCH", "DELETE")
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:", "connect-src 'self'",
    "object-src 'none'", "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'",
])
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}


class MisdirectedRequest(HTTPException):
    code = 421
    description = "Misdirected Request"


def host_name(host: str) -> str:
    """An address as it appears in a Host header: IPv6 in brackets, names lower-cased."""
    host = host.strip().lower()
    try:
        if ipaddress.ip_address(host.strip("[]")).version == 6:
            return f"[{host.strip('[]')}]"
    except ValueError:
        pass
    return host


def split_host(value: str) -> tuple[str, int | None]:
    """``name[:port]`` (IPv6 in brackets when a port follows) -> (name as in a Host header, port or None)."""
    value = value.strip().lower()
    try:
        ipaddress.ip_address(value.strip("[]"))
        return host_name(value), None
    except ValueError:
        pass
    parts = urlsplit("//" + value)
    try:
        port = parts.port
    except ValueError:  # "name:notaport": never matches a real Host header, so allowing it allows nothing
        port = None
    return host_name(parts.hostname or value), port


def served_hosts(bound_host: str, port: int, extra: Iterable[str] = ()) -> frozenset[str]:
    """The Host values a server bound to ``bound_host:port`` answers: the loopback names and the bound
    address with the port (and bare on port 80, as browsers send it); each ``extra`` name with the port
    and bare (a name behind a proxy comes without one), or only with its own port when it gives one."""
    names = {*LOOPBACK_NAMES, host_name(bound_host)}
    allowed = {f"{name}:{port}" for name in names} | (names if port == 80 else set())
    for value in extra:
        name, own_port = split_host(value)
        allowed |= {f"{name}:{own_port}"} if own_port is not None else {name, f"{name}:{port}"}
    return frozenset(allowed)


def install(app: Flask, hosts: Iterable[str]) -> None:
    """Refuse misdirected and cross-site requests before any view runs; add the headers to every response."""
    app.config[ALLOWED_HOSTS] = frozenset(hosts)

    @app.before_request
    def check_request() -> None:
        allowed = app.config[ALLOWED_HOSTS]
        host = request.headers.get("Host", "").lower()
        if host not in allowed:
            raise MisdirectedRequest(
                f"this server answers only to {', '.join(sorted(allowed))}, not to Host {host or '(none)'!r}; "
                "if you reach it by another name on purpose, start it with --allow-host NAME.")
        origin = request.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc.lower() not in allowed and request.method in BODY_METHODS:
            raise Forbidden(f"cross-site request from {origin!r} refused.")
        if request.method in BODY_METHODS and request.mimetype != "application/json":
            raise UnsupportedMediaType(
                f"send the request body as application/json, not {request.mimetype or 'without a Content-Type'}.")

    @app.after_request
    def add_headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response
