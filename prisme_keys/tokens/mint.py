"""Minting tokens the way the reference gateway's anonymous login does.

Header ``{"typ":"jwt","alg","kid"}``, claims ``{exp, iat, sub, iss, aud, prismeaiSessionId}``
(RFC 7519 NumericDates), signed with RSASSA-PKCS1-v1_5 (RFC 7518 section 3.3) by the key
file's signing key.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prisme_keys import clock
from prisme_keys.errors import InvalidArgument, UsageError
from prisme_keys.jwk import SUPPORTED_ALGS, check_kid
from prisme_keys.store import settings_checks
from prisme_keys.text import shown
from prisme_keys.tokens.jws import (
    MAX_NUMERIC_DATE,
    MIN_NUMERIC_DATE,
    STRING_CLAIMS,
    TIME_CLAIMS,
    numeric_date_problem,
    show_value,
    string_claim_problem,
)
from prisme_keys.tokens.workers import check_workers, close_pool, thread_pool

if TYPE_CHECKING:
    from concurrent.futures import Future

#: Tokens one thread of the pool signs at a time (``mint`` with workers and more than one token).
SIGN_CHUNK = 32


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
    """Signs JWS with one private RSA JWK from the key file; the key object is built once per signer.

    The key is trusted (:func:`prisme_keys.jwk.private_key_from_jwk` with ``trusted=True``): it was
    validated fully when it entered the key file. Signatures are RSASSA-PKCS1-v1_5 (RFC 7518
    section 3.3) straight from ``cryptography``.

    Attributes:
        kid, alg: header values; ``header``: the fixed header ``{"typ":"jwt","alg","kid"}``.
    """

    def __init__(self, jwk: Mapping[str, Any], alg: str) -> None:
        from prisme_keys.jwk import private_key_from_jwk, rsa_signer

        if alg not in SUPPORTED_ALGS:
            from prisme_keys.errors import KeyFileError

            raise KeyFileError(
                f"key {shown(jwk.get('kid'))} has alg {shown(alg)}; mint signs with RS256, RS384 or RS512"
            )
        self.kid = jwk.get("kid")
        self.alg = alg
        self._sign = rsa_signer(private_key_from_jwk(jwk, trusted=True), alg)
        self.header = {"typ": "jwt", "alg": alg, "kid": self.kid}
        self._prefix = _b64e(json.dumps(self.header, separators=(",", ":")).encode()) + "."

    def sign(self, claims: dict[str, Any]) -> str:
        """The compact JWS of ``claims`` (JSON without spaces, UTF-8)."""
        si = self.signing_input(claims)
        return si + "." + self.signature(si)

    def signing_input(self, claims: dict[str, Any]) -> str:
        """``BASE64URL(header) "." BASE64URL(claims)`` (RFC 7515 section 5.1), claims as JSON without spaces."""
        return self._prefix + _b64e(
            json.dumps(claims, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
        )

    def signature(self, signing_input: str) -> str:
        """The base64url signature of ``signing_input`` (safe to call from several threads at once)."""
        return _b64e(self._sign(signing_input.encode("ascii")))


def signer_for(jwk: Mapping[str, Any], alg: str) -> Signer:
    """The :class:`Signer` of ``jwk`` (a trusted key from the key file: about 0.1 ms at 2048 bits,
    under 1 ms at 4096 bits, so nothing is cached between calls).

    Raises:
        KeyFileError: the key is unusable (inconsistent members) or its alg is not RS*.
    """
    return build_signer(jwk, alg)


def build_signer(jwk: Mapping[str, Any], alg: str) -> Signer:
    """A new :class:`Signer` of ``jwk``, a key already validated (when it entered the key file, or by
    the caller: ``api.Minter.from_jwk`` checks it fully first); the primality tests are skipped.

    Raises:
        KeyFileError: the key is unusable (inconsistent members) or its alg is not RS*.
    """
    try:
        return Signer(jwk, alg)
    except ValueError as exc:
        from prisme_keys.errors import KeyFileError

        raise KeyFileError(f"key {shown(jwk.get('kid'))} cannot sign: {exc}") from None


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

    def close(self) -> None:
        """Stop minting: the tokens not yet taken are not made; with workers, the pending signatures
        are cancelled and the threads joined (iterating to the end does the same)."""
        close = getattr(self.tokens, "close", None)
        if close is not None:
            close()


def check_options(o: MintOptions) -> None:
    """Refuse option values no token can come from: the one home of mint's option rules (CLI and API).

    Rules: ``lifetime`` and ``not_before`` are ``None`` or whole seconds of 0 or more (0 mints an
    already expired token, with a warning); ``count`` a whole number of 1 or more; ``kid`` a kid
    :func:`prisme_keys.jwk.kid_problem` accepts; ``session_id`` only with one token.

    Raises:
        InvalidArgument: naming the option and what is wrong (exit 2).
    """
    for name in ("lifetime", "not_before"):
        v = getattr(o, name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            field = "{{{}}}".format(name)  # noqa: UP032 - "{lifetime}": the argument, worded by the front end
            raise InvalidArgument(
                name, field + " must be a whole number of seconds, 0 or more, not {value}", value=shown(v)
            )
    if isinstance(o.count, bool) or not isinstance(o.count, int):
        raise InvalidArgument("count", "{count} must be a whole number, not {value}", value=shown(o.count))
    if o.kid is not None:
        check_kid(o.kid)
    if o.count < 1:
        raise InvalidArgument("count", "{count} must be 1 or more")
    if o.session_id is not None and o.count > 1:
        raise InvalidArgument(
            "session_id", "{session_id} cannot be combined with {count} above 1 (each token gets its own session)"
        )


def check_claims(claims: dict[str, Any]) -> None:
    """Refuse claims ``verify`` would reject as malformed whenever it runs, before anything is signed.

    Rules: every name and value is JSON text that UTF-8 can carry (no NaN, Infinity, 1e400, lone
    surrogates from undecodable command-line bytes); ``exp``, ``nbf``, ``iat`` are NumericDates between
    the years 1 and 9999 (:func:`prisme_keys.tokens.jws.numeric_date_problem`, verify's own rule);
    ``iss``, ``sub``, ``jti`` are non-empty strings and ``aud`` a non-empty string or a list of them
    (RFC 7519 section 4.1).

    Raises:
        UsageError: naming the claim and what is wrong.
    """
    for name, value in claims.items():
        try:
            json.dumps({name: value}, allow_nan=False, ensure_ascii=False).encode("utf-8")
        except (ValueError, RecursionError) as exc:
            if isinstance(exc, UnicodeEncodeError):
                raise UsageError(f"claim {shown(name)} is not valid UTF-8 text (undecodable bytes)") from None
            raise UsageError(
                f"claim {shown(name)}: {show_value(value)} is not representable in JSON (NaN, Infinity or a "
                "number out of range such as 1e400)"
            ) from None
    for name in TIME_CLAIMS:
        problem = numeric_date_problem(claims[name]) if name in claims else None
        if problem:
            raise UsageError(f"claim {shown(name)} {problem}; verify would reject the token, nothing was signed")
    for name in STRING_CLAIMS:
        problem = string_claim_problem(name, claims[name], empty=False) if name in claims else None
        if problem:
            raise UsageError(f"claim {shown(name)} {problem}")


@dataclass
class _Plan:
    """The checked shape of one mint's tokens: ``claims_of(sub, session_id)`` builds each token's claims."""

    claims_of: Callable[[str, str], dict[str, Any]]
    anonymous_prefix: str
    warnings: list[str]
    missing: list[str]


def _warnings(settings: Any, o: MintOptions, lifetime: int) -> list[str]:
    warnings: list[str] = []
    if lifetime <= 0 and not o.expired and "exp" not in o.claims:
        warnings.append(f"lifetime {lifetime} s: the token is already expired")
    elif o.not_before is not None and o.not_before >= lifetime and not o.expired and not {"exp", "nbf"} & set(o.claims):
        warnings.append(
            f"not-before {o.not_before} s is not within the lifetime ({lifetime} s): the token will never be valid"
        )
    too_long = settings_checks.lifetime_finding(settings, lifetime)
    if too_long is not None:
        warnings.append(too_long.line())
    return warnings


def _plan(settings: Any, now: datetime, o: MintOptions) -> _Plan:
    """Check everything about the tokens before any key is read: whatever is signed, ``verify`` accepts.

    Raises:
        InvalidArgument: :func:`check_options` rules.
        UsageError: a lifetime past the year 9999, claims :func:`check_claims` refuses.
    """
    check_options(o)
    lifetime = o.lifetime if o.lifetime is not None else settings.access_tokens_max_age
    iss = o.iss if o.iss is not None else settings.oidc_provider_url
    aud = o.aud if o.aud else ([settings.api_url] if settings.api_url else None)
    warnings = _warnings(settings, o, lifetime)
    missing = [name for name, value in (("iss", iss), ("aud", aud)) if value is None]
    ts = clock.to_numeric_date(now)
    exp, iat = (ts - 60, ts - 60 - lifetime) if o.expired else (ts + lifetime, ts)
    aud_value: Any = None if aud is None else (aud[0] if len(aud) == 1 else list(aud))
    extra = dict(o.claims)

    def claims_of(sub: str, session_id: str) -> dict[str, Any]:
        claims: dict[str, Any] = {"exp": exp, "iat": iat}
        if o.not_before is not None:
            claims["nbf"] = iat + o.not_before
        claims["sub"] = sub
        if iss is not None:
            claims["iss"] = iss
        if aud_value is not None:
            claims["aud"] = aud_value
        claims["prismeaiSessionId"] = session_id
        if extra:
            claims.update(extra)
        return claims

    if "exp" not in extra and numeric_date_problem(exp) and exp < MIN_NUMERIC_DATE:
        raise UsageError(
            f"an expired token's exp ({exp}, one minute before now) would be before the year 1; nothing was signed"
        )
    if "exp" not in extra and numeric_date_problem(exp):
        raise UsageError(
            f"lifetime {lifetime} s puts exp after the year 9999 (at most {MAX_NUMERIC_DATE - 1 - iat} s from "
            "now); nothing was signed"
        )
    prefix = ts.to_bytes(4, "big").hex() if 0 <= ts < 2**32 else "00000000"
    template = claims_of(o.sub if o.sub is not None else prefix + "0" * 16, o.session_id or "0" * 36)
    check_claims(template)
    start = max(template["iat"], template.get("nbf", template["iat"]))
    if template["exp"] <= start and not any("expired" in w or "never be valid" in w for w in warnings):
        warnings.append(f"exp {template['exp']} is not after iat/nbf {start}: the token will never be valid")
    return _Plan(claims_of, prefix, warnings, missing)


def mint(
    settings: Any,
    now: datetime,
    options: MintOptions | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    workers: int = 1,
) -> MintRun:
    """Mint tokens as the gateway would issue them.

    Without ``sub``: exactly an anonymous-login token: header ``{"typ":"jwt","alg","kid"}``,
    claims ``{exp, iat, sub, iss, aud, prismeaiSessionId}`` with a fresh unique ``sub``
    (24 hex digits, like the gateway's user ids) and a UUIDv4 session id. Times are
    NumericDates (RFC 7519 section 2) in whole seconds.

    Everything about the tokens is checked first (:func:`check_claims`: whatever is signed,
    ``verify`` accepts inside the token's validity window); then the private key comes from
    :func:`lifecycle.signing_jwk` and becomes a key object once per call (:func:`signer_for`),
    trusted as the key file holds it.

    Args:
        settings: effective settings (issuer, audience, max age, key file).
        now: issue time.
        options: :class:`MintOptions`.
        progress: called as ``progress(done, count)`` after each token is signed.
        workers: threads that make the RSA signatures when ``count`` is above 1 (1 to
            :data:`~prisme_keys.tokens.workers.MAX_WORKERS`; 1, the default: the calling thread,
            no pool). The claims are made in the calling thread, in order, and the tokens come
            in that order; the pool lives while the tokens are iterated (see :meth:`MintRun.close`).

    Raises:
        KeyFileError: no key file, no signing key, unknown ``kid``, no private key.
        InvalidArgument: ``count`` below 1, ``session_id`` with ``count`` above 1, ``workers`` out of range.
        UsageError: claims ``verify`` would reject at any time (nothing is read or signed then).
    """
    from prisme_keys.store import lifecycle

    o = options or MintOptions()
    plan = _plan(settings, now, o)
    check_workers(workers)
    rec, jwk = lifecycle.signing_jwk(settings, now, o.kid)
    run = _sign(plan, signer_for(jwk, jwk.get("alg") or settings.alg), o, progress, workers)
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
        InvalidArgument, UsageError: as :func:`mint`.
    """
    o = options or MintOptions()
    return _sign(_plan(settings, now, o), signer, o, progress)


def _sign(
    plan: _Plan,
    signer: Signer,
    o: MintOptions,
    progress: Callable[[int, int | None], None] | None,
    workers: int = 1,
) -> MintRun:
    import os
    import uuid

    def each_claims() -> Iterator[dict[str, Any]]:  # built here, in order, in the calling thread
        urandom, uuid4, claims_of = os.urandom, uuid.uuid4, plan.claims_of
        for _ in range(o.count):
            yield claims_of(
                o.sub if o.sub is not None else plan.anonymous_prefix + urandom(8).hex(),
                o.session_id if o.session_id is not None else str(uuid4()),
            )

    if workers > 1 and o.count > 1:
        tokens = _signed_in_pool(signer, each_claims(), o.count, progress, workers)
    else:
        tokens = _signed_one_by_one(signer, each_claims(), o.count, progress)
    return MintRun(str(signer.kid), signer.alg, plan.warnings, tokens, plan.missing)


def _signed_one_by_one(
    signer: Signer, claims: Iterator[dict[str, Any]], count: int, progress: Callable[[int, int | None], None] | None
) -> Iterator[Minted]:
    for i, c in enumerate(claims, 1):
        minted = Minted(signer.sign(c), signer.header, c)
        if progress is not None:
            progress(i, count)
        yield minted


def _signed_in_pool(
    signer: Signer,
    claims: Iterator[dict[str, Any]],
    count: int,
    progress: Callable[[int, int | None], None] | None,
    workers: int,
) -> Iterator[Minted]:
    """The tokens of ``claims`` in order, their RSA signatures made by a pool of ``workers`` threads.

    The signing inputs are made here; the pool signs chunks of :data:`SIGN_CHUNK` of them, at most
    two chunks per thread ahead of the token being yielded (flat memory). The pool is made at the
    first token and closed (pending chunks cancelled, threads joined) when the iterator ends, fails
    or is closed.
    """
    from collections import deque
    from itertools import islice

    def sign_all(inputs: list[str]) -> list[str]:
        signature = signer.signature
        return [signature(si) for si in inputs]

    window: deque[tuple[list[dict[str, Any]], list[str], Future[list[str]]]] = deque()
    done = 0
    pool = thread_pool(min(workers, -(-count // SIGN_CHUNK)))
    try:
        while True:
            while len(window) < 2 * workers:
                chunk = list(islice(claims, SIGN_CHUNK))
                if not chunk:
                    break
                inputs = [signer.signing_input(c) for c in chunk]
                window.append((chunk, inputs, pool.submit(sign_all, inputs)))
            if not window:
                return
            chunk, inputs, fut = window.popleft()
            for c, si, sig in zip(chunk, inputs, fut.result(), strict=True):
                done += 1
                if progress is not None:
                    progress(done, count)
                yield Minted(si + "." + sig, signer.header, c)
    finally:
        close_pool(pool)
