"""Every stable error code of :data:`prisme_keys.errors.ERROR_CODES` is produced by a real input and asserted.

One case per code (a few codes have a second path), grouped by exit status. Each case drives the real
command line in-process with ``--json`` and parses the error document ``{code, message, exit}`` from the
last line of stderr; it asserts the exact code, the exact exit (also the process's) and a stable part of
the message. Real parts only: key files, a threaded HTTP(S) server on 127.0.0.1 (trustme for TLS), closed
ports, a pseudo-terminal for passphrase prompts. A code no input can produce is a class default kept for
callers; its registry meaning says so and its case shows the default (see ``DEFAULT_ONLY``).

:func:`test_every_registered_code_has_a_case` fails naming any code added to the registry without a case.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import socket
import struct
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import Cli, record, script, write_keyfile
from jwks_server import JwksServer, Route, bj, claims, hs_token, jwks, rs_token, tls_context
from revoke_helpers import two_keys

from prisme_keys import clock
from prisme_keys import jwk as jwk_rules
from prisme_keys.errors import ERROR_CODES, ClaimsRejected, ExitCode

PW = "correct horse battery staple"


@dataclass
class Got:
    """What a case produced: the exit status and the error document."""

    rc: int
    doc: dict[str, Any]


@dataclass
class World:
    """The real parts a case may use."""

    cli: Cli
    tmp: Path
    keys: list[dict[str, Any]]
    server: JwksServer
    ca: Any
    monkeypatch: pytest.MonkeyPatch

    def keyfile(self, *records: dict[str, Any], mode: int = 0o600) -> Path:
        """A key file holding ``records`` (default: one signing record of keys[0])."""
        return write_keyfile(self.tmp / "keys.json", list(records) or [record(self.keys[0])], mode)

    def jwks_file(self, doc: dict[str, Any]) -> Path:
        path = self.tmp / "jwks.json"
        path.write_text(json.dumps(doc))
        return path

    def cafile(self) -> Path:
        path = self.tmp / "ca.pem"
        self.ca.cert_pem.write_to_path(str(path))
        return path


def parse_error(stderr: str, rc: int) -> Got:
    """The error document: the last line of stderr; lines before it may only be warnings."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert lines, f"exit {rc} with an empty stderr"
    assert all(line.startswith("warning: ") for line in lines[:-1]), stderr
    return Got(rc, json.loads(lines[-1]))


def run(w: World, *args: str, env: dict[str, str] | None = None, input: str | None = None) -> Got:
    """Run ``prisme-keys --json ARGS`` in-process."""
    p = w.cli("--json", *args, env=env, input=input)
    return parse_error(p.stderr, p.returncode)


def raised(exc: Any) -> Got:
    """A library error as a case result (its ``exit_code`` stands for the process exit)."""
    return Got(int(exc.exit_code), exc.to_dict())


def verify(w: World, token: str, doc: dict[str, Any], *opts: str) -> Got:
    """``verify TOKEN --jwks-file F`` where F holds ``doc``."""
    return run(w, "verify", token, "--jwks-file", str(w.jwks_file(doc)), *opts)


def fetch(w: World, url: str, *opts: str) -> Got:
    """``verify TOKEN --jwks-url URL --no-cache`` with a well-formed token."""
    return run(w, "verify", rs_token(w.keys[0], claims()), "--jwks-url", url, "--no-cache", *opts)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def on_terminal(w: World, argv: list[str], answers: list[bytes], env: dict[str, str]) -> Got:
    """Run the console script on a pseudo-terminal, answering each prompt (ending in ': ') in turn."""
    pid, fd = pty.fork()
    if pid == 0:  # child
        os.execve(script(), [script(), *argv], {**w.cli.env, **env})
    out = b""
    pending = list(answers)
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
        if pending and out.rstrip(b" ").endswith(b":"):
            os.write(fd, pending.pop(0))
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    text = out.decode("utf-8", "replace").replace("\r\n", "\n")
    err = "\n".join(line for line in text.splitlines() if line.startswith("{"))
    assert not pending, text
    return parse_error(err, os.waitstatus_to_exitcode(status))


@dataclass(frozen=True)
class Case:
    """How to produce one code, and the stable part of its message."""

    produce: Callable[[World], Got]
    message: str


# -- 1, 2, 3: internal, usage, configuration ---------------------------------------------------------------


def _internal(w: World) -> Got:
    def boom() -> Any:
        raise ZeroDivisionError("a planted bug")

    w.monkeypatch.setattr(clock, "now", boom)  # no input can cause a bug: plant one
    return run(w, "--key-file", str(w.keyfile()), "list")


GENERAL = {
    "internal_error": Case(_internal, "internal error: ZeroDivisionError: a planted bug (run with --debug"),
    "usage_error": Case(lambda w: run(w, "--now", "someday", "list"), "--now: "),
    "usage_error/click": Case(lambda w: run(w, "list", "--no-such-option"), "No such option: --no-such-option"),
    "config_error": Case(
        lambda w: run(w, "--key-file", str(w.keyfile()), "list", env={"JWKS_SIZE": "1024"}),
        "bad value for JWKS_SIZE: '1024'",
    ),
}


# -- 4: key file ---------------------------------------------------------------------------------------------


def _enc_file(w: World) -> Path:
    kf = w.keyfile()
    assert w.cli("--key-file", str(kf), "encrypt", env={"PRISME_KEYS_PASSPHRASE": PW}).returncode == 0
    return kf


def _tampered(w: World) -> Got:
    kf = _enc_file(w)
    doc = json.loads(kf.read_text())
    box = doc["keys"][0]["jwk"]["enc"]
    raw = bytearray(jwk_rules.b64url_decode(box["ciphertext"]))
    raw[len(raw) // 2] ^= 0x01
    box["ciphertext"] = jwk_rules.b64url_encode(bytes(raw))
    kf.write_text(json.dumps(doc))
    return run(w, "--key-file", str(kf), "export", "--private", env={"PRISME_KEYS_PASSPHRASE": PW})


def _bad_private_key(w: World) -> Got:
    """decrypt validates each key before storing it in clear text: an inconsistent d is refused."""
    d = jwk_rules.b64_to_int(w.keys[0]["d"])
    kf = w.keyfile(record(dict(w.keys[0], d=jwk_rules.int_to_b64(d + 2))))
    assert w.cli("--key-file", str(kf), "encrypt", env={"PRISME_KEYS_PASSPHRASE": PW}).returncode == 0
    return run(w, "--key-file", str(kf), "decrypt", env={"PRISME_KEYS_PASSPHRASE": PW})


def _lock_timeout(w: World) -> Got:
    kf = w.keyfile()
    fd = os.open(str(kf) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another open file description: the command cannot take it
        os.write(fd, b"pid 1 on elsewhere since then\n")
        return run(w, "--key-file", str(kf), "rotate", "--force", env={"PRISME_KEYS_LOCK_TIMEOUT": "0.2"})
    finally:
        os.close(fd)


def _duplicate_kid(w: World) -> Got:
    a, b = record(w.keys[0]), record(dict(w.keys[1], kid=w.keys[0]["kid"]), created="2025-12-01T00:00:00.000Z")
    return run(w, "--key-file", str(w.keyfile(a, b)), "export")


def _corrupt(w: World) -> Got:
    kf = w.keyfile()
    kf.write_text('{"format": 1, "keys": [')
    return run(w, "--key-file", str(kf), "list")


def _import_rejected(w: World) -> Got:
    from cryptography.hazmat.primitives.asymmetric import rsa

    small = jwk_rules.private_key_to_jwk(rsa.generate_private_key(65537, 1024), "RS256")
    src = w.jwks_file({"keys": [small]})
    return run(w, "--key-file", str(w.keyfile()), "import", str(src))


def _passphrase_file(w: World) -> Got:
    kf = _enc_file(w)
    return run(w, "--key-file", str(kf), "--passphrase-file", str(w.tmp / "nope.txt"), "export", "--private")


def _passphrase_file_mode(w: World) -> Got:
    kf, pf = _enc_file(w), w.tmp / "pass.txt"
    pf.write_text(PW + "\n")
    pf.chmod(0o644)
    return run(w, "--key-file", str(kf), "--passphrase-file", str(pf), "export", "--private")


def _new_passphrase_prompt(w: World, first: bytes, second: bytes) -> Got:
    kf = w.keyfile()
    return on_terminal(w, ["--json", "--key-file", str(kf), "encrypt"], [first, second], {})


KEYFILE = {
    "key_file_error": Case(lambda w: run(w, "--key-file", str(w.tmp), "list"), "is not a regular file"),
    "key_file_missing": Case(
        lambda w: run(w, "--key-file", str(w.tmp / "none.json"), "list"), "does not exist; create it with"
    ),
    "key_file_exists": Case(
        lambda w: run(w, "--key-file", str(w.keyfile()), "init"), "already exists; refusing to overwrite it"
    ),
    "key_file_corrupt": Case(_corrupt, "is unusable: not valid JSON"),
    "key_file_permissions": Case(
        lambda w: run(w, "--key-file", str(w.keyfile(mode=0o644)), "list"), "has unsafe permissions 0644"
    ),
    "key_file_tampered": Case(_tampered, "its encrypted private members fail authentication"),
    "bad_private_key": Case(_bad_private_key, "is unusable (member 'dp' does not match d, p and q); nothing was"),
    "lock_timeout": Case(_lock_timeout, "timed out after 0.2 s waiting for the lock"),
    "duplicate_kid": Case(_duplicate_kid, "twice; refusing to publish an ambiguous set"),
    "already_encrypted": Case(
        lambda w: run(w, "--key-file", str(_enc_file(w)), "encrypt", env={"PRISME_KEYS_PASSPHRASE": PW}),
        "is already encrypted",
    ),
    "not_encrypted": Case(lambda w: run(w, "--key-file", str(w.keyfile()), "decrypt"), "is not encrypted"),
    "passphrase_required": Case(
        lambda w: run(w, "--key-file", str(_enc_file(w)), "export", "--private"), "needs its passphrase"
    ),
    "passphrase_wrong": Case(
        lambda w: run(
            w, "--key-file", str(_enc_file(w)), "export", "--private", env={"PRISME_KEYS_PASSPHRASE": "Tr0ub4dor&3"}
        ),
        "wrong passphrase for key file",
    ),
    "passphrase_empty": Case(lambda w: _new_passphrase_prompt(w, b"\n", b"\n"), "the passphrase is empty"),
    "passphrase_mismatch": Case(
        lambda w: _new_passphrase_prompt(w, b"one secret\n", b"another secret\n"), "the passphrases differ"
    ),
    "passphrase_file": Case(_passphrase_file, "nope.txt does not exist"),
    "passphrase_file_permissions": Case(_passphrase_file_mode, "pass.txt has unsafe permissions 0644"),
    "kid_not_found": Case(
        lambda w: run(w, "--key-file", str(w.keyfile()), "revoke", "no-such-kid"),
        "no key with kid or thumbprint 'no-such-kid'",
    ),
    "import_unreadable": Case(
        lambda w: run(w, "--key-file", str(w.keyfile()), "import", str(w.tmp / "absent.json")), "cannot read "
    ),
    "import_rejected/not_a_key_document": Case(
        lambda w: run(w, "--key-file", str(w.keyfile()), "import", "-", input="hello"),
        "stdin is not valid JSON",
    ),
    "import_rejected": Case(_import_rejected, "rejected, nothing written: key 1: 1024-bit key"),
}


# -- 5, 6, 7, 8: tokens ---------------------------------------------------------------------------------


def _signed(w: World, header: dict[str, Any], key: int = 0) -> str:
    return rs_token(w.keys[key], claims(), header=header)


def _small_key(w: World) -> Got:
    from cryptography.hazmat.primitives.asymmetric import rsa

    small = jwk_rules.private_key_to_jwk(rsa.generate_private_key(65537, 1024), "RS256")
    return verify(w, rs_token(small, claims()), jwks(small))


def _claims(w: World, *opts: str, **kw: Any) -> Got:
    return verify(w, rs_token(w.keys[0], claims(**kw)), jwks(w.keys[0]), *opts)


def _revoked(w: World) -> Got:
    kf = w.keyfile(*two_keys(w.keys, clock.now()))  # keys[1] signs, keys[0] is retired
    g = ("--key-file", str(kf))
    assert w.cli(*g, "revoke", "--reason", "leaked", "--", w.keys[0]["kid"]).returncode == 0  # kids may start with -
    return run(w, *g, "verify", rs_token(w.keys[0], claims()))


def _claims_default(w: World) -> Got:
    """No input produces ``claims_rejected`` (see DEFAULT_ONLY): the class default a library caller gets."""
    return raised(ClaimsRejected("a claim is not acceptable"))


TOKENS = {
    "malformed_token": Case(lambda w: run(w, "decode", "abc.def"), "token has 2 segments"),
    "token_too_large": Case(lambda w: run(w, "decode", "-", input="a" * 70_000), "the limit is 65536 bytes"),
    "jwe_not_supported": Case(lambda w: run(w, "decode", "a.b.c.d.e"), "an encrypted JWE, which is not supported"),
    "signature_rejected": Case(
        lambda w: verify(w, _signed(w, {"kid": w.keys[0]["kid"]}), jwks(w.keys[0])), "the header has no alg"
    ),
    "critical_header": Case(
        lambda w: verify(w, _signed(w, {"alg": "RS256", "kid": w.keys[0]["kid"], "crit": ["b64"]}), jwks(w.keys[0])),
        "as critical (crit); no extension is supported",
    ),
    "unencoded_payload": Case(
        lambda w: verify(w, _signed(w, {"alg": "RS256", "kid": w.keys[0]["kid"], "b64": False}), jwks(w.keys[0])),
        "(RFC 7797 unencoded payload); a JWT's payload is always base64url-encoded",
    ),
    "bad_signature": Case(
        lambda w: verify(w, _signed(w, {"alg": "RS256", "kid": w.keys[0]["kid"]}, key=1), jwks(w.keys[0])),
        "the signature does not verify with key",
    ),
    "alg_none": Case(
        lambda w: verify(w, f"{bj({'alg': 'none', 'kid': w.keys[0]['kid']})}.{bj(claims())}.", jwks(w.keys[0])),
        "unsigned tokens are never accepted",
    ),
    "alg_not_allowed": Case(
        lambda w: verify(w, hs_token(b"secret", claims(), {"alg": "HS256", "kid": w.keys[0]["kid"]}), jwks(w.keys[0])),
        "algorithm 'HS256' is not allowed",
    ),
    "key_too_small": Case(_small_key, "is a 1024-bit RSA key; at least 2048 bits are required"),
    "claims_rejected": Case(_claims_default, "a claim is not acceptable"),
    "expired": Case(lambda w: _claims(w, exp=int(clock.now().timestamp()) - 60), "token expired"),
    "not_yet_valid": Case(lambda w: _claims(w, nbf=int(clock.now().timestamp()) + 600), "token not valid yet"),
    "issued_in_future": Case(
        lambda w: _claims(w, iat=int(clock.now().timestamp()) + 600), "token issued in the future"
    ),
    "issuer": Case(lambda w: _claims(w, "--issuer", "https://other.test"), "issuer mismatch"),
    "audience": Case(lambda w: _claims(w, "--audience", "https://other.test"), "audience mismatch"),
    "claim_missing": Case(lambda w: _claims(w, "--require", "tenant"), "required claim 'tenant' is missing"),
    "claim_type": Case(lambda w: _claims(w, exp="soon"), "claim 'exp' must be a NumericDate"),
    "opaque_credential": Case(
        lambda w: run(w, "decode", "at:0b6f1c2e-3a4d-4e5f-8a9b-0c1d2e3f4a5b"),
        "not a JWT: this is an opaque access token of the gateway",
    ),
    "key_revoked": Case(_revoked, "was revoked on "),
    "no_usable_key": Case(
        lambda w: verify(w, _signed(w, {"alg": "RS256"}), jwks(w.keys[0], w.keys[1])),
        "the token has no kid and",
    ),
    "unknown_kid": Case(
        lambda w: verify(w, _signed(w, {"alg": "RS256", "kid": "nope"}), jwks(w.keys[0])), "unknown kid 'nope'"
    ),
    "alg_key_mismatch": Case(
        lambda w: verify(
            w,
            rs_token(w.keys[0], claims(), alg="RS384"),
            jwks(w.keys[0]),
            "--algorithms",
            "RS256,RS384",
        ),
        "the token's alg RS384 does not match key",
    ),
}


# -- 9, 10, 11: fetching, checking, notifying -------------------------------------------------------------


def _route(w: World, route: Route, *opts: str) -> Got:
    w.server.routes["/jwks"] = route
    return fetch(w, w.server.url(), *opts)


def _redirects(w: World) -> Got:
    for i in range(5):
        w.server.routes[f"/r{i}"] = Route(302, b"", {"Location": f"/r{i + 1}"})
    return fetch(w, w.server.url("/r0"))


def _tls(w: World, down: bool) -> Got:
    with JwksServer(tls_context(w.ca)) as s:
        s.routes["/down"] = Route(302, b"", {"Location": w.server.url()})
        if down:
            return fetch(w, s.url("/down"), "--cacert", str(w.cafile()))
        return fetch(w, s.url())


def _check_failed(w: World) -> Got:
    w.server.serve_json("/jwks", {"keys": []})
    return run(w, "check", w.server.url(), "--no-against")


def _notify_failed(w: World) -> Got:
    env = {"BROKER_HOST": f"redis://127.0.0.1:{closed_port()}/10"}
    return run(w, "--key-file", str(w.keyfile()), "notify", "--deleted", "old-kid", env=env)


PUBLISH = {
    "jwks_fetch_failed": Case(
        lambda w: run(w, "verify", rs_token(w.keys[0], claims()), "--jwks-file", str(w.tmp / "none.json")),
        "cannot read JWKS file",
    ),
    "invalid_url": Case(lambda w: fetch(w, "ftp://example.test/jwks"), "bad URL 'ftp://example.test/jwks'"),
    "bad_url": Case(
        lambda w: _route(w, Route(302, b"", {"Location": "ftp://example.test/jwks"})), "redirects to a bad URL"
    ),
    "insecure_url": Case(lambda w: fetch(w, "http://jwks.example.invalid/jwks"), "refusing plain http"),
    "insecure_redirect": Case(lambda w: _tls(w, down=True), "refusing a redirect from https to http"),
    "too_many_redirects": Case(_redirects, "more than 3 redirects fetching"),
    "network_error": Case(lambda w: fetch(w, f"http://127.0.0.1:{closed_port()}/jwks"), "connection refused"),
    "tls_error": Case(lambda w: _tls(w, down=False), "TLS certificate of 127.0.0.1 not trusted"),
    "timeout": Case(lambda w: _route(w, Route(hang=True), "--timeout", "0.3"), "no complete answer from"),
    "http_status": Case(
        lambda w: _route(w, Route(500, b"<html>boom</html>", {"Content-Type": "text/html"})),
        "HTTP 500 Internal Server Error from",
    ),
    "not_json": Case(
        lambda w: _route(w, Route(200, b"<html>login</html>", {"Content-Type": "text/html"})),
        "answered with Content-Type text/html, not a JWK Set",
    ),
    "not_a_jwk_set": Case(
        lambda w: _route(w, Route(200, b'{"kty": "RSA"}', {"Content-Type": "application/json"})), "is not a JWK Set"
    ),
    "too_large": Case(
        lambda w: _route(
            w, Route(200, b'{"keys": []}' + b" " * 100, {"Content-Type": "application/json"}), "--max-bytes", "50"
        ),
        "the limit is 50 bytes",
    ),
    "truncated": Case(
        lambda w: _route(w, Route(200, b'{"keys": []}', {"Content-Type": "application/json"}, cut=5)),
        "was cut short: the connection closed after 5 bytes of the 12 its Content-Length announced",
    ),
    "check_failed": Case(_check_failed, "shape.non_empty"),
    "notify_failed": Case(_notify_failed, "cannot publish gateway.jwks.updated on the broker"),
}

# -- writing files, standard streams, planning with --now (2, 4) ----------------------------------------


def _process(w: World, *args: str, stdin: Any = subprocess.DEVNULL, stdout: Any = None, no_stdin: bool = False) -> Got:
    """Run ``prisme-keys --json ARGS`` as a process: its own standard streams are the point."""
    argv = [script(), "--json", *args]
    if no_stdin:  # started with descriptor 0 closed, as `<&-` does
        argv = ["bash", "-c", 'exec "$0" "$@" <&-', *argv]
    out = subprocess.PIPE if stdout is None else stdout
    p = subprocess.run(argv, env=w.cli.env, stdin=stdin, stdout=out, stderr=subprocess.PIPE, text=True, timeout=60)
    return parse_error(p.stderr, p.returncode)


def _reset_stdin(w: World) -> Got:
    """stdin is a TCP connection its peer reset: reading it fails with ECONNRESET."""
    with socket.create_server(("127.0.0.1", 0)) as srv, socket.create_connection(srv.getsockname()) as conn:
        peer, _ = srv.accept()
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()  # an RST, not a FIN
        return _process(w, "decode", "-", stdin=conn.fileno())


def _full_stdout(w: World) -> Got:
    with open("/dev/full", "w") as full:
        return _process(w, "--key-file", str(w.keyfile()), "export", stdout=full)


def _out(w: World, target: str) -> Got:
    return run(w, "--key-file", str(w.keyfile()), "export", "--out", target)


def _write_failed(w: World) -> Got:
    (w.tmp / "a-file").write_text("x")
    return _out(w, str(w.tmp / "a-file" / "jwks.json"))


class _CtrlC:
    """Standard input whose first read is interrupted by Ctrl-C: Python raises KeyboardInterrupt there,
    in the main thread, as SIGINT does while a command waits for input."""

    def __init__(self) -> None:
        self.buffer = self

    def read1(self, n: int = -1) -> bytes:
        raise KeyboardInterrupt

    read = read1


def _interrupted(w: World) -> Got:
    from prisme_keys.cli import main

    err = io.StringIO()
    w.monkeypatch.setattr(sys, "stdin", _CtrlC())
    w.monkeypatch.setattr(sys, "stdout", io.StringIO())
    w.monkeypatch.setattr(sys, "stderr", err)
    rc = main(["--json", "--key-file", str(w.keyfile()), "verify", "--batch"], w.cli.env)
    return parse_error(err.getvalue(), rc)


STREAMS = {
    "interrupted": Case(_interrupted, "interrupted"),
    "output_is_folder": Case(lambda w: _out(w, f"{w.tmp}/"), "is a folder; name a file"),
    "output_not_regular": Case(lambda w: _out(w, "/dev/null"), "/dev/null is not a regular file (a device or FIFO)"),
    "output_protected": Case(lambda w: _out(w, str(w.tmp / "keys.json")), "it is the key file; add --force"),
    "write_failed": Case(_write_failed, "a-file/jwks.json: Not a directory (ENOTDIR)"),
    "stdin_closed": Case(
        lambda w: _process(w, "decode", "-", no_stdin=True), "cannot read standard input: it is closed"
    ),
    "stdin_unreadable": Case(_reset_stdin, "cannot read standard input: Connection reset by peer (ECONNRESET)"),
    "stdout_failed": Case(_full_stdout, "cannot write to standard output: No space left on device (ENOSPC)"),
    "now_not_real": Case(
        lambda w: run(w, "--key-file", str(w.keyfile()), "--now", "+40d", "rotate"),
        "is 40 days ahead of the real clock and this command changes the key file",
    ),
}

#: Codes no input can produce: class defaults kept for library callers (their registry meaning says so).
DEFAULT_ONLY = {"claims_rejected"}

CASES: dict[str, Case] = {**GENERAL, **KEYFILE, **TOKENS, **PUBLISH, **STREAMS}


def code_of(case_id: str) -> str:
    """The registry code a case id stands for (``usage_error/click`` -> ``usage_error``)."""
    return case_id.split("/")[0]


@pytest.fixture(scope="module")
def ca():
    import trustme

    return trustme.CA()


@pytest.fixture
def world(cli, tmp_path, keypool, ca, monkeypatch):
    with JwksServer() as server:
        yield World(cli, tmp_path, keypool, server, ca, monkeypatch)


def _assert_case(world: World, case_id: str) -> None:
    code = code_of(case_id)
    got = CASES[case_id].produce(world)
    entry = ERROR_CODES[code]
    assert set(got.doc) == {"code", "message", "exit"}, got.doc
    assert (got.doc["code"], got.doc["exit"], got.rc) == (code, int(entry.exit), int(entry.exit)), got.doc
    assert CASES[case_id].message in got.doc["message"], got.doc
    assert len(got.doc["message"]) <= 1000 and "\n" not in got.doc["message"]


@pytest.mark.parametrize("case_id", sorted(GENERAL))
def test_general_errors(world, case_id):
    _assert_case(world, case_id)


@pytest.mark.parametrize("case_id", sorted(KEYFILE))
def test_key_file_errors(world, case_id):
    _assert_case(world, case_id)


@pytest.mark.parametrize("case_id", sorted(TOKENS))
def test_token_errors(world, case_id):
    _assert_case(world, case_id)


@pytest.mark.parametrize("case_id", sorted(PUBLISH))
def test_fetch_check_notify_errors(world, case_id):
    _assert_case(world, case_id)


@pytest.mark.parametrize("case_id", sorted(STREAMS))
def test_file_stream_and_planning_errors(world, case_id):
    _assert_case(world, case_id)


def test_every_registered_code_has_a_case():
    covered = {code_of(c) for c in CASES}
    missing = sorted(set(ERROR_CODES) - covered)
    assert not missing, f"error codes without a test case in tests/test_error_codes.py: {', '.join(missing)}"
    assert covered <= set(ERROR_CODES), f"cases for unregistered codes: {sorted(covered - set(ERROR_CODES))}"
    assert len(CASES) == sum(map(len, (GENERAL, KEYFILE, TOKENS, PUBLISH, STREAMS)))  # no case id shadowed


def test_default_only_codes_say_so_in_the_registry():
    for code in DEFAULT_ONLY:
        assert "no input produces it" in ERROR_CODES[code].meaning, code
    assert {c.exit for c in ERROR_CODES.values()} <= set(ExitCode)
