"""import: private JWKS, gateway records (JSON array, JSON lines, Mongo extended JSON), PEM keys."""

from __future__ import annotations

import json
from importlib import resources

import pytest
from helpers import T0, no_traceback, one_error_line, record, write_keyfile

from prisme_keys import clock
from prisme_keys import jwk as jwk_rules
from prisme_keys.errors import KeyFileError, UsageError
from prisme_keys.settings import Settings
from prisme_keys.store import importer

NOW = "2026-02-10T00:00:00.000Z"


def chain(pool, n=3):
    """``n`` gateway records from the pool, newest first, 30 days apart, linked by previousKeyId."""
    recs = []
    for i in range(n):
        c = clock.parse_iso(T0) + clock.days(30 * i)
        recs.append(
            {
                "kid": pool[i]["kid"],
                "previousKeyId": pool[i - 1]["kid"] if i else None,
                "createdAt": clock.iso(c),
                "rotatesAt": clock.iso(c + clock.days(30)),
                "expiresAt": clock.iso(c + clock.days(60)),
                "jwk": pool[i],
            }
        )
    return list(reversed(recs))


def keys_of(path):
    return json.loads(path.read_text())["keys"]


def small_jwk():
    from cryptography.hazmat.primitives.asymmetric import rsa

    return jwk_rules.private_key_to_jwk(rsa.generate_private_key(public_exponent=65537, key_size=1024), "RS256")


def compromised_with_d(pool_key):
    raw = resources.files("prisme_keys").joinpath("data/known-compromised-keys.json").read_text()
    pub = json.loads(raw)["keys"][0]["jwk"]
    jwk = dict(pub)
    for m in ("d", "p", "q", "dp", "dq", "qi"):
        jwk[m] = pool_key[m]
    return jwk


# -- round trips through the CLI ----------------------------------------------------------


def test_records_round_trip(cli, tmp_path, keypool):
    src = write_keyfile(tmp_path / "src.json", chain(keypool))
    dump = tmp_path / "records.jsonl"
    p = cli("--key-file", str(src), "export", "--format", "records", "--private", "--out", str(dump))
    assert p.returncode == 0, p.stderr
    lines = dump.read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(ln)["jwk"]["d"] for ln in lines)  # mongoimport's JSON lines
    dst = tmp_path / "dst.json"
    p = cli("--key-file", str(dst), "import", "--create", str(dump))
    assert p.returncode == 0, p.stderr
    assert keys_of(dst) == keys_of(src)
    kids = [r["kid"] for r in keys_of(src)]
    assert p.stdout.strip() == (f"imported 3 keys into {dst} (created): {', '.join(kids)}; signing key {kids[0]}")
    assert (dst.stat().st_mode & 0o777) == 0o600
    # a JSON array of the same records, from stdin: all already there, skipped
    arr = json.dumps([json.loads(ln) for ln in lines])
    p = cli("--json", "--key-file", str(dst), "import", "-", input=arr)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == {
        "path": str(dst),
        "format": "records",
        "imported": [],
        "skipped": kids,
        "created_file": False,
        "signing_kid": kids[0],
    }
    assert keys_of(dst) == keys_of(src)


def test_private_jwks_round_trip(cli, tmp_path, keypool):
    src = write_keyfile(tmp_path / "src.json", chain(keypool))
    p = cli("--key-file", str(src), "export", "--format", "jwks", "--private")
    assert p.returncode == 0, p.stderr
    jwks = json.loads(p.stdout)
    assert [k["kid"] for k in jwks["keys"]] == [r["kid"] for r in keys_of(src)]
    dst = tmp_path / "dst.json"
    p = cli("--key-file", str(dst), "--now", NOW, "--write-at-now", "import", "--create", "-", input=p.stdout)
    assert p.returncode == 0, p.stderr
    got = keys_of(dst)
    assert [r["jwk"] for r in got] == jwks["keys"]  # same keys, same order: the first one signs
    assert got[0]["createdAt"] == NOW
    assert got[0]["rotatesAt"] == "2026-03-12T00:00:00.000Z"
    assert got[0]["expiresAt"] == "2026-04-11T00:00:00.000Z"
    assert [r["previousKeyId"] for r in got] == [got[1]["kid"], got[2]["kid"], None]


def test_pem_import_with_alg_and_kid(cli, tmp_path, keypool, keyfile):
    from cryptography.hazmat.primitives import serialization

    key = jwk_rules.private_key_from_jwk(keypool[3])
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode()
    f = tmp_path / "k.pem"
    f.write_text(pem)
    p = cli(
        "--key-file",
        str(keyfile),
        "--now",
        NOW,
        "--write-at-now",
        "import",
        str(f),
        "--alg",
        "RS384",
        "--kid",
        "pem-key-1",
    )
    assert p.returncode == 0, p.stderr
    recs = keys_of(keyfile)
    assert [r["kid"] for r in recs] == ["pem-key-1", keypool[0]["kid"]]
    new = recs[0]
    assert new["previousKeyId"] == keypool[0]["kid"] and new["createdAt"] == NOW
    expect = dict(keypool[3], kid="pem-key-1", alg="RS384")
    assert new["jwk"] == expect
    assert list(new) == ["kid", "previousKeyId", "createdAt", "rotatesAt", "expiresAt", "jwk"]
    # PKCS#8 without --kid: the thumbprint is the kid
    pk8 = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    dst = tmp_path / "d.json"
    p = cli("--key-file", str(dst), "import", "--create", "-", input=pk8)
    assert p.returncode == 0, p.stderr
    assert keys_of(dst)[0]["kid"] == jwk_rules.thumbprint(keypool[3]) and keys_of(dst)[0]["jwk"]["alg"] == "RS256"


def test_mongo_extended_json_lines(cli, tmp_path, keypool):
    lines = [
        {
            "_id": {"$oid": "65a1b2c3d4e5f60718293a4b"},
            "kid": keypool[1]["kid"],
            "previousKeyId": keypool[0]["kid"],
            "createdAt": {"$date": "2026-01-31T00:00:00Z"},
            "rotatesAt": {"$date": {"$numberLong": "1774828800000"}},
            "expiresAt": {"$date": "2026-04-29T00:00:00.000+00:00"},
            "jwk": keypool[1],
            "__v": {"$numberInt": "0"},
        },
        {
            "_id": {"$oid": "65a1b2c3d4e5f60718293a4a"},
            "kid": keypool[0]["kid"],
            "createdAt": "2026-01-01T00:00:00.000Z",
            "rotatesAt": "2026-01-31T00:00:00.000Z",
            "expiresAt": "2026-03-02T00:00:00.000Z",
            "jwk": keypool[0],
        },
    ]
    dst = tmp_path / "dst.json"
    p = cli("--key-file", str(dst), "import", "--create", "-", input="\n".join(json.dumps(x) for x in lines) + "\n")
    assert p.returncode == 0, p.stderr
    assert keys_of(dst) == [
        record(
            keypool[1],
            "2026-01-31T00:00:00.000Z",
            "2026-03-30T00:00:00.000Z",
            "2026-04-29T00:00:00.000Z",
            keypool[0]["kid"],
        ),
        record(keypool[0]),  # no previousKeyId in the dump: the oldest key has none
    ]


# -- rejections: nothing written ----------------------------------------------------------


@pytest.fixture
def existing(tmp_path, keypool):
    return write_keyfile(tmp_path / "keys.json", [record(keypool[0])])


def _reject(cli, path, text, *args):
    before = path.read_bytes()
    p = cli("--key-file", str(path), "import", *args, "-", input=text)
    assert p.returncode == 4, (p.returncode, p.stderr)
    no_traceback(p)
    assert p.stdout == ""
    assert path.read_bytes() == before
    err = p.stderr.strip()
    assert err.count("\n") == 0
    return err


def test_truncated_record_rejected(cli, existing, keypool):
    good = json.dumps(record(keypool[1]))
    bad = json.dumps(record(keypool[2]))[:300]
    err = _reject(cli, existing, good + "\n" + bad + "\n")
    assert err.startswith(
        "prisme-keys: error: import from stdin rejected, nothing written: record 2 (line 2): "
        "not valid JSON (unterminated string starting at line 1 column "
    )
    assert "truncated?" in err
    # a record cut before its jwk
    cut = {k: v for k, v in record(keypool[2]).items() if k != "jwk"}
    err = _reject(cli, existing, json.dumps([record(keypool[1]), cut]))
    assert err.endswith("record 2: neither a gateway record (no jwk member) nor a JWK (no kty member)")
    # a jwk cut before n
    rec = record(keypool[2])
    rec["jwk"] = {"kty": "RSA", "kid": keypool[2]["kid"], "use": "sig"}
    err = _reject(cli, existing, json.dumps([rec]))
    assert err.endswith("record 1: jwk member 'n' is missing or not a string (truncated record?)")


def test_1024_bit_key_rejected(cli, existing, keypool):
    small = small_jwk()
    err = _reject(cli, existing, json.dumps({"keys": [keypool[1], small]}))
    assert err.endswith("key 2: 1024-bit key; at least 2048 bits are required")


def test_d_not_matching_n_rejected(cli, existing, keypool):
    bad = dict(keypool[1], d=keypool[2]["d"])
    err = _reject(cli, existing, json.dumps([record(bad)]))
    assert "record 1: private key members are inconsistent: " in err
    assert keypool[2]["d"] not in err and keypool[1]["d"] not in err
    # d alone (no CRT members), from another key
    only_d = {m: keypool[1][m] for m in ("kty", "kid", "n", "e")}
    only_d["d"] = keypool[2]["d"]
    err = _reject(cli, existing, json.dumps({"keys": [only_d]}))
    assert "key 1: private key members are inconsistent" in err


def test_known_compromised_key_rejected(cli, existing, keypool):
    jwk = compromised_with_d(keypool[1])
    err = _reject(cli, existing, json.dumps({"keys": [jwk]}))
    assert "key 1: it is a known-compromised key, its private half is public (the sample jwks.json" in err


def test_public_only_jwks_rejected(cli, existing, keypool):
    err = _reject(cli, existing, json.dumps({"keys": [jwk_rules.public_jwk(keypool[1])]}))
    assert "key 1: no private key (member 'd')" in err


def test_kid_conflicts(cli, existing, keypool):
    # same kid, other key material: error
    other = dict(keypool[1], kid=keypool[0]["kid"])
    err = _reject(cli, existing, json.dumps({"keys": [other]}))
    assert err.endswith(f"key 1: kid '{keypool[0]['kid']}' is already in the key file with a different key")
    # same key under another kid: error
    err = _reject(cli, existing, json.dumps({"keys": [dict(keypool[0], kid="renamed")]}))
    assert err.endswith(f"key 1: the same key is already in the key file as kid '{keypool[0]['kid']}'")
    # same kid twice in the input with different keys
    err = _reject(cli, existing, json.dumps({"keys": [dict(keypool[1], kid="x"), dict(keypool[2], kid="x")]}))
    assert err.endswith("key 2: kid 'x' is also key 1 with a different key")
    # several problems: the first is named, the rest counted
    err = _reject(cli, existing, json.dumps({"keys": [small_jwk(), jwk_rules.public_jwk(keypool[1]), keypool[2]]}))
    assert "key 1: 1024-bit key" in err and err.endswith("(and 1 more rejected: key 2)")


def test_same_material_skipped(cli, existing, keypool):
    p = cli(
        "--key-file",
        str(existing),
        "--now",
        NOW,
        "--write-at-now",
        "import",
        "-",
        input=json.dumps({"keys": [keypool[0], keypool[1]]}),
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == (
        f"imported 1 key into {existing}: {keypool[1]['kid']}; skipped 1 already present: "
        f"{keypool[0]['kid']}; signing key {keypool[1]['kid']}"
    )
    assert [r["kid"] for r in keys_of(existing)] == [keypool[1]["kid"], keypool[0]["kid"]]


def test_missing_key_file_needs_create(cli, tmp_path, keypool):
    dst = tmp_path / "new.json"
    p = cli("--key-file", str(dst), "import", "-", input=json.dumps({"keys": [keypool[1]]}))
    assert p.returncode == 4
    assert f"key file {dst} does not exist; add --create" in p.stderr
    assert not dst.exists()
    # rejected input with --create: no file is created
    p = cli("--key-file", str(dst), "import", "--create", "-", input=json.dumps({"keys": [small_jwk()]}))
    assert p.returncode == 4 and not dst.exists()


def test_unreadable_inputs(cli, existing, tmp_path):
    assert "is empty" in _reject(cli, existing, "  \n")
    assert "holds no keys" in _reject(cli, existing, '{"hello": 1}')
    assert "not valid JSON" in _reject(cli, existing, '{"keys": [')
    assert "not a readable PEM private key" in _reject(
        cli, existing, "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"
    )
    p = cli("--key-file", str(existing), "import", str(tmp_path / "nope.json"))
    assert p.returncode == 4 and "cannot read" in p.stderr


def test_kid_option_with_several_keys_is_usage_error(cli, existing, keypool):
    p = cli(
        "--key-file", str(existing), "import", "--kid", "k", "-", input=json.dumps({"keys": [keypool[1], keypool[2]]})
    )
    assert p.returncode == 2
    assert "--kid names one key" in p.stderr


# -- library ------------------------------------------------------------------------------


def test_prepare_fills_and_completes(keypool):
    st = Settings()
    now = clock.parse_iso(NOW)
    bare = {m: keypool[1][m] for m in ("kty", "n", "e", "d")}  # no kid, alg, use, CRT members
    fmt, out = importer.prepare(json.dumps(bare).encode(), st, now, name="x")
    assert fmt == "jwks"
    ((pos, rec),) = out
    assert pos == "key 1"
    assert rec["kid"] == jwk_rules.thumbprint(keypool[1])
    assert rec["jwk"] == dict(keypool[1], kid=rec["kid"])  # p, q, dp, dq, qi recovered
    assert rec["createdAt"] == NOW


def test_prepare_errors_are_typed(keypool):
    st = Settings()
    now = clock.parse_iso(NOW)
    with pytest.raises(UsageError):
        importer.prepare(b"{}", st, now, alg="PS256")
    with pytest.raises(KeyFileError) as ei:
        importer.prepare(json.dumps({"keys": [dict(keypool[1], alg="HS256")]}).encode(), st, now)
    assert ei.value.code == "import_rejected" and "alg 'HS256' is not supported" in ei.value.message


# -- canonical form (issue 11) --------------------------------------------------------------


@pytest.fixture
def run(cli):
    """The command line, in-process (:class:`helpers.Cli`)."""
    return cli


def test_non_canonical_private_jwks_is_stored_canonical(run, tmp_path, keypool):
    """Regression: a private JWKS whose n carries an extra leading zero byte (257 bytes for 2048 bits)
    was stored and published as is; doctor said healthy and check --roundtrip failed."""
    import threading

    from prisme_keys import settings as settings_mod
    from prisme_keys.publish import serve

    k = keypool[5]
    padded = dict(
        k, n=jwk_rules.b64url_encode(b"\0" + jwk_rules.b64url_decode(k["n"])), d=k["d"] + "=" * (-len(k["d"]) % 4)
    )
    assert len(jwk_rules.b64url_decode(padded["n"])) == 257
    src = tmp_path / "private.json"
    src.write_text(json.dumps({"keys": [padded]}))
    kf = tmp_path / "keys.json"
    assert run("--key-file", str(kf), "import", "--create", str(src)).returncode == 0
    stored = keys_of(kf)[0]["jwk"]
    assert (stored["kid"], stored["n"], stored["d"]) == (k["kid"], k["n"], k["d"])
    assert jwk_rules.non_canonical_members(stored) == {}
    exported = json.loads(run("--key-file", str(kf), "export").stdout)["keys"][0]
    assert exported["n"] == k["n"] and len(jwk_rules.b64url_decode(exported["n"])) == 256
    doc = run("--key-file", str(kf), "doctor")
    assert doc.returncode == 0, doc.stdout
    srv = serve.make_server(
        settings_mod.load({"key_file": str(kf)}, {}), "127.0.0.1", 0, cache_control=None, minter=None
    )
    threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
    try:
        p = run("--key-file", str(kf), "--json", "check", f"{srv.base_url}/oidc/jwks", "--roundtrip")
    finally:
        srv.shutdown()
        srv.server_close()
    checks = {c["name"]: c for c in json.loads(p.stdout)["checks"]}
    assert checks["shape.n_canonical"]["status"] == "pass" and checks["roundtrip"]["status"] == "pass", checks
    assert p.returncode == 0, p.stderr


def test_canonical_jwk_rule():
    assert jwk_rules.uint_problem("AQAB") is None and jwk_rules.uint_problem("AA") is None
    assert jwk_rules.uint_problem("AAEAAQ") == "has a leading zero byte"
    assert jwk_rules.uint_problem("AQAB==") == "has '=' padding"
    assert jwk_rules.uint_problem("AQAC+") == "is not base64url"
    assert jwk_rules.uint_problem("AR") == "is not canonical base64url (non-zero padding bits)"
    assert jwk_rules.uint_problem("") == "is not a non-empty string"
    jwk = {"kty": "RSA", "kid": "x", "n": "AAEAAQ", "e": "AQAB==", "d": "AR", "extra": "AAAA"}
    assert jwk_rules.non_canonical_members(jwk) == {
        "n": "has a leading zero byte",
        "e": "has '=' padding",
        "d": "is not canonical base64url (non-zero padding bits)",
    }
    assert jwk_rules.canonical_jwk(jwk) == {
        "kty": "RSA",
        "kid": "x",
        "n": "AQAB",
        "e": "AQAB",
        "d": "AQ",
        "extra": "AAAA",
    }
    with pytest.raises(ValueError, match="member 'n' is not base64url"):
        jwk_rules.canonical_jwk({"n": "a+b"})


# -- regression tests (defects found by a newcomer's break-test)


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


def test_record_created_in_year_9999_gets_dates_clamped_to_the_last_millisecond(cli, existing, keypool):
    """Derived rotatesAt/expiresAt past the year 9999 stop at its last millisecond (was exit 1 OverflowError)."""
    kid = keypool[3]["kid"]
    text = json.dumps([{"kid": kid, "createdAt": "9999-12-31T23:59:59Z", "jwk": keypool[3]}])
    p = cli("--key-file", str(existing), "import", "-", input=text)
    assert (p.returncode, p.stderr) == (0, "")
    rec = next(r for r in keys_of(existing) if r["kid"] == kid)
    assert (rec["createdAt"], rec["rotatesAt"], rec["expiresAt"]) == ("9999-12-31T23:59:59.000Z",) + (
        "9999-12-31T23:59:59.999Z",
    ) * 2
    p = cli("--key-file", str(existing), "--json", "list", "--timeline")
    assert (p.returncode, p.stderr) == (0, "")
    assert json.loads(p.stdout)["end"] == "9999-12-31T23:59:59.999Z"


def test_import_refuses_an_overlong_kid(cli, keyfile, keypool):
    # was: a 100,000-character kid was imported (and printed by list, check, verify)
    kid = "k" * 100_000
    rec = record(dict(keypool[3]))
    rec.update(kid=kid, jwk=dict(rec["jwk"], kid=kid))
    before = keyfile.read_bytes()
    p = cli("--key-file", str(keyfile), "import", "-", input=json.dumps([rec]))
    one_error_line(p, 4)
    assert "record kid '" + "k" * 200 + "'... (100000 characters) has 100000 characters (at most 256)" in p.stderr
    assert len(p.stderr) < 600
    assert keyfile.read_bytes() == before


def test_one_kid_rule():
    assert jwk_rules.kid_problem("k1") is None and jwk_rules.kid_problem("k" * 256) is None
    assert jwk_rules.kid_problem("") == "is not a non-empty string"
    assert jwk_rules.kid_problem(5) == "is not a non-empty string"
    assert jwk_rules.kid_problem("k" * 257) == "has 257 characters (at most 256)"
    assert jwk_rules.kid_problem("a\nb") == "contains control characters"
    with pytest.raises(UsageError) as info:
        jwk_rules.check_kid("", "created")
    assert (info.value.message, info.value.argument) == ("created '' is not a non-empty string", "created")
