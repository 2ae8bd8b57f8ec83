"""The JWKS client's disk cache: one JSON file per URL, used while fresh (RFC 9111 section 4.2).

Entry: ``{url, final_url, etag, last_modified, content_type, doc, leaked, refetched_at,
cache_headers, fetched_at, freshness: {lifetime, initial_age, source}}``; times are Unix seconds
on the real clock. A cache that cannot be read is a miss; one that cannot be written is only slower.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prisme_keys.tokens import freshness

REFETCH_INTERVAL = 30  #: seconds between forced refetches of one URL
_FRESHNESS_HEADERS = ("cache-control", "expires", "date", "age")


def cache_path(url: str, cache_dir: Path | str | None = None) -> Path:
    """The cache file of ``url``: ``<cache dir>/jwks/<sha256(url)>.json``."""
    if cache_dir is None:
        from prisme_keys.settings import default_cache_dir

        cache_dir = default_cache_dir()
    return Path(cache_dir) / "jwks" / (hashlib.sha256(url.encode("utf-8")).hexdigest() + ".json")


def load(path: Path, url: str) -> dict[str, Any] | None:
    """The cache entry of ``url`` stored at ``path``, or ``None`` (missing, unreadable, another URL's)."""
    try:
        entry = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(entry, dict) or entry.get("url") != url or not isinstance(entry.get("doc"), dict):
        return None
    return entry


def save(path: Path, entry: dict[str, Any]) -> None:
    """Write an entry atomically (mode 0600; no fsync: a crash may lose the entry, and an unreadable
    entry counts as absent); a failure is ignored (the next call fetches again)."""
    from prisme_keys.errors import PrismeKeysError
    from prisme_keys.store.files import atomic_write

    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(path, json.dumps(entry).encode("utf-8"), mode=0o600, durable=False)
    except (OSError, PrismeKeysError):
        pass  # a cache that cannot be written is only slower


def drop(path: Path) -> None:
    """Remove an entry (e.g. after a ``no-store`` answer); a failure is ignored."""
    try:
        path.unlink()
    except OSError:
        pass


def cache_headers(headers: dict[str, str]) -> dict[str, str]:
    """The header fields freshness depends on (``Cache-Control``, ``Expires``, ``Date``, ``Age``)."""
    return {k: headers[k] for k in _FRESHNESS_HEADERS if k in headers}


def set_freshness(entry: dict[str, Any], headers: dict[str, str], request_time: float, response_time: float) -> bool:
    """Record the response's freshness (RFC 9111 4.2) in a cache entry; False when it must not be stored."""
    fr = freshness.freshness(headers, request_time=request_time, response_time=response_time)
    entry["cache_headers"] = headers
    entry["fetched_at"] = response_time
    entry["freshness"] = {"lifetime": fr.lifetime, "initial_age": fr.initial_age, "source": fr.source}
    return fr.storable


def is_fresh(entry: dict[str, Any], now: float) -> bool:
    """True while the entry is fresh at ``now`` (Unix seconds, real clock); an older entry format is stale."""
    try:
        f = entry["freshness"]
        fr = freshness.Freshness(True, float(f["lifetime"]), float(f["initial_age"]), str(f["source"]), "")
        return fr.is_fresh(float(entry["fetched_at"]), now)
    except (KeyError, TypeError, ValueError):  # an entry of an older version: revalidate it
        return False


def refetch_allowed(
    url: str, cache_dir: Path | str | None = None, real_clock: Callable[[], float] = time.time
) -> float:
    """Seconds to wait before the next forced refetch of ``url`` (0 = allowed now), on the real clock."""
    entry = load(cache_path(url, cache_dir), url)
    last = (entry or {}).get("refetched_at")
    if not last:
        return 0.0
    wait = float(last) + REFETCH_INTERVAL - real_clock()
    return max(0.0, wait)
