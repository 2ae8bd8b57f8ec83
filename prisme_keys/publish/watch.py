"""Polling a published JWKS until ``check`` passes: the ``check --wait`` loop of a deploy pipeline.

After a revocation (or a rotation) the new set reaches verifiers through caches: the origin, a
CDN in front of it, then each verifier's own cache. :func:`run_until` fetches the URL, runs the
checks (:func:`prisme_keys.publish.check.run`) and, while they fail, fetches again, never sooner
than ``interval`` seconds and never before the last response goes stale (RFC 9111 section 4.2:
its ``s-maxage`` or ``max-age`` minus its ``Age``), since a cache would serve the same bytes
again until then, until the checks pass or ``wait`` seconds have passed. Waiting uses the real
(monotonic) clock, never ``--now``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prisme_keys import clock
from prisme_keys.errors import FetchError
from prisme_keys.publish import check as checks
from prisme_keys.tokens import freshness


def fresh_for(headers: dict[str, str]) -> float | None:
    """Seconds a response stays fresh in a shared cache (RFC 9111 section 4.2), or ``None`` when it says nothing.

    The one freshness rule (:func:`prisme_keys.tokens.freshness.fresh_for`) with a shared cache's
    view: ``s-maxage``, else ``max-age``, else ``Expires`` minus ``Date``, less the ``Age`` header;
    ``no-cache``, ``no-store``, ``private`` and an invalid lifetime make it 0.

    Args:
        headers: response headers, lower-case names.
    """
    return freshness.fresh_for(headers, shared=True)


def run_until(
    settings: Any,
    url: str,
    *,
    wait: float,
    interval: float,
    on_retry: Callable[[checks.Report | FetchError, float], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    **run_kw: Any,
) -> checks.Report:
    """Run :func:`prisme_keys.publish.check.run` until its report passes or ``wait`` seconds have passed.

    A failed fetch (exit 9: the server restarting during a deploy) counts as "not yet".

    Args:
        settings: effective settings; url: the JWKS URL.
        wait: seconds to keep trying (real clock).
        interval: least seconds between two fetches.
        on_retry: called before each pause with the failing report (or fetch error) and the pause, s.
        sleep: the pause function (``time.sleep``).
        run_kw: the keyword arguments of :func:`prisme_keys.publish.check.run` (``now``, ``absent``...).

    Returns:
        The last report, with ``attempts``, ``waited`` and ``stale_until`` set; it passes, or
        it is the failing report at the deadline.

    Raises:
        FetchError: the last fetch, at the deadline, failed.
    """
    start = time.monotonic()
    deadline = start + wait
    attempts = 0
    stale_until: str | None = None
    while True:
        attempts += 1
        outcome: checks.Report | FetchError
        try:
            outcome = checks.run(settings, url, **run_kw)
        except FetchError as exc:
            if time.monotonic() >= deadline:
                raise
            outcome, fresh = exc, None
        else:
            fresh = fresh_for(outcome.headers)
            if outcome.ok or time.monotonic() >= deadline:
                outcome.attempts, outcome.waited = attempts, time.monotonic() - start
                outcome.stale_until = stale_until if outcome.ok else _stale(fresh, stale_until)
                return outcome
            stale_until = _stale(fresh, stale_until)
        pause = min(max(interval, fresh or 0.0), deadline - time.monotonic())
        if on_retry is not None:
            on_retry(outcome, pause)
        sleep(max(0.0, pause))


def _stale(fresh: float | None, previous: str | None) -> str | None:
    """When caches may stop serving a failing response fetched now (``None`` when it gives no lifetime)."""
    return clock.iso(clock.now() + clock.seconds(fresh)) if fresh else previous
