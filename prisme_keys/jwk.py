"""RSA keys as JWKs: generation, conversion, RFC 7638 thumbprints, public projection.

A private JWK here is a dict ``{kty, kid, use, alg, n, e, d, p, q, dp, dq, qi}``
whose big integers are unpadded base64url strings of their minimal big-endian bytes
(Base64urlUInt, RFC 7518 sections 2 and 6.3): the canonical form. Every key that enters a key
file (import, generate, decrypt) goes through :func:`canonical_jwk`; :func:`uint_problem` says
why a stored or published value is not canonical (a 257-byte ``n`` with a leading zero, padding).

``cryptography`` is imported inside the functions that need it so the command line
starts fast.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict, TypeVar, cast

from prisme_keys.errors import InvalidArgument, KeyFileError
from prisme_keys.text import shown

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
    from cryptography.hazmat.primitives.hashes import HashAlgorithm


class RSAJwk(TypedDict):
    """An RSA JWK as a key file holds it (RFC 7517 section 4, RFC 7518 section 6.3).

    The public members are always there; the private ones only in a private JWK. Integers are
    Base64urlUInt strings (see :func:`canonical_jwk`). ``use`` is ``"sig"``, ``alg`` one of
    :data:`SUPPORTED_ALGS`. In an encrypted key file the private members are replaced by ``enc``
    (``{nonce, ciphertext}``, see :mod:`prisme_keys.store.encryption`).

    ``kid``, ``use`` and ``alg`` are on every key this tool makes or imports; a key file written
    by another tool is read without them too, so code reading a stored key uses ``.get`` for them.
    Input from outside (an import, a published JWKS) is a plain ``dict`` until it is checked:
    the functions that read a JWK take any ``Mapping[str, Any]``.
    """

    kty: str
    kid: str
    use: str
    alg: str
    n: str
    e: str
    d: NotRequired[str]
    p: NotRequired[str]
    q: NotRequired[str]
    dp: NotRequired[str]
    dq: NotRequired[str]
    qi: NotRequired[str]
    enc: NotRequired[dict[str, str]]


_Jwk = TypeVar("_Jwk", bound=Mapping[str, Any])

#: JWK members that hold private key material (RSA and symmetric); never printed.
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
#: Members of the public projection, in output order.
PUBLIC_MEMBERS = ("kty", "kid", "use", "alg", "n", "e")
#: RSASSA-PKCS1-v1_5 signature algorithms (RFC 7518 section 3.3): the only ones signed and verified.
SUPPORTED_ALGS = ("RS256", "RS384", "RS512")
#: RSA JWK members holding integers (RFC 7518 section 6.3), each a Base64urlUInt.
INT_MEMBERS = ("n", "e", "d", "p", "q", "dp", "dq", "qi")
MIN_BITS = 2048
MAX_BITS = 16384
MAX_KID = 256  #: longest kid, in characters, taken from a user or a file (an RFC 7638 thumbprint has 43)


def b64url_encode(data: bytes) -> str:
    """Unpadded base64url (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode base64url, padded or not.

    Raises:
        ValueError: on characters outside the base64url alphabet or an impossible length.
    """
    if not isinstance(text, str):
        raise ValueError("not a string")
    s = text.rstrip("=")
    if any(c not in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" for c in s):
        raise ValueError("not base64url")
    if len(s) % 4 == 1:
        raise ValueError("impossible base64url length")
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def int_to_b64(value: int, length: int | None = None) -> str:
    """Encode a non-negative int as unpadded base64url of its big-endian bytes.

    ``length`` (bytes) pads with leading zeros; by default the minimal length is used.
    """
    size = length if length is not None else max(1, (value.bit_length() + 7) // 8)
    return b64url_encode(value.to_bytes(size, "big"))


def b64_to_int(text: str) -> int:
    """Decode a base64url big-endian unsigned integer.

    Raises:
        ValueError: when ``text`` is not base64url.
    """
    return int.from_bytes(b64url_decode(text), "big")


def kid_problem(kid: Any) -> str | None:
    """Why ``kid`` cannot be a kid (RFC 7517 section 4.5), or ``None`` when it can: the one rule for kids.

    Every kid that comes from a user or a file goes through it (import, notify's created/deleted
    kids, revoke, mint's kid): a kid is printed by list, check and verify and travels in every
    token header and announcement, so it is a non-empty string of at most :data:`MAX_KID`
    characters with no control characters (no terminal escapes, newlines or tabs).

    Returns:
        ``"is not a non-empty string"``, ``"has N characters (at most 256)"``,
        ``"contains control characters"``, or ``None``.
    """
    if not isinstance(kid, str) or not kid:
        return "is not a non-empty string"
    if len(kid) > MAX_KID:
        return f"has {len(kid)} characters (at most {MAX_KID})"
    if not kid.isprintable():
        return "contains control characters"
    return None


def check_kid(kid: Any, argument: str = "kid") -> str:
    """``kid`` when :func:`kid_problem` accepts it.

    Args:
        kid: the kid a user gave.
        argument: the name of the parameter it came in (``kid``, ``created``), for the message.

    Raises:
        InvalidArgument: ``kid 'x...'... (100000 characters) has 100000 characters (at most 256)`` (exit 2).
    """
    problem = kid_problem(kid)
    if problem is not None:
        field = "{{{}}}".format(argument)  # noqa: UP032 - "{created}": the argument, worded by the front end
        raise InvalidArgument(argument, field + " {value} " + problem, value=shown(kid))
    return kid  # type: ignore[no-any-return]


def uint_problem(text: Any) -> str | None:
    """Why ``text`` is not a canonical Base64urlUInt, or ``None`` when it is.

    Canonical (RFC 7518 section 2): unpadded base64url of the minimum number of big-endian
    octets (zero is ``AA``), with zero padding bits in the last character.

    Returns:
        ``"has '=' padding"``, ``"is not base64url"``, ``"has a leading zero byte"``,
        ``"is not canonical base64url (non-zero padding bits)"``, ``"is not a non-empty string"``, or ``None``.
    """
    if not isinstance(text, str) or not text:
        return "is not a non-empty string"
    if "=" in text:
        return "has '=' padding"
    try:
        raw = b64url_decode(text)
    except ValueError:
        return "is not base64url"
    if len(raw) > 1 and raw[0] == 0:
        return "has a leading zero byte"
    if b64url_encode(raw) != text:
        return "is not canonical base64url (non-zero padding bits)"
    return None


def non_canonical_members(jwk: Mapping[str, Any]) -> dict[str, str]:
    """``{member: problem}`` for each integer member of ``jwk`` that is not canonical (see :func:`uint_problem`)."""
    out = {}
    for m in INT_MEMBERS:
        if m in jwk:
            problem = uint_problem(jwk[m])
            if problem:
                out[m] = problem
    return out


def canonical_jwk(jwk: _Jwk) -> _Jwk:
    """A copy of ``jwk`` with every integer member (``n e d p q dp dq qi``) in canonical form.

    Leading zero bytes are dropped, ``=`` padding removed and padding bits cleared; the numbers,
    the other members and their order are unchanged, so the RFC 7638 thumbprint is the same.

    Raises:
        ValueError: naming a member that is not base64url.
    """
    out = dict(jwk)
    for m in INT_MEMBERS:
        if m in out:
            try:
                out[m] = int_to_b64(b64_to_int(out[m]))
            except (ValueError, TypeError):
                raise ValueError(f"member {shown(m)} is not base64url") from None
    return cast(_Jwk, out)  # the same members, integers rewritten


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 SHA-256 JWK thumbprint of an RSA key, unpadded base64url.

    Uses only the required members ``e``, ``kty``, ``n`` in lexicographic order with no
    whitespace. Padded ``n``/``e`` are normalised first, so the value identifies the key
    whatever its serialization.

    Raises:
        ValueError: when the JWK is not RSA or lacks ``n``/``e``.
    """
    if jwk.get("kty") != "RSA" or not isinstance(jwk.get("n"), str) or not isinstance(jwk.get("e"), str):
        raise ValueError("thumbprint needs an RSA JWK with n and e")
    n = b64url_encode(b64url_decode(jwk["n"]).lstrip(b"\0") or b"\0")
    e = b64url_encode(b64url_decode(jwk["e"]).lstrip(b"\0") or b"\0")
    canonical = json.dumps({"e": e, "kty": "RSA", "n": n}, separators=(",", ":"), sort_keys=True)
    import hashlib  # here, not at the top: 2.5 ms of start-up for commands that compute no thumbprint

    return b64url_encode(hashlib.sha256(canonical.encode("utf-8")).digest())


def key_bits(jwk: Mapping[str, Any]) -> int:
    """Modulus size in bits of an RSA JWK (0 when ``n`` is unreadable)."""
    try:
        return b64_to_int(jwk["n"]).bit_length()
    except (KeyError, ValueError, TypeError):
        return 0


def public_jwk(jwk: RSAJwk) -> RSAJwk:
    """The public projection ``{kty, kid, use, alg, n, e}`` of a JWK (members absent stay absent)."""
    members: Mapping[str, Any] = jwk
    return cast(RSAJwk, {m: members[m] for m in PUBLIC_MEMBERS if m in members})


def has_private(jwk: Mapping[str, Any]) -> bool:
    """True when the JWK carries the private exponent ``d``."""
    return isinstance(jwk.get("d"), str)


def private_key_to_jwk(key: Any, alg: str, kid: str | None = None) -> RSAJwk:
    """Serialize a ``cryptography`` RSA private key as a private JWK.

    Args:
        key: an ``RSAPrivateKey``.
        alg: ``RS256``/``RS384``/``RS512``.
        kid: the key id; default the RFC 7638 thumbprint.

    Returns:
        ``{kty, kid, use:"sig", alg, n, e, d, p, q, dp, dq, qi}`` in canonical form (every
        integer minimal; ``n`` is then ``bits / 8`` bytes, rounded up).
    """
    priv = key.private_numbers()
    pub = priv.public_numbers
    jwk: RSAJwk = {
        "kty": "RSA",
        "kid": "",
        "use": "sig",
        "alg": alg,
        "n": int_to_b64(pub.n),
        "e": int_to_b64(pub.e),
        "d": int_to_b64(priv.d),
        "p": int_to_b64(priv.p),
        "q": int_to_b64(priv.q),
        "dp": int_to_b64(priv.dmp1),
        "dq": int_to_b64(priv.dmq1),
        "qi": int_to_b64(priv.iqmp),
    }
    jwk["kid"] = kid if kid is not None else thumbprint(jwk)
    return jwk


def generate_jwk(bits: int = 2048, alg: str = "RS256") -> RSAJwk:
    """Generate a new RSA signing key as a private JWK.

    Args:
        bits: modulus size in bits (2048..16384, a multiple of 8).
        alg: ``RS256``, ``RS384`` or ``RS512``.

    Returns:
        A private JWK (see :func:`private_key_to_jwk`), public exponent 65537, kid = RFC 7638
        thumbprint.
    """
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return private_key_to_jwk(key, alg)


def _jwk_int(jwk: Mapping[str, Any], member: str) -> int:
    value = jwk.get(member)
    if not isinstance(value, str):
        raise ValueError(f"member {shown(member)} missing or not a string")
    try:
        return b64_to_int(value)
    except ValueError:
        raise ValueError(f"member {shown(member)} is not base64url") from None


def private_key_from_jwk(jwk: Mapping[str, Any], *, trusted: bool = False) -> Any:
    """Build a ``cryptography`` ``RSAPrivateKey`` from a private RSA JWK.

    The arithmetic of the key is always checked, in microseconds: ``p*q == n``, ``dp``, ``dq``
    and ``qi`` derive from ``d``, ``p`` and ``q``, and ``e*d == 1 mod lcm(p-1, q-1)``.
    Without ``trusted``, OpenSSL's full RSA key check runs as well, whose primality tests of
    ``p`` and ``q`` take 40 to 100 ms at 2048 bits and 0.25 to 0.9 s at 4096 bits.

    Args:
        jwk: the private JWK (``d`` required; ``p``/``q`` recovered from ``n``, ``e``, ``d`` when absent).
        trusted: the JWK comes from the key file, where every key was validated fully when it
            entered it (generated by ``cryptography``, ``import``, ``decrypt``); the primality tests
            are skipped (``cryptography``'s ``unsafe_skip_rsa_key_validation``). ``doctor`` and
            key validation call this without ``trusted``.

    Raises:
        ValueError: naming the member that is missing, malformed or inconsistent.
    """
    from math import gcd

    from cryptography.hazmat.primitives.asymmetric import rsa

    if jwk.get("kty") != "RSA":
        raise ValueError(f"kty is {shown(jwk.get('kty'))}, not RSA")
    n, e, d = (_jwk_int(jwk, m) for m in ("n", "e", "d"))
    if all(isinstance(jwk.get(m), str) for m in ("p", "q")):
        p, q = _jwk_int(jwk, "p"), _jwk_int(jwk, "q")
    else:
        p, q = rsa.rsa_recover_prime_factors(n, e, d)
    if p < 2 or q < 2 or p * q != n:
        raise ValueError("private members do not match n (p*q != n)")
    dp = rsa.rsa_crt_dmp1(d, p)
    dq = rsa.rsa_crt_dmq1(d, q)
    qi = rsa.rsa_crt_iqmp(p, q)
    for member, expected in (("dp", dp), ("dq", dq), ("qi", qi)):
        if member in jwk and _jwk_int(jwk, member) != expected:
            raise ValueError(f"member {shown(member)} does not match d, p and q")
    if (e * d) % ((p - 1) * (q - 1) // gcd(p - 1, q - 1)) != 1:
        raise ValueError("private exponent d does not match n and e (inconsistent private key)")
    numbers = rsa.RSAPrivateNumbers(p, q, d, dp, dq, qi, rsa.RSAPublicNumbers(e, n))
    try:
        # OpenSSL's RSA key check (unless trusted): p and q prime, e*d == 1 mod lcm(p-1, q-1), CRT values.
        return numbers.private_key(unsafe_skip_rsa_key_validation=trusted)
    except ValueError:
        raise ValueError("private exponent d does not match n and e (inconsistent private key)") from None


def public_key_from_jwk(jwk: Mapping[str, Any]) -> Any:
    """Build a ``cryptography`` ``RSAPublicKey`` from an RSA JWK (``n``, ``e``).

    Raises:
        ValueError: when ``n``/``e`` are missing or malformed.
    """
    from cryptography.hazmat.primitives.asymmetric import rsa

    n, e = _jwk_int(jwk, "n"), _jwk_int(jwk, "e")
    try:
        return rsa.RSAPublicNumbers(e, n).public_key()
    except ValueError as exc:
        raise ValueError(f"not a usable RSA public key: {exc}") from None


def _pkcs1v15(alg: str) -> tuple[PKCS1v15, HashAlgorithm]:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    if alg not in SUPPORTED_ALGS:
        raise ValueError(f"alg {alg!r} is not RS256, RS384 or RS512")
    sha = hashes.SHA256() if alg == "RS256" else hashes.SHA384() if alg == "RS384" else hashes.SHA512()
    return padding.PKCS1v15(), sha


def rsa_signer(private_key: RSAPrivateKey, alg: str) -> Callable[[bytes], bytes]:
    """``sign(signing_input) -> signature``: RSASSA-PKCS1-v1_5 with the SHA-2 hash of ``alg`` (RFC 7518 section 3.3).

    Args:
        private_key: a ``cryptography`` ``RSAPrivateKey`` (see :func:`private_key_from_jwk`).
        alg: ``RS256``, ``RS384`` or ``RS512``.

    Raises:
        ValueError: another ``alg``.
    """
    pad, sha = _pkcs1v15(alg)
    sign = private_key.sign

    def signer(message: bytes) -> bytes:
        return sign(message, pad, sha)

    return signer


def rsa_verifier(public_key: RSAPublicKey, alg: str, *, many: bool = False) -> Callable[[bytes, bytes], bool]:
    """``verify(signing_input, signature) -> bool``: RSASSA-PKCS1-v1_5 with the hash of ``alg`` (RFC 7518 section 3.3).

    A signature of the wrong length or value is ``False``, never an exception.

    Args:
        public_key: a ``cryptography`` ``RSAPublicKey`` (see :func:`public_key_from_jwk`).
        alg: ``RS256``, ``RS384`` or ``RS512``.
        many: the verifier will check many signatures (``verify --batch``): see
            :func:`_recovering_verifier` (same verdicts, faster per signature, 2.5 ms more to start).

    Raises:
        ValueError: another ``alg``.
    """
    from cryptography.exceptions import InvalidSignature

    pad, sha = _pkcs1v15(alg)
    if many:
        return _recovering_verifier(public_key, alg, pad)
    verify = public_key.verify

    def verifier(message: bytes, signature: bytes) -> bool:
        try:
            verify(signature, message, pad, sha)
        except InvalidSignature:
            return False
        return True

    return verifier


#: The DER ``DigestInfo`` prefix of each hash in RSASSA-PKCS1-v1_5 signatures (RFC 8017 section 9.2,
#: note 1), and the hash's ``hashlib`` name.
_DIGEST_INFO = {
    "RS256": (bytes.fromhex("3031300d060960864801650304020105000420"), "sha256"),
    "RS384": (bytes.fromhex("3041300d060960864801650304020205000430"), "sha384"),
    "RS512": (bytes.fromhex("3051300d060960864801650304020305000440"), "sha512"),
}


def _recovering_verifier(public_key: RSAPublicKey, alg: str, pad: PKCS1v15) -> Callable[[bytes, bytes], bool]:
    """The verifier of :func:`rsa_verifier` for many signatures: RFC 8017 section 8.2.2 with its
    encode-and-compare step, as OpenSSL's own ``RSA_verify`` does it.

    The signature must be exactly the modulus' length (k bytes); ``cryptography``'s
    ``recover_data_from_signature`` applies the public key and checks the PKCS #1 v1.5 padding
    (``00 01 FF...FF 00``, at least 8 ``FF``); what it recovers must equal, byte for byte, the
    expected DER ``DigestInfo`` (fixed prefix, then the ``hashlib`` digest of the message). The
    same signatures are accepted as by ``RSAPublicKey.verify`` (``tests/test_keys.py`` checks crafted
    encodings against it), without that call's per-call set-up: about 1.5 us of the 20 us a
    2048-bit check takes. ``hashlib`` (OpenSSL's digests) costs 2.5 ms to import: one-token
    commands use ``verify``.
    """
    import hashlib

    from cryptography.exceptions import InvalidSignature

    prefix, hash_name = _DIGEST_INFO[alg]
    digest = getattr(hashlib, hash_name)
    size = (public_key.key_size + 7) // 8
    recover = public_key.recover_data_from_signature

    def verifier(message: bytes, signature: bytes) -> bool:
        if len(signature) != size:  # RFC 8017 8.2.2 step 1 (a leading zero byte may not be dropped)
            return False
        try:
            return bool(recover(signature, pad, None) == prefix + digest(message).digest())
        except InvalidSignature:
            return False

    return verifier


@lru_cache(maxsize=1)
def compromised_thumbprints() -> dict[str, str]:
    """Thumbprints of keys whose private half is public knowledge.

    Read from the package data ``prisme_keys/data/known-compromised-keys.json``; each
    thumbprint is recomputed from the listed JWK (RFC 7638), so the list cannot drift.

    Returns:
        ``{thumbprint: source description}``.
    """
    from importlib import resources

    raw = resources.files("prisme_keys").joinpath("data/known-compromised-keys.json").read_text("utf-8")
    out: dict[str, str] = {}
    for entry in json.loads(raw)["keys"]:
        out[thumbprint(entry["jwk"])] = entry.get("source", "known compromised key")
    return out


def compromised_reason(jwk: Mapping[str, Any]) -> str | None:
    """Why ``jwk`` must never be used (its private half is public), or ``None``."""
    try:
        tp = thumbprint(jwk)
    except ValueError:
        return None
    return compromised_thumbprints().get(tp)


def check_signing_jwk(jwk: Mapping[str, Any], *, generated: bool = False) -> None:
    """Validate a private JWK before it enters a key file (RSA, >= 2048 bits, consistent, not compromised).

    Args:
        generated: the key was just made by :func:`generate_jwk` (``cryptography``), so the
            costly consistency check (about 1 s for 4096 bits) is skipped; size and the
            known-compromised list are still checked.

    Raises:
        KeyFileError: naming what is wrong.
    """
    if generated:
        bits = key_bits(jwk)
    else:
        try:
            bits = private_key_from_jwk(jwk).key_size
        except ValueError as exc:
            raise KeyFileError(f"key {shown(jwk.get('kid'))} is unusable: {exc}") from None
    if bits < MIN_BITS:
        raise KeyFileError(f"key {shown(jwk.get('kid'))} has {bits} bits; at least {MIN_BITS} are required")
    reason = compromised_reason(jwk)
    if reason:
        raise KeyFileError(f"key {shown(jwk.get('kid'))} is on the known-compromised list ({reason})")
