"""The rotation schedule: the cron job (``rotate`` then ``prune``, every hour) simulated on a key file's records.

Pure: ``(records, policy, now, end) -> Schedule``; no I/O, no clock, no key generation. Every
decision is taken by the rules the commands use (:func:`rotation.rotate_records`,
:func:`rotation.plan_prune`, :func:`rotation.state`); nothing here re-implements them.

The cron job runs at ``now``, ``now + 1h``, ``now + 2h``... up to ``end`` inclusive. Between two
runs nothing changes in the records, so the simulation jumps from one run to the first run at or
after the next time a rule can change its answer (a rotation date, an activation, an expiry):
the result is the same as running every hour, in a few dozen steps.

Keys that ``rotate`` would create are named ``new-1``, ``new-2``... (their real kids, RFC 7638
thumbprints of keys not generated yet, are unknown); their public part is a stand-in of the
right size, so the JWKS sizes in bytes are those of the real set (a kid counted at 43 characters,
the length of a SHA-256 thumbprint).

States of a key over time (``next``, ``signing``, ``retired``, ``expired``) are
:func:`rotation.state` evaluated between consecutive change times over the records present then;
a key is present from its ``createdAt`` until ``prune`` removes it.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from prisme_keys import clock
from prisme_keys import jwk as jwk_rules
from prisme_keys.jwk import RSAJwk
from prisme_keys.store import rotation
from prisme_keys.store.records import KeyRecord
from prisme_keys.store.rotation import Policy

#: The cron job's period.
HOUR = timedelta(hours=1)
#: Longest schedule, days (10 years).
MAX_DAYS = 3660
#: Length of a new kid: base64url of a SHA-256 thumbprint (RFC 7638).
THUMBPRINT_CHARS = 43
FUTURE_PREFIX = "new-"


@dataclass(frozen=True)
class Span:
    """A key in one state from ``start`` (UTC, inclusive) to ``end`` (exclusive; ``None``: beyond the horizon)."""

    state: str
    start: datetime
    end: datetime | None

    def to_dict(self) -> dict[str, Any]:
        """``{state, start, end}`` with ISO-8601 times (``end`` null when open)."""
        return {"state": self.state, "start": clock.iso(self.start), "end": clock.iso(self.end) if self.end else None}


@dataclass
class KeyTimeline:
    """One key over the schedule.

    Attributes:
        kid: the key id (``new-N`` for a key ``rotate`` will create).
        future: the key does not exist yet.
        bits: RSA modulus size.
        record: its last record (``expiresAt`` as extended by a later rotation).
        removed: when ``prune`` removes it, or ``None``.
        spans: its states, oldest first.
    """

    kid: str
    future: bool
    bits: int
    record: KeyRecord
    removed: datetime | None = None
    spans: list[Span] = field(default_factory=list)

    def state_at(self, at: datetime) -> str | None:
        """The key's state at ``at``, or ``None`` when it is not in the key file then."""
        for s in self.spans:
            if s.start <= at and (s.end is None or at < s.end):
                return s.state
        return None

    def to_dict(self) -> dict[str, Any]:
        """``{kid, future, bits, createdAt, activatesAt, rotatesAt, expiresAt, removedAt, spans}``."""
        r = self.record
        return {
            "kid": self.kid,
            "future": self.future,
            "bits": self.bits,
            "createdAt": r["createdAt"],
            "activatesAt": r.get("activatesAt") or r["createdAt"],
            "rotatesAt": r["rotatesAt"],
            "expiresAt": r["expiresAt"],
            "removedAt": clock.iso(self.removed) if self.removed else None,
            "spans": [s.to_dict() for s in self.spans],
        }


@dataclass(frozen=True)
class Event:
    """One change: ``kind`` is ``rotation`` (a key is created), ``activation`` (a ``next`` key starts
    signing) or ``prune`` (a key is removed).

    Attributes:
        at: when (UTC).
        kind: as above.
        kid: the key created, activated or removed.
        replaces: rotation/activation: the signing key it replaces (``None`` for the first key).
        signs_from: rotation: when the new key starts signing (its ``activatesAt``).
    """

    at: datetime
    kind: str
    kid: str
    replaces: str | None = None
    signs_from: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """``{at, type, kid}`` plus ``replaces`` (rotation, activation) and ``signs_from`` (rotation)."""
        doc: dict[str, Any] = {"at": clock.iso(self.at), "type": self.kind, "kid": self.kid}
        if self.kind != "prune":
            doc["replaces"] = self.replaces
        if self.signs_from is not None:
            doc["signs_from"] = clock.iso(self.signs_from)
        return doc


@dataclass(frozen=True)
class JwksSize:
    """The published set from ``at`` on: number of keys and size in bytes (compact JSON, as served)."""

    at: datetime
    keys: int
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        """``{at, keys, bytes}``."""
        return {"at": clock.iso(self.at), "keys": self.keys, "bytes": self.bytes}


@dataclass
class Schedule:
    """A simulated (or, for :func:`timeline`, observed) schedule.

    Attributes:
        now: the time of the first cron run (the ``today`` marker).
        start / end: the time window shown (UTC); ``end`` is the last cron run.
        keys: every key, oldest first.
        events: changes from ``now`` to ``end``, in time order.
        jwks: the published set's size, one entry per change (from the first key's creation).
    """

    now: datetime
    start: datetime
    end: datetime
    keys: list[KeyTimeline]
    events: list[Event]
    jwks: list[JwksSize]

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` document: ``{now, start, end, events, keys, jwks}``."""
        return {
            "now": clock.iso(self.now),
            "start": clock.iso(self.start),
            "end": clock.iso(self.end),
            "events": [e.to_dict() for e in self.events],
            "keys": [k.to_dict() for k in self.keys],
            "jwks": [j.to_dict() for j in self.jwks],
        }


def default_days(policy: Policy) -> int:
    """Two rotation periods plus the longest token lifetime (and the lead), in whole days, at most :data:`MAX_DAYS`."""
    secs = 2 * policy.rotation_days * 86400 + policy.max_age + policy.lead
    return min(MAX_DAYS, max(1, -(-int(secs) // 86400)))


def _stand_in(kid: str, alg: str, bits: int) -> RSAJwk:
    """The public JWK of a key not generated yet: the right modulus size, no private member."""
    n = jwk_rules.b64url_encode(b"\xff" * ((bits + 7) // 8))
    return {"kty": "RSA", "kid": kid, "use": "sig", "alg": alg, "n": n, "e": "AQAB"}


def _jwks_bytes(records: Sequence[KeyRecord], future: set[str]) -> int:
    keys = []
    for r in rotation.newest_first(list(records)):
        pub = jwk_rules.public_jwk(r["jwk"])
        if r["kid"] in future:
            pub["kid"] = "x" * THUMBPRINT_CHARS
        keys.append(pub)
    return len(json.dumps({"keys": keys}, separators=(",", ":"), ensure_ascii=False).encode())


def _next_run(first: datetime, at: datetime) -> datetime:
    """The first hourly run (``first + k hours``) at or after ``at``."""
    if at <= first:
        return first
    k, rest = divmod(at - first, HOUR)
    return clock.shift(first, (k + (1 if rest else 0)) * HOUR)


def _next_change(records: list[KeyRecord], policy: Policy, at: datetime) -> datetime | None:
    """The earliest time after ``at`` when ``rotate`` or ``prune`` may decide differently."""
    times = [rotation.plan_rotation(records, policy, at).next_rotation, rotation.next_prune(records, at)]
    times += [rotation.t(r, "activatesAt") for r in records if not rotation.is_active(r, at)]
    later = [x for x in times if x is not None]
    return min(later) if later else None


def simulate(
    records: list[KeyRecord], policy: Policy, now: datetime, end: datetime, *, alg: str, bits: int
) -> Schedule:
    """Run the cron job (``rotate`` then ``prune``) every hour from ``now`` to ``end`` on a copy of ``records``.

    Args:
        records: the key file's records (not modified).
        policy: rotation period, max token age (seconds), publication lead (seconds).
        now: the first run (UTC).
        end: the last possible run (UTC, inclusive).
        alg / bits: algorithm and size of the keys ``rotate`` creates.

    Returns:
        the :class:`Schedule`; its window starts at the oldest key's ``createdAt`` (at most as
        far before ``now`` as ``end`` is after it).
    """
    taken = {r["kid"] for r in records}
    current = list(records)
    snapshots: list[tuple[datetime, list[KeyRecord]]] = []
    events: list[Event] = []
    removed: dict[str, datetime] = {}
    future: set[str] = set()
    made = 0
    run = now
    while run <= end:
        changed = False
        made = next(n for n in range(made + 1, made + len(taken) + 2) if f"{FUTURE_PREFIX}{n}" not in taken)
        kid = f"{FUTURE_PREFIX}{made}"
        step = rotation.rotate_records(current, _stand_in(kid, alg, bits), policy, run)
        if step.result is not None:
            taken.add(kid)
            future.add(kid)
            signs_from = rotation.t(step.result.created, "activatesAt")
            events.append(Event(step.at, "rotation", kid, step.plan.signing_kid, signs_from))
            current, changed = step.result.records, True
        else:
            made -= 1
        pruned = rotation.plan_prune(current, run)
        if pruned.remove:
            for r in pruned.remove:
                events.append(Event(run, "prune", r["kid"]))
                removed[r["kid"]] = run
            current, changed = pruned.keep, True
        if changed:
            snapshots.append((run, current))
        nxt = _next_change(current, policy, run)
        following = _next_run(now, max(nxt, clock.shift(run, HOUR))) if nxt is not None else run
        if following <= run:  # no change to come, or the end of time (years 1 to 9999) reached
            break
        run = following
    oldest = min([rotation.t(r, "createdAt") for r in records] + [now])
    start = max(oldest, clock.shift(now, -(end - now)))
    return _build(records, snapshots, start, now, end, events, removed, future)


def timeline(records: list[KeyRecord], now: datetime) -> Schedule:
    """The keys of the file as they are, without simulating anything: from the oldest ``createdAt``
    to the last ``expiresAt`` (at least ``now``); keys stay until removed, so ``expired`` runs on.
    """
    starts = [rotation.t(r, "createdAt") for r in records] + [now]
    ends = [rotation.t(r, "expiresAt") for r in records] + [now]
    start, last = min(starts), max(ends)
    end = clock.shift(last, max((last - start) / 20, HOUR))
    return _build(records, [], start, now, end, [], {}, set())


def _build(
    records: list[KeyRecord],
    snapshots: list[tuple[datetime, list[KeyRecord]]],
    start: datetime,
    now: datetime,
    end: datetime,
    events: list[Event],
    removed: dict[str, datetime],
    future: set[str],
) -> Schedule:
    """Spans, JWKS sizes and activation events from the record sets in force over time."""
    times = [at for at, _ in snapshots]
    sets = [records] + [recs for _, recs in snapshots]
    points = {start, end} | {at for at in times if start < at < end}
    last: dict[str, KeyRecord] = {}
    for recs in sets:
        for r in recs:
            last[r["kid"]] = r
            for name in ("createdAt", "activatesAt", "expiresAt"):
                at = rotation.t(r, name)
                if start < at < end:
                    points.add(at)
    spans: dict[str, list[Span]] = {}
    open_: dict[str, tuple[str, datetime]] = {}
    sizes: list[JwksSize] = []
    for b in sorted(points):
        recs = sets[bisect.bisect_right(times, b)]
        present = [r for r in recs if rotation.t(r, "createdAt") <= b]
        states = {r["kid"]: rotation.state(r, present, b) for r in present}
        for kid, (st, since) in list(open_.items()):
            if states.get(kid) != st:
                spans.setdefault(kid, []).append(Span(st, since, b))
                del open_[kid]
        for kid, st in states.items():
            if kid not in open_:
                open_[kid] = (st, b)
        size = (len(present), _jwks_bytes(present, future) if present else 0)
        if (sizes or present) and (not sizes or (sizes[-1].keys, sizes[-1].bytes) != size):
            sizes.append(JwksSize(b, *size))
    for kid, (st, since) in open_.items():
        spans.setdefault(kid, []).append(Span(st, since, None))
    order = sorted(last.values(), key=lambda r: rotation.t(r, "createdAt"))
    keys = [
        KeyTimeline(
            r["kid"],
            r["kid"] in future,
            jwk_rules.key_bits(r["jwk"]),
            r,
            removed.get(r["kid"]),
            spans.get(r["kid"], []),
        )
        for r in order
    ]
    return Schedule(now, start, end, keys, sorted(events + _activations(keys, now), key=_event_order), sizes)


def _activations(keys: list[KeyTimeline], now: datetime) -> list[Event]:
    """A ``next`` key starting to sign at or after ``now``, with the key it replaces."""
    signing_until = {s.end: k.kid for k in keys for s in k.spans if s.state == "signing" and s.end is not None}
    out = []
    for k in keys:
        for before, after in zip(k.spans, k.spans[1:], strict=False):
            if before.state == "next" and after.state == "signing" and after.start >= now:
                out.append(Event(after.start, "activation", k.kid, signing_until.get(after.start)))
    return out


def _event_order(e: Event) -> tuple[datetime, int]:
    return e.at, {"rotation": 0, "activation": 1, "prune": 2}[e.kind]
