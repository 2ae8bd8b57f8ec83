"""Safety commands: encrypt, decrypt (encryption at rest of private members) and doctor."""

from __future__ import annotations

from typing import Optional

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
    from prisme_keys.store import doctor as doctor_mod

    st = state(ctx)
    verifier_cache_flag(st, verifier_cache)
    rep = doctor_mod.audit(st.settings, st.now())
    if st.json:
        output.emit_json(rep.to_dict())
    else:
        rows = [
            [f.severity, f.code, f.message] for f in rep.findings if f.severity != "info" or st.verbose or not st.quiet
        ]
        if rows:
            output.table(["severity", "check", "finding"], rows)
        problems = sum(1 for f in rep.findings if f.severity in doctor_mod.PROBLEM)
        output.line(
            f"{rep.path}: healthy" if rep.healthy else f"{rep.path}: {problems} problem{'s' if problems != 1 else ''}"
        )
    if not rep.healthy:
        raise typer.Exit(EXIT_KEYFILE)
