"""Shared fixtures: a pool of pre-generated RSA keys, and the installed console script run in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from prisme_keys import jwk as jwk_rules

T0 = "2026-01-01T00:00:00.000Z"

#: Variables a developer's shell may hold that would change the tool's behaviour.
_SCRUB = (
    "JWKS_KTY",
    "JWKS_ALG",
    "JWKS_SIZE",
    "JWKS_ROTATION_DAYS",
    "ACCESS_TOKENS_MAX_AGE",
    "OIDC_PROVIDER_URL",
    "API_URL",
    "PRISME_KEYS_FILE",
    "PRISME_KEYS_CONFIG",
    "PRISME_KEYS_DEBUG",
    "PRISME_KEYS_LOCK_TIMEOUT",
    "PRISME_KEYS_ALLOW_GROUP_READ",
    "PRISME_KEYS_PUBLICATION_LEAD",
    "PRISME_KEYS_PASSPHRASE",
    "BROKER_HOST",
    "BROKER_NAMESPACE",
    "BROKER_TOPIC_MAXLEN",
    "CONTEXTS_CACHE_HOST",
    "INTERNAL_API_KEY",
    "NO_COLOR",
)


def script() -> str:
    """Path of the installed ``prisme-keys`` console script (beside the running interpreter)."""
    cand = Path(sys.executable).parent / "prisme-keys"
    if cand.exists():
        return str(cand)
    found = shutil.which("prisme-keys")
    assert found, "prisme-keys is not installed: pip install -e '.[test]'"
    return found


@pytest.fixture(scope="session")
def keypool():
    """Eight 2048-bit private JWKs (RS256), generated once per test session."""
    return [jwk_rules.generate_jwk(2048, "RS256") for _ in range(8)]


@pytest.fixture(scope="session")
def big_key():
    """One 4096-bit private JWK, generated once per test session."""
    return jwk_rules.generate_jwk(4096, "RS256")


class Cli:
    """Runs the installed console script with HOME and XDG folders inside a temp dir."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
        self.env.update(
            {
                "HOME": str(home),
                "XDG_DATA_HOME": str(home / "data"),
                "XDG_CONFIG_HOME": str(home / "config"),
                "XDG_CACHE_HOME": str(home / "cache"),
                "COLUMNS": "250",
            }
        )
        self.default_key_file = home / "data" / "prisme-keys" / "keys.json"

    def __call__(
        self, *args: str, input: str | bytes | None = None, env: dict | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess:
        e = dict(self.env)
        e.update(env or {})
        text = not isinstance(input, bytes)
        return subprocess.run([script(), *args], input=input, env=e, capture_output=True, text=text, timeout=timeout)

    def popen(self, *args: str, env: dict | None = None, **kw) -> subprocess.Popen:
        e = dict(self.env)
        e.update(env or {})
        return subprocess.Popen([script(), *args], env=e, **kw)


@pytest.fixture
def cli(tmp_path):
    """A :class:`Cli` whose home is a fresh temp folder."""
    home = tmp_path / "home"
    home.mkdir()
    return Cli(home)


def write_keyfile(path: Path, records: list, mode: int = 0o600) -> Path:
    """Write a key file document holding ``records`` with the given mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"format": 1, "keys": records}, indent=2))
    os.chmod(path, mode)
    return path


def record(
    jwk: dict,
    created: str = T0,
    rotates: str = "2026-01-31T00:00:00.000Z",
    expires: str = "2026-03-02T00:00:00.000Z",
    previous: str | None = None,
) -> dict:
    """A gateway record around ``jwk`` with the given times."""
    return {
        "kid": jwk["kid"],
        "previousKeyId": previous,
        "createdAt": created,
        "rotatesAt": rotates,
        "expiresAt": expires,
        "jwk": jwk,
    }


@pytest.fixture
def keyfile(tmp_path, keypool):
    """A key file (0600) with one signing record from the pool, created at T0; returns its path."""
    return write_keyfile(tmp_path / "keys.json", [record(keypool[0])])


def no_traceback(proc: subprocess.CompletedProcess) -> None:
    """Assert the process printed no Python traceback."""
    assert "Traceback" not in (proc.stderr or ""), proc.stderr


def empty_config(folder: Path) -> Path:
    """An empty TOML config file in ``folder`` (a named config file must exist)."""
    path = folder / "empty-config.toml"
    path.touch()
    return path
