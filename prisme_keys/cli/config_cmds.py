"""``config show|path|init``: the effective settings and where each came from."""

# No ``from __future__ import annotations`` here: see prisme_keys.cli.app (start-up time).
from pathlib import Path
from typing import Any, Optional

import typer

from prisme_keys.cli.app import app, state

config_app = typer.Typer(
    help="Show the effective settings, the config file path, or write a default config.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(config_app, name="config")


@config_app.command("show")
def show(ctx: typer.Context) -> None:
    """Print every effective setting, its environment variable and where its value came from, then
    the settings checked against each other (with suggested values).

    --json: {setting: {value, env, source}, ..., "checks": [{severity, code, setting, message, suggestion, kid}]}.
    """
    from prisme_keys.cli import output
    from prisme_keys.store import settings_checks

    st = state(ctx)
    rows = st.settings.describe()
    findings = settings_checks.check(st.settings, st.now())
    if st.json:
        doc: dict[str, Any] = {r["name"]: {"value": r["value"], "env": r["env"], "source": r["source"]} for r in rows}
        doc["checks"] = [f.to_dict() for f in findings]
        output.emit_json(doc)
        return
    output.table(
        ["setting", "env", "value", "source"],
        [[r["name"], r["env"], "" if r["value"] is None else r["value"], r["source"]] for r in rows],
    )
    if findings:
        output.line("")
        output.findings(findings)


@config_app.command("path")
def path(ctx: typer.Context) -> None:
    """Print the path of the config file consulted (it may not exist)."""
    from prisme_keys import settings as settings_mod
    from prisme_keys.cli import output

    st = state(ctx)
    p = settings_mod.load_config_path(st.environ, st.flags.get("config_path"))
    if st.json:
        output.emit_json({"path": str(p), "exists": Path(p).exists()})
    else:
        output.line(str(p))  # escaped: a name holding a line break stays one line


@config_app.command("init")
def init_config(
    ctx: typer.Context,
    force: bool = typer.Option(False, "--force", help="Replace an existing config file."),
    out: Optional[str] = typer.Option(
        None, "--out", "-o", metavar="FILE", help="Write to FILE instead of the config path."
    ),
) -> None:
    """Write a TOML config file holding every setting at its default.

    Refuses to replace an existing file unless --force (a target that is the key file, a lock
    file or holds private key material is named as such). A write that fails (disk full,
    read-only volume, permission denied) is exit 4.
    """
    from prisme_keys import settings as settings_mod
    from prisme_keys.cli import output
    from prisme_keys.cli.common import check_out
    from prisme_keys.errors import ConfigError, KeyFileError
    from prisme_keys.store import files

    st = state(ctx)
    target = Path(out or settings_mod.load_config_path(st.environ, st.flags.get("config_path")))
    try:
        key_file = st.settings.key_file
    except ConfigError:  # the config being replaced may be the broken one
        key_file = None
    check_out(target, private=False, key_file=key_file, force=force, flag="--out" if out else "config file")
    if target.exists() and not force:
        raise ConfigError(f"config file {target} already exists; use --force to replace it")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise KeyFileError(
            f"cannot write {target}: {files.describe_os_error(exc)} (creating its folder); nothing was written",
            code="write_failed",
        ) from None
    files.write_output(target, settings_mod.defaults_toml(), private=False, key_file=key_file, force=True)
    if st.json:
        output.emit_json({"path": str(target), "written": True})
    else:
        output.line(f"wrote {target}")
