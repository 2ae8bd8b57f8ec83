"""verify --batch with forked children (issue 13): the same bytes, in the same order, as one thread.

The children are real forks of the test process (Linux); what they answered is seen through
``Forked.receive``. Their end is checked with ``os.kill(pid, 0)``: a reaped child no longer exists.
"""

from __future__ import annotations

import io
import json
import os
import signal
import sys
import threading

import pytest
from helpers import Pieces, break_signature_checks, mixed_batch
from jwks_server import claims, jwks, rs_token

from prisme_keys import clock
from prisme_keys.tokens import batch, forked
from prisme_keys.tokens.keyring import StaticKeySource
from prisme_keys.tokens.verify import VerifyOptions

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="children are forked on Linux only")

OPTS = VerifyOptions(issuer="https://issuer.test", audience="https://api.test")


def src(doc: dict) -> StaticKeySource:
    return StaticKeySource(doc, "test set")


def _workers_alive() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("prisme-keys-worker")]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


class Spy:
    """Records the children forked, the requests sent and the answers read (installed with monkeypatch).
    ``kill_at``: the child is killed (and reaped) before request number ``kill_at`` (from 0) is sent."""

    def __init__(self, monkeypatch, kill_at: int | None = None) -> None:
        self.pids: list[int] = []
        self.sent = 0
        self.answers: list[int] = []  # per answer read: how many lines it covered (-1: none came)
        real_init, real_send, real_receive = forked.Forked.__init__, forked.Forked.send, forked.Forked.receive
        spy = self

        def init(self, answer):
            real_init(self, answer)
            spy.pids.append(self.pid)

        def send(self, request):
            if spy.sent == kill_at and self.pid is not None:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            spy.sent += 1
            return real_send(self, request)

        def receive(self, timeout=forked.ANSWER_TIMEOUT):
            got = real_receive(self, timeout)
            spy.answers.append(-1 if got is None else len(got))
            return got

        monkeypatch.setattr(forked.Forked, "__init__", init)
        monkeypatch.setattr(forked.Forked, "send", send)
        monkeypatch.setattr(forked.Forked, "receive", receive)


def _run(stream, source, workers: int, *, now=None, processes: bool = True) -> tuple[int, str, list, set]:
    """verify_stream over ``stream``: (exit code, output, progress calls, worker threads seen)."""
    out, calls, seen = io.StringIO(), [], set()

    def progress(done, total):
        calls.append((done, total))
        seen.update(_workers_alive())

    rc = batch.verify_stream(
        stream, source, OPTS, out.write, progress=progress, now=now, workers=workers, processes=processes
    )
    assert _workers_alive() == []
    return rc, out.getvalue(), calls, seen


def test_forked_children_give_the_same_bytes_in_the_same_order_as_one_thread(keypool, monkeypatch):
    lines = mixed_batch(keypool, 400)
    doc = jwks(keypool[0], keypool[1])
    data = "\n".join(lines).encode()
    at = clock.now()
    want = _run(io.BytesIO(data), src(doc), 1, now=at)
    assert want[0] == 7
    for workers in (2, 3):
        for sizes in ([], [1000, 40_000, 25_000, 30_000, 700, 64 * 1024]):
            spy = Spy(monkeypatch)
            got = _run(Pieces(data, sizes), src(doc), workers, now=at)
            assert got[:3] == want[:3]
            assert got[3] == set()  # no thread: children did the work
            assert spy.pids and len(spy.pids) % (workers - 1) == 0
            assert sum(n for n in spy.answers if n > 0) > len(lines) // 3  # the children answered
            assert all(_gone(pid) for pid in spy.pids)  # every child ended and was reaped


def test_a_header_learnt_after_the_fork_forks_again_once_the_table_settles(keypool, monkeypatch):
    """Children hold the table of their fork: a header met later is declined by them (the command
    verifies it), and once the table has stayed the same for a piece the children are forked again."""
    k0, k1 = keypool[0], keypool[1]
    lines = [rs_token(k0, claims(sub=f"a{i}")) for i in range(200)]
    lines += [rs_token(k1, claims(sub=f"b{i}")) for i in range(200)]
    data = ("\n".join(lines) + "\n").encode()
    size = len(lines[0]) + 1
    sizes = [size] + [40 * size] * 10  # line 1 alone, then pieces of 40 lines
    doc = jwks(k0, k1)
    want = _run(Pieces(data, sizes), src(doc), 1)
    spy = Spy(monkeypatch)
    got = _run(Pieces(data, sizes), src(doc), 2)
    assert got[:3] == want[:3]
    assert len(spy.pids) == 2  # once with k0's header, once more with k1's too
    assert all(_gone(pid) for pid in spy.pids)


def test_a_child_that_dies_changes_nothing_but_the_threads_take_over(keypool, monkeypatch):
    k = keypool[0]
    lines = [rs_token(k, claims(sub=f"u{i}")) for i in range(300)]
    data = ("\n".join(lines) + "\n").encode()
    size = len(lines[0]) + 1
    sizes = [size] + [40 * size] * 10
    want = _run(Pieces(data, sizes), src(jwks(k)), 1)
    spy = Spy(monkeypatch, kill_at=2)  # the child is killed before its third request
    got = _run(Pieces(data, sizes), src(jwks(k)), 2)
    assert got[:3] == want[:3]
    assert spy.sent == 3 and spy.answers == [20, 20] and len(spy.pids) == 1  # no request nor child after that
    assert "prisme-keys-worker_0" in got[3]  # threads for the rest of the batch
    assert _gone(spy.pids[0])


def test_an_error_in_a_child_is_raised_at_its_line(keypool, monkeypatch):
    """A bug (not a verdict) in a child's signature check: the child stops there, the command does
    the rest of the slice itself and meets the bug at its line; every line before it is written."""
    k = keypool[0]
    lines = [rs_token(k, claims(sub=f"u{i}")) for i in range(81)]
    break_signature_checks(monkeypatch, lines[70])
    spy = Spy(monkeypatch)
    out = io.StringIO()
    stream = Pieces(("\n".join(lines) + "\n").encode(), [len(lines[0]) + 1])
    with pytest.raises(RuntimeError, match="a bug in a signature check"):
        batch.verify_stream(stream, src(jwks(k)), OPTS, out.write, workers=2, processes=True)
    assert [json.loads(x)["line"] for x in out.getvalue().splitlines()] == list(range(1, 71))
    assert spy.answers == [29]  # lines 42-81 went to the child: it answered 42-70, then stopped on line 71
    assert all(_gone(pid) for pid in spy.pids)


def test_with_another_thread_running_threads_are_used_not_forks(keypool, monkeypatch):
    """A fork copies the locks other threads hold: while another thread runs, no child is forked."""
    k = keypool[0]
    lines = [rs_token(k, claims(sub=f"u{i}")) for i in range(120)]
    data = ("\n".join(lines) + "\n").encode()
    spy = Spy(monkeypatch)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, name="a caller's thread")
    other.start()
    try:
        got = _run(Pieces(data, [len(lines[0]) + 1]), src(jwks(k)), 2)
    finally:
        stop.set()
        other.join()
    assert got[0] == 0 and got[1].count('"valid": true') == 120
    assert spy.pids == [] and "prisme-keys-worker_0" in got[3]


def test_processes_false_never_forks(keypool, monkeypatch):
    k = keypool[0]
    lines = [rs_token(k, claims(sub=f"u{i}")) for i in range(120)]
    spy = Spy(monkeypatch)
    got = _run(Pieces(("\n".join(lines) + "\n").encode(), [len(lines[0]) + 1]), src(jwks(k)), 2, processes=False)
    assert got[0] == 0 and spy.pids == [] and "prisme-keys-worker_0" in got[3]


def test_a_failed_fork_falls_back_to_threads(keypool, monkeypatch):
    k = keypool[0]
    lines = [rs_token(k, claims(sub=f"u{i}")) for i in range(120)]

    def no_fork():
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    fds = len(os.listdir("/proc/self/fd"))
    got = _run(Pieces(("\n".join(lines) + "\n").encode(), [len(lines[0]) + 1]), src(jwks(k)), 2)
    assert got[0] == 0 and got[1].count('"valid": true') == 120 and "prisme-keys-worker_0" in got[3]
    assert len(os.listdir("/proc/self/fd")) == fds  # the pipes of the failed fork are closed


# -- forked.Forked itself: a child that answers, one that dies, one that hangs


def test_a_forked_child_answers_with_the_state_of_its_fork():
    state = {"factor": 3}
    child = forked.Forked(lambda request: [x * state["factor"] for x in request])
    state["factor"] = 5  # changed here after the fork: the child keeps its copy
    try:
        assert child.send([1, 2]) and child.receive() == [3, 6]
        assert child.send([b"x"]) and child.receive() == [b"xxx"]
    finally:
        pid = child.pid
        child.close()
    assert _gone(pid) and child.pid is None
    assert not child.send([1]) and child.receive() is None  # closed: nothing is sent or read


def test_a_child_that_dies_on_a_request_is_seen_gone():
    def answer(request):
        raise RuntimeError("a bug")  # ends the child: the caller sees it gone, no traceback printed

    child = forked.Forked(answer)
    pid = child.pid
    assert child.send("x")
    assert child.receive() is None and child.pid is None and _gone(pid)


def test_a_child_that_does_not_answer_in_time_is_killed():
    child = forked.Forked(lambda request: threading.Event().wait())  # never answers
    pid = child.pid
    assert child.send("x")
    assert child.receive(timeout=0.2) is None and child.pid is None and _gone(pid)


def test_a_child_ignores_ctrl_c_and_takes_the_default_action_of_signals_the_command_handles():
    """Ctrl-C is the command's to handle (it ends its children); a Python handler of the command's
    (serve's SIGTERM) never runs in a child: there, SIGTERM ends the process."""
    caught: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda sig, frame: caught.append(sig))
    try:
        child = forked.Forked(lambda request: request + 1)
        pid = child.pid
        os.kill(pid, signal.SIGINT)
        assert child.send(1) and child.receive() == 2  # still there
        os.kill(pid, signal.SIGTERM)
        assert child.send(2) is False or child.receive() is None
        assert _gone(pid) and caught == []
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_no_descriptor_is_left_open_when_the_second_pipe_cannot_be_made(monkeypatch):
    real_pipe, made = os.pipe, []

    def pipe():
        if made:
            raise OSError(24, "Too many open files")
        made.append(real_pipe())
        return made[-1]

    monkeypatch.setattr(os, "pipe", pipe)
    fds = len(os.listdir("/proc/self/fd"))
    with pytest.raises(OSError, match="Too many open files"):
        forked.Forked(lambda request: request)
    assert len(os.listdir("/proc/self/fd")) == fds
