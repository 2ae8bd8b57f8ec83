"""Key lifecycle rules as pure functions: ``(records, policy, now) -> plan``. No I/O, no clock.

Rules (DESIGN.md section 1, the reference gateway's JWKStore, plus our improvements):

* Records are gateway records ``{kid, previousKeyId, createdAt, rotatesAt, expiresAt, jwk}``
  (optionally ``activatesAt`` when a publication lead is in force).
* A record is *active* once ``now >= activatesAt`` (``createdAt`` when absent). The newest
  active record is the **signing key**; older ones only verify (**retired**); a newer one
  not yet active is **next** (published before it signs).
* Rotation is due when there is no key, or ``now >= signing.rotatesAt - lead`` and no
  ``next`` key is already waiting.
* A new key: ``createdAt = now``, ``activatesAt = now + lead`` (stored only when lead > 0),
  ``rotatesAt = activatesAt + rotation_days``, ``expiresAt = rotatesAt + max_age``,
  ``previousKeyId`` = the newest record's kid.
* The key it replaces gets ``expiresAt = max(expiresAt, activatesAt_new + max_age)``: a token
  it signed just before a late rotation still verifies for its whole lifetime.
* A record created more than :data:`prisme_keys.clock.CLOCK_SKEW` after ``now`` is
  *future-dated* (written under a ``--now`` ahead of the clock, or by a host whose clock ran
  far ahead). As the newest key it would sign until its far ``rotatesAt`` and block rotation,
  so rotation is due, and the rotation brings it back: ``createdAt = rotatesAt`` just before
  ``now``, no ``activatesAt``, ``expiresAt`` no later than ``now + lead + max_age``; it then
  retires like any replaced key.
* Pruning removes non-signing, non-next keys with ``now >= expiresAt``; it never removes the
  signing key (even past its expiresAt) and never empties the set.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, NamedTuple

from prisme_keys import clock
from prisme_keys.jwk import RSAJwk
from prisme_keys.store.records import KeyRecord, TimeMember


class Policy(NamedTuple):
    """Lifecycle settings (immutable: ``policy._replace(lead=0)`` makes a changed copy).

    Attributes:
        rotation_days: days (int) a key signs before it is replaced (``JWKS_ROTATION_DAYS``).
        max_age: seconds (int), the longest token lifetime (``ACCESS_TOKENS_MAX_AGE``).
        lead: seconds (float) a new key is published before it signs (0 = reference behaviour).
    """

    rotation_days: int = 30
    max_age: int = 2592000
    lead: float = 0

    @classmethod
    def from_settings(cls, settings: Any) -> Policy:
        """Build from a :class:`prisme_keys.settings.Settings`."""
        return cls(settings.rotation_days, settings.access_tokens_max_age, settings.publication_lead)


def t(rec: KeyRecord, name: TimeMember) -> datetime:
    """A record time (``createdAt``, ``rotatesAt``, ``expiresAt``, ``activatesAt``) as a UTC datetime.

    ``activatesAt`` defaults to ``createdAt``.
    """
    if name == "activatesAt" and not rec.get("activatesAt"):
        name = "createdAt"
    return clock.parse_iso(rec[name])


def is_active(rec: KeyRecord, now: datetime) -> bool:
    """True when the record may sign at ``now``.

    Only a record with an ``activatesAt`` (written when a publication lead is in force) waits;
    any other record is active whatever its ``createdAt``, so a key made by a host whose clock
    runs a little ahead (or a ``--now`` in the past) is not mistaken for a ``next`` key.
    """
    return not rec.get("activatesAt") or clock.parse_iso(rec["activatesAt"]) <= now


def newest_first(records: list[KeyRecord]) -> list[KeyRecord]:
    """Records sorted by ``createdAt``, newest first (stable for equal times)."""
    return sorted(records, key=lambda r: t(r, "createdAt"), reverse=True)


def signing_record(records: list[KeyRecord], now: datetime) -> KeyRecord | None:
    """The signing key at ``now``: the newest active record; the oldest record if none is active yet.

    Returns ``None`` only for an empty list.
    """
    ordered = newest_first(records)
    for rec in ordered:
        if is_active(rec, now):
            return rec
    return ordered[-1] if ordered else None


def state(rec: KeyRecord, records: list[KeyRecord], now: datetime) -> str:
    """``"signing"``, ``"next"``, ``"retired"`` or ``"expired"`` for one record at ``now``."""
    signing = signing_record(records, now)
    if rec is signing:
        return "signing"
    if not is_active(rec, now):
        return "next"
    return "expired" if now >= t(rec, "expiresAt") else "retired"


class RotationPlan(NamedTuple):
    """What ``rotate`` would do (immutable).

    Attributes:
        due: a new key should be created.
        reason: one line: why (or why not).
        signing_kid: the current signing key's kid, or ``None``.
        next_rotation: when rotation will be due (UTC), when not due.
    """

    due: bool
    reason: str
    signing_kid: str | None
    next_rotation: datetime | None = None


def plan_rotation(records: list[KeyRecord], policy: Policy, now: datetime, force: bool = False) -> RotationPlan:
    """Decide whether a new signing key is due at ``now`` (``force`` makes it due)."""
    signing = signing_record(records, now)
    if signing is None:
        return RotationPlan(True, "no key in the key file", None)
    kid = signing["kid"]
    waiting = [r for r in records if not is_active(r, now)]
    if force:
        return RotationPlan(True, "forced", kid)
    future = future_dated(records, now)
    if future:
        f = newest_first(future)[0]
        ahead = clock.span((t(f, "createdAt") - now).total_seconds())
        return RotationPlan(
            True, f"key {f['kid']} is dated {ahead} ahead (createdAt {f['createdAt']}) and would block rotation", kid
        )
    if waiting:
        nxt = min(waiting, key=lambda r: t(r, "activatesAt"))
        return RotationPlan(False, f"next key {nxt['kid']} is already published", kid, t(nxt, "activatesAt"))
    due_at = clock.shift(t(signing, "rotatesAt"), -policy.lead)
    if now >= due_at:
        return RotationPlan(True, f"signing key {kid} reached its rotation date", kid, due_at)
    return RotationPlan(False, "nothing due", kid, due_at)


def future_dated(records: list[KeyRecord], now: datetime) -> list[KeyRecord]:
    """The records created more than :data:`prisme_keys.clock.CLOCK_SKEW` seconds after ``now``."""
    limit = clock.shift(now, clock.CLOCK_SKEW)
    return [r for r in records if t(r, "createdAt") > limit]


def bring_back(records: list[KeyRecord], policy: Policy, now: datetime) -> list[KeyRecord]:
    """``records`` with the future-dated ones (see :func:`future_dated`) brought back before ``now``.

    Each gets ``createdAt = rotatesAt`` = ``now`` minus 1, 2, ... ms (their order kept), loses
    ``activatesAt``, and keeps ``expiresAt`` no later than ``now + lead + max_age``: as the key
    replaced by a rotation at ``now`` it still verifies every token signed until then. The input
    is not modified; changed records are copies.
    """
    future = newest_first(future_dated(records, now))
    if not future:
        return records
    last = clock.shift(now, policy.lead + policy.max_age)
    fixed: dict[int, KeyRecord] = {}
    for i, r in enumerate(future):
        at = clock.iso(clock.shift(now, timedelta(milliseconds=-(i + 1))))
        c = r.copy()
        c.pop("activatesAt", None)
        c["createdAt"] = c["rotatesAt"] = at
        c["expiresAt"] = clock.iso(min(t(r, "expiresAt"), last))
        fixed[id(r)] = c
    return [fixed.get(id(r), r) for r in records]


def new_record(jwk: RSAJwk, records: list[KeyRecord], policy: Policy, now: datetime) -> KeyRecord:
    """The gateway record for a freshly generated key ``jwk`` added at ``now``."""
    newest = newest_first(records)[0]["kid"] if records else None
    activates = clock.shift(now, policy.lead)
    rotates = clock.shift(activates, clock.days(policy.rotation_days))
    rec: KeyRecord = {
        "kid": jwk["kid"],
        "previousKeyId": newest,
        "createdAt": clock.iso(now),
        "rotatesAt": clock.iso(rotates),
        "expiresAt": clock.iso(clock.shift(rotates, policy.max_age)),
        "jwk": jwk,
    }
    if policy.lead:
        rec["activatesAt"] = clock.iso(activates)
    return rec


class RotationResult:
    """Outcome of :func:`apply_rotation`.

    Attributes:
        records: the new record list, newest first.
        created: the new record.
        retired: the record that stops signing when the new one activates, or ``None``.
        brought_back: the future-dated records as they were before :func:`bring_back` (default ``[]``).
    """

    __slots__ = ("brought_back", "created", "records", "retired")

    def __init__(
        self,
        records: list[KeyRecord],
        created: KeyRecord,
        retired: KeyRecord | None,
        brought_back: list[KeyRecord] | None = None,
    ) -> None:
        self.records = records
        self.created = created
        self.retired = retired
        self.brought_back = [] if brought_back is None else brought_back


def apply_rotation(records: list[KeyRecord], jwk: RSAJwk, policy: Policy, now: datetime) -> RotationResult:
    """Add ``jwk`` as the new signing key at ``now``; extend the replaced key's ``expiresAt``.

    Future-dated records are brought back first (:func:`bring_back`). The input list is not
    modified; records are copied where changed.

    Raises:
        ValueError: when ``jwk['kid']`` is already in the set.
    """
    if any(r["kid"] == jwk["kid"] for r in records):
        raise ValueError(f"kid {jwk['kid']} is already in the key file")
    future = future_dated(records, now)
    records = bring_back(records, policy, now)
    rec = new_record(jwk, records, policy, now)
    current = signing_record(records, now)
    out: list[KeyRecord] = []
    retired = None
    for r in records:
        if r is current:
            r = r.copy()
            keep_until = clock.shift(t(rec, "activatesAt"), policy.max_age)
            if keep_until > t(r, "expiresAt"):
                r["expiresAt"] = clock.iso(keep_until)
            retired = r
        out.append(r)
    return RotationResult(newest_first([rec] + out), rec, retired, future)


class RotationStep(NamedTuple):
    """Outcome of :func:`rotate_records`: one ``rotate`` run on a record list (immutable).

    Attributes:
        plan: the decision made at ``now``.
        result: the new records when a key was added, else ``None``.
        at: the creation time used (``now``, or the newest record's ``createdAt`` when that is later).
    """

    plan: RotationPlan
    result: RotationResult | None
    at: datetime


def rotate_records(
    records: list[KeyRecord], jwk: RSAJwk, policy: Policy, now: datetime, force: bool = False
) -> RotationStep:
    """What ``rotate`` does to ``records`` at ``now``: plan, and when due add ``jwk`` as the new key.

    The one rotation step shared by the command (under the key-file lock) and the schedule
    simulation (:mod:`prisme_keys.store.schedule`). The new key is never older than the newest
    record: a slower concurrent rotation (a bigger key to generate) must still come out newest,
    as its ``previousKeyId`` says. A future-dated record does not count (:func:`bring_back`).

    Raises:
        ValueError: when ``jwk['kid']`` is already in the set.
    """
    plan = plan_rotation(records, policy, now, force)
    if not plan.due:
        return RotationStep(plan, None, now)
    future = future_dated(records, now)  # brought back by the rotation: they do not count
    present = [r for r in records if not any(r is f for f in future)]
    newest = newest_first(present)[0] if present else None
    at = max(now, t(newest, "createdAt")) if newest else now
    return RotationStep(plan, apply_rotation(records, jwk, policy, at), at)


class PrunePlan:
    """What ``prune`` would do.

    Attributes:
        keep: records that stay, in input order.
        remove: expired non-signing records.
        notes: one-line remarks (e.g. the signing key is past its expiresAt and is kept); default ``[]``.
    """

    __slots__ = ("keep", "notes", "remove")

    def __init__(self, keep: list[KeyRecord], remove: list[KeyRecord], notes: list[str] | None = None) -> None:
        self.keep = keep
        self.remove = remove
        self.notes = [] if notes is None else notes


def plan_prune(records: list[KeyRecord], now: datetime) -> PrunePlan:
    """Split ``records`` into kept and removed at ``now``; the signing key is always kept."""
    signing = signing_record(records, now)
    keep, remove, notes = [], [], []
    for r in records:
        if r is signing:
            keep.append(r)
            if now >= t(r, "expiresAt"):
                notes.append(
                    f"signing key {r['kid']} is past its expiresAt ({r['expiresAt']}) but is kept: "
                    "it is the signing key; run prisme-keys rotate"
                )
        elif is_active(r, now) and now >= t(r, "expiresAt"):
            remove.append(r)
        else:
            keep.append(r)
    if not keep and records:  # cannot happen while a signing key exists; defensive
        keep, remove = [records[0]], remove[1:]
    return PrunePlan(keep, remove, notes)


def next_prune(records: list[KeyRecord], now: datetime) -> datetime | None:
    """When the next non-signing key will expire (UTC), or ``None`` if none will."""
    signing = signing_record(records, now)
    times = [t(r, "expiresAt") for r in records if r is not signing and t(r, "expiresAt") > now]
    return min(times) if times else None
