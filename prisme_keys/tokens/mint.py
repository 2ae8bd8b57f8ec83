"""Minting tokens the way the reference gateway's anonymous login does.

Header ``{"typ":"jwt","alg","kid"}``, claims ``{exp, iat, sub, iss, aud, prismeaiSessionId}``
(RFC 7519 NumericDates), signed with RSASSA-PKCS1-v1_5 (RFC 7518 section 3.3) by the key
file's signing key.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prisme_keys import clock
from prisme_keys.errors import UsageError
from prisme_keys.jwk import SUPPORTED_ALGS
from prisme_keys.store import settings_checks
from prisme_keys.text import json_error, strip_bom
from prisme_keys.tokens.jws import no_json_constants, show_value
from prisme_keys.tokens.keyring import jose_key


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
        from prisme_keys.jwk import private_key_from_jwk

        if alg not in SUPPORTED_ALGS:
            from prisme_keys.errors import KeyFileError

            raise KeyFileError(f"key {jwk.get('kid')!r} has alg {alg!r}; mint signs with RS256, RS384 or RS512")
        self.kid = jwk.get("kid")
        self.alg = alg
        self.key = jose_key(private_key_from_jwk(jwk), alg)
        self.header = {"typ": "jwt", "alg": alg, "kid": self.kid}
        self._prefix = _b64e(json.dumps(self.header, separators=(",", ":")).encode()) + "."

    def sign(self, claims: dict[str, Any]) -> str:
        """The compact JWS of ``claims`` (JSON without spaces, UTF-8)."""
        si = self._prefix + _b64e(
            json.dumps(claims, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
        )
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
        s = _SIGNERS[ck] = build_signer(jwk, alg)
    return s


def build_signer(jwk: dict[str, Any], alg: str) -> Signer:
    """A new :class:`Signer` of ``jwk`` (not cached: for keys held in memory only).

    Raises:
        KeyFileError: the key is unusable (inconsistent members) or its alg is not RS*.
    """
    try:
        return Signer(jwk, alg)
    except ValueError as exc:
        from prisme_keys.errors import KeyFileError

        raise KeyFileError(f"key {jwk.get('kid')!r} cannot sign: {exc}") from None


@dataclass
class MintRun:
    """Result of :func:`mint`: the signing kid, warnings, and the tokens (a lazy iterator).

    Attributes:
        warnings: one line each, about the lifetime.
        missing: the claims the gateway requires that the tokens lack because no value was
            given nor configured: ``"iss"`` (``OIDC_PROVIDER_URL`` unset) and/or ``"aud"``
            (``API_URL`` unset), in that order.
    """

    kid: str
    alg: str
    warnings: list[str]
    tokens: Iterator[Minted]
    missing: list[str] = field(default_factory=list)


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
            out[k] = json.loads(v, parse_constant=no_json_constants)
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
        doc = json.loads(strip_bom(text))  # a leading BOM is accepted
    except json.JSONDecodeError as exc:
        raise UsageError(f"--claims {where}: not JSON: {json_error(exc)}") from None
    except ValueError as exc:
        raise UsageError(f"--claims {where}: not JSON: {exc}") from None
    except RecursionError:
        raise UsageError(f"--claims {where}: not JSON: nested too deeply") from None
    if not isinstance(doc, dict):
        raise UsageError(f"--claims {where}: a JSON object is required, got {type(doc).__name__}")
    return doc


def _check_counts(o: MintOptions) -> None:
    if o.count < 1:
        raise UsageError("--count must be 1 or more")
    if o.session_id is not None and o.count > 1:
        raise UsageError("--session-id cannot be combined with --count above 1 (each token gets its own session)")


def mint(
    settings: Any,
    now: datetime,
    options: MintOptions | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> MintRun:
    """Mint tokens as the gateway would issue them.

    Without ``sub``: exactly an anonymous-login token: header ``{"typ":"jwt","alg","kid"}``,
    claims ``{exp, iat, sub, iss, aud, prismeaiSessionId}`` with a fresh unique ``sub``
    (24 hex digits, like the gateway's user ids) and a UUIDv4 session id. Times are
    NumericDates (RFC 7519 section 2) in whole seconds.

    The private key comes from :func:`lifecycle.signing_jwk` and becomes a key object once
    per process (:func:`signer_for`); the tokens are shaped by :func:`mint_with`.

    Args:
        settings: effective settings (issuer, audience, max age, key file).
        now: issue time.
        options: :class:`MintOptions`.
        progress: called as ``progress(done, count)`` after each token is signed.

    Raises:
        KeyFileError: no key file, no signing key, unknown ``kid``, no private key.
        UsageError: ``count`` below 1, or ``session_id`` with ``count`` above 1.
    """
    from prisme_keys.store import lifecycle

    o = options or MintOptions()
    _check_counts(o)
    rec, jwk = lifecycle.signing_jwk(settings, now, o.kid)
    run = mint_with(signer_for(jwk, jwk.get("alg") or settings.alg), settings, now, o, progress)
    run.kid = rec["kid"]
    return run


def mint_with(
    signer: Signer,
    settings: Any,
    now: datetime,
    options: MintOptions | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> MintRun:
    """Mint tokens as :func:`mint` does, signed by ``signer`` (no key-file read).

    For callers that mint many tokens one at a time in-process with a key loaded once
    (:class:`prisme_keys.api.Minter`, the pytest plugin). ``options.kid`` is not used: the
    signer is the key. ``progress(done, count)`` is called after each token is signed.

    Raises:
        UsageError: ``count`` below 1, ``session_id`` with ``count`` above 1, or a claim not
            representable in JSON.
    """
    import os
    import uuid

    o = options or MintOptions()
    _check_counts(o)
    alg = signer.alg
    warnings: list[str] = []
    lifetime = o.lifetime if o.lifetime is not None else settings.access_tokens_max_age
    if lifetime <= 0 and not o.expired and "exp" not in o.claims:
        warnings.append(f"lifetime {lifetime} s: the token is already expired")
    elif o.not_before is not None and o.not_before >= lifetime and not o.expired and not {"exp", "nbf"} & set(o.claims):
        warnings.append(
            f"not-before {o.not_before} s is not within the lifetime ({lifetime} s): the token will never be valid"
        )
    too_long = settings_checks.lifetime_finding(settings, lifetime)
    if too_long is not None:
        warnings.append(too_long.line())
    iss = o.iss if o.iss is not None else settings.oidc_provider_url
    aud = o.aud if o.aud else ([settings.api_url] if settings.api_url else None)
    missing = [name for name, value in (("iss", iss), ("aud", aud)) if value is None]
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
            raise UsageError(
                f"claim {name!r}: {show_value(value)} is not representable in JSON (NaN, Infinity or a "
                "number out of range such as 1e400)"
            ) from None

    def gen() -> Iterator[Minted]:
        urandom, uuid4 = os.urandom, uuid.uuid4
        for i in range(o.count):
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
            minted = Minted(signer.sign(claims), signer.header, claims)
            if progress is not None:
                progress(i + 1, o.count)
            yield minted

    return MintRun(str(signer.kid), alg, warnings, gen(), missing)
