"""Fetching a JWK Set (RFC 7517 section 5) over HTTP(S), with a small disk cache.

The exchange itself (total deadline, body cap, redirect rules, TLS) is
:mod:`prisme_keys.tokens.http`; the cache file is :mod:`prisme_keys.tokens.jwks_cache`. This
module decides what a JWK Set is, when the cache answers, and gives verification its keys
(:class:`UrlKeySource`).

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
from pathlib import Path
from typing import Any, NamedTuple

from prisme_keys.errors import FetchError, Worded
from prisme_keys.jwk import PRIVATE_MEMBERS
from prisme_keys.text import decode_utf8, redact_url, shown
from prisme_keys.tokens import jwks_cache
from prisme_keys.tokens.freshness import DEFAULT_MAX_AGE, MAX_CACHE_AGE  # noqa: F401  (public names of this module)
from prisme_keys.tokens.http import DEFAULT_MAX_BYTES as DEFAULT_MAX_BYTES  # public names of this module
from prisme_keys.tokens.http import DEFAULT_TIMEOUT as DEFAULT_TIMEOUT
from prisme_keys.tokens.http import MAX_REDIRECTS as MAX_REDIRECTS
from prisme_keys.tokens.http import RawResponse as RawResponse
from prisme_keys.tokens.http import fetch_raw as fetch_raw
from prisme_keys.tokens.jwks_cache import (  # noqa: F401  (public names of this module)
    REFETCH_INTERVAL,
    cache_path,
    refetch_allowed,
)
from prisme_keys.tokens.keyring import KeyRing, KeySource


class FetchResult(NamedTuple):
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
    from_cache: bool
    fetched_at: float
    warnings: list[str]
    redirects: list[str]


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
    request_time = real_clock()
    raw = fetch_raw(
        url,
        timeout=timeout,
        max_bytes=max_bytes,
        cacert=cacert,
        allow_http=allow_http,
        headers=_conditional_headers(entry),
    )
    response_time = real_clock()
    if raw.status == 304 and entry is not None and path is not None:
        _freshen(path, entry, raw, request_time, response_time, force)
        return _cached_result(url, entry, raw)
    doc, leaked = strip_private(parse_jwks(raw))
    if path is not None:
        _store(path, entry, raw, doc, leaked, request_time, response_time, force)
    warnings = [_leak_warning(url, leaked)] if leaked else []
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


def _conditional_headers(entry: dict[str, Any] | None) -> dict[str, str]:
    """``If-None-Match`` / ``If-Modified-Since`` from a stored entry's validators (RFC 9110 13.1)."""
    cond: dict[str, str] = {}
    if entry is not None:
        if entry.get("etag"):
            cond["If-None-Match"] = entry["etag"]
        if entry.get("last_modified"):
            cond["If-Modified-Since"] = entry["last_modified"]
    return cond


def _freshen(
    path: Path, entry: dict[str, Any], raw: RawResponse, request_time: float, response_time: float, force: bool
) -> None:
    """A 304 answer: the stored entry is freshened with the 304's header fields (RFC 9111 4.3.4) and saved."""
    headers = {**entry.get("cache_headers", {}), **jwks_cache.cache_headers(raw.headers)}
    jwks_cache.set_freshness(entry, headers, request_time, response_time)
    if force:
        entry["refetched_at"] = response_time
    jwks_cache.save(path, entry)


def _store(
    path: Path,
    entry: dict[str, Any] | None,
    raw: RawResponse,
    doc: dict[str, Any],
    leaked: list[str],
    request_time: float,
    response_time: float,
    force: bool,
) -> None:
    """Cache a new set (private members already removed), or drop the old entry when the server now says no-store.

    ``refetched_at`` (the last forced refetch, for :func:`jwks_cache.refetch_allowed`) carries over.
    """
    new = {
        "url": raw.url,
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
    """A :class:`~prisme_keys.tokens.KeySource` over a JWKS URL: fetched (or served from the cache) once,
    refetched on an unknown kid (:meth:`refresh`), and, for a source that lives long (``verify --batch``
    as a sidecar), its freshness checked again every :data:`REFETCH_INTERVAL` seconds (:meth:`ring`).

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
        self._recheck_at = self._clock() + REFETCH_INTERVAL
        self._build()

    def _build(self) -> None:

        self._ring = KeyRing(self.result.doc, self.description)
        for w in self.result.warnings + self._ring.warnings:
            if w not in self._seen:
                self._seen.add(w)
                self._pending.append(w)

    def ring(self) -> Any:
        """The current key ring; every :data:`REFETCH_INTERVAL` seconds (real clock) the set is asked for
        again as :func:`fetch` would (from the cache while it is fresh, RFC 9111; else revalidated or
        fetched), so a set published since, or a key removed from it, reaches a long-running batch
        within its freshness lifetime plus 30 s. A failed request keeps the current set, with a
        warning (:meth:`take_warnings`), and is tried again 30 s later."""
        now_ts = self._clock()
        if now_ts >= self._recheck_at:
            self._recheck_at = now_ts + REFETCH_INTERVAL
            try:
                result = fetch(self.url, **self._kw)
            except FetchError as exc:
                why = Worded("cannot check the JWKS again ({why}); still using the set fetched before", why=exc.message)
                self._pending.append(why)
            else:
                changed, self.result = result.doc != self.result.doc, result
                if changed:  # the same set keeps its ring (a batch's checked headers stay valid)
                    self._build()
        return self._ring

    def refresh(self) -> str | None:
        """Refetch after an unknown kid: at most once per :data:`REFETCH_INTERVAL` (30 s) per URL, counted
        from the last request for the set (this source's, or another process's through the cache), so a
        long-running ``verify --batch`` still learns the keys published after it started.

        Returns:
            ``None`` when a new set was loaded, else why not.

        Raises:
            FetchError: the refetch failed.
        """
        now_ts = self._clock()
        if self._refetched_at is not None and now_ts - self._refetched_at < REFETCH_INTERVAL:
            return f"refetched {now_ts - self._refetched_at:.0f} s ago"
        if not self.result.from_cache and now_ts - self.result.fetched_at < REFETCH_INTERVAL:
            return "fetched just now"
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
