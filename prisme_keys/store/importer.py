"""``import``: add keys to the key file from a private JWKS, gateway records or a PEM key.

Accepted inputs (detected from the content by :mod:`prisme_keys.store.import_input`, which reads
and recognises them; this module judges each key and merges them into the key file):

* a JWK Set holding private keys ``{"keys": [private JWK, ...]}`` such as the gateway's
  legacy ``jwks.json`` (listed newest first, as the gateway's own migration reads it);
* gateway records ``{kid, previousKeyId, createdAt, rotatesAt, expiresAt, jwk}`` as a JSON
  array, as JSON lines (what ``mongoexport`` writes and ``mongoimport`` reads), as a single
  record, or as a prisme-keys key file; MongoDB extended JSON (``{"$date": ...}``,
  ``{"$oid": ...}``, ``{"$numberLong": ...}``) is decoded and ``_id`` dropped;
* a PEM RSA private key (PKCS#1 ``RSA PRIVATE KEY`` or PKCS#8 ``PRIVATE KEY``, unencrypted),
  with ``alg`` and ``kid`` given (else the settings' alg and the RFC 7638 thumbprint).

Every key is validated (RSA, at least 2048 bits, private members consistent with ``n``/``e``,
not on the known-compromised list, checked first so its reason wins) and the import is all
or nothing: one bad key rejects the whole input with its position and reason, and the key
file is left as it was. Kids and times given are kept (times normalised to the gateway's
``YYYY-MM-DDTHH:MM:SS.mmmZ``); missing ones are filled per DESIGN.md: kid = RFC 7638
thumbprint, ``createdAt`` = now (minus one millisecond per position, so the first key of a
JWKS is the newest), ``rotatesAt = createdAt + JWKS_ROTATION_DAYS``, ``expiresAt = rotatesAt
+ ACCESS_TOKENS_MAX_AGE``, ``previousKeyId`` = the next older key of the merged set.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from prisme_keys import clock
from prisme_keys import jwk as jwk_rules
from prisme_keys.errors import InvalidArgument, KeyFileError, Worded
from prisme_keys.jwk import RSAJwk
from prisme_keys.settings import Settings
from prisme_keys.store.import_input import MAX_INPUT_BYTES as MAX_INPUT_BYTES  # public names of this module
from prisme_keys.store.import_input import Candidate as Candidate
from prisme_keys.store.import_input import check_size as check_size
from prisme_keys.store.import_input import parse_source as parse_source
from prisme_keys.store.import_input import read_source as read_source
from prisme_keys.store.import_input import rejected
from prisme_keys.store.records import KeyRecord
from prisme_keys.store.revocation import RevokedKeys, revoked_keys
from prisme_keys.store.revocation import describe as describe_revocation
from prisme_keys.text import shown

#: Record members kept from an imported record (others, like Mongo's ``_id``, are dropped).
RECORD_MEMBERS = ("kid", "previousKeyId", "createdAt", "rotatesAt", "expiresAt", "activatesAt", "jwk")
_TIMES = ("createdAt", "rotatesAt", "expiresAt", "activatesAt")
_CRT = ("p", "q", "dp", "dq", "qi")


@dataclass
class ImportResult:
    """Result of :func:`import_keys`.

    Attributes:
        path: the key file.
        source_format: ``jwks``, ``records``, ``json-lines`` or ``pem``.
        imported: the records added, newest first.
        skipped: kids already present with the same key material.
        created_file: the key file was created (``create``).
        signing_kid: the signing key after the import.
    """

    path: str
    source_format: str
    imported: list[KeyRecord] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    created_file: bool = False
    signing_kid: str | None = None


# -- validation ---------------------------------------------------------------------------


def _check(cand: Candidate, alg: str | None, kid: str | None, settings: Settings) -> dict[str, Any]:
    """Validate and complete one candidate into a record (times may still be missing).

    Args:
        alg: the algorithm of a key that names none (default ``settings.alg``).
        kid: the kid of a key that has none (default its RFC 7638 thumbprint).

    Raises:
        ValueError: the reason (no secret values).
    """
    if cand.error:
        raise ValueError(cand.error)
    rec = cand.record or {}
    jwk = rec.get("jwk")
    if not isinstance(jwk, dict):
        raise ValueError("jwk is missing or not an object (truncated record?)")
    pkey = _check_key(jwk)
    final_kid = _final_kid(rec, jwk, kid)
    out: dict[str, Any] = {"kid": final_kid, **_record_dates(rec)}
    out["jwk"] = _complete_jwk(jwk, pkey, final_kid, alg or settings.alg)
    return out


def _check_key(jwk: dict[str, Any]) -> Any:
    """Check one JWK is an importable signing key; returns its private key object (``cryptography``).

    In order: RSA with string ``n``/``e``, not known-compromised (checked first: its reason is the
    one that matters), private members present, :data:`jwk_rules.MIN_BITS` to
    :data:`jwk_rules.MAX_BITS` bits, a supported ``alg`` and ``use: sig`` when given, private
    members consistent with ``n``/``e``.

    Raises:
        ValueError: the reason (no secret values).
    """
    if jwk.get("kty") != "RSA":
        raise ValueError(f"kty is {shown(jwk.get('kty'))}; only RSA keys are supported")
    for m in ("n", "e"):
        if not isinstance(jwk.get(m), str):
            raise ValueError(f"jwk member {shown(m)} is missing or not a string (truncated record?)")
    try:
        jwk_rules.thumbprint(jwk)
    except ValueError:
        raise ValueError("jwk members n/e are not base64url") from None
    reason = jwk_rules.compromised_reason(jwk)
    if reason:
        raise ValueError(f"it is a known-compromised key, its private half is public ({reason})")
    if not jwk_rules.has_private(jwk):
        raise ValueError(
            "no private key (member 'd'): the gateway signs with the private key; "
            "import a private JWKS, gateway records or a PEM private key"
        )
    bits = jwk_rules.key_bits(jwk)
    if bits < jwk_rules.MIN_BITS:
        raise ValueError(f"{bits}-bit key; at least {jwk_rules.MIN_BITS} bits are required")
    if bits > jwk_rules.MAX_BITS:
        raise ValueError(f"{bits}-bit key; at most {jwk_rules.MAX_BITS} bits are supported")
    if "alg" in jwk and jwk["alg"] not in jwk_rules.SUPPORTED_ALGS:
        raise ValueError(f"alg {shown(jwk['alg'])} is not supported (RS256, RS384, RS512)")
    if "use" in jwk and jwk["use"] != "sig":
        raise ValueError(f"use is {shown(jwk['use'])}, not 'sig'")
    try:
        return jwk_rules.private_key_from_jwk(jwk)
    except ValueError as exc:  # the only error private_key_from_jwk raises for a bad key
        raise ValueError(f"private key members are inconsistent: {exc}") from None


def _final_kid(rec: dict[str, Any], jwk: dict[str, Any], kid: str | None) -> str:
    """The imported key's kid: the record's, else the JWK's, else the ``kid`` argument, else the RFC 7638
    thumbprint.

    Raises:
        ValueError: a kid that breaks the kid rule (:func:`prisme_keys.jwk.kid_problem`), or two kids that differ.
    """
    rkid, jkid = rec.get("kid"), jwk.get("kid")
    for label, v in (("record kid", rkid), ("jwk kid", jkid), ("{kid}", kid)):
        problem = None if v is None else jwk_rules.kid_problem(v)
        if problem is not None:
            value = f" {shown(v)}" if isinstance(v, str) and v else ""
            raise ValueError(Worded(label + "{value} " + problem, value=value))
    if rkid and jkid and rkid != jkid:
        raise ValueError(f"record kid {shown(rkid)} differs from its jwk kid {shown(jkid)}")
    given: str | None = rkid or jkid
    if kid is not None and given and kid != given:
        raise ValueError(
            Worded("{kid} {value} differs from the key's own kid {own}", value=shown(kid), own=shown(given))
        )
    return given or kid or jwk_rules.thumbprint(jwk)


def _complete_jwk(jwk: dict[str, Any], pkey: Any, kid: str, alg: str) -> RSAJwk:
    """The JWK as stored: ``kid``, ``use: sig`` and ``alg`` filled, missing CRT members computed from
    ``pkey``, members in the gateway's order (extras after), integers in canonical form."""
    out_jwk = dict(jwk)
    out_jwk["kid"] = kid
    out_jwk.setdefault("use", "sig")
    out_jwk.setdefault("alg", alg)
    if any(m not in out_jwk for m in _CRT):
        full: Mapping[str, Any] = jwk_rules.private_key_to_jwk(pkey, out_jwk["alg"], kid=kid)
        for m in _CRT:
            out_jwk.setdefault(m, full[m])
    order = ["kty", "kid", "use", "alg", "n", "e", "d", *_CRT]
    # every public member is there now (_check_key checked kty, n and e)
    return cast(RSAJwk, jwk_rules.canonical_jwk({**{m: out_jwk[m] for m in order if m in out_jwk}, **out_jwk}))


def _record_dates(rec: dict[str, Any]) -> dict[str, Any]:
    """``previousKeyId`` and the times the record gives (normalised to ``YYYY-MM-DDTHH:MM:SS.mmmZ``).

    Raises:
        ValueError: ``previousKeyId`` is not a string, or a time is not ISO-8601.
    """
    out: dict[str, Any] = {}
    if "previousKeyId" in rec:
        prev = rec["previousKeyId"]
        if prev is not None and not isinstance(prev, str):
            raise ValueError("previousKeyId is not a string")
        out["previousKeyId"] = prev
    for t in _TIMES:
        if rec.get(t) is not None:
            try:
                out[t] = clock.iso(clock.parse_iso(rec[t]))
            except (ValueError, TypeError):
                raise ValueError(f"{t} is not an ISO-8601 time") from None
    return out


def _fill_times(rec: dict[str, Any], created: datetime, settings: Settings) -> dict[str, Any]:
    if "createdAt" not in rec:
        rec["createdAt"] = clock.iso(created)
    start = clock.parse_iso(rec.get("activatesAt") or rec["createdAt"])
    if "rotatesAt" not in rec:
        rec["rotatesAt"] = clock.iso(clock.shift(start, clock.days(settings.rotation_days)))
    if "expiresAt" not in rec:
        rec["expiresAt"] = clock.iso(clock.shift(clock.parse_iso(rec["rotatesAt"]), settings.access_tokens_max_age))
    created_at = clock.parse_iso(rec["createdAt"])
    for later in ("rotatesAt", "expiresAt"):
        if clock.parse_iso(rec[later]) < created_at:
            raise ValueError(f"{later} {rec[later]} is before createdAt {rec['createdAt']}")
    return {m: rec[m] for m in RECORD_MEMBERS if m in rec}


def _same_material(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    try:
        if jwk_rules.thumbprint(a) != jwk_rules.thumbprint(b):
            return False
        if jwk_rules.has_private(a) and jwk_rules.has_private(b):
            return jwk_rules.b64_to_int(a["d"]) == jwk_rules.b64_to_int(b["d"])
        return True
    except (ValueError, KeyError):
        return False


def _reject(name: str, problems: list[tuple[str, str]]) -> KeyFileError:
    pos, why = problems[0]
    more = ""
    if len(problems) > 1:
        rest = ", ".join(p for p, _ in problems[1:4]) + (", ..." if len(problems) > 4 else "")
        more = f" (and {len(problems) - 1} more rejected: {rest})"
    return rejected(
        Worded(
            "import from {name} rejected, nothing written: {pos}: {why}{more}", name=name, pos=pos, why=why, more=more
        )
    )


def prepare(
    data: bytes,
    settings: Settings,
    now: datetime,
    *,
    name: str = "input",
    alg: str | None = None,
    kid: str | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> tuple[str, list[tuple[str, dict[str, Any]]]]:
    """Parse and validate an import input without touching the key file.

    Args:
        data: the input bytes.
        settings: effective settings (alg default, rotation days, max age).
        now: the time used for missing ``createdAt`` (UTC).
        name: the input's name in messages.
        alg: the algorithm of keys that do not name one (default ``JWKS_ALG``).
        kid: the kid of the one key in the input when it has none.
        progress: called as ``progress(keys_checked, keys)`` while the keys are validated.

    Returns:
        ``(format, [(position, record)])`` in input order, each record complete except
        possibly ``previousKeyId`` (filled at merge).

    Raises:
        InvalidArgument: ``alg`` not supported, or ``kid`` with several keys.
        KeyFileError: the input is unreadable or a key is rejected (position and reason).
    """
    if alg is not None and alg not in jwk_rules.SUPPORTED_ALGS:
        raise InvalidArgument("alg", "{alg} {value} is not supported; use RS256, RS384 or RS512", value=shown(alg))
    fmt, cands = parse_source(data, name)
    if not cands:
        raise rejected(f"{name} holds no keys; nothing was imported")
    if kid is not None and len(cands) > 1:
        raise InvalidArgument("kid", "{kid} names one key but {name} holds {n}", name=name, n=len(cands))
    problems: list[tuple[str, str]] = []
    out: list[tuple[str, dict[str, Any]]] = []
    seen: dict[str, tuple[str, dict[str, Any]]] = {}
    for i, cand in enumerate(cands):
        if progress is not None:
            progress(i, len(cands))
        try:
            rec = _fill_times(_check(cand, alg, kid, settings), clock.shift(now, timedelta(milliseconds=-i)), settings)
        except ValueError as exc:  # its message may be a Worded text (naming the kid argument)
            problems.append((cand.position, exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)))
            continue
        prev = seen.get(rec["kid"])
        if prev is not None:
            if _same_material(prev[1]["jwk"], rec["jwk"]):
                continue
            problems.append((cand.position, f"kid {shown(rec['kid'])} is also {prev[0]} with a different key"))
            continue
        seen[rec["kid"]] = (cand.position, rec)
        out.append((cand.position, rec))
    if progress is not None:
        progress(len(cands), len(cands))
    if problems:
        raise _reject(name, problems)
    return fmt, out


def merge(
    existing: list[KeyRecord],
    incoming: list[tuple[str, dict[str, Any]]],
    name: str = "input",
    revoked: RevokedKeys | None = None,
) -> tuple[list[KeyRecord], list[KeyRecord], list[str]]:
    """Merge validated records into the key file's records.

    A kid already present with the same key material is skipped; with different material,
    or the same key under another kid, the whole import is rejected. A key the key file has
    revoked (``revoked``: by kid or RFC 7638 thumbprint) is rejected too: a revoked key never returns.

    Returns:
        ``(all records newest first, added records, skipped kids)``.

    Raises:
        KeyFileError: a conflict (position and reason); nothing is to be written.
    """
    from prisme_keys.store import rotation

    by_kid: dict[str, Mapping[str, Any]] = {r["kid"]: r for r in existing}
    by_tp: dict[str, str] = {}
    for r in existing:
        try:
            by_tp[jwk_rules.thumbprint(r["jwk"])] = r["kid"]
        except ValueError:
            pass
    added: list[dict[str, Any]] = []
    skipped: list[str] = []
    problems: list[tuple[str, str]] = []
    for pos, rec in incoming:
        k = rec["kid"]
        tp = jwk_rules.thumbprint(rec["jwk"])
        gone = revoked.match(kid=k, thumbprint=tp) if revoked else None
        if gone is not None:
            same = "" if gone["kid"] == k else f" as kid {shown(gone['kid'])}"
            problems.append((pos, f"key {shown(k)} was {describe_revocation(gone)}{same}; a revoked key cannot return"))
            continue
        if k in by_kid:
            if _same_material(by_kid[k]["jwk"], rec["jwk"]):
                skipped.append(k)
            else:
                problems.append((pos, f"kid {shown(k)} is already in the key file with a different key"))
            continue
        if tp in by_tp:
            problems.append((pos, f"the same key is already in the key file as kid {shown(by_tp[tp])}"))
            continue
        by_kid[k] = rec
        by_tp[tp] = k
        added.append(rec)
    if problems:
        raise _reject(name, problems)
    # complete records but for previousKeyId, which their place in the merged set gives just below
    merged = rotation.newest_first(list(existing) + [cast(KeyRecord, r) for r in added])
    added_ids = {id(r) for r in added}
    for i, r in enumerate(merged):
        if id(r) in added_ids and "previousKeyId" not in r:
            r["previousKeyId"] = merged[i + 1]["kid"] if i + 1 < len(merged) else None
    for d in added:  # member order of the gateway's record
        ordered = {m: d[m] for m in RECORD_MEMBERS if m in d}
        d.clear()
        d.update(ordered)
    return merged, [r for r in merged if id(r) in added_ids], skipped


def import_keys(
    settings: Settings,
    now: datetime,
    data: bytes,
    *,
    name: str = "input",
    alg: str | None = None,
    kid: str | None = None,
    create: bool = False,
    progress: Callable[[int, int | None], None] | None = None,
) -> ImportResult:
    """Import keys into the key file, all or nothing, under the key file's lock.

    Args:
        settings: effective settings (key file, alg, rotation days, max age).
        now: current time (UTC), used for missing ``createdAt``.
        data: the input (see :func:`parse_source`).
        name: the input's name in messages.
        alg, kid: see :func:`prepare`.
        create: create the key file when it does not exist (else the error has the hint ``import_create``).
        progress: called as ``progress(keys_checked, keys)`` while the keys are validated.

    Raises:
        InvalidArgument: a bad ``alg`` or ``kid``.
        KeyFileError: input unreadable or a key rejected (position and reason), key file
            missing (without ``create``), corrupt or locked too long, or encrypted without its
            passphrase. The key file is unchanged in every error case.
    """
    from prisme_keys.store import rotation
    from prisme_keys.store.keyfile import KeySet
    from prisme_keys.store.lifecycle import open_keyfile

    fmt, incoming = prepare(data, settings, now, name=name, alg=alg, kid=kid, progress=progress)
    kf = open_keyfile(settings)
    result = ImportResult(str(kf.path), fmt)
    if not kf.exists():
        if not create:
            raise KeyFileError(
                Worded("key file {path} does not exist", hint="import_create", path=kf.path), code="key_file_missing"
            )
        merged, added, skipped = merge([], incoming, name)
        try:
            kf.create(KeySet(records=merged))
            result.created_file = True
        except KeyFileError as exc:
            if exc.code != "key_file_exists":
                raise
            # created meanwhile by another process: merge into it below
        else:
            result.imported, result.skipped = added, skipped
            sign = rotation.signing_record(merged, now)
            result.signing_kid = sign["kid"] if sign else None
            return result
    with kf.transaction() as tx:
        ks = tx.keyset
        # an encrypted key file encrypts the imported private members on commit (keyfile.Transaction)
        merged, added, skipped = merge(ks.records, incoming, name, revoked_keys(ks, kf.path))
        if added:
            ks.records = merged
            tx.commit()
    result.imported, result.skipped = added, skipped
    sign = rotation.signing_record(merged, now)
    result.signing_kid = sign["kid"] if sign else None
    return result
