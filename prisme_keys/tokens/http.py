"""One HTTP(S) GET under a total deadline: the exchange behind every JWKS fetch.

Why the standard library (``http.client`` + ``ssl``) and not ``requests``/``httpx``: what we
need is exact control that those clients do not give directly: a *total* deadline (not a
per-read timeout), a body cap enforced while reading, our own redirect rules (at most
:data:`MAX_REDIRECTS`, never from https to http, the final URL reported; see
:mod:`prisme_keys.tokens.urls`) and no extra dependency. The whole exchange runs in a worker
thread so even a stalled name lookup cannot exceed the deadline.

Certificates are always verified (system store, or ``cacert`` for a private CA). Nothing here
looks at the status or the body: :mod:`prisme_keys.tokens.jwks_client` decides what a JWK Set is.
``http.client``, ``ssl`` and ``socket`` are imported inside the functions (start-up time).
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

from prisme_keys.errors import FetchError, InvalidArgument, Worded
from prisme_keys.text import cap, redact_url, shown
from prisme_keys.tokens.keyring import DEFAULT_MAX_BYTES as DEFAULT_MAX_BYTES  # 1 MiB body cap (public here too)
from prisme_keys.tokens.urls import check_url, host_port, redirect_target

DEFAULT_TIMEOUT = 5.0  #: seconds, whole exchange including redirects
MAX_REDIRECTS = 3

_REDIRECTS = (301, 302, 303, 307, 308)
_READ_CHUNK = 65536  #: bytes asked of the socket at a time
_TOO_LARGE = "the JWKS at {url} is {length} bytes; the limit is {limit} bytes ({max_bytes})"
_OVER_CAP = "the JWKS at {url} is larger than the limit of {limit} bytes ({max_bytes}); stopped reading"


class RawResponse(NamedTuple):
    """The last response of an exchange (after redirects).

    Attributes:
        url: the URL asked for; final_url: the URL that answered.
        status: HTTP status; reason: its phrase; headers: ``{lower-case name: value}``.
        body: the body bytes (at most ``max_bytes``); redirects: URLs followed, in order.
    """

    url: str
    final_url: str
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes
    redirects: list[str]

    @property
    def content_type(self) -> str:
        """The media type without parameters, lower case (``""`` when absent)."""
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


class _Exchange:
    """What one exchange needs, shared by its steps (the worker thread owns it).

    Attributes:
        url: the URL asked for. deadline: ``time.monotonic()`` value the whole exchange must end by.
        max_bytes: body cap. cacert: PEM file of a private CA, or ``None``. allow_http: see
        :func:`fetch_raw`. headers: extra request headers. conn: the open connection, for the
        caller's thread to shut down on timeout. tls: the TLS context, made once per exchange.
    """

    __slots__ = ("allow_http", "cacert", "conn", "deadline", "headers", "max_bytes", "tls", "url")

    def __init__(
        self, url: str, deadline: float, max_bytes: int, cacert: str | None, allow_http: bool, headers: dict[str, str]
    ) -> None:
        self.url, self.deadline, self.max_bytes, self.cacert = url, deadline, max_bytes, cacert
        self.allow_http, self.headers = allow_http, headers
        self.conn: Any = None
        self.tls: Any = None

    def remaining(self) -> float:
        """Seconds left before the deadline.

        Raises:
            TimeoutError: none left (mapped to ``FetchError`` code ``timeout`` by :func:`fetch_raw`).
        """
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return left


def _header_fields(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """``{lower-case name: value}``; a field sent on several lines is one comma-separated list (RFC 9110 5.3)."""
    out: dict[str, str] = {}
    for k, v in pairs:
        k = k.lower()
        out[k] = f"{out[k]}, {v}" if k in out else v
    return out


def _tls_context(ex: _Exchange) -> Any:
    """The exchange's TLS context (system store, or ``ex.cacert``), made on first use.

    Raises:
        FetchError: code ``tls_error``, the CA file cannot be loaded.
    """
    if ex.tls is None:
        import ssl

        try:
            ex.tls = ssl.create_default_context(cafile=ex.cacert)
        except (OSError, ssl.SSLError) as exc:
            error = getattr(exc, "strerror", None) or exc
            raise FetchError(
                Worded("cannot load {cacert} {path}: {error}", path=ex.cacert, error=error), code="tls_error"
            ) from None
    return ex.tls


def _send(ex: _Exchange, parts: Any) -> tuple[Any, dict[str, str]]:
    """Open a connection to ``parts`` (a split URL), send the GET, and return ``(response, headers)``."""
    import http.client

    from prisme_keys import __version__

    remaining = ex.remaining()
    if parts.scheme == "https":
        conn: Any = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=remaining, context=_tls_context(ex))
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=remaining)
    ex.conn = conn
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    request_headers = {
        "Accept": "application/jwk-set+json, application/json;q=0.9",
        "Accept-Encoding": "identity",
        "User-Agent": f"prisme-keys/{__version__}",
        **ex.headers,
    }
    conn.request("GET", path, headers=request_headers)
    resp = conn.getresponse()
    return resp, _header_fields(resp.getheaders())


def _read_body(ex: _Exchange, resp: Any, where: str, headers: dict[str, str]) -> bytes:
    """The body of ``resp``, read under the deadline and the cap (``where`` names the URL in errors).

    Raises:
        FetchError: code ``too_large``, announced by ``Content-Length`` or found while reading; code
            ``truncated``, the connection closed before the ``Content-Length`` announced.
        TimeoutError: the deadline passed while reading.
    """
    length = headers.get("content-length", "")
    if length.isdigit() and int(length) > ex.max_bytes:
        raise FetchError(
            Worded(_TOO_LARGE, url=redact_url(where), length=int(length), limit=ex.max_bytes), code="too_large"
        )
    chunks: list[bytes] = []
    total = 0
    while True:
        left = ex.remaining()
        if ex.conn.sock is not None:
            ex.conn.sock.settimeout(left)
        data = resp.read(min(_READ_CHUNK, ex.max_bytes + 1 - total))
        if not data:
            if resp.length:  # http.client counts down the Content-Length; an early close leaves some unread
                raise _truncated(where, total, total + resp.length)
            return b"".join(chunks)
        total += len(data)
        if total > ex.max_bytes:
            raise FetchError(Worded(_OVER_CAP, url=redact_url(where), limit=ex.max_bytes), code="too_large")
        chunks.append(data)


def _exchange(ex: _Exchange) -> RawResponse:
    """GET ``ex.url``, following at most :data:`MAX_REDIRECTS` redirects by the rules of :func:`redirect_target`.

    Raises:
        FetchError: a redirect rule, the body cap (see :func:`_read_body`), a CA file (see :func:`_tls_context`).
        TimeoutError, OSError, ssl.SSLError, http.client.HTTPException: as the network raised them
            (mapped by :func:`_fetch_error`).
    """
    redirects: list[str] = []
    current = ex.url
    parts = check_url(current, ex.allow_http)
    while True:
        resp, headers = _send(ex, parts)
        if resp.status in _REDIRECTS and "location" in headers:
            ex.conn.close()
            nxt, parts = redirect_target(current, headers["location"], ex.allow_http)
            redirects.append(nxt)
            if len(redirects) > MAX_REDIRECTS:
                raise FetchError(
                    f"more than {MAX_REDIRECTS} redirects fetching {cap(redact_url(ex.url))} "
                    f"(last: {cap(redact_url(nxt))})",
                    code="too_many_redirects",
                )
            current = nxt
            continue
        try:
            body = _read_body(ex, resp, current, headers)
        finally:
            ex.conn.close()
        return RawResponse(ex.url, current, resp.status, resp.reason or "", headers, body, redirects)


def fetch_raw(
    url: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    max_bytes: int = DEFAULT_MAX_BYTES,
    cacert: str | None = None,
    allow_http: bool = False,
    headers: dict[str, str] | None = None,
) -> RawResponse:
    """GET ``url`` under a total deadline; no status or body checks (see :func:`prisme_keys.tokens.jwks_client.fetch`).

    Args:
        timeout: seconds for the whole exchange (connect, TLS, redirects, body).
        max_bytes: body cap, enforced while reading.
        cacert: PEM file of the CA(s) to trust instead of the system store.
        allow_http: accept plain http for non-loopback hosts.
        headers: extra request headers (e.g. conditional ones).

    Raises:
        InvalidArgument: ``timeout`` is not a finite number of seconds above 0, or ``url`` is malformed (exit 2).
        FetchError: insecure URL, network error, TLS error, timeout, redirect rules, body over the cap.
    """
    import math
    import threading

    if not math.isfinite(timeout) or timeout <= 0:
        raise InvalidArgument(
            "timeout", "{timeout} must be a number of seconds above 0, not {value}", value=shown(timeout)
        )
    check_url(url, allow_http)
    ex = _Exchange(url, time.monotonic() + timeout, max_bytes, cacert, allow_http, headers or {})
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["ok"] = _exchange(ex)
        except BaseException as exc:  # a thread boundary: handed to the caller, who re-raises what it cannot map
            box["err"] = exc

    worker = threading.Thread(target=run, name="jwks-fetch", daemon=True)
    worker.start()
    worker.join(timeout + 0.2)
    if worker.is_alive():
        _abort(ex.conn)
        raise _timed_out(url, timeout)
    if "err" in box:
        raise _fetch_error(box["err"], url, timeout, ex.conn)
    ok: RawResponse = box["ok"]
    return ok


def _abort(conn: Any) -> None:
    """Shut the socket of a stalled exchange so its worker thread ends."""
    import socket

    sock = getattr(conn, "sock", None)
    try:
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _timed_out(url: str, timeout: float) -> FetchError:
    return FetchError(
        Worded("no complete answer from {url} within {seconds:g} s ({timeout})", url=redact_url(url), seconds=timeout),
        code="timeout",
    )


def _truncated(url: str, got: int, expected: int | None) -> FetchError:
    """The answer ended early: a body shorter than its Content-Length, or a chunked body without its last chunk."""
    of = f" of the {expected} its Content-Length announced" if expected is not None else ""
    return FetchError(
        f"the answer from {url} was cut short: the connection closed after {got} bytes{of}", code="truncated"
    )


def _fetch_error(err: BaseException, url: str, timeout: float, conn: Any) -> BaseException:
    """The :class:`FetchError` (exit 9) for what the exchange raised; anything unknown as it is (a bug)."""
    import http.client
    import socket
    import ssl

    host = conn.host if conn is not None else redact_url(url)
    if isinstance(err, FetchError):
        return err
    if isinstance(err, (TimeoutError, socket.timeout)):
        return _timed_out(url, timeout)
    if isinstance(err, ssl.SSLCertVerificationError):
        return FetchError(
            Worded(
                "TLS certificate of {host} not trusted: {why} ({cacert} FILE trusts a private CA)",
                host=host,
                why=err.verify_message or err.reason,
            ),
            code="tls_error",
        )
    if isinstance(err, ssl.SSLError):
        return FetchError(f"TLS error with {host}: {err.reason or err}", code="tls_error")
    if isinstance(err, socket.gaierror):
        return FetchError(f"cannot resolve host {host}: {err.strerror}", code="network_error")
    if isinstance(err, ConnectionRefusedError):
        return FetchError(f"cannot connect to {host_port(conn, host)}: connection refused", code="network_error")
    if isinstance(err, http.client.IncompleteRead):  # a chunked body cut short
        return _truncated(url, len(err.partial), None)
    if isinstance(err, http.client.HTTPException):
        return FetchError(f"bad HTTP answer from {host}: {type(err).__name__} {err}".rstrip(), code="network_error")
    if isinstance(err, OSError):
        return FetchError(f"network error with {host}: {err.strerror or err}", code="network_error")
    return err
