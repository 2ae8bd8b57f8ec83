"""Verification keys: the usable RSA keys of a JWK Set, chosen by kid, ``kty``, ``use`` and ``alg``.

A :class:`KeySource` yields a :class:`KeyRing`; sources are the key file's public set, a JWKS
file (:func:`jwks_file_source`) or a JWKS URL (:class:`prisme_keys.tokens.jwks_client.UrlKeySource`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from prisme_keys.errors import FetchError, Worded
from prisme_keys.jwk import PRIVATE_MEMBERS, SUPPORTED_ALGS, thumbprint
from prisme_keys.store.revocation import RevokedKeys, revoked_keys
from prisme_keys.text import decode_utf8, json_error, read_capped, shown
from prisme_keys.tokens.jws import B64URL_RE, show_value


class KeyEntry:
    """A public RSA key able to verify signatures.

    Attributes:
        kid: key id, or ``None``.
        alg: the JWK's ``alg``, or ``None`` (then any allowed RS* algorithm).
        bits: modulus size in bits.
        key: the ``cryptography`` ``RSAPublicKey`` (built once per key ring).
        n, e: the JWK's modulus and exponent (base64url), for :attr:`thumbprint`.
    """

    __slots__ = ("_thumbprint", "_verifiers", "alg", "bits", "e", "key", "kid", "n")

    def __init__(self, kid: str | None, alg: str | None, bits: int, key: Any, n: str = "", e: str = "") -> None:
        self.kid, self.alg, self.bits, self.key, self.n, self.e = kid, alg, bits, key, n, e
        self._verifiers: dict[tuple[str, bool], Callable[[bytes, bytes], bool]] = {}
        self._thumbprint: list[str | None] = []

    def __repr__(self) -> str:
        return f"KeyEntry(kid={self.kid!r}, alg={self.alg!r}, bits={self.bits})"

    @property
    def thumbprint(self) -> str | None:
        """The key's RFC 7638 SHA-256 thumbprint (``None`` when it cannot be computed), computed on
        first use: only a key file with revocations needs it."""
        if not self._thumbprint:
            self._thumbprint.append(_thumbprint(self.n, self.e))
        return self._thumbprint[0]

    def verifier(self, alg: str, *, many: bool = False) -> Callable[[bytes, bytes], bool]:
        """``verify(signing_input, signature) -> bool`` for ``alg`` (RS256/RS384/RS512), built once per entry.

        RSASSA-PKCS1-v1_5 (RFC 7518 section 3.3) straight from ``cryptography``
        (:func:`prisme_keys.jwk.rsa_verifier`; ``many``: for checking many signatures).
        """
        v = self._verifiers.get((alg, many))
        if v is None:
            from prisme_keys.jwk import rsa_verifier

            v = self._verifiers[(alg, many)] = rsa_verifier(self.key, alg, many=many)
        return v


def _public_key(n: str, e: str) -> tuple[Any, int]:
    """The ``cryptography`` RSA public key of ``n``/``e`` and its size in bits (built per key ring)."""
    from prisme_keys.jwk import public_key_from_jwk

    key = public_key_from_jwk({"n": n, "e": e})
    return key, key.key_size


def _thumbprint(n: str, e: str) -> str | None:
    try:
        return thumbprint({"kty": "RSA", "n": n, "e": e})
    except ValueError:
        return None


_PRIVATE = PRIVATE_MEMBERS


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
        chosen: candidate keys by ``(kid, alg)``, memoized by ``verify`` (the ring never changes).
    """

    def __init__(self, doc: Any, source: str = "the key set") -> None:
        self.source = source
        self.entries: list[KeyEntry] = []
        self.kids: list[str] = []
        self.skipped: dict[str, str] = {}
        self.warnings: list[str] = []
        self.chosen: dict[tuple[str | None, str], list[KeyEntry]] = {}
        keys_ = doc.get("keys") if isinstance(doc, dict) else None
        if not isinstance(keys_, list):
            raise FetchError(f'{source} is not a JWK Set (no "keys" array)', code="not_a_jwk_set")
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
        label = f"key {shown(kid)}" if kid is not None else f"key #{i + 1} (no kid)"
        if kid is not None:
            self.kids.append(kid)
        reason = self._unusable(jwk)
        if reason is None:
            n, e = jwk["n"], jwk["e"]
            if n.endswith("=") or e.endswith("="):
                self.warnings.append(
                    f"{label} of {self.source}: n/e carry '=' padding (RFC 7518 section 6.3.1 "
                    "wants unpadded base64url); accepted"
                )
            try:
                key, bits = _public_key(n, e)
            except ValueError as exc:
                reason = str(exc)
            else:
                self.entries.append(KeyEntry(kid, jwk.get("alg"), bits, key, n, e))
        if reason is not None:
            self.warnings.append(f"skipping {label} of {self.source}: {reason}")
            if kid is not None:
                self.skipped.setdefault(kid, reason)

    @staticmethod
    def _unusable(jwk: dict[str, Any]) -> str | None:
        kty = jwk.get("kty")
        if kty != "RSA":
            return f"kty {show_value(kty)} is not RSA" if kty is not None else "no kty"
        use = jwk.get("use")
        if use is not None and use != "sig":
            return f'use {show_value(use)} is not "sig" (an encryption key)'
        ops = jwk.get("key_ops")
        if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
            return f'key_ops {show_value(ops)} does not allow "verify"'
        alg = jwk.get("alg")
        if alg is not None and alg not in SUPPORTED_ALGS:
            return f"alg {show_value(alg)} is not RS256, RS384 or RS512"
        if "n" not in jwk or "e" not in jwk:
            if "x5c" in jwk or "x5u" in jwk:
                return "certificate-only key (x5c without n and e) is not supported"
            return "missing " + " and ".join(m for m in ("n", "e") if m not in jwk)
        for m in ("n", "e"):
            v = jwk[m]
            if not isinstance(v, str) or not v.rstrip("="):
                return f"member {shown(m)} is not a base64url string"
            if not B64URL_RE.fullmatch(v.rstrip("=")) or len(v.rstrip("=")) % 4 == 1:
                return f"member {shown(m)} is not base64url"
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
        revoked: the key file's revoked keys, refused by ``verify`` whatever the source serves
            (set by :func:`prisme_keys.tokens.verify.open_source`; ``None``: none known).
    """

    description = "the key set"
    revoked: RevokedKeys | None = None

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
            self._pending.append(
                f"{description} publishes private key members (kids: {', '.join(leaked)}); a public JWKS must not"
            )

    def ring(self) -> KeyRing:
        return self._ring

    def take_warnings(self) -> list[str]:
        out, self._pending = self._pending, []
        return out


#: Largest JWK Set read from a file or a URL, bytes, unless the caller gives another cap.
DEFAULT_MAX_BYTES = 1 << 20
_FILE_TOO_LARGE = "JWKS file {path} is larger than the limit of {limit} bytes ({max_bytes})"


def keyfile_source(settings: Any) -> StaticKeySource:
    """The public keys of the key file named by ``settings``, with its revoked keys (:attr:`KeySource.revoked`).

    Raises:
        KeyFileError: missing, corrupt or unsafe key file, or a malformed revocation list.
    """
    from prisme_keys.store import lifecycle

    kf = lifecycle.open_keyfile(settings)
    keyset = kf.load()
    source = StaticKeySource(lifecycle.public_jwks(keyset.records), f"key file {settings.key_file}")
    source.revoked = revoked_keys(keyset, kf.path)
    return source


def jwks_file_source(path: str, raw: bytes | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> StaticKeySource:
    """A JWK Set read from a file (or given as ``raw`` bytes, e.g. read from stdin by the caller).

    Args:
        path: the file's name (also used in messages; ``-`` for stdin).
        raw: the file's content, when the caller has read it already (at most ``max_bytes + 1``
            bytes are needed to tell a too-large input).
        max_bytes: the largest JWK Set accepted, bytes (the cap of a JWKS URL's body, 1 MiB by
            default); reading stops past it, so ``/dev/zero`` ends at once.

    Raises:
        FetchError: unreadable file, larger than ``max_bytes`` (code ``too_large``), not JSON, or
            not a JWK Set (exit 9).
    """
    if raw is None:
        try:
            raw = read_capped(path, max_bytes)
        except OSError as exc:
            raise FetchError(f"cannot read JWKS file {path}: {exc.strerror or exc}") from None
    if len(raw) > max_bytes:
        raise FetchError(Worded(_FILE_TOO_LARGE, path=path, limit=max_bytes), code="too_large")
    try:
        doc = json.loads(decode_utf8(raw))  # a leading BOM is accepted
    except UnicodeDecodeError:
        raise FetchError(f"JWKS file {path} is not UTF-8 text", code="not_json") from None
    except json.JSONDecodeError as exc:
        raise FetchError(f"JWKS file {path} is not JSON: {json_error(exc)}", code="not_json") from None
    except ValueError as exc:
        raise FetchError(f"JWKS file {path} is not JSON: {exc}", code="not_json") from None
    except RecursionError:
        raise FetchError(f"JWKS file {path} is not JSON: nested too deeply", code="not_json") from None
    if isinstance(doc, dict) and "kty" in doc and "keys" not in doc:
        raise FetchError(
            f'JWKS file {path} holds a single JWK, not a JWK Set; wrap it as {{"keys": [...]}}', code="not_a_jwk_set"
        )
    return StaticKeySource(doc, f"JWKS file {path}")
