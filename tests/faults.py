r"""Fault injection for file writes: make one step of a write fail with a chosen errno.

A fault names a step, an errno and a regular expression searched in the absolute path::

    Fault(step="fsync", errno_name="EIO", path=r"/\.keys\.json\.[^/]*\.tmp$")

Steps (each the system call of one step of an atomic write):

* ``create``: ``os.open`` with ``O_CREAT`` (the temp file ``mkstemp`` makes, a lock file);
* ``write``: ``os.write`` on a file whose path matches;
* ``fsync``: ``os.fsync`` on a regular file whose path matches;
* ``rename``: ``os.replace`` / ``os.rename`` / ``os.link`` when the destination matches;
* ``dirfsync``: ``os.fsync`` on a folder whose path matches;
* ``open``: ``open()`` / ``io.open`` for writing (text and binary modes);
* ``readonly``: every writing call under ``path`` (a read-only volume): ``os.open`` with a write
  flag, rename, link, unlink, mkdir, chmod, ``open()`` for writing; reads still work.

The ``nth`` matching call fails (1-based) and, as a full disk stays full, every later one too
unless ``once``. Each firing is appended to ``log`` (a file) and counted in :attr:`Fault.fired`,
so a test can prove the fault was reached. Several faults may be in force at once (nested
``installed()`` blocks). Used in-process (``with fault.installed():``) and, in
a subprocess, through ``tests/faultinject/sitecustomize.py`` reading ``PRISME_KEYS_TEST_FAULT``
(the JSON of :meth:`Fault.to_env`).
"""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

ENV = "PRISME_KEYS_TEST_FAULT"
STEPS = ("create", "write", "fsync", "rename", "dirfsync", "open", "readonly")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


@dataclass
class Fault:
    """One injected fault (see the module docstring)."""

    step: str
    errno_name: str
    path: str
    nth: int = 1
    once: bool = False
    log: str | None = None
    fired: int = 0
    _seen: int = 0

    def __post_init__(self) -> None:
        assert self.step in STEPS, self.step
        self.errno = getattr(errno, self.errno_name)
        self._re = re.compile(self.path)

    def to_env(self) -> dict[str, str]:
        """The environment that installs this fault in a subprocess (with the sitecustomize path)."""
        doc = {k: v for k, v in asdict(self).items() if k in ("step", "errno_name", "path", "nth", "once", "log")}
        here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "faultinject")
        old = os.environ.get("PYTHONPATH")
        return {ENV: json.dumps(doc), "PYTHONPATH": here + (os.pathsep + old if old else "")}

    # -- matching ----------------------------------------------------------------------
    def _matches(self, *paths: Any) -> bool:
        for p in paths:
            if p is None or isinstance(p, int):
                continue
            try:
                s = os.fsdecode(os.fspath(p))
            except TypeError:
                continue
            if self._re.search(os.path.abspath(s)):
                return True
        return False

    def _fire(self, what: str, where: Any) -> None:
        self._seen += 1
        if self._seen < self.nth or (self.once and self._seen > self.nth):
            return
        self.fired += 1
        if self.log:
            with _real["open"](self.log, "a") as f:
                f.write(f"{self.step} {self.errno_name} {what} {where}\n")
        raise OSError(self.errno, os.strerror(self.errno), os.fsdecode(where) if where else None)

    # -- installing --------------------------------------------------------------------
    @contextmanager
    def installed(self) -> Iterator[Fault]:
        """Patch the ``os`` / ``io`` / ``builtins`` functions for the block (in this process)."""
        install(self)
        try:
            yield self
        finally:
            uninstall(self)


_real: dict[str, Any] = {
    "open": builtins.open,
    "os.open": os.open,
    "os.write": os.write,
    "os.fsync": os.fsync,
    "os.replace": os.replace,
    "os.rename": os.rename,
    "os.link": os.link,
    "os.unlink": os.unlink,
    "os.mkdir": os.mkdir,
    "os.chmod": os.chmod,
}


def _fd_path(fd: int) -> tuple[str, bool]:
    """The path of an open descriptor and whether it is a folder (Linux /proc)."""
    try:
        path = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return "", False
    try:
        is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
    except OSError:
        is_dir = False
    return path, is_dir


def _writing_mode(mode: str) -> bool:
    return any(c in mode for c in "wax+")


#: The faults in force, in the order installed; the patched calls consult each.
_active: list[Fault] = []


def install(fault: Fault) -> None:
    """Add ``fault`` to the faults in force (patching the calls on the first one)."""
    if not _active:
        _patch()
    _active.append(fault)


def uninstall(fault: Fault | None = None) -> None:
    """Remove ``fault`` (default: every fault); the real calls come back with the last one."""
    if fault is None:
        _active.clear()
    else:
        _active[:] = [f for f in _active if f is not fault]
    if not _active:
        for name, fn in _real.items():
            if name == "open":
                builtins.open = fn  # type: ignore[assignment]
                io.open = fn  # type: ignore[assignment]
            else:
                setattr(os, name.split(".", 1)[1], fn)


def _patch() -> None:
    def p_open(path: Any, flags: int, mode: int = 0o777, *, dir_fd: Any = None) -> int:
        for f in list(_active):
            ro = f.step == "readonly"
            if f._matches(path) and ((f.step == "create" and flags & os.O_CREAT) or (ro and flags & _WRITE_FLAGS)):
                f._fire("os.open", path)
        return _real["os.open"](path, flags, mode, dir_fd=dir_fd)

    def p_write(fd: int, data: Any) -> int:
        for f in list(_active):
            if f.step in ("write", "readonly"):
                path, _ = _fd_path(fd)
                if path and f._matches(path):
                    f._fire("os.write", path)
        return _real["os.write"](fd, data)

    def p_fsync(fd: Any) -> None:
        for f in list(_active):
            if f.step in ("fsync", "dirfsync"):
                path, is_dir = _fd_path(fd if isinstance(fd, int) else fd.fileno())
                if path and f._matches(path) and is_dir == (f.step == "dirfsync"):
                    f._fire("os.fsync", path)
        return _real["os.fsync"](fd)

    def two(name: str) -> Any:
        real = _real[name]

        def call(src: Any, dst: Any, *a: Any, **kw: Any) -> Any:
            for f in list(_active):
                if (f.step == "rename" and f._matches(dst)) or (f.step == "readonly" and f._matches(src, dst)):
                    f._fire(name, dst)
            return real(src, dst, *a, **kw)

        return call

    def one(name: str) -> Any:
        real = _real[name]

        def call(path: Any, *a: Any, **kw: Any) -> Any:
            for f in list(_active):
                if f.step == "readonly" and f._matches(path):
                    f._fire(name, path)
            return real(path, *a, **kw)

        return call

    def p_bopen(file: Any, mode: str = "r", *a: Any, **kw: Any) -> Any:
        for f in list(_active):
            if f.step in ("open", "readonly") and _writing_mode(mode) and f._matches(file):
                f._fire("open", file)
        return _real["open"](file, mode, *a, **kw)

    os.open = p_open  # type: ignore[assignment]
    os.write = p_write  # type: ignore[assignment]
    os.fsync = p_fsync  # type: ignore[assignment]
    os.replace = two("os.replace")  # type: ignore[assignment]
    os.rename = two("os.rename")  # type: ignore[assignment]
    os.link = two("os.link")  # type: ignore[assignment]
    os.unlink = one("os.unlink")  # type: ignore[assignment]
    os.mkdir = one("os.mkdir")  # type: ignore[assignment]
    os.chmod = one("os.chmod")  # type: ignore[assignment]
    builtins.open = p_bopen  # type: ignore[assignment]
    io.open = p_bopen  # type: ignore[assignment]


def install_from_env() -> Fault | None:
    """Install the fault described by ``$PRISME_KEYS_TEST_FAULT`` (JSON), if set."""
    spec = os.environ.get(ENV)
    if not spec:
        return None
    fault = Fault(**json.loads(spec))
    install(fault)
    return fault
