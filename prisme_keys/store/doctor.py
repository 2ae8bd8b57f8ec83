"""``doctor``: audit a key file without changing it.

Checks, each giving zero or more findings ``{severity, code, message, kid}``:

* ``file``: exists, parses (format, records), size.
* ``permissions``: group/others bits (group allowed with ``PRISME_KEYS_ALLOW_GROUP_READ``),
  owner, a folder others can write to, the lock file's mode.
* ``rotation``: rotation overdue (``rotate`` would add a key), a ``next`` key waiting.
* ``settings``: the settings checked against each other and the keys
  (:func:`prisme_keys.store.settings_checks.check`: max age against the rotation period, the
  publication lead against the verifiers' JWKS cache and the rotation period, the rotation
  period's range, RSA keys under 3072 bits signing after 2030), each with a suggested value.
* ``expiry``: non-signing keys past ``expiresAt`` (``prune`` would remove them), a signing key
  past its ``expiresAt``.
* ``kids``: duplicate kids, the same key under two kids, ``jwk.kid`` differing from the record's kid.
* ``revocations``: each revoked key (kid, RFC 7638 thumbprint, when, why, exposure end), and an
  error when a revoked key is in the set again or the revocation list is malformed.
* ``strength``: keys under 2048 bits, an odd public exponent other than 65537, unsupported
  ``alg``, ``use`` other than ``sig``, a key on the known-compromised list, inconsistent
  private members (OpenSSL's full RSA key check, primality of ``p`` and ``q`` included, which
  ``mint`` skips for keys from the key file), and a sign/verify round trip with python-jose.
* ``private``: a signing (or next) key without private members.
* ``encryption``: encrypted or not, KDF parameters, records in clear text inside an encrypted
  file, ``enc`` without a header; with a passphrase at hand (environment or file, never a
  prompt) the passphrase is verified and every record authenticated.
* ``dates``: dates out of order.
* ``announcement``: the last announcement recorded in the key file, and any pending one (the
  fleet's expected state differs from it: a warning, since when), or none ever recorded (info).

Severity ``error`` and ``warning`` are problems (exit 4); ``info`` is not.
The file is only read: no lock is taken, nothing is written.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from prisme_keys import clock
from prisme_keys import jwk as jwk_rules
from prisme_keys.errors import KeyFileError, PrismeKeysError, Worded
from prisme_keys.jwk import RSAJwk
from prisme_keys.store import announced, revocation, rotation, settings_checks
from prisme_keys.store.permissions import unsafe_mode
from prisme_keys.store.records import KeyRecord
from prisme_keys.text import shown

PROBLEM = ("error", "warning")


@dataclass
class Finding:
    """One observation: ``severity`` (error/warning/info), stable ``code``, one-line ``message``, optional ``kid``.

    ``message`` may be a :class:`prisme_keys.errors.Worded` text whose ``hint`` a front end completes
    (``rekey``: how to raise the KDF parameters).
    """

    severity: str
    code: str
    message: str
    kid: str | None = None


@dataclass
class Report:
    """Result of :func:`audit`.

    Attributes:
        path: the key file.
        healthy: no finding of severity error or warning.
        keys: number of records (0 when unreadable).
        encrypted: the file carries an encryption header.
        findings: all findings, problems first.
        announcement: ``{last, pending}`` (see :func:`prisme_keys.store.announced.status`), or ``None``
            when the file is unreadable or its record malformed.
    """

    path: str
    healthy: bool = True
    keys: int = 0
    encrypted: bool = False
    findings: list[Finding] = field(default_factory=list)
    announcement: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` document."""
        return {
            "path": self.path,
            "healthy": self.healthy,
            "keys": self.keys,
            "encrypted": self.encrypted,
            "announcement": self.announcement,
            "problems": sum(1 for f in self.findings if f.severity in PROBLEM),
            "findings": [asdict(f) for f in self.findings],
        }


def audit(
    settings: Any,
    now: datetime,
    real_now: datetime | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> Report:
    """Audit the key file named by ``settings`` at ``now`` (UTC); never writes, never prompts.

    Args:
        now: the time the audit acts at (``--now`` for planning).
        real_now: the real time (default :func:`prisme_keys.clock.now`): keys created, or
            activating beyond the publication lead, after it are reported whatever ``now`` is.
        progress: called as ``progress(keys_checked, keys)`` after each key's strength and
            private members are checked (the slow part: about one RSA key validation per key).

    Raises:
        ConfigError: a bad setting (a key file problem is a finding, not an error).
    """
    from prisme_keys.store.lifecycle import open_keyfile

    kf = open_keyfile(settings)
    rep = Report(str(kf.path))
    out = rep.findings

    def add(sev: str, code: str, msg: str, kid: str | None = None) -> None:
        out.append(Finding(sev, code, msg, kid))

    _permissions(kf, settings, add)
    try:
        keyset = kf.load(check_mode=False)
    except KeyFileError as exc:
        add("error", exc.code if exc.code != "key_file_error" else "key_file_unreadable", exc.message)
        return _finish(rep)
    records = keyset.records
    rep.keys = len(records)
    if not records:
        add("error", "no_keys", "the key file holds no key; run prisme-keys rotate")
        return _finish(rep)
    _kids(records, add)
    _revocations(keyset, kf.path, add)
    _dates_and_rotation(records, settings, now, add)
    for f in settings_checks.check(settings, now, records=records):
        add(f.severity, f.code, f.line(), f.kid)
    _future(records, settings, real_now if real_now is not None else clock.now(), add)
    _strength(records, add, progress)
    _encryption(keyset, kf, settings, rep, add)
    _announcement(keyset, kf, now, rep, add)
    return _finish(rep)


def _announcement(keyset: Any, kf: Any, now: datetime, rep: Report, add: Any) -> None:
    try:
        st = announced.status(keyset, now, kf.path)
    except KeyFileError as exc:
        add("error", "announcement_record", exc.message)
        return
    rep.announcement = st.to_dict()
    last, pend = st.last, st.pending
    if last is None:
        add(
            "info",
            "never_announced",
            Worded(
                "no announcement recorded: this key set was never announced to the gateways and runtime by prisme-keys",
                hint="announce",
            ),
        )
    elif pend is not None:
        add(
            "warning",
            "announcement_pending",
            Worded(
                "announcement pending since {since}: {what}",
                hint="announce_pending",
                since=pend.since,
                what=announced.describe(pend),
            ),
        )
    else:
        n = len(last.state.kids)
        add(
            "info",
            "announced",
            f"announced {last.at}: signing key {last.state.signing_kid}, {n} published key{'s' if n != 1 else ''}",
        )


def _finish(rep: Report) -> Report:
    order = {"error": 0, "warning": 1, "info": 2}
    rep.findings.sort(key=lambda f: order.get(f.severity, 3))
    rep.healthy = not any(f.severity in PROBLEM for f in rep.findings)
    return rep


def _permissions(kf: Any, settings: Any, add: Any) -> None:
    _passphrase_file(settings, add)
    info = kf.stat_info()
    mode = info["mode"]
    if mode is None or not info["regular"]:
        return  # missing, or a folder or device: the load reports it (a chmod would not help)
    problem = unsafe_mode(kf.path, mode, what="key file", allow_group_read=settings.allow_group_read)
    if problem:
        add("error", "permissions", problem)
    else:
        add("info", "permissions", f"mode {mode:04o}")
    if info["uid"] is not None and hasattr(os, "getuid") and info["uid"] not in (os.getuid(), 0):
        add("warning", "owner", f"the key file is owned by uid {info['uid']}, not by you (uid {os.getuid()})")
    fmode = info["folder_mode"]
    if fmode is not None and fmode & 0o002 and not fmode & 0o1000:
        add(
            "error",
            "folder_permissions",
            f"folder {kf.path.parent} (mode {fmode:04o}) is writable by others: "
            "anyone can replace the key file; fix with: chmod o-w",
        )
    lmode = info["lock_mode"]
    if lmode is not None and lmode & 0o002:
        add("warning", "lock_permissions", f"lock file {kf.lock_path} (mode {lmode:04o}) is writable by others")


def _passphrase_file(settings: Any, add: Any) -> None:
    """The passphrase file, when one is configured: the key file's permission rule (never read here)."""
    path = settings.passphrase_file
    if path is None:
        return
    try:
        st = os.stat(path)
    except OSError as exc:
        add("error", "passphrase_file", f"passphrase file {path}: {exc.strerror}")
        return
    if not stat.S_ISREG(st.st_mode):
        return  # a pipe or device: no permission rule applies
    problem = unsafe_mode(path, st.st_mode, what="passphrase file", allow_group_read=settings.allow_group_read)
    if problem:
        add("error", "passphrase_file_permissions", problem)
    else:
        add("info", "passphrase_file", f"passphrase file {path}: mode {stat.S_IMODE(st.st_mode):04o}")


def _kids(records: list[KeyRecord], add: Any) -> None:
    seen: dict[str, int] = {}
    for r in records:
        seen[r["kid"]] = seen.get(r["kid"], 0) + 1
    for kid, n in seen.items():
        if n > 1:
            add("error", "duplicate_kid", f"kid {shown(kid)} appears {n} times: verifiers pick keys by kid", kid)
    by_tp: dict[str, list[str]] = {}
    for r in records:
        try:
            by_tp.setdefault(jwk_rules.thumbprint(r["jwk"]), []).append(r["kid"])
        except ValueError:
            add("error", "bad_public_key", f"key {r['kid']}: n or e is not base64url", r["kid"])
    for kids in by_tp.values():
        if len(set(kids)) > 1:
            add("warning", "duplicate_key", f"the same key is stored under kids {', '.join(sorted(set(kids)))}")
    for r in records:
        jk = r["jwk"].get("kid")
        if jk is not None and jk != r["kid"]:
            add("error", "kid_mismatch", f"record kid {shown(r['kid'])} differs from its jwk.kid {shown(jk)}", r["kid"])


def _revocations(keyset: Any, path: Any, add: Any) -> None:
    """One ``info`` per revocation; an ``error`` when a revoked key (kid or thumbprint) is in the set again."""
    try:
        revoked = revocation.revoked_keys(keyset, path)
    except KeyFileError as exc:
        add("error", "bad_revocations", exc.message)
        return
    for e in revoked.entries:
        until = (e.get("exposure") or {}).get("until") if isinstance(e.get("exposure"), dict) else None
        add(
            "info",
            "revoked_key",
            f"key {e['kid']} (thumbprint {e['thumbprint']}) {revocation.describe(e)}"
            + (f"; its tokens could be valid until {until}" if until else ""),
            e["kid"],
        )
    for r in keyset.records:
        hit = revoked.match_jwk(dict(r["jwk"], kid=r["kid"]))
        if hit is not None:
            add(
                "error",
                "revoked_key_present",
                f"key {r['kid']} is in the key file but was {revocation.describe(hit)} (as kid {hit['kid']}): "
                f"run prisme-keys revoke {r['kid']}",
                r["kid"],
            )


def _dates_and_rotation(records: list[KeyRecord], settings: Any, now: datetime, add: Any) -> None:
    policy = rotation.Policy.from_settings(settings)
    signing = rotation.signing_record(records, now)
    plan = rotation.plan_rotation(records, policy, now)
    if plan.due:
        since = f" since {clock.iso(plan.next_rotation)}" if plan.next_rotation else ""
        add(
            "warning",
            "rotation_overdue",
            f"signing key {plan.signing_kid} is due for rotation{since}; run prisme-keys rotate",
            plan.signing_kid,
        )
    elif plan.next_rotation:
        add("info", "rotation", f"next rotation {clock.iso(plan.next_rotation)}")
    for r in records:
        kid = r["kid"]
        st = rotation.state(r, records, now)
        try:
            c, a, ro, e = (rotation.t(r, n) for n in ("createdAt", "activatesAt", "rotatesAt", "expiresAt"))
        except (ValueError, TypeError):
            add("error", "bad_dates", f"key {kid}: activatesAt is not an ISO-8601 time", kid)
            continue
        if not c <= a <= ro <= e:
            add(
                "warning",
                "dates_out_of_order",
                f"key {kid}: expected createdAt <= activatesAt <= rotatesAt <= expiresAt",
                kid,
            )
        if st == "expired":
            add("warning", "expired_key", f"key {kid} expired {r['expiresAt']}; run prisme-keys prune", kid)
        if r is signing and now >= e:
            add(
                "error",
                "signing_key_expired",
                f"signing key {kid} is past its expiresAt ({r['expiresAt']}): "
                "tokens it signs may be rejected by tidy verifiers; run prisme-keys rotate",
                kid,
            )
        if st == "next":
            add("info", "next_key", f"key {kid} is published and signs from {clock.iso(a)}", kid)
        if (r is signing or st == "next") and not (jwk_rules.has_private(r["jwk"]) or "enc" in r["jwk"]):
            add(
                "error",
                "no_private_key",
                f"{st} key {kid} has no private members: mint and the gateway cannot sign with it",
                kid,
            )


def _future(records: list[KeyRecord], settings: Any, real_now: datetime, add: Any) -> None:
    """Keys dated in the future of the real clock (a ``--now`` ahead of it, a host clock far ahead)."""
    lead = rotation.Policy.from_settings(settings).lead
    skew = timedelta(seconds=clock.CLOCK_SKEW)
    for r in records:
        kid = r["kid"]
        try:
            c, a = rotation.t(r, "createdAt"), rotation.t(r, "activatesAt")
        except (ValueError, TypeError):
            continue  # reported as bad_dates
        if c > real_now + skew:
            add(
                "warning",
                "created_in_future",
                f"key {kid} was created {clock.span((c - real_now).total_seconds())} in the future of the real "
                f"clock ({r['createdAt']}); it would block rotation until then: prisme-keys rotate replaces it",
                kid,
            )
        elif a > clock.shift(real_now, skew + timedelta(seconds=lead)):
            add(
                "warning",
                "activates_in_future",
                f"key {kid} activates {clock.span((a - real_now).total_seconds())} from now ({r['activatesAt']}), "
                "further ahead than the publication lead",
                kid,
            )


def _strength(records: list[KeyRecord], add: Any, progress: Callable[[int, int | None], None] | None = None) -> None:
    for i, r in enumerate(records):
        if progress is not None:
            progress(i, len(records))
        jwk, kid = r["jwk"], r["kid"]
        bits = jwk_rules.key_bits(jwk)
        if bits < jwk_rules.MIN_BITS:
            add("error", "weak_key", f"key {kid} has {bits} bits; at least {jwk_rules.MIN_BITS} are required", kid)
        try:
            e = jwk_rules.b64_to_int(jwk["e"])
        except (ValueError, KeyError, TypeError):
            e = 0
        if e != 65537:
            sev = "error" if e < 65537 or e % 2 == 0 else "warning"
            add(sev, "weak_exponent", f"key {kid} has public exponent {e} (expected 65537)", kid)
        if jwk.get("alg") not in jwk_rules.SUPPORTED_ALGS:
            add(
                "error",
                "bad_alg",
                f"key {kid} has alg {shown(jwk.get('alg'))}; expected one of " + ", ".join(jwk_rules.SUPPORTED_ALGS),
                kid,
            )
        if jwk.get("use", "sig") != "sig":
            add("warning", "bad_use", f'key {kid} has use {shown(jwk.get("use"))}, not "sig"', kid)
        bad = jwk_rules.non_canonical_members(jwk)
        if bad:
            add(
                "warning",
                "non_canonical",
                f"key {kid} is not stored in canonical form: "
                + "; ".join(f"{m} {p}" for m, p in bad.items())
                + " (integers must be minimal, unpadded base64url, RFC 7518 section 2; export and serve "
                "publish the key as stored and verifiers may reject it)",
                kid,
            )
        reason = jwk_rules.compromised_reason(jwk)
        if reason:
            add(
                "error",
                "compromised_key",
                f"key {kid} is publicly known ({reason}): anyone can sign with it; rotate now and remove it",
                kid,
            )
        if jwk_rules.has_private(jwk):
            _consistent(jwk, kid, add)
    if progress is not None:
        progress(len(records), len(records))


def _consistent(jwk: RSAJwk, kid: str, add: Any) -> None:
    """Validate a private key fully (OpenSSL's RSA key check, primality tests included), then
    cross-check it with python-jose, an independent JOSE implementation (:func:`_jose_round_trip`)."""
    try:
        jwk_rules.private_key_from_jwk(jwk)
    except ValueError as exc:  # the only error private_key_from_jwk raises for a bad key
        add("error", "bad_private_key", f"key {kid}: private members are inconsistent ({exc})", kid)
        return
    _jose_round_trip(jwk, kid, add)


def _jose_round_trip(jwk: RSAJwk, kid: str, add: Any) -> None:
    """Sign and verify both ways between this tool's fast path and python-jose (RFC 7518 section 3.3).

    ``mint`` signs and ``verify`` checks straight with ``cryptography``, the key trusted as the
    key file holds it; python-jose is given the JWKs themselves (the private JWK to sign, the
    public JWK to verify, the algorithm named explicitly). A signature one side makes that the
    other rejects is an error (``jose_round_trip``): tokens minted with this key would be refused.
    """
    from jose import jwk as jose_jwk

    alg = str(jwk["alg"]) if jwk.get("alg") in jwk_rules.SUPPORTED_ALGS else "RS256"
    message = f"prisme-keys doctor {kid}".encode()
    ours = jwk_rules.rsa_signer(jwk_rules.private_key_from_jwk(jwk, trusted=True), alg)(message)
    verify_here = jwk_rules.rsa_verifier(jwk_rules.public_key_from_jwk(jwk), alg)
    try:
        jose_accepts = jose_jwk.construct(jwk_rules.public_jwk(jwk), alg).verify(message, ours)
        theirs = jose_jwk.construct(jwk, alg).sign(message)
    except Exception as exc:  # the python-jose boundary: its backends raise JWKError, ValueError,
        # TypeError or binascii errors on a key they cannot use, and that is this check's verdict. Only
        # python-jose runs in this block. Its message may quote the key: the type only.
        add("error", "jose_round_trip", f"key {kid}: python-jose cannot use it ({type(exc).__name__})", kid)
        return
    we_accept = verify_here(message, theirs)
    if not (jose_accepts and we_accept):
        side = "python-jose rejects this tool's signature" if not jose_accepts else "python-jose's signature fails here"
        add("error", "jose_round_trip", f"key {kid}: {alg} round trip failed: {side}", kid)


def _encryption(keyset: Any, kf: Any, settings: Any, rep: Report, add: Any) -> None:
    from prisme_keys.store import encryption

    hdr = encryption.header(keyset)
    enc_recs = [r for r in keyset.records if "enc" in r["jwk"]]
    plain = [r for r in keyset.records if encryption.has_plain_private(r["jwk"])]
    if hdr is None:
        for r in enc_recs:
            add(
                "error",
                "enc_without_header",
                f"key {r['kid']} is encrypted but the file has no encryption header",
                r["kid"],
            )
        if plain:
            add(
                "info",
                "encryption",
                "not encrypted: private members are stored in clear text (protect them with prisme-keys encrypt)",
            )
        return
    rep.encrypted = True
    kdf = hdr.get("kdf") if isinstance(hdr, dict) else None
    if not isinstance(kdf, dict):
        add("error", "encryption_header", "the encryption header is malformed")
        return
    params = ", ".join(f"{k}={v}" for k, v in kdf.items() if k not in ("salt", "name"))
    add("info", "encryption", f"encrypted: {kdf.get('name')} ({params}), {hdr.get('cipher')}")
    if kdf.get("name") == "argon2id":
        weak = kdf.get("memory_cost", 0) < 19456 or kdf.get("iterations", 0) < 2
    elif kdf.get("name") == "scrypt":
        weak = kdf.get("n", 0) < 2**15
    else:
        weak = False
        add("error", "encryption_header", f"unknown KDF {shown(kdf.get('name'))}")
    if weak:
        add(
            "warning",
            "weak_kdf",
            Worded("the KDF parameters are below OWASP's minimums", hint="rekey_weak"),
        )
    for r in plain:
        add(
            "error",
            "plaintext_in_encrypted_file",
            Worded(
                "key {kid} has private members in clear text in an encrypted file", hint="rekey_plain", kid=r["kid"]
            ),
            r["kid"],
        )
    source = encryption.PassphraseSource.from_settings(settings, interactive=False)
    if not source.available():
        add(
            "info",
            "passphrase",
            Worded("no passphrase given: encrypted records were not authenticated", hint="passphrase_to_check"),
        )
        return
    try:
        key = encryption.unlock(hdr, source.get("doctor"), kf.path, source.derived_keys)
    except PrismeKeysError as exc:
        if exc.code != "passphrase_file_permissions":  # already reported by _passphrase_file
            add("error", exc.code, exc.message)
        return
    for r in enc_recs:
        try:
            opened = encryption.open_record(r, key, kf.path)
        except PrismeKeysError as exc:
            add("error", exc.code, exc.message, r["kid"])
            continue
        _consistent(opened["jwk"], r["kid"], add)
    add("info", "passphrase", f"passphrase verified; {len(enc_recs)} encrypted key(s) authenticated")
