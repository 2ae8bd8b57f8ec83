"""Child processes forked from the command, for the Python part of ``verify --batch`` that threads cannot share.

A thread pool shares only the RSA checks of a batch (``cryptography`` releases the GIL there); decoding
and the claims checks hold the GIL, so one thread does them for every token. A forked child has an
interpreter of its own: it works through a slice of each piece of input, decoding, claims and RSA
check alike, against the state it was forked with, while the command does its own slice.

Only on Linux, and only from a process with no other Python thread running (a fork copies the locks
other threads hold, so a child could wait on one forever): see :func:`can_fork`. A child never holds
the command's files (it closes every descriptor but its two pipes and stderr), ignores Ctrl-C (the
command handles it and ends its children), and ends with ``os._exit``: no buffered output, atexit
callback or finalizer of the command runs twice. The command never depends on an answer: a child
that dies, stops short or takes longer than :data:`ANSWER_TIMEOUT` is killed, and the caller does
the work itself.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

#: Seconds a child may take to answer one request before it is taken for stuck (killed; the caller
#: does the work). A request is one slice of a piece of input: milliseconds of work.
ANSWER_TIMEOUT = 30.0


def can_fork() -> bool:
    """Whether this process may fork children: Linux (``os.fork``), and this the only Python thread.

    Elsewhere (macOS, where system libraries may not survive a fork without ``exec``; Windows, which
    has no fork) or with other threads alive (a progress bar's refresh thread, a caller's threads),
    the caller uses threads instead.
    """
    import threading

    return sys.platform.startswith("linux") and hasattr(os, "fork") and threading.active_count() == 1


class Forked:
    """A child process forked from this one that answers ``answer(request)`` for each request sent.

    Requests and answers travel pickled over two pipes, one request at a time: :meth:`send`, then
    :meth:`receive`. The child sees this process as it was at the fork (its memory is a copy), so
    ``answer`` may use any state of the caller's, as it was then. ``answer`` must not raise (an
    exception ends the child: the caller sees it gone).

    Raises:
        OSError: the fork or the pipes failed (too many processes, no memory).
    """

    __slots__ = ("_down", "_up", "pid")

    def __init__(self, answer: Callable[[Any], Any]) -> None:
        import signal

        fds: list[int] = []
        try:
            fds += os.pipe()
            fds += os.pipe()
            down_r, down_w, up_r, up_w = fds
            # Signals wait while the fork is made: a handler of this process's (Ctrl-C's) must never
            # run in the child before it has set its own (see _serve).
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
            try:
                pid = os.fork()
                if pid == 0:  # pragma: no cover (the child: measured by the tests through its answers)
                    _serve(answer, down_r, up_w, mask)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        except OSError:
            for fd in fds:
                os.close(fd)
            raise
        os.close(down_r)
        os.close(up_w)
        self.pid: int | None = pid
        self._down = open(down_w, "wb")  # noqa: SIM115 (closed by close())
        self._up = open(up_r, "rb")  # noqa: SIM115 (closed by close())

    def send(self, request: Any) -> bool:
        """Hand ``request`` to the child; ``False`` (the child closed) when it is gone."""
        import pickle

        if self.pid is None:
            return False
        try:
            pickle.dump(request, self._down, protocol=pickle.HIGHEST_PROTOCOL)
            self._down.flush()
        except OSError:  # BrokenPipeError: the child is gone
            self.close()
            return False
        return True

    def receive(self, timeout: float = ANSWER_TIMEOUT) -> Any:
        """The child's answer to the last request, or ``None`` (the child closed) when it died, sent
        something unreadable or took longer than ``timeout`` seconds."""
        import pickle
        import select

        if self.pid is None:
            return None
        try:
            waiting = select.poll()  # poll, not select: any descriptor number
            waiting.register(self._up, select.POLLIN)
            if waiting.poll(timeout * 1000):
                return pickle.load(self._up)
        except (OSError, EOFError, pickle.UnpicklingError, ValueError):
            pass
        self.close()
        return None

    def close(self) -> None:
        """End the child (its pipes closed, then ``SIGKILL``: it holds nothing to clean up) and reap it."""
        import signal

        pid, self.pid = self.pid, None
        for f in (self._down, self._up):
            try:
                f.close()
            except OSError:  # a request left half-written to a dead child
                pass
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:  # pragma: no cover (already reaped elsewhere)
            return
        os.waitpid(pid, 0)


def close_all(children: list[Forked]) -> None:
    """End every child of ``children`` (:meth:`Forked.close`) and empty the list."""
    while children:
        children.pop().close()


def _serve(answer: Callable[[Any], Any], rd: int, wr: int, mask: Any) -> None:  # pragma: no cover (in the child)
    """The child's life: answer each request from ``rd`` on ``wr`` until ``rd`` closes; never returns.

    Signals arrive blocked (``mask``: the mask to restore). Ctrl-C is ignored (the command ends its
    children); every other signal the command handles in Python gets its default action back.
    """
    try:
        import gc
        import pickle
        import signal

        for sig in signal.valid_signals():
            if callable(signal.getsignal(sig)):
                signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        gc.disable()  # short-lived, no cycles made: a collection would only copy the parent's pages
        _close_others(rd, wr)
        with open(rd, "rb") as requests, open(wr, "wb") as answers:
            while True:
                try:
                    request = pickle.load(requests)
                except EOFError:
                    break
                pickle.dump(answer(request), answers, protocol=pickle.HIGHEST_PROTOCOL)
                answers.flush()
    finally:
        os._exit(0)


def _close_others(*keep: int) -> None:  # pragma: no cover (runs in the child)
    """Close every descriptor but ``keep`` and stderr; stdin and stdout become ``/dev/null`` (a reader of
    the command's output sees its end when the command ends, not when its last child does)."""
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:  # the listing's own descriptor, already closed
                pass
