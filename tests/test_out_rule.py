"""What an ``--out`` may replace (issue 11, section 1; README "Output files").

An output never replaces the key file (same inode, or same path once links are resolved), a lock
file or a file holding private key material, and a private output never replaces an existing file,
unless ``--force``. A public export over an earlier public export is the normal cron use.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from datetime import timedelta

import pytest
from helpers import empty_config, one_error_line, record, write_keyfile

from prisme_keys import clock
from prisme_keys.cli import main
from prisme_keys.store.files import holds_private_material


def iso(days: float) -> str:
    return clock.iso(clock.now() + timedelta(days=days))


@pytest.fixture
def kf(tmp_path, keypool):
    return write_keyfile(tmp_path / "k.json", [record(keypool[0], iso(-1), iso(29), iso(59))])


@pytest.fixture
def run(tmp_path, kf, capsys):
    """``run(*args) -> (exit code, stdout, stderr)``, in-process, on the key file ``kf``."""
    cfg = empty_config(tmp_path)

    def call(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        rc = main(["--key-file", str(kf), "--config", str(cfg), *args])
        out, err = capsys.readouterr()
        return rc, out, err

    return call


def refused(path, why: str, flag: str = "--out", way: str = "add --force to replace it") -> tuple[int, str, str]:
    return 2, "", f"prisme-keys: error: {flag}: refusing to replace {path}: {why}; {way}\n"


def test_export_over_the_key_file_is_refused(run, kf):
    before = kf.read_bytes()
    assert run("export", "--out", str(kf)) == refused(kf, "it is the key file")
    assert kf.read_bytes() == before


def test_the_key_file_through_a_symlink_or_a_hard_link_is_refused(run, kf, tmp_path):
    before = kf.read_bytes()
    (tmp_path / "soft.json").symlink_to(kf)
    os.link(kf, tmp_path / "hard.json")
    for name in ("soft.json", "hard.json"):
        path = tmp_path / name
        assert run("export", "--out", str(path)) == refused(path, "it is the key file")
    relative = os.path.relpath(kf)
    assert run("export", "--out", relative) == refused(relative, "it is the key file")
    assert kf.read_bytes() == before


def test_lock_files_are_refused(run, kf, tmp_path):
    assert run("rotate", "--force")[0] == 0  # makes k.json.lock
    lock = f"{kf}.lock"
    assert run("export", "--out", lock) == refused(lock, "it is the key file's lock file")
    (tmp_path / "other.json").write_text("{}")
    (tmp_path / "other.json.lock").write_text("")
    other = tmp_path / "other.json.lock"
    assert run("export", "--out", str(other)) == refused(other, "it is a lock file")
    assert other.read_text() == ""


def test_generate_twice_keeps_the_first_private_key(run, tmp_path):
    gen = tmp_path / "gen.json"
    assert run("generate", "--out", str(gen))[0] == 0
    first = gen.read_bytes()
    assert stat.S_IMODE(gen.stat().st_mode) == 0o600
    why = "it exists (a private key is never written over an existing file)"
    assert run("generate", "--out", str(gen)) == refused(gen, why)
    assert gen.read_bytes() == first
    assert run("generate", "--out", str(gen), "--force")[0] == 0
    assert gen.read_bytes() != first and "d" in json.loads(gen.read_text())


def test_a_private_export_never_replaces_an_existing_file(run, tmp_path):
    pub = tmp_path / "jwks.json"
    assert run("export", "--out", str(pub))[0] == 0
    why = "it exists (a private key is never written over an existing file)"
    assert run("export", "--private", "--out", str(pub)) == refused(pub, why)
    assert "d" not in json.loads(pub.read_text())["keys"][0]


def test_a_public_export_over_an_earlier_public_export_is_the_cron_use(run, tmp_path):
    pub = tmp_path / "jwks.json"
    for _ in range(2):
        rc, out, err = run("-q", "export", "--out", str(pub))
        assert (rc, out, err) == (0, "", "")
    assert stat.S_IMODE(pub.stat().st_mode) == 0o644
    other = tmp_path / "notes.txt"
    other.write_text("not a key\n")
    assert run("export", "--out", str(other))[0] == 0  # an ordinary file holds no key: replaced


@pytest.mark.parametrize("what", ["records", "private-jwks", "pem", "encrypted-key-file", "bom-private-jwk"])
def test_a_public_export_never_replaces_private_key_material(run, tmp_path, keypool, what):
    target = tmp_path / "target"
    if what == "records":
        assert run("export", "--private", "--format", "records", "--out", str(target))[0] == 0
    elif what == "private-jwks":
        assert run("export", "--private", "--out", str(target))[0] == 0
    elif what == "pem":
        from cryptography.hazmat.primitives import serialization

        from prisme_keys import jwk as jwk_rules

        key = jwk_rules.private_key_from_jwk(keypool[1])
        target.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    elif what == "encrypted-key-file":
        other = write_keyfile(tmp_path / "other.json", [record(keypool[2])])
        assert main(["--key-file", str(other), "encrypt"], env={"PRISME_KEYS_PASSPHRASE": "pw pw pw"}) == 0
        target.write_bytes(other.read_bytes())
    else:
        target.write_text("\ufeff" + json.dumps(keypool[3]), encoding="utf-8")
    before = target.read_bytes()
    assert run("export", "--out", str(target)) == refused(target, "it holds private key material")
    assert target.read_bytes() == before


def test_force_replaces_even_the_key_file(run, kf):
    rc, _, _ = run("export", "--out", str(kf), "--force")
    assert rc == 0 and "format" not in json.loads(kf.read_text())


@pytest.mark.parametrize("cmd", [["export"], ["export", "--private"], ["generate", "--public"], ["generate"]])
def test_a_folder_is_a_usage_error(run, tmp_path, cmd):
    for out in (f"{tmp_path}/new-folder/", str(tmp_path)):
        rc, stdout, err = run(*cmd, "--out", out)
        assert (rc, stdout, err) == (2, "", f"prisme-keys: error: --out {out} is a folder; name a file to write\n")
    assert not (tmp_path / "new-folder").exists()


def test_config_init_never_replaces_the_key_file(run, kf, tmp_path):
    before = kf.read_bytes()
    assert run("config", "init", "--out", str(kf)) == refused(kf, "it is the key file")
    assert kf.read_bytes() == before
    cfg = tmp_path / "c.toml"
    assert run("config", "init", "--out", str(cfg))[0] == 0
    rc, _, err = run("config", "init", "--out", str(cfg))
    assert (rc, err) == (3, f"prisme-keys: error: config file {cfg} already exists; use --force to replace it\n")


def test_check_junit_never_replaces_the_key_file(run, kf):
    before = kf.read_bytes()
    # refused before any fetch: port 1 is never reached
    assert run("check", "http://127.0.0.1:1/jwks", "--junit", str(kf)) == refused(
        kf, "it is the key file", flag="--junit", way="choose another file"
    )
    assert kf.read_bytes() == before


@pytest.mark.parametrize(
    "data, private",
    [
        (b'{"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}', False),
        (b'{"kty": "RSA", "n": "AQAB", "e": "AQAB", "d": "AQAB"}', True),
        (b'{"kty": "oct", "k": "c2VjcmV0"}', True),
        (b'{"kty": "RSA", "n": "AQAB", "e": "AQAB", "enc": {"ct": "x"}}', True),
        (b'{"format": 1, "keys": []}', True),
        (b'{"kid": "a", "jwk": {"kty": "RSA"}}\n{"kid": "b", "jwk": {"kty": "RSA", "p": "AQAB"}}\n', True),
        (b"-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----\n", True),
        (b"-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----\n", False),
        (b"\xef\xbb\xbf" + b'{"kty": "RSA", "d": "x"}', True),
        (b"[" * 100 + b"]" * 100, True),  # too deep to tell: counted as private
        (b"not json at all", False),
        (b"", False),
    ],
)
def test_holds_private_material(data, private):
    assert holds_private_material(data) is private


# -- regression tests (defects found by a newcomer's break-test)


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
