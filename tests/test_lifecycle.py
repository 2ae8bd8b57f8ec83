"""The main job end to end through the installed console script, on a fixed clock."""

import json
import os
import stat

import jwt
import pytest
from helpers import T0, empty_config, no_traceback, one_error_line, record, write_keyfile

from prisme_keys import jwk as jwk_rules

T29 = "2026-01-30T00:00:00.000Z"
T31 = "2026-02-01T00:00:00.000Z"


def load(path):
    return json.loads(path.read_text())


def test_lifecycle_on_fixed_clock(cli, tmp_path):
    kf = tmp_path / "shared" / "keys.json"
    g = ["--key-file", str(kf)]
    p = cli(*g, "--now", T0, "--write-at-now", "--json", "init")
    assert p.returncode == 0, p.stderr
    first = json.loads(p.stdout)
    assert first["createdAt"] == T0
    assert first["rotatesAt"] == "2026-01-31T00:00:00.000Z"
    assert first["expiresAt"] == "2026-03-02T00:00:00.000Z"
    assert stat.S_IMODE(os.stat(kf).st_mode) == 0o600
    doc = load(kf)
    assert doc["format"] == 1 and [r["kid"] for r in doc["keys"]] == [first["kid"]]
    rec = doc["keys"][0]
    assert list(rec) == ["kid", "previousKeyId", "createdAt", "rotatesAt", "expiresAt", "jwk"]
    assert rec["previousKeyId"] is None and rec["jwk"]["kid"] == rec["kid"] == jwk_rules.thumbprint(rec["jwk"])

    before = kf.read_bytes()
    p = cli(*g, "--now", T29, "--write-at-now", "rotate")
    assert p.returncode == 0
    assert p.stdout == "nothing due; next rotation on 2026-01-31 00:00 UTC (in 1 day)\n"
    assert kf.read_bytes() == before

    p = cli(*g, "--now", T31, "rotate", "--dry-run")
    assert p.returncode == 0 and p.stdout.startswith("would rotate: signing key")
    assert kf.read_bytes() == before

    p = cli(*g, "--now", T31, "--write-at-now", "--json", "rotate")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert res["rotated"] is True
    assert res["created"]["previousKeyId"] == first["kid"]
    assert res["created"]["createdAt"] == T31
    assert res["created"]["rotatesAt"] == "2026-03-03T00:00:00.000Z"
    assert res["created"]["expiresAt"] == "2026-04-02T00:00:00.000Z"
    # the retired key's expiresAt becomes max(expiresAt, now + MAX_AGE) = 2026-03-03
    assert res["retired"] == {"kid": first["kid"], "expiresAt": "2026-03-03T00:00:00.000Z"}
    doc = load(kf)
    assert [r["kid"] for r in doc["keys"]] == [res["created"]["kid"], first["kid"]]
    assert doc["keys"][1]["expiresAt"] == "2026-03-03T00:00:00.000Z"

    p = cli(*g, "--now", T31, "--write-at-now", "rotate")
    assert p.stdout.startswith("nothing due; next rotation on 2026-03-03 00:00 UTC")

    p = cli(*g, "--now", T31, "--json", "list")
    states = {r["kid"]: r["state"] for r in json.loads(p.stdout)["keys"]}
    assert states == {res["created"]["kid"]: "signing", first["kid"]: "retired"}

    before = kf.read_bytes()
    p = cli(*g, "--now", "2026-03-02T23:59:59.999Z", "--write-at-now", "prune")
    assert (p.returncode, p.stdout) == (0, "nothing to prune; next expiry on 2026-03-03 00:00 UTC (in 0 seconds)\n")
    assert kf.read_bytes() == before
    p = cli(*g, "--now", "2026-03-03T00:00:00.000Z", "prune", "--dry-run")
    assert p.stdout == f"would prune 1 key: {first['kid']}\n"
    assert kf.read_bytes() == before
    p = cli(*g, "--now", "2026-03-03T00:00:00.000Z", "--write-at-now", "prune")
    assert (p.returncode, p.stdout) == (0, f"pruned 1 key: {first['kid']}\n")
    assert [r["kid"] for r in load(kf)["keys"]] == [res["created"]["kid"]]


def test_prune_never_removes_signing_key(cli, keyfile):
    before = keyfile.read_bytes()
    p = cli("--key-file", str(keyfile), "--now", "2027-01-01T00:00:00Z", "--write-at-now", "--json", "prune")
    assert p.returncode == 0
    doc = json.loads(p.stdout)
    assert doc["pruned"] == [] and doc["kept"] == 1
    assert "is past its expiresAt (2026-03-02T00:00:00.000Z) but is kept: it is the signing key" in doc["notes"][0]
    assert "warning: signing key" in p.stderr
    assert keyfile.read_bytes() == before


def test_prune_keeps_signing_key_removes_only_expired(cli, tmp_path, keypool):
    recs = [
        record(
            keypool[2],
            created="2026-02-01T00:00:00.000Z",
            rotates="2026-03-03T00:00:00.000Z",
            expires="2026-04-02T00:00:00.000Z",
            previous=keypool[1]["kid"],
        ),
        record(keypool[1], created="2026-01-15T00:00:00.000Z", expires="2026-02-10T00:00:00.000Z"),
        record(keypool[0], expires="2026-03-01T00:00:00.000Z"),
    ]
    kf = write_keyfile(tmp_path / "k.json", recs)
    p = cli("--key-file", str(kf), "--now", "2026-02-20T00:00:00Z", "--write-at-now", "--json", "prune")
    assert json.loads(p.stdout)["pruned"] == [keypool[1]["kid"]]
    assert [r["kid"] for r in load(kf)["keys"]] == [keypool[2]["kid"], keypool[0]["kid"]]


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"   \n",
        b'{"format": 1, "keys": [',
        b"not json at all",
        b'{"format": 2, "keys": []}',
        b'{"keys": []}',
        b"[1, 2]",
        b'{"format": 1, "keys": [{"kid": "x"}]}',
        b"\xff\xfe\x00",
    ],
)
@pytest.mark.parametrize(
    "command", [["init"], ["rotate"], ["rotate", "--force"], ["prune"], ["list"], ["export"], ["export", "--private"]]
)
def test_corrupt_key_file_exit_4_unchanged(cli, tmp_path, content, command):
    kf = tmp_path / "keys.json"
    kf.write_bytes(content)
    os.chmod(kf, 0o600)
    p = cli("--key-file", str(kf), *command)
    assert p.returncode == 4, p.stderr
    no_traceback(p)
    assert p.stderr.startswith("prisme-keys: error: key file ")
    assert len(p.stderr.strip().splitlines()) == 1
    assert kf.read_bytes() == content


def test_missing_key_file_rotate_prune_exit_4_and_create_nothing(cli, tmp_path):
    kf = tmp_path / "unmounted" / "keys.json"
    for cmd in (["rotate"], ["rotate", "--force"], ["prune"], ["list"], ["export"]):
        p = cli("--key-file", str(kf), *cmd)
        assert p.returncode == 4
        assert p.stderr == (
            f"prisme-keys: error: key file {kf} does not exist; create it with: prisme-keys init "
            "(or name another with --key-file / PRISME_KEYS_FILE)\n"
        )
    assert not kf.exists()


def test_init_refuses_existing_file(cli, keyfile):
    before = keyfile.read_bytes()
    p = cli("--key-file", str(keyfile), "init")
    assert p.returncode == 4
    assert p.stderr == f"prisme-keys: error: key file {keyfile} already exists; refusing to overwrite it\n"
    assert keyfile.read_bytes() == before


def test_group_readable_key_file_refused_unless_allowed(cli, keyfile):
    os.chmod(keyfile, 0o640)
    p = cli("--key-file", str(keyfile), "list")
    assert p.returncode == 4
    assert f"has unsafe permissions 0640 (readable by group or others); fix with: chmod 600 {keyfile}" in p.stderr
    p = cli("--key-file", str(keyfile), "list", env={"PRISME_KEYS_ALLOW_GROUP_READ": "1"})
    assert p.returncode == 0, p.stderr
    p = cli(
        "--key-file",
        str(keyfile),
        "--now",
        "2026-02-01T00:00:00Z",
        "--write-at-now",
        "rotate",
        env={"PRISME_KEYS_ALLOW_GROUP_READ": "1"},
    )
    assert p.returncode == 0
    assert stat.S_IMODE(os.stat(keyfile).st_mode) == 0o640  # the shared mode is kept on rewrite
    os.chmod(keyfile, 0o604)
    p = cli("--key-file", str(keyfile), "list", env={"PRISME_KEYS_ALLOW_GROUP_READ": "1"})
    assert p.returncode == 4 and "unsafe permissions 0604" in p.stderr


def test_lock_timeout_names_lock_file(cli, keyfile):
    import fcntl

    lock = open(str(keyfile) + ".lock", "a+")
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        p = cli(
            "--key-file",
            str(keyfile),
            "--now",
            "2026-02-01T00:00:00Z",
            "--write-at-now",
            "rotate",
            env={"PRISME_KEYS_LOCK_TIMEOUT": "0.5"},
        )
    finally:
        lock.close()
    assert p.returncode == 4
    assert p.stderr.startswith(f"prisme-keys: error: timed out after 0.5 s waiting for the lock {keyfile}.lock")
    assert len(load(keyfile)["keys"]) == 1


def _run_many(cli, keyfile, args, n=10):
    procs = [
        cli.popen(
            "--key-file", str(keyfile), "--now", "2026-02-01T00:00:00Z", "--write-at-now", *args, stdout=-1, stderr=-1
        )
        for _ in range(n)
    ]
    return [(p.wait(timeout=120), p.stderr.read().decode()) for p in procs]


def test_ten_hosts_rotating_at_once_add_exactly_one_key(cli, keyfile):
    results = _run_many(cli, keyfile, ["rotate"])
    assert [r[0] for r in results] == [0] * 10, results
    doc = load(keyfile)
    assert len(doc["keys"]) == 2
    assert doc["keys"][1]["kid"] == json.loads(json.dumps(doc))["keys"][1]["kid"]
    assert doc["keys"][0]["previousKeyId"] == doc["keys"][1]["kid"]


def test_ten_forced_rotations_add_ten_keys(cli, keyfile):
    first = load(keyfile)["keys"][0]["kid"]
    results = _run_many(cli, keyfile, ["rotate", "--force"])
    assert [r[0] for r in results] == [0] * 10, results
    recs = load(keyfile)["keys"]
    kids = [r["kid"] for r in recs]
    assert len(kids) == 11 and len(set(kids)) == 11 and first in kids
    # every new key's previousKeyId names another record: a chain, nothing lost
    assert sorted(r["previousKeyId"] for r in recs if r["previousKeyId"]) == sorted(k for k in kids if k != kids[0])


def test_export_public_jwks_verifies_with_pyjwt(cli, tmp_path, keypool):
    recs = [record(keypool[1], created="2026-01-10T00:00:00.000Z", previous=keypool[0]["kid"]), record(keypool[0])]
    kf = write_keyfile(tmp_path / "k.json", recs)
    p = cli("--key-file", str(kf), "export")
    assert p.returncode == 0
    jwks = json.loads(p.stdout)
    assert [k["kid"] for k in jwks["keys"]] == [keypool[1]["kid"], keypool[0]["kid"]]  # newest first
    for k in jwks["keys"]:
        assert list(k) == ["kty", "kid", "use", "alg", "n", "e"]
        assert not set(k) & {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
        assert "=" not in k["n"] and len(jwk_rules.b64url_decode(k["n"])) == 256 and k["e"] == "AQAB"
    for k, src in zip(jwks["keys"], (keypool[1], keypool[0]), strict=False):
        priv = jwk_rules.private_key_from_jwk(src)
        token = jwt.encode({"sub": "x"}, priv, algorithm="RS256", headers={"kid": src["kid"]})
        pub = jwt.PyJWK(k).key
        assert jwt.decode(token, pub, algorithms=["RS256"]) == {"sub": "x"}
    for m in ("d", "p", "q", "dp", "dq", "qi"):
        assert keypool[0][m] not in p.stdout


def test_export_private_and_out_file_mode(cli, keyfile, tmp_path, keypool):
    out = tmp_path / "private.json"
    p = cli("--key-file", str(keyfile), "export", "--private", "--out", str(out))
    assert p.returncode == 0 and p.stdout == ""
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert json.loads(out.read_text())["keys"][0]["d"] == keypool[0]["d"]
    p = cli("--key-file", str(keyfile), "export", "--format", "records")
    assert p.returncode == 2 and "needs --private" in p.stderr


def test_generate_standalone(cli, keyfile):
    before = keyfile.read_bytes()
    p = cli("--key-file", str(keyfile), "generate", env={"JWKS_ALG": "RS384"})
    jwk = json.loads(p.stdout)
    assert jwk["alg"] == "RS384" and "d" in jwk and jwk["kid"] == jwk_rules.thumbprint(jwk)
    p = cli("generate", "--public")
    assert list(json.loads(p.stdout)) == ["kty", "kid", "use", "alg", "n", "e"]
    assert keyfile.read_bytes() == before


def test_private_output_refused_on_a_terminal(cli, keyfile):
    import pty
    import subprocess

    from helpers import script

    master, slave = pty.openpty()
    try:
        p = subprocess.run(
            [script(), "--key-file", str(keyfile), "export", "--private"],
            stdout=slave,
            stderr=subprocess.PIPE,
            env=cli.env,
            timeout=60,
        )
    finally:
        os.close(slave)
        os.close(master)
    assert p.returncode == 2
    assert b"refusing to print private key material on a terminal" in p.stderr


def test_json_errors_are_one_object_on_stderr(cli, tmp_path):
    p = cli("--key-file", str(tmp_path / "none.json"), "--json", "list")
    assert p.returncode == 4 and p.stdout == ""
    assert json.loads(p.stderr) == {
        "code": "key_file_missing",
        "exit": 4,
        "message": p.stderr and json.loads(p.stderr)["message"],
    }
    assert json.loads(p.stderr)["message"].startswith(f"key file {tmp_path / 'none.json'} does not exist")


def test_usage_errors_exit_2(cli):
    assert cli("rotate", "--bogus").returncode == 2
    p = cli("--now", "whenever", "list")
    assert p.returncode == 2 and "--now: not a time: 'whenever'" in p.stderr
    assert cli("nosuchcommand").returncode == 2


def test_readme_main_job_on_default_key_file(cli):
    """The README's first command, minus the install: init, rotate, prune, export on the default key file."""
    import re
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    first = next(ln for ln in readme.splitlines() if ln.startswith("python3 -m venv"))
    steps = re.findall(r"\.venv/bin/prisme-keys ([a-z ]+?)(?: &&|$)", first)
    assert steps == ["init", "rotate", "prune", "export"]
    outs = [cli(*s.split()) for s in steps]
    assert [o.returncode for o in outs] == [0, 0, 0, 0], [o.stderr for o in outs]
    assert cli.default_key_file.exists()
    assert stat.S_IMODE(os.stat(cli.default_key_file).st_mode) == 0o600
    jwks = json.loads(outs[3].stdout)
    assert len(jwks["keys"]) == 1 and "d" not in jwks["keys"][0]
    # the shared-file form through the environment
    shared = cli.home / "shared" / "keys.json"
    p = cli("init", env={"PRISME_KEYS_FILE": str(shared)})
    assert p.returncode == 0 and shared.exists()


@pytest.mark.parametrize("kid,shown", [("a\ud800b", "a\\ud800b"), ("[/x] [bold]k", "[/x] [bold]k")])
def test_list_shows_odd_kids_as_plain_text(cli, tmp_path, keypool, kid, shown):
    """Regression: a hand-edited kid holding "\\ud800" (valid JSON) or rich markup like "[/x]" made the text
    table of list an internal error (exit 1: UnicodeEncodeError, MarkupError)."""
    kf = write_keyfile(tmp_path / "keys.json", [record(dict(keypool[0], kid=kid))])
    p = cli("--key-file", str(kf), "--now", T0, "list")
    assert p.returncode == 0, p.stderr
    no_traceback(p)
    assert shown in p.stdout
    p = cli("--key-file", str(kf), "--now", T0, "--json", "list")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["keys"][0]["kid"] == kid


# -- regression tests (defects found by a newcomer's break-test)


def test_symlinked_key_file_is_updated_in_place(cli, keyfile, tmp_path):
    link = tmp_path / "via-link.json"
    link.symlink_to(keyfile)
    p = cli("--key-file", str(link), "--now", "2026-02-01T00:00:00Z", "--write-at-now", "rotate")
    assert p.returncode == 0, p.stderr
    assert link.is_symlink()
    assert len(json.loads(keyfile.read_text())["keys"]) == 2
    assert (tmp_path / "keys.json.lock").exists() and not (tmp_path / "via-link.json.lock").exists()


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


def test_rotate_dry_run_at_the_last_second_of_year_9999(cli, keyfile):
    """The new key's rotatesAt/expiresAt stop at 9999-12-31T23:59:59.999Z (was exit 1 OverflowError)."""
    p = cli("--key-file", str(keyfile), "--json", "--now", "9999-12-31T23:59:59Z", "rotate", "--dry-run")
    assert (p.returncode, p.stderr) == (0, ""), p.stderr
    p = cli("--key-file", str(keyfile), "--now", "9999-12-31T23:59:59Z", "rotate", "--dry-run")
    assert (p.returncode, p.stderr) == (0, "")


@pytest.mark.parametrize("command", [["list"], ["rotate"], ["export"], ["revoke", "x"], ["encrypt"]])
def test_a_fifo_as_key_file_is_refused_at_once(cli, tmp_path, command):
    # regression (newcomer break-test): opening a FIFO waited for a writer forever (cron stuck)
    kf = tmp_path / "kf"
    os.mkfifo(kf)
    p = cli.proc("--key-file", str(kf), *command, timeout=30)
    assert (p.returncode, p.stderr) == (4, f"prisme-keys: error: key file {kf} is not a regular file\n")
