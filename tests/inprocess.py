"""Run the command line in-process (``prisme_keys.cli.main``) with a private home, capturing its output."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@dataclass
class Result:
    """Exit code and captured streams of one in-process run."""

    returncode: int
    stdout: str
    stderr: str


class InProcess:
    """Calls ``main(argv, env)`` with XDG folders inside ``home`` (platformdirs reads ``os.environ``)."""

    def __init__(self, home: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
        self.home = home
        self.capsys = capsys
        self.env: dict[str, str] = {}
        for var, sub in (("XDG_DATA_HOME", "data"), ("XDG_CONFIG_HOME", "config"), ("XDG_CACHE_HOME", "cache")):
            monkeypatch.setenv(var, str(home / sub))
        monkeypatch.setenv("HOME", str(home))
        monkeypatch.setenv("PRISME_KEYS_SERVE_QUIET", "1")
        for var in ("PRISME_KEYS_FILE", "PRISME_KEYS_CONFIG", "PRISME_KEYS_PASSPHRASE", "NO_COLOR"):
            monkeypatch.delenv(var, raising=False)

    def __call__(self, *argv: str, env: dict[str, str] | None = None) -> Result:
        from prisme_keys.cli import main

        self.capsys.readouterr()
        rc = main(list(argv), env={**self.env, **(env or {})})
        out = self.capsys.readouterr()
        return Result(rc, out.out, out.err)
