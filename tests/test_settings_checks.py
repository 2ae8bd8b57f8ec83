"""Settings checked against each other: each check fires on its input and stays silent on the defaults;
plan, doctor, config show and mint all report them."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from helpers import empty_config, record, write_keyfile

from prisme_keys import clock
from prisme_keys import settings as settings_mod
from prisme_keys.cli import main
from prisme_keys.errors import ConfigError
from prisme_keys.settings import Settings
from prisme_keys.store import rotation, schedule
from prisme_keys.store import settings_checks as checks

NOW = clock.parse_iso("2026-01-10T00:00:00.000Z")
DAY = 86400


@pytest.fixture
def run(tmp_path, capsys):
    """``main(argv, env)`` in-process with an empty named config; returns ``(exit code, stdout, stderr)``."""
    cfg = empty_config(tmp_path)

    def go(*argv: str, env: dict | None = None) -> tuple[int, str, str]:
        capsys.readouterr()
        rc = main(list(argv), env={"PRISME_KEYS_CONFIG": str(cfg), **(env or {})})
        out, err = capsys.readouterr()
        return rc, out, err

    return go


def codes(found):
    return [(f.severity, f.code) for f in found]


def stand_in(kid: str, bits: int) -> dict:
    """A public RSA JWK of ``bits`` bits (the modulus is all ones: never used to verify)."""
    from prisme_keys import jwk as jwk_rules

    return {"kty": "RSA", "kid": kid, "alg": "RS256", "n": jwk_rules.b64url_encode(b"\xff" * (bits // 8)), "e": "AQAB"}


def test_silent_on_the_defaults(keypool):
    recs = [record(keypool[0], created="2026-01-01T00:00:00.000Z")]
    assert checks.check(Settings(), NOW, records=recs) == []
    assert checks.check(Settings(), NOW, records=recs, lifetime=2592000, until=NOW + timedelta(days=90)) == []
    assert checks.check(settings_mod.load(environ={}), NOW) == []


def test_max_age_longer_than_rotation_period():
    (f,) = checks.check(Settings(access_tokens_max_age=60 * DAY), NOW)
    assert (f.severity, f.code, f.setting) == ("info", "max_age_exceeds_rotation", "ACCESS_TOKENS_MAX_AGE")
    assert f.message == (
        "ACCESS_TOKENS_MAX_AGE (60d) is longer than the rotation period (JWKS_ROTATION_DAYS=30): each key stays "
        "published 60d after it stops signing, so the JWKS will hold up to 3 keys"
    )
    assert f.suggestion == "JWKS_ROTATION_DAYS=60 (or ACCESS_TOKENS_MAX_AGE=2592000)"
    (f,) = checks.check(Settings(rotation_days=7, access_tokens_max_age=45 * DAY), NOW)
    assert f.severity == "warning" and f.message.endswith(
        "the JWKS will hold up to 8 keys; more than the 5 keys the reference verifier (jwks-rsa) caches"
    )
    (f,) = checks.check(Settings(access_tokens_max_age=400 * DAY), NOW)
    assert f.suggestion == "ACCESS_TOKENS_MAX_AGE=2592000"
    assert checks.check(Settings(access_tokens_max_age=30 * DAY), NOW) == []


@pytest.mark.parametrize(
    "rotation_days, max_age, lead, expected",
    [
        (30, 30 * DAY, 0, 2),
        (30, 30 * DAY + 1, 0, 3),
        (30, 60 * DAY, 0, 3),
        (30, 60 * DAY, 2 * DAY, 4),
        (7, 45 * DAY, 0, 8),
    ],
)
def test_keys_published_is_what_the_simulation_reaches(rotation_days, max_age, lead, expected, keypool):
    s = Settings(rotation_days=rotation_days, access_tokens_max_age=max_age, publication_lead=lead)
    assert checks.keys_published(s) == expected
    first = record(
        keypool[0],
        created=clock.iso(NOW),
        rotates=clock.iso(NOW + timedelta(days=rotation_days)),
        expires=clock.iso(NOW + timedelta(days=rotation_days, seconds=max_age)),
    )
    policy = rotation.Policy.from_settings(s)
    end = NOW + timedelta(days=8 * rotation_days, seconds=2 * max_age)
    sched = schedule.simulate([first], policy, NOW, end, alg="RS256", bits=2048)
    assert max(p.keys for p in sched.jwks) == expected


def test_lead_shorter_than_the_verifier_cache():
    (f,) = checks.check(Settings(publication_lead=300), NOW)
    assert (f.severity, f.code, f.setting) == ("warning", "lead_shorter_than_cache", "PRISME_KEYS_PUBLICATION_LEAD")
    assert f.message == (
        "the publication lead (5m) is shorter than the verifiers' JWKS cache (10m): a verifier that fetched the "
        "JWKS just before a new key was published rejects that key's tokens for up to 5m after it starts signing "
        "(unless it refetches on an unknown kid)"
    )
    assert f.suggestion == "PRISME_KEYS_PUBLICATION_LEAD=1h"
    assert checks.check(Settings(publication_lead=600), NOW) == []
    assert checks.check(Settings(publication_lead=3600, verifier_cache=7200), NOW)[0].suggestion == (
        "PRISME_KEYS_PUBLICATION_LEAD=3h"
    )


def test_lead_zero_with_verifiers_that_cache():
    declared = Settings(verifier_cache=600, sources={"verifier_cache": "flag"})
    (f,) = checks.check(declared, NOW)
    assert (f.severity, f.code) == ("warning", "lead_zero_with_cache")
    assert f.message.startswith("new keys sign as soon as they are published (publication lead 0) but the verifiers")
    assert f.suggestion == "PRISME_KEYS_PUBLICATION_LEAD=1h"
    # the default verifier (jwks-rsa) refetches on an unknown kid; a declared cache of 0 caches nothing
    assert checks.check(Settings(verifier_cache=600), NOW) == []
    assert checks.check(Settings(verifier_cache=0, sources={"verifier_cache": "env:X"}), NOW) == []


def test_lead_not_shorter_than_rotation_period():
    assert codes(checks.check(Settings(rotation_days=1, access_tokens_max_age=DAY, publication_lead=DAY), NOW)) == [
        ("warning", "lead_too_long")
    ]
    (f,) = checks.check(Settings(rotation_days=1, access_tokens_max_age=DAY, publication_lead=DAY), NOW)
    assert f.suggestion == "PRISME_KEYS_PUBLICATION_LEAD=1h"


def test_mint_lifetime_longer_than_max_age():
    f = checks.lifetime_finding(Settings(), 2592001)
    assert f is not None and (f.severity, f.code) == ("warning", "lifetime_exceeds_max_age")
    assert f.line() == (
        "lifetime 2592001 s is longer than ACCESS_TOKENS_MAX_AGE (2592000 s), the longest time a key is kept after "
        "it stops signing: the token may outlive its key's publication; "
        "suggested: a lifetime of at most 2592000 s (30d)"
    )
    assert checks.lifetime_finding(Settings(), 2592000) is None
    assert codes(checks.check(Settings(), NOW, lifetime=40 * DAY)) == [("warning", "lifetime_exceeds_max_age")]


def test_rotation_period_range():
    (f,) = checks.check(Settings(rotation_days=366, access_tokens_max_age=DAY), NOW)
    assert (f.code, f.suggestion) == ("rotation_too_long", "JWKS_ROTATION_DAYS=365")
    (f,) = checks.check(Settings(rotation_days=0, access_tokens_max_age=DAY), NOW)  # the Python API can build it
    assert (f.code, f.suggestion) == ("rotation_too_short", "JWKS_ROTATION_DAYS=1")
    assert checks.check(Settings(rotation_days=365, access_tokens_max_age=DAY), NOW) == []
    assert checks.check(Settings(rotation_days=1, access_tokens_max_age=DAY), NOW) == []


def test_2048_bit_keys_signing_after_2030():
    late = record(stand_in("k2048", 2048), created="2030-12-15T00:00:00.000Z", rotates="2031-01-14T00:00:00.000Z")
    late["expiresAt"] = "2031-02-13T00:00:00.000Z"
    at = clock.parse_iso("2030-12-20T00:00:00.000Z")
    found = checks.check(Settings(size=3072), at, records=[late])
    assert codes(found) == [("warning", "rsa2048_after_2030")]
    assert found[0].kid == "k2048" and found[0].message.startswith(
        "key k2048 (2048 bits) signs until 2031-01-14, past the end of 2030: NIST SP 800-131A"
    )
    assert checks.check(Settings(size=3072), at, records=[dict(late, jwk=stand_in("k2048", 3072))]) == []
    on_time = dict(late, rotatesAt="2031-01-01T00:00:00.000Z")
    assert checks.check(Settings(size=3072), at, records=[on_time]) == []
    # new 2048-bit keys: from 2030-12-02 (30 days before 2031) they sign past 2030
    (f,) = checks.check(Settings(), clock.parse_iso("2030-12-03T00:00:00.000Z"))
    assert (f.code, f.suggestion) == ("size_after_2030", "JWKS_SIZE=3072")
    assert f.message.startswith("new 2048-bit keys created after 2030-12-02 00:00 UTC sign past the end of 2030")
    assert checks.check(Settings(), clock.parse_iso("2030-12-01T00:00:00.000Z")) == []
    assert codes(checks.check(Settings(), NOW, until=clock.parse_iso("2030-12-03T00:00:00.000Z"))) == [
        ("warning", "size_after_2030")
    ]
    assert checks.check(Settings(size=3072), clock.parse_iso("2031-06-01T00:00:00.000Z")) == []


# -- the setting and the commands -----------------------------------------------------------------------------------


def test_verifier_cache_setting_sources(tmp_path):
    assert settings_mod.load(environ={}).verifier_cache == 600
    assert settings_mod.load(environ={"PRISME_KEYS_VERIFIER_CACHE": "15m"}).verifier_cache == 900
    cfg = tmp_path / "c.toml"
    cfg.write_text('verifier_cache = "2h"\n')
    s = settings_mod.load({"config_path": cfg}, {})
    assert (s.verifier_cache, s.sources["verifier_cache"]) == (7200, f"config:{cfg}")
    with pytest.raises(ConfigError, match=r"^bad value for PRISME_KEYS_VERIFIER_CACHE: 'soon'; allowed: seconds"):
        settings_mod.load(environ={"PRISME_KEYS_VERIFIER_CACHE": "soon"})


def test_config_show_reports_checks(run, tmp_path):
    rc, out, err = run("--json", "config", "show")
    doc = json.loads(out)
    assert (
        rc == 0
        and doc["checks"] == []
        and doc["verifier_cache"]
        == {
            "value": 600,
            "env": "PRISME_KEYS_VERIFIER_CACHE",
            "source": "default",
        }
    )
    rc, out, err = run("--json", "config", "show", env={"PRISME_KEYS_VERIFIER_CACHE": "10m"})
    assert [c["code"] for c in json.loads(out)["checks"]] == ["lead_zero_with_cache"]
    rc, out, err = run("config", "show", env={"PRISME_KEYS_PUBLICATION_LEAD": "1m"})
    assert rc == 0 and out.endswith(
        "\nSettings checks:\n  warning [lead_shorter_than_cache] the publication lead (1m) is shorter than the "
        "verifiers' JWKS cache (10m): a verifier that fetched the JWKS just before a new key was published rejects "
        "that key's tokens for up to 9m after it starts signing (unless it refetches on an unknown kid)\n"
        "    suggested: PRISME_KEYS_PUBLICATION_LEAD=1h\n"
    )
    rc, out, err = run("config", "show")
    assert "Settings checks" not in out


def test_config_init_leaves_the_defaults_silent(run, tmp_path):
    cfg = tmp_path / "written.toml"
    rc, out, err = run("--config", str(cfg), "config", "init")
    assert rc == 0, err
    assert "# verifier_cache = 600" in cfg.read_text()
    rc, out, err = run("--config", str(cfg), "--json", "config", "show")
    assert json.loads(out)["checks"] == []


def test_doctor_reports_checks_and_takes_verifier_cache(run, tmp_path, keypool):
    kf = write_keyfile(tmp_path / "k.json", [record(keypool[0])])
    g = ("--key-file", str(kf), "--now", "2026-01-02T00:00:00.000Z", "--json", "doctor")
    rc, out, err = run(*g)
    assert rc == 0 and json.loads(out)["healthy"] is True
    rc, out, err = run(*g, "--verifier-cache", "10m")
    doc = json.loads(out)
    found = [f for f in doc["findings"] if f["code"] == "lead_zero_with_cache"]
    assert rc == 4 and len(found) == 1 and found[0]["severity"] == "warning"
    assert found[0]["message"].endswith("; suggested: PRISME_KEYS_PUBLICATION_LEAD=1h")
    rc, out, err = run(*g, env={"PRISME_KEYS_PUBLICATION_LEAD": "30d"})
    assert rc == 4 and "lead_too_long" in {f["code"] for f in json.loads(out)["findings"]}
    rc, out, err = run(*g, "--verifier-cache", "-5")
    assert rc == 2 and "--verifier-cache: '-5' is not a time" in err


def test_plan_takes_verifier_cache(run, tmp_path, keypool):
    kf = write_keyfile(tmp_path / "k.json", [record(keypool[0])])
    g = ("--key-file", str(kf), "--now", "2026-01-02T00:00:00.000Z", "--json", "plan", "--days", "10")
    rc, out, err = run(*g, "--verifier-cache", "2h", env={"PRISME_KEYS_PUBLICATION_LEAD": "1h"})
    assert rc == 0 and [(f["code"], f["suggestion"]) for f in json.loads(out)["findings"]] == [
        ("lead_shorter_than_cache", "PRISME_KEYS_PUBLICATION_LEAD=3h")
    ]
    assert json.loads(out)["settings"]["verifier_cache"] == 7200


def test_plan_reports_2048_bit_keys_created_after_2030(run, tmp_path, keypool):
    kf = write_keyfile(
        tmp_path / "k.json",
        [record(keypool[0], created="2030-10-01T00:00:00.000Z", rotates="2030-10-31T00:00:00.000Z")],
    )
    kf_rec = json.loads(kf.read_text())
    kf_rec["keys"][0]["expiresAt"] = "2030-11-30T00:00:00.000Z"
    kf.write_text(json.dumps(kf_rec))
    g = ("--key-file", str(kf), "--now", "2030-10-05T00:00:00.000Z", "--json", "plan")
    rc, out, err = run(*g, "--days", "30")
    assert rc == 0 and json.loads(out)["findings"] == []  # the key made on 2030-10-31 rotates on 2030-11-30
    rc, out, err = run(*g, "--days", "90")
    assert [f["code"] for f in json.loads(out)["findings"]] == ["size_after_2030"]


def test_mint_warns_with_the_shared_check(run, tmp_path, keypool):
    kf = write_keyfile(tmp_path / "k.json", [record(keypool[0])])
    rc, out, err = run("--key-file", str(kf), "--now", "2026-01-02T00:00:00.000Z", "mint", "--ttl", "31d")
    assert rc == 0 and out.count(".") == 2
    assert (
        "warning: lifetime 2678400 s is longer than ACCESS_TOKENS_MAX_AGE (2592000 s), the longest time a key is "
        "kept after it stops signing: the token may outlive its key's publication; suggested: a lifetime of at most "
        "2592000 s (30d)\n"
    ) in err
    rc, out, err = run("--key-file", str(kf), "--now", "2026-01-02T00:00:00.000Z", "mint", "--ttl", "30d")
    assert "ACCESS_TOKENS_MAX_AGE" not in err


def test_format_duration():
    assert [clock.format_duration(s) for s in (0, 59, 60, 600, 3600, 5400, 86400, 262800, 0.5)] == [
        "0s",
        "59s",
        "1m",
        "10m",
        "1h",
        "90m",
        "1d",
        "73h",
        "0.5s",
    ]


def test_python_api(tmp_path, keypool):
    from prisme_keys import api

    kf = write_keyfile(tmp_path / "k.json", [record(keypool[0])])
    s = Settings(key_file=kf, publication_lead=60)
    assert [f.code for f in api.check_settings(s, NOW)] == ["lead_shorter_than_cache"]
    assert [f.code for f in api.check_settings(Settings(), NOW, lifetime=31 * DAY)] == ["lifetime_exceeds_max_age"]
    res = api.plan(s, NOW, days=30)
    assert res.days == 30 and [e.kind for e in res.schedule.events] == ["rotation", "activation"]
    assert [f.code for f in res.findings] == ["lead_shorter_than_cache"]
