"""Revocation of a compromised signing key: the rules, the key file's revocation list, and ``revoke``.

A revoked key leaves the key set at once, whatever its dates, and its revocation is recorded in
the key file's top-level member ``"revocations"`` (the key file stays format 1; readers that do
not know the member keep it as it is)::

    "revocations": [{"kid", "thumbprint", "revokedAt", "reason", "state",
                     "exposure": {"from", "signingUntil", "until"}}]

``thumbprint`` is the RFC 7638 SHA-256 thumbprint of the key, so the key is recognised under any
kid. ``state`` is what the key was when revoked (``signing``, ``next``, ``retired``, ``expired``).
``exposure`` is the window in which tokens signed by the key may exist: from its first signing
time (``activatesAt``, else ``createdAt``) until the last token it could have signed expires
(``signingUntil`` + ``ACCESS_TOKENS_MAX_AGE``); ``from``/``until`` are ``null`` for a key that
never signed.

Rules (:func:`plan_revoke`, pure):

* the key is found by kid, else by thumbprint;
* when it is the signing key or the ``next`` key, a new key is added first and signs at once:
  a compromise skips the publication lead (:func:`prisme_keys.store.rotation.apply_rotation`
  with a lead of 0, so the key it replaces also keeps ``expiresAt >= now + max_age``);
* the set is never left empty (the new key is added before the revoked one is removed).

Everything that refuses a revoked key (``verify``, ``import``, ``check``, ``doctor``) asks
:class:`RevokedKeys` here.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple

from prisme_keys import clock
from prisme_keys import jwk as jwk_rules
from prisme_keys.errors import InvalidArgument, KeyFileError
from prisme_keys.jwk import RSAJwk
from prisme_keys.settings import Settings
from prisme_keys.store import lifecycle, rotation
from prisme_keys.store.keyfile import KeySet
from prisme_keys.store.records import KeyRecord
from prisme_keys.text import shown

#: The key file's top-level member holding the revocation list.
MEMBER = "revocations"
#: Longest ``reason`` accepted, characters.
MAX_REASON = 200


def _bad(path: Any, why: str) -> KeyFileError:
    return KeyFileError(f"key file {path} is unusable: {why}; it was left unchanged", code="key_file_corrupt")


def entries(keyset: KeySet, path: Any = "<key file>") -> list[dict[str, Any]]:
    """The revocation list of a key set (``[]`` when the member is absent), as stored.

    Raises:
        KeyFileError: the member is not a list of objects each with a string ``kid`` and
            ``thumbprint`` (the file is never repaired).
    """
    raw = keyset.extra.get(MEMBER)
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _bad(path, f'"{MEMBER}" is not a list')
    for i, e in enumerate(raw):
        if not isinstance(e, dict) or not isinstance(e.get("kid"), str) or not isinstance(e.get("thumbprint"), str):
            raise _bad(path, f'"{MEMBER}" entry {i + 1} has no kid or thumbprint')
    return raw


class RevokedKeys(NamedTuple):
    """The revoked keys of a key file, looked up by kid or RFC 7638 thumbprint (immutable; false when empty).

    Attributes:
        entries: the revocation entries (see the module docstring), oldest first.
    """

    entries: tuple[dict[str, Any], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.entries)

    def match(self, *, kid: str | None = None, thumbprint: str | None = None) -> dict[str, Any] | None:
        """The revocation entry of a key with this kid or this thumbprint, or ``None``."""
        for e in self.entries:
            if (kid is not None and e["kid"] == kid) or (thumbprint is not None and e["thumbprint"] == thumbprint):
                return e
        return None

    def match_jwk(self, jwk: Mapping[str, Any]) -> dict[str, Any] | None:
        """The revocation entry of a JWK (by its kid, or by its thumbprint whatever its kid), or ``None``."""
        kid = jwk.get("kid") if isinstance(jwk.get("kid"), str) else None
        try:
            tp: str | None = jwk_rules.thumbprint(jwk)
        except ValueError:
            tp = None
        return self.match(kid=kid, thumbprint=tp)

    def thumbprint_of(self, kid: str) -> str | None:
        """The thumbprint recorded for a revoked kid, or ``None``."""
        e = self.match(kid=kid)
        return e["thumbprint"] if e else None


def revoked_keys(keyset: KeySet, path: Any = "<key file>") -> RevokedKeys:
    """The :class:`RevokedKeys` of a key set.

    Raises:
        KeyFileError: a malformed revocation list (see :func:`entries`).
    """
    return RevokedKeys(tuple(entries(keyset, path)))


def load_revoked(settings: Settings, *, required: bool = False) -> RevokedKeys:
    """The revoked keys of the key file named by ``settings``; empty when it does not exist (unless ``required``).

    Raises:
        KeyFileError: the key file exists but is unusable (corrupt, unsafe permissions), or
            ``required`` and it is missing.
    """
    kf = lifecycle.open_keyfile(settings)
    if not required and not kf.exists():
        return RevokedKeys()
    return revoked_keys(kf.load(), kf.path)


def describe(entry: dict[str, Any]) -> str:
    """``revoked on 2026-11-29 12:00 UTC (reason: leaked in a CI log)`` for a revocation entry."""
    when = entry.get("revokedAt")
    try:
        text = f"revoked on {clock.parse_iso(when).strftime('%Y-%m-%d %H:%M')} UTC" if when else "revoked"
    except (ValueError, TypeError):
        text = "revoked"
    reason = entry.get("reason")
    return text + (f" (reason: {reason})" if isinstance(reason, str) and reason else "")


def check_reason(reason: str | None) -> str | None:
    """Validate a revocation reason: at most :data:`MAX_REASON` characters, no control characters.

    Raises:
        InvalidArgument: ``reason``, naming the rule broken (the reason itself is not echoed).
    """
    if reason is None:
        return None
    reason = reason.strip()
    if len(reason) > MAX_REASON:
        raise InvalidArgument("reason", "{reason}: at most {most} characters (got {n})", most=MAX_REASON, n=len(reason))
    if not reason.isprintable():
        raise InvalidArgument("reason", "{reason}: control characters are not allowed")
    return reason or None


# -- the rules ------------------------------------------------------------------------------


def exposure(rec: KeyRecord, records: list[KeyRecord], policy: rotation.Policy, now: datetime) -> dict[str, str | None]:
    """The exposure window of ``rec`` if it were revoked at ``now``: ``{from, signingUntil, until}`` (ISO, UTC).

    ``from`` is its first signing time; ``signingUntil`` when it stopped signing: ``now`` for the
    signing key, else the earliest ``activatesAt`` of a newer record already active (an upper
    bound when the key that replaced it is gone); ``until`` = ``signingUntil + max_age``, the
    expiry of the last token it could have signed. All ``None`` for a key that never signed.
    """
    start = rotation.t(rec, "activatesAt")
    if not rotation.is_active(rec, now):
        return {"from": None, "signingUntil": None, "until": None}
    created = rotation.t(rec, "createdAt")
    later = [
        rotation.t(r, "activatesAt")
        for r in records
        if r is not rec and rotation.t(r, "createdAt") > created and rotation.is_active(r, now)
    ]
    end = min([now, *later])
    end = max(end, start)
    return {
        "from": clock.iso(start),
        "signingUntil": clock.iso(end),
        "until": clock.iso(clock.shift(end, policy.max_age)),
    }


def find(records: list[KeyRecord], kid_or_thumbprint: str) -> KeyRecord | None:
    """The record with this kid, else the one whose RFC 7638 thumbprint it is, else ``None``."""
    for r in records:
        if r["kid"] == kid_or_thumbprint:
            return r
    for r in records:
        try:
            if jwk_rules.thumbprint(r["jwk"]) == kid_or_thumbprint:
                return r
        except ValueError:
            continue
    return None


class RevokePlan(NamedTuple):
    """What revoking a key would do at ``now`` (immutable).

    Attributes:
        record: the record to remove.
        state: its state now (``signing``, ``next``, ``retired``, ``expired``).
        needs_new_key: it signs (or is ``next``): a new signing key must be added first.
        entry: the revocation entry to record.
    """

    record: KeyRecord
    state: str
    needs_new_key: bool
    entry: dict[str, Any]


def plan_revoke(
    records: list[KeyRecord], kid_or_thumbprint: str, policy: rotation.Policy, now: datetime, reason: str | None = None
) -> RevokePlan | None:
    """Plan the revocation of a key (found by kid or thumbprint); ``None`` when no record matches."""
    rec = find(records, kid_or_thumbprint)
    if rec is None:
        return None
    st = rotation.state(rec, records, now)
    entry = {
        "kid": rec["kid"],
        "thumbprint": jwk_rules.thumbprint(rec["jwk"]),
        "revokedAt": clock.iso(now),
        "reason": reason,
        "state": st,
        "exposure": exposure(rec, records, policy, now),
    }
    return RevokePlan(rec, st, st in ("signing", "next"), entry)


class AppliedRevocation:
    """Outcome of :func:`apply_revoke`: the new records (newest first), the key added (or ``None``),
    and the key that stopped signing because of it (or ``None``)."""

    __slots__ = ("created", "records", "retired")

    def __init__(self, records: list[KeyRecord], created: KeyRecord | None, retired: KeyRecord | None) -> None:
        self.records = records
        self.created = created
        self.retired = retired


def apply_revoke(
    records: list[KeyRecord], plan: RevokePlan, jwk: RSAJwk | None, policy: rotation.Policy, now: datetime
) -> AppliedRevocation:
    """Remove ``plan.record``; when ``plan.needs_new_key``, first add ``jwk`` as a signing key active at ``now``.

    The new key skips the publication lead (it signs at once) and its ``previousKeyId`` is the
    newest record before the revocation. The input list is not modified.

    Raises:
        ValueError: a new key is needed and ``jwk`` is ``None``, or its kid is already in the set.
    """
    created = retired = None
    out = list(records)
    if plan.needs_new_key:
        if jwk is None:
            raise ValueError("a new signing key is needed")
        res = rotation.apply_rotation(out, jwk, policy._replace(lead=0), now)
        out, created, retired = res.records, res.created, res.retired
        if retired is not None and retired["kid"] == plan.record["kid"]:
            retired = None
    kept = [r for r in out if r["kid"] != plan.record["kid"]]
    return AppliedRevocation(rotation.newest_first(kept), created, retired)


# -- the operation --------------------------------------------------------------------------


class RevokeResult:
    """Result of :func:`revoke`.

    Attributes:
        kid: the revoked kid; entry: its revocation entry (as recorded, or as it would be).
        revoked: the key was removed (or, with ``dry_run``, would be).
        dry_run: nothing was written.
        already: the key was revoked before (nothing changed).
        created: the new signing key's record (``None`` when none was needed or on a dry run).
        new_key_needed: the revoked key signed (or was next), so a new key signs at once.
        lead_skipped: the publication lead (seconds) the new key skipped (0 when none).
        retired: the key that stopped signing because of the new key (revoking a ``next`` key), or ``None``.
        signing_kid: the signing key after the operation.
    """

    __slots__ = (
        "already",
        "created",
        "dry_run",
        "entry",
        "kid",
        "lead_skipped",
        "new_key_needed",
        "retired",
        "revoked",
        "signing_kid",
    )

    def __init__(
        self,
        kid: str,
        entry: dict[str, Any],
        revoked: bool = True,
        dry_run: bool = False,
        already: bool = False,
        created: KeyRecord | None = None,
        new_key_needed: bool = False,
        lead_skipped: float = 0,
        retired: KeyRecord | None = None,
        signing_kid: str | None = None,
    ) -> None:
        self.kid = kid
        self.entry = entry
        self.revoked = revoked
        self.dry_run = dry_run
        self.already = already
        self.created = created
        self.new_key_needed = new_key_needed
        self.lead_skipped = lead_skipped
        self.retired = retired
        self.signing_kid = signing_kid


def _unknown(kf_path: Any, kid: str, records: list[KeyRecord]) -> KeyFileError:
    return KeyFileError(
        f"no key with kid or thumbprint {shown(kid)} in {kf_path}; kids present: "
        + ", ".join(r["kid"] for r in records),
        code="kid_not_found",
    )


def revoke(
    settings: Settings,
    now: datetime,
    kid: str,
    *,
    reason: str | None = None,
    dry_run: bool = False,
    keygen: lifecycle.KeyGen | None = None,
) -> RevokeResult:
    """Revoke a compromised key: remove it now, recording kid, thumbprint, time and reason.

    When it is the signing (or ``next``) key, a new key is generated (outside the lock) and
    signs at once. One transaction like ``rotate``: lock, re-read, plan again, one atomic
    replace; a crash leaves the old file or the new one. On an encrypted key file the new key
    is encrypted on commit (its passphrase is asked first).

    Args:
        kid: the kid, or the RFC 7638 thumbprint, of the key.
        reason: one line kept in the revocation entry (see :func:`check_reason`).
        keygen: ``(bits, alg) -> private JWK`` (default :func:`prisme_keys.jwk.generate_jwk`).

    Returns:
        :class:`RevokeResult`; ``already`` when the kid (or thumbprint) was revoked before.

    Raises:
        KeyFileError: no such key (listing the kids present), missing/corrupt/unsafe file,
            malformed revocation list, lock timeout, passphrase missing or wrong.
        InvalidArgument: a bad reason, a kid :func:`prisme_keys.jwk.kid_problem` refuses.
    """
    jwk_rules.check_kid(kid, "kid_or_thumbprint")
    reason = check_reason(reason)
    policy = rotation.Policy.from_settings(settings)
    kf = lifecycle.open_keyfile(settings)
    keyset = kf.load()
    entries(keyset, kf.path)  # a malformed revocation list fails before any key is generated
    plan = plan_revoke(keyset.records, kid, policy, now, reason)
    if plan is None:
        return _not_present(kf.path, keyset, kid, now)
    result = RevokeResult(plan.record["kid"], plan.entry, dry_run=dry_run, new_key_needed=plan.needs_new_key)
    if plan.needs_new_key:
        result.lead_skipped = policy.lead
    if dry_run:
        sign = rotation.signing_record(keyset.records, now)
        result.signing_kid = None if plan.needs_new_key else (sign["kid"] if sign else None)
        return result
    jwk = None
    if plan.needs_new_key:
        lifecycle.unlock_early(kf, keyset, "revoke (the new signing key must be encrypted)")
        jwk = lifecycle.new_jwk(settings, keygen)
    with kf.transaction() as tx:
        ks = tx.keyset
        plan = plan_revoke(ks.records, kid, policy, now, reason)
        if plan is None:  # another process revoked it first
            return _not_present(kf.path, ks, kid, now)
        if plan.needs_new_key and jwk is None:
            jwk = lifecycle.new_jwk(settings, keygen)
        newest = rotation.newest_first(ks.records)[0]
        at = max(now, rotation.t(newest, "createdAt"))  # the new key must come out newest
        applied = apply_revoke(ks.records, plan, jwk if plan.needs_new_key else None, policy, at)
        ks.extra[MEMBER] = [*entries(ks, kf.path), plan.entry]
        ks.records = applied.records
        tx.commit()
    result.entry, result.new_key_needed = plan.entry, plan.needs_new_key
    result.created, result.retired = applied.created, applied.retired
    result.lead_skipped = policy.lead if plan.needs_new_key else 0
    sign = rotation.signing_record(applied.records, at)
    result.signing_kid = sign["kid"] if sign else None
    return result


def _not_present(path: Any, keyset: KeySet, kid: str, now: datetime) -> RevokeResult:
    """The result for a kid no longer in the set: already revoked (nothing to do), else unknown."""
    known = revoked_keys(keyset, path).match(kid=kid, thumbprint=kid)
    if known is None:
        raise _unknown(path, kid, keyset.records)
    sign = rotation.signing_record(keyset.records, now)
    return RevokeResult(known["kid"], known, revoked=False, already=True, signing_kid=sign["kid"] if sign else None)
