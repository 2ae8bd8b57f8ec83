"""Standard streams closed, full or abandoned by their reader (issue 11, section 2; README "Standard streams").

These are process-level outcomes, so every test runs the installed console script under a real
bash: ``>&-`` closes a descriptor, ``/dev/full`` fills, ``| head -1`` walks away.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shlex
import subprocess
import sys
from typing import Any

import pytest
from helpers import script

CLOSED_STDOUT = "prisme-keys: error: cannot write to standard output: it is closed\n"
FULL_STDOUT = "prisme-keys: error: cannot write to standard output: No space left on device (ENOSPC)\n"
CLOSED_STDIN = "prisme-keys: error: cannot read standard input: it is closed\n"


def sh(cli, keyfile, line: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``line`` in bash (pipefail), in the home folder, with ``P`` standing for the console script
    and the key file."""
    env = dict(cli.env, P=f"{shlex.quote(script())} --key-file {shlex.quote(str(keyfile))}")
    return subprocess.run(
        ["bash", "-c", "set -o pipefail; " + line],
        env=env,
        cwd=cli.home,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def fresh(cli, tmp_path):
    """A key file made by ``init`` at the real time (so nothing is due)."""
    path = tmp_path / "fresh.json"
    assert cli("--key-file", str(path), "init").returncode == 0
    return path


def test_closed_stdout_is_exit_4_with_one_line(cli, keyfile):
    p = sh(cli, keyfile, "$P list >&-")
    assert (p.returncode, p.stderr) == (4, CLOSED_STDOUT)


def test_closed_stdout_json_error_document(cli, keyfile):
    p = sh(cli, keyfile, "$P --json list >&-")
    assert p.returncode == 4
    assert json.loads(p.stderr) == {
        "code": "stdout_failed",
        "message": "cannot write to standard output: it is closed",
        "exit": 4,
    }


def test_closed_stdout_is_fine_for_a_command_that_prints_nothing(cli, fresh):
    before = fresh.read_bytes()
    p = sh(cli, fresh, "$P -q rotate >&-")
    assert (p.returncode, p.stderr) == (0, "")
    assert fresh.read_bytes() == before


@pytest.mark.parametrize(
    "cmd",
    ["$P decode - <&-", "$P verify --batch <&-", "$P verify - <&-", "$P import - <&-", "$P mint --claims - <&-"],
)
def test_closed_stdin_is_a_usage_error(cli, keyfile, cmd):
    before = keyfile.read_bytes()
    p = sh(cli, keyfile, cmd)
    assert (p.returncode, p.stderr, p.stdout) == (2, CLOSED_STDIN, "")
    assert keyfile.read_bytes() == before


@pytest.mark.parametrize("cmd", ["$P export > /dev/full", "$P --help > /dev/full", "$P mint > /dev/full"])
def test_full_stdout_is_exit_4(cli, keyfile, cmd):
    p = sh(cli, keyfile, cmd + " 2>err; rc=$?; grep -v '^warning:' err >&2; exit $rc")
    assert (p.returncode, p.stderr) == (4, FULL_STDOUT)


def test_closed_stderr_keeps_the_exit_code(cli, tmp_path):
    p = sh(cli, tmp_path / "nope.json", "$P list 2>&-")
    assert (p.returncode, p.stdout) == (4, "")


def test_full_stderr_keeps_the_exit_code(cli, tmp_path):
    p = sh(cli, tmp_path / "nope.json", "$P list 2>/dev/full")
    assert (p.returncode, p.stdout) == (4, "")


def test_closed_stderr_on_success_still_delivers_the_result(cli, keyfile):
    p = sh(cli, keyfile, "$P mint 2>&-")  # mint warns (no iss/aud) on the closed stderr
    assert p.returncode == 0
    assert p.stdout.count(".") == 2 and p.stdout.endswith("\n")


def test_broken_pipe_stops_mint_at_once_and_quietly(cli, keyfile):
    # a million tokens would take many minutes: finishing within the timeout proves minting stopped
    p = sh(cli, keyfile, "$P mint --count 1000000 2>err | head -1; rc=$?; grep -v '^warning:' err >&2; exit $rc")
    assert (p.returncode, p.stderr) == (141, "")
    assert p.stdout.count(".") == 2 and p.stdout.count("\n") == 1


def test_broken_pipe_stops_verify_batch_at_once_and_quietly(cli, keyfile):
    token = cli("--key-file", str(keyfile), "-q", "mint").stdout.strip()
    # an endless supply of tokens: only stopping at the broken pipe ends the pipeline
    p = sh(cli, keyfile, f"yes {token} | $P verify --batch | head -1")
    assert (p.returncode, p.stderr) == (141, "")
    assert json.loads(p.stdout)["valid"] is True


def test_verify_batch_answers_each_token_before_it_waits_for_the_next(cli, keyfile):
    """Result lines are held and written together, but always before a read of stdin that may wait: a
    producer that sends one token and waits for its verdict (a pipe both ways) gets it."""
    import select

    token = cli("--key-file", str(keyfile), "-q", "mint").stdout.strip()
    p = cli.popen(
        "--key-file", str(keyfile), "verify", "--batch", stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )  # fmt: skip
    try:
        for n in (1, 2, 3):
            p.stdin.write(f"{token}\n".encode() if n != 2 else b"not-a-token\n")
            p.stdin.flush()
            assert select.select([p.stdout], [], [], 30)[0], f"no verdict for line {n} while stdin waits"
            doc = json.loads(p.stdout.readline())
            assert (doc["line"], doc["valid"], doc["exit"]) == (n, n != 2, 0 if n != 2 else 5)
        p.stdin.close()
        assert p.wait(timeout=30) == 5 and p.stdout.read() == b""
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


class _Failing:
    """A stream whose every read and write fails with ``err`` (an I/O error on a real device)."""

    encoding = "utf-8"
    errors = "strict"

    def __init__(self, err: int) -> None:
        self.err = err

    def _fail(self, *_a: object) -> None:
        raise OSError(self.err, os.strerror(self.err))

    write = flush = read = readline = _fail

    def isatty(self) -> bool:
        return False

    @property
    def buffer(self) -> _Failing:
        return self


def test_an_unreadable_stdin_is_a_usage_error(keyfile, monkeypatch, capsys):
    from prisme_keys.cli import main

    monkeypatch.setattr(sys, "stdin", _Failing(errno.EIO))
    assert main(["--key-file", str(keyfile), "decode", "-"]) == 2
    assert capsys.readouterr().err == "prisme-keys: error: cannot read standard input: Input/output error (EIO)\n"


def test_a_failing_stdout_is_exit_4_and_a_broken_one_141(keyfile, monkeypatch, capsys):
    from prisme_keys.cli import main

    monkeypatch.setattr(sys, "stdout", _Failing(errno.EIO))
    assert main(["--key-file", str(keyfile), "export"]) == 4
    assert capsys.readouterr().err == "prisme-keys: error: cannot write to standard output: Input/output error (EIO)\n"
    monkeypatch.setattr(sys, "stdout", _Failing(errno.EPIPE))
    assert main(["--key-file", str(keyfile), "export"]) == 141
    assert capsys.readouterr().err == ""


# -- regression tests (defects found by a newcomer's break-test)


@pytest.mark.slow
def test_ctrl_c_is_exit_130_with_one_line_and_no_file(cli, tmp_path):
    import pty
    import select
    import signal

    kf = tmp_path / "k.json"
    master, slave = pty.openpty()  # stderr on a terminal: the key-generation spinner is the handshake
    p = cli.popen(
        "--key-file",
        str(kf),
        "init",
        env={"JWKS_SIZE": "8192"},
        stdout=subprocess.PIPE,
        stderr=slave,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    os.close(slave)
    seen = b""
    while b"generating" not in seen:
        ready, _, _ = select.select([master], [], [], 60)
        assert ready, seen
        seen += os.read(master, 4096)
    p.send_signal(signal.SIGINT)
    p.wait(timeout=600)  # the 8192-bit generation runs to its end in C first (tens of seconds)
    rest = b""
    with contextlib.suppress(OSError):
        while select.select([master], [], [], 1)[0]:
            chunk = os.read(master, 4096)
            if not chunk:
                break
            rest += chunk
    os.close(master)
    assert p.returncode == 130
    assert (seen + rest).replace(b"\r\n", b"\n").rstrip().endswith(b"prisme-keys: interrupted")
    assert not kf.exists()


# -- a reader that leaves after reading part of the output (newcomer break-test, defect 1)


@pytest.mark.parametrize(
    "cmd",
    [
        "$P --json plan --days 3660",  # one JSON document of ~110 kB, written in one go
        "$P -q mint --count 300",  # ~186 kB of text (plan's text, ~42 kB, fits in the 64 KiB pipe: no EPIPE)
        "$P -q --json mint --count 300",
        "$P -q mint --count 2000 | $P --json verify --batch",
        "$P -q mint --count 2000 | $P verify --batch",
    ],
)
def test_a_reader_that_read_part_of_the_output_is_exit_141(cli, fresh, cmd):
    # head -c 1 takes part of the first pipe-full: the large write comes back short, not failed. Every
    # output here is larger than the pipe (64 KiB), so some write always finds the reader gone.
    p = sh(cli, fresh, f"{cmd} | head -c 1")
    assert (p.returncode, p.stderr, len(p.stdout)) == (141, "", 1)


class _ShortThenBroken(io.RawIOBase):
    """A binary stdout whose first write takes only ``first`` bytes and whose next ones fail with EPIPE."""

    def __init__(self, first: int) -> None:
        super().__init__()
        self.first = first
        self.taken = b""

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self.taken:
            raise OSError(errno.EPIPE, os.strerror(errno.EPIPE))
        self.taken = bytes(data[: self.first])
        return len(self.taken)


def test_a_short_write_is_written_again_and_its_broken_pipe_is_141(keyfile, monkeypatch, capsys):
    from prisme_keys.cli import main

    raw = _ShortThenBroken(10)
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(raw, encoding="utf-8"))
    assert main(["--key-file", str(keyfile), "export"]) == 141
    assert raw.taken == b'{\n  "keys"'
    assert capsys.readouterr().err == ""


def test_a_directory_on_stdin_is_refused_by_python_itself(cli, keyfile):
    # Python aborts in init_sys_streams before any of our code runs: nothing to catch (README says so)
    p = sh(cli, keyfile, "$P decode - < /")
    assert p.returncode == 1
    assert p.stderr.splitlines()[0] == "Fatal Python error: init_sys_streams: <stdin> is a directory, cannot continue"


# The console script ends the process without the interpreter's teardown (cli.end_process):
# what the teardown would have done for the process must still happen.

END_PROCESS = """
import atexit, sys, threading
from prisme_keys.cli import end_process
ready = threading.Event()
def late():
    ready.wait()
    print("thread finished", flush=True)
if sys.argv[1] == "thread":
    threading.Thread(target=late).start()  # a non-daemon thread, still running at the end
atexit.register(lambda: print("atexit ran", flush=True))
sys.stdout.write("buffered, not flushed")
sys.stdout.flush()
ready.set()
end_process(int(sys.argv[2]))
"""


@pytest.mark.parametrize("case", ["alone", "thread"])
def test_the_process_ends_with_its_code_its_atexit_callbacks_and_its_threads(case):
    p = subprocess.run([sys.executable, "-c", END_PROCESS, case, "3"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 3, p.stderr
    want = "buffered, not flushed" + ("thread finished\n" if case == "thread" else "") + "atexit ran\n"
    assert (p.stdout, p.stderr) == (want, "")


def test_the_console_script_delivers_all_its_output_and_its_exit_code(cli, keyfile):
    """Big output through a pipe, then a failure's code: nothing lost at the fast exit."""
    p = sh(cli, keyfile, "$P -q mint --count 500 | wc -l; $P verify not-a-token; echo rc=$?")
    assert p.stdout == "500\nrc=5\n"
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("prisme-keys: error: ")


# -- mint --count and verify --batch on several threads (--workers): the same outcomes as one thread


def test_broken_pipe_stops_mint_and_verify_batch_with_workers_at_once_and_quietly(cli, keyfile):
    p = sh(
        cli,
        keyfile,
        "$P mint --count 1000000 --workers 2 2>err | head -1; rc=$?; grep -v '^warning:' err >&2; exit $rc",
    )
    assert (p.returncode, p.stderr) == (141, "")
    assert p.stdout.count(".") == 2 and p.stdout.count("\n") == 1
    token = p.stdout.strip()
    # an endless supply of tokens in 64 KiB pieces, checked by the pool: only the broken pipe ends it
    p = sh(
        cli,
        keyfile,
        f"yes {token} | $P verify --batch --workers 2 2>err | head -1; rc=$?; grep -v '^warning:' err >&2; exit $rc",
    )
    assert (p.returncode, p.stderr) == (141, "")
    assert json.loads(p.stdout)["valid"] is True


def test_closed_stdout_with_workers_is_exit_4_with_one_line(cli, keyfile):
    p = sh(cli, keyfile, "$P mint --count 200 --workers 2 2>err >&-; rc=$?; grep -v '^warning:' err >&2; exit $rc")
    assert (p.returncode, p.stderr) == (4, CLOSED_STDOUT)
    p = sh(cli, keyfile, "$P -q mint --count 200 > t && $P verify --batch --workers 2 < t >&-")
    assert (p.returncode, p.stderr) == (4, CLOSED_STDOUT)


@pytest.mark.parametrize("command", ["mint --count 100000000", "verify --batch"])
def test_ctrl_c_with_workers_is_exit_130_with_one_line(cli, keyfile, command):
    """Ctrl-C while the pool is busy: exit 130, one line, no traceback, no thread left to wait for."""
    import signal
    import threading

    token = cli("--key-file", str(keyfile), "-q", "mint").stdout.strip()
    tokens = subprocess.Popen(["yes", token], stdout=subprocess.PIPE)
    p = cli.popen(
        "-q", "--key-file", str(keyfile), *command.split(), "--workers", "2",
        stdin=tokens.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    tokens.stdout.close()
    lines = 0
    enough = threading.Event()

    def drain() -> None:  # read every result as it comes: the command never waits for its reader
        nonlocal lines
        for _ in p.stdout:
            lines += 1
            if lines == 300:  # hundreds of results: several pieces have gone through the pool
                enough.set()
        enough.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    children: list[int] = []
    try:
        assert enough.wait(60), f"fewer than 300 results in 60 s ({lines})"  # never p.stderr.read(): it waits
        assert p.poll() is None, p.stderr.read()  # ended early: its stderr says why
        children = _children_of(p.pid)
        p.send_signal(signal.SIGINT)  # to the command alone: it ends its children itself
        assert p.wait(timeout=60) == 130
    finally:
        tokens.kill()
        tokens.wait()
        if p.poll() is None:
            p.kill()
            p.wait()
    reader.join(30)
    assert p.stderr.read() == b"prisme-keys: interrupted\n"
    # verify --batch forks a child on Linux (mint signs in threads); the command reaps it before it ends
    assert len(children) == (1 if command == "verify --batch" and sys.platform.startswith("linux") else 0)
    assert not [pid for pid in children if os.path.exists(f"/proc/{pid}")]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="children are forked on Linux only")
def test_the_child_of_verify_batch_ends_with_the_command_even_when_it_is_killed(cli, keyfile):
    """SIGKILL leaves the command no time to end its child: the child sees its pipe close and ends."""
    import time

    token = cli("--key-file", str(keyfile), "-q", "mint").stdout.strip()
    p = cli.popen(
        "-q", "--key-file", str(keyfile), "verify", "--batch", "--workers", "2",
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        p.stdin.write(f"{token}\n".encode() * 300)
        p.stdin.flush()
        assert all(json.loads(p.stdout.readline())["valid"] for _ in range(300))  # all verified: forked by now
        children = _children_of(p.pid)
        assert len(children) == 1
    finally:
        p.kill()
        p.wait()
        p.stdin.close()
        p.stdout.close()
        p.stderr.close()
    deadline = time.monotonic() + 30
    while not _ended(children[0]) and time.monotonic() < deadline:
        time.sleep(0.01)  # polls the child's state, bounded: nothing to hand-shake with once its parent is gone
    assert _ended(children[0])


def _ended(pid: int) -> bool:
    """``pid`` no longer runs: gone, or a zombie waiting for whoever adopted it."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _children_of(pid: int) -> list[int]:
    """The child processes of ``pid`` (Linux ``/proc/PID/task/TID/children``; none elsewhere)."""
    tasks = f"/proc/{pid}/task"
    if not os.path.isdir(tasks):
        return []
    out: list[int] = []
    for tid in os.listdir(tasks):
        with contextlib.suppress(OSError), open(f"{tasks}/{tid}/children") as f:
            out += [int(x) for x in f.read().split()]
    return out


# -- --json mint --count N and --json verify --batch stream their document: a reader that leaves stops
# the work at the next write, Ctrl-C leaves one whole document, memory stays flat in N


def json_stream(cli, keyfile, command: str, workers: str, **popen: Any) -> tuple[subprocess.Popen, Any]:
    """Start ``-q --json COMMAND --workers W`` on the key file, its stdout a pipe; ``verify --batch``
    reads an endless supply of one valid token (``yes``: only the command can end the pipeline).
    Returns the process and the supply's (``None`` for mint)."""
    tokens = None
    if command.startswith("verify"):
        token = cli("--key-file", str(keyfile), "-q", "mint").stdout.strip()
        tokens = subprocess.Popen(["yes", token], stdout=subprocess.PIPE)
    p = cli.popen(
        "-q", "--key-file", str(keyfile), "--json", *command.split(), "--workers", workers,
        stdin=tokens.stdout if tokens else subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        **popen,
    )  # fmt: skip
    if tokens is not None:
        tokens.stdout.close()
    return p, tokens


def stop(*procs: Any) -> None:
    for proc in procs:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()


#: How a streamed document begins, up to its first member's first value.
JSON_HEADS = {"mint": b'[\n  {\n    "token": "eyJ', "verify": b'{\n  "results": [\n    {\n      "line": 1,'}


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("command", ["mint --count 100000000", "verify --batch"])
def test_json_stream_stops_at_once_when_its_reader_leaves(cli, keyfile, command, workers):
    """``--json mint --count 100000000 | head -c 100`` (hours of work), ``yes TOKEN | --json verify --batch
    | head -c 100`` (endless): the first member went out at once, and the first write after the reader
    left ends the command quietly with exit 141."""
    import select

    p, tokens = json_stream(cli, keyfile, command, workers)
    try:
        head = b""
        while len(head) < 100:  # the handshake: the first member (it held every result till the end)
            assert select.select([p.stdout], [], [], 60)[0], f"no output in 60 s: {head!r}"
            head += os.read(p.stdout.fileno(), 100 - len(head))
        p.stdout.close()  # the reader leaves
        assert p.wait(timeout=60) == 141
        assert p.stderr.read() == b""
        assert head.startswith(JSON_HEADS[command.split()[0]]) and len(head) == 100
    finally:
        stop(p, tokens)


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("command", ["mint --count 100000000", "verify --batch"])
def test_ctrl_c_mid_json_stream_leaves_one_whole_document(cli, keyfile, command, workers):
    """Ctrl-C while members stream out: stdout holds one whole document (the list closed; verify's counts
    of what was verified, ``exit`` 130), stderr the error object, exit 130."""
    import signal
    import threading

    from prisme_keys.cli.output import json_text

    p, tokens = json_stream(
        cli, keyfile, command, workers, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)
    )
    out = bytearray()
    marker = b'"token": ' if command.startswith("mint") else b'"line": '
    enough = threading.Event()

    def drain() -> None:  # read everything as it comes: the command never waits for its reader
        for chunk in iter(lambda: p.stdout.read1(65536), b""):
            out.extend(chunk)
            if out.count(marker) >= 300:  # hundreds of members out (several pieces through the pool)
                enough.set()
        enough.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        assert enough.wait(60), f"fewer than 300 members in 60 s: {bytes(out[:200])!r}"
        assert p.poll() is None, p.stderr.read()
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=60) == 130
    finally:
        stop(tokens, p)
    reader.join(30)
    assert json.loads(p.stderr.read()) == {"code": "interrupted", "message": "interrupted", "exit": 130}
    doc = json.loads(out)
    assert out.decode() == json_text(doc)
    if command.startswith("mint"):
        assert len(doc) >= 300 and all(list(d) == ["token", "header", "claims"] for d in doc)
    else:
        n = len(doc["results"])
        assert n >= 300 and [r["line"] for r in doc["results"]] == list(range(1, n + 1))
        assert {k: v for k, v in doc.items() if k != "results"} == {"tokens": n, "valid": n, "invalid": 0, "exit": 130}


def peak_rss_kib(argv: list[str], env: dict, stdin: Any = None, stdout: Any = None) -> int:
    """The peak RSS (KiB) of one run of ``argv``, through the reaper of tests/benchmarks/bench_peers.py
    (``os.wait4``'s ``ru_maxrss`` of a child forked by a small process, not by this large one)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parent / "benchmarks" / "bench_peers.py"
    spec = importlib.util.spec_from_file_location("bench_peers", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_peers", bench)  # its dataclasses look their module up
    spec.loader.exec_module(bench)
    return int(bench.run(argv, env, stdin=stdin, stdout=stdout).maxrss_kib)


@pytest.mark.slow
def test_json_mint_and_verify_batch_keep_memory_flat(cli, keyfile, tmp_path):
    """4 times the tokens, the same peak RSS within 3 MiB (it held every result: about 6 KiB a token for
    mint, 2 KiB for verify --batch, so +36 MiB and +12 MiB here)."""
    base = [script(), "-q", "--key-file", str(keyfile), "--json"]
    peaks = {}
    for n in (2000, 8000):
        minted, tokens = tmp_path / f"minted-{n}.json", tmp_path / f"tokens-{n}"
        peaks["mint", n] = peak_rss_kib([*base, "mint", "--count", str(n)], cli.env, stdout=minted)
        docs = json.loads(minted.read_text())
        assert len(docs) == n
        tokens.write_text("".join(d["token"] + "\n" for d in docs))
        checked = tmp_path / f"checked-{n}.json"
        peaks["verify", n] = peak_rss_kib([*base, "verify", "--batch"], cli.env, stdin=tokens, stdout=checked)
        assert json.loads(checked.read_text())["valid"] == n
    for command in ("mint", "verify"):
        assert peaks[command, 8000] <= peaks[command, 2000] + 3 * 1024, peaks


WHOLE_WRITES = """
import os, signal
from prisme_keys.cli.streams import whole_writes

def ctrl_c():
    os.kill(os.getpid(), signal.SIGINT)  # delivered before kill() returns; Python's handler runs next

events = []
def attempt(name, body):
    try:
        body()
    except KeyboardInterrupt:
        events.append(name + ": KeyboardInterrupt")
    except OSError as exc:
        events.append(name + ": " + str(exc))

with whole_writes() as whole:
    def held():
        with whole:
            ctrl_c()
            events.append("held: the section goes on")
            with whole:
                events.append("held: a nested section")
            events.append("held: the outer section goes on")
    def twice():
        with whole:
            ctrl_c()
            ctrl_c()
            events.append("twice: not reached")
    def outside():
        ctrl_c()
        events.append("outside: not reached")
    def own_error():
        with whole:
            ctrl_c()
            raise OSError("its own error")
    def clean():
        with whole:
            events.append("clean: nothing pending")
    for body in (held, twice, outside, own_error, clean):
        attempt(body.__name__, body)
print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)
print(*events, sep="\\n")
signal.signal(signal.SIGINT, signal.SIG_IGN)
with whole_writes() as whole, whole:
    ctrl_c()
print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)
"""


def test_whole_writes_holds_a_first_ctrl_c_till_the_section_ends():
    """streams.whole_writes with real SIGINTs (in a child: this process keeps its own handler)."""
    p = subprocess.run([sys.executable, "-c", WHOLE_WRITES], capture_output=True, text=True, timeout=60)
    assert (p.returncode, p.stderr) == (0, "")
    assert p.stdout.splitlines() == [
        "True",  # Python's own handler is back after the block
        "held: the section goes on",
        "held: a nested section",
        "held: the outer section goes on",
        "held: KeyboardInterrupt",  # raised when the outermost section ends
        "twice: KeyboardInterrupt",  # a second Ctrl-C is raised at once
        "outside: KeyboardInterrupt",
        "own_error: its own error",  # a section's own error wins; the Ctrl-C is not kept for later
        "clean: nothing pending",
        "True",  # an ignored SIGINT stays ignored
    ]


# Regression (newcomer break-test): Ctrl-C while the text form of verify --batch was blocked writing
# to a reader that had fallen behind left half a result line on stdout.
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the blocked write is seen in /proc")
@pytest.mark.parametrize("workers", ["1", "2"])
def test_ctrl_c_while_verify_batch_waits_on_its_reader_finishes_the_lines_begun(cli, keyfile, tmp_path, workers):
    import signal
    import time

    token = cli("--key-file", str(keyfile), "-q", "mint").stdout.strip()
    tokens = tmp_path / "tokens.txt"
    tokens.write_text(f"{token}\n" * 3000)  # about 2 MB of results: far more than a pipe holds
    r, w = os.pipe()
    with tokens.open("rb") as stdin:
        p = cli.popen(
            "-q", "--key-file", str(keyfile), "verify", "--batch", "--workers", workers,
            stdin=stdin, stdout=w, stderr=subprocess.PIPE,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip
    os.close(w)
    try:
        deadline = time.monotonic() + 30
        while not _blocked_writing(p.pid) and time.monotonic() < deadline:
            time.sleep(0.01)  # polls the command's state: it blocks once the pipe is full
        assert _blocked_writing(p.pid)
        p.send_signal(signal.SIGINT)
        with os.fdopen(r, "rb") as reader:  # the reader catches up: the write in progress ends
            data = reader.read()
        assert p.wait(timeout=60) == 130
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.stderr.read() == b"prisme-keys: interrupted\n"
    p.stderr.close()
    assert data.endswith(b"\n") and 0 < data.count(b"\n") < 3000
    assert all(json.loads(line)["valid"] for line in data.splitlines())


def _blocked_writing(pid: int) -> bool:
    """``pid`` waits in a write to a full pipe (Linux ``/proc/PID/wchan``)."""
    try:
        with open(f"/proc/{pid}/wchan") as f:
            return "pipe_write" in f.read()
    except OSError:
        return False


# Regression (newcomer break-test): Ctrl-C in the first tens of milliseconds, while the command line
# was still loading, printed a traceback. The SIGINT is sent as typer starts to load, every time.
@pytest.mark.parametrize(("args", "want"), [
    (["list"], b"prisme-keys: interrupted\n"),
    (["--json", "mint", "--count", "3"], b'{"code": "interrupted", "message": "interrupted", "exit": 130}\n'),
])  # fmt: skip
def test_ctrl_c_while_the_command_line_loads_is_one_line_and_130(cli, args, want):
    import signal

    code = (
        "import builtins, os, signal, sys\n"
        "from prisme_keys.cli import run\n"
        "real = builtins.__import__\n"
        "def hook(name, *a, **k):\n"
        "    if name == 'typer':\n"
        "        builtins.__import__ = real\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = hook\n"
        f"sys.argv = ['prisme-keys', *{args!r}]\n"
        "run()\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", code], env=cli.env, capture_output=True, timeout=60,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    assert (p.returncode, p.stdout, p.stderr) == (130, b"", want)


# Regression (newcomer break-test): with a stdout whose encoding is not UTF-8 (PYTHONIOENCODING=ascii,
# latin-1), a claim's "é" or "😀" made mint, decode, verify exit 1 ("internal error: UnicodeEncodeError").
@pytest.mark.parametrize("encoding", ["ascii", "latin-1"])
def test_stdout_is_utf8_whatever_the_encoding_python_was_given(cli, keyfile, encoding):
    env = {"PYTHONIOENCODING": encoding}
    p = cli.proc("-q", "--key-file", str(keyfile), "--json", "mint", "--count", "2", "--claim", 'name="é😀"', env=env)
    assert (p.returncode, p.stderr) == (0, "")
    docs = json.loads(p.stdout)  # read as UTF-8 (the test's locale): bytes of another encoding would fail
    assert [d["claims"]["name"] for d in docs] == ["é😀", "é😀"]
    p = cli.proc("--key-file", str(keyfile), "verify", "--batch", input="é.é.é\n", env=env)
    assert p.returncode == 5
    assert json.loads(p.stdout)["error"] == ("segment 1 (header) is not base64url: character 'é'")
