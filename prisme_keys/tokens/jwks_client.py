"""Fetching a JWK Set (RFC 7517 section 5) over HTTP(S), with a small disk cache.

Why the standard library (``http.client`` + ``ssl``) and not ``requests``/``httpx``: what we
need is exact control that those clients do not give directly: a *total* deadline (not a
per-read timeout), a body cap enforced while reading, our own redirect rules (at most 3,
never from https to http, the final URL reported) and no extra dependency. The whole
exchange runs in a worker thread so even a stalled name lookup cannot exceed the deadline.

Rules:

* ``https://`` is required, except for loopback hosts (``localhost``, 127.0.0.0/8, ``::1``)
  or with ``allow_http``. Certificates are always verified (system store, or ``cacert``
  for a private CA).
* A non-2xx status, a ``text/html`` body, a body that is not JSON, or JSON that is not a
  JWK Set raise :class:`~prisme_keys.errors.FetchError` (exit 9) saying which.
* Private key members published by the server are removed before anything is cached and
  reported as a warning.
* Cache: ``<user cache dir>/jwks/<sha256(url)>.json``; used while fresh by RFC 9111 section 4.2
  (:mod:`prisme_keys.tokens.freshness`: ``max-age`` minus ``Age``, ``Expires`` minus ``Date``,
  :data:`DEFAULT_MAX_AGE` when the server says nothing, at most :data:`MAX_CACHE_AGE`; an invalid
  ``max-age`` or ``Expires`` is stale; ``no-store`` is never stored), then revalidated with
  ``If-None-Match`` / ``If-Modified-Since``. Freshness runs on the real clock, never ``--now``.
  After an unknown kid the set is refetched once, at most once per :data:`REFETCH_INTERVAL` per URL.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prisme_keys.errors import FetchError, InvalidArgument, Worded
from prisme_keys.jwk import PRIVATE_MEMBERS
from prisme_keys.text import cap, decode_utf8, redact_url, shown
from prisme_keys.tokens import jwks_cache
from prisme_keys.tokens.freshness import DEFAULT_MAX_AGE, MAX_CACHE_AGE  # noqa: F401  (public names of this module)
from prisme_keys.tokens.jwks_cache import (  # noqa: F401  (public names of this module)
    REFETCH_INTERVAL,
    cache_path,
    refetch_allowed,
)
from prisme_keys.tokens.keyring import DEFAULT_MAX_BYTES as DEFAULT_MAX_BYTES  # 1 MiB body cap (public here too)
from prisme_keys.tokens.keyring import KeyRing, KeySource
from prisme_keys.tokens.urls import check_url, host_port, redirect_target

DEFAULT_TIMEOUT = 5.0  #: seconds, whole exchange including redirects
MAX_REDIRECTS = 3


_REDIRECTS = (301, 302, 303, 307, 308)


@dataclass
class RawResponse:
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
    redirects: list[str] = field(default_factory=list)

    @property
    def content_type(self) -> str:
        """The media type without parameters, lower case (``""`` when absent)."""
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


@dataclass
class FetchResult:
    """A fetched (or cached) JWK Set.

    Attributes:
        url, final_url: asked and answering URL; status: HTTP status (200, or 304 when revalidated,
            0 when served from the cache without a request).
        headers: response headers (lower-case names); content_type: media type.
        body_bytes: the raw body (``b""`` when from the cache).
        doc: the parsed set, private members removed.
        from_cache: served from the disk cache (fresh or revalidated).
        fetched_at: Unix seconds of the last network exchange.
        warnings: one line each (private members published, ...).
        redirects: URLs followed.
    """

    url: str
    final_url: str
    status: int
    headers: dict[str, str]
    content_type: str
    body_bytes: bytes
    doc: dict[str, Any]
    from_cache: bool = False
    fetched_at: float = 0.0
    warnings: list[str] = field(default_factory=list)
    redirects: list[str] = field(default_factory=list)


def _header_fields(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """``{lower-case name: value}``; a field sent on several lines is one comma-separated list (RFC 9110 5.3)."""
    out: dict[str, str] = {}
    for k, v in pairs:
        k = k.lower()
        out[k] = f"{out[k]}, {v}" if k in out else v
    return out


def _tls_context(cacert: str | None) -> Any:
    """The ``ssl`` context trusting ``cacert`` (else the system store).

    Raises:
        FetchError: code ``tls_error``, the CA file cannot be loaded.
    """
    import ssl

    try:
        return ssl.create_default_context(cafile=cacert)
    except (OSError, ssl.SSLError) as exc:
        error = getattr(exc, "strerror", None) or exc
        raise FetchError(
            Worded("cannot load {cacert} {path}: {error}", path=cacert, error=error), code="tls_error"
        ) from None


_TOO_LARGE = "the JWKS at {url} is {length} bytes; the limit is {limit} bytes ({max_bytes})"
_OVER_CAP = "the JWKS at {url} is larger than the limit of {limit} bytes ({max_bytes}); stopped reading"


def _exchange(
    url: str,
    *,
    deadline: float,
    max_bytes: int,
    cacert: str | None,
    allow_http: bool,
    headers: dict[str, str],
    holder: dict[str, Any],
) -> RawResponse:
    import http.client
    import time

    from prisme_keys import __version__

    redirects: list[str] = []
    current = url
    parts = check_url(current, allow_http)
    ctx = None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        if parts.scheme == "https":
            ctx = ctx or _tls_context(cacert)
            conn: Any = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=remaining, context=ctx)
        else:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=remaining)
        holder["conn"] = conn
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        hdrs = {
            "Accept": "application/jwk-set+json, application/json;q=0.9",
            "Accept-Encoding": "identity",
            "User-Agent": f"prisme-keys/{__version__}",
            **headers,
        }
        conn.request("GET", path, headers=hdrs)
        resp = conn.getresponse()
        rheaders = _header_fields(resp.getheaders())
        if resp.status in _REDIRECTS and "location" in rheaders:
            conn.close()
            nxt, parts = redirect_target(current, rheaders["location"], allow_http)
            redirects.append(nxt)
            if len(redirects) > MAX_REDIRECTS:
                raise FetchError(
                    f"more than {MAX_REDIRECTS} redirects fetching {cap(redact_url(url))} "
                    f"(last: {cap(redact_url(nxt))})",
                    code="too_many_redirects",
                )
            current = nxt
            continue
        length = rheaders.get("content-length", "")
        if length.isdigit() and int(length) > max_bytes:
            conn.close()
            raise FetchError(
                Worded(_TOO_LARGE, url=redact_url(current), length=int(length), limit=max_bytes), code="too_large"
            )
        chunks, total = [], 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            if conn.sock is not None:
                conn.sock.settimeout(left)
            data = resp.read(min(65536, max_bytes + 1 - total))
            if not data:
                break
            total += len(data)
            if total > max_bytes:
                conn.close()
                raise FetchError(Worded(_OVER_CAP, url=redact_url(current), limit=max_bytes), code="too_large")
            chunks.append(data)
        conn.close()
        if resp.length:  # http.client counts down the Content-Length; an early close leaves some unread
            raise _truncated(current, total, total + resp.length)
        return RawResponse(url, current, resp.status, resp.reason or "", rheaders, b"".join(chunks), redirects)


def fetch_raw(
    url: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    max_bytes: int = DEFAULT_MAX_BYTES,
    cacert: str | None = None,
    allow_http: bool = False,
    headers: dict[str, str] | None = None,
) -> RawResponse:
    """GET ``url`` under a total deadline; no status or body checks (see :func:`fetch`).

    Args:
        timeout: seconds for the whole exchange (connect, TLS, redirects, body).
        max_bytes: body cap, enforced while reading.
        cacert: PEM file of the CA(s) to trust instead of the system store.
        allow_http: accept plain http for non-loopback hosts.
        headers: extra request headers (e.g. conditional ones).

    Raises:
        FetchError: bad or insecure URL, network error, TLS error, timeout, redirect rules,
            body over the cap.
    """
    import math
    import socket
    import threading

    if not math.isfinite(timeout) or timeout <= 0:
        raise InvalidArgument(
            "timeout", "{timeout} must be a number of seconds above 0, not {value}", value=shown(timeout)
        )
    import time

    check_url(url, allow_http)
    deadline = time.monotonic() + timeout
    holder: dict[str, Any] = {}
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["ok"] = _exchange(
                url,
                deadline=deadline,
                max_bytes=max_bytes,
                cacert=cacert,
                allow_http=allow_http,
                headers=headers or {},
                holder=holder,
            )
        except BaseException as exc:  # a thread boundary: handed to the caller, who re-raises what it cannot map
            box["err"] = exc

    worker = threading.Thread(target=run, name="jwks-fetch", daemon=True)
    worker.start()
    worker.join(timeout + 0.2)
    timed_out = worker.is_alive()
    if timed_out:
        conn = holder.get("conn")
        sock = getattr(conn, "sock", None)
        try:
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        raise _timed_out(url, timeout)
    err = box.get("err")
    if err is None:
        ok: RawResponse = box["ok"]
        return ok
    raise _fetch_error(err, url, timeout, holder.get("conn"))


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


def strip_private(doc: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Remove private members from every key of a set.

    Returns:
        ``(clean_doc, labels)``: labels (kid or ``#index``) of the keys that had private members.
    """
    leaked: list[str] = []
    keys_ = []
    for i, k in enumerate(doc.get("keys", [])):
        if isinstance(k, dict) and any(m in k for m in PRIVATE_MEMBERS):
            leaked.append(str(k.get("kid", f"#{i + 1}")))
            k = {m: v for m, v in k.items() if m not in PRIVATE_MEMBERS}
        keys_.append(k)
    out = dict(doc)
    out["keys"] = keys_
    return out, leaked


def parse_jwks(raw: RawResponse) -> dict[str, Any]:
    """Check a response holds a JWK Set and parse it.

    Raises:
        FetchError: non-2xx status (naming it), ``text/html`` (naming the type), a body that is
            not JSON, or JSON that is not a JWK Set (no ``keys`` array).
    """
    where = redact_url(raw.final_url)
    ctype = raw.content_type
    if not 200 <= raw.status < 300:
        raise FetchError(
            f"HTTP {raw.status} {raw.reason} from {where}" + (f" ({ctype} body)" if ctype else ""), code="http_status"
        )
    if ctype in ("text/html", "application/xhtml+xml"):
        raise FetchError(
            f"{where} answered with Content-Type {ctype}, not a JWK Set (a login or error page?)", code="not_json"
        )
    try:
        doc = json.loads(decode_utf8(raw.body))  # a leading BOM is accepted (RFC 8259 section 8.1)
    except RecursionError:
        raise FetchError(f"the body from {where} is JSON nested too deeply to be a JWK Set", code="not_json") from None
    except (ValueError, UnicodeDecodeError):
        start = raw.body[:20].decode("utf-8", "replace").strip()
        raise FetchError(
            f"the body from {where} is not JSON (Content-Type {ctype or 'absent'}, starts with {shown(start)})",
            code="not_json",
        ) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        what = 'an object without a "keys" array' if isinstance(doc, dict) else f"a JSON {type(doc).__name__}"
        raise FetchError(f"the JSON from {where} is not a JWK Set: {what}", code="not_a_jwk_set")
    return doc


def _leak_warning(url: str, kids: list[str]) -> str:
    return (
        f"{redact_url(url)} publishes private key members for key(s) {', '.join(kids)}; they were ignored and not "
        "cached (the private key is exposed: replace it)"
    )


def fetch(
    url: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    max_bytes: int = DEFAULT_MAX_BYTES,
    cacert: str | None = None,
    allow_http: bool = False,
    use_cache: bool = True,
    cache_dir: Path | str | None = None,
    force: bool = False,
    real_clock: Callable[[], float] = time.time,
) -> FetchResult:
    """Fetch the JWK Set at ``url`` (or serve it from the cache while it is fresh, RFC 9111 section 4.2).

    Args:
        timeout: seconds for the whole exchange; max_bytes: body cap; cacert: private CA PEM;
        allow_http: accept http for non-loopback hosts.
        use_cache: read and write the disk cache (``False`` = ``--no-cache``: neither).
        cache_dir: cache folder (default the user cache dir, platformdirs).
        force: skip a fresh cache entry (still conditional when validators are known);
            recorded as a refetch for :func:`jwks_cache.refetch_allowed`.
        real_clock: the real clock, Unix seconds (freshness never follows ``--now``).

    Returns:
        :class:`FetchResult`; ``doc`` has no private members.

    Raises:
        FetchError: see :func:`fetch_raw` and :func:`parse_jwks`.
    """
    path = jwks_cache.cache_path(url, cache_dir) if use_cache else None
    entry = jwks_cache.load(path, url) if path is not None else None
    if entry is not None and not force and jwks_cache.is_fresh(entry, real_clock()):
        return _cached_result(url, entry, None)
    cond: dict[str, str] = {}
    if entry is not None:
        if entry.get("etag"):
            cond["If-None-Match"] = entry["etag"]
        if entry.get("last_modified"):
            cond["If-Modified-Since"] = entry["last_modified"]
    request_time = real_clock()
    raw = fetch_raw(url, timeout=timeout, max_bytes=max_bytes, cacert=cacert, allow_http=allow_http, headers=cond)
    response_time = real_clock()
    if raw.status == 304 and entry is not None and path is not None:
        # RFC 9111 4.3.4: the stored response is freshened with the 304's header fields
        headers = {**entry.get("cache_headers", {}), **jwks_cache.cache_headers(raw.headers)}
        jwks_cache.set_freshness(entry, headers, request_time, response_time)
        if force:
            entry["refetched_at"] = response_time
        jwks_cache.save(path, entry)
        return _cached_result(url, entry, raw)
    doc, leaked = strip_private(parse_jwks(raw))
    warnings = [_leak_warning(url, leaked)] if leaked else []
    if path is not None:
        new = {
            "url": url,
            "final_url": raw.final_url,
            "etag": raw.headers.get("etag"),
            "last_modified": raw.headers.get("last-modified"),
            "content_type": raw.content_type,
            "doc": doc,
            "leaked": leaked,
            "refetched_at": response_time if force else (entry or {}).get("refetched_at"),
        }
        if jwks_cache.set_freshness(new, jwks_cache.cache_headers(raw.headers), request_time, response_time):
            jwks_cache.save(path, new)
        elif entry is not None:
            jwks_cache.drop(path)  # no-store now: an older stored copy must not be used either
    return FetchResult(
        url,
        raw.final_url,
        raw.status,
        raw.headers,
        raw.content_type,
        raw.body,
        doc,
        False,
        response_time,
        warnings,
        raw.redirects,
    )


def _cached_result(url: str, entry: dict[str, Any], raw: RawResponse | None) -> FetchResult:
    warnings = [_leak_warning(url, entry["leaked"])] if entry.get("leaked") else []
    return FetchResult(
        url,
        raw.final_url if raw is not None else entry.get("final_url", url),
        raw.status if raw is not None else 0,
        raw.headers if raw is not None else entry.get("cache_headers", {}),
        entry.get("content_type", ""),
        b"",
        entry["doc"],
        True,
        float(entry["fetched_at"]),
        warnings,
        raw.redirects if raw is not None else [],
    )


class UrlKeySource(KeySource):
    """A :class:`~prisme_keys.tokens.KeySource` over a JWKS URL (fetched once, refetched once on an unknown kid).

    Args:
        url: the JWKS URL; the keyword arguments are those of :func:`fetch`.

    Raises:
        FetchError: the first fetch failed.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_bytes: int = DEFAULT_MAX_BYTES,
        cacert: str | None = None,
        allow_http: bool = False,
        use_cache: bool = True,
        cache_dir: Path | str | None = None,
        real_clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.description = redact_url(url)
        self._clock = real_clock
        self._kw: dict[str, Any] = {
            "real_clock": real_clock,
            "timeout": timeout,
            "max_bytes": max_bytes,
            "cacert": cacert,
            "allow_http": allow_http,
            "use_cache": use_cache,
            "cache_dir": cache_dir,
        }
        self._seen: set[str] = set()
        self._pending: list[str] = []
        self._refetched_at: float | None = None
        self.result = fetch(url, **self._kw)
        self._build()

    def _build(self) -> None:

        self._ring = KeyRing(self.result.doc, self.description)
        for w in self.result.warnings + self._ring.warnings:
            if w not in self._seen:
                self._seen.add(w)
                self._pending.append(w)

    def ring(self) -> Any:
        """The current key ring."""
        return self._ring

    def refresh(self) -> str | None:
        """Refetch after an unknown kid: only when the set came from the cache, at most once per 30 s per URL.

        Returns:
            ``None`` when a new set was loaded, else why not.

        Raises:
            FetchError: the refetch failed.
        """
        if not self.result.from_cache:
            return "fetched just now"
        now_ts = self._clock()
        if self._refetched_at is not None and now_ts - self._refetched_at < REFETCH_INTERVAL:
            return f"refetched {now_ts - self._refetched_at:.0f} s ago"
        wait = (
            jwks_cache.refetch_allowed(self.url, self._kw["cache_dir"], self._clock) if self._kw["use_cache"] else 0.0
        )
        if wait > 0:
            return f"refetched recently; next refetch allowed in {wait:.0f} s"
        self._refetched_at = now_ts
        self.result = fetch(self.url, force=True, **self._kw)
        self._build()
        return None

    def take_warnings(self) -> list[str]:
        """Warnings not yet reported (each reported once)."""
        out, self._pending = self._pending, []
        return out
