"""Helpers of the revocation tests: key files dated against the real clock, and an in-process CLI fixture."""

from __future__ import annotations

from datetime import datetime

import pytest
from helpers import empty_config

from prisme_keys import clock
from prisme_keys import jwk as jwk_rules
from prisme_keys.cli import main

MAX_AGE = 2592000
LEAD = {"PRISME_KEYS_PUBLICATION_LEAD": "1h"}


def rec(jwk: dict, created: datetime, *, previous: str | None = None, activates: datetime | None = None) -> dict:
    """A record created at ``created`` with the default policy (30 days, 30 days of max age)."""
    start = activates or created
    r = {
        "kid": jwk["kid"],
        "previousKeyId": previous,
        "createdAt": clock.iso(created),
        "rotatesAt": clock.iso(start + clock.days(30)),
        "expiresAt": clock.iso(start + clock.days(60)),
        "jwk": jwk,
    }
    if activates is not None:
        r["activatesAt"] = clock.iso(activates)
    return r


def two_keys(keypool: list, now: datetime) -> list:
    """Signing key keypool[1] (10 days old) and the retired keypool[0] it replaced."""
    old, signing = keypool[0], keypool[1]
    return [
        rec(signing, now - clock.days(10), previous=old["kid"]),
        rec(old, now - clock.days(40)),
    ]


@pytest.fixture
def pk(tmp_path, capsys, monkeypatch, keypool):
    """Run the CLI in-process on ``tmp_path/keys.json``; new keys come from keypool[5:] (fast, known)."""
    kf = tmp_path / "keys.json"
    cfg = empty_config(tmp_path)
    fresh = iter([keypool[5], keypool[6], keypool[7]])
    monkeypatch.setattr(jwk_rules, "generate_jwk", lambda bits, alg: dict(next(fresh)))

    def run(*argv: str, env: dict | None = None) -> tuple[int, str, str]:
        rc = main(["--key-file", str(kf), "--config", str(cfg), *argv], env={"HOME": str(tmp_path), **(env or {})})
        out = capsys.readouterr()
        return rc, out.out, out.err

    run.kf = kf  # type: ignore[attr-defined]
    return run
