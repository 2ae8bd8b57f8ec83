"""Key lifecycle operations over a key file: init, rotate, prune, list, export, generate.

Each function is what one command calls: it reads settings, takes ``now`` as an argument,
does the file work through :mod:`prisme_keys.keyfile` and the rules of
:mod:`prisme_keys.rotation`, and returns a plain result (dicts / small result classes) that
:mod:`prisme_keys.output` renders.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prisme_keys import clock
from prisme_keys import jwk as jwk_rules
from prisme_keys.errors import InvalidArgument, KeyFileError, Worded
from prisme_keys.jwk import RSAJwk
from prisme_keys.settings import Settings
from prisme_keys.store import rotation
from prisme_keys.store.keyfile import KeyFile, KeySet
from prisme_keys.store.records import KeyRecord
from prisme_keys.text import shown

if TYPE_CHECKING:  # loaded by plan() and timeline() only: 4 ms of start-up for every other command
    from prisme_keys.store import schedule, settings_checks

KeyGen = Callable[[int, str], RSAJwk]


def open_keyfile(settings: Settings) -> KeyFile:
    """The :class:`KeyFile` named by the settings (path, group-read opt-in, lock timeout, passphrase source)."""
    from prisme_keys.store.encryption import PassphraseSource

    return KeyFile(
        settings.key_file,
        allow_group_read=settings.allow_group_read,
        lock_timeout=settings.lock_timeout,
        passphrase=PassphraseSource.from_settings(settings),
    )


def load_records(settings: Settings) -> list[KeyRecord]:
    """Read the key file's records (no lock).

    Raises:
        KeyFileError: missing, corrupt or unsafe key file.
    """
    return open_keyfile(settings).load().records


def new_jwk(settings: Settings, keygen: KeyGen | None) -> RSAJwk:
    """A new private JWK of ``settings.size`` bits for ``settings.alg``, made by ``keygen`` (default
    :func:`jwk_rules.generate_jwk`)."""
    jwk = jwk_rules.canonical_jwk((keygen or jwk_rules.generate_jwk)(settings.size, settings.alg))
    jwk_rules.check_signing_jwk(jwk, generated=True)  # made by cryptography (or a test keygen): skip the slow check
    return jwk


class InitResult:
    """Result of :func:`init`: the key file path and the first record."""

    __slots__ = ("path", "record")

    def __init__(self, path: str, record: KeyRecord) -> None:
        self.path = path
        self.record = record


def init(settings: Settings, now: datetime, keygen: KeyGen | None = None, *, encryption: Any = None) -> InitResult:
    """Create the key file with its first signing key.

    Args:
        settings: effective settings (size, alg, rotation days, max age, key file).
        now: creation time (UTC).
        keygen: ``(bits, alg) -> private JWK``; default :func:`jwk_rules.generate_jwk`.
        encryption: optional callable ``KeySet -> KeySet`` applied before writing (``--encrypt``).

    Raises:
        KeyFileError: the file exists (left untouched) or cannot be written.
    """
    kf = open_keyfile(settings)
    if kf.exists():
        raise KeyFileError(f"key file {kf.path} already exists; refusing to overwrite it", code="key_file_exists")
    jwk = new_jwk(settings, keygen)
    # The first key signs at once: there is no older key to keep signing while it is published.
    policy = rotation.Policy.from_settings(settings)._replace(lead=0)
    result = rotation.apply_rotation([], jwk, policy, now)
    keyset = KeySet(records=result.records)
    if encryption is not None:
        keyset = encryption(keyset)
    kf.create(keyset)
    return InitResult(str(kf.path), result.created)


class RotateResult:
    """Result of :func:`rotate`.

    Attributes:
        rotated: a key was added (or, with ``dry_run``, would be).
        dry_run: nothing was written.
        reason: one line from the plan.
        created: the new record (``None`` when not rotated or dry run).
        retired: the replaced record as written (new ``expiresAt``), or ``None``.
        signing_kid: the signing key after the operation.
        next_rotation: ISO time of the next due rotation (when nothing was due).
        notes: one-line warnings (a future-dated key brought back); default ``[]``.
    """

    __slots__ = ("created", "dry_run", "next_rotation", "notes", "reason", "retired", "rotated", "signing_kid")

    def __init__(
        self,
        rotated: bool,
        dry_run: bool,
        reason: str,
        created: KeyRecord | None = None,
        retired: KeyRecord | None = None,
        signing_kid: str | None = None,
        next_rotation: str | None = None,
        notes: list[str] | None = None,
    ) -> None:
        self.rotated = rotated
        self.dry_run = dry_run
        self.reason = reason
        self.created = created
        self.retired = retired
        self.signing_kid = signing_kid
        self.next_rotation = next_rotation
        self.notes = [] if notes is None else notes


def rotate(
    settings: Settings, now: datetime, *, force: bool = False, dry_run: bool = False, keygen: KeyGen | None = None
) -> RotateResult:
    """Add a new signing key when due (or ``force``); safe to run from cron on many hosts.

    The plan is made on an unlocked read; when due, the key is generated outside the lock,
    then the file is re-read under the lock and the plan made again, so ten hosts rotating
    at once add exactly one key (and ten ``--force`` runs add ten). On an encrypted key file
    the new key is encrypted when the transaction commits. A key dated in the future of ``now``
    (see :func:`rotation.future_dated`) makes rotation due and is brought back, with a note.

    Args:
        keygen: ``(bits, alg) -> private JWK``; default :func:`jwk_rules.generate_jwk`.

    Raises:
        KeyFileError: missing (never created here), corrupt or unsafe file, lock timeout,
            no or wrong passphrase for an encrypted file.
    """
    policy = rotation.Policy.from_settings(settings)
    kf = open_keyfile(settings)
    keyset = kf.load()
    records = keyset.records
    plan = rotation.plan_rotation(records, policy, now, force)
    if not plan.due or dry_run:
        return RotateResult(
            plan.due,
            dry_run,
            plan.reason,
            signing_kid=plan.signing_kid,
            next_rotation=clock.iso(plan.next_rotation) if plan.next_rotation else None,
        )
    unlock_early(kf, keyset, "rotate (the new key must be encrypted)")
    jwk = new_jwk(settings, keygen)
    with kf.transaction() as tx:
        step = rotation.rotate_records(tx.keyset.records, jwk, policy, now, force)
        plan, result = step.plan, step.result
        if result is None:
            return RotateResult(
                False,
                False,
                plan.reason + " (another process rotated first)",
                signing_kid=plan.signing_kid,
                next_rotation=clock.iso(plan.next_rotation) if plan.next_rotation else None,
            )
        tx.keyset.records = result.records
        tx.commit()
    signing = rotation.signing_record(result.records, step.at)
    notes = [_brought_back_note(old, result.records, step.at) for old in result.brought_back]
    kid = signing["kid"] if signing else None
    return RotateResult(True, False, plan.reason, result.created, result.retired, kid, notes=notes)


def _brought_back_note(old: KeyRecord, records: list[KeyRecord], at: datetime) -> str:
    new = next(r for r in records if r["kid"] == old["kid"])
    ahead = clock.span((rotation.t(old, "createdAt") - at).total_seconds())
    return (
        f"key {old['kid']} was dated {ahead} ahead (createdAt {old['createdAt']}); it no longer blocks "
        f"rotation: it is retired as of now and stays published until {new['expiresAt']}"
    )


class PruneResult:
    """Result of :func:`prune`: removed records, kept count, notes, whether it was a dry run, and the
    ISO time (UTC) the next key expires (``None`` when none will)."""

    __slots__ = ("dry_run", "kept", "next_prune", "notes", "removed")

    def __init__(
        self,
        removed: list[KeyRecord],
        kept: int,
        notes: list[str] | None = None,
        dry_run: bool = False,
        next_prune: str | None = None,
    ) -> None:
        self.removed = removed
        self.kept = kept
        self.notes = [] if notes is None else notes
        self.dry_run = dry_run
        self.next_prune = next_prune


def prune(settings: Settings, now: datetime, *, dry_run: bool = False) -> PruneResult:
    """Remove expired non-signing keys (never the signing key, never all keys).

    Raises:
        KeyFileError: missing, corrupt or unsafe file, lock timeout.
    """
    kf = open_keyfile(settings)
    records = kf.load().records
    plan = rotation.plan_prune(records, now)
    if plan.remove and not dry_run:
        with kf.transaction() as tx:
            plan = rotation.plan_prune(tx.keyset.records, now)
            if plan.remove:
                tx.keyset.records = plan.keep
                tx.commit()
    nxt = rotation.next_prune(plan.keep, now)
    return PruneResult(plan.remove, len(plan.keep), plan.notes, dry_run, clock.iso(nxt) if nxt else None)


def describe(records: list[KeyRecord], now: datetime) -> list[dict[str, Any]]:
    """Rows for ``list``: ``[{kid, alg, bits, state, createdAt, activatesAt, rotatesAt, expiresAt,
    previousKeyId, private}]``, newest first; ``private`` is ``"yes"``, ``"no"`` or ``"encrypted"``."""
    rows = []
    for r in rotation.newest_first(records):
        jwk = r["jwk"]
        row = {
            "kid": r["kid"],
            "alg": jwk.get("alg"),
            "bits": jwk_rules.key_bits(jwk),
            "state": rotation.state(r, records, now),
            "createdAt": r["createdAt"],
            "activatesAt": r.get("activatesAt") or r["createdAt"],
            "rotatesAt": r["rotatesAt"],
            "expiresAt": r["expiresAt"],
            "previousKeyId": r.get("previousKeyId"),
            "private": "encrypted" if "enc" in jwk else ("yes" if jwk_rules.has_private(jwk) else "no"),
        }
        rows.append(row)
    return rows


def list_keys(settings: Settings, now: datetime) -> list[dict[str, Any]]:
    """The key file's records described at ``now`` (see :func:`describe`).

    Raises:
        KeyFileError: missing, corrupt or unsafe file.
    """
    return describe(load_records(settings), now)


class PlanResult:
    """Result of :func:`plan`: the simulated schedule, the days it covers, and the settings findings."""

    __slots__ = ("days", "findings", "schedule")

    def __init__(self, schedule: schedule.Schedule, days: int, findings: list[settings_checks.SettingsFinding]) -> None:
        self.schedule = schedule
        self.days = days
        self.findings = findings


def plan(settings: Settings, now: datetime, days: int | None = None) -> PlanResult:
    """Simulate the cron job (``rotate`` then ``prune``, hourly) on the key file for ``days`` days from ``now``.

    Nothing is written and no key is generated. The settings are checked against each other
    (:func:`settings_checks.check`), up to the last key the schedule creates. A window that
    would run past the year 9999 ends at :data:`clock.LATEST` (dates saturate, :func:`clock.shift`).

    Args:
        days: whole days to simulate, 1 to :data:`schedule.MAX_DAYS`; default two rotation
            periods plus the longest token lifetime (:func:`schedule.default_days`).

    Raises:
        InvalidArgument: ``days`` out of range.
        KeyFileError: missing, corrupt or unsafe key file; two records share a kid.
    """
    from prisme_keys.store import schedule, settings_checks

    policy = rotation.Policy.from_settings(settings)
    if days is None:
        days = schedule.default_days(policy)
    if not 1 <= days <= schedule.MAX_DAYS:
        raise InvalidArgument("days", "a plan covers 1 to {most} days, not {value}", most=schedule.MAX_DAYS, value=days)
    records = load_records(settings)
    refuse_duplicate_kids(records, "plan for an ambiguous set")
    sched = schedule.simulate(
        records, policy, now, clock.shift(now, clock.days(days)), alg=settings.alg, bits=settings.size
    )
    last_created = max([now] + [e.at for e in sched.events if e.kind == "rotation"])
    return PlanResult(sched, days, settings_checks.check(settings, now, records=records, until=last_created))


def timeline(settings: Settings, now: datetime) -> schedule.Schedule:
    """The key file's keys over time as they are (no simulation): see :func:`schedule.timeline`.

    Raises:
        KeyFileError: missing, corrupt or unsafe key file; two records share a kid.
    """
    from prisme_keys.store import schedule

    records = load_records(settings)
    refuse_duplicate_kids(records, "draw an ambiguous set")
    return schedule.timeline(records, now)


def refuse_duplicate_kids(records: list[KeyRecord], what: str) -> None:
    """Refuse a record list in which two records share a kid.

    Raises:
        KeyFileError: ``the key file holds kid 'x' twice; refusing to <what> (run prisme-keys doctor)``.
    """
    seen: set[str] = set()
    for r in records:
        if r["kid"] in seen:
            raise KeyFileError(
                f"the key file holds kid {shown(r['kid'])} twice; refusing to {what} (run prisme-keys doctor)",
                code="duplicate_kid",
            )
        seen.add(r["kid"])


def public_jwks(records: list[KeyRecord]) -> dict[str, Any]:
    """The public JWK Set ``{"keys": [{kty, kid, use, alg, n, e}]}``, newest first (RFC 7517 section 5).

    Raises:
        KeyFileError: two records share a kid (verifiers pick keys by kid; ``doctor`` says more).
    """
    refuse_duplicate_kids(records, "publish an ambiguous set")
    return {"keys": [jwk_rules.public_jwk(r["jwk"]) for r in rotation.newest_first(records)]}


def export(settings: Settings, *, fmt: str = "jwks", private: bool = False) -> Any:
    """The document ``export`` writes.

    Args:
        fmt: ``"jwks"`` (a JWK Set) or ``"records"`` (gateway records).
        private: include private members (records always need them: the gateway signs
            with them, so ``records`` without ``private`` is a usage error).

    Returns:
        ``{"keys": [...]}`` for ``jwks``; a list of records for ``records``.

    Raises:
        InvalidArgument: ``records`` without ``private``, or an unknown format.
        KeyFileError: missing, corrupt or unsafe file; ``private`` on encrypted keys.
    """
    if fmt not in ("jwks", "records"):
        raise InvalidArgument("format", "unknown export format {value}; use jwks or records", value=shown(fmt))
    if fmt == "records" and not private:
        raise InvalidArgument(
            "private", "export {format} records needs {private}: the gateway signs with the private key"
        )
    kf = open_keyfile(settings)
    keyset = kf.load()
    records = keyset.records
    if not private:
        return public_jwks(records)
    from prisme_keys.store import encryption

    records = encryption.open_records(keyset, kf.passphrase, kf.path, Worded("export {private}"))
    if fmt == "jwks":
        return {"keys": [dict(r["jwk"]) for r in rotation.newest_first(records)]}
    return rotation.newest_first(records)


def unlock_early(kf: KeyFile, keyset: KeySet, why: str) -> None:
    """On an encrypted key file, get and verify the passphrase now (before slow work or the lock).

    Raises:
        KeyFileError: no passphrase source, or a wrong passphrase.
    """
    from prisme_keys.store import encryption

    hdr = encryption.header(keyset)
    if hdr is not None:
        if kf.passphrase is None:
            raise encryption.passphrase_required(kf.path, why)
        encryption.unlock(hdr, kf.passphrase(why), kf.path, getattr(kf.passphrase, "derived_keys", None))


def generate(settings: Settings, *, public: bool = False, keygen: KeyGen | None = None) -> RSAJwk:
    """A standalone key (private JWK, or its public projection); the key file is untouched."""
    jwk = new_jwk(settings, keygen)
    return jwk_rules.public_jwk(jwk) if public else jwk


def signing_jwk(settings: Settings, now: datetime, kid: str | None = None) -> tuple[KeyRecord, RSAJwk]:
    """The record and private JWK to sign with at ``now``.

    Args:
        kid: pick this record instead of the signing key (e.g. to mint with a retired key).

    Returns:
        ``(record, private_jwk)``; the JWK holds ``d`` (decrypted when the key file is encrypted).

    Raises:
        KeyFileError: missing/corrupt file, no key, unknown ``kid`` (listing the kids present),
            or the record holds no private key.
    """
    kf = open_keyfile(settings)
    keyset = kf.load()
    records = keyset.records
    if kid is None:
        rec = rotation.signing_record(records, now)
        if rec is None:
            raise KeyFileError(f"key file {settings.key_file} holds no key; run prisme-keys rotate")
    else:
        found = [r for r in records if r["kid"] == kid]
        if not found:
            raise KeyFileError(
                f"no key with kid {shown(kid)} in {settings.key_file}; kids present: "
                + ", ".join(r["kid"] for r in records)
            )
        rec = found[0]
    return rec, private_jwk(kf, keyset, rec)


def private_jwk(kf: KeyFile, keyset: KeySet, rec: KeyRecord) -> RSAJwk:
    """The private JWK of ``rec``, a record of ``keyset`` read from ``kf`` (decrypted when encrypted).

    Raises:
        KeyFileError: no or wrong passphrase for an encrypted record, or the record holds no private key.
    """
    if "enc" in rec["jwk"]:
        from prisme_keys.store import encryption

        rec = encryption.open_records(keyset, kf.passphrase, kf.path, "signing", [rec])[0]
    jwk = rec["jwk"]
    if not jwk_rules.has_private(jwk):
        raise KeyFileError(f"key {rec['kid']} in {kf.path} holds no private key")
    return jwk.copy()
