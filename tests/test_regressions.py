"""Regression tests for defects found by a newcomer trying to break the tool (one test per class)."""

import contextlib
import json
import os
import stat
import subprocess
from datetime import UTC

import pytest
from helpers import empty_config, no_traceback, record, write_keyfile

DEEP = "[" * 30000 + "]" * 30000


def one_error_line(p, code):
    no_traceback(p)
    assert p.returncode == code, (p.returncode, p.stderr)
    assert p.stderr.startswith("prisme-keys: error: ") and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_out_follows_symlinks_and_refuses_devices_and_fifos(cli, keyfile, tmp_path):
    target = tmp_path / "real.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    p = cli("--key-file", str(keyfile), "export", "--out", str(link))
    assert p.returncode == 0, p.stderr
    assert link.is_symlink() and json.loads(target.read_text())["keys"]
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for dest in (str(fifo), "/dev/null", str(tmp_path)):
        p = cli("--key-file", str(keyfile), "export", "--private", "--out", dest)
        one_error_line(p, 2)
        assert ("is a folder; name a file" if dest == str(tmp_path) else "is not a regular file") in p.stderr
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_symlinked_key_file_is_updated_in_place(cli, keyfile, tmp_path):
    link = tmp_path / "via-link.json"
    link.symlink_to(keyfile)
    p = cli("--key-file", str(link), "--now", "2026-02-01T00:00:00Z", "--write-at-now", "rotate")
    assert p.returncode == 0, p.stderr
    assert link.is_symlink()
    assert len(json.loads(keyfile.read_text())["keys"]) == 2
    assert (tmp_path / "keys.json.lock").exists() and not (tmp_path / "via-link.json.lock").exists()


def test_deeply_nested_json_is_a_documented_error(cli, tmp_path):
    kf = tmp_path / "deep.json"
    kf.write_text('{"format": 1, "keys": ' + DEEP + "}")
    os.chmod(kf, 0o600)
    one_error_line(cli("--key-file", str(kf), "list"), 4)
    src = tmp_path / "deep-import.json"
    src.write_text(DEEP)
    one_error_line(cli("--key-file", str(tmp_path / "new.json"), "import", "--create", str(src)), 4)
    assert not (tmp_path / "new.json").exists()


def test_non_finite_and_out_of_range_values(cli, keyfile):
    g = ["--key-file", str(keyfile)]
    one_error_line(cli(*g, "verify", "a.b.c", "--leeway", "nan"), 2)
    one_error_line(cli(*g, "verify", "a.b.c", "--jwks-url", "http://127.0.0.1:9/x", "--timeout", "nan"), 2)
    one_error_line(cli(*g, "--now", "+99999999d", "rotate", "--dry-run"), 2)
    for env in (
        {"JWKS_ROTATION_DAYS": "99999999999"},
        {"ACCESS_TOKENS_MAX_AGE": "300000000000"},
        {"PRISME_KEYS_PUBLICATION_LEAD": "9999999d"},
        {"PRISME_KEYS_LOCK_TIMEOUT": "inf"},
    ):
        p = cli(*g, "rotate", "--force", env=env)
        one_error_line(p, 3)
        assert f"bad value for {next(iter(env))}" in p.stderr
    one_error_line(cli(*g, "--now", "\u0663", "list"), 2)  # an Arabic-Indic digit is not a Unix time


def test_named_config_file_must_exist(cli, keyfile, tmp_path):
    missing = tmp_path / "typo.toml"
    p = cli("--key-file", str(keyfile), "--config", str(missing), "list")
    one_error_line(p, 3)
    assert f"config file {missing} (from --config) does not exist" in p.stderr
    p = cli("--key-file", str(keyfile), "list", env={"PRISME_KEYS_CONFIG": str(missing)})
    one_error_line(p, 3)
    assert cli("--key-file", str(keyfile), "list").returncode == 0  # the default path may be absent


@pytest.mark.parametrize(
    "mutate,reason",
    [
        (lambda r: r["jwk"].update(n="!!!"), "jwk n or e is not base64url"),
        (lambda r: r["jwk"].update(e="AAAA"), "jwk n/e are not an RSA public key"),
        (lambda r: r["jwk"].update(kid="other"), "differs from its jwk kid 'other'"),
    ],
)
def test_parseable_but_invalid_records_are_exit_4_everywhere(cli, tmp_path, keypool, mutate, reason):
    rec = record(dict(keypool[0]))
    mutate(rec)
    kf = write_keyfile(tmp_path / "k.json", [rec])
    before = kf.read_bytes()
    for cmd in (["list"], ["export"], ["rotate", "--dry-run"], ["prune"]):
        p = cli("--key-file", str(kf), *cmd)
        one_error_line(p, 4)
        assert reason in p.stderr
    assert kf.read_bytes() == before


def test_duplicate_kids_are_never_published(cli, tmp_path, keypool):
    kf = write_keyfile(tmp_path / "k.json", [record(keypool[0]), record(keypool[0])])
    p = cli("--key-file", str(kf), "export")
    one_error_line(p, 4)
    assert f"holds kid {keypool[0]['kid']!r} twice" in p.stderr


def test_empty_key_set_is_not_a_key_file(cli, tmp_path):
    kf = tmp_path / "k.json"
    kf.write_text('{"format": 1, "keys": []}')
    os.chmod(kf, 0o600)
    for cmd in (["rotate"], ["export"], ["list"]):
        p = cli("--key-file", str(kf), *cmd)
        one_error_line(p, 4)
        assert "holds no key (only init creates a key set)" in p.stderr
    assert kf.read_text() == '{"format": 1, "keys": []}'


def test_quiet_cron_prints_nothing_when_nothing_is_due(cli, keyfile):
    for cmd in (["rotate"], ["prune"]):
        p = cli("-q", "--key-file", str(keyfile), "--now", "2026-01-02T00:00:00Z", "--write-at-now", *cmd)
        assert (p.returncode, p.stdout, p.stderr) == (0, "", "")
    p = cli("-q", "--key-file", str(keyfile), "--now", "2026-02-01T00:00:00Z", "--write-at-now", "rotate")
    assert p.returncode == 0 and p.stdout.startswith("rotated: signing key ")


def test_key_created_after_now_is_still_the_signing_key(cli, keyfile, keypool):
    """A key made by a host whose clock runs a little ahead (within the clock skew) is not a 'next' key.

    (Further ahead it is future-dated: tests/test_write_at_now.py.)"""
    p = cli("--key-file", str(keyfile), "--now", "2025-12-31T23:56:00Z", "--write-at-now", "--json", "rotate")
    doc = json.loads(p.stdout)
    assert (doc["rotated"], doc["reason"], doc["signing_kid"]) == (False, "nothing due", keypool[0]["kid"])
    p = cli("--key-file", str(keyfile), "--now", "2025-12-31T22:00:00Z", "--json", "list")
    assert [k["state"] for k in json.loads(p.stdout)["keys"]] == ["signing"]


def test_slower_concurrent_rotation_still_comes_out_newest(tmp_path, keypool):
    """A forced rotation planned at T but committed after another host's rotation stamped T+1s."""
    from prisme_keys import clock, settings
    from prisme_keys.store import lifecycle

    newest = record(keypool[1], created="2026-01-01T00:00:01.000Z", previous=keypool[0]["kid"])
    kf = write_keyfile(tmp_path / "k.json", [newest, record(keypool[0])])
    s = settings.load({"key_file": str(kf), "config_path": str(empty_config(tmp_path))}, {})
    res = lifecycle.rotate(
        s, clock.parse_iso("2026-01-01T00:00:00.000Z"), force=True, keygen=lambda bits, alg: keypool[2]
    )
    recs = json.loads(kf.read_text())["keys"]
    assert [r["kid"] for r in recs] == [keypool[2]["kid"], keypool[1]["kid"], keypool[0]["kid"]]
    assert recs[0]["previousKeyId"] == keypool[1]["kid"]
    assert recs[0]["createdAt"] == "2026-01-01T00:00:01.000Z"  # never older than the key it follows
    assert res.signing_kid == keypool[2]["kid"]


def test_json_export_records_is_one_document(cli, keyfile, keypool):
    p = cli("--key-file", str(keyfile), "--json", "export", "--format", "records", "--private")
    doc = json.loads(p.stdout)
    assert isinstance(doc, list) and doc[0]["kid"] == keypool[0]["kid"]
    p = cli("--key-file", str(keyfile), "export", "--format", "records", "--private")
    assert [json.loads(ln)["kid"] for ln in p.stdout.splitlines()] == [keypool[0]["kid"]]


def test_check_deep_json_duplicate_keys_and_negative_max_age(cli):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    replies = []

    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            body, cache = replies[-1]
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", cache)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/jwks"
    try:
        cases = [
            ((DEEP.encode(), "max-age=60"), "shape.jwk_set", "body is JSON nested too deeply"),
            ((b'{"keys": [], "keys": []}', "max-age=60"), "shape.jwk_set", "repeats a member"),
            ((b'{"keys": []}', "max-age=-5"), "transport.cache_control", "not a whole number"),
        ]
        for reply, name, detail in cases:
            replies.append(reply)
            p = cli("--json", "check", url, "--no-against")
            no_traceback(p)
            assert p.returncode == 10, p.stderr
            checks = {c["name"]: c for c in json.loads(p.stdout)["checks"]}
            assert checks[name]["status"] == "fail" and detail in checks[name]["detail"], checks[name]
    finally:
        srv.shutdown()
        srv.server_close()


def test_relative_times_round_to_the_nearest_unit():
    from datetime import datetime, timedelta

    from prisme_keys import clock

    t = datetime(2026, 1, 1, tzinfo=UTC)
    assert clock.humanize(t + timedelta(days=30, milliseconds=-5), t) == "in 30 days"  # right after init
    assert clock.humanize(t - timedelta(hours=2, seconds=1), t) == "2 hours ago"


def test_non_string_path_in_config_is_exit_3(cli, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("key_file = 5\n")
    p = cli("--config", str(cfg), "list")
    one_error_line(p, 3)
    assert "bad value for a path setting: 5" in p.stderr


@pytest.mark.parametrize(
    "mutate,reason",
    [
        (
            lambda r: r.update(kid="evil\x1b[2Jkid", jwk=dict(r["jwk"], kid="evil\x1b[2Jkid")),
            "contains control characters",
        ),
        (
            lambda r: r.update(rotatesAt="2025-01-01T00:00:00.000Z"),
            "rotatesAt 2025-01-01T00:00:00.000Z is before createdAt",
        ),
        (
            lambda r: r.update(expiresAt="2025-12-31T00:00:00.000Z"),
            "expiresAt 2025-12-31T00:00:00.000Z is before createdAt",
        ),
    ],
)
def test_import_rejects_control_character_kids_and_backwards_dates(cli, keyfile, keypool, mutate, reason):
    rec = record(dict(keypool[3]))
    mutate(rec)
    before = keyfile.read_bytes()
    p = cli("--key-file", str(keyfile), "import", "-", input=json.dumps([rec]))
    one_error_line(p, 4)
    assert reason in p.stderr and "\x1b" not in p.stderr
    assert keyfile.read_bytes() == before


def test_json_version_and_bad_broker_url(cli):
    p = cli("--json", "--version")
    from prisme_keys import __version__

    assert (p.returncode, json.loads(p.stdout)) == (0, {"version": __version__})
    p = cli("notify", "--no-runtime", env={"BROKER_HOST": "redis://127.0.0.1:1/abc"})
    one_error_line(p, 3)
    assert "bad value for BROKER_HOST: redis://127.0.0.1:1/abc" in p.stderr


def test_ctrl_c_is_exit_130_with_one_line_and_no_file(cli, tmp_path):
    import pty
    import select
    import signal

    kf = tmp_path / "k.json"
    master, slave = pty.openpty()  # stderr on a terminal: the key-generation spinner is the handshake
    p = cli.popen(
        "--key-file",
        str(kf),
        "init",
        env={"JWKS_SIZE": "8192"},
        stdout=subprocess.PIPE,
        stderr=slave,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    os.close(slave)
    seen = b""
    while b"generating" not in seen:
        ready, _, _ = select.select([master], [], [], 60)
        assert ready, seen
        seen += os.read(master, 4096)
    p.send_signal(signal.SIGINT)
    p.wait(timeout=120)
    rest = b""
    with contextlib.suppress(OSError):
        while select.select([master], [], [], 1)[0]:
            chunk = os.read(master, 4096)
            if not chunk:
                break
            rest += chunk
    os.close(master)
    assert p.returncode == 130
    assert (seen + rest).replace(b"\r\n", b"\n").rstrip().endswith(b"prisme-keys: interrupted")
    assert not kf.exists()


@pytest.mark.parametrize("args", [["generate"], ["generate", "--out", "-"], ["export", "--private", "--out", "-"]])
def test_private_output_to_a_terminal_is_refused_for_every_spelling_of_stdout(cli, keyfile, args):
    import pty

    from helpers import script

    master, slave = pty.openpty()
    try:
        p = subprocess.run(
            [script(), "--key-file", str(keyfile), *args], stdout=slave, stderr=subprocess.PIPE, env=cli.env, timeout=60
        )
    finally:
        os.close(slave)
        os.close(master)
    assert p.returncode == 2
    assert p.stderr == (
        b"prisme-keys: error: refusing to print private key material on a terminal; "
        b"use --out FILE, a pipe or a redirect, or add --to-terminal\n"
    )
