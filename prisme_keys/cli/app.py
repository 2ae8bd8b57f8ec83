"""The Typer app, its global options, and the state of one invocation (:class:`State`).

Every invocation builds its own :class:`State` in :func:`main` and hands it to Click as the
context object; commands reach it through :func:`state`. Nothing here is module-level mutable
state: two ``main()`` calls in one process never see each other's options.

This module and the ``*_cmds`` modules evaluate their annotations when imported (no ``from
__future__ import annotations``): Typer reads every command's signature with
``typing.get_type_hints`` on every run, and evaluating string annotations there cost about 4 ms
of each start (the Click command tree took 6.3 ms to build instead of 2.5 ms).
"""

import os
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from typer.core import TyperGroup, TyperOption

from prisme_keys import __version__, clock
from prisme_keys.errors import UsageError

if TYPE_CHECKING:  # loaded on first use (State.settings): --help and decode need no settings
    from prisme_keys.settings import Settings

HELP = (
    "Manage the RSA signing keys (JWKs) of a Prisme.ai-style API gateway.\n\n"
    "Generate, rotate and prune keys in a local or shared key file, export the public JWKS, "
    "mint, decode and verify tokens, and check a published JWKS from CI.\n\n"
    "Exit codes: 0 ok, 1 internal error, 2 usage, 3 configuration, 4 key file, 5 malformed token, "
    "6 signature rejected, 7 claims rejected, 8 no usable key, 9 JWKS fetch failed, 10 check failed, "
    "11 notification failed, 130 interrupted, 141 broken pipe (the reader of stdout went away)."
)


#: The output options every command also accepts after its name: (flags, State attribute, help).
OUTPUT_OPTIONS: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("--json",), "json", "Print one JSON document on stdout instead of text (also accepted before the command)."),
    (("-q", "--quiet"), "quiet", "Print only results and errors (also accepted before the command)."),
    (("-v", "--verbose"), "verbose", "Print more detail on stderr (also accepted before the command)."),
)


def _set_output_flag(attr: str) -> Any:
    def callback(ctx: Any, param: Any, value: bool) -> bool:
        if value:
            setattr(state(ctx), attr, True)
        return value

    return callback


def _add_output_options(cmd: Any) -> None:
    """Give ``cmd`` (and, for a group, each of its commands) ``--json``, ``-q`` and ``-v``."""
    if isinstance(cmd, TyperGroup):
        for sub in cmd.commands.values():
            _add_output_options(sub)
        return
    have = {opt for p in cmd.params for opt in getattr(p, "opts", ())}
    for flags, attr, text in OUTPUT_OPTIONS:
        if have.isdisjoint(flags):
            cmd.params.append(
                TyperOption(
                    param_decls=list(flags),
                    is_flag=True,
                    default=False,
                    expose_value=False,
                    callback=_set_output_flag(attr),
                    help=text,
                )
            )


class _Group(TyperGroup):
    """The root command group.

    Every command accepts the output options after its name too: the group is built afresh by
    Typer for each invocation (and for the man page and completion generators), so commands
    added later get ``--json``, ``-q`` and ``-v`` without doing anything.

    It keeps a broken pipe that is not stdout away from Click. Click turns any ``EPIPE`` into a
    silent exit 1. Standard output never raises one (its failures are
    :class:`prisme_keys.cli.streams.OutputFailed`), so an ``EPIPE`` that gets here came from a
    socket the command should have mapped: it is reported as an internal error.
    """

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        for cmd in self.commands.values():
            _add_output_options(cmd)

    def list_commands(self, ctx: Any) -> list[str]:
        """The command names in the order they were added, without building any command."""
        return list(self.commands)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError as exc:
            raise RuntimeError(f"broken pipe outside standard output: {exc}") from exc


class _LazyCommands(MutableMapping[str, Any]):
    """The root group's commands by name, each built into a Click command when first looked up.

    Typer builds every command's Click object (signature, type hints, parameters) each time the
    group is built, about 4 ms for all of them; one invocation needs one. Iterating gives every
    name in registration order without building anything (``--help`` and completion build them all).
    """

    def __init__(self, registry: typer.Typer) -> None:
        from typer.main import get_command_name

        self._registry = registry
        self._infos: dict[str, Any] = {}
        for info in registry.registered_commands:
            self._infos[info.name or get_command_name(info.callback.__name__)] = info  # type: ignore[union-attr]
        for group in registry.registered_groups:
            self._infos[str(group.name or group.typer_instance.info.name)] = group  # type: ignore[union-attr]
        self._built: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        cmd = self._built.get(name)
        if cmd is None:
            cmd = self._built[name] = self._build(self._infos[name])
        return cmd

    def _build(self, info: Any) -> Any:
        from typer.main import get_command_from_info, get_group_from_info
        from typer.models import CommandInfo

        reg = self._registry
        if isinstance(info, CommandInfo):
            cmd: Any = get_command_from_info(
                info, pretty_exceptions_short=reg.pretty_exceptions_short, rich_markup_mode=reg.rich_markup_mode
            )
        else:
            cmd = get_group_from_info(
                info,
                pretty_exceptions_short=reg.pretty_exceptions_short,
                rich_markup_mode=reg.rich_markup_mode,
                suggest_commands=reg.suggest_commands,
            )
        _add_output_options(cmd)
        return cmd

    def __setitem__(self, name: str, cmd: Any) -> None:
        self._infos.setdefault(name, None)
        self._built[name] = cmd

    def __delitem__(self, name: str) -> None:
        del self._infos[name]
        self._built.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._infos)

    def __len__(self) -> int:
        return len(self._infos)


def root_command(registry: typer.Typer) -> Any:
    """The root Click group of ``registry`` (the :data:`app` with its commands), each command built
    on first use (:class:`_LazyCommands`); what ``typer.main.get_command(registry)`` gives, faster."""
    import copy

    shell = copy.copy(registry)  # the callback and the global options only
    shell.registered_commands, shell.registered_groups = [], []
    group = typer.main.get_command(shell)
    group.commands = _LazyCommands(registry)  # type: ignore[attr-defined]
    return group


app = typer.Typer(
    name="prisme-keys",
    cls=_Group,
    help=HELP,
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain Click help: no rich import for --help (start-up time)
    context_settings={"help_option_names": ["-h", "--help"]},
)


#: ``--runtime-url`` of every command that can announce (rotate, prune, revoke, import).
RuntimeUrlAfterChange = Annotated[
    Optional[str],
    typer.Option(
        "--runtime-url",
        metavar="URL",
        help="With --notify: POST the signing key to URL/sys/certs (implies --notify).",
    ),
]
#: ``--notify`` of the cron commands (rotate, prune).
NotifyPending = Annotated[
    bool,
    typer.Option(
        "--notify",
        help="Then announce whatever is pending (this run's change, a next key that started signing, "
        "a notification that failed earlier) on the Redis broker and update the runtime (see notify).",
    ),
]


class State:
    """The global options of one invocation and what they produce.

    Attributes:
        argv: the arguments of this invocation (for eager options such as ``--version``).
        environ: the environment the settings are read from.
        flags: global path flags, ``{key_file, config_path, passphrase_file}`` (``None`` when absent).
        json / quiet / verbose / debug: output mode.
        now_override: the ``--now`` time (UTC), or ``None`` to use the real clock.
        write_at_now: ``--write-at-now``: a command that changes the key file or announces may
            act at a ``--now`` away from the real clock.
        command_options: the option names of the running command (``--dry-run``, ...), set by
            :func:`state`, so that advice names only options the command has.
        end_document: set by a command that streams its ``--json`` document (``mint --count``,
            ``verify --batch``): writes the end of that document, if begun and not yet ended, given
            the exit code the command stops with; called once, by
            :func:`prisme_keys.cli.runner.invoke` when the command ends, before an error is reported.
    """

    __slots__ = (
        "_settings",
        "argv",
        "command_options",
        "command_path",
        "debug",
        "end_document",
        "environ",
        "flags",
        "json",
        "now_override",
        "quiet",
        "verbose",
        "write_at_now",
    )

    def __init__(
        self, argv: list[str] | None = None, environ: Mapping[str, str] | None = None, debug: bool = False
    ) -> None:
        # A plain class: a dataclass costs about 0.5 ms to create at import, on every command.
        self.argv: list[str] = argv if argv is not None else []
        self.environ: Mapping[str, str] = environ if environ is not None else os.environ
        self.flags: dict[str, Any] = {}
        self.json = self.quiet = self.verbose = False
        self.debug = debug
        self.now_override: datetime | None = None
        self.write_at_now = False
        self.command_options: frozenset[str] = frozenset()
        self.command_path = "prisme-keys"
        self.end_document: Callable[[int], None] | None = None
        self._settings: Settings | None = None

    @property
    def settings(self) -> "Settings":
        """The effective :class:`prisme_keys.settings.Settings`, loaded on first use, with the
        terminal's passphrase prompt (:func:`prisme_keys.cli.common.passphrase_prompt`).

        Raises:
            ConfigError: a bad setting value or an unreadable config file.
        """
        if self._settings is None:
            import dataclasses

            from prisme_keys import settings as settings_mod
            from prisme_keys.cli.common import passphrase_prompt

            loaded = settings_mod.load(self.flags, self.environ)
            self._settings = dataclasses.replace(loaded, passphrase_prompt=passphrase_prompt)
        return self._settings

    def set_setting_flags(self, **values: Any) -> None:
        """Add settings given by a command's own options (``verifier_cache=...``) to the flags.

        They take precedence over the environment and config file, like the global flags;
        ``None`` values are ignored. Settings already loaded are loaded again on next use.
        """
        self.flags.update({k: v for k, v in values.items() if v is not None})
        self._settings = None

    def now(self) -> datetime:
        """The time this invocation acts at: ``--now`` when given, else the real clock (UTC)."""
        return self.now_override if self.now_override is not None else clock.now()

    def write_now(self, does: str = "changes the key file", act: str = "write") -> datetime:
        """The time a command that writes or announces acts at (:meth:`now`), once allowed.

        ``--now`` is for planning: more than :data:`prisme_keys.clock.CLOCK_SKEW` away from the
        real clock a command that changes the key file or sends announcements acts only with
        ``--write-at-now``, so ``--now +45d prune`` cannot delete keys whose tokens are still
        valid, ``--now +400d rotate`` write a key dated next year, nor ``notify`` publish events
        dated then.

        Args:
            does: what the command does, for the refusal ("changes the key file").
            act: the verb of the ``--write-at-now`` advice ("write", "announce").

        Raises:
            UsageError: code ``now_not_real``, naming ``--write-at-now``, and ``--dry-run`` when the
                running command has it (else advising to drop ``--now``).
        """
        at = self.now()
        if self.now_override is None or self.write_at_now:
            return at
        offset = clock.skew_from_real(at)
        if offset is None:
            return at
        where = "ahead of" if offset > 0 else "behind"
        advice = (
            f"add --dry-run to see what it would do then, or --write-at-now to {act} as of that time"
            if "--dry-run" in self.command_options
            else f"drop --now to act at the real clock, or add --write-at-now to {act} as of that time"
        )
        raise UsageError(
            f"--now {clock.iso(at)} is {clock.span(offset)} {where} the real clock and this command {does}; {advice}",
            code="now_not_real",
        )


def state(ctx: typer.Context) -> State:
    """The running invocation's :class:`State` (the context object :func:`prisme_keys.cli.main` made)."""
    obj = ctx.find_object(State)
    if obj is None:  # invoked without main() (e.g. Typer's CliRunner): a fresh state
        obj = ctx.ensure_object(State)
    obj.command_options = frozenset(opt for p in ctx.command.params for opt in getattr(p, "opts", ()))
    obj.command_path = ctx.command_path
    return obj


def _version(ctx: typer.Context, value: bool) -> None:
    if value:
        argv = ctx.obj.argv if isinstance(ctx.obj, State) else []
        if "--json" in argv:  # eager: runs before --json is parsed
            typer.echo(f'{{"version": "{__version__}"}}')
        else:
            typer.echo(f"prisme-keys {__version__}")
        raise typer.Exit(0)


@app.callback()
def _global(
    ctx: typer.Context,
    key_file: Optional[str] = typer.Option(
        None,
        "--key-file",
        metavar="PATH",
        help="Key file (also PRISME_KEYS_FILE; default: <user data dir>/prisme-keys/keys.json).",
        show_default=False,
    ),
    config: Optional[str] = typer.Option(
        None,
        "--config",
        metavar="PATH",
        help="TOML settings file (also PRISME_KEYS_CONFIG; default: <user config dir>/prisme-keys/config.toml).",
    ),
    passphrase_file: Optional[str] = typer.Option(
        None,
        "--passphrase-file",
        metavar="FILE",
        help="Read the passphrase of an encrypted key file from FILE's first line "
        "(also PRISME_KEYS_PASSPHRASE_FILE; or set PRISME_KEYS_PASSPHRASE; never a command-line value).",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document on stdout instead of text."),
    now: Optional[str] = typer.Option(
        None,
        "--now",
        metavar="TIME",
        help="Act as if the time were TIME: ISO-8601, Unix seconds, or an offset like +31d, -2h. For planning: "
        "a command that changes the key file or announces refuses a TIME away from the real clock "
        "(see --write-at-now).",
    ),
    write_at_now: bool = typer.Option(
        False,
        "--write-at-now",
        help="Let a command that changes the key file or announces act at the --now time (backdated imports, "
        "time-travel tests); without it such a --now more than 5 minutes from the real clock is refused.",
    ),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Print only results and errors."),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="Print more detail on stderr."),
    debug: bool = typer.Option(False, "--debug", help="Show a traceback on internal errors."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Global options come before the command (--json, -q and -v may also follow it)."""
    st = ctx.ensure_object(State)
    for flag, value in (("--key-file", key_file), ("--config", config), ("--passphrase-file", passphrase_file)):
        if value is not None and not value.strip():
            raise UsageError(f"{flag}: empty path")
    st.flags = {"key_file": key_file, "config_path": config, "passphrase_file": passphrase_file}
    st.json, st.quiet, st.verbose = st.json or json_out, st.quiet or quiet, st.verbose or verbose
    st.write_at_now = write_at_now
    st.debug = st.debug or debug
    if now is not None:
        try:
            st.now_override = clock.parse_time(now)
        except ValueError as exc:
            raise UsageError(f"--now: {exc}") from None
