"""Standard streams: closed, full or broken stdin/stdout/stderr as documented outcomes.

``main()`` wraps the three streams for one invocation (:func:`guarded`):

* stdout: a write or flush that fails raises :class:`OutputFailed` (not an ``OSError``, so no
  layer in between mistakes it for a file or network error); a reader that went away (``EPIPE``)
  ends the command quietly with :data:`EXIT_BROKEN_PIPE`, any other failure (closed, disk full,
  I/O error) is one line on stderr and exit 4.
* stdin: a closed stdin, or one that cannot be read (a folder, an I/O error), raises
  :class:`~prisme_keys.errors.UsageError` (exit 2) when a command reads it.
* stderr: closed or failing, diagnostics are dropped; the exit code stays the command's.

The process-level part (:func:`finish_process`) runs in the console script only: it keeps
Python's own shutdown flush from failing on a stream that failed during the command.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prisme_keys.errors import EXIT_BROKEN_PIPE, UsageError

__all__ = [
    "EXIT_BROKEN_PIPE",
    "OutputFailed",
    "WholeWrites",
    "finish_process",
    "guarded",
    "occupy_closed_descriptors",
    "whole_writes",
]


class OutputFailed(Exception):
    """Writing standard output failed (``errno`` is the ``OSError`` errno, ``EBADF`` when closed)."""

    def __init__(self, err: int) -> None:
        super().__init__(err)
        self.errno = err

    @property
    def broken_pipe(self) -> bool:
        """True when the reader went away (``EPIPE``)."""
        return self.errno == errno.EPIPE

    def message(self) -> str:
        """One line for stderr."""
        if self.errno == errno.EBADF:
            return "cannot write to standard output: it is closed"
        name = errno.errorcode.get(self.errno, str(self.errno))
        return f"cannot write to standard output: {os.strerror(self.errno)} ({name})"


def _stdin_error(exc: BaseException | None) -> UsageError:
    if exc is None or getattr(exc, "errno", None) == errno.EBADF:
        return UsageError("cannot read standard input: it is closed", code="stdin_closed")
    err = getattr(exc, "errno", None)
    why = getattr(exc, "strerror", None) or str(exc)
    name = errno.errorcode.get(err) if isinstance(err, int) else None
    return UsageError(f"cannot read standard input: {why}{f' ({name})' if name else ''}", code="stdin_unreadable")


class _Closed:
    """Stands for a stream the process was started without (``>&-``, ``<&-``, ``2>&-``)."""

    encoding = "utf-8"
    errors = "strict"
    closed = False

    def __init__(self, binary: bool = False) -> None:
        self._binary = binary

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))

    def write(self, data: Any) -> int:
        if isinstance(data, (bytes, bytearray, memoryview)) != self._binary:
            raise TypeError("wrong data type for this stream")
        if len(data):
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        return 0

    def flush(self) -> None:
        return None

    def read(self, *_: Any) -> Any:
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))

    readline = read
    read1 = read

    def readlines(self, *_: Any) -> Any:
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))

    def __iter__(self) -> Iterator[Any]:
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))

    @property
    def buffer(self) -> _Closed:
        return _Closed(binary=True)


class _Guard:
    """Proxy of one standard stream turning its ``OSError`` into the documented outcome."""

    def __init__(self, stream: Any, role: str, binary: bool = False) -> None:
        self._stream = stream
        self._role = role  # "stdout", "stdin" or "stderr"
        self._binary = binary  # the ``buffer`` below a text stream
        #: the errno of the first failed write (stdout), or ``None``
        self.failed: int | None = None
        self._buffer: _Guard | None = None
        self._text_flushed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def _fail(self, exc: BaseException) -> Any:
        if self._role == "stdout":
            if self.failed is None:
                self.failed = getattr(exc, "errno", None) or errno.EBADF
            raise OutputFailed(self.failed) from None
        if self._role == "stdin":
            raise _stdin_error(exc) from None
        return None  # stderr: a diagnostic that cannot be shown is dropped

    def _call(self, name: str, *args: Any) -> Any:
        try:
            return getattr(self._stream, name)(*args)
        except (OSError, ValueError) as exc:  # ValueError: I/O on a closed file
            if isinstance(exc, ValueError) and not isinstance(exc, OSError) and "closed" not in str(exc):
                raise
            return self._fail(exc)

    def write(self, data: Any) -> Any:
        if self._role != "stdout" or isinstance(data, str) == self._binary:  # a wrong type fails as it would
            return self._call("write", data)
        try:
            return self._write_all(data)
        except (OSError, ValueError) as exc:
            if isinstance(exc, ValueError) and not isinstance(exc, OSError) and "closed" not in str(exc):
                raise
            return self._fail(exc)

    def _write_all(self, data: Any) -> int:
        """Write all of ``data`` on stdout, or raise the ``OSError`` that stopped it.

        A buffered stream returns a short count, with no error, when a pipe's reader leaves in the
        middle of a large write: the rest would be dropped silently and the command exit 0. The
        rest is written again here, and that write is the one that fails (``EPIPE``).
        """
        if isinstance(data, str):
            stream = self._stream
            buffer = getattr(stream, "buffer", None)
            if buffer is None:  # a text-only stream (a test double): no short counts to catch
                return int(stream.write(data))
            if not self._text_flushed:  # what went through the text layer before goes first
                stream.flush()
                self._text_flushed = True
            _write_bytes(buffer, data.encode(stream.encoding or "utf-8", stream.errors or "strict"))
            if getattr(stream, "line_buffering", False) and "\n" in data:
                buffer.flush()
            return len(data)
        _write_bytes(self._stream, data)
        return len(data)

    def writelines(self, lines: Any) -> Any:
        return self._call("writelines", lines)

    def flush(self) -> Any:
        return self._call("flush")

    def read(self, *args: Any) -> Any:
        return self._call("read", *args)

    def read1(self, *args: Any) -> Any:
        return self._call("read1", *args)

    def readline(self, *args: Any) -> Any:
        return self._call("readline", *args)

    def readlines(self, *args: Any) -> Any:
        return self._call("readlines", *args)

    def __iter__(self) -> Iterator[Any]:
        while True:
            line = self.readline()
            if not line:
                return
            yield line

    def isatty(self) -> bool:
        try:
            return bool(self._stream.isatty())
        except (OSError, ValueError, AttributeError):
            return False

    @property
    def buffer(self) -> _Guard:
        """The binary stream below, guarded the same way."""
        if self._buffer is None:
            self._buffer = _Guard(self._stream.buffer, self._role, binary=True)
        return self._buffer


class WholeWrites:
    """Sections of output during which Ctrl-C (SIGINT) waits for the section's end: made by
    :func:`whole_writes`, entered with ``with whole:`` around a piece written and counted together.

    A first Ctrl-C in a section is raised as ``KeyboardInterrupt`` when the section ends (not when
    it ends with an error of its own); a second one is raised at once (a write blocked on a reader
    that stopped reading can still be left). Outside the sections Ctrl-C is raised as usual.
    Sections may nest (the outermost one counts). Entering one costs an attribute update: cheap
    enough for every result of a batch.
    """

    def __init__(self) -> None:
        self.depth = 0  # sections entered and not yet left
        self.pending = False

    def __enter__(self) -> None:
        self.depth += 1

    def __exit__(self, kind: Any, *_: Any) -> None:
        self.depth -= 1
        if self.pending and not self.depth:
            self.pending = False
            if kind is None:
                raise KeyboardInterrupt

    def on_sigint(self, signum: int, frame: Any) -> None:
        """The SIGINT handler while :func:`whole_writes` runs."""
        if self.depth and not self.pending:
            self.pending = True
            return
        raise KeyboardInterrupt


@contextmanager
def whole_writes() -> Iterator[WholeWrites]:
    """For the block, Ctrl-C held back in the sections of the :class:`WholeWrites` it yields, so that
    a ``--json`` document streamed on stdout is never cut inside a member (the runner then ends it:
    one whole document).

    The handler is put in place only where Python's own (``KeyboardInterrupt``) is, from the main
    thread: a SIGINT ignored stays ignored; elsewhere the sections hold nothing back. The previous
    handler is put back after the block.
    """
    whole = WholeWrites()
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield whole
        return
    try:
        saved = signal.signal(signal.SIGINT, whole.on_sigint)
    except ValueError:  # not the main thread: only it may handle signals
        yield whole
        return
    try:
        yield whole
    finally:
        signal.signal(signal.SIGINT, saved)


def _write_bytes(buffer: Any, data: Any) -> None:
    """``buffer.write`` until all of ``data`` is taken; a short count is followed by another write."""
    view = memoryview(data).cast("B")
    while len(view):
        n = buffer.write(view)
        if n is None:  # a non-blocking stream that would block: not a standard-stream case
            raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))
        if n <= 0:
            raise OSError(errno.EIO, "write() took no bytes")
        view = view[n:]


@contextmanager
def guarded() -> Iterator[None]:
    """Wrap ``sys.stdin``, ``sys.stdout`` and ``sys.stderr`` for the block (one invocation)."""
    saved = sys.stdin, sys.stdout, sys.stderr
    sys.stdin = _Guard(saved[0] if saved[0] is not None else _Closed(), "stdin")
    sys.stdout = _Guard(saved[1] if saved[1] is not None else _Closed(), "stdout")
    sys.stderr = _Guard(saved[2] if saved[2] is not None else _Closed(), "stderr")
    try:
        yield
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved


def occupy_closed_descriptors() -> None:
    """Open ``/dev/null`` on descriptors 0-2 the process was started without.

    Python already set the matching ``sys.std*`` to ``None`` (so the command still sees the
    stream as closed), but a file opened later must not get descriptor 1 and be taken for stdout.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            new = os.open(os.devnull, os.O_RDWR)
            if new != fd:
                os.dup2(new, fd)
                os.close(new)


def finish_process(code: int) -> int:
    """Before exit: flush stdout and stderr; one that fails is pointed at ``/dev/null``.

    Python flushes both at shutdown and, when that fails, prints "Exception ignored" and exits
    120; after a broken pipe or a full disk the buffered rest is dropped instead. Returns the exit
    code: ``code``, or :data:`EXIT_BROKEN_PIPE` when a successful command's last output found its
    reader gone.
    """
    for stream, fd in ((sys.__stdout__, 1), (sys.__stderr__, 2)):
        if stream is None:
            continue
        try:
            stream.flush()
        except (OSError, ValueError) as exc:
            if fd == 1 and code == 0 and getattr(exc, "errno", None) == errno.EPIPE:
                code = EXIT_BROKEN_PIPE
            try:
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, fd)
                os.close(null)
                stream.flush()
            except (OSError, ValueError):
                pass
    return code
