"""Test helpers shared by the test modules (import them with ``from helpers import ...``).

* :class:`Cli` runs the command line with HOME and XDG folders inside a temp dir: in-process
  through :func:`prisme_keys.cli.main` by default (fast), or as the installed console script in a
  subprocess with :meth:`Cli.proc` / :meth:`Cli.popen` where the process is the point (signals,
  locks, crashes, start-up, streams, terminals).
* Key-file builders: :func:`record`, :func:`write_keyfile`, :data:`T0`; :func:`fixed_jwk`, the same key on every run.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import io
import json
import os
import pty
import select
import shutil
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
    "PRISME_KEYS_VERIFIER_CACHE",
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


class _Stream(io.TextIOWrapper):
    """A text stream over bytes that is never a terminal (as a pipe or file would be)."""

    def isatty(self) -> bool:
        return False


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


class Cli:
    """Runs ``prisme-keys`` with HOME and XDG folders inside a temp dir.

    Calling it runs the command in-process (``prisme_keys.cli.main``) with the given environment,
    stdin and captured stdout/stderr, and returns a :class:`subprocess.CompletedProcess`.
    :meth:`proc` runs the same in a subprocess; :meth:`popen` starts one.
    """

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

    def _env(self, env: dict[str, str] | None) -> dict[str, str]:
        e = dict(self.env)
        e.update(env or {})
        return e

    def __call__(
        self, *args: str, input: str | bytes | None = None, env: dict[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[Any]:
        from prisme_keys.cli import main

        binary = isinstance(input, bytes)
        data = input if isinstance(input, bytes) else (input or "").encode("utf-8")
        out, err = io.BytesIO(), io.BytesIO()
        streams = (sys.stdin, sys.stdout, sys.stderr)
        sys.stdin = _Stream(io.BytesIO(data), encoding="utf-8")
        sys.stdout = _Stream(out, encoding="utf-8", write_through=True)
        sys.stderr = _Stream(err, encoding="utf-8", write_through=True)
        try:
            with _environment(self._env(env)):
                code = main(list(args))
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(ValueError, OSError):
                    stream.flush()
            o, e = out.getvalue(), err.getvalue()
            sys.stdin, sys.stdout, sys.stderr = streams
        if not binary:
            return subprocess.CompletedProcess(
                list(args), code, o.decode("utf-8", "replace"), e.decode("utf-8", "replace")
            )
        return subprocess.CompletedProcess(list(args), code, o, e)

    def proc(
        self, *args: str, input: str | bytes | None = None, env: dict[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[Any]:
        """Run the installed console script in a subprocess."""
        text = not isinstance(input, bytes)
        return subprocess.run(
            [script(), *args], input=input, env=self._env(env), capture_output=True, text=text, timeout=timeout
        )

    def popen(self, *args: str, env: dict[str, str] | None = None, **kw: Any) -> subprocess.Popen[Any]:
        """Start the installed console script in a subprocess."""
        return subprocess.Popen([script(), *args], env=self._env(env), **kw)


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


def no_traceback(proc: subprocess.CompletedProcess) -> None:
    """Assert the process printed no Python traceback."""
    assert "Traceback" not in (proc.stderr or ""), proc.stderr


def empty_config(folder: Path) -> Path:
    """An empty TOML config file in ``folder`` (a named config file must exist)."""
    path = folder / "empty-config.toml"
    path.touch()
    return path


#: JSON nested 30,000 deep (a RecursionError in a naive parser).
DEEP = "[" * 30000 + "]" * 30000


def one_error_line(p, code):
    no_traceback(p)
    assert p.returncode == code, (p.returncode, p.stderr)
    assert p.stderr.startswith("prisme-keys: error: ") and len(p.stderr.strip().splitlines()) == 1, p.stderr


_SMALL_PRIMES = [p for p in range(3, 1000, 2) if all(p % q for q in range(3, int(p**0.5) + 1, 2))]


def _probable_prime(n: int, rng: Any) -> bool:
    """Miller-Rabin with 8 rounds after trial division by the odd primes below 1000 (OpenSSL checks the key again)."""
    if any(n % p == 0 for p in _SMALL_PRIMES):
        return n in _SMALL_PRIMES
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for _ in range(8):
        x = pow(rng.randrange(2, n - 2), d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


@functools.cache
def _fixed_jwk(seed: int, bits: int) -> str:
    import math
    import random

    from cryptography.hazmat.primitives.asymmetric import rsa

    from prisme_keys import jwk as jwk_rules

    rng = random.Random(f"prisme-keys fixed key {seed} {bits}")
    e = 65537

    def prime() -> int:
        while True:  # the top two bits set, so p * q has exactly ``bits`` bits
            c = rng.getrandbits(bits // 2) | (3 << (bits // 2 - 2)) | 1
            if c % e != 1 and _probable_prime(c, rng):
                return c

    p, q = prime(), prime()
    d = pow(e, -1, math.lcm(p - 1, q - 1))
    numbers = rsa.RSAPrivateNumbers(
        p,
        q,
        d,
        rsa.rsa_crt_dmp1(d, p),
        rsa.rsa_crt_dmq1(d, q),
        rsa.rsa_crt_iqmp(p, q),
        rsa.RSAPublicNumbers(e, n=p * q),
    )
    return json.dumps(jwk_rules.private_key_to_jwk(numbers.private_key(), "RS256"))


def fixed_jwk(seed: int, bits: int = 2048) -> dict:
    """A private RSA JWK (RS256, kid = RFC 7638 thumbprint) made from ``seed``: the same key on every
    run and every machine, for golden outputs (kids, moduli and RS256 signatures stay put)."""
    return json.loads(_fixed_jwk(seed, bits))


def pty_session(argv, env, steps, wait=15.0, cols=None):
    """Run ``argv`` in a pseudo-terminal; for each ``(input, expected)`` step, type the input and read
    until ``expected`` shows up (or ``wait`` seconds pass). Returns what was read at each step.
    ``cols`` sets the terminal width (a wide one keeps long lines from scrolling)."""
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover (child)
        if cols is not None:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 50, cols, 0, 0))
        os.execvpe(argv[0], argv, env)
    outs = []
    try:
        for data, expected in steps:
            if data:
                os.write(fd, data)
            out, end = "", time.time() + wait
            while time.time() < end and expected not in out:
                r, _, _ = select.select([fd], [], [], 0.1)
                if r:
                    try:
                        out += os.read(fd, 65536).decode(errors="replace")
                    except OSError:
                        break
            outs.append(out)
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    return outs


class OneLineAtATime:
    """A binary stream (and a standard input: ``.buffer`` is itself) that gives one line per ``read1``
    and moves the clock in ``box[0]`` (a datetime) ``step`` seconds on before each later read: a
    producer that sends a token, waits for the verdict, then sends the next, as a sidecar does."""

    def __init__(self, lines: list[str], box: list[Any], step: float) -> None:
        self.lines, self.box, self.step, self.reads = [ln.encode() + b"\n" for ln in lines], box, step, 0
        self.buffer = self

    def read1(self, n: int = -1) -> bytes:
        from datetime import timedelta

        if self.reads:
            self.box[0] += timedelta(seconds=self.step)
        self.reads += 1
        return self.lines.pop(0) if self.lines else b""


class Pieces(io.RawIOBase):
    """A binary stream whose ``read1`` hands out ``data`` in pieces of the given sizes (then the rest):
    what a pipe gives a reader as the writer's chunks arrive."""

    def __init__(self, data: bytes, sizes: list[int]) -> None:
        super().__init__()
        self.data, self.sizes = data, list(sizes)

    def readable(self) -> bool:
        return True

    def read1(self, n: int = -1) -> bytes:
        size = self.sizes.pop(0) if self.sizes else n
        out, self.data = self.data[: min(size, n)], self.data[min(size, n) :]
        return out


def mixed_batch(keypool, count: int = 240) -> list[str]:
    """Lines for verify --batch: valid tokens, every kind of failure, blank lines, a line over the cap, a
    second header (its own key); the first line is a valid token."""
    from jwks_server import claims, rs_token

    from prisme_keys.tokens import jws

    k0, k1, k2 = keypool[0], keypool[1], keypool[2]
    t = int(time.time())
    other = rs_token(k0, claims(sub="other")).split(".")[2]
    lines = []
    for i in range(count):
        kind = i % 12
        if kind == 3:
            lines.append(rs_token(k0, claims(sub=f"u{i}", exp=t - 10)))  # expired
        elif kind == 5:
            h, p, _ = rs_token(k0, claims(sub=f"u{i}")).split(".")
            lines.append(f"{h}.{p}.{other}")  # a bad signature
        elif kind == 7:
            lines.append(rs_token(k2, claims(sub=f"u{i}")))  # an unknown kid
        elif kind == 8:
            lines.append("" if i % 24 else "   ")  # blank lines
        elif kind == 9:
            lines.append(rs_token(k1, claims(sub=f"u{i}")))  # a second header (and key)
        elif kind == 11 and i % 48 == 11:
            lines.append("Bearer " + rs_token(k0, claims(sub=f"u{i}")))
        else:
            lines.append(rs_token(k0, claims(sub=f"u{i}", n=i)))
    lines[100] = "x" * (jws.MAX_TOKEN_BYTES + 5000)  # over the cap
    lines[150] = "not-a-token"
    return lines


def break_signature_checks(monkeypatch, token: str) -> None:
    """Make every RSA signature check made from now on (``jwk.rsa_verifier``'s) raise
    ``RuntimeError("a bug in a signature check")`` on ``token``'s signature: a bug, not a verdict."""
    from prisme_keys import jwk as jwk_rules

    bad_sig = jwk_rules.b64url_decode(token.split(".")[2])
    real = jwk_rules.rsa_verifier

    def buggy_verifier(key, alg, many=False):
        check = real(key, alg, many=many)

        def verifier(message: bytes, signature: bytes) -> bool:
            if signature == bad_sig:
                raise RuntimeError("a bug in a signature check")
            return check(message, signature)

        return verifier

    monkeypatch.setattr(jwk_rules, "rsa_verifier", buggy_verifier)
