"""Safety commands: encrypt, decrypt (encryption at rest of private members) and doctor."""

# No ``from __future__ import annotations`` here: see prisme_keys.cli.app (start-up time).
from typing import Any, Optional

import typer

from prisme_keys.cli.app import app, state
from prisme_keys.cli.common import VERIFIER_CACHE_HELP, verifier_cache_flag
from prisme_keys.errors import EXIT_KEYFILE


@app.command()
def encrypt(
    ctx: typer.Context,
    rekey: bool = typer.Option(
        False,
        "--rekey",
        help="Change the passphrase of an encrypted key file "
        "(new salt, current KDF parameters), in one atomic rewrite.",
    ),
    new_passphrase_file: Optional[str] = typer.Option(
        None,
        "--new-passphrase-file",
        metavar="FILE",
        help="With --rekey: read the new passphrase from FILE (else PRISME_KEYS_NEW_PASSPHRASE, else a prompt).",
    ),
) -> None:
    """Encrypt the private key members with a passphrase; public members and dates stay readable.

    The passphrase comes from, in order: --passphrase-file FILE (a global option, before the
    command), PRISME_KEYS_PASSPHRASE, PRISME_KEYS_PASSPHRASE_FILE, or a prompt on a terminal;
    never from a command-line value. After this,
    list, export (public), prune and check need no passphrase; mint, rotate, export --private and
    decrypt do.
    """
    from prisme_keys.cli import output
    from prisme_keys.store import protect

    st = state(ctx)
    st.write_now()  # a --now away from the real clock is refused here as for every key-file change
    if new_passphrase_file is not None and not rekey:
        from prisme_keys.errors import UsageError

        raise UsageError("--new-passphrase-file needs --rekey")
    if rekey:
        res = protect.rekey_file(st.settings, protect.new_passphrase_source(st.settings, new_passphrase_file))
    else:
        res = protect.encrypt_file(st.settings)
    if st.json:
        output.emit_json(res)
    else:
        verb = "re-encrypted" if rekey else "encrypted"
        output.line(
            f"{verb} {res['path']}: {res['keys']} key{'s' if res['keys'] != 1 else ''}, "
            f"{res['kdf'].get('name')} + {res['cipher']}"
        )


@app.command()
def decrypt(ctx: typer.Context) -> None:
    """Store the private key members in clear text again (needs the passphrase); atomic rewrite."""
    from prisme_keys.cli import output
    from prisme_keys.store import protect

    st = state(ctx)
    st.write_now()  # a --now away from the real clock is refused here as for every key-file change
    res = protect.decrypt_file(st.settings)
    if st.json:
        output.emit_json(res)
    else:
        output.line(
            f"decrypted {res['path']}: {res['keys']} key{'s' if res['keys'] != 1 else ''}; "
            "private members are now in clear text"
        )


def doctor_summary(rep: Any) -> tuple[str, str]:
    """The last line of ``doctor`` and its status: the counts add up (problems = errors + warnings).

    ``healthy: 3 keys in keys.json; 0 errors, 0 warnings, 1 note`` or
    ``2 problems: 3 keys in keys.json; 1 error, 1 warning, 1 note``.
    """
    from prisme_keys.cli.output import plural

    by = {s: sum(1 for f in rep.findings if f.severity == s) for s in ("error", "warning", "info")}
    head = "healthy" if rep.healthy else plural(by["error"] + by["warning"], "problem")
    text = (
        f"{head}: {plural(rep.keys, 'key')} in {rep.path}; "
        f"{plural(by['error'], 'error')}, {plural(by['warning'], 'warning')}, {plural(by['info'], 'note')}"
    )
    return text, "healthy" if rep.healthy else ("error" if by["error"] else "warning")


@app.command()
def doctor(
    ctx: typer.Context,
    verifier_cache: Optional[str] = typer.Option(
        None, "--verifier-cache", metavar="DURATION", help=VERIFIER_CACHE_HELP
    ),
) -> None:
    """Audit the key file without changing it: permissions, overdue rotation, expired keys, duplicate
    kids, weak or compromised keys, a signing key without private members, encryption state,
    an announcement the gateways and runtime have not had yet (since when), and the settings
    checked against each other (max age, publication lead, verifier cache, rotation period,
    2048-bit keys after 2030) with suggested values.

    Exit 0 when healthy, 4 when a problem (error or warning) is found. A passphrase, when given
    (environment or --passphrase-file; never prompted), is verified and every encrypted key authenticated.
    """
    from prisme_keys.cli import output
    from prisme_keys.cli.progress import Progress, wanted
    from prisme_keys.cli.words import say
    from prisme_keys.store import doctor as doctor_mod

    st = state(ctx)
    verifier_cache_flag(st, verifier_cache)
    with Progress("auditing", "keys", enabled=wanted(st)) as progress:
        rep = doctor_mod.audit(st.settings, st.now(), progress=progress)
    for f in rep.findings:  # the command line's words: flags and hints (see cli.words)
        f.message = say(f.message)
    if st.json:
        output.emit_json(rep.to_dict())
    else:
        rows = [
            [f.severity, f.code, f.message] for f in rep.findings if f.severity != "info" or st.verbose or not st.quiet
        ]
        if rows:
            output.table(["severity", "check", "finding"], rows, status_column=0)
        text, status = doctor_summary(rep)
        output.status_line(text, status)
    if not rep.healthy:
        raise typer.Exit(EXIT_KEYFILE)
