"""``--now`` is for planning (issue 11, section 1; README "Planning with --now").

A command that changes the key file refuses a ``--now`` more than 5 minutes from the real clock
unless ``--write-at-now``; dry runs stay allowed. A key dated in the future never blocks a real
rotation silently, and ``doctor`` reports it.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from helpers import empty_config, record, write_keyfile

from prisme_keys import clock
from prisme_keys.cli import main


def iso(days: float) -> str:
    return clock.iso(clock.now() + timedelta(days=days))


@pytest.fixture
def kf(tmp_path, keypool):
    """A key file made today: the signing key rotates in 29 days, nothing is due."""
    return write_keyfile(tmp_path / "k.json", [record(keypool[0], iso(-1), iso(29), iso(59))])


@pytest.fixture
def run(tmp_path, kf, capsys):
    cfg = empty_config(tmp_path)

    def call(*args: str, env: dict | None = None) -> tuple[int, str, str]:
        capsys.readouterr()
        rc = main(["--key-file", str(kf), "--config", str(cfg), *args], env=env)
        out, err = capsys.readouterr()
        return rc, out, err

    return call


KEY_FILE = "changes the key file"
ANNOUNCES = "announces key changes dated then"
RECORDS = "announces key changes dated then and records them in the key file"


def refusal(at: str, span: str, does: str = KEY_FILE, dry_run: bool = True) -> str:
    act = "write" if does == KEY_FILE else "announce"
    advice = (
        f"add --dry-run to see what it would do then, or --write-at-now to {act} as of that time"
        if dry_run
        else f"drop --now to act at the real clock, or add --write-at-now to {act} as of that time"
    )
    return f"prisme-keys: error: --now {at} is {span} the real clock and this command {does}; {advice}\n"


#: Every command that changes the key file or sends announcements, in every form, with what its
#: refusal says: (argv, what it does, whether it has --dry-run).
WRITERS = [
    (["rotate"], KEY_FILE, True),
    (["rotate", "--force"], KEY_FILE, True),
    (["rotate", "--notify"], KEY_FILE, True),
    (["prune"], KEY_FILE, True),
    (["prune", "--notify"], KEY_FILE, True),
    (["revoke", "--reason", "leaked", "--", "KID"], KEY_FILE, True),
    (["revoke", "--notify", "--", "KID"], KEY_FILE, True),
    (["init"], KEY_FILE, False),
    (["init", "--encrypt"], KEY_FILE, False),
    (["import", "IMPORT"], KEY_FILE, False),
    (["import", "IMPORT", "--notify"], KEY_FILE, False),
    (["encrypt"], KEY_FILE, False),
    (["encrypt", "--rekey"], KEY_FILE, False),
    (["decrypt"], KEY_FILE, False),
    (["notify"], RECORDS, False),  # records the announcement in the key file
    (["notify", "--force"], RECORDS, False),
    (["notify", "--runtime-url", "http://127.0.0.1:9"], RECORDS, False),
    (["notify", "--created", "x", "--no-runtime"], ANNOUNCES, False),  # events dated --now, nothing recorded
    (["notify", "--created=KID"], ANNOUNCES, False),
    (["notify", "--deleted", "x"], ANNOUNCES, False),
    (["notify", "--no-runtime"], ANNOUNCES, False),
]

#: Commands that only read, print or serve: --now is planning for them. ``serve`` mints its
#: anonymous tokens at the real clock (it never reads --now); ``export``/``generate``/``mint``/
#: ``plan`` write only their output (--out), never the key file; ``config init`` writes no date.
READERS = {"list", "export", "generate", "plan", "mint", "decode", "verify", "check", "serve", "doctor", "config"}


def test_every_command_is_classed_as_writing_or_reading():
    """A new command must say whether it writes: this fails until it is added to WRITERS or READERS."""
    import typer

    from prisme_keys.cli.runner import app

    commands = set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    assert {argv[0] for argv, _, _ in WRITERS} | READERS == commands
    assert not {argv[0] for argv, _, _ in WRITERS} & READERS


@pytest.mark.parametrize("cmd, does, dry_run", WRITERS, ids=lambda c: " ".join(c) if isinstance(c, list) else "")
@pytest.mark.parametrize("offset, span", [("+45d", "45 days ahead of"), ("-2h", "2 hours behind")])
def test_a_writing_command_refuses_a_far_now(run, kf, tmp_path, keypool, cmd, does, dry_run, offset, span):
    src = tmp_path / "import.json"
    src.write_text(json.dumps({"keys": [keypool[1]]}))
    if cmd[0] == "init":
        kf.unlink()
    before = kf.read_bytes() if kf.exists() else None
    kid = keypool[0]["kid"]
    cmd = [str(src) if a == "IMPORT" else kid if a == "KID" else a.replace("=KID", "=" + kid) for a in cmd]
    at = clock.iso(clock.parse_time(offset))
    rc, out, err = run("--now", at, *cmd, env={"PRISME_KEYS_PASSPHRASE": "pw pw pw"})
    assert (rc, out, err) == (2, "", refusal(at, span, does, dry_run))
    assert (kf.read_bytes() if kf.exists() else None) == before


@pytest.mark.parametrize(
    "cmd", [["encrypt"], ["init"], ["decrypt"], ["import", "x.json"], ["notify", "--force"], ["prune"], ["revoke", "x"]]
)
def test_the_refusal_suggests_dry_run_only_where_the_command_has_it(run, cmd):
    """Regression: `--now +45d encrypt` said "add --dry-run", which encrypt refuses as an unknown option."""
    import typer

    from prisme_keys.cli.runner import app

    params = typer.main.get_command(app).commands[cmd[0]].params  # type: ignore[attr-defined]
    has = any("--dry-run" in getattr(p, "opts", ()) for p in params)
    at = clock.iso(clock.parse_time("+45d"))
    rc, out, err = run("--now", at, *cmd)
    does = RECORDS if cmd[0] == "notify" else KEY_FILE
    assert (rc, out, err) == (2, "", refusal(at, "45 days ahead of", does, dry_run=has))
    assert has == (cmd[0] in ("prune", "revoke"))


def test_raw_notify_does_not_publish_under_a_far_now(run, tmp_path):
    """Regression: `--now +45d notify --created x --no-runtime` published an event dated 45 days ahead.

    The broker is a port nothing listens on: without the refusal the command fails with exit 11.
    """
    rc, out, err = run(
        "--now", "+45d", "notify", "--created", "x", "--no-runtime", env={"BROKER_HOST": "redis://127.0.0.1:9/0"}
    )
    at = err.split("--now ", 1)[1].split(" ", 1)[0]
    assert (rc, out, err) == (2, "", refusal(at, "45 days ahead of", ANNOUNCES, dry_run=False))


def test_prune_at_45_days_ahead_deletes_nothing(run, kf, keypool):
    """The issue's input: a retired key whose tokens are still valid would be pruned at +45d."""
    write_keyfile(
        kf,
        [record(keypool[0], iso(-1), iso(29), iso(59)), record(keypool[1], iso(-31), iso(-1), iso(29))],
    )
    before = kf.read_bytes()
    rc, _, err = run("--now", "+45d", "prune")
    assert rc == 2 and "--write-at-now" in err and "--dry-run" in err
    assert kf.read_bytes() == before
    rc, out, _ = run("--now", "+45d", "prune", "--dry-run")
    assert (rc, out) == (0, f"would prune 1 key: {keypool[1]['kid']}\n")
    assert kf.read_bytes() == before


def test_a_now_within_five_minutes_writes(run, kf):
    rc, out, err = run("--now", "+4m", "rotate", "--force")
    assert rc == 0 and out.startswith("rotated: signing key "), err


def test_write_at_now_writes_as_of_that_time(run, kf):
    at = "2027-06-01T00:00:00.000Z"
    rc, out, err = run("--now", at, "--write-at-now", "--json", "rotate")
    assert rc == 0, err
    assert json.loads(out)["created"]["createdAt"] == at


def test_reading_commands_are_free_to_time_travel(run, kf):
    for cmd in (["list"], ["export"], ["mint", "--sub", "u1"], ["rotate", "--dry-run"], ["prune", "--dry-run"]):
        rc, _, err = run("--now", "+400d", *cmd)
        assert rc == 0, (cmd, err)


def test_a_key_written_400_days_ahead_never_blocks_real_rotation(run, kf, keypool):
    """The issue's input: --now +400d rotate wrote a key that suppressed real rotation for ~430 days."""
    assert run("--now", "+400d", "--write-at-now", "rotate", "--force")[0] == 0
    future = json.loads(kf.read_text())["keys"][0]
    assert future["createdAt"] > iso(399)

    rc, out, err = run("--json", "doctor")
    found = {f["code"]: f for f in json.loads(out)["findings"]}
    assert rc == 4 and found["created_in_future"]["kid"] == future["kid"]
    assert found["created_in_future"]["message"].startswith(
        f"key {future['kid']} was created 400 days in the future of the real clock ({future['createdAt']})"
    )

    rc, out, err = run("--json", "rotate", "--dry-run")
    doc = json.loads(out)
    assert (rc, doc["due"], doc["rotated"]) == (0, True, False)
    assert doc["reason"] == (
        f"key {future['kid']} is dated 400 days ahead (createdAt {future['createdAt']}) and would block rotation"
    )

    rc, out, err = run("--json", "rotate")  # cron, at the real time: no --now at all
    doc = json.loads(out)
    assert rc == 0 and doc["rotated"] is True
    now = clock.now()
    keys = json.loads(kf.read_text())["keys"]
    new, back = keys[0], next(k for k in keys if k["kid"] == future["kid"])
    assert new["kid"] == doc["created"]["kid"] == doc["signing_kid"]
    assert abs((clock.parse_iso(new["createdAt"]) - now).total_seconds()) < 60
    assert back["createdAt"] == back["rotatesAt"] < new["createdAt"]
    assert back["expiresAt"] == clock.iso(clock.parse_iso(new["createdAt"]) + timedelta(days=30))
    note = (
        f"warning: key {future['kid']} was dated 400 days ahead (createdAt {future['createdAt']}); it no longer "
        f"blocks rotation: it is retired as of now and stays published until {back['expiresAt']}\n"
    )
    assert err == note and doc["notes"] == [note[len("warning: ") : -1]]

    rc, out, _ = run("--json", "doctor")
    assert rc == 0 and json.loads(out)["healthy"] is True
    rc, out, _ = run("--json", "list")
    assert [k["state"] for k in json.loads(out)["keys"]] == ["signing", "retired", "retired"]


def test_doctor_flags_a_key_activating_beyond_the_publication_lead(run, kf, keypool):
    rec = record(keypool[1], iso(-0.5), iso(100), iso(130))
    rec["activatesAt"] = iso(70)
    write_keyfile(kf, [rec, record(keypool[0], iso(-1), iso(29), iso(59))])
    rc, out, _ = run("--json", "doctor", env={"PRISME_KEYS_PUBLICATION_LEAD": "2d"})
    codes = {f["code"]: f for f in json.loads(out)["findings"]}
    assert rc == 4 and codes["activates_in_future"]["kid"] == keypool[1]["kid"]
    assert "created_in_future" not in codes


def test_doctor_under_a_past_now_does_not_call_todays_keys_future(run, kf):
    rc, out, _ = run("--json", "--now", "-10d", "doctor")
    codes = [f["code"] for f in json.loads(out)["findings"]]
    assert "created_in_future" not in codes
