"""Proving a revocation: `check --absent --wait` against `serve` and handmade servers; `revoke --notify`
over a real redis-server; opaque credentials of the gateway in decode/verify."""

from __future__ import annotations

import itertools
import json
import subprocess
import time
import xml.etree.ElementTree as ET

import pytest
from helpers import empty_config, no_traceback, write_keyfile
from jwks_server import JwksServer, Route, jwks
from redis_server import Consumer, RedisServer, redis_env, redis_server  # noqa: F401
from revoke_helpers import LEAD, pk, two_keys  # noqa: F401

from prisme_keys import clock
from prisme_keys.publish import watch

GW, RT = "gateway.jwks.updated", "runtime.jwks.updated"
TOPICS = [GW, RT, "catchall_stream"]


def s(topic: str) -> str:
    return f"streams:test:{topic}"


def start_serve(cli, kf, *extra):
    proc = cli.popen(
        "--key-file",
        str(kf),
        "--config",
        str(empty_config(kf.parent)),
        "serve",
        "--port",
        "0",
        *extra,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    assert line.startswith("serving http://127.0.0.1:"), line
    return proc, line.split()[1]


@pytest.fixture
def served(cli, pk, keypool):
    """`serve` on a key file holding two_keys (no caching), and its URL."""
    write_keyfile(pk.kf, two_keys(keypool, clock.now()))
    proc, url = start_serve(cli, pk.kf, "--cache-control", "no-cache")
    yield url
    proc.kill()
    proc.wait()


# -- check --absent ---------------------------------------------------------------------------


def test_absent_against_serve_passes_after_the_revocation(pk, served, keypool):
    signing = keypool[1]["kid"]
    rc, out, err = pk("check", served, "--absent", signing)
    assert rc == 10
    assert f"absent.kids: still served: {signing}" in err
    assert pk("revoke", "--", signing)[0] == 0
    rc, out, err = pk("--json", "check", served, "--absent", signing, "--wait", "10s")
    assert rc == 0, err
    rep = json.loads(out)
    checks = {c["name"]: c for c in rep["checks"]}
    assert rep["ok"] and rep["attempts"] == 1 and rep["stale_until"] is None
    assert checks["absent.kids"] == {
        "name": "absent.kids",
        "status": "pass",
        "detail": f"not served: {signing} (by kid or RFC 7638 thumbprint)",
    }
    assert checks["against.revoked_absent"]["detail"] == "no revoked key is published (1 revocation)"
    assert checks["against.signing_published"]["status"] == "pass"


def test_wait_sees_the_revocation_arrive(cli, pk, served, keypool):
    signing = keypool[1]["kid"]
    cfg = empty_config(pk.kf.parent)
    proc = cli.popen(
        *("--key-file", str(pk.kf), "--config", str(cfg), "--json", "check", served),
        *("--absent", signing, "--wait", "60s", "--interval", "0.2"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = proc.stderr.readline()  # handshake: the first fetch still saw the key
        assert first.startswith(f"waiting: absent.kids: still served: {signing}; next fetch in 0.2 s"), first
        assert pk("revoke", "--", signing)[0] == 0
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    rep = json.loads(out)
    assert rep["ok"] and rep["attempts"] >= 2 and 0 < rep["waited_seconds"] < 60
    assert all(line.startswith("waiting: ") for line in err.splitlines())  # --json: progress only, on stderr


def test_server_that_keeps_the_old_key_fails_after_the_wait(pk, keypool, tmp_path):
    write_keyfile(pk.kf, two_keys(keypool, clock.now()))
    signing = keypool[1]["kid"]
    assert pk("revoke", "--reason", "leak", "--", signing)[0] == 0
    junit = tmp_path / "report.xml"
    with JwksServer() as srv:
        srv.serve_json("/jwks", jwks(keypool[1], keypool[0]), headers={"Cache-Control": "max-age=0"})
        t0 = time.monotonic()
        rc, out, err = pk(
            *("--json", "check", srv.url(), "--absent", signing),
            *("--wait", "3s", "--interval", "0.5", "--junit", str(junit)),
        )
        elapsed = time.monotonic() - t0
        fetches = len(srv.requests)
    assert rc == 10
    assert 3 <= elapsed < 8
    rep = json.loads(out)
    assert not rep["ok"] and rep["attempts"] == fetches and 4 <= fetches <= 8
    assert rep["waited_seconds"] >= 3
    failed = {c["name"]: c["detail"] for c in rep["checks"] if c["status"] == "fail"}
    assert failed["absent.kids"] == f"still served: {signing}"
    assert failed["against.revoked_absent"].startswith(f"revoked but still published: {signing} was revoked on ")
    assert failed["against.signing_published"] == f"signing key {keypool[5]['kid']} is not published"
    doc = json.loads(err.strip().splitlines()[-1])
    assert doc["exit"] == 10 and doc["code"] == "check_failed"
    assert doc["message"].startswith(f"{srv.url()} after {fetches} attempts in ")
    assert f"absent.kids: still served: {signing}" in doc["message"]
    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    assert cases["absent.kids"].find("failure").get("message") == f"still served: {signing}"


def test_absent_finds_the_key_under_another_kid(pk, keypool):
    write_keyfile(pk.kf, two_keys(keypool, clock.now()))
    old = keypool[0]
    assert pk("revoke", "--", old["kid"])[0] == 0
    with JwksServer() as srv:
        srv.serve_json("/jwks", jwks(keypool[1], dict(old, kid="renamed")), headers={"Cache-Control": "max-age=60"})
        rc, out, err = pk("--json", "check", srv.url(), "--absent", old["kid"])
        rc2, out2, _ = pk("--json", "check", srv.url(), "--absent", "never-published", "--no-against")
    failed = {c["name"]: c["detail"] for c in json.loads(out)["checks"] if c["status"] == "fail"}
    assert rc == 10
    assert failed["absent.kids"] == f"still served: {old['kid']} (as kid renamed, the same RFC 7638 thumbprint)"
    assert failed["against.revoked_absent"].startswith(
        f"revoked but still published: renamed (the key revoked as {old['kid']})"
    )
    assert rc2 == 0 and json.loads(out2)["ok"]


def test_polling_honours_max_age_minus_age(pk, keypool):
    times: list[float] = []
    body = json.dumps(jwks(keypool[0])).encode()

    def route(handler):
        times.append(time.monotonic())
        return Route(200, body, {"Content-Type": "application/jwk-set+json", "Cache-Control": "max-age=2", "Age": "1"})

    with JwksServer() as srv:
        srv.routes["/jwks"] = route
        rc, out, err = pk(
            "check", srv.url(), "--no-against", "--absent", keypool[0]["kid"], "--wait", "2s", "--interval", "0.1"
        )
    assert rc == 10
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert 2 <= len(times) <= 4 and all(g >= 0.9 for g in gaps), gaps  # never sooner than max-age - Age
    assert "next fetch in 1.0 s" in err
    summary = [line for line in err.splitlines() if line.startswith("still failing after ")]
    assert len(summary) == 1 and "caches that fetched the failing set may serve it until 20" in summary[0]


def test_fresh_for():
    assert watch.fresh_for({}) is None
    assert watch.fresh_for({"cache-control": "public"}) is None
    assert watch.fresh_for({"cache-control": "public, max-age=600"}) == 600
    assert watch.fresh_for({"cache-control": "max-age=600, s-maxage=60", "age": "20"}) == 40
    assert watch.fresh_for({"cache-control": "max-age=10", "age": "50"}) == 0
    assert watch.fresh_for({"cache-control": "max-age=10", "age": "junk"}) == 10
    assert watch.fresh_for({"cache-control": "no-cache, max-age=10"}) == 0
    assert watch.fresh_for({"cache-control": "max-age=soon"}) == 0  # invalid freshness: stale (RFC 9111 4.2.1)
    assert watch.fresh_for({"cache-control": "private, max-age=600"}) == 0  # a shared cache never stores it
    assert watch.fresh_for({"expires": "0"}) == 0


def test_wait_options_are_checked(pk, keypool):
    write_keyfile(pk.kf, two_keys(keypool, clock.now()))
    assert pk("check", "http://127.0.0.1:9/x", "--interval", "1")[2] == (
        "prisme-keys: error: --interval needs --wait DURATION\n"
    )
    rc, _, err = pk("check", "http://127.0.0.1:9/x", "--wait", "soon")
    assert rc == 2 and err.startswith("prisme-keys: error: --wait: not a duration: 'soon'")
    rc, _, err = pk("check", "http://127.0.0.1:9/x", "--wait", "1s", "--interval", "0")
    assert rc == 2 and "--interval must be a number of seconds above 0" in err
    # a server that never answers: the fetch error of the last attempt (exit 9)
    rc, _, err = pk("check", "http://127.0.0.1:9/x", "--wait", "1s", "--interval", "0.3", "--timeout", "0.5")
    assert rc == 9 and err.count("waiting: ") >= 2


# -- revoke --notify ----------------------------------------------------------------------------


def test_revoke_notify_one_event_and_runtime_key(pk, keypool, redis_server, redis_env):
    import redis

    write_keyfile(pk.kf, two_keys(keypool, clock.now()))
    assert pk("notify", env=redis_env)[0] == 0  # the fleet knows the set: the key file records it
    consumer = Consumer(redis_env["BROKER_HOST"], "test:", TOPICS)
    rc, out, err = pk("revoke", "--notify", "--", keypool[1]["kid"], env={**redis_env, **LEAD})
    assert rc == 0, err
    new = keypool[5]
    assert f"notified: published gateway.jwks.updated (created {new['kid']}, deleted {keypool[1]['kid']})" in err
    got = consumer.read()
    assert [e["payload"] for e in got[s(GW)]] == [{"created": [new["kid"]], "deleted": [keypool[1]["kid"]]}]
    assert len(got[s(RT)]) == 1
    runtime = json.loads(redis.Redis.from_url(redis_server.url(0)).get("runtime:jwk"))
    assert runtime == {"key": new}
    # a retired key: deleted only; the runtime keeps the signing key
    rc, out, err = pk("revoke", "--notify", "--", keypool[0]["kid"], env=redis_env)
    assert rc == 0, err
    assert [e["payload"] for e in consumer.read()[s(GW)]] == [{"created": [], "deleted": [keypool[0]["kid"]]}]
    # nothing changed (already revoked): nothing sent
    assert pk("revoke", "--notify", "--", keypool[0]["kid"], env=redis_env)[0] == 0
    assert consumer.read() == {s(t): [] for t in TOPICS}


def test_revoke_notify_broker_down_keeps_the_revocation_and_the_next_run_sends_it(pk, keypool, redis_server, redis_env):
    dead = RedisServer()
    dead.stop()
    write_keyfile(pk.kf, two_keys(keypool, clock.now()))
    assert pk("notify", env=redis_env)[0] == 0  # the fleet knows the set
    new, signing = keypool[5]["kid"], keypool[1]["kid"]
    env = {
        "BROKER_HOST": f"redis://127.0.0.1:{dead.port}/10",
        "CONTEXTS_CACHE_HOST": f"redis://127.0.0.1:{dead.port}/0",
    }
    rc, out, err = pk("revoke", "--notify", "--", signing, env=env)
    assert rc == 11
    assert [r["kid"] for r in json.loads(pk.kf.read_text())["keys"]] == [new, keypool[0]["kid"]]
    assert err.splitlines()[-1] == (
        f"prisme-keys: error: key file {pk.kf} was changed (created {new}, deleted {signing}) but the notification "
        f"failed: cannot publish gateway.jwks.updated on the broker at redis://127.0.0.1:{dead.port}/10: Error 111 "
        f"connecting to 127.0.0.1:{dead.port}. Connection refused; it stays pending: the next run with --notify "
        "retries it (or run: prisme-keys notify)"
    )
    # the broker is back: re-running the revocation changes nothing in the file but sends what is pending, once
    consumer = Consumer(redis_env["BROKER_HOST"], "test:", TOPICS)
    for _ in range(2):
        rc, out, err = pk("revoke", "--notify", "--", signing, env=redis_env)
        assert rc == 0 and out.startswith(f"{signing} was already revoked on "), err
    assert [e["payload"] for e in consumer.read()[s(GW)]] == [{"created": [new], "deleted": [signing]}]


# -- opaque credentials ---------------------------------------------------------------------------

UUID = "0b6f1c2e-3a4d-4e5f-8a9b-0c1d2e3f4a5b"


@pytest.mark.parametrize(
    ("credential", "what"),
    [
        (f"at:{UUID}", "an opaque access token of the gateway (at: followed by a UUID)"),
        (f"Bearer at:{UUID.upper()}", "an opaque access token of the gateway (at: followed by a UUID)"),
        (f"iak_acme-corp_{UUID}", "an organization API key of the gateway (iak_<org>_<UUID>)"),
        (UUID, "a UUID, as a workspace API key of the gateway (x-prismeai-api-key) is"),
    ],
)
def test_opaque_credentials_are_named_not_echoed(pk, credential, what):
    expected = (
        f"not a JWT: this is {what}; it is not signed, so only the gateway can check it "
        "(decode and verify read signed tokens only)"
    )
    for command in ("decode", "verify"):  # verify says it before looking for a key file (there is none)
        rc, out, err = pk(command, credential)
        assert (rc, out, err) == (5, "", f"prisme-keys: error: {expected}\n")
        rc, out, err = pk("--json", command, credential)
        assert rc == 5 and json.loads(err) == {"code": "opaque_credential", "message": expected, "exit": 5}
        assert UUID.lower() not in err.lower()


def test_opaque_credential_in_a_batch_and_lookalikes(pk, keypool, cli, tmp_path):
    write_keyfile(pk.kf, two_keys(keypool, clock.now()))
    p = cli("--key-file", str(pk.kf), "verify", "--batch", input=f"at:{UUID}\n")
    no_traceback(p)
    line = json.loads(p.stdout)
    assert p.returncode == 5 and line["exit"] == 5 and line["error"].startswith("not a JWT: this is an opaque access")
    for lookalike in (f"at:{UUID}x", "at:not-a-uuid", f"xat:{UUID}"):
        rc, _, err = pk("decode", lookalike)
        assert rc == 5 and "token has 1 segment" in err
