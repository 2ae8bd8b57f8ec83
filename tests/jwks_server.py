"""Test helpers: a real threaded HTTP(S) server on 127.0.0.1 serving JWKS documents, and token builders."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prisme_keys import jwk as jwk_rules


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def bj(obj: Any) -> str:
    return b64(json.dumps(obj, separators=(",", ":")).encode())


_PRIV: dict[str, Any] = {}


def private_key(jwk: dict) -> Any:
    k = _PRIV.get(jwk["n"])
    if k is None:
        k = _PRIV[jwk["n"]] = jwk_rules.private_key_from_jwk(jwk)
    return k


def rs_token(jwk: dict, claims: dict, header: dict | None = None, alg: str = "RS256") -> str:
    """A token signed with RSASSA-PKCS1-v1_5 by ``jwk``; header default ``{typ, alg, kid}``."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    hdr = header if header is not None else {"typ": "jwt", "alg": alg, "kid": jwk["kid"]}
    si = f"{bj(hdr)}.{bj(claims)}"
    h = {"RS256": hashes.SHA256(), "RS384": hashes.SHA384(), "RS512": hashes.SHA512()}[alg]
    return si + "." + b64(private_key(jwk).sign(si.encode(), padding.PKCS1v15(), h))


def hs_token(secret: bytes, claims: dict, header: dict) -> str:
    """An HS256 token with ``secret`` as the HMAC key."""
    si = f"{bj(header)}.{bj(claims)}"
    return si + "." + b64(hmac.new(secret, si.encode(), hashlib.sha256).digest())


def claims(now: float | None = None, **kw: Any) -> dict:
    """Gateway-style claims valid for an hour from ``now`` (default: the real time)."""
    t = int(now if now is not None else time.time())
    c = {
        "exp": t + 3600,
        "iat": t,
        "sub": "u1",
        "iss": "https://issuer.test",
        "aud": "https://api.test",
        "prismeaiSessionId": "8f8e4f5e-9a43-4bd6-9d57-1c2f7c6c8a01",
    }
    c.update(kw)
    return {k: v for k, v in c.items() if v is not None}


def jwks(*jwks_: dict) -> dict:
    """A public JWK Set of the given keys."""
    return {"keys": [jwk_rules.public_jwk(j) for j in jwks_]}


@dataclass
class Route:
    """What the server answers for one path."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False  # accept, read the request, never answer
    stream_bytes: int | None = None  # send this many bytes of JSON-ish padding, no Content-Length
    etag: str | None = None
    header_lines: list[tuple[str, str]] = field(default_factory=list)  # repeated fields, sent as given
    cut: int | None = None  # announce the whole body's Content-Length, send only its first `cut` bytes, close


class JwksServer:
    """A threaded ``http.server`` on 127.0.0.1 (TLS when ``tls_ctx`` is given).

    ``routes`` maps a path to a :class:`Route` or a callable ``(handler) -> Route``;
    ``requests`` records ``(path, headers)`` of each request.
    """

    def __init__(self, tls_ctx: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, Route | Callable[[Any], Route]] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.stop_event = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def do_GET(self) -> None:
                server.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                r = server.routes.get(self.path)
                if callable(r):
                    r = r(self)
                if r is None:
                    r = Route(404, b"not found", {"Content-Type": "text/plain"})
                if r.hang:
                    server.stop_event.wait(30)
                    return
                if r.etag and self.headers.get("If-None-Match") == r.etag:
                    self.send_response(304)
                    self.send_header("ETag", r.etag)
                    for k, v in r.headers.items():
                        if k.lower() == "cache-control":
                            self.send_header(k, v)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(r.status)
                for k, v in [*r.headers.items(), *r.header_lines]:
                    self.send_header(k, v)
                if r.etag:
                    self.send_header("ETag", r.etag)
                if r.stream_bytes is not None:
                    self.send_header("Connection", "close")
                    self.end_headers()
                    chunk = b" " * 65536
                    sent = 0
                    try:
                        while sent < r.stream_bytes and not server.stop_event.is_set():
                            self.wfile.write(chunk)
                            sent += len(chunk)
                    except OSError:
                        pass
                    self.close_connection = True
                    return
                self.send_header("Content-Length", str(len(r.body)))
                if r.cut is not None:
                    self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(r.body if r.cut is None else r.body[: r.cut])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda *a: None  # type: ignore[method-assign]  (client hang-ups are expected)
        self.scheme = "http"
        if tls_ctx is not None:
            self.httpd.socket = tls_ctx.wrap_socket(self.httpd.socket, server_side=True)
            self.scheme = "https"
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def url(self, path: str = "/jwks", host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def serve_json(
        self,
        path: str,
        doc: Any,
        *,
        content_type: str = "application/jwk-set+json",
        headers: dict[str, str] | None = None,
        etag: str | None = None,
        status: int = 200,
    ) -> None:
        h = {"Content-Type": content_type, **(headers or {})}
        self.routes[path] = Route(status, json.dumps(doc).encode(), h, etag=etag)

    def __enter__(self) -> JwksServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop_event.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def tls_context(ca: Any) -> ssl.SSLContext:
    """A server TLS context with a trustme certificate for 127.0.0.1 and localhost."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    return ctx
