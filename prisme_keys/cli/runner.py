"""Running the app once: the Click layer, the command modules, and every exception mapped to an exit code.

Imported by :func:`prisme_keys.cli.main` on its first call (typer and the command modules are the
bulk of the start-up time; :func:`prisme_keys.cli.run` imports them with the garbage collector
paused).
"""

from __future__ import annotations

import sys

import typer

from prisme_keys.cli import streams
from prisme_keys.cli.app import State, app, root_command, state
from prisme_keys.cli.output import MESSAGE_LIMIT
from prisme_keys.errors import EXIT_INTERRUPTED, EXIT_KEYFILE, InvalidArgument, PrismeKeysError, UsageError
from prisme_keys.text import cap, shown

__all__ = ["State", "app", "invoke", "output_failed", "state"]

# The command modules register their commands on the app when imported, in the order --help lists them.
from prisme_keys.cli import lifecycle_cmds  # noqa: F401, I001
from prisme_keys.cli import schedule_cmds  # noqa: F401
from prisme_keys.cli import tokens_cmds  # noqa: F401
from prisme_keys.cli import check_cmds  # noqa: F401
from prisme_keys.cli import sync_cmds  # noqa: F401
from prisme_keys.cli import revoke_cmds  # noqa: F401
from prisme_keys.cli import safety_cmds  # noqa: F401
from prisme_keys.cli import config_cmds  # noqa: F401


def output_failed(exc: streams.OutputFailed, as_json: bool) -> int:
    """Exit code (and the line on stderr) after writing stdout failed."""
    if exc.broken_pipe:  # the reader went away: stop quietly, as a process killed by SIGPIPE
        return streams.EXIT_BROKEN_PIPE
    from prisme_keys.cli.output import error

    error(exc.message(), code="stdout_failed", exit_code=EXIT_KEYFILE, as_json=as_json)
    return EXIT_KEYFILE


def _refuse_nul(argv: list[str]) -> None:
    """Refuse an argument holding a NUL character (no process can be given one; ``main([...])`` can),
    which no file name, URL or claim may hold.

    Raises:
        UsageError: naming the option the argument belongs to (exit 2).
    """
    for i, arg in enumerate(argv):
        if "\0" in arg:
            flag, eq, value = arg.partition("=")
            if not (eq and flag.startswith("--")):
                prev, value = argv[i - 1] if i else "", arg
                flag = prev if prev.startswith("-") and "=" not in prev else f"argument {i + 1}"
            raise UsageError(f"{flag}: {shown(value)} holds a NUL character")


def invoke(st: State) -> int:
    """Run the app for ``st``; map every exception but :class:`streams.OutputFailed` to an exit code."""
    argv = st.argv
    as_json = "--json" in argv
    try:
        root = root_command(app)  # a TyperException below comes from root.main: root is bound
        _refuse_nul(argv)
        rc = root.main(args=argv, prog_name="prisme-keys", standalone_mode=False, obj=st)
        code = rc if isinstance(rc, int) else 0
        if code == EXIT_INTERRUPTED:  # Ctrl-C: the Click layer returns 130 without a word
            _interrupted(as_json or st.json, st)
        else:  # a command that returned its exit code (typer.Exit) with its document still open
            _end_document(st, code)
    except PrismeKeysError as exc:
        _end_document(st, exc.exit_code)
        from prisme_keys.cli.output import error
        from prisme_keys.cli.words import say

        message = say(exc.message)
        if isinstance(exc, InvalidArgument) and not (as_json or st.json):  # a value out of range, as Click's
            message = _see_help(message, st.command_path)
        error(message, code=exc.code, exit_code=exc.exit_code, as_json=as_json or st.json)
        code = exc.exit_code
    except typer.Exit as exc:
        code = exc.exit_code
        _end_document(st, code)
    except typer.Abort:
        code = _interrupted(as_json or st.json, st)
    except typer.TyperException as exc:
        code = _click_error(exc, as_json or st.json, argv, set(root.commands))
    except KeyboardInterrupt:
        code = _interrupted(as_json or st.json, st)
    except streams.OutputFailed:
        raise
    except Exception as exc:  # a bug: one line, no traceback unless --debug
        _end_document(st, 1)
        if st.debug:
            import traceback

            traceback.print_exc()
        from prisme_keys.cli.output import error

        detail = str(exc)
        detail = detail if len(detail) <= 160 else detail[:160] + "..."  # never a whole token or key
        error(
            f"internal error: {type(exc).__name__}: {detail} (run with --debug for a traceback)",
            code="internal_error",
            exit_code=1,
            as_json=as_json,
        )
        code = 1
    return code


#: A "No such option" suggestion is kept only this close to what was typed (difflib ratio, 0 to 1):
#: ``--verbos`` suggests ``--verbose`` (0.94), ``--bogus`` suggests nothing (0.63 to ``--verbose``).
SUGGESTION_CUTOFF = 0.75


def _end_document(st: State, code: int) -> None:
    """End the ``--json`` document a command began streaming on stdout and did not finish
    (:attr:`State.end_document`), as the command stops with exit ``code``: stdout then holds one
    whole document. Runs before the error is reported; a stdout that fails here fails as any write."""
    end, st.end_document = st.end_document, None
    if end is not None:
        end(code)


def _interrupted(as_json: bool, st: State) -> int:
    """Report Ctrl-C (SIGINT): ``prisme-keys: interrupted``, or with ``--json`` the error object of code
    ``interrupted``; return its exit code, 130. A ``--json`` document begun on stdout is ended first."""
    _end_document(st, EXIT_INTERRUPTED)
    from prisme_keys.cli.output import interrupted

    interrupted(as_json)
    return EXIT_INTERRUPTED


def _see_help(message: str, command: str) -> str:
    """A usage error's line: ``MESSAGE (see COMMAND --help)``, the message capped so the pointer stays."""
    return f"{cap(message, MESSAGE_LIMIT - 200, tail=200)} (see {command} --help)"


def _click_error(exc: typer.TyperException, as_json: bool, argv: list[str], named: set[str]) -> int:
    """Report an error of the Click layer (a usage error: exit 2) as one line on stderr; return its exit code.

    The line is ``prisme-keys: error: MESSAGE (see prisme-keys CMD --help)`` instead of Click's block
    (usage, hint, blank line, error); with ``--json`` one ``{code, message, exit}`` object without
    the pointer. No command at all (``prisme-keys``, ``prisme-keys config``) prints the command's
    help on stderr, formatted, with exit 2: it is a usage error, and stdout stays clean.
    """
    from prisme_keys.cli.output import error

    ctx = getattr(exc, "ctx", None)
    # Click raises some parse errors ("Option '--count' requires an argument") without a context: the
    # command is then the first argument that is one of the ``named`` commands.
    command = ctx.command_path if ctx is not None else " ".join(["prisme-keys", *[a for a in argv if a in named][:1]])
    exit_code = int(getattr(exc, "exit_code", 2))
    if type(exc).__name__ == "NoArgsIsHelpError":
        if as_json:
            error("Missing command", code="usage_error", exit_code=exit_code, as_json=True)
        else:
            sys.stderr.write(exc.format_message().rstrip("\n") + "\n")
        return exit_code
    message = _click_message(exc)
    if not as_json:
        message = _see_help(message, command)
    error(message, code="usage_error", exit_code=exit_code, as_json=as_json)
    return exit_code


def _click_message(exc: typer.TyperException) -> str:
    """Click's message without its trailing period; a "No such option" keeps only close suggestions."""
    possibilities = getattr(exc, "possibilities", None)
    if type(exc).__name__ == "NoSuchOption" and possibilities:
        import difflib

        typed = str(getattr(exc, "option_name", ""))
        close = [p for p in possibilities if difflib.SequenceMatcher(None, typed, p).ratio() >= SUGGESTION_CUTOFF]
        message = str(getattr(exc, "message", exc))
        if close:
            message += f"; did you mean {' or '.join(sorted(close))}?"
    else:
        message = exc.format_message()
    return message[:-1] if message.endswith(".") and not message.endswith("..") else message
