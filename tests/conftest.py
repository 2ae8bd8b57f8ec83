"""Shared fixtures: a pool of pre-generated RSA keys, a key file, and the command line (see helpers.Cli)."""

from __future__ import annotations

import pytest
from helpers import Cli, record, write_keyfile

from prisme_keys import jwk as jwk_rules


@pytest.fixture(scope="session")
def keypool():
    """Eight 2048-bit private JWKs (RS256), generated once per test session.

    None has a kid (an RFC 7638 thumbprint) starting with '-': 1 in 64 does, and a command line then
    takes it for an option unless it comes after '--'. The tests that pass kids as plain arguments
    are not about that case; test_revoke.py's test_a_kid_starting_with_a_dash_goes_after_double_dash
    is, with a kid of its own. (Before, about one session in eight failed on a random kid.)
    """
    keys: list[dict] = []
    while len(keys) < 8:
        key = jwk_rules.generate_jwk(2048, "RS256")
        if not key["kid"].startswith("-"):
            keys.append(key)
    return keys


@pytest.fixture(scope="session")
def big_key():
    """One 4096-bit private JWK, generated once per test session."""
    return jwk_rules.generate_jwk(4096, "RS256")


@pytest.fixture
def cli(tmp_path):
    """A :class:`helpers.Cli` whose home is a fresh temp folder."""
    home = tmp_path / "home"
    home.mkdir()
    return Cli(home)


@pytest.fixture
def keyfile(tmp_path, keypool):
    """A key file (0600) with one signing record from the pool, created at T0; returns its path."""
    return write_keyfile(tmp_path / "keys.json", [record(keypool[0])])
