"""The ``prisme-keys`` command line (Typer). The only package that imports typer.

``main()`` runs the app and maps every :class:`prisme_keys.errors.PrismeKeysError` to one
line on stderr (or a JSON object with ``--json``), worded for the command line
(:func:`prisme_keys.cli.words.say`: flags, hints), and its documented exit code; any other
exception is exit 1 without a traceback unless ``--debug`` / ``PRISME_KEYS_DEBUG=1``.

This module itself stays light: typer and the command modules load on the first :func:`main`
call (:mod:`prisme_keys.cli.runner`), so that :func:`run`, the console script, can load them
with the garbage collector paused and end the process without the interpreter's teardown.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NoReturn

from prisme_keys.cli import streams

if TYPE_CHECKING:
    from prisme_keys.cli.app import State, state

# The app with every command on it: prisme_keys.cli.runner.app (prisme_keys.cli.app is its module).
__all__ = ["State", "main", "run", "state"]


def __getattr__(name: str) -> Any:
    """``State`` and ``state`` of :mod:`prisme_keys.cli.app`, loaded on first use (PEP 562)."""
    if name in ("State", "state"):
        from prisme_keys.cli import runner

        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Run the command line once; return its exit code.

    Args:
        argv: the arguments after the program name (default ``sys.argv[1:]``).
        env: the environment to read settings from (default ``os.environ``).

    Each call builds its own :class:`State`: settings, output mode and ``--now`` never leak
    from one call into the next. The standard streams are guarded for the call (see
    :mod:`prisme_keys.cli.streams`): a closed or failing stdout is exit 4, a reader that went
    away exit 141 without a word, a closed stdin exit 2 when read, a closed stderr only silences.
    """
    from prisme_keys.cli import runner

    argv = list(sys.argv[1:] if argv is None else argv)
    environ = os.environ if env is None else env
    debug = environ.get("PRISME_KEYS_DEBUG", "") not in ("", "0") or "--debug" in argv
    st = runner.State(argv=argv, environ=environ, debug=debug)
    with streams.guarded():
        try:
            code = runner.invoke(st)
            sys.stdout.flush()
        except streams.OutputFailed as exc:
            code = runner.output_failed(exc, "--json" in argv or st.json)
        except KeyboardInterrupt:  # Ctrl-C again while a stop was being reported: stop at once, no traceback
            from prisme_keys.errors import EXIT_INTERRUPTED

            code = EXIT_INTERRUPTED
    return code


def run() -> NoReturn:
    """Console-script entry point: :func:`main`, then a clean exit whatever became of the streams.

    Two savings that only a whole process can make, each about a tenth of a one-shot command
    (``tests/benchmarks/bench_peers.py``): the command line's modules load with the garbage
    collector paused (nothing they build is garbage), and the process ends without the
    interpreter's teardown (see :func:`end_process`).
    """
    import gc

    streams.occupy_closed_descriptors()
    _utf8_stdout()
    try:
        gc.disable()
        try:
            from prisme_keys.cli import runner  # noqa: F401  (typer and the command modules)

            gc.freeze()  # what the imports built lives as long as the process: no collection walks it again
        finally:
            gc.enable()
        code = main()
    except KeyboardInterrupt:  # Ctrl-C while the command line loads, before it can report one itself
        code = _interrupted_early()
    end_process(streams.finish_process(code))


def _utf8_stdout() -> None:
    """Write stdout in UTF-8 whatever the locale or ``PYTHONIOENCODING`` chose: JSON is UTF-8 (RFC 8259
    section 8.1), and a claim's text must never make a command fail (under an ASCII stdout, an ``é``
    was exit 1). Only the console script does this: the process's streams are its own."""
    out = sys.stdout
    encoding = getattr(out, "encoding", None)
    if encoding and encoding.replace("_", "-").lower() not in ("utf-8", "utf8"):
        try:
            out.reconfigure(encoding="utf-8")  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):  # not a text file of its own: left as it is
            pass


def _interrupted_early() -> int:
    """Report a Ctrl-C that came while the command line was loading, as the command line reports one
    (:func:`prisme_keys.cli.runner.invoke`): one line, or with ``--json`` the error object; exit 130."""
    from prisme_keys.cli.output import interrupted
    from prisme_keys.errors import EXIT_INTERRUPTED

    interrupted("--json" in sys.argv[1:])
    return EXIT_INTERRUPTED


def end_process(code: int) -> NoReturn:
    """End the process with exit status ``code``, skipping the interpreter's teardown when nothing needs it.

    The teardown frees every module and object one at a time (about 12 ms after a command; the
    kernel frees the memory at once). What it would still do for the process is done here first:
    the standard streams were flushed by :func:`streams.finish_process`, and the ``atexit``
    callbacks run. When a non-daemon thread other than the main one is still alive, the normal
    exit (which waits for it) is taken instead.
    """
    import threading

    main_thread = threading.main_thread()
    if any(t is not main_thread and not t.daemon for t in threading.enumerate()):
        sys.exit(code)
    import atexit

    atexit._run_exitfuncs()
    os._exit(code)
