"""notify, rotate --notify, prune --notify against a real redis-server and a stub runtime."""

from __future__ import annotations

import json

import pytest
from helpers import T0, no_traceback, one_error_line, record, write_keyfile
from redis_server import (  # noqa: F401
    Consumer,
    RedisServer,
    RuntimeStub,
    free_port,
    redis_env,
    redis_server,
    runtime_stub,
)

from prisme_keys import clock
from prisme_keys.publish import announce as broker

GW = "gateway.jwks.updated"
RT = "runtime.jwks.updated"
NS = "test:"
TOPICS = [GW, RT, "catchall_stream"]
DUE = "2026-02-01T00:00:00.000Z"  # past the pool key's rotatesAt (2026-01-31)
NOT_DUE = "2026-01-10T00:00:00.000Z"


def s(topic: str) -> str:
    return f"streams:{NS}{topic}"


def runtime_key(redis_server):
    import redis

    raw = redis.Redis.from_url(redis_server.url(0)).get("runtime:jwk")
    return None if raw is None else json.loads(raw)


def key_records(path):
    return json.loads(path.read_text())["keys"]


def tell(path, signing: str, kids: list[str], at: str = T0):
    """Record in the key file at ``path`` that the fleet was told ``signing`` and ``kids`` at ``at``."""
    doc = json.loads(path.read_text())
    doc["announced"] = {"signingKid": signing, "kids": kids, "at": at}
    path.write_text(json.dumps(doc, indent=2))
    return path


@pytest.fixture
def kf(tmp_path, keypool):
    """A key file whose one key was announced at T0 (nothing pending)."""
    path = write_keyfile(tmp_path / "keys.json", [record(keypool[0])])
    return tell(path, keypool[0]["kid"], [keypool[0]["kid"]])


def test_rotate_notify_publishes_once_and_updates_runtime(cli, kf, keypool, redis_server, redis_env):
    consumer = Consumer(redis_env["BROKER_HOST"], NS, TOPICS)
    p = cli("--key-file", str(kf), "--now", DUE, "--write-at-now", "rotate", "--notify", env=redis_env)
    assert p.returncode == 0, p.stderr
    no_traceback(p)
    recs = key_records(kf)
    new = recs[0]
    assert new["kid"] != keypool[0]["kid"] and new["previousKeyId"] == keypool[0]["kid"]
    assert p.stdout.startswith(f"rotated: signing key {new['kid']}")
    assert "notified: published gateway.jwks.updated" in p.stderr

    got = consumer.read()
    assert len(got[s(GW)]) == 1
    ev = got[s(GW)][0]
    assert ev["type"] == GW
    assert ev["payload"] == {"created": [new["kid"]], "deleted": []}
    assert ev["source"]["host"]["service"] == "prisme-keys"
    assert ev["source"]["host"]["replica"].startswith("prisme-keys@")
    assert ev["source"]["correlationId"]
    assert ev["createdAt"] == DUE
    assert ev["size"] == len(json.dumps(ev["payload"], separators=(",", ":")))
    # the runtime key is the new signing key, and the runtime was told
    assert runtime_key(redis_server) == {"key": new["jwk"]}
    assert [e["payload"] for e in got[s(RT)]] == [{}]
    # catch-all holds a copy of both, in order
    assert [e["type"] for e in got[s("catchall_stream")]] == [GW, RT]
    # the private key never reaches the terminal
    assert new["jwk"]["d"] not in p.stdout + p.stderr

    # a second rotate with nothing due publishes nothing
    p = cli("--key-file", str(kf), "--now", DUE, "--write-at-now", "rotate", "--notify", env=redis_env)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("nothing due")
    assert consumer.read() == {s(t): [] for t in TOPICS}


def test_rotate_notify_nothing_due_sends_nothing(cli, kf, redis_server, redis_env):
    consumer = Consumer(redis_env["BROKER_HOST"], NS, TOPICS)
    p = cli("--key-file", str(kf), "--now", NOT_DUE, "--write-at-now", "rotate", "--notify", env=redis_env)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("nothing due")
    assert "notified" not in p.stderr
    assert consumer.read() == {s(t): [] for t in TOPICS}
    assert runtime_key(redis_server) is None


def test_rotate_notify_json(cli, kf, keypool, redis_env):
    p = cli("--json", "--key-file", str(kf), "--now", DUE, "--write-at-now", "rotate", "--notify", env=redis_env)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    kid = key_records(kf)[0]["kid"]
    assert doc["rotated"] is True and doc["created"]["kid"] == kid
    assert doc["notified"]["sent"] is True
    assert doc["notified"]["created"] == [kid] and doc["notified"]["deleted"] == []
    assert doc["notified"]["runtime_kid"] == kid and doc["notified"]["pending_since"] == DUE
    assert json.loads(kf.read_text())["announced"] == {"signingKid": kid, "kids": [kid, keypool[0]["kid"]], "at": DUE}


def test_prune_notify_announces_deleted(cli, tmp_path, keypool, redis_server, redis_env):
    old = record(keypool[0])  # expires 2026-03-02
    cur = record(
        keypool[1],
        created="2026-01-31T00:00:00.000Z",
        rotates="2026-03-30T00:00:00.000Z",
        expires="2026-04-29T00:00:00.000Z",
        previous=keypool[0]["kid"],
    )
    path = tell(write_keyfile(tmp_path / "keys.json", [cur, old]), cur["kid"], [cur["kid"], old["kid"]])
    consumer = Consumer(redis_env["BROKER_HOST"], NS, TOPICS)
    p = cli(
        "--key-file",
        str(path),
        "--now",
        "2026-03-10T00:00:00.000Z",
        "--write-at-now",
        "prune",
        "--notify",
        env=redis_env,
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == f"pruned 1 key: {keypool[0]['kid']}"
    got = consumer.read()
    assert [e["payload"] for e in got[s(GW)]] == [{"created": [], "deleted": [keypool[0]["kid"]]}]
    assert runtime_key(redis_server) == {"key": keypool[1]}
    assert len(got[s(RT)]) == 1
    # nothing left to prune: nothing published
    p = cli(
        "--key-file",
        str(path),
        "--now",
        "2026-03-10T00:00:00.000Z",
        "--write-at-now",
        "prune",
        "--notify",
        env=redis_env,
    )
    assert p.returncode == 0 and p.stdout.startswith("nothing to prune")
    assert consumer.read() == {s(t): [] for t in TOPICS}


def test_rotate_runtime_url_posts_key_with_header(cli, kf, redis_server, redis_env, runtime_stub):
    consumer = Consumer(redis_env["BROKER_HOST"], NS, TOPICS)
    env = dict(redis_env, INTERNAL_API_KEY="s3cret-internal-key")
    p = cli(
        "--key-file",
        str(kf),
        "--now",
        DUE,
        "--write-at-now",
        "rotate",
        "--notify",
        "--runtime-url",
        runtime_stub.url,
        env=env,
    )
    assert p.returncode == 0, p.stderr
    new = key_records(kf)[0]
    assert len(runtime_stub.requests) == 1
    req = runtime_stub.requests[0]
    assert req["path"] == "/sys/certs"
    assert req["headers"]["x-prismeai-api-key"] == "s3cret-internal-key"
    assert req["headers"]["content-type"] == "application/json"
    assert req["body"] == {"jwk": new["jwk"]}
    got = consumer.read()
    assert [e["payload"] for e in got[s(GW)]] == [{"created": [new["kid"]], "deleted": []}]
    assert got[s(RT)] == [] and runtime_key(redis_server) is None  # the runtime does that itself
    assert "s3cret-internal-key" not in p.stdout + p.stderr
    assert "via /sys/certs" in p.stderr


def test_runtime_url_needs_internal_api_key(cli, kf, redis_env, runtime_stub):
    p = cli("--key-file", str(kf), "notify", "--runtime-url", runtime_stub.url, env=redis_env)
    assert p.returncode == 3
    assert "INTERNAL_API_KEY is not set" in p.stderr
    assert runtime_stub.requests == []


def test_runtime_refusing_is_exit_11_without_secret(cli, kf, redis_env):
    stub = RuntimeStub(status=403)
    try:
        env = dict(redis_env, INTERNAL_API_KEY="s3cret-internal-key")
        p = cli("--key-file", str(kf), "notify", "--force", "--runtime-url", stub.url, env=env)
    finally:
        stub.close()
    assert p.returncode == 11
    assert f"the runtime at {stub.url}/sys/certs answered HTTP 403" in p.stderr
    assert "s3cret-internal-key" not in p.stdout + p.stderr
    no_traceback(p)


def test_redis_stopped_keeps_change_exit_11_then_notify_delivers(cli, kf, keypool, redis_server, redis_env):
    dead = RedisServer()
    dead.stop()  # its port is now closed
    dead_env = dict(
        redis_env,
        BROKER_HOST=f"redis://:hunter2pw@127.0.0.1:{dead.port}/10",
        CONTEXTS_CACHE_HOST=f"redis://127.0.0.1:{dead.port}/0",
        INTERNAL_API_KEY="s3cret-internal-key",
    )
    before = kf.read_text()
    p = cli("--key-file", str(kf), "--now", DUE, "--write-at-now", "rotate", "--notify", env=dead_env)
    assert p.returncode == 11, p.stderr
    no_traceback(p)
    recs = key_records(kf)
    assert kf.read_text() != before and len(recs) == 2  # the change is kept
    kid = recs[0]["kid"]
    assert p.stdout.startswith(f"rotated: signing key {kid}")
    err = p.stderr.strip()
    assert err.count("\n") == 0
    assert err.startswith(
        f"prisme-keys: error: key file {kf} was changed (created {kid}) but the notification failed: "
        f"cannot publish gateway.jwks.updated on the broker at redis://:***@127.0.0.1:{dead.port}/10"
    )
    assert err.endswith("; it stays pending: the next run with --notify retries it (or run: prisme-keys notify)")
    for secret in ("hunter2pw", "s3cret-internal-key", recs[0]["jwk"]["d"]):
        assert secret not in p.stdout + p.stderr
    assert json.loads(kf.read_text())["announced"]["kids"] == [keypool[0]["kid"]]  # nothing recorded

    # --json: the error document on stderr carries exit 11
    p2 = cli(
        "--json", "--key-file", str(kf), "--now", DUE, "--write-at-now", "rotate", "--force", "--notify", env=dead_env
    )
    assert p2.returncode == 11
    assert json.loads(p2.stderr)["exit"] == 11 and json.loads(p2.stderr)["code"] == "notify_failed"
    doc = json.loads(p2.stdout)
    assert doc["rotated"] is True
    assert doc["notified"]["sent"] is False and doc["notified"]["error"]["exit"] == 11
    kid2 = key_records(kf)[0]["kid"]

    # notify on a live broker sends both pending keys at once; re-running it sends nothing
    consumer = Consumer(redis_env["BROKER_HOST"], NS, TOPICS)
    p = cli("--key-file", str(kf), "--now", DUE, "--write-at-now", "notify", env=redis_env)
    assert p.returncode == 0, p.stderr
    got = consumer.read()
    assert [e["payload"] for e in got[s(GW)]] == [{"created": [kid2, kid], "deleted": []}]
    assert runtime_key(redis_server) == {"key": key_records(kf)[0]["jwk"]}
    p = cli("--key-file", str(kf), "--now", DUE, "--write-at-now", "notify", env=redis_env)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"nothing to announce: signing key {kid2} and 3 published keys were announced on ")
    assert consumer.read() == {s(t): [] for t in TOPICS}
    # explicit kids still send exactly what is given, every time
    p = cli(
        "--key-file",
        str(kf),
        "--now",
        DUE,
        "--write-at-now",
        "notify",
        "--created",
        kid,
        "--created",
        kid2,
        env=redis_env,
    )
    assert p.returncode == 0, p.stderr
    got = consumer.read()
    assert [e["payload"] for e in got[s(GW)]] == [{"created": [kid, kid2], "deleted": []}]


def test_notify_broker_down_exit_11(cli, kf):
    port = free_port()
    p = cli("--key-file", str(kf), "notify", "--deleted", "x", env={"BROKER_HOST": f"redis://127.0.0.1:{port}/10"})
    assert p.returncode == 11
    assert f"cannot publish gateway.jwks.updated on the broker at redis://127.0.0.1:{port}/10" in p.stderr
    assert "re-run prisme-keys notify" in p.stderr


@pytest.mark.parametrize(
    "url,shown",
    [("http://[::1", "http://[::1"), ("http://127.0.0.1:99999", "http://127.0.0.1:99999")],
)
def test_unparsable_runtime_url_is_a_config_error(cli, kf, url, shown):
    """Regression: an unparsable --runtime-url (or one with a port over 65535) was an internal error (exit 1)."""
    env = {"BROKER_HOST": f"redis://127.0.0.1:{free_port()}/10", "INTERNAL_API_KEY": "s3cret-internal-key"}
    p = cli("--json", "--key-file", str(kf), "notify", "--force", "--runtime-url", url, env=env)
    assert p.returncode == 3, p.stderr
    assert json.loads(p.stderr) == {
        "code": "config_error",
        "message": f"the runtime URL must be an http(s) URL with a host and a valid port, not {shown}",
        "exit": 3,
    }


def test_notify_plain_reload_json(cli, kf, keypool, redis_server, redis_env):
    consumer = Consumer(redis_env["BROKER_HOST"], NS, TOPICS)
    p = cli("--json", "--key-file", str(kf), "--now", NOT_DUE, "--write-at-now", "notify", env=redis_env)
    assert p.returncode == 0, p.stderr
    told = {"signingKid": keypool[0]["kid"], "kids": [keypool[0]["kid"]], "at": T0}
    assert json.loads(p.stdout) == {"sent": False, "last": told}  # nothing pending
    assert consumer.read() == {s(t): [] for t in TOPICS}
    p = cli("--json", "--key-file", str(kf), "--now", NOT_DUE, "--write-at-now", "notify", "--force", env=redis_env)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["sent"] is True and doc["pending_since"] is None
    assert doc["created"] == [] and doc["deleted"] == [] and doc["runtime"] == "redis"
    assert doc["runtime_kid"] == keypool[0]["kid"]
    assert set(doc["gateway_event"]) == {s(GW), s("catchall_stream")}
    got = consumer.read()
    assert [e["payload"] for e in got[s(GW)]] == [{"created": [], "deleted": []}]
    assert runtime_key(redis_server) == {"key": keypool[0]}


def test_notify_no_runtime_needs_no_key_file(cli, tmp_path, redis_server, redis_env):
    consumer = Consumer(redis_env["BROKER_HOST"], NS, TOPICS)
    p = cli("--key-file", str(tmp_path / "none.json"), "notify", "--deleted", "k1", "--no-runtime", env=redis_env)
    assert p.returncode == 0, p.stderr
    got = consumer.read()
    assert [e["payload"] for e in got[s(GW)]] == [{"created": [], "deleted": ["k1"]}]
    assert got[s(RT)] == [] and runtime_key(redis_server) is None


def test_notify_missing_key_file_is_exit_4(cli, tmp_path, redis_env):
    p = cli("--key-file", str(tmp_path / "none.json"), "notify", env=redis_env)
    assert p.returncode == 4
    assert "does not exist" in p.stderr


def test_bad_broker_url_is_config_error(cli, kf):
    p = cli("--key-file", str(kf), "notify", env={"BROKER_HOST": "http://nope"})
    assert p.returncode == 3
    assert "BROKER_HOST" in p.stderr
    no_traceback(p)


# -- library ------------------------------------------------------------------------------


def test_envelope_shape():
    now = clock.parse_iso(T0)
    ev = broker.envelope(GW, {"created": ["a"], "deleted": []}, now, "cid")
    assert ev == {
        "type": GW,
        "payload": {"created": ["a"], "deleted": []},
        "source": {
            "host": {"replica": broker.replica_name(), "service": "prisme-keys"},
            "correlationId": "cid",
            "serviceTopic": GW,
        },
        "createdAt": T0,
        "size": len('{"created":["a"],"deleted":[]}'),
    }
    assert broker.stream_name("ns:", GW) == "streams:ns:gateway.jwks.updated"
    assert broker.stream_name("", "catchall_stream") == "streams:catchall_stream"


def test_redis_url_password_masked_in_messages():
    """Redis URLs go through the one redactor (prisme_keys.text.redact_url): the password becomes ***."""
    from prisme_keys.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        broker._check_redis_url("redis://user:pw@host:6379/abc", "BROKER_HOST")
    assert info.value.message == (
        "bad value for BROKER_HOST: redis://user:***@host:6379/abc; allowed: a Redis URL "
        "redis[s]://[user:password@]host:port/DB with a numeric database"
    )
    with pytest.raises(ConfigError) as info:
        broker._runtime_target("http://u:pw@host:99999/")
    assert info.value.message == (
        "the runtime URL must be an http(s) URL with a host and a valid port, not http://u:***@host:99999/"
    )


def test_publish_trims_approximately(redis_server, redis_env):
    import redis

    from prisme_keys.settings import Settings

    st = Settings(broker_host=redis_env["BROKER_HOST"], broker_namespace="trim:", broker_topic_maxlen=10)
    now = clock.parse_iso(T0)
    for _ in range(350):
        ids = broker.publish(st, "x.y", {}, now)
    assert set(ids) == {"streams:trim:x.y", "streams:trim:catchall_stream"}
    r = redis.Redis.from_url(redis_env["BROKER_HOST"])
    assert 10 <= r.xlen("streams:trim:x.y") < 350


@pytest.mark.parametrize("suffix", ["/prefix", "/prefix/"])
def test_runtime_url_keeps_its_path(cli, kf, redis_env, runtime_stub, suffix):
    env = dict(redis_env, INTERNAL_API_KEY="s3cret-internal-key")
    p = cli("--key-file", str(kf), "notify", "--force", "--runtime-url", runtime_stub.url + suffix, env=env)
    assert p.returncode == 0, p.stderr
    assert [r["path"] for r in runtime_stub.requests] == ["/prefix/sys/certs"]


# -- regression tests (defects found by a newcomer's break-test)


def test_json_version_and_bad_broker_url(cli):
    p = cli("--json", "--version")
    from prisme_keys import __version__

    assert (p.returncode, json.loads(p.stdout)) == (0, {"version": __version__})
    p = cli("notify", "--no-runtime", env={"BROKER_HOST": "redis://127.0.0.1:1/abc"})
    one_error_line(p, 3)
    assert "bad value for BROKER_HOST: redis://127.0.0.1:1/abc" in p.stderr


@pytest.mark.parametrize(
    "args,line",
    [
        (["--created", ""], "--created '' is not a non-empty string"),
        (["--deleted", "a\tb"], "--deleted 'a\\tb' contains control characters"),
        (
            ["--created", "k" * 100_000],
            "--created '" + "k" * 200 + "'... (100000 characters) has 100000 characters (at most 256)",
        ),
    ],
)
def test_notify_refuses_bad_kids(cli, kf, args, line):
    # was: notify --created '' announced an empty kid
    p = cli("--key-file", str(kf), "notify", *args, env={"BROKER_HOST": "redis://127.0.0.1:1/10"})
    assert (p.returncode, p.stderr, p.stdout) == (
        2,
        f"prisme-keys: error: {line} (see prisme-keys notify --help)\n",
        "",
    )


def test_announce_refuses_bad_kids(tmp_path):
    from prisme_keys import settings as settings_mod
    from prisme_keys.errors import UsageError

    s = settings_mod.load({"key_file": str(tmp_path / "k.json")}, {})
    with pytest.raises(UsageError) as info:
        broker.announce(s, clock.now(), created=[""], runtime=False)
    assert info.value.message == "created '' is not a non-empty string"
