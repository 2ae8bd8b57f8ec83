"""Tokens: mint, decode and verify compact JWS tokens (RFC 7515) carrying JWT claims (RFC 7519).

* :func:`mint` signs tokens the way the reference gateway's anonymous login does
  (header ``{"typ":"jwt","alg","kid"}``, claims ``{exp, iat, sub, iss, aud, prismeaiSessionId}``).
* :func:`decode` parses a token without any cryptography (it imports neither ``cryptography``
  nor ``python-jose``) and labels the result UNVERIFIED.
* :func:`verify` checks a token with the strictness of the gateway and more: the algorithm
  comes from an allow-list (never from the token), the key is chosen by us (kid, ``kty``,
  ``use``, ``alg``), the signature is checked by python-jose's RSA key (RSASSA-PKCS1-v1_5,
  RFC 7518 section 3.3, cryptography backend), then the registered claims (RFC 7519 section 4.1).

How python-jose is used: only its key objects (``jose.jwk.construct(key, alg)``, the
cryptography backend's ``RSAKey``) sign and verify. Its high-level ``jws``/``jwt`` functions
are not used for verification because they do not pick keys by kid, trust an
``algorithms=None`` list, and would parse the token a second time: here the token is parsed
once, the algorithm comes from our allow-list and is bound into the key object, and the key
is chosen by us. Key objects are built once per process (per key and algorithm) and cached.

Size cap: a token (after trimming whitespace and a ``Bearer`` prefix) is at most
:data:`MAX_TOKEN_BYTES` (64 KiB); larger input is a malformed token (exit 5).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Iterable, Iterator

from . import clock
from .errors import (ClaimsRejected, FetchError, MalformedTokenError, NoUsableKey, PrismeKeysError,
                     SignatureRejected, UsageError)

#: Largest accepted token, in bytes (64 KiB), after trimming whitespace and ``Bearer``.
MAX_TOKEN_BYTES = 64 * 1024
#: The signature algorithms this tool can verify (RSASSA-PKCS1-v1_5, RFC 7518 section 3.3).
RSA_ALGS = ("RS256", "RS384", "RS512")
#: Smallest RSA key accepted for verification, bits (RFC 7518 section 3.3).
MIN_VERIFY_BITS = 2048
#: Time claims shown by :func:`decode` and type-checked by :func:`verify`.
TIME_CLAIMS = ("exp", "nbf", "iat")

_SEGMENT_NAMES = ("header", "payload", "signature")
_B64URL_RE = re.compile(r"[A-Za-z0-9_-]*")
_SPACE_RE = re.compile(r"\s")
_B64_INDEX = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")}
_BEARER_RE = re.compile(r"^bearer(?:\s+|$)", re.IGNORECASE)


# --------------------------------------------------------------------------- parsing

def clean_token(text: str | bytes) -> str:
    """Trim surrounding whitespace and one ``Bearer`` prefix (any case).

    Args:
        text: the token as typed, pasted or read from stdin.

    Returns:
        The bare compact token.

    Raises:
        MalformedTokenError: empty, larger than :data:`MAX_TOKEN_BYTES`, not UTF-8, or
            whitespace inside the token.
    """
    if isinstance(text, bytes):
        if len(text) > MAX_TOKEN_BYTES + 4096:
            raise _too_large(len(text))
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedTokenError("token is not UTF-8 text") from None
    s = text.strip()
    m = _BEARER_RE.match(s)
    if m:
        s = s[m.end():]
    if not s:
        raise MalformedTokenError("empty token" + (" after 'Bearer'" if m else ""))
    if len(s) > MAX_TOKEN_BYTES:
        raise _too_large(len(s.encode("utf-8")))
    ws = _SPACE_RE.search(s)
    if ws:
        seg = s.count(".", 0, ws.start())
        name = _SEGMENT_NAMES[seg] if seg < 3 else f"segment {seg + 1}"
        raise MalformedTokenError(f"token contains whitespace inside segment {seg + 1} ({name})")
    return s


def _too_large(n: int) -> MalformedTokenError:
    return MalformedTokenError(f"token is {n} bytes; the limit is {MAX_TOKEN_BYTES} bytes (64 KiB)",
                               code="token_too_large")


def _b64(seg: str, index: int) -> bytes:
    if not _B64URL_RE.fullmatch(seg):
        bad = next(c for c in seg if not (c.isalnum() and c.isascii()) and c not in "-_")
        extra = " (padding '=' is not allowed in a compact JWS)" if bad == "=" else ""
        raise MalformedTokenError(
            f"segment {index + 1} ({_SEGMENT_NAMES[index]}) is not base64url: character {bad!r}{extra}")
    rem = len(seg) % 4
    if rem == 1:
        raise MalformedTokenError(
            f"segment {index + 1} ({_SEGMENT_NAMES[index]}) is not base64url: impossible length {len(seg)}")
    if rem and _B64_INDEX[seg[-1]] & (0x0F if rem == 2 else 0x03):
        # RFC 4648 section 3.5: the unused bits of the last character must be zero; otherwise
        # several spellings decode to the same bytes and a token would be malleable.
        raise MalformedTokenError(
            f"segment {index + 1} ({_SEGMENT_NAMES[index]}) is not canonical base64url: "
            f"its last character {seg[-1]!r} carries non-zero padding bits")
    try:
        return base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4))
    except (binascii.Error, ValueError):  # pragma: no cover - excluded by the checks above
        raise MalformedTokenError(f"segment {index + 1} ({_SEGMENT_NAMES[index]}) is not base64url") from None


def _no_dupes(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate member {k!r}")
        out[k] = v
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(object_pairs_hook=_no_dupes, parse_constant=_no_constants)


def _json_object(raw: bytes, index: int) -> dict[str, Any]:
    what = _SEGMENT_NAMES[index]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedTokenError(f"segment {index + 1} ({what}) is not UTF-8") from None
    try:
        doc = _DECODER.decode(text)
    except ValueError as exc:
        raise MalformedTokenError(f"segment {index + 1} ({what}) is not JSON: {exc}") from None
    except RecursionError:
        raise MalformedTokenError(f"segment {index + 1} ({what}) is nested too deeply") from None
    if not isinstance(doc, dict):
        raise MalformedTokenError(f"segment {index + 1} ({what}) is JSON but not an object")
    return doc


def split(token: str) -> tuple[str, str, str]:
    """Split a cleaned compact token into its three segments.

    Raises:
        MalformedTokenError: a five-segment JWE (not supported) or not three segments.
    """
    parts = token.split(".")
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    if len(parts) == 5:
        raise MalformedTokenError("token has 5 segments: an encrypted JWE, which is not supported "
                                  "(only signed tokens, compact JWS with 3 segments)", code="jwe_not_supported")
    raise MalformedTokenError(f"token has {len(parts)} segment{'s' if len(parts) != 1 else ''}; "
                              "a compact JWS has 3 separated by dots")


def parse(token: str | bytes) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    """Parse a token (no signature check): ``(header, claims, signature_bytes)``.

    Accepts surrounding whitespace and a ``Bearer`` prefix (see :func:`clean_token`).

    Raises:
        MalformedTokenError: naming the problem: size, segment count, base64url, UTF-8, JSON.
    """
    h, p, s = split(clean_token(token))
    header = _json_object(_b64(h, 0), 0)
    claims = _json_object(_b64(p, 1), 1)
    return header, claims, _b64(s, 2)


def is_numeric_date(value: Any) -> bool:
    """True for a NumericDate (RFC 7519 section 2): an int or finite float, never a bool or a string."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and value == value and value not in (float("inf"), float("-inf"))


def printable(text: str) -> str:
    """``text`` with control characters, ANSI escapes and other non-printable characters escaped
    as in ``repr`` (``\\x1b``, ``\\n``, ``\\u202e``), for human output on a terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _show(value: Any, limit: int = 60) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    except (RecursionError, ValueError):
        text = f"<{type(value).__name__} nested too deeply>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- decode

@dataclass
class Decoded:
    """Result of :func:`decode` (nothing here is verified).

    Attributes:
        header: the JOSE header (dict).
        claims: the JWT claims (dict).
        signature_bytes: length of the decoded signature, bytes.
        times: ``{claim: {value, iso, relative}}`` for ``exp``, ``nbf``, ``iat`` holding NumericDates.
        warnings: one line each: ``alg`` none, a missing kid, an expired token, ill-typed time claims.
    """

    header: dict[str, Any]
    claims: dict[str, Any]
    signature_bytes: int
    times: dict[str, dict[str, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The ``decode --json`` document."""
        return {"verified": False, "label": "UNVERIFIED", "header": self.header, "claims": self.claims,
                "times": self.times, "signature_bytes": self.signature_bytes, "warnings": self.warnings}


def decode(token: str | bytes, now: datetime | None = None) -> Decoded:
    """Decode a token WITHOUT verifying it: header, claims and each time claim as ISO-8601 and relative.

    Imports no cryptography. Accepts whitespace around the token and a ``Bearer`` prefix.

    Args:
        token: compact JWS (at most :data:`MAX_TOKEN_BYTES`).
        now: reference time for "in 5 minutes" / "expired 3 days ago" (default :func:`clock.now`).

    Raises:
        MalformedTokenError: see :func:`parse`.
    """
    now = now if now is not None else clock.now()
    header, claims, sig = parse(token)
    out = Decoded(header, claims, len(sig))
    alg = header.get("alg")
    if isinstance(alg, str) and alg.lower() == "none":
        out.warnings.append(f"alg is {alg!r}: the token is unsigned; verify always rejects it")
    elif "alg" not in header:
        out.warnings.append("the header has no alg")
    elif alg not in RSA_ALGS:
        out.warnings.append(f"alg {_show(alg)} is not an RSA signature algorithm (RS256/RS384/RS512); "
                            "verify rejects it")
    if "kid" not in header:
        out.warnings.append("the header has no kid: a verifier must guess the key")
    for name in TIME_CLAIMS:
        if name not in claims:
            continue
        value = claims[name]
        if not is_numeric_date(value):
            out.warnings.append(f"claim {name!r} is not a NumericDate (got {_show(value)}); verify rejects it")
            continue
        try:
            dt = clock.from_numeric_date(value)
        except (OverflowError, OSError, ValueError):
            out.warnings.append(f"claim {name!r} is out of range ({value})")
            continue
        rel = clock.humanize(dt, now)
        if name == "exp" and dt <= now:
            rel = f"expired {rel}"
            out.warnings.append(f"the token {rel}")
        elif name == "exp":
            rel = f"expires {rel}"
        elif name == "nbf":
            rel = f"valid from {rel}" if dt > now else f"valid since {rel}"
        else:
            rel = f"issued {rel}"
        out.times[name] = {"value": value, "iso": clock.iso(dt), "relative": rel}
    return out


# --------------------------------------------------------------------------- keys for verification

@dataclass
class KeyEntry:
    """A public RSA key able to verify signatures.

    Attributes:
        kid: key id, or ``None``.
        alg: the JWK's ``alg``, or ``None`` (then any allowed RS* algorithm).
        bits: modulus size in bits.
        key: the ``cryptography`` ``RSAPublicKey`` (built once per process, cached).
    """

    kid: str | None
    alg: str | None
    bits: int
    key: Any
    _verifiers: dict[str, Any] = field(default_factory=dict, repr=False)

    def verifier(self, alg: str) -> Any:
        """python-jose's RSA key object for ``alg`` (RS256/RS384/RS512), built once and cached."""
        v = self._verifiers.get(alg)
        if v is None:
            v = self._verifiers[alg] = jose_key(self.key, alg)
        return v


_PUBKEY_CACHE: dict[tuple[str, str], tuple[Any, int]] = {}


def _public_key(n: str, e: str) -> tuple[Any, int]:
    hit = _PUBKEY_CACHE.get((n, e))
    if hit is None:
        from .keys import public_key_from_jwk

        key = public_key_from_jwk({"n": n, "e": e})
        hit = (key, key.key_size)
        if len(_PUBKEY_CACHE) > 256:
            _PUBKEY_CACHE.clear()
        _PUBKEY_CACHE[(n, e)] = hit
    return hit


_PRIVATE = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")


class KeyRing:
    """The usable RSA signing keys of a JWK Set (RFC 7517 section 5).

    Keys that cannot serve are skipped with one warning each and never break the rest:
    other key types, ``use`` other than ``sig``, ``key_ops`` without ``verify``, an ``alg``
    that is not RS256/RS384/RS512, missing ``n``/``e`` (certificate-only keys), malformed
    members. Padded ``n``/``e`` are accepted with a warning.

    Attributes:
        entries: usable keys, in set order.
        kids: every kid present in the set (usable or not), in order.
        skipped: ``{kid: reason}`` for skipped keys that had a kid.
        warnings: one line per skipped or doubtful key.
        source: description of where the set came from.
    """

    def __init__(self, doc: Any, source: str = "the key set") -> None:
        self.source = source
        self.entries: list[KeyEntry] = []
        self.kids: list[str] = []
        self.skipped: dict[str, str] = {}
        self.warnings: list[str] = []
        keys_ = doc.get("keys") if isinstance(doc, dict) else None
        if not isinstance(keys_, list):
            raise FetchError(f"{source} is not a JWK Set (no \"keys\" array)", code="not_a_jwk_set")
        for i, jwk in enumerate(keys_):
            self._add(i, jwk)

    def _add(self, i: int, jwk: Any) -> None:
        if not isinstance(jwk, dict):
            self.warnings.append(f"skipping key #{i + 1} of {self.source}: not a JSON object")
            return
        kid = jwk.get("kid")
        if kid is not None and not isinstance(kid, str):
            self.warnings.append(f"skipping key #{i + 1} of {self.source}: kid is not a string")
            return
        label = f"key {kid!r}" if kid is not None else f"key #{i + 1} (no kid)"
        if kid is not None:
            self.kids.append(kid)
        reason = self._unusable(jwk)
        if reason is None:
            n, e = jwk["n"], jwk["e"]
            if n.endswith("=") or e.endswith("="):
                self.warnings.append(f"{label} of {self.source}: n/e carry '=' padding (RFC 7518 section 6.3.1 "
                                     "wants unpadded base64url); accepted")
            try:
                key, bits = _public_key(n, e)
            except ValueError as exc:
                reason = str(exc)
            else:
                self.entries.append(KeyEntry(kid, jwk.get("alg"), bits, key))
        if reason is not None:
            self.warnings.append(f"skipping {label} of {self.source}: {reason}")
            if kid is not None:
                self.skipped.setdefault(kid, reason)

    @staticmethod
    def _unusable(jwk: dict[str, Any]) -> str | None:
        kty = jwk.get("kty")
        if kty != "RSA":
            return f"kty {_show(kty)} is not RSA" if kty is not None else "no kty"
        use = jwk.get("use")
        if use is not None and use != "sig":
            return f"use {_show(use)} is not \"sig\" (an encryption key)"
        ops = jwk.get("key_ops")
        if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
            return f"key_ops {_show(ops)} does not allow \"verify\""
        alg = jwk.get("alg")
        if alg is not None and alg not in RSA_ALGS:
            return f"alg {_show(alg)} is not RS256, RS384 or RS512"
        if "n" not in jwk or "e" not in jwk:
            if "x5c" in jwk or "x5u" in jwk:
                return "certificate-only key (x5c without n and e) is not supported"
            return "missing " + " and ".join(m for m in ("n", "e") if m not in jwk)
        for m in ("n", "e"):
            v = jwk[m]
            if not isinstance(v, str) or not v.rstrip("="):
                return f"member {m!r} is not a base64url string"
            if not _B64URL_RE.fullmatch(v.rstrip("=")) or len(v.rstrip("=")) % 4 == 1:
                return f"member {m!r} is not base64url"
        return None

    def private_members(self, doc: Any) -> list[str]:
        """Kids (or ``#index``) of keys in ``doc`` that publish private members."""
        out = []
        for i, jwk in enumerate(doc.get("keys", []) if isinstance(doc, dict) else []):
            if isinstance(jwk, dict) and any(m in jwk for m in _PRIVATE):
                out.append(str(jwk.get("kid", f"#{i + 1}")))
        return out


class KeySource:
    """Where verification keys come from. Subclasses: :class:`StaticKeySource`, ``jwks_client.UrlKeySource``.

    Attributes:
        description: e.g. ``key file /path``, ``JWKS file x.json``, ``https://.../oidc/jwks``.
    """

    description = "the key set"

    def ring(self) -> KeyRing:
        """The current :class:`KeyRing`."""
        raise NotImplementedError

    def refresh(self) -> str | None:
        """Try to reload the set after an unknown kid.

        Returns:
            ``None`` when a new set was loaded, else a short reason why not (for the error message).
        """
        return "the key set is local"

    def take_warnings(self) -> list[str]:
        """Warnings not yet reported (each reported once)."""
        return []


class StaticKeySource(KeySource):
    """A key set known in advance (the key file's public keys, a JWKS file)."""

    def __init__(self, doc: Any, description: str) -> None:
        self.description = description
        self._ring = KeyRing(doc, description)
        self._pending = list(self._ring.warnings)
        leaked = self._ring.private_members(doc)
        if leaked and not description.startswith("key file"):
            self._pending.append(f"{description} publishes private key members (kids: {', '.join(leaked)}); "
                                 "a public JWKS must not")

    def ring(self) -> KeyRing:
        return self._ring

    def take_warnings(self) -> list[str]:
        out, self._pending = self._pending, []
        return out


def keyfile_source(settings: Any) -> StaticKeySource:
    """The public keys of the key file named by ``settings``.

    Raises:
        KeyFileError: missing, corrupt or unsafe key file.
    """
    from . import lifecycle

    records = lifecycle.load_records(settings)
    return StaticKeySource(lifecycle.public_jwks(records), f"key file {settings.key_file}")


def jwks_file_source(path: str) -> StaticKeySource:
    """A JWK Set read from a file (``-`` reads stdin).

    Raises:
        FetchError: unreadable file, not JSON, or not a JWK Set (exit 9).
    """
    import sys

    try:
        raw = sys.stdin.buffer.read() if path == "-" else open(path, "rb").read()
    except OSError as exc:
        raise FetchError(f"cannot read JWKS file {path}: {exc.strerror or exc}") from None
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FetchError(f"JWKS file {path} is not JSON: {exc}", code="not_json") from None
    except RecursionError:
        raise FetchError(f"JWKS file {path} is not JSON: nested too deeply", code="not_json") from None
    if isinstance(doc, dict) and "kty" in doc and "keys" not in doc:
        raise FetchError(f"JWKS file {path} holds a single JWK, not a JWK Set; wrap it as {{\"keys\": [...]}}",
                         code="not_a_jwk_set")
    return StaticKeySource(doc, f"JWKS file {path}")


# --------------------------------------------------------------------------- verify

@dataclass(frozen=True)
class VerifyOptions:
    """What :func:`verify` requires.

    Attributes:
        algorithms: allow-list of ``alg`` values (subset of RS256/RS384/RS512).
        issuer: expected ``iss``; ``None`` = not checked.
        audience: expected ``aud`` (the token's ``aud`` may be a list holding it); ``None`` = not checked.
        leeway: seconds of clock skew tolerated for ``exp``, ``nbf``, ``iat``.
        require_exp: ``exp`` must be present (default true).
        require: claim names that must be present (e.g. ``prismeaiSessionId``).
    """

    algorithms: tuple[str, ...] = ("RS256",)
    issuer: str | None = None
    audience: str | None = None
    leeway: float = 0
    require_exp: bool = True
    require: tuple[str, ...] = ()


def parse_algorithms(text: str) -> tuple[str, ...]:
    """Parse ``--algorithms RS256,RS384``.

    Raises:
        UsageError: an empty list, or an algorithm other than RS256/RS384/RS512 (HS*, ES*,
            PS* and ``none`` can never be allowed).
    """
    algs = tuple(a.strip() for a in text.split(",") if a.strip())
    if not algs:
        raise UsageError("--algorithms: give at least one of RS256, RS384, RS512")
    for a in algs:
        if a not in RSA_ALGS:
            raise UsageError(f"--algorithms: {a!r} is not supported; allowed: RS256, RS384, RS512 "
                             "(HMAC, EC, PSS and none are never accepted)")
    return algs


@dataclass
class VerifyResult:
    """A verified token.

    Attributes:
        kid: kid of the key that verified it (``None`` for a kid-less key).
        header, claims: the token's header and claims.
        issuer_checked, audience_checked: whether ``iss`` / ``aud`` were compared.
    """

    kid: str | None
    header: dict[str, Any]
    claims: dict[str, Any]
    issuer_checked: bool = True
    audience_checked: bool = True
    valid: bool = True

    def summary(self, now: datetime) -> str:
        """The human line ``valid: kid K, sub S, expires in ...``; non-printable characters escaped."""
        exp = self.claims.get("exp")
        try:
            expires = f"expires {clock.humanize(clock.from_numeric_date(exp), now)}" if exp is not None else "no exp"
        except (OverflowError, OSError, ValueError):  # excluded by check_claims; never a traceback
            expires = f"expires at {printable(str(exp))}"
        parts = [f"valid: kid {printable(str(self.kid))}", f"sub {printable(str(self.claims.get('sub', '(none)')))}",
                 expires]
        if not self.issuer_checked:
            parts.append("issuer not checked")
        if not self.audience_checked:
            parts.append("audience not checked")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """The ``verify --json`` document ``{valid, kid, header, claims}``."""
        return {"valid": True, "kid": self.kid, "header": self.header, "claims": self.claims,
                "issuer_checked": self.issuer_checked, "audience_checked": self.audience_checked}


def jose_key(key: Any, alg: str) -> Any:
    """python-jose's key object (cryptography backend) for a ``cryptography`` RSA key and ``alg``.

    Its ``sign(msg) -> bytes`` and ``verify(msg, sig) -> bool`` do RSASSA-PKCS1-v1_5 with the
    hash of ``alg`` (RFC 7518 section 3.3); the algorithm is fixed when the object is built.
    """
    from jose import jwk as jose_jwk

    return jose_jwk.construct(key, alg)


_HEADER_CACHE: dict[str, dict[str, Any]] = {}


def _header(seg: str) -> dict[str, Any]:
    h = _HEADER_CACHE.get(seg)
    if h is None:
        h = _json_object(_b64(seg, 0), 0)
        if len(_HEADER_CACHE) >= 256:
            _HEADER_CACHE.clear()
        _HEADER_CACHE[seg] = h
    return h


def _check_header(header: dict[str, Any], options: VerifyOptions) -> str:
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise SignatureRejected("the header has no alg" if alg is None else "the header's alg is not a string")
    if alg.lower() == "none":
        raise SignatureRejected(f"alg {alg!r}: unsigned tokens are never accepted", code="alg_none")
    if alg not in options.algorithms:
        extra = ""
        if alg[:2].upper() in ("HS", "ES", "PS", "ED"):
            extra = "; HMAC, EC, EdDSA and PSS tokens are never accepted"
        elif alg in RSA_ALGS:
            extra = "; widen the list with --algorithms"
        raise SignatureRejected(f"algorithm {_show(alg)} is not allowed (allowed: {', '.join(options.algorithms)})"
                                f"{extra}", code="alg_not_allowed")
    crit = header.get("crit")
    if crit is not None:
        raise SignatureRejected(f"the header marks {_show(crit)} as critical (crit); no extension is supported")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise NoUsableKey("the header's kid is not a string")
    return alg


def _candidates(ring: KeyRing, kid: str | None, alg: str) -> list[KeyEntry]:
    if not ring.entries:
        raise NoUsableKey(f"{ring.source} has no usable RSA signing key"
                          + (f" ({len(ring.warnings)} skipped)" if ring.warnings else ""))
    if kid is None:
        cands = [k for k in ring.entries if k.alg is None or k.alg == alg]
        if len(cands) == 1:
            return cands
        raise NoUsableKey(f"the token has no kid and {ring.source} has {len(cands)} candidate keys for {alg}; "
                          "cannot choose" if cands else
                          f"the token has no kid and {ring.source} has no key for {alg}")
    same = [k for k in ring.entries if k.kid == kid]
    if not same:
        return []
    cands = [k for k in same if k.alg is None or k.alg == alg]
    if not cands:
        raise SignatureRejected(f"the token's alg {alg} does not match key {kid!r} (alg "
                                f"{', '.join(sorted({str(k.alg) for k in same}))})", code="alg_key_mismatch")
    return cands


def _unknown_kid(ring: KeyRing, kid: str, why: str | None) -> NoUsableKey:
    if kid in ring.skipped:
        return NoUsableKey(f"key {kid!r} in {ring.source} cannot verify signatures: {ring.skipped[kid]}")
    present = ", ".join(repr(k) for k in ring.kids) or "none"
    return NoUsableKey(f"unknown kid {kid!r}; kids in {ring.source}: {present}" + (f" ({why})" if why else ""),
                       code="unknown_kid")


def _check_time(claims: dict[str, Any], name: str) -> float | None:
    if name not in claims:
        return None
    v = claims[name]
    if not is_numeric_date(v):
        raise ClaimsRejected(f"claim {name!r} must be a NumericDate (seconds since the epoch as a number), "
                             f"got {type(v).__name__} {_show(v)}", code="claim_type")
    if not _MIN_NUMERIC_DATE <= v < _MAX_NUMERIC_DATE:
        raise ClaimsRejected(f"claim {name!r} is out of range: {_show(v)} is not a date between the years "
                             "1 and 9999", code="claim_type")
    return float(v)


#: NumericDates of 0001-01-01T00:00:00Z and 10000-01-01T00:00:00Z: the range a date can be shown in.
_MIN_NUMERIC_DATE, _MAX_NUMERIC_DATE = -62135596800, 253402300800


def _iso(ts: float) -> str:
    try:
        return clock.iso(clock.from_numeric_date(ts))
    except (OverflowError, OSError, ValueError):
        return str(ts)


def _rel(ts: float, now: datetime) -> str:
    try:
        return clock.humanize(clock.from_numeric_date(ts), now)
    except (OverflowError, OSError, ValueError):
        return "far away"


def check_claims(claims: dict[str, Any], options: VerifyOptions, now: datetime) -> tuple[bool, bool]:
    """Check the registered claims (RFC 7519 section 4.1) at ``now``.

    Returns:
        ``(issuer_checked, audience_checked)``.

    Raises:
        ClaimsRejected: naming the claim: ill-typed or missing time claim, expired, not yet
            valid or issued in the future (mentioning ``--leeway``), issuer/audience missing or
            different (showing expected and received), a required claim missing.
    """
    ts = now.timestamp()
    lw = options.leeway
    exp = _check_time(claims, "exp")
    nbf = _check_time(claims, "nbf")
    iat = _check_time(claims, "iat")
    if exp is None and options.require_exp:
        raise ClaimsRejected("claim 'exp' is missing (a token must expire; --no-exp-required accepts it)",
                             code="claim_missing")
    if exp is not None and ts >= exp + lw:
        raise ClaimsRejected(f"token expired {_rel(exp, now)} (exp {_iso(exp)})"
                             + (f", beyond the leeway of {lw:g} s" if lw else ""), code="expired")
    if nbf is not None and nbf > ts + lw:
        raise ClaimsRejected(f"token not valid yet: nbf {_iso(nbf)} is {_rel(nbf, now)[3:]} ahead; "
                             "if clocks differ, allow it with --leeway SECONDS", code="not_yet_valid")
    if iat is not None and iat > ts + lw:
        raise ClaimsRejected(f"token issued in the future: iat {_iso(iat)} is {_rel(iat, now)[3:]} ahead; "
                             "if clocks differ, allow it with --leeway SECONDS", code="issued_in_future")
    if options.issuer is not None:
        if "iss" not in claims:
            raise ClaimsRejected(f"claim 'iss' is missing; expected {options.issuer!r}", code="issuer")
        if claims["iss"] != options.issuer:
            raise ClaimsRejected(f"issuer mismatch: expected {options.issuer!r}, received {_show(claims['iss'])}",
                                 code="issuer")
    if options.audience is not None:
        if "aud" not in claims:
            raise ClaimsRejected(f"claim 'aud' is missing; expected {options.audience!r}", code="audience")
        aud = claims["aud"]
        ok = aud == options.audience if isinstance(aud, str) else (
            isinstance(aud, list) and all(isinstance(a, str) for a in aud) and options.audience in aud)
        if not ok:
            raise ClaimsRejected(f"audience mismatch: expected {options.audience!r}, received {_show(aud)}",
                                 code="audience")
    for name in options.require:
        if name not in claims:
            raise ClaimsRejected(f"required claim {name!r} is missing", code="claim_missing")
    return options.issuer is not None, options.audience is not None


def verify(token: str | bytes, source: KeySource, options: VerifyOptions | None = None,
           now: datetime | None = None) -> VerifyResult:
    """Verify a token: algorithm allow-list, our own key choice, RSA signature, then claims.

    Steps: parse (RFC 7515 compact serialization, size cap) -> header ``alg`` must be in
    ``options.algorithms`` (``none`` in any spelling, HS*, ES*, PS* always refused) -> the
    key is chosen by kid among usable RSA ``sig`` keys whose ``alg`` is absent or equal ->
    unknown kid: ``source.refresh()`` once -> RSASSA-PKCS1-v1_5 with SHA-256/384/512
    (RFC 7518 section 3.3) against each candidate -> :func:`check_claims`.

    Args:
        token: the token (whitespace and one ``Bearer`` prefix accepted).
        source: a :class:`KeySource`.
        options: :class:`VerifyOptions` (default: RS256 only, nothing else checked but ``exp``).
        now: the time to check against (default :func:`clock.now`).

    Returns:
        :class:`VerifyResult`.

    Raises:
        MalformedTokenError (5), SignatureRejected (6), ClaimsRejected (7), NoUsableKey (8),
        FetchError (9, when a refetch after an unknown kid fails).
    """
    options = options or VerifyOptions()
    h, p, s = split(clean_token(token))
    header = _header(h)
    alg = _check_header(header, options)
    claims = _json_object(_b64(p, 1), 1)
    sig = _b64(s, 2)
    kid = header.get("kid")
    ring = source.ring()
    cands = _candidates(ring, kid, alg)
    if not cands:
        why = source.refresh()
        ring = source.ring()
        cands = _candidates(ring, kid, alg)
        if not cands:
            raise _unknown_kid(ring, kid, why)
    signing_input = f"{h}.{p}".encode("ascii")
    small = None
    used = None
    for entry in cands:
        if entry.bits < MIN_VERIFY_BITS:
            small = entry
            continue
        try:
            ok = entry.verifier(alg).verify(signing_input, sig)
        except Exception:  # a malformed signature length or value: not a valid signature
            ok = False
        if not ok:
            continue
        used = entry
        break
    if used is None:
        if small is not None:
            raise SignatureRejected(f"key {small.kid!r} is a {small.bits}-bit RSA key; at least "
                                    f"{MIN_VERIFY_BITS} bits are required", code="key_too_small")
        which = f"key {cands[0].kid!r}" if len(cands) == 1 else f"any of the {len(cands)} keys with kid {kid!r}"
        raise SignatureRejected(f"the signature does not verify with {which}", code="bad_signature")
    iss_checked, aud_checked = check_claims(claims, options, now if now is not None else clock.now())
    return VerifyResult(used.kid, header, claims, iss_checked, aud_checked)


def iter_lines(stream: Any, max_len: int = MAX_TOKEN_BYTES + 4096) -> Iterator[tuple[int, bytes | None]]:
    """Yield ``(line_number, line_bytes)`` from a binary stream with flat memory.

    A line longer than ``max_len`` bytes is consumed in pieces and yielded as ``None``.
    """
    n = 0
    while True:
        line = stream.readline(max_len + 1)
        if not line:
            return
        n += 1
        if len(line) > max_len and not line.endswith(b"\n"):
            while True:
                rest = stream.readline(max_len)
                if not rest or rest.endswith(b"\n"):
                    break
            yield n, None
            continue
        yield n, line


def verify_batch(lines: Iterable[tuple[int, bytes | None]], source: KeySource, options: VerifyOptions,
                 write: Callable[[str], None], warn: Callable[[str], None] | None = None) -> int:
    """Verify one token per line; write one JSON line per token ``{line, valid, exit, error?, kid?, sub?}``.

    Blank lines are skipped (their numbers still count). Keys are fetched and built once
    (a refetch after an unknown kid is rate-limited by the source). Memory stays flat.

    Returns:
        0 when every token is valid, else the exit code of the first failure.
    """
    dumps = json.dumps
    first = 0
    for n, raw in lines:
        if raw is None:
            doc: dict[str, Any] = {"line": n, "valid": False, "exit": 5,
                                   "error": f"line is longer than {MAX_TOKEN_BYTES} bytes (64 KiB)"}
        elif not raw.strip():
            continue
        else:
            try:
                res = verify(raw, source, options)
                # the common case, formatted directly: same JSON as dumps() of the dict
                ok = (f'{{"line": {n}, "valid": true, "exit": 0, "kid": {dumps(res.kid, ensure_ascii=False)}, '
                      f'"sub": {dumps(res.claims.get("sub"), ensure_ascii=False)}}}\n')
            except PrismeKeysError as exc:
                doc = {"line": n, "valid": False, "exit": exc.exit_code, "error": exc.message}
            except RecursionError:  # a claim too deeply nested to write back
                doc = {"line": n, "valid": False, "exit": 5, "error": "the token's JSON is nested too deeply"}
            except ValueError as exc:
                doc = {"line": n, "valid": False, "exit": 5, "error": f"malformed token: {exc}"}
            else:
                if warn is not None:
                    for w in source.take_warnings():
                        warn(w)
                write(ok)
                continue
        if warn is not None:
            for w in source.take_warnings():
                warn(w)
        if not doc["valid"] and not first:
            first = doc["exit"]
        write(dumps(doc, ensure_ascii=False) + "\n")
    return first


# --------------------------------------------------------------------------- mint

@dataclass
class MintOptions:
    """What :func:`mint` puts in the tokens.

    Attributes:
        sub: subject; ``None`` = anonymous (a fresh unique id per token, as anonymous login).
        kid: sign with this record instead of the signing key (it must hold its private key).
        lifetime: seconds between ``iat`` and ``exp`` (default ``ACCESS_TOKENS_MAX_AGE``).
        iss / aud: issuer / audience list (default ``OIDC_PROVIDER_URL`` / ``[API_URL]``);
            one audience is written as a string, several as a list.
        claims: extra claims merged last (they may override the standard ones).
        session_id: ``prismeaiSessionId`` (default a fresh UUIDv4 per token).
        not_before: seconds after ``iat`` for ``nbf`` (``None`` = no ``nbf``).
        expired: make the token already expired (``exp`` one minute ago).
        count: number of tokens (each with its own session id).
    """

    sub: str | None = None
    kid: str | None = None
    lifetime: int | None = None
    iss: str | None = None
    aud: list[str] | None = None
    claims: dict[str, Any] = field(default_factory=dict)
    session_id: str | None = None
    not_before: int | None = None
    expired: bool = False
    count: int = 1


@dataclass
class Minted:
    """One minted token with its header and claims."""

    token: str
    header: dict[str, Any]
    claims: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """``{token, header, claims}``."""
        return {"token": self.token, "header": self.header, "claims": self.claims}


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class Signer:
    """Signs JWS with one private RSA JWK; the key object is built once (see :func:`signer_for`).

    Attributes:
        kid, alg: header values; ``header``: the fixed header ``{"typ":"jwt","alg","kid"}``.
    """

    def __init__(self, jwk: dict[str, Any], alg: str) -> None:
        from .keys import private_key_from_jwk

        if alg not in RSA_ALGS:
            from .errors import KeyFileError

            raise KeyFileError(f"key {jwk.get('kid')!r} has alg {alg!r}; mint signs with RS256, RS384 or RS512")
        self.kid = jwk.get("kid")
        self.alg = alg
        self.key = jose_key(private_key_from_jwk(jwk), alg)
        self.header = {"typ": "jwt", "alg": alg, "kid": self.kid}
        self._prefix = _b64e(json.dumps(self.header, separators=(",", ":")).encode()) + "."

    def sign(self, claims: dict[str, Any]) -> str:
        """The compact JWS of ``claims`` (JSON without spaces, UTF-8)."""
        si = self._prefix + _b64e(json.dumps(claims, separators=(",", ":"), ensure_ascii=False,
                                             allow_nan=False).encode())
        return si + "." + _b64e(self.key.sign(si.encode("ascii")))


_SIGNERS: dict[tuple[str, str, str], Signer] = {}


def signer_for(jwk: dict[str, Any], alg: str) -> Signer:
    """The :class:`Signer` of ``jwk``, built once per process and cached by (kid, n, alg).

    Raises:
        KeyFileError: the key is unusable (inconsistent members) or its alg is not RS*.
    """
    ck = (str(jwk.get("kid")), str(jwk.get("n")), alg)
    s = _SIGNERS.get(ck)
    if s is None:
        try:
            s = _SIGNERS[ck] = Signer(jwk, alg)
        except ValueError as exc:
            from .errors import KeyFileError

            raise KeyFileError(f"key {jwk.get('kid')!r} cannot sign: {exc}") from None
    return s


@dataclass
class MintRun:
    """Result of :func:`mint`: the signing kid, warnings, and the tokens (a lazy iterator)."""

    kid: str
    alg: str
    warnings: list[str]
    tokens: Iterator[Minted]


def parse_claim_pairs(pairs: Iterable[str]) -> dict[str, Any]:
    """Parse ``--claim K=V`` values: V is JSON when it parses, else a string.

    Raises:
        UsageError: a pair without ``=`` or with an empty name.
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        k, sep, v = pair.partition("=")
        if not sep or not k:
            raise UsageError(f"--claim {pair!r}: use NAME=VALUE (VALUE is JSON when it parses, else a string)")
        try:
            out[k] = json.loads(v, parse_constant=_no_constants)
        except ValueError:
            out[k] = v
        except RecursionError:
            raise UsageError(f"--claim {k}: the value is nested too deeply") from None
    return out


def load_claims(text: str, where: str) -> dict[str, Any]:
    """Parse the ``--claims FILE|-`` document: a JSON object.

    Raises:
        UsageError: not JSON or not an object.
    """
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--claims {where}: not JSON: {exc}") from None
    except RecursionError:
        raise UsageError(f"--claims {where}: not JSON: nested too deeply") from None
    if not isinstance(doc, dict):
        raise UsageError(f"--claims {where}: a JSON object is required, got {type(doc).__name__}")
    return doc


def mint(settings: Any, now: datetime, options: MintOptions | None = None) -> MintRun:
    """Mint tokens as the gateway would issue them.

    Without ``sub``: exactly an anonymous-login token: header ``{"typ":"jwt","alg","kid"}``,
    claims ``{exp, iat, sub, iss, aud, prismeaiSessionId}`` with a fresh unique ``sub``
    (24 hex digits, like the gateway's user ids) and a UUIDv4 session id. Times are
    NumericDates (RFC 7519 section 2) in whole seconds.

    The private key comes from :func:`lifecycle.signing_jwk` and becomes a key object once
    per process (:func:`signer_for`).

    Args:
        settings: effective settings (issuer, audience, max age, key file).
        now: issue time.
        options: :class:`MintOptions`.

    Raises:
        KeyFileError: no key file, no signing key, unknown ``kid``, no private key.
        UsageError: ``count`` below 1, or ``session_id`` with ``count`` above 1.
    """
    import os
    import uuid

    from . import lifecycle

    o = options or MintOptions()
    if o.count < 1:
        raise UsageError("--count must be 1 or more")
    if o.session_id is not None and o.count > 1:
        raise UsageError("--session-id cannot be combined with --count above 1 (each token gets its own session)")
    rec, jwk = lifecycle.signing_jwk(settings, now, o.kid)
    alg = jwk.get("alg") or settings.alg
    signer = signer_for(jwk, alg)
    warnings: list[str] = []
    lifetime = o.lifetime if o.lifetime is not None else settings.access_tokens_max_age
    if lifetime <= 0 and not o.expired and "exp" not in o.claims:
        warnings.append(f"lifetime {lifetime} s: the token is already expired")
    elif (o.not_before is not None and o.not_before >= lifetime and not o.expired
          and not {"exp", "nbf"} & set(o.claims)):
        warnings.append(f"not-before {o.not_before} s is not within the lifetime ({lifetime} s): "
                        "the token will never be valid")
    if lifetime > settings.access_tokens_max_age:
        warnings.append(f"lifetime {lifetime} s is longer than ACCESS_TOKENS_MAX_AGE ({settings.access_tokens_max_age} s):"
                        " the token may outlive its key's publication")
    iss = o.iss if o.iss is not None else settings.oidc_provider_url
    aud = o.aud if o.aud else ([settings.api_url] if settings.api_url else None)
    if iss is None:
        warnings.append("no iss claim: set OIDC_PROVIDER_URL or pass --iss (the gateway requires it)")
    if aud is None:
        warnings.append("no aud claim: set API_URL or pass --aud (the gateway requires it)")
    ts = clock.to_numeric_date(now)
    if o.expired:
        exp, iat = ts - 60, ts - 60 - lifetime
    else:
        iat, exp = ts, ts + lifetime
    aud_value: Any = None if aud is None else (aud[0] if len(aud) == 1 else list(aud))
    time_hex = ts.to_bytes(4, "big").hex() if 0 <= ts < 2**32 else "00000000"
    extra = dict(o.claims)
    for name, value in extra.items():
        try:
            json.dumps(value, allow_nan=False)
        except (ValueError, RecursionError):
            raise UsageError(f"claim {name!r}: {_show(value)} is not representable in JSON (NaN, Infinity or a "
                             "number out of range such as 1e400)") from None

    def gen() -> Iterator[Minted]:
        urandom, uuid4 = os.urandom, uuid.uuid4
        for _ in range(o.count):
            claims: dict[str, Any] = {"exp": exp, "iat": iat}
            if o.not_before is not None:
                claims["nbf"] = iat + o.not_before
            claims["sub"] = o.sub if o.sub is not None else time_hex + urandom(8).hex()
            if iss is not None:
                claims["iss"] = iss
            if aud_value is not None:
                claims["aud"] = aud_value
            claims["prismeaiSessionId"] = o.session_id if o.session_id is not None else str(uuid4())
            if extra:
                claims.update(extra)
            yield Minted(signer.sign(claims), signer.header, claims)

    return MintRun(rec["kid"], alg, warnings, gen())


def open_source(settings: Any, *, jwks_file: str | None = None, jwks_url: str | None = None,
                timeout: float | None = None, max_bytes: int | None = None, cacert: str | None = None,
                allow_http: bool = False, use_cache: bool = True) -> KeySource:
    """The key source ``verify`` uses: the key file (default), a JWKS file, or a JWKS URL.

    Args:
        settings: effective settings (key file, cache folder).
        jwks_file / jwks_url: at most one of them.
        timeout (s), max_bytes, cacert, allow_http, use_cache: see :func:`jwks_client.fetch`.

    Raises:
        UsageError: both a file and a URL given.
        KeyFileError (4), FetchError (9).
    """
    if jwks_file is not None and jwks_url is not None:
        raise UsageError("give --jwks-file or --jwks-url, not both")
    if jwks_url is not None:
        from . import jwks_client
        from .settings import default_cache_dir

        return jwks_client.UrlKeySource(  # type: ignore[return-value]
            jwks_url, timeout=timeout if timeout is not None else jwks_client.DEFAULT_TIMEOUT,
            max_bytes=max_bytes if max_bytes is not None else jwks_client.DEFAULT_MAX_BYTES,
            cacert=cacert, allow_http=allow_http, use_cache=use_cache, cache_dir=default_cache_dir())
    if jwks_file is not None:
        return jwks_file_source(jwks_file)
    return keyfile_source(settings)


def read_token_arg(arg: str, stdin: Any = None) -> str:
    """The token named by a command argument: the text itself, or ``-`` for stdin (size-capped).

    Raises:
        MalformedTokenError: empty or over :data:`MAX_TOKEN_BYTES`, whitespace inside, not UTF-8.
    """
    if arg == "-":
        import sys

        stream = stdin if stdin is not None else sys.stdin.buffer
        data = stream.read(MAX_TOKEN_BYTES + 4097)
        if len(data) > MAX_TOKEN_BYTES + 4096:
            raise _too_large(len(data))
        return clean_token(data)
    return clean_token(arg)
