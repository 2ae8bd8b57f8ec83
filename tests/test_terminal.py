"""On a real terminal (a pty): progress bars on stderr, list tables that never wrap a kid, colours."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import termios
import time
from datetime import timedelta

import pytest
from helpers import empty_config, record, script, write_keyfile
from jwks_server import JwksServer

from prisme_keys import clock
from prisme_keys.store.lifecycle import public_jwks

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def plain(text: str) -> str:
    """Terminal output without escape sequences, carriage returns as line ends."""
    return ANSI.sub("", text).replace("\r\n", "\n").replace("\r", "\n")


def term_env(tmp_path, key_file, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR", "PRISME_KEYS_FILE")}
    env.update(
        TERM="xterm-256color",
        PRISME_KEYS_FILE=str(key_file),
        PRISME_KEYS_CONFIG=str(empty_config(tmp_path)),
        OIDC_PROVIDER_URL="https://issuer.test",
        API_URL="https://api.test",
    )
    env.update(extra)
    return env


def in_pty(args, env, *, cols=80, stdout=None, timeout=300.0) -> tuple[int, str]:
    """Run prisme-keys with stdin and stderr on a ``cols``-wide pty (stdout too unless given);
    return its exit code and everything the terminal received."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, cols, 0, 0))
    proc = subprocess.Popen(
        [script(), *args], stdin=slave, stdout=stdout if stdout is not None else slave, stderr=slave, env=env
    )
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return rc, b"".join(chunks).decode("utf-8", "replace")


def healthy_file(path, jwks, kids=None):
    now = clock.now()
    recs = []
    for i, jwk in enumerate(jwks):
        created = now - timedelta(hours=1 + i)
        rec = record(
            jwk,
            created=clock.iso(created),
            rotates=clock.iso(created + timedelta(days=30)),
            expires=clock.iso(created + timedelta(days=60)),
        )
        if kids:
            rec["kid"] = kids[i]
            rec["jwk"] = {**jwk, "kid": kids[i]}
        recs.append(rec)
    return write_keyfile(path, recs)


# ---------------------------------------------------------------------------------------------
# Progress


@pytest.mark.slow
def test_mint_count_shows_progress_on_a_terminal(tmp_path, keypool):
    kf = healthy_file(tmp_path / "keys.json", keypool[:1])
    env = term_env(tmp_path, kf)
    with open(tmp_path / "tokens.txt", "w") as out:
        rc, screen = in_pty(["mint", "--count", "20000"], env, cols=100, stdout=out)
    assert rc == 0, screen
    assert len((tmp_path / "tokens.txt").read_text().splitlines()) == 20000
    text = plain(screen)
    assert re.search(r"minting .* [\d,]+/20,000 [\d,]+ tokens/s \d+:\d\d:\d\d ETA \d+:\d\d:\d\d", text), text[-2000:]
    final = text.rstrip().splitlines()[-1]  # the finished bar stays: count, rate, time taken
    assert re.fullmatch(r"minting ━+ 20,000/20,000 [\d,]+ tokens/s \d+:\d\d:\d\d", final.strip()), final
    assert "\x1b[?25l" in screen  # rich hid the cursor while drawing and restored it
    assert screen.rstrip().endswith("\x1b[?25h")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["pipe", "-q", "--json"])
def test_no_progress_in_a_pipe_nor_with_quiet_or_json(tmp_path, keypool, mode):
    kf = healthy_file(tmp_path / "keys.json", keypool[:1])
    env = term_env(tmp_path, kf)
    count = "4000"  # several seconds of signing: a bar would show (see the test above)
    if mode == "pipe":
        p = subprocess.run([script(), "mint", "--count", count], capture_output=True, text=True, env=env, timeout=300)
        assert (p.returncode, p.stderr) == (0, "")
        assert len(p.stdout.splitlines()) == 4000
        return
    with open(tmp_path / "out", "w") as out:
        rc, screen = in_pty([mode, "mint", "--count", count], env, stdout=out)
    assert (rc, screen) == (0, "")
    if mode == "--json":
        assert len(json.loads((tmp_path / "out").read_text())) == 4000


def test_progress_callbacks_of_the_core(tmp_path, keypool):
    """The core reports (done, total) to a plain callback; the last call is the whole work."""
    from prisme_keys import settings as settings_mod
    from prisme_keys.store import doctor, importer
    from prisme_keys.tokens import batch, mint, verify

    kf = healthy_file(tmp_path / "keys.json", keypool[:3])
    s = settings_mod.load({"key_file": str(kf), "config_path": str(empty_config(tmp_path))}, {})
    calls: list[tuple[int, int | None]] = []
    run = mint.mint(s, clock.now(), mint.MintOptions(count=5), progress=lambda d, t: calls.append((d, t)))
    tokens = [m.token for m in run.tokens]
    assert calls == [(i, 5) for i in range(1, 6)]
    calls.clear()
    source = verify.open_source(s)
    lines = [(i + 1, t.encode()) for i, t in enumerate([*tokens, "bad"])]
    rc = batch.verify_batch(lines, source, verify.VerifyOptions(algorithms=("RS256",)), lambda _: None,
                             progress=lambda d, t: calls.append((d, t)))  # fmt: skip
    assert rc == 5 and calls == [(i, None) for i in range(1, 7)]
    calls.clear()
    doctor.audit(s, clock.now(), progress=lambda d, t: calls.append((d, t)))
    assert calls == [(0, 3), (1, 3), (2, 3), (3, 3)]
    calls.clear()
    data = json.dumps({"keys": keypool[3:5]}).encode()
    importer.import_keys(s, clock.now(), data, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(0, 2), (1, 2), (2, 2)]


# ---------------------------------------------------------------------------------------------
# list on a terminal


@pytest.mark.parametrize("cols", [80, 120])
def test_list_never_wraps_a_kid(tmp_path, keypool, cols):
    kids = [keypool[0]["kid"], keypool[1]["kid"], "imported-" + "x" * 55, keypool[3]["kid"]]
    kf = healthy_file(tmp_path / "keys.json", keypool[:4], kids=kids)
    rc, screen = in_pty(["list"], term_env(tmp_path, kf), cols=cols)
    assert rc == 0, screen
    lines = plain(screen).splitlines()
    assert all(len(line.rstrip()) <= cols for line in lines), lines  # the terminal wraps nothing
    for kid in kids:
        assert sum(1 for line in lines if kid in line) == 1, (kid, lines)
    assert lines[0].split()[:2] == ["kid", "state"]


@pytest.mark.parametrize(
    ("cols", "header"),
    [
        (80, ["kid", "state", "rotates", "expires"]),
        (120, ["kid", "state", "alg", "bits", "created", "rotates", "expires"]),
        (160, ["kid", "state", "alg", "bits", "private", "created", "rotates", "expires"]),
    ],
)
def test_list_shows_what_fits(tmp_path, keypool, cols, header):
    kf = healthy_file(tmp_path / "keys.json", keypool[:2])
    rc, screen = in_pty(["list"], term_env(tmp_path, kf), cols=cols)
    lines = plain(screen).splitlines()
    assert rc == 0 and lines[0].split() == header
    assert lines[2].split()[:2] == [keypool[0]["kid"], "signing"]
    if cols > 80:
        assert "in 30 days" in plain(screen)  # relative times under the dates


def test_list_kid_wider_than_the_terminal_is_printed_whole(tmp_path, keypool):
    kids = ["k" * 100]
    kf = healthy_file(tmp_path / "keys.json", keypool[:1], kids=kids)
    rc, screen = in_pty(["list"], term_env(tmp_path, kf), cols=80)
    assert (rc, plain(screen)) == (0, "k" * 100 + "\n")


# ---------------------------------------------------------------------------------------------
# Colours


def test_check_and_doctor_colour_statuses_unless_no_color(tmp_path, keypool):
    kf = healthy_file(tmp_path / "keys.json", keypool[:1])
    recs = json.loads(kf.read_text())["keys"]
    with JwksServer() as srv:
        srv.serve_json("/jwks", public_jwks(recs))  # no Cache-Control: one warning
        for no_color in ("", "1"):
            env = term_env(tmp_path, kf, **({"NO_COLOR": no_color} if no_color else {}))
            rc, check = in_pty(["check", srv.url(), "--no-against"], env, cols=140)
            assert rc == 0, check
            os.chmod(kf, 0o640)
            rc2, doctor = in_pty(["doctor"], env, cols=140)
            os.chmod(kf, 0o600)
            assert rc2 == 4, doctor
            if no_color:
                assert "\x1b[3" not in check and "\x1b[3" not in doctor
            else:
                assert "\x1b[32mpass" in check and "\x1b[33mwarn" in check  # green pass, yellow warn
                assert "\x1b[32mok" in check
                assert "\x1b[1;31merror" in doctor and "\x1b[1;31m1 problem" in doctor
            assert plain(check).rstrip().splitlines()[-1].startswith("ok: ")
            assert "1 warning, 0 failed" in plain(check)


@pytest.mark.parametrize(("kid", "shown"), [("[/x] [bold]k", "[/x] [bold]k"), ("a\ud800b", "a\\ud800b")])
def test_list_on_a_terminal_shows_odd_kids_as_plain_text(tmp_path, keypool, kid, shown):
    """Regression: a kid holding rich markup ("[/x]") or a lone surrogate made list on a terminal exit 1."""
    kf = healthy_file(tmp_path / "keys.json", keypool[:1], kids=[kid])
    rc, screen = in_pty(["list"], term_env(tmp_path, kf), cols=120)
    assert rc == 0, screen
    assert shown in plain(screen)
