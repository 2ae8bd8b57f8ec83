"""The public Python API of prisme-keys: the operations of the command line as typed functions.

The command line (:mod:`prisme_keys.cli`) is a thin shell over these functions, and the pytest
plugin uses them too. Every function takes the effective :class:`~prisme_keys.settings.Settings`
(see :func:`load_settings`) and, where time matters, ``now``: an aware
:class:`~datetime.datetime` (default: the real clock), used in UTC; a naive datetime is refused
(:class:`~prisme_keys.errors.UsageError`), never guessed as local time or UTC. Errors are
:class:`~prisme_keys.errors.PrismeKeysError` subclasses; each carries a stable ``code`` and the
command line's ``exit_code``.

Example::

    from prisme_keys import api

    settings = api.load_settings({"key_file": "keys.json"})
    api.init(settings)                       # first signing key (RFC 7638 thumbprint as kid)
    token = api.mint(settings, sub="alice")  # compact JWS, RS256, gateway claims
    result = api.verify(token, settings)     # against the key file's public keys
    assert result.claims["sub"] == "alice"
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from prisme_keys import clock
from prisme_keys import jwk as jwk_rules
from prisme_keys.errors import UsageError
from prisme_keys.jwk import RSAJwk
from prisme_keys.settings import Settings
from prisme_keys.settings import from_values as _settings_from
from prisme_keys.settings import load as _load_settings
from prisme_keys.store import lifecycle, revocation, settings_checks
from prisme_keys.store.keyfile import KeyFile
from prisme_keys.store.records import KeyRecord
from prisme_keys.text import shown
from prisme_keys.tokens import jwks_client
from prisme_keys.tokens import mint as minter
from prisme_keys.tokens import verify as verifier
from prisme_keys.tokens.jws import Decoded, clean_token, split
from prisme_keys.tokens.jws import decode as _decode
from prisme_keys.tokens.mint import MintOptions
from prisme_keys.tokens.verify import VerifyOptions, VerifyResult

__all__ = [
    "Decoded",
    "KeyRecord",
    "MintOptions",
    "Minter",
    "RSAJwk",
    "Settings",
    "VerifyOptions",
    "VerifyResult",
    "check_settings",
    "decode",
    "export",
    "fetch_jwks",
    "init",
    "list_keys",
    "load_settings",
    "mint",
    "mint_many",
    "open_keyfile",
    "plan",
    "open_minter",
    "prune",
    "revoke",
    "rotate",
    "settings_from",
    "verify",
]


def _now(now: datetime | None) -> datetime:
    """``now`` checked (an aware datetime, returned in UTC), or the real clock when ``None``.

    A naive datetime is refused rather than guessed: local time or UTC would differ by hours.

    Raises:
        UsageError: not a datetime, or a naive one (exit 2).
    """
    if now is None:
        return clock.now()
    if not isinstance(now, datetime):
        raise UsageError(f"now must be a datetime, not {type(now).__name__}")
    if now.utcoffset() is None:
        raise UsageError(
            f"now {now.isoformat()} is a naive datetime: give an aware one, e.g. datetime.now(timezone.utc)"
        )
    return now.astimezone(UTC)


def _token(token: Any) -> str | bytes:
    """``token`` when it is ``str`` or ``bytes``.

    Raises:
        UsageError: any other type (exit 2).
    """
    if not isinstance(token, (str, bytes)):
        raise UsageError(f"token must be str or bytes (a compact JWS), not {type(token).__name__}")
    return token


def _mint_options(options: Mapping[str, Any]) -> MintOptions:
    """:class:`MintOptions` from keyword arguments, checked by :func:`prisme_keys.tokens.mint.check_options`.

    Raises:
        UsageError: an unknown option name, a value mint refuses (exit 2).
    """
    known = [f.name for f in dataclasses.fields(MintOptions)]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise UsageError(f"unknown mint option {shown(unknown[0])}; known: {', '.join(known)}")
    o = MintOptions(**options)
    minter.check_options(o)
    return o


def load_settings(flags: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """The effective settings: ``flags`` > ``environ`` (default ``os.environ``) > config file > defaults.

    Args:
        flags: ``{key_file, config_path, passphrase_file}`` (paths; ``None`` values are ignored).
        environ: the environment to read ``JWKS_*``, ``ACCESS_TOKENS_MAX_AGE``, ``PRISME_KEYS_*`` from.

    Raises:
        ConfigError: a bad value or an unreadable config file (exit 3).
    """
    return _load_settings(flags, environ)


def settings_from(values: Mapping[str, Any], sources: Mapping[str, str] | None = None) -> Settings:
    """Settings from explicit values only: no config file, no environment (e.g. a throwaway test key set).

    Args:
        values: by TOML setting name (``key_file``, ``alg``, ``size`` in bits,
            ``access_tokens_max_age`` in seconds, ``oidc_provider_url``, ``api_url``...), each
            parsed by its setting's own rule; ``None`` keeps the default.
        sources: where each value came from (``"env:API_URL"``...), named in error messages.

    Raises:
        ConfigError: an unknown setting name or a bad value (exit 3).
    """
    return _settings_from(values, sources)


def open_keyfile(settings: Settings) -> KeyFile:
    """The key file named by ``settings`` (not read yet), with its lock and passphrase source."""
    return lifecycle.open_keyfile(settings)


def init(settings: Settings, now: datetime | None = None) -> lifecycle.InitResult:
    """Create the key file with its first signing key (``settings.size`` bits, ``settings.alg``).

    Raises:
        KeyFileError: the file exists, or cannot be written (exit 4).
    """
    return lifecycle.init(settings, _now(now))


def rotate(
    settings: Settings, now: datetime | None = None, *, force: bool = False, dry_run: bool = False
) -> lifecycle.RotateResult:
    """Add a new signing key when rotation is due (``now >= rotatesAt``), under the key-file lock.

    Raises:
        KeyFileError: missing, corrupt or unsafe key file, lock timeout (exit 4).
    """
    return lifecycle.rotate(settings, _now(now), force=force, dry_run=dry_run)


def prune(settings: Settings, now: datetime | None = None, *, dry_run: bool = False) -> lifecycle.PruneResult:
    """Remove non-signing keys whose ``expiresAt`` has passed (the signing key is never pruned).

    Raises:
        KeyFileError: missing, corrupt or unsafe key file, lock timeout (exit 4).
    """
    return lifecycle.prune(settings, _now(now), dry_run=dry_run)


def revoke(
    settings: Settings, kid: str, now: datetime | None = None, *, reason: str | None = None, dry_run: bool = False
) -> revocation.RevokeResult:
    """Revoke a compromised key (by kid or RFC 7638 thumbprint): remove it now and record the revocation.

    A signing (or next) key is replaced first by a new key that signs at once (no publication
    lead). ``verify``, ``import`` and ``check`` refuse the key afterwards.

    Raises:
        KeyFileError: no such key, missing/corrupt/unsafe key file, lock timeout (exit 4).
        UsageError: a reason over 200 characters or with control characters (exit 2).
    """
    return revocation.revoke(settings, _now(now), kid, reason=reason, dry_run=dry_run)


def list_keys(settings: Settings, now: datetime | None = None) -> list[dict[str, Any]]:
    """The key records, newest first, each with its ``state`` (``next``/``signing``/``retired``/``expired``)."""
    return lifecycle.list_keys(settings, _now(now))


def plan(settings: Settings, now: datetime | None = None, days: int | None = None) -> lifecycle.PlanResult:
    """The rotation schedule ahead: the cron job (rotate then prune, hourly) simulated for ``days`` days.

    Returns the :class:`~prisme_keys.store.schedule.Schedule` (events, per-key state spans, JWKS
    sizes) and the settings findings; nothing is written. ``days`` defaults to two rotation
    periods plus ``ACCESS_TOKENS_MAX_AGE``.

    Raises:
        KeyFileError: missing, corrupt or unsafe key file (exit 4). UsageError: ``days`` out of range (exit 2).
    """
    return lifecycle.plan(settings, _now(now), days)


def check_settings(
    settings: Settings, now: datetime | None = None, *, lifetime: float | None = None
) -> list[settings_checks.SettingsFinding]:
    """The settings checked against each other (max age, publication lead and verifier cache, rotation
    period, RSA size after 2030; with ``lifetime`` in seconds, a token lifetime), each with a reason
    and a suggested value; empty on the defaults."""
    return settings_checks.check(settings, _now(now), lifetime=lifetime)


def export(settings: Settings, *, fmt: str = "jwks", private: bool = False) -> Any:
    """The public JWKS ``{"keys": [{kty, use, kid, alg, n, e}]}`` (RFC 7517 section 5), newest first.

    With ``fmt="records"`` and ``private=True``: the gateway records with their private JWKs.

    Raises:
        KeyFileError: missing, corrupt or unsafe key file (exit 4).
        UsageError: ``records`` without ``private``, or an unknown format (exit 2).
    """
    return lifecycle.export(settings, fmt=fmt, private=private)


def mint_many(settings: Settings, options: MintOptions | None = None, now: datetime | None = None) -> minter.MintRun:
    """Mint ``options.count`` tokens signed by the signing key (or ``options.kid``); a lazy iterator.

    Raises:
        KeyFileError: no usable signing key (exit 4). UsageError: bad options (exit 2).
    """
    return minter.mint(settings, _now(now), options)


def mint(settings: Settings, now: datetime | None = None, **options: Any) -> str:
    """One token, compact serialization, shaped as the gateway's anonymous login issues it.

    Args:
        options: :class:`~prisme_keys.tokens.mint.MintOptions` fields (``sub``, ``lifetime`` in
            seconds, ``iss``, ``aud``, ``claims``, ``not_before``, ``expired``, ``kid``...).

    Raises:
        KeyFileError: no usable signing key (exit 4). UsageError: bad options (exit 2).
    """
    run = minter.mint(settings, _now(now), _mint_options(options))
    return next(run.tokens).token


class Minter:
    """Mints tokens in-process with one signing key loaded once: no key-file read per token.

    Build it with :func:`open_minter` (a key file's signing key) or :meth:`from_jwk` (a private
    JWK held in memory). The tokens are shaped exactly as :func:`mint` shapes them
    (RSASSA-PKCS1-v1_5, RFC 7518 section 3.3; NumericDates, RFC 7519 section 2).

    Attributes:
        settings: issuer, audience and ``access_tokens_max_age`` (seconds) defaults.
        kid: the ``kid`` written in each token's header.
        alg: ``RS256``, ``RS384`` or ``RS512``.
    """

    def __init__(self, settings: Settings, signer: minter.Signer) -> None:
        self.settings = settings
        self._signer = signer
        self.kid: str | None = signer.kid
        self.alg: str = signer.alg

    @classmethod
    def from_jwk(cls, settings: Settings, jwk: Mapping[str, Any], *, kid: str | None = None) -> Minter:
        """A minter over a private RSA JWK that need not be in any key file.

        Args:
            jwk: private JWK (``n``, ``e``, ``d``... base64url); its ``alg`` or ``settings.alg``.
            kid: write this ``kid`` in the header instead of the JWK's own (a forged token
                naming a published key, for negative tests).

        The JWK is validated as a key entering a key file is (RSA, at least 2048 bits, members
        consistent, not on the known-compromised list).

        Raises:
            KeyFileError: the key is unusable, too small, known-compromised, or its alg is not
                RS* (exit 4).
        """
        jwk_rules.check_signing_jwk(dict(jwk))
        key = dict(jwk)
        if kid is not None:
            key["kid"] = kid
        return cls(settings, minter.build_signer(key, key.get("alg") or settings.alg))

    def mint(self, now: datetime | None = None, **options: Any) -> str:
        """One token (compact serialization) issued at ``now`` (default the real clock).

        Args:
            options: :class:`~prisme_keys.tokens.mint.MintOptions` fields except ``count``
                and ``kid`` (``sub``, ``lifetime`` in seconds, ``iss``, ``aud``, ``claims``,
                ``not_before``, ``expired``, ``session_id``).

        Raises:
            UsageError: bad options, a ``kid`` other than this minter's, a claim not
                representable in JSON (exit 2).
        """
        o = _mint_options(options)
        if o.kid is not None and o.kid != self.kid:
            raise UsageError(f"this minter signs with kid {shown(self.kid)}, not {shown(o.kid)}")
        run = minter.mint_with(self._signer, self.settings, _now(now), o)
        return next(run.tokens).token

    def mint_many(self, options: MintOptions | None = None, now: datetime | None = None) -> minter.MintRun:
        """``options.count`` tokens (a lazy iterator), as :func:`mint_many` without the key-file read.

        Raises:
            UsageError: bad options (exit 2).
        """
        return minter.mint_with(self._signer, self.settings, _now(now), options)


def open_minter(settings: Settings, now: datetime | None = None, *, kid: str | None = None) -> Minter:
    """A :class:`Minter` over the key file's signing key at ``now`` (or the record ``kid``), read once.

    Later rotations of the key file are not seen: open a new minter after one.

    Raises:
        KeyFileError: no key file, no signing key, unknown ``kid``, no private key, a key
            that cannot sign (exit 4).
    """
    rec, jwk = lifecycle.signing_jwk(settings, _now(now), kid)
    return Minter(settings, minter.signer_for(jwk, jwk.get("alg") or settings.alg))


def decode(token: str | bytes, now: datetime | None = None) -> Decoded:
    """Header and claims of a compact JWS without verifying anything (UNVERIFIED).

    Raises:
        MalformedTokenError: not a compact JWS (exit 5).
    """
    return _decode(_token(token), _now(now))


def verify(
    token: str | bytes,
    settings: Settings,
    options: VerifyOptions | None = None,
    *,
    jwks_url: str | None = None,
    jwks_file: str | None = None,
    now: datetime | None = None,
) -> VerifyResult:
    """Verify a token against the key file (default), a JWKS file or a JWKS URL.

    The algorithm comes from ``options.algorithms`` (default ``(settings.alg,)``), never from
    the token; the key is chosen by kid; then ``exp``/``nbf``/``iat`` (with leeway, seconds),
    issuer and audience (RFC 7519 section 4.1).

    Raises:
        MalformedTokenError (5), SignatureRejected (6), ClaimsRejected (7), NoUsableKey (8),
        FetchError (9), KeyFileError (4).
    """
    if options is None:
        options = VerifyOptions(
            algorithms=(settings.alg,), issuer=settings.oidc_provider_url, audience=settings.api_url
        )
    # not a JWS (an opaque credential of the gateway...): said before any key is loaded
    split(clean_token(_token(token)))
    source = verifier.open_source(settings, jwks_file=jwks_file, jwks_url=jwks_url)
    return verifier.verify(token, source, options, now=_now(now))


def fetch_jwks(url: str, **options: Any) -> jwks_client.FetchResult:
    """Fetch a published JWK Set (HTTPS, size-capped, cached per RFC 9111 freshness).

    Args:
        options: see :func:`prisme_keys.tokens.jwks_client.fetch` (``timeout`` seconds,
            ``max_bytes``, ``cacert``, ``allow_http``, ``use_cache``, ``cache_dir``).

    Raises:
        FetchError: network, timeout, HTTP status, not JSON, too large, redirect, TLS (exit 9).
    """
    return jwks_client.fetch(url, **options)
