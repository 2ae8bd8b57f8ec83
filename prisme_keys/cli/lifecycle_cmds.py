"""Key lifecycle commands: init, rotate, prune, list, export, generate."""

# No ``from __future__ import annotations`` here: see prisme_keys.cli.app (start-up time).
import sys
from enum import Enum
from typing import Any, Optional

import typer

from prisme_keys.cli.app import NotifyPending, RuntimeUrlAfterChange, app, state
from prisme_keys.cli.common import check_out, keygen, refuse_private_on_terminal, when, write_result


@app.command()
def init(
    ctx: typer.Context,
    encrypt: bool = typer.Option(
        False,
        "--encrypt",
        help="Encrypt the private key members with a passphrase "
        "(PRISME_KEYS_PASSPHRASE, --passphrase-file FILE, or a prompt on a terminal).",
    ),
) -> None:
    """Create the key file with its first signing key; refuses if the file exists."""
    from prisme_keys.cli import output
    from prisme_keys.store import lifecycle

    st = state(ctx)
    now = st.write_now()
    sealer = None
    if encrypt:
        from prisme_keys.store import protect

        sealer = protect.init_sealer(st.settings)
    res = lifecycle.init(st.settings, now, keygen(st), encryption=sealer)
    rec = res.record
    if st.json:
        from prisme_keys import jwk as jwk_rules

        output.emit_json(
            {
                "created": True,
                "path": res.path,
                "kid": rec["kid"],
                "alg": rec["jwk"]["alg"],
                "bits": jwk_rules.key_bits(rec["jwk"]),
                "createdAt": rec["createdAt"],
                "rotatesAt": rec["rotatesAt"],
                "expiresAt": rec["expiresAt"],
                "encrypted": encrypt,
            }
        )
    else:
        output.line(
            f"created {res.path}{' (encrypted)' if encrypt else ''}: signing key {rec['kid']}; "
            f"rotation due {when(rec['rotatesAt'], now)}"
        )


@app.command()
def rotate(
    ctx: typer.Context,
    force: bool = typer.Option(False, "--force", help="Add a new signing key even if rotation is not due."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would happen; write nothing."),
    notify: NotifyPending = False,
    runtime_url: RuntimeUrlAfterChange = None,
) -> None:
    """Add a new signing key when the current one is due (JWKS_ROTATION_DAYS).

    Safe to run from cron every hour on every host sharing the key file: when nothing is
    due it changes nothing and exits 0; when several hosts find rotation due at once, the
    lock makes exactly one of them add a key.
    """
    from prisme_keys.cli import output
    from prisme_keys.cli.sync_cmds import after_rotate
    from prisme_keys.store import lifecycle

    st = state(ctx)
    now = st.now() if dry_run else st.write_now()
    res = lifecycle.rotate(st.settings, now, force=force, dry_run=dry_run, keygen=keygen(st))
    for n in res.notes:
        output.warn(n, quiet=st.quiet)
    ann = after_rotate(st, res, notify, runtime_url)
    doc: dict[str, Any] = {
        "rotated": res.rotated and not res.dry_run,
        "dry_run": res.dry_run,
        "due": res.rotated,
        "reason": res.reason,
        "signing_kid": res.signing_kid,
    }
    if res.created:
        doc["created"] = {k: res.created[k] for k in ("kid", "previousKeyId", "createdAt", "rotatesAt", "expiresAt")}
        if res.created.get("activatesAt"):
            doc["created"]["activatesAt"] = res.created["activatesAt"]
    if res.retired:
        doc["retired"] = {"kid": res.retired["kid"], "expiresAt": res.retired["expiresAt"]}
    if res.next_rotation:
        doc["next_rotation"] = res.next_rotation
    if res.notes:
        doc["notes"] = res.notes
    if ann.asked:
        doc["notified"] = ann.json()
    if st.json:
        output.emit_json(doc)
    elif res.dry_run:
        output.line(
            f"would rotate: {res.reason}"
            if res.rotated
            else f"nothing due; next rotation {when(res.next_rotation, st.now())}"
        )
    elif res.created:
        msg = f"rotated: signing key {res.created['kid']}"
        if res.created.get("activatesAt"):
            msg = (
                f"rotated: next key {res.created['kid']} published, signs {when(res.created['activatesAt'], st.now())}"
            )
        if res.retired:
            msg += f"; {res.retired['kid']} retires {when(res.retired['expiresAt'], st.now())}"
        output.line(msg)
    elif not st.quiet:  # nothing done: silent under -q, so cron mails only real changes
        output.line(
            f"{res.reason}; next rotation {when(res.next_rotation, st.now())}" if res.next_rotation else res.reason
        )
    ann.finish(st)


@app.command()
def prune(
    ctx: typer.Context,
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be removed; write nothing."),
    notify: NotifyPending = False,
    runtime_url: RuntimeUrlAfterChange = None,
) -> None:
    """Remove expired keys that no longer sign (never the signing key, never the last key)."""
    from prisme_keys.cli import output
    from prisme_keys.cli.sync_cmds import after_prune
    from prisme_keys.store import lifecycle

    st = state(ctx)
    res = lifecycle.prune(st.settings, st.now() if dry_run else st.write_now(), dry_run=dry_run)
    ann = after_prune(st, res, notify, runtime_url)
    kids = [r["kid"] for r in res.removed]
    for n in res.notes:
        output.warn(n, quiet=st.quiet)
    doc: dict[str, Any] = {
        "pruned": kids if not dry_run else [],
        "would_prune": kids if dry_run else [],
        "dry_run": dry_run,
        "kept": res.kept,
        "notes": res.notes,
        "next_expiry": res.next_prune,
    }
    if ann.asked:
        doc["notified"] = ann.json()
    if st.json:
        output.emit_json(doc)
    elif kids:
        verb = "would prune" if dry_run else "pruned"
        output.line(f"{verb} {len(kids)} key{'s' if len(kids) != 1 else ''}: {', '.join(kids)}")
    elif not st.quiet:
        output.line("nothing to prune" + (f"; next expiry {when(res.next_prune, st.now())}" if res.next_prune else ""))
    ann.finish(st)


@app.command("list")
def list_cmd(
    ctx: typer.Context,
    timeline_chart: bool = typer.Option(
        False,
        "--timeline",
        help="Draw the keys in the file on a date axis (next, signing, retired, expired spans, today, JWKS size); "
        "prisme-keys plan adds the keys rotation will create.",
    ),
) -> None:
    """List the keys, newest first: kid, state (signing/next/retired/expired), alg, bits and dates;
    then the last announcement to the gateways and runtime, or the pending one and since when.

    On a terminal: a table that fits the width; the kid is never wrapped (other columns give
    way first). Piped: one line per key, no header, tab-separated fields kid, state, alg, bits,
    createdAt, activatesAt, rotatesAt, expiresAt, private ("-" when missing), e.g.
    prisme-keys list | cut -f1; the announcement line goes to stderr. With --json:
    {now, keys: [...], announcement}.
    """
    from prisme_keys import clock
    from prisme_keys.cli import keylist, output
    from prisme_keys.store import lifecycle

    st = state(ctx)
    now = st.now()
    if timeline_chart:
        from prisme_keys.cli import timeline
        from prisme_keys.cli.schedule_cmds import title

        sched = lifecycle.timeline(st.settings, now)
        if st.json:
            doc = sched.to_dict()
            del doc["events"]
            output.emit_json(doc)
        else:
            timeline.print_chart(output.console(), sched, title(sched, "Keys in the key file"))
        return
    kf = lifecycle.open_keyfile(st.settings)
    keyset = kf.load()
    rows = lifecycle.describe(keyset.records, now)
    ann, ann_line = _announcement(keyset, now, kf.path, st)
    if st.json:
        output.emit_json({"now": clock.iso(now), "keys": rows, "announcement": ann})
    elif output.is_tty(sys.stdout):
        keylist.print_table(rows, now)
        if ann_line:
            output.line(ann_line)
    else:  # piped: only the tab-separated key lines on stdout
        keylist.write_tsv(rows)
        if ann_line:
            output.note(ann_line, quiet=st.quiet)


def _announcement(keyset: Any, now: Any, path: Any, st: Any) -> tuple[dict[str, Any], str]:
    """``list``'s view of the announcements: the ``--json`` member ``{last, pending}`` (``{error}`` for a
    malformed record) and one line for people (``""`` for a key file never announced: a fleet this
    tool does not notify)."""
    from prisme_keys.cli import output
    from prisme_keys.cli.words import say
    from prisme_keys.errors import KeyFileError
    from prisme_keys.store import announced

    try:
        status = announced.status(keyset, now, path)
    except KeyFileError as exc:
        output.warn(f"{say(exc.message)} (run prisme-keys doctor)", quiet=st.quiet)
        return {"error": say(exc.message)}, ""
    doc, last, pend = status.to_dict(), status.last, status.pending
    if last is None:
        return doc, ""
    if pend is not None:
        since = when(pend.since, now).removeprefix("on ")
        return doc, (
            f"announcement pending since {since}: {announced.describe(pend)}; "
            "the next rotate/prune --notify sends it, or run: prisme-keys notify"
        )
    n = len(last.state.kids)
    return doc, (
        f"announced {when(last.at, now)}: signing key {last.state.signing_kid}, "
        f"{n} published key{'s' if n != 1 else ''}"
    )


FORCE_HELP = (
    "Let --out replace the key file, a lock file, a file holding private key material, "
    "or (private output) any existing file."
)


class ExportFormat(str, Enum):
    jwks = "jwks"
    records = "records"


@app.command()
def export(
    ctx: typer.Context,
    out: Optional[str] = typer.Option(
        None, "--out", "-o", metavar="FILE", help="Write to FILE (atomically; 0600 with --private)."
    ),
    fmt: ExportFormat = typer.Option(
        ExportFormat.jwks, "--format", help="jwks: a JWK Set; records: gateway records as JSON lines (needs --private)."
    ),
    private: bool = typer.Option(
        False,
        "--private",
        help="Include private key members. Goes to --out FILE "
        "(mode 0600) or to stdout only when stdout is not a terminal, unless --to-terminal.",
    ),
    to_terminal: bool = typer.Option(False, "--to-terminal", help="Allow private output on a terminal."),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
) -> None:
    """Export the public JWKS (newest first), or with --private the keys the gateway loads.

    --out FILE never replaces the key file, a lock file or a file holding private key material
    (and, with --private, no existing file) unless --force; replacing an earlier public export is fine.
    With --out FILE and --json, stdout gets {written, format, private, keys, kids, bytes}.
    """
    from prisme_keys.cli import output
    from prisme_keys.store import lifecycle

    st = state(ctx)
    check_out(out, private=private, key_file=st.settings.key_file, force=force)
    doc = lifecycle.export(st.settings, fmt=fmt.value, private=private)
    to_file = out is not None and out != "-"
    if fmt is ExportFormat.records and not (st.json and not to_file):  # JSON lines for mongoimport
        import json

        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in doc)
    else:  # a JWKS, or with --json on stdout the records as one array
        text = output.json_text(doc)
    write_result(text, out, private=private, to_terminal=to_terminal, key_file=st.settings.key_file, force=force)
    if to_file and st.json:
        keys = doc if isinstance(doc, list) else doc["keys"]
        output.emit_json(
            {
                "written": out,
                "format": fmt.value,
                "private": private,
                "keys": len(keys),
                "kids": [k["kid"] for k in keys],
                "bytes": len(text.encode("utf-8")),
            }
        )


@app.command()
def generate(
    ctx: typer.Context,
    public: bool = typer.Option(False, "--public", help="Print only the public JWK."),
    out: Optional[str] = typer.Option(
        None, "--out", "-o", metavar="FILE", help="Write to FILE (atomically; 0600 when private)."
    ),
    to_terminal: bool = typer.Option(False, "--to-terminal", help="Allow private output on a terminal."),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
) -> None:
    """Generate a standalone RSA JWK (JWKS_SIZE, JWKS_ALG); the key file is untouched.

    The private JWK goes to --out FILE (mode 0600; never over an existing file unless --force)
    or to stdout only when stdout is not a terminal (a pipe or a redirect), unless --to-terminal.
    With --out FILE and --json, stdout gets {written, kid, alg, bits, private}.
    """
    from prisme_keys.cli import output
    from prisme_keys.store import lifecycle

    st = state(ctx)
    if not public:
        refuse_private_on_terminal(out, to_terminal)  # before the (slow) key generation
    check_out(out, private=not public, key_file=st.settings.key_file, force=force)
    jwk = lifecycle.generate(st.settings, public=public, keygen=keygen(st))
    write_result(
        output.json_text(jwk),
        out,
        private=not public,
        to_terminal=to_terminal,
        key_file=st.settings.key_file,
        force=force,
    )
    if out is not None and out != "-" and st.json:
        from prisme_keys import jwk as jwk_rules

        output.emit_json(
            {
                "written": out,
                "kid": jwk["kid"],
                "alg": jwk.get("alg"),
                "bits": jwk_rules.key_bits(jwk),
                "private": not public,
            }
        )
