"""Shared fixtures: a pool of pre-generated RSA keys, a key file, and the command line (see helpers.Cli)."""

from __future__ import annotations

import pytest
from helpers import Cli, record, write_keyfile

from prisme_keys import jwk as jwk_rules


@pytest.fixture(scope="session")
def keypool():
    """Eight 2048-bit private JWKs (RS256), generated once per test session."""
    return [jwk_rules.generate_jwk(2048, "RS256") for _ in range(8)]


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
