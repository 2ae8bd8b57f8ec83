"""Publish-before-sign rotation with a publication lead L = 1 day."""

import base64
import json
from datetime import timedelta

import pytest
from helpers import T0, empty_config, record, write_keyfile

from prisme_keys import clock, settings
from prisme_keys.errors import ConfigError
from prisme_keys.store import lifecycle, rotation

DAY = timedelta(days=1)
T = clock.parse_iso(T0)
ROT = T + timedelta(days=29)  # the signing key rotates at T0 + 30 d, so with L = 1 d rotation is due at T0 + 29 d


def load(kf, tmp_path, **env):
    return settings.load(
        {"key_file": kf, "config_path": empty_config(tmp_path)}, environ={"PRISME_KEYS_PUBLICATION_LEAD": "1d", **env}
    )


def kid_of(token: str) -> str:
    h = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(h + "=" * (-len(h) % 4)))["kid"]


@pytest.fixture
def rotated(tmp_path, keypool):
    kf = write_keyfile(tmp_path / "keys.json", [record(keypool[0])])
    s = load(kf, tmp_path)
    assert s.publication_lead == 86400
    early = lifecycle.rotate(s, ROT - timedelta(milliseconds=1), keygen=lambda b, a: keypool[1])
    assert not early.rotated and early.next_rotation == clock.iso(ROT)
    res = lifecycle.rotate(s, ROT, keygen=lambda b, a: keypool[1])
    assert res.rotated
    return kf, s, res


def test_lead_setting_accepts_durations_and_seconds(tmp_path):
    for raw, want in (("1d", 86400), ("86400", 86400), ("2h", 7200), ("0", 0), ("1.5", 1.5)):
        assert load(tmp_path / "k", tmp_path, PRISME_KEYS_PUBLICATION_LEAD=raw).publication_lead == want
    for raw in ("-1", "soon", "1y"):
        with pytest.raises(ConfigError, match="PRISME_KEYS_PUBLICATION_LEAD"):
            load(tmp_path / "k", tmp_path, PRISME_KEYS_PUBLICATION_LEAD=raw)


def test_rotation_creates_next_key_with_dates(rotated, keypool):
    kf, s, res = rotated
    new = res.created
    assert new["kid"] == keypool[1]["kid"] and new["previousKeyId"] == keypool[0]["kid"]
    assert new["createdAt"] == clock.iso(ROT)
    assert new["activatesAt"] == clock.iso(ROT + DAY) == "2026-01-31T00:00:00.000Z"
    assert new["rotatesAt"] == clock.iso(ROT + DAY + timedelta(days=30))
    assert new["expiresAt"] == clock.iso(ROT + DAY + timedelta(days=30) + timedelta(seconds=2592000))
    # the old key verifies for a full max-age after the new one starts signing
    assert res.retired["expiresAt"] == clock.iso(ROT + DAY + timedelta(seconds=2592000))
    assert res.signing_kid == keypool[0]["kid"]
    rows = lifecycle.list_keys(s, ROT + timedelta(hours=1))
    assert [(r["kid"], r["state"]) for r in rows] == [(keypool[1]["kid"], "next"), (keypool[0]["kid"], "signing")]
    assert rows[0]["activatesAt"] == new["activatesAt"]
    # nothing more is due while the next key waits, even when the old key passes rotatesAt late
    assert not lifecycle.rotate(s, ROT + timedelta(hours=23)).rotated


def test_signing_key_switches_at_activation_and_export_holds_both(rotated, keypool):
    kf, s, _ = rotated
    old, new = keypool[0]["kid"], keypool[1]["kid"]
    for offset, want in (
        (timedelta(0), old),
        (timedelta(hours=1), old),
        (timedelta(hours=23, minutes=59), old),
        (DAY - timedelta(milliseconds=1), old),
        (DAY, new),
        (DAY + timedelta(hours=1), new),
        (timedelta(days=20), new),
    ):
        now = ROT + offset
        rec, jwk = lifecycle.signing_jwk(s, now)
        assert rec["kid"] == want, offset
        lifecycle.prune(s, now)  # pruning during and after the lead never drops either key
        kids = [k["kid"] for k in lifecycle.export(s)["keys"]]
        assert kids == [new, old], offset
    # the old key goes only once every token it signed has expired
    last_old_token_exp = ROT + DAY + timedelta(seconds=2592000)
    assert lifecycle.prune(s, last_old_token_exp - timedelta(milliseconds=1)).removed == []
    assert [r["kid"] for r in lifecycle.prune(s, last_old_token_exp).removed] == [old]


def test_next_rotation_is_due_lead_before_rotates_at(rotated, keypool):
    kf, s, res = rotated
    plan = rotation.plan_rotation(lifecycle.load_records(s), rotation.Policy.from_settings(s), ROT + DAY)
    assert not plan.due
    assert plan.next_rotation == clock.parse_iso(res.created["rotatesAt"]) - DAY


def test_init_with_lead_signs_at_once(tmp_path, keypool):
    s = load(tmp_path / "new.json", tmp_path)
    res = lifecycle.init(s, T, keygen=lambda b, a: keypool[2])
    assert "activatesAt" not in res.record and res.record["rotatesAt"] == clock.iso(T + timedelta(days=30))
    assert lifecycle.signing_jwk(s, T)[0]["kid"] == keypool[2]["kid"]


def test_end_to_end_mint_list_export(cli, tmp_path, keypool):
    kf = write_keyfile(tmp_path / "keys.json", [record(keypool[0])])
    env = {"PRISME_KEYS_PUBLICATION_LEAD": "1d"}
    g = ["--key-file", str(kf)]
    p = cli(*g, "--now", clock.iso(ROT), "--write-at-now", "--json", "rotate", env=env)
    assert p.returncode == 0, p.stderr
    created = json.loads(p.stdout)["created"]
    assert created["activatesAt"] == "2026-01-31T00:00:00.000Z"
    new, old = created["kid"], keypool[0]["kid"]
    p = cli(*g, "--now", clock.iso(ROT + timedelta(hours=2)), "list", env=env)
    rows = {line.split("\t")[0]: line.split("\t") for line in p.stdout.splitlines()}  # piped: tab-separated
    assert p.returncode == 0 and rows[new][1:2] == ["next"] and rows[new][5] == "2026-01-31T00:00:00.000Z"
    assert rows[old][1] == "signing"
    for offset, want in (
        (timedelta(hours=1), old),
        (DAY - timedelta(seconds=1), old),
        (DAY, new),
        (DAY + timedelta(days=3), new),
    ):
        now = clock.iso(ROT + offset)
        p = cli(*g, "--now", now, "mint", env=env)
        assert p.returncode == 0, p.stderr
        assert kid_of(p.stdout.strip()) == want, offset
        p = cli(*g, "--now", now, "export", env=env)
        assert [k["kid"] for k in json.loads(p.stdout)["keys"]] == [new, old]
