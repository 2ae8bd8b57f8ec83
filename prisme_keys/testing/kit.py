"""The pytest plugin's objects: a throwaway key set, its development JWKS server, a token factory.

Tokens are shaped exactly as the gateway's anonymous login issues them (header ``typ``,
``alg``, ``kid``; claims ``exp``, ``iat``, ``sub``, ``iss``, ``aud``, ``prismeaiSessionId``;
RFC 7519 NumericDates) and minted in-process by :class:`prisme_keys.api.Minter`: the signing
key is loaded once per session, never re-read per token.

Issuer and audience, for each token: the configured value (environment ``OIDC_PROVIDER_URL`` /
``API_URL``, else ini ``prisme_issuer`` / ``prisme_audience``) when set; otherwise the
gateway's convention on a base URL, ``iss = BASE`` and ``aud = BASE + "/v2"``, where BASE is
the ``prisme_jwks_server`` fixture's URL when the test uses that fixture (directly or through
its own fixtures), else :data:`DEFAULT_BASE_URL`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from prisme_keys import api, clock
from prisme_keys import jwk as jwk_rules
from prisme_keys.publish import serve

#: Base URL of the issuer/audience when no server is used and none is configured (RFC 6761 ``.test``).
DEFAULT_BASE_URL = "https://prisme.test"
#: Audience of :meth:`TokenFactory.wrong_audience` tokens.
WRONG_AUDIENCE = "https://wrong-audience.prisme.test/v2"

#: ``(setting name, ini option, environment variable, help)``; the environment wins over the ini file.
OPTIONS: tuple[tuple[str, str, str, str], ...] = (
    ("oidc_provider_url", "prisme_issuer", "OIDC_PROVIDER_URL", "issuer (iss) of test tokens"),
    ("api_url", "prisme_audience", "API_URL", "audience (aud) of test tokens"),
    ("alg", "prisme_alg", "JWKS_ALG", "signature algorithm of the test key set: RS256, RS384, RS512"),
    ("size", "prisme_key_size", "JWKS_SIZE", "size of the test keys, bits (2048 to 16384)"),
    ("access_tokens_max_age", "prisme_token_lifetime", "ACCESS_TOKENS_MAX_AGE", "default token lifetime, seconds"),
)


def settings_for(key_file: Path, getini: Callable[[str], Any], environ: Mapping[str, str]) -> api.Settings:
    """The test key set's settings: environment > ini option > default; no config file is read.

    Args:
        key_file: the key file inside pytest's temporary directory.
        getini: ``pytest.Config.getini``; an empty value means unset.
        environ: the environment (``os.environ``).

    Raises:
        ConfigError: a bad value, naming the variable or ini option it came from.
    """
    values: dict[str, Any] = {"key_file": str(key_file)}
    sources: dict[str, str] = {}
    for name, ini, env, _help in OPTIONS:
        if environ.get(env):
            values[name], sources[name] = environ[env], f"environment variable {env}"
        elif getini(ini):
            values[name], sources[name] = getini(ini), f"ini option {ini}"
    return api.settings_from(values, sources)


@dataclass
class KeySet:
    """A throwaway key set: one RSA signing key (RFC 7638 thumbprint as kid) in a key file.

    Attributes:
        settings: its settings (``key_file``, ``alg``, ``size`` bits, ``access_tokens_max_age``
            seconds, and the configured issuer/audience or ``None``).
        kid: the signing key's kid.
        jwks: the public JWK Set ``{"keys": [{kty, use, kid, alg, n, e}]}`` (RFC 7517 section 5).
        minter: the in-process minter over the signing key.
    """

    settings: api.Settings = field(repr=False)
    kid: str
    jwks: dict[str, Any] = field(repr=False)
    minter: api.Minter = field(repr=False)
    _foreign_jwk: jwk_rules.RSAJwk | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def key_file(self) -> Path:
        """The key file (inside pytest's temporary directory)."""
        return self.settings.key_file

    @property
    def alg(self) -> str:
        """``RS256``, ``RS384`` or ``RS512``."""
        return self.minter.alg

    def tokens(self, base_url: str | None = None) -> TokenFactory:
        """A :class:`TokenFactory` whose default issuer/audience derive from ``base_url``.

        Args:
            base_url: the server the tokens are for (default :data:`DEFAULT_BASE_URL`); the
                configured issuer/audience win over it.
        """
        base = base_url or DEFAULT_BASE_URL
        return TokenFactory(
            self,
            issuer=self.settings.oidc_provider_url or base,
            audience=self.settings.api_url or base + "/v2",
        )

    def foreign_minter(self, kid: str | None = None) -> api.Minter:
        """A minter over a key this set does not publish (same size and alg), generated once.

        Args:
            kid: the header kid (default the foreign key's own thumbprint, unknown to the set).
        """
        with self._lock:
            if self._foreign_jwk is None:
                self._foreign_jwk = jwk_rules.generate_jwk(self.settings.size, self.settings.alg)
        return api.Minter.from_jwk(self.settings, self._foreign_jwk, kid=kid)


def make_keyset(settings: api.Settings) -> KeySet:
    """Create the key file of ``settings`` with its first signing key and load it for minting.

    Raises:
        KeyFileError: the key file exists or cannot be written.
    """
    now = clock.now()
    result = api.init(settings, now)
    return KeySet(
        settings=settings,
        kid=result.record["kid"],
        jwks=api.export(settings),
        minter=api.open_minter(settings, now),
    )


class TokenFactory:
    """``prisme_token``: mints test tokens in-process, as the gateway's anonymous login shapes them.

    Call it for a valid token; its methods make the negative cases. ``**claims`` are extra
    claims merged last (they may override the standard ones, e.g. ``iss=...``).

    Attributes:
        issuer: ``iss`` of the tokens. audience: ``aud`` of the tokens. keyset: the key set.
    """

    def __init__(self, keyset: KeySet, *, issuer: str, audience: str) -> None:
        self.keyset = keyset
        self.issuer = issuer
        self.audience = audience
        self._aud = [audience]

    def __call__(self, sub: str | None = None, expires_in: int | None = None, **claims: Any) -> str:
        """A valid token (compact JWS) signed by the set's signing key.

        Args:
            sub: subject (default a fresh 24-hex-digit id, as anonymous login).
            expires_in: seconds from now to ``exp`` (default ``ACCESS_TOKENS_MAX_AGE``).
        """
        return self.keyset.minter.mint(sub=sub, lifetime=expires_in, iss=self.issuer, aud=self._aud, claims=claims)

    def expired(self, sub: str | None = None, *, ago: int = 3600, **claims: Any) -> str:
        """A token whose ``exp`` is ``ago`` seconds in the past (beyond any usual leeway).

        Issued ``ACCESS_TOKENS_MAX_AGE`` seconds before it expired.
        """
        lifetime = self.keyset.settings.access_tokens_max_age
        issued = clock.now() - timedelta(seconds=ago + lifetime)
        return self.keyset.minter.mint(issued, sub=sub, iss=self.issuer, aud=self._aud, claims=claims)

    def not_yet_valid(self, sub: str | None = None, *, starts_in: int = 3600, **claims: Any) -> str:
        """A token issued now whose ``nbf`` is ``starts_in`` seconds in the future (RFC 7519 section 4.1.5)."""
        lifetime = starts_in + self.keyset.settings.access_tokens_max_age
        return self.keyset.minter.mint(
            sub=sub, lifetime=lifetime, not_before=starts_in, iss=self.issuer, aud=self._aud, claims=claims
        )

    def foreign_key(self, sub: str | None = None, *, kid: str | None = None, **claims: Any) -> str:
        """A token signed by a key the set does not publish.

        Args:
            kid: the header kid; default the foreign key's own (a kid the JWKS lacks: verifiers
                fail to find a key). Pass ``prisme_keyset.kid`` for a forged token naming the
                published key (verifiers find the key and reject the signature).
        """
        minter = self.keyset.foreign_minter(kid)
        return minter.mint(sub=sub, iss=self.issuer, aud=self._aud, claims=claims)

    def wrong_audience(self, sub: str | None = None, *, audience: str = WRONG_AUDIENCE, **claims: Any) -> str:
        """A token for another audience (``aud`` = ``audience``), otherwise valid."""
        return self.keyset.minter.mint(sub=sub, iss=self.issuer, aud=[audience], claims=claims)


@dataclass
class Server:
    """``prisme_jwks_server``: the development server (``serve``) for a key set, in a thread.

    Attributes:
        base_url: ``http://127.0.0.1:PORT``.
        jwks_url: ``BASE/oidc/jwks`` (the gateway's JWKS path; ``BASE/.well-known/jwks.json`` too).
        discovery_url: ``BASE/oidc/.well-known/openid-configuration`` (``{issuer, jwks_uri}``).
        login_url: ``BASE/v2/login/anonymous`` (POST; ``{"expiresAfter": seconds}`` optional).
        issuer, audience: what the server's tokens and discovery document carry.
        keyset: the key set it publishes.
    """

    base_url: str
    jwks_url: str
    discovery_url: str
    login_url: str
    issuer: str
    audience: str
    keyset: KeySet = field(repr=False)
    _httpd: serve.JWKSServer = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    def tokens(self) -> TokenFactory:
        """The ``prisme_token`` factory for this server's issuer and audience (for wider-scoped fixtures)."""
        return self.keyset.tokens(self.base_url)

    def stop(self) -> None:
        """Stop serving and close the socket (waits for the serving thread)."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)


def start_server(keyset: KeySet) -> Server:
    """Start the development server for ``keyset`` on 127.0.0.1 and a free port.

    Raises:
        KeyFileError: the key file is unreadable. UsageError: no port could be bound.
    """
    httpd = serve.start(keyset.settings, "127.0.0.1", 0, cache_control=None)
    base = httpd.base_url
    factory = keyset.tokens(base)
    httpd.issuer = factory.issuer
    httpd.settings = replace(httpd.settings, oidc_provider_url=factory.issuer, api_url=factory.audience)
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="prisme-jwks-server", daemon=True
    )
    thread.start()
    return Server(
        base_url=base,
        jwks_url=base + serve.JWKS_PATHS[0],
        discovery_url=base + serve.DISCOVERY_PATH,
        login_url=base + serve.LOGIN_PATH,
        issuer=factory.issuer,
        audience=factory.audience,
        keyset=keyset,
        _httpd=httpd,
        _thread=thread,
    )
