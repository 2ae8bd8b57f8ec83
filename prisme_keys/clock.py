"""The one source of "now", plus durations and time parsing.

All times are timezone-aware UTC :class:`datetime.datetime` values truncated to
milliseconds, the precision of the gateway's ISO-8601 record times
(``2026-11-29T08:00:00.000Z``). Durations are whole seconds.

Only this module reads the system clock, and :func:`now` always returns the real time:
the time a command acts at (``--now``) is passed to the functions that need it as an
argument, never stored here.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from prisme_keys.text import shown

#: Clock skew tolerated between the real clock and a time taken as "now", seconds: hosts sharing
#: a key file may disagree this much, and a ``--now`` this close to the real clock still writes.
CLOCK_SKEW = 300

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_RE = re.compile(r"^\s*([0-9]+)\s*([smhdw]?)\s*$")
_OFFSET_RE = re.compile(r"^\s*([+-])\s*([0-9]+)\s*([smhdw]?)\s*$")


#: The earliest and latest times a record, ``--now`` or a schedule can hold (UTC, millisecond precision):
#: date arithmetic saturates here (:func:`shift`) instead of overflowing.
EARLIEST = datetime(1, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)


def _truncate(dt: datetime) -> datetime:
    return dt.replace(microsecond=(dt.microsecond // 1000) * 1000)


def now() -> datetime:
    """Return the real current time (UTC, millisecond precision)."""
    return _truncate(datetime.now(UTC))


def parse_duration(text: str | int) -> int:
    """Parse a duration into whole seconds.

    Accepts ``90s``, ``15m``, ``2h``, ``30d``, ``1w`` or plain seconds (``3600``).

    Raises:
        ValueError: with a one-line reason when ``text`` is not a duration.
    """
    if isinstance(text, bool):
        raise ValueError(f"not a duration: {shown(text)}")
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"not a duration: {shown(text)} (negative)")
        return text
    m = _DURATION_RE.match(str(text))
    if not m:
        raise ValueError(f"not a duration: {shown(text)} (use e.g. 90s, 15m, 2h, 30d or plain seconds)")
    return int(m.group(1)) * _UNITS[m.group(2) or "s"]


def format_duration(secs: float) -> str:
    """Write a number of seconds in the largest unit that divides it: ``30d``, ``10m``, ``1h``, ``90s``, ``0.5s``.

    The inverse of :func:`parse_duration` for whole seconds (weeks are written as days).
    """
    if secs != int(secs):
        return f"{secs:g}s"
    n = int(secs)
    for unit in ("d", "h", "m"):
        if n and n % _UNITS[unit] == 0:
            return f"{n // _UNITS[unit]}{unit}"
    return f"{n}s"


def parse_iso(text: str) -> datetime:
    """Parse an ISO-8601 time into an aware UTC datetime.

    A time without zone is taken as UTC. ``Z`` is accepted.

    Raises:
        ValueError: when ``text`` is not ISO-8601.
    """
    if not isinstance(text, str):
        raise ValueError(f"not an ISO-8601 time: {shown(text)}")
    s = text.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    dt = datetime.fromisoformat(s)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def parse_time(text: str, base: datetime | None = None) -> datetime:
    """Parse a ``--now`` value: ISO-8601, Unix seconds, or an offset like ``+31d`` / ``-2h``.

    Offsets are relative to ``base`` (default: the real current time).

    Raises:
        ValueError: when ``text`` is none of these.
    """
    s = text.strip()
    m = _OFFSET_RE.match(s)
    try:
        if m:
            secs = int(m.group(2)) * _UNITS[m.group(3) or "s"]
            ref = base if base is not None else _truncate(datetime.now(UTC))
            return _truncate(ref + timedelta(seconds=secs if m.group(1) == "+" else -secs))
        if re.fullmatch(r"[0-9]+(\.[0-9]+)?", s):
            return _truncate(datetime.fromtimestamp(float(s), UTC))
    except (OverflowError, ValueError, OSError):
        raise ValueError(f"time out of range: {shown(text)} (years 1 to 9999)") from None
    try:
        return _truncate(parse_iso(s))
    except ValueError:
        raise ValueError(
            f"not a time: {shown(text)} (use ISO-8601, Unix seconds, or an offset like +31d, -2h)"
        ) from None


def iso(dt: datetime) -> str:
    """Format as the gateway does: ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (UTC, milliseconds)."""
    dt = dt.astimezone(UTC)
    return f"{dt.year:04d}-" + dt.strftime("%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def shift(dt: datetime, by: timedelta | float) -> datetime:
    """``dt`` moved by ``by`` (a :class:`timedelta`, or seconds; negative moves back), saturating.

    The one home of date arithmetic on record times, ``--now`` and schedules: a result before
    :data:`EARLIEST` is :data:`EARLIEST` and one after :data:`LATEST` is :data:`LATEST`, never an
    :class:`OverflowError`. Use :func:`fits` first where saturation would change a decision.
    """
    delta = by if isinstance(by, timedelta) else timedelta(seconds=by)
    try:
        out = dt + delta
    except OverflowError:
        return LATEST if delta > timedelta(0) else EARLIEST
    return min(max(out, EARLIEST), LATEST)


def fits(dt: datetime, by: timedelta | float) -> bool:
    """True when ``dt`` moved by ``by`` (a :class:`timedelta` or seconds) stays within years 1 to 9999
    (:data:`EARLIEST` to :data:`LATEST`), so :func:`shift` does not saturate."""
    delta = by if isinstance(by, timedelta) else timedelta(seconds=by)
    try:
        return EARLIEST <= dt + delta <= LATEST
    except OverflowError:
        return False


def to_numeric_date(dt: datetime) -> int:
    """Return the NumericDate (RFC 7519 section 2: whole seconds since the epoch, UTC)."""
    return int(dt.timestamp())


def from_numeric_date(value: int | float) -> datetime:
    """Return the aware UTC datetime of a NumericDate (seconds since the epoch)."""
    return datetime.fromtimestamp(value, UTC)


def days(n: int) -> timedelta:
    """A :class:`timedelta` of ``n`` days."""
    return timedelta(days=n)


def seconds(n: int | float) -> timedelta:
    """A :class:`timedelta` of ``n`` seconds."""
    return timedelta(seconds=n)


def skew_from_real(at: datetime, real: datetime | None = None) -> float | None:
    """Seconds ``at`` lies away from the real clock (positive ahead, negative behind), or ``None``
    when within :data:`CLOCK_SKEW`.

    Args:
        real: the real time (default :func:`now`).
    """
    offset = (at - (real if real is not None else now())).total_seconds()
    return offset if abs(offset) > CLOCK_SKEW else None


def span(seconds_: float) -> str:
    """A duration in its largest whole unit, rounded: ``45 days``, ``3 hours``, ``1 minute``."""
    return _words(abs(seconds_))


def humanize(dt: datetime, ref: datetime) -> str:
    """Describe ``dt`` relative to ``ref``: ``in 3 days``, ``2 hours ago``.

    The largest whole unit is used (seconds, minutes, hours, days).
    """
    delta = (dt - ref).total_seconds()
    text = _words(abs(delta))
    return f"in {text}" if delta >= 0 else f"{text} ago"


def _words(d: float) -> str:
    """``d`` seconds (not negative) in the largest whole unit, rounded: ``3 days``, ``1 second``."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):  # noqa: B007 (unit is used after the loop)
        if d >= size - 0.5:  # rounded to the nearest unit: 29 days 23:59:59.9 is "30 days"
            n = int(d / size + 0.5)
            break
    else:
        unit, n = "second", int(d + 0.5)
    return f"{n} {unit}{'' if n == 1 else 's'}"
