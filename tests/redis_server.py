"""A real ``redis-server`` on a free loopback port for the broker tests, plus a stub runtime.

Import the fixtures into a test module: ``from redis_server import redis_url, runtime_stub``.
When ``redis-server`` is not installed the tests are skipped with the reason, except with
``CI=true`` where they fail (``.ci/run`` installs the Debian package).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """One ``redis-server`` subprocess (no persistence) on 127.0.0.1."""

    def __init__(self, port: int | None = None) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            msg = "redis-server is not installed (apt-get install redis-server; .ci/run does it)"
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(msg)
            pytest.skip(msg)
        self.port = port or free_port()
        self.proc = subprocess.Popen(
            [
                exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def url(self, db: int) -> str:
        """``redis://127.0.0.1:<port>/<db>``."""
        return f"redis://127.0.0.1:{self.port}/{db}"

    def stop(self) -> None:
        """Terminate the server (the process this object started) and wait for it."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture(scope="session")
def redis_server():
    """A :class:`RedisServer` for the whole session."""
    srv = RedisServer()
    yield srv
    srv.stop()


@pytest.fixture
def redis_env(redis_server):
    """Environment for the CLI: broker on db 10, runtime cache on db 0, a fresh namespace per test,
    and the flushed databases."""
    import redis

    for db in (0, 10):
        redis.Redis.from_url(redis_server.url(db)).flushdb()
    return {
        "BROKER_HOST": redis_server.url(10),
        "CONTEXTS_CACHE_HOST": redis_server.url(0),
        "BROKER_NAMESPACE": "test:",
        "BROKER_TOPIC_MAXLEN": "100",
    }


class Consumer:
    """Reads the broker streams the way a gateway instance does: ``XREAD`` from the end at start."""

    def __init__(self, url: str, namespace: str, topics: list[str]) -> None:
        import redis

        self.r = redis.Redis.from_url(url, decode_responses=True)
        self.streams = {f"streams:{namespace}{t}": self._last_id(f"streams:{namespace}{t}") for t in topics}

    def _last_id(self, stream: str) -> str:
        entries = self.r.xrevrange(stream, count=1)
        return entries[0][0] if entries else "0-0"

    def read(self, block_ms: int = 200) -> dict[str, list[dict]]:
        """New events per stream since the last read (JSON of the ``value`` field, plus ``id``)."""
        out: dict[str, list[dict]] = {s: [] for s in self.streams}
        reply = self.r.xread(self.streams, block=block_ms) or []
        for stream, entries in reply:
            for eid, fields in entries:
                out[stream].append({"id": eid, **json.loads(fields["value"])})
                self.streams[stream] = eid
        return out


class RuntimeStub:
    """A stub runtime: records ``POST /sys/certs`` bodies and headers; answers ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.requests: list[dict] = []
        self.status = status
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                stub.requests.append(
                    {
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": json.loads(body or b"null"),
                    }
                )
                data = json.dumps({"ok": stub.status < 400}).encode()
                self.send_response(stub.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def runtime_stub():
    """A :class:`RuntimeStub` answering 200."""
    stub = RuntimeStub()
    yield stub
    stub.close()
