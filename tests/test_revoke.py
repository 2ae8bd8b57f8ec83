"""Incident response: revoke, and verify/import/doctor/check refusing revoked keys.

Key files are dated against the real clock (no ``--now``), as writing commands act at real time.
``check --absent --wait`` and opaque credentials are in test_revoke_check.py.
"""

from __future__ import annotations

import json
import os

import pytest
from helpers import empty_config, write_keyfile
from jwks_server import claims, jwks, rs_token
from revoke_helpers import LEAD, MAX_AGE, pk, rec, two_keys  # noqa: F401

from prisme_keys import clock
from prisme_keys import jwk as jwk_rules
from prisme_keys.errors import KeyFileError, UsageError
from prisme_keys.store import revocation, rotation


def doc(path) -> dict:
    return json.loads(path.read_text())


def day(iso: str) -> str:
    return clock.parse_iso(iso).strftime("%Y-%m-%d %H:%M")


# -- the rules ----------------------------------------------------------------------------


def test_plan_revoke_states_and_exposure(keypool):
    now = clock.now()
    recs = two_keys(keypool, now)
    policy = rotation.Policy(lead=3600)
    signing, retired = recs
    p = revocation.plan_revoke(recs, signing["kid"], policy, now, "leak")
    assert (p.state, p.needs_new_key) == ("signing", True)
    assert p.entry == {
        "kid": signing["kid"],
        "thumbprint": jwk_rules.thumbprint(signing["jwk"]),
        "revokedAt": clock.iso(now),
        "reason": "leak",
        "state": "signing",
        "exposure": {
            "from": signing["createdAt"],
            "signingUntil": clock.iso(now),
            "until": clock.iso(now + clock.seconds(MAX_AGE)),
        },
    }
    # a retired key signed until the key after it started signing
    p = revocation.plan_revoke(recs, retired["kid"], policy, now)
    assert (p.state, p.needs_new_key, p.entry["reason"]) == ("retired", False, None)
    assert p.entry["exposure"] == {
        "from": retired["createdAt"],
        "signingUntil": signing["createdAt"],
        "until": clock.iso(clock.parse_iso(signing["createdAt"]) + clock.seconds(MAX_AGE)),
    }
    # found by RFC 7638 thumbprint too; unknown: None
    tp = jwk_rules.thumbprint(dict(retired["jwk"], kid="other"))
    assert revocation.plan_revoke([dict(retired, kid="other")], tp, policy, now).record["kid"] == "other"
    assert revocation.plan_revoke(recs, "nope", policy, now) is None


def test_revoking_the_next_key_signs_a_new_key_at_once_and_retires_the_signing_key(keypool):
    now = clock.now()
    policy = rotation.Policy(lead=3600)
    signing = rec(keypool[1], now - clock.days(35))  # expiresAt now + 25 d: extended to now + 30 d
    nxt = rec(keypool[2], now - clock.seconds(600), previous=signing["kid"], activates=now + clock.seconds(3000))
    recs = [nxt, signing]
    plan = revocation.plan_revoke(recs, nxt["kid"], policy, now)
    assert (plan.state, plan.needs_new_key) == ("next", True)
    assert plan.entry["exposure"] == {"from": None, "signingUntil": None, "until": None}
    out = revocation.apply_revoke(recs, plan, keypool[5], policy, now)
    assert [r["kid"] for r in out.records] == [keypool[5]["kid"], signing["kid"]]
    new = out.records[0]
    assert "activatesAt" not in new and new["createdAt"] == clock.iso(now) and new["previousKeyId"] == nxt["kid"]
    assert rotation.signing_record(out.records, now) is new
    # the key that stops signing keeps verifying its tokens for a whole token lifetime
    assert out.retired["kid"] == signing["kid"]
    assert out.retired["expiresAt"] == clock.iso(now + clock.seconds(MAX_AGE))
    assert recs == [nxt, signing]  # the input is not modified


def test_revocation_list_must_be_well_formed(tmp_path, keypool):
    from prisme_keys.store.keyfile import KeySet

    ks = KeySet([rec(keypool[0], clock.now())], {"revocations": {"kid": "x"}})
    with pytest.raises(KeyFileError, match='"revocations" is not a list; it was left unchanged'):
        revocation.revoked_keys(ks, "k.json")
    ks.extra["revocations"] = [{"kid": "x"}]
    with pytest.raises(KeyFileError, match='"revocations" entry 1 has no kid or thumbprint'):
        revocation.revoked_keys(ks, "k.json")
    for bad in ("x" * 201, "two\nlines", "bell\a"):
        with pytest.raises(UsageError):
            revocation.check_reason(bad)
    assert revocation.check_reason("  leaked  ") == "leaked"


# -- revoke: the must-hold cases -------------------------------------------------------------


def test_revoke_signing_key_end_to_end(pk, keypool, tmp_path):
    now = clock.now()
    write_keyfile(pk.kf, two_keys(keypool, now))
    old, signing, new = keypool[0], keypool[1], keypool[5]
    rc, token, _ = pk("mint", "--sub", "u1", env=LEAD)
    token = token.strip()
    assert rc == 0

    rc, out, err = pk("revoke", "--reason", "leaked in a CI log", "--", signing["kid"], env=LEAD)
    assert rc == 0, err
    d = doc(pk.kf)
    assert d["format"] == 1
    assert [r["kid"] for r in d["keys"]] == [new["kid"], old["kid"]]
    created = d["keys"][0]
    assert "activatesAt" not in created and created["previousKeyId"] == signing["kid"]
    (entry,) = d["revocations"]
    assert entry["kid"] == signing["kid"] and entry["reason"] == "leaked in a CI log" and entry["state"] == "signing"
    assert entry["thumbprint"] == jwk_rules.thumbprint(signing)
    exp = entry["exposure"]
    assert exp == {
        "from": clock.iso(now - clock.days(10)),
        "signingUntil": entry["revokedAt"],
        "until": clock.iso(clock.parse_iso(entry["revokedAt"]) + clock.seconds(MAX_AGE)),
    }
    lines = out.splitlines()
    assert lines[0] == (
        f"revoked {signing['kid']} (signing key): removed from the key set; new signing key {new['kid']} signs now"
    )
    assert lines[1].startswith("the new key skips the publication lead (3600 s): a compromise cannot wait")
    assert lines[2].startswith(f"exposure window: from {exp['from']} until {exp['until']} (it signed until ")
    assert "check URL --absent " + signing["kid"] in err

    # a token minted before fails verify against the key file: exit 6, naming the revocation
    rc, out, err = pk("verify", token)
    assert rc == 6 and out == ""
    assert err == (
        f"prisme-keys: error: key '{signing['kid']}' was revoked on {day(entry['revokedAt'])} UTC "
        "(reason: leaked in a CI log): tokens it signed are refused\n"
    )
    rc, out, err = pk("--json", "verify", token)
    assert rc == 6 and json.loads(err)["code"] == "key_revoked"
    # ...and against a JWKS file that still serves the key, under its kid or another one
    stale = tmp_path / "stale.json"
    stale.write_text(json.dumps(jwks(signing, old)))
    assert pk("verify", token, "--jwks-file", str(stale))[0] == 6
    renamed = dict(signing, kid="renamed")
    stale.write_text(json.dumps(jwks(renamed)))
    rc, out, err = pk("verify", rs_token(renamed, claims()), "--jwks-file", str(stale))
    assert rc == 6 and f"(the same key, RFC 7638 thumbprint {entry['thumbprint']})" in err

    # mint signs with the new key at once, publication lead or not, and its tokens verify
    rc, out, _ = pk("--json", "mint", "--sub", "u2", env=LEAD)
    minted = json.loads(out)
    assert rc == 0 and minted["header"]["kid"] == new["kid"]
    assert pk("verify", minted["token"])[0] == 0
    # export no longer carries the old kid
    rc, out, _ = pk("export")
    assert [k["kid"] for k in json.loads(out)["keys"]] == [new["kid"], old["kid"]]
    # the old key cannot be imported again, under its kid or another
    before = pk.kf.read_bytes()
    for jwk_in, shown in ((signing, ""), (dict(signing, kid="fresh-kid"), f" as kid '{signing['kid']}'")):
        src = tmp_path / "old-private.json"
        src.write_text(json.dumps({"keys": [jwk_in]}))
        rc, out, err = pk("import", str(src))
        assert rc == 4
        assert err == (
            f"prisme-keys: error: import from {src} rejected, nothing written: key 1: key '{jwk_in['kid']}' was "
            f"revoked on {day(entry['revokedAt'])} UTC (reason: leaked in a CI log){shown}; "
            "a revoked key cannot return\n"
        )
    assert pk.kf.read_bytes() == before


def test_revoke_retired_key_keeps_the_signing_key(pk, keypool):
    now = clock.now()
    write_keyfile(pk.kf, two_keys(keypool, now))
    old, signing = keypool[0], keypool[1]
    rc, out, err = pk("--json", "revoke", "--", old["kid"])
    assert rc == 0, err
    res = json.loads(out)
    assert res == {
        "revoked": True,
        "dry_run": False,
        "already_revoked": False,
        "kid": old["kid"],
        "thumbprint": jwk_rules.thumbprint(old),
        "state": "retired",
        "reason": None,
        "revokedAt": res["revokedAt"],
        "exposure": {
            "from": clock.iso(now - clock.days(40)),
            "signingUntil": clock.iso(now - clock.days(10)),
            "until": clock.iso(now - clock.days(10) + clock.seconds(MAX_AGE)),
        },
        "new_signing_key": False,
        "created": None,
        "lead_skipped_seconds": 0,
        "retired": None,
        "signing_kid": signing["kid"],
    }
    d = doc(pk.kf)
    assert [r["kid"] for r in d["keys"]] == [signing["kid"]]
    assert d["keys"][0] == two_keys(keypool, now)[0]  # the signing key's record is untouched
    # today's readers still read the file (format 1, an extra member)
    rc, out, _ = pk("--json", "list")
    assert rc == 0 and [k["kid"] for k in json.loads(out)["keys"]] == [signing["kid"]]
    # revoking it again changes nothing and says so; exit 0
    before = pk.kf.read_bytes()
    rc, out, _ = pk("revoke", "--", old["kid"])
    assert rc == 0 and out == f"{old['kid']} was already revoked on {day(res['revokedAt'])} UTC; nothing to do\n"
    assert pk.kf.read_bytes() == before


def test_dry_run_writes_nothing_and_errors_are_one_line(pk, keypool):
    now = clock.now()
    write_keyfile(pk.kf, two_keys(keypool, now))
    before = pk.kf.read_bytes()
    signing = keypool[1]
    rc, out, err = pk("revoke", "--dry-run", "--", signing["kid"], env=LEAD)
    assert rc == 0 and out.splitlines()[0] == (
        f"would revoke {signing['kid']} (signing key); a new signing key would be created and sign at once"
    )
    assert pk.kf.read_bytes() == before
    rc, out, err = pk("revoke", "no-such-kid")
    assert rc == 4 and err == (
        f"prisme-keys: error: no key with kid or thumbprint 'no-such-kid' in {pk.kf}; kids present: "
        f"{signing['kid']}, {keypool[0]['kid']}\n"
    )
    assert json.loads(pk("--json", "revoke", "no-such-kid")[2])["code"] == "kid_not_found"
    rc, out, err = pk("--json", "revoke", "--reason", "x" * 300, "--", signing["kid"])
    assert rc == 2 and json.loads(err) == {
        "code": "usage_error",
        "message": "--reason: at most 200 characters (got 300)",
        "exit": 2,
    }
    assert pk.kf.read_bytes() == before
    # a malformed revocation list: exit 4, file untouched, and verify refuses to guess
    d = doc(pk.kf)
    d["revocations"] = "oops"
    pk.kf.write_text(json.dumps(d))
    before = pk.kf.read_bytes()
    rc, _, err = pk("revoke", "--", signing["kid"])
    assert rc == 4 and '"revocations" is not a list' in err
    assert pk.kf.read_bytes() == before


def test_revoke_by_thumbprint_and_verify_via_url(pk, keypool, tmp_path):
    from jwks_server import JwksServer

    now = clock.now()
    write_keyfile(pk.kf, two_keys(keypool, now))
    old = keypool[0]
    token = rs_token(old, claims())
    rc, out, _ = pk("--json", "revoke", "--reason", "laptop stolen", "--", jwk_rules.thumbprint(old))
    assert rc == 0 and json.loads(out)["kid"] == old["kid"]
    with JwksServer() as s:
        s.serve_json("/jwks", jwks(old, keypool[1]))  # a JWKS that still serves the revoked key
        rc, out, err = pk("verify", token, "--jwks-url", s.url(), "--no-cache")
    assert rc == 6 and "(reason: laptop stolen): tokens it signed are refused" in err


def test_doctor_reports_revocations(pk, keypool):
    now = clock.now()
    write_keyfile(pk.kf, two_keys(keypool, now))
    old = keypool[0]
    assert pk("revoke", "--reason", "leaked", "--", old["kid"])[0] == 0
    rc, out, _ = pk("--json", "doctor")
    rep = json.loads(out)
    assert rc == 0 and rep["healthy"]
    (f,) = [f for f in rep["findings"] if f["code"] == "revoked_key"]
    entry = doc(pk.kf)["revocations"][0]
    assert f == {
        "severity": "info",
        "code": "revoked_key",
        "message": f"key {old['kid']} (thumbprint {entry['thumbprint']}) revoked on {day(entry['revokedAt'])} UTC "
        f"(reason: leaked); its tokens could be valid until {entry['exposure']['until']}",
        "kid": old["kid"],
    }
    # the revoked key put back by hand (under another kid): an error
    d = doc(pk.kf)
    d["keys"].append(rec(dict(old, kid="sneaky"), now - clock.days(40)))
    pk.kf.write_text(json.dumps(d))
    os.chmod(pk.kf, 0o600)
    rc, out, _ = pk("--json", "doctor")
    rep = json.loads(out)
    assert rc == 4
    (f,) = [f for f in rep["findings"] if f["code"] == "revoked_key_present"]
    assert f["severity"] == "error" and f["kid"] == "sneaky" and f"(as kid {old['kid']})" in f["message"]


# -- crash safety ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_sigkill_during_revoke_leaves_old_or_new(tmp_path, keypool):
    """50 runs of ``revoke`` of the signing key killed with SIGKILL at a random moment: the file is
    always exactly the old set or exactly the new one (records and revocation list)."""
    import random
    import signal
    import time

    from prisme_keys import settings
    from prisme_keys.store import keyfile

    now = clock.now()
    kf = tmp_path / "keys.json"
    old_records = two_keys(keypool, now)
    # padding: more records make parsing and writing take measurable time
    for i in range(60):
        created = now - clock.days(41) - clock.seconds(3600 * i)
        old_records.append(dict(rec(dict(keypool[2 + i % 3], kid=f"pad{i:03d}"), created), kid=f"pad{i:03d}"))
    write_keyfile(kf, old_records)
    old_bytes = kf.read_bytes()
    s = settings.load({"key_file": kf, "config_path": empty_config(tmp_path)}, environ={})
    victim = keypool[1]["kid"]

    def child(wfd: int) -> None:
        real = keyfile.KeyFile._write_atomic

        def marked(self, text, **kw):
            os.write(wfd, b"W")
            real(self, text, **kw)
            os.write(wfd, b"D")

        keyfile.KeyFile._write_atomic = marked  # type: ignore[method-assign]
        jwk_rules.check_signing_jwk = lambda jwk, **kw: None  # validated in the parent; the file work is the point
        os.write(wfd, b"S")
        revocation.revoke(s, now, victim, reason="crash test", keygen=lambda b, a: dict(keypool[5]))
        os.write(wfd, b"E")

    def one(delay: float | None) -> bytes:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(r)
                child(w)
            finally:
                os._exit(0)
        os.close(w)
        if delay is not None:
            time.sleep(delay)
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        marks = b""
        while chunk := os.read(r, 64):
            marks += chunk
        os.close(r)
        return marks

    t0 = time.monotonic()
    assert one(None) == b"SWDE"
    span = (time.monotonic() - t0) * 1.2
    new_doc = json.loads(kf.read_text())
    assert [e["kid"] for e in new_doc["revocations"]] == [victim]
    assert new_doc["keys"][0]["kid"] == keypool[5]["kid"] and victim not in {r["kid"] for r in new_doc["keys"]}
    rng = random.Random(14)
    seen = {"old": 0, "new": 0}
    for i in range(50):
        kf.write_bytes(old_bytes)
        os.chmod(kf, 0o600)
        marks = one(rng.uniform(0, span))
        data = kf.read_bytes()
        keyfile.parse(data, kf)  # never corrupt, never truncated
        if data == old_bytes:
            seen["old"] += 1
            assert marks in (b"", b"S", b"SW"), f"run {i}: old file after {marks!r}"
        else:
            assert json.loads(data) == new_doc, f"run {i}: a mix after {marks!r}"
            seen["new"] += 1
            assert marks in (b"SW", b"SWD", b"SWDE")
        assert os.stat(kf).st_mode & 0o777 == 0o600
    assert seen["old"] and seen["new"], seen  # both outcomes were hit


def test_revoke_on_an_encrypted_key_file(pk, keypool):
    write_keyfile(pk.kf, two_keys(keypool, clock.now()))
    pw = {"PRISME_KEYS_PASSPHRASE": "correct horse battery"}
    assert pk("encrypt", env=pw)[0] == 0
    before = pk.kf.read_bytes()
    # the new signing key must be encrypted: no passphrase, nothing written
    rc, _, err = pk("--json", "revoke", "--", keypool[1]["kid"])
    assert rc == 4 and json.loads(err)["code"] == "passphrase_required"
    assert pk.kf.read_bytes() == before
    rc, _, err = pk("revoke", "--", keypool[1]["kid"], env=pw)
    assert rc == 0, err
    new = doc(pk.kf)["keys"][0]
    assert new["kid"] == keypool[5]["kid"] and "enc" in new["jwk"] and "d" not in new["jwk"]
    # a retired key leaves no private member to encrypt: no passphrase needed
    rc, _, err = pk("revoke", "--", keypool[0]["kid"])
    assert rc == 0, err
    assert [r["kid"] for r in doc(pk.kf)["keys"]] == [keypool[5]["kid"]]


def test_a_kid_starting_with_a_dash_goes_after_double_dash(pk, keypool):
    """Regression: 1 in 64 RFC 7638 thumbprints starts with '-'; `revoke -xyz...` said only "No such option: -x"."""
    recs = two_keys(keypool, clock.now())
    recs[1]["jwk"] = dict(recs[1]["jwk"])  # a copy: the session's keypool keeps its kids for the other tests
    recs[1]["kid"] = recs[1]["jwk"]["kid"] = recs[0]["previousKeyId"] = "-dashKid_0"
    write_keyfile(pk.kf, recs)
    rc, out, err = pk("--json", "revoke", "-dashKid_0", "--reason", "leaked")
    assert (rc, out) == (2, "")
    assert json.loads(err) == {
        "code": "usage_error",
        "message": "No such option: -d (a kid that starts with '-' goes last, after '--': "
        "prisme-keys revoke [OPTIONS] -- -dashKid_0)",
        "exit": 2,
    }
    assert doc(pk.kf)["keys"] == recs
    rc, out, err = pk("revoke", "--reason", "leaked", "--", "-dashKid_0")
    assert rc == 0, err
    assert out.startswith("revoked -dashKid_0 (retired key): removed from the key set")
    assert [r["kid"] for r in doc(pk.kf)["keys"]] == [recs[0]["kid"]]


def test_revoke_refuses_bad_kids(cli, tmp_path, keypool):
    # was: any string was looked up, a 100,000-character one echoed in the "no such key" error
    kf = write_keyfile(tmp_path / "keys.json", [rec(keypool[0], clock.now())])
    before = kf.read_bytes()
    for kid, line in (
        ("", "kid '' is not a non-empty string"),
        ("k" * 100_000, "kid '" + "k" * 200 + "'... (100000 characters) has 100000 characters (at most 256)"),
    ):
        p = cli("--key-file", str(kf), "revoke", "--", kid)
        assert (p.returncode, p.stderr, p.stdout) == (
            2,
            f"prisme-keys: error: {line} (see prisme-keys revoke --help)\n",
            "",
        )
    assert kf.read_bytes() == before
