"""Encryption at rest: init --encrypt / encrypt / decrypt / encrypt --rekey, passphrase sources, tampering."""

import json
import os
import stat

import pytest
from helpers import T0, empty_config, no_traceback, record, write_keyfile

from prisme_keys import jwk as jwk_rules
from prisme_keys.errors import KeyFileError
from prisme_keys.store import encryption
from prisme_keys.store.keyfile import KeySet

PW = {"PRISME_KEYS_PASSPHRASE": "correct horse battery staple"}
T31 = "2026-02-01T00:00:00.000Z"


def private_values(jwk):
    return [jwk[m] for m in jwk_rules.PRIVATE_MEMBERS if m in jwk]


@pytest.fixture
def enc_file(cli, keyfile):
    """The ``keyfile`` fixture (keypool[0]) encrypted with PW."""
    p = cli("--key-file", str(keyfile), "encrypt", env=PW)
    assert p.returncode == 0, p.stderr
    return keyfile


def test_encrypt_hides_private_members_and_keeps_public(cli, enc_file, keypool):
    text = enc_file.read_text()
    for v in private_values(keypool[0]):
        assert v not in text
    doc = json.loads(text)
    hdr = doc["encryption"]
    assert hdr["cipher"] == "A256GCM" and hdr["kdf"]["name"] in ("argon2id", "scrypt")
    jwk = doc["keys"][0]["jwk"]
    assert set(jwk) == {"kty", "kid", "use", "alg", "n", "e", "enc"}
    assert jwk["n"] == keypool[0]["n"] and doc["keys"][0]["createdAt"] == T0
    assert stat.S_IMODE(os.stat(enc_file).st_mode) == 0o600
    g = ["--key-file", str(enc_file)]
    # no passphrase needed for list / export / prune / dry-run rotate / doctor
    p = cli(*g, "--now", T0, "--json", "list")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["keys"][0]["private"] == "encrypted"
    p = cli(*g, "export")
    assert p.returncode == 0 and json.loads(p.stdout) == {"keys": [jwk_rules.public_jwk(keypool[0])]}
    assert cli(*g, "--now", T0, "--write-at-now", "prune").returncode == 0
    assert cli(*g, "--now", T31, "rotate", "--dry-run").returncode == 0
    assert cli(*g, "--now", T0, "doctor").returncode == 0


def test_round_trip_private_export_and_decrypt(cli, enc_file, keypool):
    g = ["--key-file", str(enc_file)]
    p = cli(*g, "export", "--private", env=PW)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == {"keys": [keypool[0]]}
    p = cli(*g, "--json", "decrypt", env=PW)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["encrypted"] is False
    doc = json.loads(enc_file.read_text())
    assert "encryption" not in doc and doc["keys"] == [record(keypool[0])]


def test_no_passphrase_is_exit_4_and_says_where(cli, enc_file):
    g = ["--key-file", str(enc_file)]
    before = enc_file.read_bytes()
    for args in (
        ["export", "--private"],
        ["decrypt"],
        ["--now", T31, "--write-at-now", "rotate"],
        ["encrypt", "--rekey"],
    ):
        p = cli(*g, *args, input="")  # stdin is not a terminal: never prompts
        assert p.returncode == 4, (args, p.stderr)
        assert "PRISME_KEYS_PASSPHRASE" in p.stderr and "--passphrase-file" in p.stderr
        assert p.stderr.count("\n") == 1
        no_traceback(p)
    assert enc_file.read_bytes() == before
    p = cli(*g, "--json", "decrypt")
    assert json.loads(p.stderr)["code"] == "passphrase_required"


def test_wrong_passphrase_changes_nothing(cli, enc_file):
    g = ["--key-file", str(enc_file)]
    before = enc_file.read_bytes()
    bad = {"PRISME_KEYS_PASSPHRASE": "Tr0ub4dor&3"}
    for args in (
        ["export", "--private"],
        ["decrypt"],
        ["--now", T31, "--write-at-now", "rotate"],
        ["--now", T31, "--write-at-now", "rotate", "--force"],
        ["encrypt", "--rekey"],
    ):
        p = cli(*g, *args, env={**bad, "PRISME_KEYS_NEW_PASSPHRASE": "x"})
        assert p.returncode == 4, (args, p.stderr)
        assert "wrong passphrase" in p.stderr and "Tr0ub4dor" not in p.stderr + p.stdout
        no_traceback(p)
    assert enc_file.read_bytes() == before
    p = cli(*g, "doctor", env=bad)
    assert p.returncode == 4 and "passphrase_wrong" in p.stdout


@pytest.mark.parametrize("where", ["ciphertext", "n", "kid", "check"])
def test_tampering_is_exit_4_file_unchanged(cli, enc_file, where):
    doc = json.loads(enc_file.read_text())
    rec = doc["keys"][0]
    if where == "check":
        box = doc["encryption"]["check"]
    else:
        box = rec["jwk"]["enc"] if where in ("ciphertext", "nonce") else rec["jwk"]
    field = {"kid": "kid"}.get(where, where)
    if where == "check":
        field = "ciphertext"
    raw = bytearray(jwk_rules.b64url_decode(box[field])) if where != "kid" else None
    if raw is not None:
        raw[len(raw) // 2] ^= 0x01  # flip one bit of one byte
        box[field] = jwk_rules.b64url_encode(bytes(raw))
    else:
        rec["kid"] = rec["jwk"]["kid"] = "another-kid"
    write_keyfile(enc_file, doc["keys"])
    enc_file.write_text(json.dumps(doc, indent=2))
    before = enc_file.read_bytes()
    g = ["--key-file", str(enc_file)]
    for args in (["export", "--private"], ["decrypt"], ["encrypt", "--rekey"]):
        p = cli(*g, *args, env={**PW, "PRISME_KEYS_NEW_PASSPHRASE": "new one"})
        assert p.returncode == 4, (where, args, p.stdout, p.stderr)
        no_traceback(p)
        assert ("tampered" in p.stderr) or ("wrong passphrase" in p.stderr and where == "check")
    assert enc_file.read_bytes() == before
    assert cli(*g, "doctor", env=PW).returncode == 4


def test_rotate_encrypts_new_key_and_mint_path_decrypts(cli, enc_file, keypool, tmp_path):
    g = ["--key-file", str(enc_file)]
    p = cli(*g, "--now", T31, "--write-at-now", "--json", "rotate", env=PW)
    assert p.returncode == 0, p.stderr
    new_kid = json.loads(p.stdout)["created"]["kid"]
    doc = json.loads(enc_file.read_text())
    assert next(r["kid"] for r in doc["keys"]) == new_kid
    assert all("enc" in r["jwk"] and not encryption.has_plain_private(r["jwk"]) for r in doc["keys"])
    # library: signing_jwk decrypts the signing key
    from prisme_keys import clock, settings
    from prisme_keys.store import lifecycle

    s = settings.load({"key_file": enc_file, "config_path": empty_config(tmp_path)}, environ=PW)
    rec, jwk = lifecycle.signing_jwk(s, clock.parse_iso(T31))
    assert rec["kid"] == new_kid and jwk_rules.has_private(jwk)
    jwk_rules.private_key_from_jwk(jwk)
    s2 = settings.load({"key_file": enc_file, "config_path": empty_config(tmp_path)}, environ={})
    with pytest.raises(KeyFileError) as ei:
        lifecycle.signing_jwk(s2, clock.parse_iso(T31))
    assert ei.value.code == "passphrase_required"
    p = cli(*g, "--now", T31, "--json", "list")
    assert [r["private"] for r in json.loads(p.stdout)["keys"]] == ["encrypted", "encrypted"]


def test_passphrase_file_and_rekey(cli, enc_file, keypool, tmp_path):
    g = ["--key-file", str(enc_file)]
    pf = tmp_path / "pass.txt"
    pf.write_text(PW["PRISME_KEYS_PASSPHRASE"] + "\n")
    newf = tmp_path / "new.txt"
    newf.write_text("a new passphrase\r\n")
    pf.chmod(0o600)
    newf.chmod(0o600)
    old_salt = json.loads(enc_file.read_text())["encryption"]["kdf"]["salt"]
    p = cli(*g, "--passphrase-file", str(pf), "encrypt", "--rekey", "--new-passphrase-file", str(newf))
    assert p.returncode == 0, p.stderr
    doc = json.loads(enc_file.read_text())
    assert doc["encryption"]["kdf"]["salt"] != old_salt
    assert stat.S_IMODE(os.stat(enc_file).st_mode) == 0o600
    assert cli(*g, "export", "--private", env=PW).returncode == 4
    p = cli(*g, "--passphrase-file", str(newf), "export", "--private")
    assert p.returncode == 0 and json.loads(p.stdout) == {"keys": [keypool[0]]}
    p = cli(*g, "export", "--private", env={"PRISME_KEYS_PASSPHRASE_FILE": str(newf)})
    assert p.returncode == 0, p.stderr
    # the flag beats the environment
    p = cli(*g, "--passphrase-file", str(newf), "export", "--private", env={"PRISME_KEYS_PASSPHRASE": "nope"})
    assert p.returncode == 0, p.stderr
    p = cli(*g, "--passphrase-file", str(tmp_path / "missing"), "decrypt")
    assert p.returncode == 4 and "passphrase file" in p.stderr


def test_init_encrypt_and_refusals(cli, tmp_path):
    kf = tmp_path / "k" / "keys.json"
    g = ["--key-file", str(kf)]
    p = cli(*g, "--now", T0, "--write-at-now", "--json", "init", "--encrypt", input="")
    assert p.returncode == 4 and "PRISME_KEYS_PASSPHRASE" in p.stderr and not kf.exists()
    p = cli(*g, "--now", T0, "--write-at-now", "--json", "init", "--encrypt", env=PW)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["encrypted"] is True
    doc = json.loads(kf.read_text())
    assert "encryption" in doc and "enc" in doc["keys"][0]["jwk"] and '"d"' not in kf.read_text()
    p = cli(*g, "encrypt", env=PW)
    assert p.returncode == 4 and "already encrypted" in p.stderr
    p = cli(*g, "decrypt", env=PW)
    assert p.returncode == 0
    p = cli(*g, "decrypt", env=PW)
    assert p.returncode == 4 and "not encrypted" in p.stderr
    p = cli(*g, "encrypt", env={"PRISME_KEYS_PASSPHRASE": ""}, input="")
    assert p.returncode == 4
    p = cli(*g, "encrypt", "--new-passphrase-file", "x")
    assert p.returncode == 2


def test_config_never_shows_or_reads_passphrase(cli, tmp_path):
    p = cli("--json", "config", "show", env=PW)
    assert p.returncode == 0
    assert PW["PRISME_KEYS_PASSPHRASE"] not in p.stdout
    cfg = tmp_path / "c.toml"
    cfg.write_text('passphrase = "x"\n')
    p = cli("--config", str(cfg), "config", "show")
    assert p.returncode == 3 and "passphrase" in p.stderr


def test_import_style_plain_record_written_into_encrypted_file_is_sealed(enc_file, keypool, tmp_path):
    """A writer adding a clear-text key through KeyFile.transaction() gets it encrypted on commit."""
    from prisme_keys import settings
    from prisme_keys.store import lifecycle

    s = settings.load({"key_file": enc_file, "config_path": empty_config(tmp_path)}, environ=PW)
    kf = lifecycle.open_keyfile(s)
    with kf.transaction() as tx:
        tx.keyset.records.append(record(keypool[1], created="2025-12-01T00:00:00.000Z"))
        tx.commit()
    text = enc_file.read_text()
    for v in private_values(keypool[1]):
        assert v not in text
    # without a passphrase the commit refuses and writes nothing
    before = enc_file.read_bytes()
    s0 = settings.load({"key_file": enc_file, "config_path": empty_config(tmp_path)}, environ={})
    kf0 = lifecycle.open_keyfile(s0)  # the library never prompts: no passphrase, no key written
    with pytest.raises(KeyFileError):
        with kf0.transaction() as tx:
            tx.keyset.records.append(record(keypool[2], created="2025-11-01T00:00:00.000Z"))
            tx.commit()
    assert enc_file.read_bytes() == before


def test_aad_binds_ciphertext_to_its_record(keypool):
    ks = KeySet([record(keypool[0]), record(keypool[1], created="2025-12-01T00:00:00.000Z")])
    encryption.encrypt_keyset(ks, "pw", kdf="scrypt")
    a, b = ks.records
    swapped = dict(a, jwk=dict(a["jwk"], enc=b["jwk"]["enc"]))
    key = encryption.unlock(ks.extra["encryption"], "pw")
    with pytest.raises(KeyFileError, match="tampered"):
        encryption.open_record(swapped, key)
    assert encryption.open_record(a, key)["jwk"] == keypool[0]
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        encryption.unlock(ks.extra["encryption"], "PW")
    # hostile KDF parameters are refused before any work
    hdr = json.loads(json.dumps(ks.extra["encryption"]))
    hdr["kdf"]["n"] = 2**40
    with pytest.raises(KeyFileError, match="outside"):
        encryption.unlock(hdr, "pw")


def test_prompt_on_terminal(tmp_path, keyfile):
    """On a terminal the passphrase is prompted (twice when new); piped stdin never prompts."""
    import pty

    from helpers import Cli, script

    env = Cli(tmp_path).env
    pid, fd = pty.fork()
    if pid == 0:  # child: the console script on a pseudo-terminal
        os.execve(script(), [script(), "--key-file", str(keyfile), "encrypt"], env)
    out = b""

    def read_until(token):
        nonlocal out
        while token not in out:
            try:
                chunk = os.read(fd, 1024)
            except OSError:
                break
            if not chunk:
                break
            out += chunk

    read_until(b"New passphrase")
    os.write(fd, b"typed secret\n")
    read_until(b"Repeat")
    os.write(fd, b"typed secret\n")
    read_until(b"encrypted ")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, out
    assert b"typed secret" not in out
    assert "encryption" in json.loads(keyfile.read_text())


def test_decrypt_stores_canonical_members(cli, tmp_path, keypool):
    # issue 11: every key entering the file in clear (import, generate, decrypt) is canonical
    k = keypool[0]
    padded = dict(
        k,
        d=k["d"] + "=" * (-len(k["d"]) % 4 or 2),
        qi=jwk_rules.b64url_encode(b"\0" + jwk_rules.b64url_decode(k["qi"])),
    )
    kf = write_keyfile(tmp_path / "keys.json", [record(padded)])
    g = ["--key-file", str(kf)]
    assert cli(*g, "encrypt", env=PW).returncode == 0
    p = cli(*g, "decrypt", env=PW)
    assert p.returncode == 0, p.stderr
    assert json.loads(kf.read_text())["keys"][0]["jwk"] == k


# -- passphrase files (issue 11) -----------------------------------------------------------


def test_passphrase_file_with_bom_and_crlf_unlocks(cli, enc_file, keypool, tmp_path):
    # Regression: EF BB BF + passphrase + CRLF (a Windows editor's file) was a "wrong passphrase"
    pf = tmp_path / "pass.txt"
    pf.write_bytes(b"\xef\xbb\xbf" + PW["PRISME_KEYS_PASSPHRASE"].encode() + b"\r\n")
    pf.chmod(0o600)
    p = cli("--key-file", str(enc_file), "--passphrase-file", str(pf), "export", "--private")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == {"keys": [keypool[0]]}


def test_passphrase_file_readable_by_others_is_refused(cli, enc_file, tmp_path):
    # Regression: a passphrase file readable by group or others was used silently
    pf = tmp_path / "pass.txt"
    pf.write_text(PW["PRISME_KEYS_PASSPHRASE"] + "\n")
    g = ["--key-file", str(enc_file), "--passphrase-file", str(pf)]
    for mode in (0o644, 0o640, 0o604):
        pf.chmod(mode)
        p = cli(*g, "export", "--private")
        no_traceback(p)
        assert (p.returncode, p.stdout) == (4, "")
        assert p.stderr == (
            f"prisme-keys: error: passphrase file {pf} has unsafe permissions {mode:04o} (readable by group or "
            f"others); fix with: chmod 600 {pf} (or, for a file shared by a group, chmod 640 and set "
            "PRISME_KEYS_ALLOW_GROUP_READ=1)\n"
        )
    # the key file's escape hatch: a group file, never one for others
    pf.chmod(0o640)
    assert cli(*g, "export", "--private", env={"PRISME_KEYS_ALLOW_GROUP_READ": "1"}).returncode == 0
    pf.chmod(0o604)
    p = cli(*g, "export", "--private", env={"PRISME_KEYS_ALLOW_GROUP_READ": "1"})
    assert p.returncode == 4 and p.stderr == (
        f"prisme-keys: error: passphrase file {pf} has unsafe permissions 0604 (readable by group or others); "
        f"fix with: chmod 600 {pf}\n"
    )
    # doctor reports it, once
    p = cli(*g, "--now", T0, "--json", "doctor")
    findings = [f for f in json.loads(p.stdout)["findings"] if f["code"].startswith("passphrase")]
    assert p.returncode == 4 and [f["code"] for f in findings] == ["passphrase_file_permissions"]
    pf.chmod(0o600)
    p = cli(*g, "--now", T0, "--json", "doctor")
    assert p.returncode == 0, p.stdout
    codes = [f["code"] for f in json.loads(p.stdout)["findings"]]
    assert "passphrase_file" in codes and "passphrase_file_permissions" not in codes


def test_passphrase_from_a_pipe_is_accepted(cli, enc_file):
    # process substitution (<(pass show x)) gives a pipe: no permission rule applies to it
    import subprocess

    from helpers import script

    p = subprocess.run(
        ["bash", "-c", f'"{script()}" --key-file "{enc_file}" --passphrase-file <(printf %s "$PW") export --private'],
        env={**cli.env, "PW": PW["PRISME_KEYS_PASSPHRASE"]},
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr


def test_decrypt_validates_each_key_fully(cli, tmp_path, keypool):
    """decrypt stores private keys in clear text, which mint then trusts: each is validated first."""
    d = jwk_rules.b64_to_int(keypool[0]["d"])
    bad = dict(keypool[0], d=jwk_rules.int_to_b64(d + 2))  # authenticated by AES-GCM, but inconsistent
    kf = write_keyfile(tmp_path / "keys.json", [record(bad)])
    assert cli("--key-file", str(kf), "encrypt", env=PW).returncode == 0
    before = kf.read_bytes()
    p = cli("--key-file", str(kf), "decrypt", env=PW)
    no_traceback(p)
    assert p.returncode == 4 and p.stdout == ""
    assert p.stderr == (
        f"prisme-keys: error: key {keypool[0]['kid']!r} in {kf} is unusable (member 'dp' does not match d, p "
        "and q); nothing was decrypted\n"
    )
    assert kf.read_bytes() == before


# Regression: the new passphrase of a rekey was read from os.environ, not from the environment given to main()
def test_rekey_reads_the_new_passphrase_from_the_environment_it_is_given(enc_file, capsys, monkeypatch):
    from prisme_keys.cli import main

    monkeypatch.delenv("PRISME_KEYS_NEW_PASSPHRASE", raising=False)
    g = ["--key-file", str(enc_file)]
    code = main([*g, "--json", "encrypt", "--rekey"], env={**PW, "PRISME_KEYS_NEW_PASSPHRASE": "the new one"})
    out, err = capsys.readouterr()
    assert (code, err, json.loads(out)["rekeyed"]) == (0, "", True)
    code = main(
        [*g, "export", "--private", "--out", str(enc_file.parent / "p.json")],
        env={"PRISME_KEYS_PASSPHRASE": "the new one"},
    )
    assert (code, capsys.readouterr().err) == (0, "")


def test_no_new_passphrase_says_where_in_the_command_lines_words(cli, enc_file):
    p = cli("--key-file", str(enc_file), "encrypt", "--rekey", env=PW, input="")
    assert (p.returncode, p.stderr) == (
        4,
        f"prisme-keys: error: encrypt --rekey needs a new passphrase for key file {enc_file}: set "
        "PRISME_KEYS_NEW_PASSPHRASE, pass --new-passphrase-file FILE, or run on a terminal to be prompted\n",
    )
