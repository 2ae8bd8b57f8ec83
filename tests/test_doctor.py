"""doctor: audits without changing the file; exit 0 healthy, 4 on problems; --json."""

import json
import os
from importlib import resources

from helpers import no_traceback, record, write_keyfile

from prisme_keys import jwk as jwk_rules

T1 = "2026-01-02T00:00:00.000Z"


def run(cli, kf, *extra, env=None, now=T1):
    before = (kf.read_bytes(), os.stat(kf).st_mtime_ns, os.stat(kf).st_mode) if kf.exists() else None
    p = cli("--key-file", str(kf), "--now", now, "--json", "doctor", *extra, env=env)
    no_traceback(p)
    if before is not None:
        assert (kf.read_bytes(), os.stat(kf).st_mtime_ns, os.stat(kf).st_mode) == before, "doctor changed the file"
    doc = json.loads(p.stdout)
    assert p.returncode == (0 if doc["healthy"] else 4)
    return p.returncode, doc, {f["code"] for f in doc["findings"] if f["severity"] in ("error", "warning")}


def test_healthy_file(cli, keyfile):
    rc, doc, problems = run(cli, keyfile)
    assert rc == 0 and problems == set() and doc["keys"] == 1 and doc["encrypted"] is False
    p = cli("--key-file", str(keyfile), "--now", T1, "doctor")
    assert p.returncode == 0
    assert p.stdout.splitlines()[-1] == f"healthy: 1 key in {keyfile}; 0 errors, 0 warnings, 4 notes"


def test_permissions_and_missing(cli, keyfile, tmp_path):
    os.chmod(keyfile, 0o644)
    rc, doc, problems = run(cli, keyfile)
    assert rc == 4 and "permissions" in problems
    os.chmod(keyfile, 0o640)
    assert "permissions" in run(cli, keyfile)[2]
    assert run(cli, keyfile, env={"PRISME_KEYS_ALLOW_GROUP_READ": "1"})[0] == 0
    rc, doc, problems = run(cli, tmp_path / "nope.json")
    assert rc == 4 and "key_file_missing" in problems
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": 1, "keys": [')
    os.chmod(bad, 0o600)
    assert "key_file_corrupt" in run(cli, bad)[2]


def test_overdue_rotation_and_expired_keys(cli, tmp_path, keypool):
    kf = write_keyfile(
        tmp_path / "k.json",
        [
            record(
                keypool[0],
                created="2026-02-01T00:00:00.000Z",
                rotates="2026-03-03T00:00:00.000Z",
                expires="2026-04-02T00:00:00.000Z",
                previous=keypool[1]["kid"],
            ),
            record(keypool[1]),
        ],
    )
    rc, doc, problems = run(cli, kf, now="2026-03-05T00:00:00.000Z")
    assert rc == 4 and problems == {"rotation_overdue", "expired_key"}
    msgs = " ".join(f["message"] for f in doc["findings"])
    assert "prisme-keys rotate" in msgs and "prisme-keys prune" in msgs
    rc, doc, problems = run(cli, kf, now="2026-04-03T00:00:00.000Z")
    assert "signing_key_expired" in problems


def test_duplicate_kids_weak_compromised_and_no_private(cli, tmp_path, keypool):
    raw = resources.files("prisme_keys").joinpath("data/known-compromised-keys.json").read_text("utf-8")
    bad_jwk = json.loads(raw)["keys"][0]["jwk"]
    dup = dict(keypool[2])
    pub_only = jwk_rules.public_jwk(keypool[0])
    kf = write_keyfile(
        tmp_path / "k.json",
        [
            record(pub_only),
            record(dup, created="2025-12-30T00:00:00.000Z"),
            record(dict(keypool[2]), created="2025-12-29T00:00:00.000Z"),
            record(bad_jwk, created="2025-12-28T00:00:00.000Z"),
            record(dict(keypool[3], e="Aw"), created="2025-12-27T00:00:00.000Z"),
        ],
    )
    rc, doc, problems = run(cli, kf)
    assert rc == 4
    assert {"no_private_key", "duplicate_kid", "compromised_key", "weak_exponent"} <= problems
    flagged = {(f["code"], f["kid"]) for f in doc["findings"]}
    assert ("no_private_key", keypool[0]["kid"]) in flagged
    assert ("compromised_key", bad_jwk["kid"]) in flagged


def test_weak_key_bits(cli, tmp_path):
    from cryptography.hazmat.primitives.asymmetric import rsa

    small = jwk_rules.private_key_to_jwk(rsa.generate_private_key(public_exponent=65537, key_size=1024), "RS256")
    kf = write_keyfile(tmp_path / "k.json", [record(small)])
    rc, doc, problems = run(cli, kf)
    assert "weak_key" in problems


def test_encryption_states(cli, keyfile, keypool):
    pw = {"PRISME_KEYS_PASSPHRASE": "pw for doctor"}
    rc, doc, _ = run(cli, keyfile)
    assert any(f["code"] == "encryption" and "not encrypted" in f["message"] for f in doc["findings"])
    assert cli("--key-file", str(keyfile), "encrypt", env=pw).returncode == 0
    rc, doc, _ = run(cli, keyfile)
    assert rc == 0 and doc["encrypted"] is True
    rc, doc, _ = run(cli, keyfile, env=pw)
    assert rc == 0 and any("authenticated" in f["message"] for f in doc["findings"])
    # a clear-text private member slipped into an encrypted file
    d = json.loads(keyfile.read_text())
    d["keys"].append(record(keypool[4], created="2025-12-01T00:00:00.000Z"))
    keyfile.write_text(json.dumps(d))
    rc, doc, problems = run(cli, keyfile)
    assert rc == 4 and "plaintext_in_encrypted_file" in problems
    # an encrypted record without a header
    del d["encryption"]
    keyfile.write_text(json.dumps(d))
    assert "enc_without_header" in run(cli, keyfile)[2]


def test_json_shape_and_quiet_text(cli, keyfile):
    rc, doc, _ = run(cli, keyfile)
    assert set(doc) == {"path", "healthy", "keys", "encrypted", "problems", "findings", "announcement"}
    assert all(set(f) == {"severity", "code", "message", "kid"} for f in doc["findings"])
    os.chmod(keyfile, 0o604)
    p = cli("--key-file", str(keyfile), "--now", T1, "doctor")
    assert p.returncode == 4 and "chmod 600" in p.stdout
    assert p.stdout.splitlines()[-1] == f"1 problem: 1 key in {keyfile}; 1 error, 0 warnings, 3 notes"
    assert jwk_rules.PRIVATE_MEMBERS and json.loads(keyfile.read_text())["keys"][0]["jwk"]["d"] not in p.stdout


def test_non_canonical_record_is_flagged(cli, tmp_path, keypool):
    # issue 11: a stored n with an extra leading zero byte was "healthy"
    k = keypool[1]
    bad = dict(k, n=jwk_rules.b64url_encode(b"\0" + jwk_rules.b64url_decode(k["n"])), e="AQAB==")
    kf = write_keyfile(tmp_path / "keys.json", [record(bad)])
    rc, doc, problems = run(cli, kf)
    assert rc == 4 and problems == {"non_canonical"}
    (finding,) = [f for f in doc["findings"] if f["code"] == "non_canonical"]
    assert finding == {
        "severity": "warning",
        "code": "non_canonical",
        "kid": k["kid"],
        "message": f"key {k['kid']} is not stored in canonical form: n has a leading zero byte; e has '=' padding "
        "(integers must be minimal, unpadded base64url, RFC 7518 section 2; export and serve publish the key "
        "as stored and verifiers may reject it)",
    }


def test_directory_as_key_file_gets_no_chmod_advice(cli, tmp_path):
    # issue 11: doctor on a directory suggested "chmod 600"
    d = tmp_path / "keys.d"
    d.mkdir(mode=0o755)
    p = cli("--key-file", str(d), "--json", "doctor")
    no_traceback(p)
    doc = json.loads(p.stdout)
    assert p.returncode == 4
    assert [(f["code"], f["message"]) for f in doc["findings"] if f["severity"] == "error"] == [
        ("key_file_unreadable", f"key file {d} is not a regular file")
    ]
    assert "chmod" not in p.stdout


def test_full_key_check_and_python_jose_round_trip(cli, tmp_path, keypool):
    """doctor validates fully what mint trusts, and cross-checks each private key with python-jose."""
    healthy = write_keyfile(tmp_path / "ok.json", [record(keypool[0])])
    rc, doc, problems = run(cli, healthy)
    assert rc == 0 and not [f for f in doc["findings"] if f["code"] in ("jose_round_trip", "bad_private_key")]
    # RFC 7518 section 6.3.2: with p and q present, dp, dq and qi must be too; python-jose refuses it
    no_dp = {k: v for k, v in keypool[0].items() if k != "dp"}
    rc, doc, problems = run(cli, write_keyfile(tmp_path / "nodp.json", [record(no_dp)]))
    assert rc == 4 and problems == {"jose_round_trip"}
    (finding,) = [f for f in doc["findings"] if f["code"] == "jose_round_trip"]
    assert finding == {
        "severity": "error",
        "code": "jose_round_trip",
        "message": f"key {keypool[0]['kid']}: python-jose cannot use it (JWKError)",
        "kid": keypool[0]["kid"],
    }
    # a private exponent that does not match: the full check reports it, the round trip is not tried
    d = jwk_rules.b64_to_int(keypool[0]["d"])
    bad_d = dict(keypool[0], d=jwk_rules.int_to_b64(d + 2))
    rc, doc, problems = run(cli, write_keyfile(tmp_path / "badd.json", [record(bad_d)]))
    assert rc == 4 and problems == {"bad_private_key"}


def test_doctor_at_the_last_second_of_year_9999(cli, keyfile):
    """Was exit 1 (OverflowError); the 2026 key is overdue then: a warning, exit 4."""
    p = cli("--key-file", str(keyfile), "--json", "--now", "9999-12-31T23:59:59Z", "doctor")
    assert (p.returncode, p.stderr) == (4, "")
    codes = {f["code"] for f in json.loads(p.stdout)["findings"]}
    assert "rotation_overdue" in codes, codes


def test_doctor_on_a_record_rotating_at_the_end_of_year_9999(cli, tmp_path, keypool):
    kf = write_keyfile(tmp_path / "k.json", [record(keypool[0], rotates="9999-12-31T23:59:59.999Z")])
    p = cli("--key-file", str(kf), "--json", "--now", "2026-01-10T00:00:00Z", "doctor")
    assert (p.returncode, p.stderr) == (4, "")  # rsa2048_after_2030: a 2048-bit key signing past 2030
    assert "next rotation 9999-12-31T23:59:59.999Z" in {f["message"] for f in json.loads(p.stdout)["findings"]}
