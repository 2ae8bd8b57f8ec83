"""The ``prisme-keys`` command line (Typer). The only package that imports typer.

``main()`` runs the app and maps every :class:`prisme_keys.errors.PrismeKeysError` to one
line on stderr (or a JSON object with ``--json``) and its documented exit code; any other
exception is exit 1 without a traceback unless ``--debug`` / ``PRISME_KEYS_DEBUG=1``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any, Optional

import typer

from .. import __version__
from ..errors import EXIT_INTERRUPTED, PrismeKeysError, UsageError

HELP = (
    "Manage the RSA signing keys (JWKs) of a Prisme.ai-style API gateway.\n\n"
    "Generate, rotate and prune keys in a local or shared key file, export the public JWKS, "
    "mint, decode and verify tokens, and check a published JWKS from CI.\n\n"
    "Exit codes: 0 ok, 1 internal error, 2 usage, 3 configuration, 4 key file, 5 malformed token, "
    "6 signature rejected, 7 claims rejected, 8 no usable key, 9 JWKS fetch failed, 10 check failed, "
    "11 notification failed, 130 interrupted."
)

app = typer.Typer(
    name="prisme-keys",
    help=HELP,
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain Click help: no rich import for --help (start-up time)
    context_settings={"help_option_names": ["-h", "--help"]},
)


@dataclass
class State:
    """Global options of one invocation, and the settings they produce (loaded on first use)."""

    flags: dict[str, Any] = field(default_factory=dict)
    json: bool = False
    quiet: bool = False
    verbose: bool = False
    debug: bool = False
    _settings: Any = None

    @property
    def settings(self) -> Any:
        """The effective :class:`prisme_keys.settings.Settings` (raises ConfigError on a bad value)."""
        if self._settings is None:
            from .. import settings as settings_mod

            self._settings = settings_mod.load(self.flags)
        return self._settings

    def now(self) -> Any:
        """The time to act at (``--now`` or the clock)."""
        from .. import clock

        return clock.now()


_STATE = State()
_ARGV: list[str] = []  # the arguments of the running main(), for eager callbacks


def state() -> State:
    """The current invocation's :class:`State`."""
    return _STATE


def _version(value: bool) -> None:
    if value:
        if "--json" in _ARGV:  # eager: runs before --json is parsed
            typer.echo(f'{{"version": "{__version__}"}}')
        else:
            typer.echo(f"prisme-keys {__version__}")
        raise typer.Exit(0)


@app.callback()
def _global(
    key_file: Optional[str] = typer.Option(
        None, "--key-file", envvar="PRISME_KEYS_FILE", show_envvar=True, metavar="PATH",
        help="Key file (default: <user data dir>/prisme-keys/keys.json).", show_default=False),
    config: Optional[str] = typer.Option(
        None, "--config", envvar="PRISME_KEYS_CONFIG", show_envvar=True, metavar="PATH",
        help="TOML settings file (default: <user config dir>/prisme-keys/config.toml)."),
    passphrase_file: Optional[str] = typer.Option(
        None, "--passphrase-file", metavar="FILE",
        help="Read the passphrase of an encrypted key file from FILE's first line "
             "(also PRISME_KEYS_PASSPHRASE_FILE; or set PRISME_KEYS_PASSPHRASE; never a command-line value)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document on stdout instead of text."),
    now: Optional[str] = typer.Option(
        None, "--now", metavar="TIME",
        help="Act as if the time were TIME: ISO-8601, Unix seconds, or an offset like +31d, -2h."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Print only results and errors."),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="Print more detail on stderr."),
    debug: bool = typer.Option(False, "--debug", envvar="PRISME_KEYS_DEBUG",
                               help="Show a traceback on internal errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Global options come before the command."""
    st = _STATE
    for flag, value in (("--key-file", key_file), ("--config", config), ("--passphrase-file", passphrase_file)):
        if value is not None and not value.strip():
            raise UsageError(f"{flag}: empty path")
    st.flags = {"key_file": key_file, "config_path": config, "passphrase_file": passphrase_file}
    st.json, st.quiet, st.verbose, st.debug = json_out, quiet, verbose, debug
    if now is not None:
        from .. import clock

        try:
            clock.set_now(clock.parse_time(now))
        except ValueError as exc:
            raise UsageError(f"--now: {exc}") from None


# The command modules register their commands on the app when imported, in the order --help lists them.
from . import lifecycle_cmds  # noqa: E402,F401,I001
from . import tokens_cmds  # noqa: E402,F401
from . import check_cmds  # noqa: E402,F401
from . import sync_cmds  # noqa: E402,F401
from . import safety_cmds  # noqa: E402,F401
from . import config_cmds  # noqa: E402,F401


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return (and exit with) its exit code."""
    argv = sys.argv[1:] if argv is None else argv
    _ARGV[:] = argv
    debug = os.environ.get("PRISME_KEYS_DEBUG", "") not in ("", "0") or "--debug" in argv
    as_json = "--json" in argv
    code = 0
    try:
        rc = app(args=argv, prog_name="prisme-keys", standalone_mode=False)
        code = rc if isinstance(rc, int) else 0
        if code == EXIT_INTERRUPTED:  # Ctrl-C: the Click layer returns 130 without a word
            sys.stderr.write("prisme-keys: interrupted\n")
    except PrismeKeysError as exc:
        from ..output import error

        error(exc.message, code=exc.code, exit_code=exc.exit_code, as_json=as_json or _STATE.json)
        code = exc.exit_code
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        sys.stderr.write("prisme-keys: interrupted\n")
        code = EXIT_INTERRUPTED
    except typer.TyperException as exc:
        if as_json:
            from ..output import error

            error(exc.format_message(), code="usage_error", exit_code=2, as_json=True)
        elif hasattr(exc, "show"):
            exc.show()
        else:
            sys.stderr.write(f"prisme-keys: error: {exc.format_message()}\n")
        code = getattr(exc, "exit_code", 2)
    except KeyboardInterrupt:
        sys.stderr.write("prisme-keys: interrupted\n")
        code = EXIT_INTERRUPTED
    except BrokenPipeError:
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        code = 0
    except Exception as exc:  # a bug: one line, no traceback unless --debug
        if debug:
            import traceback

            traceback.print_exc()
        from ..output import error

        detail = str(exc)
        detail = detail if len(detail) <= 160 else detail[:160] + "..."  # never a whole token or key
        error(f"internal error: {type(exc).__name__}: {detail} (run with --debug for a traceback)",
              code="internal_error", exit_code=1, as_json=as_json)
        code = 1
    try:
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):
        pass
    return code


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
