"""pytest plugin of prisme-keys (entry point ``pytest11``: ``prisme_keys``): test tokens in-process.

Fixtures:

* ``prisme_keyset`` (session): a throwaway key set, one RSA signing key in a key file inside
  pytest's temporary directory (:class:`prisme_keys.testing.kit.KeySet`);
* ``prisme_jwks_server`` (session): the development server (``prisme-keys serve``) for that set
  on 127.0.0.1 and a free port, with ``jwks_url``, ``discovery_url``, ``login_url``; stopped at
  the end of the session (:class:`prisme_keys.testing.kit.Server`);
* ``prisme_token``: ``prisme_token(sub=None, expires_in=None, **claims) -> str``, a token shaped
  as the gateway's anonymous login issues it, minted in-process; ``.expired()``,
  ``.not_yet_valid()``, ``.foreign_key()``, ``.wrong_audience()`` for the negative cases
  (:class:`prisme_keys.testing.kit.TokenFactory`).

Settings: environment variables ``OIDC_PROVIDER_URL``, ``API_URL``, ``JWKS_ALG``, ``JWKS_SIZE``,
``ACCESS_TOKENS_MAX_AGE``, else the ini options ``prisme_issuer``, ``prisme_audience``,
``prisme_alg``, ``prisme_key_size``, ``prisme_token_lifetime``. Without an issuer/audience set,
tokens of a test that uses ``prisme_jwks_server`` carry ``iss = server.base_url`` and
``aud = server.base_url + "/v2"`` (the gateway's convention); other tests get
``https://prisme.test`` and ``https://prisme.test/v2``.

Importing this module costs nothing: it imports neither cryptography, python-jose nor rich,
nor the key-handling modules; the fixtures import them when a test first uses one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from prisme_keys.testing.kit import KeySet, Server, TokenFactory

#: ``(ini option, help)``; kept here (not imported from ``kit``) so registering them imports nothing.
_INI = (
    ("prisme_issuer", "prisme-keys: issuer (iss) of test tokens (environment OIDC_PROVIDER_URL wins)"),
    ("prisme_audience", "prisme-keys: audience (aud) of test tokens (environment API_URL wins)"),
    ("prisme_alg", "prisme-keys: RS256, RS384 or RS512 (environment JWKS_ALG wins)"),
    ("prisme_key_size", "prisme-keys: test key size in bits, default 2048 (environment JWKS_SIZE wins)"),
    ("prisme_token_lifetime", "prisme-keys: default token lifetime, seconds (environment ACCESS_TOKENS_MAX_AGE wins)"),
)


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the ini options (strings; empty = unset)."""
    for name, help_text in _INI:
        parser.addini(name, help_text, default="")


@pytest.fixture(scope="session")
def prisme_keyset(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> KeySet:
    """A throwaway key set for the session: one RSA signing key in pytest's temporary directory."""
    from prisme_keys.errors import PrismeKeysError
    from prisme_keys.testing import kit

    key_file = tmp_path_factory.mktemp("prisme-keys") / "keys.json"
    try:
        return kit.make_keyset(kit.settings_for(key_file, pytestconfig.getini, os.environ))
    except PrismeKeysError as exc:
        pytest.fail(f"prisme-keys: {exc.message}", pytrace=False)


@pytest.fixture(scope="session")
def prisme_jwks_server(prisme_keyset: KeySet) -> Iterator[Server]:
    """The development JWKS server for ``prisme_keyset`` on 127.0.0.1, stopped at session end."""
    from prisme_keys.errors import PrismeKeysError
    from prisme_keys.testing import kit

    try:
        server = kit.start_server(prisme_keyset)
    except PrismeKeysError as exc:
        pytest.fail(f"prisme-keys: {exc.message}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def prisme_token(request: pytest.FixtureRequest, prisme_keyset: KeySet) -> TokenFactory:
    """Mints test tokens; issuer/audience follow ``prisme_jwks_server`` when the test uses it."""
    base_url = None
    if "prisme_jwks_server" in request.fixturenames:
        base_url = request.getfixturevalue("prisme_jwks_server").base_url
    return prisme_keyset.tokens(base_url)
