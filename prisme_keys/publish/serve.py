"""``serve``: a development JWKS endpoint and anonymous login over the key file.

Built on the standard library's :class:`http.server.ThreadingHTTPServer`. Routes:

* ``GET /oidc/jwks`` and ``GET /.well-known/jwks.json``: the public JWK Set, newest first,
  ``Content-Type: application/jwk-set+json`` and the configured ``Cache-Control``;
* ``GET /oidc/.well-known/openid-configuration``: ``{issuer, jwks_uri}``;
* ``POST /v2/login/anonymous`` with an optional JSON body ``{"expiresAfter": seconds}``: an
  anonymous token as ``mint`` makes it, as ``{token, sessionId, expires}`` plus an
  ``access-token`` cookie (like the reference gateway's anonymous login).

The key file is re-read when its inode, size or mtime changes, so a rotation shows up without
a restart. Errors are JSON ``{"error": code, "message": text}`` with a 4xx/5xx status.

Under load: one thread per connection, a listen backlog of :data:`LISTEN_BACKLOG` (the
socketserver default of 5 drops connections when 50 clients connect at once), and a read timeout
(:data:`READ_TIMEOUT` seconds by default) on every connection, so idle keep-alive connections and
clients that send half a request are closed instead of holding a thread forever.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prisme_keys.errors import PrismeKeysError
from prisme_keys.settings import Settings
from prisme_keys.store import lifecycle
from prisme_keys.store.records import KeyRecord
from prisme_keys.tokens.jws import strict_json

LISTEN_BACKLOG = 128  #: pending connections the kernel queues (capped by net.core.somaxconn)
READ_TIMEOUT = 10.0  #: seconds a connection may stay silent (idle, or a half-sent request) before it is closed
JWKS_PATHS = ("/oidc/jwks", "/.well-known/jwks.json")
DISCOVERY_PATH = "/oidc/.well-known/openid-configuration"
LOGIN_PATH = "/v2/login/anonymous"
MAX_BODY = 64 * 1024
REDACTED = "<redacted>"  #: what the access log shows instead of a query value or a token-looking path segment

_QUERY = re.compile(r"\?[^\s\"']*")
_QUERY_NAME = re.compile(r"[A-Za-z0-9_.\-\[\]]{1,40}")
#: a JWS/JWT (``eyJ...``), a UUID (the gateway's ``at:<UUID>`` tokens and API keys), or any run of
#: over 40 base64url/percent-encoded characters: shown as :data:`REDACTED` wherever it appears
_TOKENISH = re.compile(
    r"eyJ[A-Za-z0-9_\-.%]*"
    r"|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|[A-Za-z0-9_\-.:%~+=]{41,}"
)

#: ``(settings, issuer, expires_after_seconds) -> {"token", "sessionId", "expires"}``
Minter = Callable[[Settings, str, int], dict[str, Any]]


def redact_request(text: str) -> str:
    """``text`` (an access-log line) with no credential in it: the one home of the access log's redaction.

    Every query value becomes :data:`REDACTED` (``?access_token=<redacted>&x=<redacted>``; a
    parameter name that is not a short plain word is redacted too), and so does every
    token-looking run anywhere in the line: a JWS (``eyJ...``), a UUID (the gateway's opaque
    ``at:<UUID>`` tokens and API keys), or over 40 base64url characters. The method, the route
    and the status stay readable.
    """

    def query(m: re.Match[str]) -> str:
        parts = []
        for part in m.group(0)[1:].split("&"):
            name, eq, _ = part.partition("=")
            name = name if _QUERY_NAME.fullmatch(name) and not name.startswith("eyJ") else REDACTED
            parts.append(f"{name}={REDACTED}" if eq else name)
        return "?" + "&".join(parts)

    return _TOKENISH.sub(REDACTED, _QUERY.sub(query, text))


@dataclass
class _Snapshot:
    stamp: tuple[int, ...]
    records: list[KeyRecord]
    body: bytes


class KeyFileView:
    """The key file's public set, re-read whenever the file changes (inode, size, mtime).

    Raises (from :meth:`records` / :meth:`jwks_body`):
        KeyFileError: the file became missing, corrupt or unsafe.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._snap: _Snapshot | None = None

    def _current(self) -> _Snapshot:
        try:
            st = os.stat(self.settings.key_file)
            stamp: tuple[int, ...] = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            stamp = ()
        with self._lock:
            if self._snap is None or self._snap.stamp != stamp or not stamp:
                records = lifecycle.load_records(self.settings)
                body = json.dumps(lifecycle.public_jwks(records), indent=2).encode() + b"\n"
                self._snap = _Snapshot(stamp, records, body)
            return self._snap

    def jwks_body(self) -> bytes:
        """The JWK Set document's bytes."""
        return self._current().body

    def records(self) -> list[KeyRecord]:
        """The current records."""
        return self._current().records


class JWKSServer(ThreadingHTTPServer):
    """A threaded HTTP server over a :class:`KeyFileView`.

    Args:
        read_timeout: seconds each read may wait before the connection is closed (``None``: never).
        access_log: write one access line per request on stderr (``http.server``'s log format).
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(
        self,
        address: tuple[str, int],
        settings: Settings,
        *,
        cache_control: str | None,
        minter: Minter | None,
        issuer: str | None = None,
        read_timeout: float | None = READ_TIMEOUT,
        access_log: bool = True,
    ) -> None:
        self.read_timeout = read_timeout
        self.access_log = access_log
        super().__init__(address, _Handler)
        self.settings = settings
        self.view = KeyFileView(settings)
        self.cache_control = cache_control
        self.minter = minter
        host, port = self.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else str(host)
        shown = f"[{host}]" if ":" in str(host) else host
        self.base_url = f"http://{shown}:{port}"
        self.issuer = issuer or settings.oidc_provider_url or self.base_url


class _Handler(BaseHTTPRequestHandler):
    server: JWKSServer
    protocol_version = "HTTP/1.1"
    server_version = "prisme-keys-serve"

    def log_message(self, fmt: str, *args: Any) -> None:  # one access line on stderr, no tokens
        if self.server.access_log:
            super().log_message("%s", redact_request(fmt % args))

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.read_timeout)  # every read and write of this connection

    def handle(self) -> None:
        # a client that goes away, stalls or never reads its answer is not an error worth a traceback;
        # a silent connection times out in handle_one_request and is closed
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError):
            self.close_connection = True

    def parse_request(self) -> bool:
        self._body_read = False
        return super().parse_request()

    def _unread_body(self) -> bool:
        """True when the request announced a body that was not read (it must not become the next request)."""
        if getattr(self, "_body_read", False) or not hasattr(self, "headers"):
            return False
        return "Transfer-Encoding" in self.headers or (self.headers.get("Content-Length") or "0").strip() != "0"

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Every error the stdlib handler sends (bad request line, unknown method, ...) as JSON; closes."""
        self.close_connection = True
        if code == 501:  # the stdlib's "Unsupported method": no do_<METHOD>
            code, err, message = 405, "method_not_allowed", f"{self.command} is not supported"
        else:
            err = {
                400: "bad_request",
                408: "timeout",
                414: "uri_too_long",
                431: "headers_too_large",
                505: "http_version_not_supported",
            }.get(code, "error")
            message = message or self.responses.get(code, ("error",))[0]
        self.log_error("code %d, message %s", code, message)
        self._json(code, {"error": err, "message": message}, {"Allow": "GET, HEAD, POST"} if code == 405 else None)

    def _send(self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Access-Control-Allow-Origin", "*")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        if self.close_connection or self._unread_body():
            self.send_header("Connection", "close")  # also sets close_connection
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, doc: Any, extra: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(doc).encode() + b"\n", "application/json; charset=utf-8", extra)

    def _error(self, status: int, code: str, message: str) -> None:
        self._json(status, {"error": code, "message": message})

    def _path(self) -> str:
        return self.path.split("?", 1)[0]

    def do_GET(self) -> None:
        path = self._path()
        try:
            if path in JWKS_PATHS:
                extra = {"Cache-Control": self.server.cache_control} if self.server.cache_control else {}
                self._send(200, self.server.view.jwks_body(), "application/jwk-set+json; charset=utf-8", extra)
            elif path == DISCOVERY_PATH:
                base = self.server.base_url
                self._json(200, {"issuer": self.server.issuer, "jwks_uri": base + JWKS_PATHS[0]})
            elif path == LOGIN_PATH:
                self._error(405, "method_not_allowed", "use POST")
            else:
                self._error(404, "not_found", f"no route for {path}")
        except PrismeKeysError as exc:
            self._error(503, exc.code, exc.message)

    do_HEAD = do_GET

    def do_POST(self) -> None:
        path = self._path()
        if path != LOGIN_PATH:
            if path in JWKS_PATHS or path == DISCOVERY_PATH:
                self._error(405, "method_not_allowed", "use GET")
            else:
                self._error(404, "not_found", f"no route for {path}")
            return
        if "Transfer-Encoding" in self.headers:
            self._error(411, "length_required", "chunked bodies are not supported; send Content-Length")
            return
        values = {v.strip() for v in self.headers.get_all("Content-Length") or ["0"]}
        text = values.pop() if len(values) == 1 else ""
        if not (text.isascii() and text.isdigit()):
            self._error(400, "bad_request", "bad Content-Length")
            return
        length = int(text)
        if length > MAX_BODY:
            self._error(413, "too_large", f"body over {MAX_BODY} bytes")
            return
        raw = self.rfile.read(length) if length else b""
        self._body_read = True
        expires_after = self.server.settings.access_tokens_max_age
        if raw.strip():
            try:
                body = strict_json(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
                self._error(400, "bad_request", "body is not JSON")
                return
            except ValueError as exc:  # a duplicate member, NaN or Infinity
                self._error(400, "bad_request", f"body is not JSON: {exc}")
                return
            if not isinstance(body, dict):
                self._error(400, "bad_request", "body is not a JSON object")
                return
            if "expiresAfter" in body:
                v = body["expiresAfter"]
                if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0 or v != v or v > 10**10:
                    self._error(400, "bad_request", "expiresAfter must be a positive number of seconds")
                    return
                expires_after = int(v)
        if self.server.minter is None:
            self._error(501, "not_implemented", "minting is not available")
            return
        try:
            res = self.server.minter(self.server.settings, self.server.issuer, expires_after)
        except PrismeKeysError as exc:
            self._error(503, exc.code, exc.message)
            return
        cookie = f"access-token={res['token']}; Path=/; HttpOnly; SameSite=Lax; Max-Age={expires_after}"
        self._json(200, res, {"Set-Cookie": cookie})

    def do_PUT(self) -> None:
        self._error(405, "method_not_allowed", f"{self.command} is not supported")

    do_DELETE = do_PATCH = do_PUT


def make_server(
    settings: Settings,
    host: str,
    port: int,
    *,
    cache_control: str | None,
    minter: Minter | None,
    read_timeout: float | None = READ_TIMEOUT,
    access_log: bool = True,
) -> JWKSServer:
    """Bind a :class:`JWKSServer` (port 0 picks a free port); the key file is read once to fail early.

    Args:
        port: 0 to 65535; read_timeout: seconds a connection may stay silent (see :data:`READ_TIMEOUT`).
        access_log: one line per request on stderr (see :class:`JWKSServer`).

    Raises:
        KeyFileError: missing, corrupt or unsafe key file.
        OSError: the address cannot be bound.
        OverflowError: the port is outside 0..65535.
    """
    server = JWKSServer(
        (host, port),
        settings,
        cache_control=cache_control,
        minter=minter,
        read_timeout=read_timeout,
        access_log=access_log,
    )
    server.view.records()
    return server


def anonymous_minter(settings: Settings, issuer: str, expires_after: int) -> dict[str, Any]:
    """Mint an anonymous token as the gateway's anonymous login does.

    Returns:
        ``{"token", "sessionId", "expires", "id"}``; ``expires`` ISO-8601 UTC.

    Raises:
        KeyFileError: no usable signing key.
    """
    from prisme_keys import clock
    from prisme_keys.tokens import mint as minter

    now = clock.now()
    run = minter.mint(settings, now, minter.MintOptions(lifetime=expires_after, iss=issuer))
    minted = next(run.tokens)
    claims = minted.claims
    return {
        "token": minted.token,
        "sessionId": claims["prismeaiSessionId"],
        "id": claims["sub"],
        "expires": clock.iso(clock.from_numeric_date(claims["exp"])),
    }


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (the address ``serve`` binds to)."""
    from prisme_keys.tokens.urls import is_loopback

    return is_loopback(host)


def start(
    settings: Settings,
    host: str,
    port: int,
    *,
    cache_control: str | None,
    read_timeout: float = READ_TIMEOUT,
    access_log: bool = True,
) -> JWKSServer:
    """Bind the development server (see :func:`make_server`) with the anonymous-login minter.

    Raises:
        KeyFileError: missing, corrupt or unsafe key file.
        InvalidArgument: an empty host, a port outside 0..65535, a read timeout not above 0.
        UsageError: an address that cannot be bound.
    """
    import math

    from prisme_keys.errors import InvalidArgument, UsageError
    from prisme_keys.text import shown

    if not host.strip():
        raise InvalidArgument("host", "{host} is empty: give the address to bind (0.0.0.0 for every interface)")
    if not 0 <= port <= 65535:
        raise InvalidArgument("port", "port {value} is outside 0 to 65535", value=port)
    if not math.isfinite(read_timeout) or read_timeout <= 0:
        raise InvalidArgument(
            "read_timeout", "read timeout {value!r} s: give a number of seconds above 0", value=read_timeout
        )
    try:
        return make_server(
            settings,
            host,
            port,
            cache_control=cache_control,
            minter=anonymous_minter,
            read_timeout=read_timeout,
            access_log=access_log,
        )
    except (OSError, OverflowError, UnicodeError) as exc:
        raise UsageError(f"cannot listen on {shown(host)}:{port}: {getattr(exc, 'strerror', None) or exc}") from None


def run_forever(server: JWKSServer, ready: Callable[[], None] | None = None) -> None:
    """Serve until SIGINT or SIGTERM, then close the socket (no traceback).

    ``ready`` is called once the signal handlers are in place (it announces the URL), so a
    supervisor that stops the server right after the announcement still gets a clean exit.
    """
    import signal

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        if ready is not None:
            ready()
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server_close()
