"""Compact JWS parsing (RFC 7515 section 7.1) and unverified decoding of JWT claims (RFC 7519).

Nothing here imports ``cryptography`` or ``python-jose``: ``decode`` stays fast and never checks a
signature; its result is labelled UNVERIFIED.

Size cap: a token (after trimming whitespace and a ``Bearer`` prefix) is at most
:data:`MAX_TOKEN_BYTES` (64 KiB); larger input is a malformed token (exit 5).
"""

from __future__ import annotations

import binascii
import json
import re
from datetime import datetime
from typing import Any, NamedTuple

from prisme_keys import clock
from prisme_keys.errors import MalformedTokenError
from prisme_keys.jwk import SUPPORTED_ALGS
from prisme_keys.text import shown

#: Largest accepted token, in bytes (64 KiB), after trimming whitespace and ``Bearer``.
MAX_TOKEN_BYTES = 64 * 1024
#: Time claims shown by :func:`decode` and type-checked by :func:`verify`.
TIME_CLAIMS = ("exp", "nbf", "iat")
#: The registered claims whose value is a string (``aud``: a string or a list of strings), RFC 7519 section 4.1.
STRING_CLAIMS = ("iss", "sub", "jti", "aud")

_SEGMENT_NAMES = ("header", "payload", "signature")
B64URL_RE = re.compile(r"[A-Za-z0-9_-]*")
_SPACE_RE = re.compile(r"\s")
_B64_INDEX = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")}
_BEARER_RE = re.compile(r"^bearer(?:\s+|$)", re.IGNORECASE)
_B64URL_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_TOKEN_BYTES = _B64URL_BYTES + b"."
#: By segment length mod 4, then by byte value: the unused bits a last base64url character carries
#: (they must be zero, RFC 4648 section 3.5); lengths 0 and 1 mod 4 have no such character.
_LOW_BITS = tuple(
    bytes(_B64_INDEX[chr(b)] & mask if chr(b) in _B64_INDEX else 0 for b in range(256)) for mask in (0, 0, 0x0F, 0x03)
)
_B64_PAD = (b"", b"", b"==", b"=")
#: base64url to the standard alphabet (RFC 4648 sections 4 and 5), with ``+``, ``/`` and ``=`` made
#: invalid: strict ``a2b_base64`` then refuses every byte that is not base64url.
_FROM_B64URL_ONLY = bytes.maketrans(b"-_+/=", b"+/!!!")
_a2b = binascii.a2b_base64


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
    # Fast path, same result: a bare token (base64url and dots only, within the size cap).
    bare = text.strip()
    if 0 < len(bare) <= MAX_TOKEN_BYTES and (isinstance(bare, bytes) or bare.isascii()):
        raw = bare if isinstance(bare, bytes) else bare.encode("ascii")
        if b"." in raw and is_bare(raw):
            return raw.decode("ascii")
    if isinstance(text, bytes):
        if len(text) > MAX_TOKEN_BYTES + 4096:
            raise too_large(len(text))
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedTokenError("token is not UTF-8 text") from None
    s = text.strip()
    m = _BEARER_RE.match(s)
    if m:
        s = s[m.end() :]
    if not s:
        raise MalformedTokenError("empty token" + (" after 'Bearer'" if m else ""))
    if len(s) > MAX_TOKEN_BYTES:
        raise too_large(len(s.encode("utf-8")))
    ws = _SPACE_RE.search(s)
    if ws:
        seg = s.count(".", 0, ws.start())
        name = _SEGMENT_NAMES[seg] if seg < 3 else f"segment {seg + 1}"
        raise MalformedTokenError(f"token contains whitespace inside segment {seg + 1} ({name})")
    return s


def too_large(n: int, *, more: bool = False) -> MalformedTokenError:
    """The error for a token of ``n`` bytes (``more``: reading stopped after ``n``, the input is larger)."""
    size = f"more than {n} bytes" if more else f"{n} bytes"
    return MalformedTokenError(
        f"token is {size}; the limit is {MAX_TOKEN_BYTES} bytes (64 KiB)", code="token_too_large"
    )


def is_bare(raw: bytes) -> bool:
    """True when ``raw`` is at most :data:`MAX_TOKEN_BYTES` bytes of base64url characters and dots,
    nothing else (no whitespace, no ``Bearer``): :func:`clean_token` returns such a token unchanged."""
    return len(raw) <= MAX_TOKEN_BYTES and not raw.translate(None, _TOKEN_BYTES)


def bare_segments(raw: bytes) -> list[bytes] | None:
    """The three segments of a bare compact token (see :func:`is_bare`; RFC 7515 section 7.1), or ``None``.

    ``None`` for anything else: :func:`clean_token` and :func:`split` say what is wrong with it, or
    accept it (surrounding whitespace, a ``Bearer`` prefix).
    """
    if raw and is_bare(raw):
        parts = raw.split(b".")
        if len(parts) == 3:
            return parts
    return None


def b64url_bytes(seg: bytes) -> bytes | None:
    """Decode canonical unpadded base64url (RFC 7515 section 2, RFC 4648 sections 3.5 and 5), or ``None``:
    a byte outside the base64url alphabet, an impossible length, or non-zero padding bits in the last
    character (:func:`b64_segment` says which).
    """
    rem = len(seg) % 4
    if rem == 1 or (rem and _LOW_BITS[rem][seg[-1]]):
        return None
    try:
        return _a2b(seg.translate(_FROM_B64URL_ONLY) + _B64_PAD[rem], strict_mode=True)
    except binascii.Error:
        return None


def b64_segment(seg: str, index: int) -> bytes:
    """Decode segment ``index`` (0 header, 1 payload, 2 signature) of a compact JWS: canonical
    unpadded base64url only (RFC 7515 section 2, RFC 4648 section 5).

    Raises:
        MalformedTokenError: naming the segment and the offending character, an impossible
            length, or non-zero padding bits in the last character.
    """
    raw = seg.encode("ascii", "replace")
    if raw.translate(None, _B64URL_BYTES) or not seg.isascii():
        bad = next(c for c in seg if not (c.isalnum() and c.isascii()) and c not in "-_")
        extra = " (padding '=' is not allowed in a compact JWS)" if bad == "=" else ""
        raise MalformedTokenError(
            f"segment {index + 1} ({_SEGMENT_NAMES[index]}) is not base64url: character {shown(bad)}{extra}"
        )
    out = b64url_bytes(raw)
    if out is not None:
        return out
    if len(raw) % 4 == 1:
        raise MalformedTokenError(
            f"segment {index + 1} ({_SEGMENT_NAMES[index]}) is not base64url: impossible length {len(seg)}"
        )
    # RFC 4648 section 3.5: the unused bits of the last character must be zero; otherwise
    # several spellings decode to the same bytes and a token would be malleable.
    raise MalformedTokenError(
        f"segment {index + 1} ({_SEGMENT_NAMES[index]}) is not canonical base64url: "
        f"its last character {shown(seg[-1])} carries non-zero padding bits"
    )


def _no_dupes(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise ValueError(f"duplicate member {shown(dup)}")
    return out


def no_json_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(object_pairs_hook=_no_dupes, parse_constant=no_json_constants)
_scan_once = _DECODER.scan_once  # type: ignore[attr-defined]


def strict_json(text: str) -> Any:
    """Parse JSON text as the token parser does: no duplicate members, no NaN/Infinity (RFC 8259, RFC 7515 5.2).

    The one home of strict JSON for untrusted documents (a token's segments, the body ``serve``
    receives): a repeated member makes the document ambiguous, so it is refused.

    Raises:
        json.JSONDecodeError: not JSON.
        ValueError: a duplicate member (``duplicate member 'x'``) or a NaN/Infinity constant.
        RecursionError: nested too deeply.
    """
    return _DECODER.decode(text)


def json_object(raw: bytes, index: int) -> dict[str, Any]:
    """Parse a decoded segment as one JSON object: UTF-8, no duplicate members, no NaN/Infinity.

    Raises:
        MalformedTokenError: naming the segment and the problem.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedTokenError(f"segment {index + 1} ({_SEGMENT_NAMES[index]}) is not UTF-8") from None
    if text[:1] == "{" and text[-1:] == "}":
        # Fast path, same result: one object with nothing around it (scan_once skips decode()'s
        # whitespace handling); anything else, and every error, goes through decode() below.
        try:
            doc, end = _scan_once(text, 0)
        except (StopIteration, ValueError, RecursionError):
            end = -1
        if end == len(text):
            return doc  # type: ignore[no-any-return]
    what = _SEGMENT_NAMES[index]
    try:
        doc = strict_json(text)
    except ValueError as exc:
        raise MalformedTokenError(f"segment {index + 1} ({what}) is not JSON: {exc}") from None
    except RecursionError:
        raise MalformedTokenError(f"segment {index + 1} ({what}) is nested too deeply") from None
    if not isinstance(doc, dict):
        raise MalformedTokenError(f"segment {index + 1} ({what}) is JSON but not an object")
    return doc


_UUID = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
#: The gateway's opaque credentials (``research-prisme-ai.md``): pattern, what it is, where it goes.
_OPAQUE = (
    (re.compile(f"at:{_UUID}"), "an opaque access token of the gateway (at: followed by a UUID)"),
    (re.compile(f"iak_[A-Za-z0-9-]+_{_UUID}"), "an organization API key of the gateway (iak_<org>_<UUID>)"),
    (re.compile(_UUID), "a UUID, as a workspace API key of the gateway (x-prismeai-api-key) is"),
)


def opaque_credential(token: str) -> str | None:
    """What an opaque credential of the gateway is (an ``at:<UUID>`` access token, an API key), or ``None``.

    Such credentials are not JWTs: they carry no signature, and only the gateway that issued them
    can check them (it looks them up in its own store).
    """
    for pattern, what in _OPAQUE:
        if pattern.fullmatch(token):
            return what
    return None


def split(token: str) -> tuple[str, str, str]:
    """Split a cleaned compact token into its three segments.

    Raises:
        MalformedTokenError: an opaque credential of the gateway (code ``opaque_credential``),
            a five-segment JWE (not supported) or not three segments.
    """
    parts = token.split(".")
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    what = opaque_credential(token) if len(parts) == 1 else None
    if what is not None:
        raise MalformedTokenError(
            f"not a JWT: this is {what}; it is not signed, so only the gateway can check it "
            "(decode and verify read signed tokens only)",
            code="opaque_credential",
        )
    if len(parts) == 5:
        raise MalformedTokenError(
            "token has 5 segments: an encrypted JWE, which is not supported "
            "(only signed tokens, compact JWS with 3 segments)",
            code="jwe_not_supported",
        )
    raise MalformedTokenError(
        f"token has {len(parts)} segment{'s' if len(parts) != 1 else ''}; a compact JWS has 3 separated by dots"
    )


def parse(token: str | bytes) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    """Parse a token (no signature check): ``(header, claims, signature_bytes)``.

    Accepts surrounding whitespace and a ``Bearer`` prefix (see :func:`clean_token`).

    Raises:
        MalformedTokenError: naming the problem: size, segment count, base64url, UTF-8, JSON.
    """
    h, p, s = split(clean_token(token))
    header = json_object(b64_segment(h, 0), 0)
    claims = json_object(b64_segment(p, 1), 1)
    return header, claims, b64_segment(s, 2)


#: NumericDates of 0001-01-01T00:00:00Z and 10000-01-01T00:00:00Z: the range a date can be shown in.
MIN_NUMERIC_DATE, MAX_NUMERIC_DATE = -62135596800, 253402300800


def string_claim_problem(name: str, value: Any, *, empty: bool = True) -> str | None:
    """What is wrong with the value of a claim of :data:`STRING_CLAIMS`, or ``None``: ``iss``, ``sub``
    and ``jti`` are strings, ``aud`` a string or a list of strings (RFC 7519 sections 4.1.1-4.1.3 and
    4.1.7: StringOrURI values). ``empty=False``: an empty string (or list) is wrong too (what ``mint``
    signs). Another ``name``: ``None``.
    """
    if name == "aud":
        if (isinstance(value, str) and (empty or value)) or (
            isinstance(value, list) and (empty or value) and all(isinstance(a, str) and (empty or a) for a in value)
        ):
            return None
        kind = "a string or a list of strings" if empty else "a non-empty string or a list of them"
    elif name in STRING_CLAIMS:
        if isinstance(value, str) and (empty or value):
            return None
        kind = "a string" if empty else "a non-empty string"
    else:
        return None
    return f"must be {kind} (RFC 7519 section 4.1), got {show_value(value)}"


def numeric_date_problem(value: Any) -> str | None:
    """Why ``value`` is not a usable NumericDate (RFC 7519 section 2), or ``None``.

    The one rule ``verify`` rejects time claims by and ``mint`` refuses to sign by: a number (never a
    bool or a string), finite, between the years 1 and 9999.
    """
    if not is_numeric_date(value):
        return (
            f"must be a NumericDate (seconds since the epoch as a number), got {type(value).__name__} "
            f"{show_value(value)}"
        )
    if not MIN_NUMERIC_DATE <= value < MAX_NUMERIC_DATE:
        return f"is out of range: {show_value(value)} is not a date between the years 1 and 9999"
    return None


def is_numeric_date(value: Any) -> bool:
    """True for a NumericDate (RFC 7519 section 2): an int or finite float, never a bool or a string."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and value == value and value not in (float("inf"), float("-inf"))


def show_value(value: Any) -> str:
    """A claim or header value in a message: JSON (a string as ``repr`` quotes it), capped.

    See :func:`prisme_keys.text.shown`.
    """
    return shown(value, as_json=True)


# --------------------------------------------------------------------------- decode


class Decoded(NamedTuple):
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
    times: dict[str, dict[str, Any]]
    warnings: list[str]

    def to_dict(self) -> dict[str, Any]:
        """The ``decode --json`` document."""
        return {
            "verified": False,
            "label": "UNVERIFIED",
            "header": self.header,
            "claims": self.claims,
            "times": self.times,
            "signature_bytes": self.signature_bytes,
            "warnings": self.warnings,
        }


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
    out = Decoded(header, claims, len(sig), {}, [])
    alg = header.get("alg")
    if isinstance(alg, str) and alg.lower() == "none":
        out.warnings.append(f"alg is {shown(alg)}: the token is unsigned; verify always rejects it")
    elif "alg" not in header:
        out.warnings.append("the header has no alg")
    elif alg not in SUPPORTED_ALGS:
        out.warnings.append(
            f"alg {show_value(alg)} is not an RSA signature algorithm (RS256/RS384/RS512); verify rejects it"
        )
    if "kid" not in header:
        out.warnings.append("the header has no kid: a verifier must guess the key")
    if "b64" in header and header["b64"] is not True:
        out.warnings.append("the header asks for an unencoded payload (b64, RFC 7797): verify rejects it")
    if "crit" in header:
        out.warnings.append(f"the header marks {show_value(header['crit'])} as critical (crit): verify rejects it")
    for name in TIME_CLAIMS:
        if name not in claims:
            continue
        value = claims[name]
        if not is_numeric_date(value):
            out.warnings.append(
                f"claim {shown(name)} is not a NumericDate (got {show_value(value)}); verify rejects it"
            )
            continue
        try:
            dt = clock.from_numeric_date(value)
        except (OverflowError, OSError, ValueError):
            out.warnings.append(f"claim {shown(name)} is out of range ({value})")
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
