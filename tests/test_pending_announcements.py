"""Announcements that cannot be forgotten (issue 17), against a real redis-server.

The key file records the last announcement that succeeded (``"announced"``); ``rotate/prune
--notify`` and ``notify`` send whatever differs from it: a key added or removed, a ``next`` key
that has started signing, a notification that failed before.

Writing commands run at the real clock (no ``--now``): to stand at "t0 + 1 h + 1 min" the tests
age the key file instead, moving every time in it back by the same amount, which is the same
thing for every rule (they all compare times in the file with ``now``).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from helpers import no_traceback, record, write_keyfile
from redis_server import Consumer, RedisServer, redis_env, redis_server  # noqa: F401

from prisme_keys import clock
from prisme_keys.errors import KeyFileError
from prisme_keys.store import announced
from prisme_keys.store.keyfile import KeySet

GW = "gateway.jwks.updated"
RT = "runtime.jwks.updated"
NS = "test:"
TOPICS = [GW, RT, "catchall_stream"]
TIMES = ("createdAt", "activatesAt", "rotatesAt", "expiresAt")


def s(topic: str) -> str:
    return f"streams:{NS}{topic}"


def iso(dt: datetime) -> str:
    return clock.iso(dt)


def runtime_key(url: str):
    import redis

    raw = redis.Redis.from_url(url).get("runtime:jwk")
    return None if raw is None else json.loads(raw)


def doc_of(path: Path) -> dict:
    return json.loads(path.read_text())


def keyfile_at(path: Path, jwk: dict, now: datetime, *, rotates_in: timedelta, told: bool = True) -> Path:
    """A key file with one key created 29 days before ``now``, rotating ``rotates_in`` after ``now``;
    with ``told``, announced (signing key and kids) a day after its creation."""
    rotates = now + rotates_in
    rec = record(
        jwk, created=iso(now - timedelta(days=29)), rotates=iso(rotates), expires=iso(rotates + timedelta(days=30))
    )
    write_keyfile(path, [rec])
    if told:
        doc = doc_of(path)
        doc["announced"] = {"signingKid": jwk["kid"], "kids": [jwk["kid"]], "at": iso(now - timedelta(days=28))}
        path.write_text(json.dumps(doc, indent=2))
    return path


def age(path: Path, delta: timedelta) -> None:
    """Move every time in the key file back by ``delta`` (as if ``delta`` had passed)."""
    doc = doc_of(path)
    for rec in doc["keys"]:
        for name in TIMES:
            if rec.get(name):
                rec[name] = iso(clock.parse_iso(rec[name]) - delta)
    if "announced" in doc:
        doc["announced"]["at"] = iso(clock.parse_iso(doc["announced"]["at"]) - delta)
    path.write_text(json.dumps(doc, indent=2))


@pytest.fixture
def run(cli, redis_env):
    """``run(*argv, env=...) -> (exit code, stdout, stderr)``: the command line in-process, with the
    broker and runtime cache of ``redis_env`` (overridable)."""

    def go(*argv: str, env: dict | None = None) -> tuple[int, str, str]:
        p = cli(*argv, env={**redis_env, **(env or {})})
        no_traceback(p)
        return p.returncode, p.stdout, p.stderr

    return go


# -- Must hold -------------------------------------------------------------------------------


def test_lead_activation_is_announced_by_the_first_cron_run_after_it(tmp_path, keypool, run, redis_env):
    """Lead L = 1 h: rotate --notify at t0 publishes the next key (runtime unchanged); at t0 + 1 h + 1 min
    rotate --notify with nothing due announces the activation, once."""
    old = keypool[0]
    kf = keyfile_at(tmp_path / "keys.json", old, clock.now(), rotates_in=timedelta(minutes=30))  # due with L = 1 h
    a = ("--key-file", str(kf))
    lead = {"PRISME_KEYS_PUBLICATION_LEAD": "1h"}
    consumer = Consumer(redis_env["BROKER_HOST"], NS, TOPICS)

    rc, out, err = run(*a, "rotate", "--notify", env=lead)
    assert rc == 0, err
    new = doc_of(kf)["keys"][0]
    assert new["kid"] != old["kid"] and new["activatesAt"]
    assert out.startswith(f"rotated: next key {new['kid']} published, signs on ")
    got = consumer.read()
    assert [e["payload"] for e in got[s(GW)]] == [{"created": [new["kid"]], "deleted": []}]
    assert runtime_key(redis_env["CONTEXTS_CACHE_HOST"]) == {"key": old}  # still the old key
    assert len(got[s(RT)]) == 1
    assert doc_of(kf)["announced"]["signingKid"] == old["kid"]
    assert doc_of(kf)["announced"]["kids"] == [new["kid"], old["kid"]]

    age(kf, timedelta(hours=1, minutes=1))  # now is t0 + 1 h + 1 min
    rc, out, err = run(*a, "--json", "list", env=lead)
    pending = json.loads(out)["announcement"]["pending"]
    assert pending["signingKid"] == new["kid"] and pending["signingChanged"] is True
    assert pending["created"] == [] and pending["deleted"] == []
    assert pending["since"] == doc_of(kf)["keys"][0]["activatesAt"]

    rc, out, err = run(*a, "rotate", "--notify", env=lead)
    assert rc == 0, err
    assert out.startswith("nothing due; next rotation on ")
    assert len(doc_of(kf)["keys"]) == 2  # nothing rotated
    assert err == (
        f"notified: published gateway.jwks.updated (reload); runtime key set to {new['kid']} "
        "and runtime.jwks.updated published\n"
    )
    got = consumer.read()
    assert len(got[s(GW)]) == 1
    assert got[s(GW)][0]["payload"] == {"created": [], "deleted": []}
    assert len(got[s(RT)]) == 1
    assert runtime_key(redis_env["CONTEXTS_CACHE_HOST"]) == {"key": new["jwk"]}
    assert doc_of(kf)["announced"]["signingKid"] == new["kid"]

    rc, out, err = run(*a, "rotate", "--notify", env=lead)  # the next cron run: nothing left
    assert rc == 0 and err == ""
    assert consumer.read() == {s(t): [] for t in TOPICS}


def test_broker_down_keeps_the_change_then_the_next_run_sends_it_once(tmp_path, keypool, run):
    broker = RedisServer()
    env = {"BROKER_HOST": broker.url(10), "CONTEXTS_CACHE_HOST": broker.url(0)}
    try:
        kf = keyfile_at(tmp_path / "keys.json", keypool[0], clock.now(), rotates_in=timedelta(minutes=-1))
        a = ("--key-file", str(kf))
        broker.stop()

        rc, out, err = run(*a, "rotate", "--notify", env=env)
        assert rc == 11, err
        keys = doc_of(kf)["keys"]
        new = keys[0]["kid"]
        assert len(keys) == 2 and out.startswith(f"rotated: signing key {new}")  # the change is kept
        assert err.startswith(
            f"prisme-keys: error: key file {kf} was changed (created {new}) but the notification failed: "
            f"cannot publish gateway.jwks.updated on the broker at {broker.url(10)}: "
        )
        assert err.endswith("; it stays pending: the next run with --notify retries it (or run: prisme-keys notify)\n")
        assert err.count("\n") == 1
        assert doc_of(kf)["announced"]["kids"] == [keypool[0]["kid"]]  # nothing recorded
        rc, out, err = run(*a, "list")  # piped: the keys on stdout, the announcement line on stderr
        assert [line.split("\t")[0] for line in out.splitlines()] == [k["kid"] for k in keys]
        head, _, tail = err.splitlines()[-1].partition(" ago): ")
        assert head.startswith(f"announcement pending since {keys[0]['createdAt'][:16].replace('T', ' ')} UTC (")
        assert tail == (
            f"signing key {new} (announced: {keypool[0]['kid']}), created {new}; "
            "the next rotate/prune --notify sends it, or run: prisme-keys notify"
        )

        broker = RedisServer(port=broker.port)  # the broker is back
        consumer = Consumer(env["BROKER_HOST"], NS, TOPICS)
        rc, out, err = run(*a, "rotate", "--notify", env=env)
        assert rc == 0, err
        assert out.startswith("nothing due")
        got = consumer.read()
        assert [e["payload"] for e in got[s(GW)]] == [{"created": [new], "deleted": []}]
        assert len(got[s(RT)]) == 1
        assert runtime_key(env["CONTEXTS_CACHE_HOST"]) == {"key": keys[0]["jwk"]}

        rc, out, err = run(*a, "rotate", "--notify", env=env)
        assert rc == 0 and err == ""
        assert consumer.read() == {s(t): [] for t in TOPICS}
    finally:
        broker.stop()


def _holds_open(pid: int, path: Path) -> bool:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == str(path):
                return True
        except OSError:
            pass
    return False


@pytest.mark.slow
def test_ten_concurrent_cron_runs_send_one_event(tmp_path, keypool, cli, redis_env):
    import subprocess

    now = clock.now()
    kf = keyfile_at(tmp_path / "keys.json", keypool[0], now, rotates_in=timedelta(days=1))
    doc = doc_of(kf)  # one pending announcement: a key added by a rotate without --notify
    doc["keys"].insert(0, record(keypool[1], created=iso(now - timedelta(hours=1)), previous=keypool[0]["kid"]))
    doc["keys"][0]["rotatesAt"] = iso(now + timedelta(days=30))
    doc["keys"][0]["expiresAt"] = iso(now + timedelta(days=60))
    kf.write_text(json.dumps(doc, indent=2))
    lock = Path(str(kf) + ".lock")
    consumer = Consumer(redis_env["BROKER_HOST"], NS, TOPICS)

    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)  # every run decided "pending" and waits here for the lock
    procs = []
    try:
        for _ in range(10):
            procs.append(
                cli.popen(
                    "--key-file",
                    str(kf),
                    "rotate",
                    "--notify",
                    env=redis_env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        deadline = time.monotonic() + 60
        while not all(_holds_open(p.pid, lock) for p in procs):  # handshake: each has opened the lock file
            assert time.monotonic() < deadline, "the runs did not reach the lock"
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs if p.poll() is not None]
            time.sleep(0.01)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    results = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 10, results
    notified = [err for _, err in results if err.startswith("notified:")]
    assert len(notified) == 1, results
    got = consumer.read()
    assert [e["payload"] for e in got[s(GW)]] == [{"created": [keypool[1]["kid"]], "deleted": []}]
    assert len(got[s(RT)]) == 1 and len(got[s("catchall_stream")]) == 2
    assert doc_of(kf)["announced"]["signingKid"] == keypool[1]["kid"]


# -- notify, list, doctor ----------------------------------------------------------------------


def test_never_announced_key_file_announces_its_whole_state_once(tmp_path, keypool, run, redis_env):
    kf = keyfile_at(tmp_path / "keys.json", keypool[0], clock.now(), rotates_in=timedelta(days=1), told=False)
    a = ("--key-file", str(kf))
    rc, out, err = run(*a, "list")
    assert "announce" not in out + err  # a fleet this tool never notified: nothing to say
    rc, out, err = run(*a, "--json", "list")
    assert json.loads(out)["announcement"] == {
        "last": None,
        "pending": {
            "signingKid": keypool[0]["kid"],
            "kids": [keypool[0]["kid"]],
            "created": [keypool[0]["kid"]],
            "deleted": [],
            "signingChanged": True,
            "since": None,
        },
    }
    consumer = Consumer(redis_env["BROKER_HOST"], NS, TOPICS)
    rc, out, err = run(*a, "rotate", "--notify")
    assert rc == 0, err
    got = consumer.read()
    assert [e["payload"] for e in got[s(GW)]] == [{"created": [keypool[0]["kid"]], "deleted": []}]
    assert runtime_key(redis_env["CONTEXTS_CACHE_HOST"]) == {"key": keypool[0]}
    rc, out, err = run(*a, "rotate", "--notify")
    assert rc == 0 and err == ""
    assert consumer.read() == {s(t): [] for t in TOPICS}
    assert doc_of(kf)["format"] == 1
    # today's readers keep reading the file
    rc, out, err = run(*a, "export")
    assert rc == 0 and [k["kid"] for k in json.loads(out)["keys"]] == [keypool[0]["kid"]]


def test_notify_sends_exactly_what_is_pending(tmp_path, keypool, run, redis_env):
    now = clock.now()
    kf = keyfile_at(tmp_path / "keys.json", keypool[0], now, rotates_in=timedelta(days=1))
    doc = doc_of(kf)  # the fleet was told about keypool[2], since removed, and not about keypool[1]
    doc["announced"]["kids"].append(keypool[2]["kid"])
    doc["keys"].insert(0, record(keypool[1], created=iso(now - timedelta(hours=2)), previous=keypool[0]["kid"]))
    kf.write_text(json.dumps(doc, indent=2))
    a = ("--key-file", str(kf))
    consumer = Consumer(redis_env["BROKER_HOST"], NS, TOPICS)

    rc, out, err = run(*a, "--json", "notify")
    assert rc == 0, err
    sent = json.loads(out)
    assert sent["sent"] is True and sent["signing_changed"] is True
    assert (sent["created"], sent["deleted"]) == ([keypool[1]["kid"]], [keypool[2]["kid"]])
    assert sent["pending_since"] == doc["keys"][0]["createdAt"]
    assert sent["runtime_kid"] == keypool[1]["kid"]
    got = consumer.read()
    assert [e["payload"] for e in got[s(GW)]] == [{"created": [keypool[1]["kid"]], "deleted": [keypool[2]["kid"]]}]
    told = doc_of(kf)["announced"]
    assert told["signingKid"] == keypool[1]["kid"] and told["kids"] == [keypool[1]["kid"], keypool[0]["kid"]]
    assert abs(clock.parse_iso(told["at"]) - clock.now()) < timedelta(minutes=1)

    rc, out, err = run(*a, "notify")
    assert rc == 0 and out.startswith(f"nothing to announce: signing key {keypool[1]['kid']} and 2 published keys ")
    rc, out, err = run(*a, "-q", "notify")
    assert rc == 0 and out == "" and err == ""
    assert consumer.read() == {s(t): [] for t in TOPICS}
    rc, out, err = run(*a, "notify", "--force", "--created", "x")
    assert rc == 2 and "--force" in err


def test_doctor_reports_pending_announcement_and_since_when(tmp_path, keypool, run):
    now = clock.now()
    kf = keyfile_at(tmp_path / "keys.json", keypool[0], now, rotates_in=timedelta(days=1))
    a = ("--key-file", str(kf))
    rc, out, err = run(*a, "--json", "doctor")
    rep = json.loads(out)
    assert rc == 0, out
    assert [f["message"] for f in rep["findings"] if f["code"] == "announced"] == [
        f"announced {doc_of(kf)['announced']['at']}: signing key {keypool[0]['kid']}, 1 published key"
    ]
    assert rep["announcement"]["pending"] is None

    doc = doc_of(kf)
    doc["keys"].insert(0, record(keypool[1], created=iso(now - timedelta(hours=3)), previous=keypool[0]["kid"]))
    kf.write_text(json.dumps(doc, indent=2))
    rc, out, err = run(*a, "--json", "doctor")
    assert rc == 4
    rep = json.loads(out)
    since = doc["keys"][0]["createdAt"]
    assert [(f["severity"], f["message"]) for f in rep["findings"] if f["code"] == "announcement_pending"] == [
        (
            "warning",
            f"announcement pending since {since}: signing key {keypool[1]['kid']} (announced: {keypool[0]['kid']}), "
            f"created {keypool[1]['kid']}; run prisme-keys notify (or let the next rotate --notify send it)",
        )
    ]
    assert rep["announcement"]["pending"]["since"] == since
    rc, out, err = run(*a, "list")
    assert err.splitlines()[-1].startswith(
        f"announcement pending since {since[:16].replace('T', ' ')} UTC (3 hours ago)"
    )
    assert run(*a, "list", "-q")[2] == ""  # a note: -q silences it


def test_malformed_record_is_refused_and_left_unchanged(tmp_path, keypool, run):
    kf = keyfile_at(tmp_path / "keys.json", keypool[0], clock.now(), rotates_in=timedelta(days=1))
    doc = doc_of(kf)
    doc["announced"]["kids"] = "all"
    kf.write_text(json.dumps(doc, indent=2))
    before = kf.read_bytes()
    a = ("--key-file", str(kf))
    msg = (
        f'key file {kf} is unusable: its "announced" member has kids that are not a list of strings; '
        "it was left unchanged"
    )
    rc, out, err = run(*a, "notify")
    assert (rc, err) == (4, f"prisme-keys: error: {msg}\n")
    rc, out, err = run(*a, "rotate", "--notify")
    assert rc == 4 and err.startswith("prisme-keys: error: announcing the key file's current state failed: " + msg)
    rc, out, err = run(*a, "list")  # the keys are still listed
    assert rc == 0 and keypool[0]["kid"] in out and err == f"warning: {msg} (run prisme-keys doctor)\n"
    rc, out, err = run(*a, "--json", "doctor")
    assert rc == 4 and [f["message"] for f in json.loads(out)["findings"] if f["code"] == "announcement_record"] == [
        msg
    ]
    assert kf.read_bytes() == before


def test_prune_notify_on_a_never_announced_file_names_the_pruned_keys(tmp_path, keypool, run, redis_env):
    now = clock.now()
    cur = record(
        keypool[1],
        created=iso(now - timedelta(days=40)),
        rotates=iso(now + timedelta(days=1)),
        expires=iso(now + timedelta(days=31)),
        previous=keypool[0]["kid"],
    )
    old = record(
        keypool[0],
        created=iso(now - timedelta(days=90)),
        rotates=iso(now - timedelta(days=40)),
        expires=iso(now - timedelta(days=1)),
    )
    kf = write_keyfile(tmp_path / "keys.json", [cur, old])
    consumer = Consumer(redis_env["BROKER_HOST"], NS, TOPICS)
    rc, out, err = run("--key-file", str(kf), "--json", "prune", "--notify")
    assert rc == 0, err
    assert json.loads(out)["notified"]["deleted"] == [keypool[0]["kid"]]
    got = consumer.read()
    assert [e["payload"] for e in got[s(GW)]] == [{"created": [keypool[1]["kid"]], "deleted": [keypool[0]["kid"]]}]


def test_dry_run_announces_nothing(tmp_path, keypool, run, redis_env):
    kf = keyfile_at(tmp_path / "keys.json", keypool[0], clock.now(), rotates_in=timedelta(days=1), told=False)
    consumer = Consumer(redis_env["BROKER_HOST"], NS, TOPICS)
    for cmd in ("rotate", "prune"):
        rc, out, err = run("--key-file", str(kf), cmd, "--dry-run", "--notify")
        assert rc == 0, err
    assert consumer.read() == {s(t): [] for t in TOPICS}
    assert "announced" not in doc_of(kf)


def test_bad_broker_setting_is_reported_even_with_nothing_pending(tmp_path, keypool, run):
    kf = keyfile_at(tmp_path / "keys.json", keypool[0], clock.now(), rotates_in=timedelta(days=1))
    rc, out, err = run("--key-file", str(kf), "rotate", "--notify", env={"BROKER_HOST": "http://nope"})
    assert rc == 3
    assert "bad value for BROKER_HOST: http://nope" in err
    assert "it stays pending: the next run with --notify retries it" in err


# -- the rules, in-process -------------------------------------------------------------------


def _keyset(keypool, now: datetime, told: dict | None) -> KeySet:
    recs = [
        {**record(keypool[1], created=iso(now - timedelta(hours=1))), "activatesAt": iso(now + timedelta(hours=1))},
        record(keypool[0], created=iso(now - timedelta(days=10))),
    ]
    return KeySet(recs, {"announced": told} if told else {})


def test_pending_rules(keypool):
    t0 = clock.parse_iso("2026-01-20T00:00:00.000Z")
    k0, k1 = keypool[0]["kid"], keypool[1]["kid"]
    told = {"signingKid": k0, "kids": [k1, k0], "at": iso(t0)}
    assert announced.pending(_keyset(keypool, t0, told), t0) is None  # the next key is not signing yet
    later = t0 + timedelta(hours=2)
    p = announced.pending(_keyset(keypool, t0, told), later)
    assert p is not None and p.signing_changed and p.created == () and p.deleted == ()
    assert p.since == iso(t0 + timedelta(hours=1))  # its activatesAt
    assert announced.describe(p) == f"signing key {k1} (announced: {k0})"
    # a removal leaves no date: the last announcement dates it; known_deleted adds kids the record lacks
    gone = {"signingKid": k0, "kids": [k1, k0, "gone"], "at": iso(t0)}
    p = announced.pending(_keyset(keypool, t0, gone), t0, known_deleted=["gone", "also", k0])
    assert p is not None and p.deleted == ("gone", "also") and p.since == iso(t0) and not p.signing_changed
    # never announced: everything is pending, with no date
    p = announced.pending(_keyset(keypool, t0, None), t0)
    assert p is not None and p.created == (k1, k0) and p.since is None and p.last is None
    # a key imported with an old createdAt is dated by the last announcement at the earliest
    old = {"signingKid": k0, "kids": [k0], "at": iso(t0 - timedelta(minutes=30))}
    assert announced.pending(_keyset(keypool, t0, old), t0).since == iso(t0 - timedelta(minutes=30))


@pytest.mark.parametrize(
    "member, why",
    [
        ([], "is not an object"),
        ({"signingKid": 3, "kids": [], "at": "2026-01-01T00:00:00.000Z"}, "has a signingKid that is not a string"),
        ({"signingKid": None, "kids": [1], "at": "2026-01-01T00:00:00.000Z"}, "has kids that are not a list"),
        ({"signingKid": None, "kids": [], "at": "yesterday"}, "has an at that is not an ISO-8601 time"),
        ({"signingKid": None, "kids": []}, "has an at that is not an ISO-8601 time"),
    ],
)
def test_malformed_member_shapes(keypool, member, why):
    ks = KeySet([record(keypool[0])], {"announced": member})
    with pytest.raises(KeyFileError) as err:
        announced.last_announced(ks, "k.json")
    assert err.value.message.startswith(f'key file k.json is unusable: its "announced" member {why}')
    assert err.value.exit_code == 4


def test_record_writes_the_member(keypool):
    ks = KeySet([record(keypool[0])])
    now = clock.parse_iso("2026-01-02T03:04:05.678Z")
    state = announced.expected(ks.records, now)
    done = announced.record(ks, state, now)
    assert ks.to_document()["announced"] == {
        "signingKid": keypool[0]["kid"],
        "kids": [keypool[0]["kid"]],
        "at": "2026-01-02T03:04:05.678Z",
    }
    assert announced.last_announced(ks) == done
    assert announced.pending(ks, now) is None
    assert list(ks.to_document()) == ["format", "announced", "keys"]
