"""A small pool of threads for the RSA work of ``mint`` (many tokens) and ``verify --batch``.

``cryptography`` releases the GIL while it signs or verifies with an RSA key, so threads share that
work across the cores; everything else (claims, JSON, the order of the results, the key set) stays
in the calling thread. The caller chooses the number of threads: nothing here is process-wide.

The pool is made of daemon threads that :meth:`Pool.close` cancels and joins, so no thread outlives
the command by more than the task it is on, and a process never waits for them at exit.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from prisme_keys.errors import InvalidArgument
from prisme_keys.text import shown

#: Most threads a command may be given.
MAX_WORKERS = 64
#: Most threads :func:`default_workers` chooses, however many CPUs there are.
DEFAULT_MAX = 4


def default_workers() -> int:
    """The default number of threads: the CPUs this process may run on (``os.sched_getaffinity``
    where it exists, else ``os.cpu_count()``), from 1 to :data:`DEFAULT_MAX`."""
    affinity = getattr(os, "sched_getaffinity", None)
    cpus = len(affinity(0)) if affinity is not None else (os.cpu_count() or 1)
    return max(1, min(DEFAULT_MAX, cpus))


def check_workers(workers: Any) -> int:
    """``workers`` when it is a whole number from 1 to :data:`MAX_WORKERS` (1: the calling thread alone).

    Raises:
        InvalidArgument: anything else, naming ``workers`` (exit 2).
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= MAX_WORKERS:
        raise InvalidArgument(
            "workers", "{workers} must be a whole number from 1 to {most}, not {value}", most=MAX_WORKERS,
            value=shown(workers),
        )  # fmt: skip
    return workers


class Cancelled(Exception):
    """The task was cancelled before it ran (its pool was closed)."""


class Task:
    """One call run by a :class:`Pool` (or in the calling thread with :meth:`run`); its result or error."""

    __slots__ = ("_args", "_done", "_error", "_fn", "_value")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self._fn, self._args = fn, args
        self._value: Any = None
        self._error: BaseException | None = None
        self._done = threading.Lock()
        self._done.acquire()

    def run(self) -> None:
        """Call the function; keep what it returned or raised."""
        try:
            self._value = self._fn(*self._args)
        except BaseException as exc:  # a thread boundary: handed to the caller, who re-raises it in its thread
            self._error = exc
        finally:
            self._args = ()
            self._done.release()

    def reraise_interrupt(self) -> None:
        """Raise again, at once, what ended the call when it was no error but an interruption
        (``KeyboardInterrupt``, ``SystemExit``: not an ``Exception``); errors wait for :meth:`result`."""
        if self._error is not None and not isinstance(self._error, Exception):
            raise self._error

    def cancel(self) -> None:
        """Finish without running: :meth:`result` raises :class:`Cancelled`."""
        self._error = Cancelled()
        self._done.release()

    def wait(self) -> None:
        """Wait for the call to end (a signal such as Ctrl-C interrupts the wait)."""
        with self._done:
            pass

    def result(self) -> Any:
        """Wait for the call to end (see :meth:`wait`); its result.

        Raises:
            BaseException: what the call raised, in the waiting thread; :class:`Cancelled`.
        """
        self.wait()
        if self._error is not None:
            raise self._error
        return self._value


class Pool:
    """``threads`` daemon threads running :class:`Task` objects in the order they were submitted.

    Use as a context manager (or call :meth:`close`): the tasks not yet started are cancelled and
    the threads joined, so they end with the task they are on.

    Args:
        threads: number of threads (1 or more; see :func:`check_workers` for the command's rule).
    """

    def __init__(self, threads: int) -> None:
        from queue import SimpleQueue

        self._queue: SimpleQueue[Task | None] = SimpleQueue()
        self._closing = False
        self._threads: list[threading.Thread] = []
        for i in range(threads):
            t = threading.Thread(target=self._work, name=f"prisme-keys-worker-{i + 1}", daemon=True)
            t.start()
            self._threads.append(t)

    def _work(self) -> None:
        get = self._queue.get
        while True:
            task = get()
            if task is None:
                return
            if self._closing:
                task.cancel()
            else:
                task.run()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Task:
        """Queue ``fn(*args)`` for a thread of the pool; its :class:`Task`."""
        task = Task(fn, args)
        self._queue.put(task)
        return task

    def put(self, task: Task) -> None:
        """Queue ``task`` (made by the caller) for a thread of the pool."""
        self._queue.put(task)

    def close(self) -> None:
        """Cancel the tasks not yet started and wait for the threads to end (each after its current task)."""
        self._closing = True
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join()
        self._threads.clear()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
