"""HTTP freshness of a fetched JWK Set: RFC 9111 sections 4.2 and 5.2, for a private cache.

One parser of ``Cache-Control`` and one freshness calculation, used by the JWKS client (how long
a cached set may be used without asking the server again) and by ``check`` (what verifiers will
do with the published headers).

Rules (RFC 9111; times in seconds, on the real clock):

* ``Cache-Control`` directives (5.2) are comma-separated ``name[=value]``, names compared
  case-insensitively, values a token or a quoted-string (commas inside quotes do not split);
  unknown directives are ignored (5.2.3). ``s-maxage`` and ``private`` matter to shared caches
  only (a CDN in front of the JWKS, ``shared=True``); a private cache (a verifier) ignores them.
* ``no-store``: the response is not stored at all. ``no-cache`` (with or without field names):
  stored, but stale at once, so it is revalidated before every use.
* Freshness lifetime (4.2.1): ``max-age`` when present; else ``Expires`` minus ``Date`` (the
  response time when ``Date`` is absent or invalid); else a heuristic lifetime (4.2.2,
  :data:`DEFAULT_MAX_AGE`). A ``max-age`` that is not a whole number of seconds (``-1``, ``abc``,
  empty) or that appears twice with different values makes the response stale, and so does an
  ``Expires`` that is not an HTTP-date (``0``; section 5.3: "already expired"); neither falls back
  to the heuristic. Lifetimes are capped at :data:`MAX_CACHE_AGE`.
* Age (4.2.3): ``apparent_age = max(0, response_time - Date)``, ``corrected_age = Age +
  (response_time - request_time)``, ``initial_age = max(apparent_age, corrected_age)``,
  ``current_age = initial_age + (now - response_time)``. An ``Age`` that is not a non-negative
  integer is ignored (5.1); a list keeps its first member.
* A response is fresh while ``lifetime > current_age`` (4.2). A clock that went back by more
  than :data:`CLOCK_SLACK` seconds since the response makes it stale.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC
from typing import NamedTuple

DEFAULT_MAX_AGE = 600  #: heuristic freshness lifetime, seconds, when the response gives none (4.2.2)
MAX_CACHE_AGE = 86400  #: longest freshness honoured, seconds
CLOCK_SLACK = 60  #: seconds the clock may go back before a stored response counts as stale
_DELTA_MAX = 2**31  #: RFC 9111 1.2.2: larger delta-seconds are taken as 2^31
_DIGITS = re.compile(r"[0-9]+")


class CacheControl(NamedTuple):
    """A parsed ``Cache-Control`` field value (RFC 9111 section 5.2).

    Attributes:
        directives: ``{lower-case name: value or None}``, first occurrence of each name.
        no_store / no_cache: the directives are present (``no-cache`` with or without field names).
        max_age: the ``max-age`` in seconds, or ``None`` when absent or invalid.
        max_age_problem: why a present ``max-age`` is unusable (``"-1 is not a whole number of
            seconds"``, ``"given twice with different values"``), else ``None``.
        s_maxage / s_maxage_problem: the same for ``s-maxage`` (shared caches only).
    """

    directives: Mapping[str, str | None]
    no_store: bool = False
    no_cache: bool = False
    max_age: int | None = None
    max_age_problem: str | None = None
    s_maxage: int | None = None
    s_maxage_problem: str | None = None


def _split(value: str) -> list[tuple[str, str | None]]:
    """``name[=value]`` pairs of a comma-separated list; commas inside quoted-strings do not split."""
    items: list[str] = []
    cur: list[str] = []
    quoted = escaped = False
    for ch in value:
        if quoted:
            cur.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
            cur.append(ch)
        elif ch == ",":
            items.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    items.append("".join(cur))
    out: list[tuple[str, str | None]] = []
    for item in items:
        name, eq, arg = item.partition("=")
        name = name.strip().lower()
        if not name:
            continue
        if not eq:
            out.append((name, None))
            continue
        arg = arg.strip()
        if len(arg) >= 2 and arg[0] == '"' and arg[-1] == '"':
            arg = re.sub(r"\\(.)", r"\1", arg[1:-1])
        out.append((name, arg))
    return out


def parse_cache_control(value: str | None) -> CacheControl:
    """Parse a ``Cache-Control`` field value (several field lines joined with ``", "``).

    Args:
        value: the field value, or ``None`` when the header is absent.

    Returns:
        :class:`CacheControl`; never raises (invalid parts are reported in ``max_age_problem``
        or ignored, as RFC 9111 section 5.2 asks).
    """
    if not value:
        return CacheControl({})
    pairs = _split(value)
    directives: dict[str, str | None] = {}
    for name, arg in pairs:
        directives.setdefault(name, arg)
    max_age, problem = _delta(pairs, "max-age")
    s_maxage, s_problem = _delta(pairs, "s-maxage")
    return CacheControl(
        directives, "no-store" in directives, "no-cache" in directives, max_age, problem, s_maxage, s_problem
    )


def _delta(pairs: list[tuple[str, str | None]], name: str) -> tuple[int | None, str | None]:
    """``(seconds, None)`` for a valid delta-seconds directive, ``(None, why)`` for an invalid one, else both None."""
    values = [arg for n, arg in pairs if n == name]
    if not values:
        return None, None
    if len(set(values)) > 1:
        return None, f"{name} is given twice with different values"
    if values[0] is None or not _DIGITS.fullmatch(values[0]):
        shown = "an empty value" if not values[0] else repr(values[0][:40])
        return None, f"{name} has {shown}, not a whole number of seconds"
    return min(int(values[0]), _DELTA_MAX), None


def parse_http_date(value: str | None) -> float | None:
    """An HTTP-date (IMF-fixdate, RFC 850 or asctime form) as Unix seconds; ``None`` when absent or invalid."""
    if not value:
        return None
    from email.utils import parsedate_to_datetime

    try:
        dt = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        return dt.timestamp()
    except (OverflowError, OSError, ValueError):
        return None


def parse_age(value: str | None) -> int | None:
    """The ``Age`` header in seconds (first member of a list); ``None`` when absent or invalid (RFC 9111 5.1)."""
    if not value:
        return None
    first = value.split(",", 1)[0].strip()
    if not _DIGITS.fullmatch(first):
        return None
    return min(int(first), _DELTA_MAX)


class Freshness(NamedTuple):
    """How long a response may be used from a private cache (RFC 9111 section 4.2).

    Attributes:
        storable: false for ``no-store``.
        lifetime: freshness lifetime, seconds (0 = stale at once).
        initial_age: corrected initial age at the response time, seconds.
        source: where the lifetime came from: ``max-age``, ``expires``, ``heuristic``,
            ``no-cache``, ``no-store``, ``invalid max-age`` or ``invalid expires``.
        detail: one line for people, e.g. ``max-age 600 minus Age 590``.
    """

    storable: bool
    lifetime: float
    initial_age: float
    source: str
    detail: str

    def remaining(self, response_time: float, now: float) -> float:
        """Seconds the response stays fresh at ``now`` (0 or less: stale); both in Unix seconds."""
        if now < response_time - CLOCK_SLACK:
            return 0.0
        current_age = self.initial_age + max(0.0, now - response_time)
        return self.lifetime - current_age

    def is_fresh(self, response_time: float, now: float) -> bool:
        """``lifetime > current_age`` at ``now`` (RFC 9111 section 4.2)."""
        return self.storable and self.remaining(response_time, now) > 0


def _lifetime(
    cc: CacheControl, headers: Mapping[str, str], response_time: float, heuristic: float, shared: bool
) -> tuple[bool, float, str, str]:
    if cc.no_store:
        return False, 0.0, "no-store", "no-store: never stored"
    if shared and "private" in cc.directives:
        return False, 0.0, "no-store", "private: never stored by a shared cache"
    if cc.no_cache:
        return True, 0.0, "no-cache", "no-cache: revalidated before every use"
    if shared and cc.s_maxage_problem:
        return True, 0.0, "invalid max-age", f"{cc.s_maxage_problem}: stale at once"
    if shared and cc.s_maxage is not None:
        return True, float(min(cc.s_maxage, MAX_CACHE_AGE)), "max-age", f"s-maxage {cc.s_maxage}"
    if cc.max_age_problem:
        return True, 0.0, "invalid max-age", f"{cc.max_age_problem}: stale at once"
    if cc.max_age is not None:
        return True, float(min(cc.max_age, MAX_CACHE_AGE)), "max-age", f"max-age {cc.max_age}"
    if "expires" in headers:
        expires = parse_http_date(headers["expires"])
        if expires is None:
            return True, 0.0, "invalid expires", "Expires is not an HTTP date (already expired)"
        date = parse_http_date(headers.get("date"))
        base = date if date is not None else response_time
        life = min(max(0.0, expires - base), MAX_CACHE_AGE)
        return True, life, "expires", f"Expires minus Date: {life:.0f} s"
    return True, float(min(heuristic, MAX_CACHE_AGE)), "heuristic", f"no explicit lifetime: {heuristic:g} s"


def freshness(
    headers: Mapping[str, str],
    *,
    request_time: float,
    response_time: float,
    heuristic: float = DEFAULT_MAX_AGE,
    shared: bool = False,
) -> Freshness:
    """The freshness of a response (RFC 9111 sections 4.2.1-4.2.3) for a private cache.

    Args:
        headers: response headers, lower-case names (repeated fields joined with ``", "``).
        request_time: Unix seconds when the request was sent (real clock).
        response_time: Unix seconds when the response arrived (real clock).
        heuristic: lifetime, seconds, when the response gives neither ``max-age`` nor ``Expires``.
        shared: the rules of a shared cache (a CDN): ``s-maxage`` first, ``private`` never stored.

    Returns:
        :class:`Freshness`; check it later with :meth:`Freshness.is_fresh`.
    """
    cc = parse_cache_control(headers.get("cache-control"))
    storable, lifetime, source, detail = _lifetime(cc, headers, response_time, heuristic, shared)
    date = parse_http_date(headers.get("date"))
    apparent_age = max(0.0, response_time - date) if date is not None else 0.0
    age_value = parse_age(headers.get("age"))
    corrected_age = (age_value or 0) + max(0.0, response_time - request_time)
    initial_age = max(apparent_age, corrected_age)
    if age_value:
        detail += f" minus Age {age_value}"
    return Freshness(storable, lifetime, initial_age, source, detail)


def fresh_for(headers: Mapping[str, str], *, shared: bool = False) -> float | None:
    """Seconds a response stays fresh as its server sent it, or ``None`` when it gives no lifetime.

    The server's own view (RFC 9111 4.2): ``Date`` is the response time, so only the ``Age`` header
    counts as age; ``shared`` applies the rules of a shared cache (``s-maxage``, ``private``).

    Returns:
        ``None`` when neither ``Cache-Control`` nor ``Expires`` gives a lifetime (each cache picks
        its own); 0 for ``no-store``, ``no-cache``, an invalid lifetime or an ``Age`` past it.
    """
    date = parse_http_date(headers.get("date"))
    at = date if date is not None else 0.0
    fr = freshness(headers, request_time=at, response_time=at, shared=shared)
    if fr.source == "heuristic":
        return None
    return max(0.0, fr.remaining(at, at))
