"""A small pool of threads for the RSA work of ``mint`` (many tokens) and ``verify --batch``.

``cryptography`` releases the GIL while it signs or verifies with an RSA key, so threads share that
work across the cores; everything else (claims, JSON, the order of the results, the key set) stays
in the calling thread. The caller chooses the number of threads: nothing here is process-wide.

The pool is the standard library's ``concurrent.futures.ThreadPoolExecutor``; :func:`close_pool`
cancels what no thread has started and joins the threads, so no thread outlives the command by more
than the task it is on.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from prisme_keys.errors import InvalidArgument
from prisme_keys.text import shown

if TYPE_CHECKING:  # concurrent.futures (3 ms to import, with logging) loads with the first pool
    from concurrent.futures import Executor

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


def thread_pool(threads: int) -> Executor:
    """A pool of ``threads`` threads (``concurrent.futures.ThreadPoolExecutor``) for RSA work; close it
    with :func:`close_pool` (a ``with`` block would let the queued tasks run to the end).

    Args:
        threads: number of threads, 1 or more (see :func:`check_workers` for the command's rule).
    """
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="prisme-keys-worker")


def close_pool(pool: Executor) -> None:
    """Cancel the tasks no thread has started and wait for the threads to end, each after the task it is
    on: no thread outlives the command, and the process ends without waiting for one."""
    pool.shutdown(wait=True, cancel_futures=True)
