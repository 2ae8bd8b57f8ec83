"""Incident response: ``revoke`` a compromised key (``check --absent --wait`` proves it left the published set)."""

# No ``from __future__ import annotations`` here: see prisme_keys.cli.app (start-up time).
from typing import Any, Optional

import typer
from typer.core import TyperCommand

from prisme_keys.cli.app import RuntimeUrlAfterChange, app, state
from prisme_keys.cli.common import keygen, when
from prisme_keys.cli.completion import complete_kid


def _exposure_line(res: Any, now: Any) -> str:
    exp = res.entry.get("exposure") or {}
    if not exp.get("from"):
        return (
            "exposure window: none through signing: it never signed (it was published as the next key); "
            "its private key could still forge tokens for verifiers that hold it"
        )
    return (
        f"exposure window: from {exp['from']} until {exp['until']} "
        f"(it signed until {exp['signingUntil']}; tokens live up to ACCESS_TOKENS_MAX_AGE), "
        f"ending {when(exp['until'], now)}"
    )


def _doc(res: Any) -> dict[str, Any]:
    e = res.entry
    created = None
    if res.created:
        created = {k: res.created[k] for k in ("kid", "previousKeyId", "createdAt", "rotatesAt", "expiresAt")}
    return {
        "revoked": res.revoked and not res.dry_run and not res.already,
        "dry_run": res.dry_run,
        "already_revoked": res.already,
        "kid": res.kid,
        "thumbprint": e.get("thumbprint"),
        "state": e.get("state"),
        "reason": e.get("reason"),
        "revokedAt": e.get("revokedAt"),
        "exposure": e.get("exposure"),
        "new_signing_key": res.new_key_needed,
        "created": created,
        "lead_skipped_seconds": res.lead_skipped,
        "retired": {"kid": res.retired["kid"], "expiresAt": res.retired["expiresAt"]} if res.retired else None,
        "signing_kid": res.signing_kid,
    }


def _render(st: Any, res: Any) -> None:
    from prisme_keys.cli import output
    from prisme_keys.store.revocation import describe

    now = st.now()
    if res.already:
        output.line(f"{res.kid} was already {describe(res.entry)}; nothing to do")
        return
    what = f"{res.kid} ({res.entry.get('state')} key)"
    if res.dry_run:
        tail = (
            "; a new signing key would be created and sign at once"
            if res.new_key_needed
            else f"; the signing key {res.signing_kid} would stay"
        )
        output.line(f"would revoke {what}{tail}")
    elif res.created:
        output.line(f"revoked {what}: removed from the key set; new signing key {res.created['kid']} signs now")
    else:
        output.line(f"revoked {what}: removed from the key set; the signing key {res.signing_kid} is unchanged")
    if res.new_key_needed and res.lead_skipped:
        output.line(
            f"the new key skips the publication lead ({res.lead_skipped:g} s): a compromise cannot wait; verifiers "
            "that refetch the JWKS on an unknown kid (the gateway's jwks-rsa does) accept it at once"
        )
    if res.retired:
        output.line(f"{res.retired['kid']} stops signing and retires {when(res.retired['expiresAt'], now)}")
    output.line(_exposure_line(res, now))
    if not res.dry_run:
        output.note(
            "next: publish the new set, then prove the key is gone: "
            f"prisme-keys check URL --absent {res.kid} --wait 15m",
            quiet=st.quiet,
        )


class _KidFirstCommand(TyperCommand):
    """``revoke KID``: a kid (or RFC 7638 thumbprint) starting with '-' (1 in 64 thumbprints) reads as an
    option to the parser, which can only refuse it; the refusal says how to pass it."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        given_args = list(args)  # the parser consumes the list it is given
        try:
            return super().parse_args(ctx, args)
        except Exception as exc:  # Click's NoSuchOption (vendored by newer Typer): re-raised, never swallowed
            name = str(getattr(exc, "option_name", "") or "")  # "-d" for "-dashKid", "-A" for "-hABC"
            short = len(name) == 2 and name[0] == "-" and name[1] != "-"
            given = next(
                (a for a in given_args if short and len(a) > 2 and a[0] == "-" and a[1] != "-" and name[1] in a[1:]),
                None,
            )
            if type(exc).__name__ == "NoSuchOption" and given is not None and isinstance(exc.args[0], str):
                exc.message = (  # type: ignore[attr-defined]
                    f"{exc.args[0]} (a kid that starts with '-' goes last, after '--': "
                    f"prisme-keys revoke [OPTIONS] -- {given[:80]})"
                )
            raise


@app.command(cls=_KidFirstCommand)
def revoke(
    ctx: typer.Context,
    kid: str = typer.Argument(
        ...,
        metavar="KID",
        autocompletion=complete_kid,
        help="The kid (or RFC 7638 thumbprint) of the compromised key.",
    ),
    reason: Optional[str] = typer.Option(
        None, "--reason", metavar="TEXT", help="Why, kept in the key file's revocation list (one line, 200 characters)."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would happen; write nothing."),
    notify: bool = typer.Option(
        False,
        "--notify",
        help="Announce it on the Redis broker (created: the new key, deleted: the revoked one) and update the "
        "runtime, as rotate --notify does.",
    ),
    runtime_url: RuntimeUrlAfterChange = None,
) -> None:
    """Revoke a compromised key now: remove it from the set, whatever its dates, and record why.

    When it is the signing key (or the next key), a new signing key is created first and signs
    at once: a compromise skips the publication lead. The revocation (kid, RFC 7638 thumbprint,
    time, reason) stays in the key file: verify refuses the key even where a JWKS still serves it
    (exit 6), import refuses it, doctor reports it, check fails while it is published. Prints the
    exposure window: from the key's first signing until the last token it could have signed
    expires (signing end + ACCESS_TOKENS_MAX_AGE).
    """
    from prisme_keys.cli import output
    from prisme_keys.cli.sync_cmds import after_revoke
    from prisme_keys.store import revocation

    st = state(ctx)
    now = st.now() if dry_run else st.write_now()
    res = revocation.revoke(st.settings, now, kid, reason=reason, dry_run=dry_run, keygen=keygen(st))
    ann = after_revoke(st, res, notify, runtime_url)
    if st.json:
        doc = _doc(res)
        if ann.asked:
            doc["notified"] = ann.json()
        output.emit_json(doc)
    else:
        _render(st, res)
    ann.finish(st)
