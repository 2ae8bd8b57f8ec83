"""Gateway sync commands: ``import`` and ``notify``, and the ``rotate/prune --notify`` hook."""

# No ``from __future__ import annotations`` here: see prisme_keys.cli.app (start-up time).
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from prisme_keys.cli.app import State, app, state
from prisme_keys.cli.completion import complete_kid, complete_revoked_kid
from prisme_keys.cli.words import say
from prisme_keys.errors import ConfigError, KeyFileError, NotifyError, PrismeKeysError

if TYPE_CHECKING:
    from prisme_keys.publish.announce import AnnounceOutcome


def _resend_hint(runtime_url: Optional[str]) -> str:
    from prisme_keys.text import redact_url

    return "prisme-keys notify" + (f" --runtime-url {redact_url(runtime_url)}" if runtime_url else "")


def _kids_change(created: list[str], deleted: list[str], sep: str = ", ") -> str:
    """``created A, B, deleted C`` (kids joined by ``sep``; empty when both lists are empty)."""
    return ", ".join(
        x
        for x in (
            ("created " + sep.join(created)) if created else "",
            ("deleted " + sep.join(deleted)) if deleted else "",
        )
        if x
    )


def _render_notify(st: Any, res: Any) -> str:
    bits = []
    if res.gateway_event:
        what = _kids_change(res.created, res.deleted, " ") or "reload"
        bits.append(f"published gateway.jwks.updated ({what})")
    if res.runtime == "redis":
        bits.append(f"runtime key set to {res.runtime_kid} and runtime.jwks.updated published")
    elif res.runtime == "http":
        bits.append(f"runtime key set to {res.runtime_kid} via /sys/certs")
    return "notified: " + "; ".join(bits)


class AfterChange:
    """The announcement made after a key-file command (``--notify``): its outcome or its error.

    The command prints its own result first (with :meth:`json` in its ``--json`` document), then
    calls :meth:`finish`, which notes what was sent or raises the error (exit 11 for the broker or
    runtime, 3 for a bad setting, 4 for the key file).

    Attributes:
        outcome: what was announced (``None`` when nothing was asked, or on error).
        error: the announcement's error, worded for the command line, or ``None``.
        asked: ``--notify`` (or ``--runtime-url``) was given.
    """

    __slots__ = ("asked", "error", "outcome")

    def __init__(
        self,
        outcome: "Optional[AnnounceOutcome]" = None,
        error: Optional[PrismeKeysError] = None,
        asked: bool = False,
    ) -> None:
        self.outcome = outcome
        self.error = error
        self.asked = asked

    def json(self) -> Optional[dict[str, Any]]:
        """The ``notified`` member of the command's ``--json`` document (``None`` without ``--notify``)."""
        if not self.asked:
            return None
        if self.error is not None:
            return {"sent": False, "error": self.error.to_dict()}
        return self.outcome.to_dict() if self.outcome else {"sent": False}

    def finish(self, st: State) -> None:
        """Note what was sent on stderr (not under ``-q``), or raise the announcement's error."""
        from prisme_keys.cli import output

        if self.error is not None:
            raise self.error
        if self.outcome is not None and self.outcome.result is not None:
            output.note(_render_notify(st, self.outcome.result), quiet=st.quiet)


def announce_after(
    st: State, runtime_url: Optional[str] = None, *, change: str = "", known_deleted: list[str] | None = None
) -> AfterChange:
    """Send whatever announcement is pending after a key-file command, under the key file's lock.

    Whether or not this run changed the file, the fleet is told the state it should hold now
    (see :func:`prisme_keys.publish.announce.announce_pending`): a key created or removed by this
    run, a ``next`` key that has started signing, or an announcement a previous run failed to send.
    Nothing pending: nothing is sent.

    Args:
        change: what this run changed (``created KID``), for the failure message; ``""`` when nothing.
        known_deleted: kids this run removed (announced as deleted on a never-announced key file).

    Returns:
        An :class:`AfterChange` whose error (if any) tells that the change was kept and that the
        next run with ``--notify`` retries.
    """
    from prisme_keys.publish import announce as broker

    try:
        # the announcement is recorded in the key file: a --now away from the real clock needs --write-at-now
        now = st.write_now()
        out = broker.announce_pending(st.settings, now, runtime_url=runtime_url, known_deleted=known_deleted or [])
        return AfterChange(out, asked=True)
    except (NotifyError, ConfigError, KeyFileError) as exc:
        what = (
            f"key file {st.settings.key_file} was changed ({change}) but the notification failed"
            if change
            else "announcing the key file's current state failed"
        )
        err = type(exc)(
            f"{what}: {say(exc.message)}; it stays pending: the next run with --notify retries it "
            f"(or run: {_resend_hint(runtime_url)})",
            code=exc.code,
        )
        return AfterChange(error=err, asked=True)


def notify_after_change(st: State, created: list[str], deleted: list[str], runtime_url: Optional[str] = None) -> None:
    """Announce after a committed key-file change (``import/revoke --notify``); one call, then done.

    ``created``/``deleted`` describe this run's change for the messages (``deleted`` kids are also
    announced on a never-announced key file); what is sent is whatever is pending
    (:func:`announce_after`). Raises the announcement's error (exit 11 for the broker or runtime).
    """
    announce_after(st, runtime_url, change=_kids_change(created, deleted), known_deleted=deleted).finish(st)


def after_rotate(st: State, res: Any, notify: bool, runtime_url: Optional[str]) -> AfterChange:
    """``rotate --notify`` hook (``--runtime-url`` implies ``--notify``): announce what is pending."""
    if not (notify or runtime_url) or res.dry_run:
        return AfterChange()
    return announce_after(st, runtime_url, change=f"created {res.created['kid']}" if res.created else "")


def after_prune(st: State, res: Any, notify: bool, runtime_url: Optional[str]) -> AfterChange:
    """``prune --notify`` hook (``--runtime-url`` implies ``--notify``): announce what is pending."""
    if not (notify or runtime_url) or res.dry_run:
        return AfterChange()
    kids = [r["kid"] for r in res.removed]
    return announce_after(st, runtime_url, change=_kids_change([], kids), known_deleted=kids)


def after_revoke(st: State, res: Any, notify: bool, runtime_url: Optional[str]) -> AfterChange:
    """``revoke --notify`` hook (``--runtime-url`` implies ``--notify``): announce what is pending,
    here the new signing key (created) and the revoked key (deleted)."""
    if not (notify or runtime_url) or res.dry_run:
        return AfterChange()
    created = [res.created["kid"]] if res.created else []
    deleted = [] if res.already else [res.kid]
    return announce_after(st, runtime_url, change=_kids_change(created, deleted), known_deleted=deleted)


#: ``import`` names the kids in its summary line up to this many; beyond, it counts them (``-v`` lists them).
KIDS_IN_SUMMARY = 3


def import_summary(path: str, kids: list[str], skipped: list[str], created: bool, signing: Optional[str]) -> str:
    """The one line ``import`` prints: counts, the kids when there are few, the signing key."""
    from prisme_keys.cli.output import plural

    def some(ks: list[str]) -> str:
        return f": {', '.join(ks)}" if 0 < len(ks) <= KIDS_IN_SUMMARY else ""

    msg = f"imported {plural(len(kids), 'key')} into {path}" + (" (created)" if created else "") + some(kids)
    if skipped:
        msg += f"; skipped {len(skipped)} already present{some(skipped)}"
    return msg + (f"; signing key {signing}" if kids else "")


@app.command("import")
def import_cmd(
    ctx: typer.Context,
    file: str = typer.Argument(
        ...,
        metavar="FILE|-",
        help="A private JWKS, gateway records (JSON array or "
        "JSON lines, Mongo extended JSON accepted) or a PEM RSA private key; - reads stdin.",
    ),
    alg: Optional[str] = typer.Option(
        None, "--alg", help="Algorithm of keys that name none (PEM keys): RS256, RS384 or RS512. Default: JWKS_ALG."
    ),
    kid: Optional[str] = typer.Option(
        None, "--kid", help="Kid of the one key in FILE when it has none (default: its RFC 7638 thumbprint)."
    ),
    create: bool = typer.Option(False, "--create", help="Create the key file if it does not exist."),
    notify: bool = typer.Option(
        False, "--notify", help="Announce the imported keys on the broker and update the runtime (see notify)."
    ),
    runtime_url: Optional[str] = typer.Option(
        None,
        "--runtime-url",
        metavar="URL",
        help="With --notify: POST the signing key to URL/sys/certs "
        "instead of writing it to the runtime's Redis (implies --notify).",
    ),
) -> None:
    """Add keys to the key file from a private JWKS, gateway records or a PEM key.

    All or nothing: every key is checked (RSA, >= 2048 bits, consistent private members,
    not known-compromised) and one bad key rejects the input with its position and reason,
    the key file unchanged. Kids and times are kept; missing ones are filled (kid = RFC 7638
    thumbprint, createdAt = now, so an imported key without times becomes the signing key;
    use --now with --write-at-now to backdate). A kid already present with the same key is skipped, with a
    different key it is an error.
    """
    from prisme_keys.cli import output
    from prisme_keys.cli.progress import Progress, wanted
    from prisme_keys.store import importer

    st = state(ctx)
    now = st.write_now()
    if file == "-":  # standard input is the command line's to read (capped), the library gets the bytes
        from prisme_keys.cli.common import read_stdin_capped

        data, name = importer.check_size(read_stdin_capped(importer.MAX_INPUT_BYTES), "stdin"), "stdin"
    else:
        data, name = importer.read_source(file)
    with Progress("checking keys", "keys", enabled=wanted(st)) as progress:
        res = importer.import_keys(
            st.settings, now, data, name=name, alg=alg, kid=kid, create=create, progress=progress
        )
    kids = [r["kid"] for r in res.imported]
    if st.json:
        output.emit_json(
            {
                "path": res.path,
                "format": res.source_format,
                "imported": kids,
                "skipped": res.skipped,
                "created_file": res.created_file,
                "signing_kid": res.signing_kid,
            }
        )
    else:
        output.line(import_summary(res.path, kids, res.skipped, res.created_file, res.signing_kid))
        if st.verbose:
            for k in kids:
                output.note(f"imported {k}")
            for k in res.skipped:
                output.note(f"skipped {k} (already present)")
    if notify or runtime_url:
        notify_after_change(st, kids, [], runtime_url)


# -- notify's options ------------------------------------------------------------------------

CreatedKids = Annotated[
    list[str],
    typer.Option("--created", metavar="KID", autocompletion=complete_kid, help="A kid that was added (repeatable)."),
]
DeletedKids = Annotated[
    list[str],
    typer.Option(
        "--deleted",
        metavar="KID",
        autocompletion=complete_revoked_kid,
        help="A kid that was removed (repeatable).",
    ),
]
RuntimeUrl = Annotated[
    Optional[str],
    typer.Option(
        "--runtime-url",
        metavar="URL",
        help="POST the signing key to URL/sys/certs (header "
        "x-prismeai-api-key: INTERNAL_API_KEY) instead of writing it "
        "to the runtime's Redis (CONTEXTS_CACHE_HOST).",
    ),
]
Runtime = Annotated[
    bool,
    typer.Option(
        "--runtime/--no-runtime",
        help="Also give the runtime the current signing key from the key file (default on).",
    ),
]
ForceAnnounce = Annotated[
    bool, typer.Option("--force", help="Announce the current state even when nothing is pending (a plain reload).")
]


@app.command()
def notify(
    ctx: typer.Context,
    created: CreatedKids = [],  # noqa: B006  (never mutated; Typer shows the default: [default: []])
    deleted: DeletedKids = [],  # noqa: B006
    runtime_url: RuntimeUrl = None,
    runtime: Runtime = True,
    force: ForceAnnounce = False,
) -> None:
    """Announce key changes to every gateway and the runtime over the Redis broker.

    Without --created/--deleted/--no-runtime: sends exactly what is pending, that is the
    difference between the state the fleet should hold now (the signing key, a next key whose
    activatesAt has passed included, and the published kids) and the last announcement recorded
    in the key file; then records it. Nothing pending: sends nothing (--force sends the current
    state anyway). A key file never announced has its whole state pending.

    Publishes gateway.jwks.updated {created, deleted} (XADD to the event's stream and the
    catch-all stream, namespace BROKER_NAMESPACE, on BROKER_HOST), so every gateway reloads its
    keys; then gives the runtime the key file's current signing key: runtime:jwk on
    CONTEXTS_CACHE_HOST plus runtime.jwks.updated, or POST /sys/certs with --runtime-url.

    With --created/--deleted (or --no-runtime) it sends exactly the kids given (none: a plain
    reload) and records nothing.
    """
    from prisme_keys.errors import UsageError

    st = state(ctx)
    if runtime_url is not None and not runtime:
        raise UsageError("--runtime-url and --no-runtime contradict each other")
    if not (created or deleted or not runtime):
        _notify_pending(st, runtime_url, force)
        return
    if force:
        raise UsageError(
            "--force announces the pending state; it does not go with --created, --deleted or --no-runtime"
        )
    _notify_kids(st, created, deleted, runtime, runtime_url)


def _notify_kids(st: State, created: list[str], deleted: list[str], runtime: bool, runtime_url: Optional[str]) -> None:
    """``notify --created/--deleted/--no-runtime``: send exactly the kids given; record nothing."""
    from prisme_keys import jwk as jwk_rules
    from prisme_keys.cli import output
    from prisme_keys.publish import announce as broker

    for arg, kids in (("created", created), ("deleted", deleted)):
        for k in kids:
            jwk_rules.check_kid(k, arg)  # before the warnings below echo it
    at = st.write_now("announces key changes dated then", act="announce")  # events dated --now: refused far off
    if created and runtime:
        _warn_unknown_created(st, created)
    try:
        res = broker.announce(
            st.settings,
            at,
            created=list(created),
            deleted=list(deleted),
            runtime=runtime,
            runtime_url=runtime_url,
        )
    except NotifyError as exc:
        raise NotifyError(
            f"{say(exc.message)}; nothing is lost: re-run prisme-keys notify when it is reachable", code=exc.code
        ) from None
    if st.json:
        output.emit_json(res.to_dict())
    else:
        output.line(_render_notify(st, res))


def _warn_unknown_created(st: State, created: list[str]) -> None:
    """A warning for each ``--created`` kid the key file does not hold (a typo announces a key nobody has)."""
    from prisme_keys.cli import output
    from prisme_keys.store.lifecycle import load_records

    try:
        present = {r["kid"] for r in load_records(st.settings)}
    except KeyFileError:
        return  # announce() reports the key file problem
    for k in created:
        if k not in present:
            output.warn(f"--created {k}: no such kid in {st.settings.key_file}", quiet=st.quiet)


def _notify_pending(st: State, runtime_url: Optional[str], force: bool) -> None:
    """``notify`` without kids: send what is pending (or, with ``force``, the current state) and record it."""
    from prisme_keys.cli import output
    from prisme_keys.cli.common import when
    from prisme_keys.publish import announce as broker

    try:
        # the announcement is recorded in the key file: a --now away from the real clock needs --write-at-now
        at = st.write_now("announces key changes dated then and records them in the key file", act="announce")
        out = broker.announce_pending(st.settings, at, runtime_url=runtime_url, force=force)
    except NotifyError as exc:
        raise NotifyError(
            f"{say(exc.message)}; nothing is lost: the announcement stays pending; re-run prisme-keys notify "
            "when it is reachable, or let the next rotate --notify send it",
            code=exc.code,
        ) from None
    if out.result is not None:
        if st.json:
            output.emit_json(out.to_dict())
        else:
            output.line(_render_notify(st, out.result))
        return
    last = out.recorded
    if st.json:
        output.emit_json(out.to_dict())
    elif not st.quiet and last is not None:
        output.line(
            f"nothing to announce: signing key {last.state.signing_kid} and {len(last.state.kids)} published "
            f"key{'s' if len(last.state.kids) != 1 else ''} were announced {when(last.at, st.now())}"
        )
