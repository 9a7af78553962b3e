"""The dashboard's HTTP server: GET only, on the standard library's
ThreadingHTTPServer.

| path          | answer                                                    |
|---------------|-----------------------------------------------------------|
| /             | the page (server-rendered HTML)                           |
| /api/state    | :func:`.sources.snapshot` as JSON                         |
| /api/live     | the rollouts and pools sections as HTML, in JSON (polled) |
| /static/*     | the page's script and style sheet                         |
| /login?token= | checks the token, sets it as a cookie, redirects to /     |

Any other method gets 405: the dashboard changes nothing. On a non-loopback
address a token is required (:func:`check_listen`); every request must then
carry it in ``Authorization: Bearer`` or the cookie (compared in constant time).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from rollout.app.ui import views
from rollout.app.ui.sources import Sources, snapshot
from rollout.errors import ConfigError, RolloutError

COOKIE = "rollout_ui_token"
TOKEN_ENV = "ROLLOUT_UI_TOKEN"
_STATIC = Path(__file__).resolve().parent / "static"
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self'; frame-ancestors 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) as a pair; ConfigError naming --listen."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--listen: expected HOST:PORT, got {text!r}",
                          hint="for example --listen 127.0.0.1:8765")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_listen(host: str, token: str | None) -> None:
    """Refuse to serve beyond loopback without a token."""
    if not is_loopback(host) and not token:
        raise ConfigError(
            f"--listen {host}: serving beyond loopback needs a token",
            hint=f"put one in a file and pass --token-file FILE, or set {TOKEN_ENV}",
        )


def read_token(path: Path | None, environ: dict[str, str]) -> str | None:
    """The token from ``--token-file`` (first line) or the environment."""
    if path is not None:
        try:
            token = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"--token-file {path}: cannot read it: {exc.strerror}") from None
        if len(token) < 16:
            raise ConfigError(f"--token-file {path}: the token must be at least 16 characters")
        return token
    token = environ.get(TOKEN_ENV, "").strip()
    if token and len(token) < 16:
        raise ConfigError(f"{TOKEN_ENV}: the token must be at least 16 characters")
    return token or None


class Dashboard(ThreadingHTTPServer):
    """The server; ``sources`` is read on every request."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], sources: Sources, *,
                 token: str | None = None, refresh: float = 2.0) -> None:
        check_listen(address[0], token)
        self.sources = sources
        self.token = token
        self.refresh = refresh
        # One reader at a time: the drivers and the journal are not shared-safe.
        self.reading = threading.Lock()
        super().__init__(address, Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else host
        return f"http://{name}:{port}/"

    def snapshot(self) -> dict[str, Any]:
        with self.reading:
            return snapshot(self.sources)


class Handler(BaseHTTPRequestHandler):
    server: Dashboard
    server_version = "rollout-ui"

    def log_message(self, format: str, *args: Any) -> None:
        return None  # the terminal shows the URL; requests are not worth a line

    def _send(self, status: HTTPStatus, body: bytes, ctype: str,
              extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in {**_HEADERS, "Content-Type": ctype, **(extra or {})}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _text(self, status: HTTPStatus, text: str) -> None:
        self._send(status, text.encode(), "text/plain; charset=utf-8")

    def _authorised(self) -> bool:
        token = self.server.token
        if token is None:
            return True
        offered = ""
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            offered = auth[len("Bearer "):].strip()
        else:
            for part in self.headers.get("Cookie", "").split(";"):
                name, _, value = part.strip().partition("=")
                if name == COOKIE:
                    offered = value
        return hmac.compare_digest(offered.encode(), token.encode())

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/login" and self.server.token is not None:
            offered = parse_qs(url.query).get("token", [""])[0]
            if not hmac.compare_digest(offered.encode(), self.server.token.encode()):
                return self._text(HTTPStatus.FORBIDDEN, "wrong token\n")
            cookie = f"{COOKIE}={self.server.token}; HttpOnly; SameSite=Strict; Path=/"
            return self._send(HTTPStatus.SEE_OTHER, b"", "text/plain",
                              {"Location": "/", "Set-Cookie": cookie})
        if not self._authorised():
            return self._text(HTTPStatus.UNAUTHORIZED,
                              "this dashboard needs its token: open /login?token=TOKEN once\n")
        if url.path.startswith("/static/"):
            return self._static(url.path[len("/static/"):])
        if url.path not in ("/", "/api/state", "/api/live"):
            return self._text(HTTPStatus.NOT_FOUND, "not found\n")
        try:
            snap = self.server.snapshot()
        except RolloutError as exc:
            return self._text(HTTPStatus.SERVICE_UNAVAILABLE, f"{exc}\n")
        if url.path == "/":
            html = views.page(snap, refresh=self.server.refresh)
            return self._send(HTTPStatus.OK, html.encode(), "text/html; charset=utf-8")
        if url.path == "/api/live":
            data: dict[str, Any] = {
                "live": views.live_html(snap), "pools": views.pools_html(snap),
                "updated": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(snap["now"])),
                "rollouts": [{"id": r["id"], "status": r["status"]} for r in snap["rollouts"]]}
        else:
            data = snap
        return self._send(HTTPStatus.OK, json.dumps(data, default=str).encode(),
                          "application/json")

    do_HEAD = do_GET

    def _static(self, name: str) -> None:
        path = _STATIC / name
        if "/" in name or path.suffix not in _TYPES or not path.is_file():
            return self._text(HTTPStatus.NOT_FOUND, "not found\n")
        self._send(HTTPStatus.OK, path.read_bytes(), _TYPES[path.suffix])

    def _refuse(self) -> None:
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"read-only: GET only\n",
                   "text/plain; charset=utf-8", {"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse


def serve(sources: Sources, host: str, port: int, *, token: str | None,
          on_ready: Callable[[str], None] | None = None) -> None:
    """Serve until interrupted (Ctrl-C ends it)."""
    with Dashboard((host, port), sources, token=token) as server:
        if on_ready is not None:
            on_ready(server.url)
        with suppress(KeyboardInterrupt):
            server.serve_forever(poll_interval=0.5)
