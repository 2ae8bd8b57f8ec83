"""Gateway sync commands: ``import`` and ``notify``, and the ``rotate/prune --notify`` hook."""

from __future__ import annotations

from typing import Any, Optional

import typer

from prisme_keys.cli.app import State, app, state
from prisme_keys.errors import ConfigError, KeyFileError, NotifyError


def _resend_hint(created: list[str], deleted: list[str], runtime_url: Optional[str]) -> str:
    from prisme_keys.publish.announce import safe_url

    parts = ["prisme-keys notify"]
    parts += [f"--created {k}" for k in created]
    parts += [f"--deleted {k}" for k in deleted]
    if runtime_url:
        parts.append(f"--runtime-url {safe_url(runtime_url)}")
    return " ".join(parts)


def _render_notify(st: Any, res: Any) -> str:

    bits = []
    if res.gateway_event:
        what = (
            ", ".join(
                x
                for x in (
                    ("created " + " ".join(res.created)) if res.created else "",
                    ("deleted " + " ".join(res.deleted)) if res.deleted else "",
                )
                if x
            )
            or "reload"
        )
        bits.append(f"published gateway.jwks.updated ({what})")
    if res.runtime == "redis":
        bits.append(f"runtime key set to {res.runtime_kid} and runtime.jwks.updated published")
    elif res.runtime == "http":
        bits.append(f"runtime key set to {res.runtime_kid} via /sys/certs")
    return "notified: " + "; ".join(bits)


def notify_after_change(st: State, created: list[str], deleted: list[str], runtime_url: Optional[str] = None) -> None:
    """Announce a committed key-file change (``rotate/prune --notify``); nothing when nothing changed.

    The change is already on disk: any failure raises an error (exit 11 for broker/runtime,
    3 for a bad setting, 4 for the key file) whose message says the key file was changed and
    how to re-send with ``prisme-keys notify``.
    """
    from prisme_keys.cli import output
    from prisme_keys.publish import announce as broker

    if not created and not deleted:
        return
    hint = _resend_hint(created, deleted, runtime_url)
    change = ", ".join(
        x
        for x in (
            ("created " + ", ".join(created)) if created else "",
            ("deleted " + ", ".join(deleted)) if deleted else "",
        )
        if x
    )
    try:
        res = broker.announce(st.settings, st.now(), created=created, deleted=deleted, runtime_url=runtime_url)
    except (NotifyError, ConfigError, KeyFileError) as exc:
        raise type(exc)(
            f"key file {st.settings.key_file} was changed ({change}) but the notification "
            f"failed: {exc.message}; re-send it with: {hint}",
            code=exc.code,
        ) from None
    output.note(_render_notify(st, res), quiet=st.quiet)


def after_rotate(st: State, res: Any, notify: bool, runtime_url: Optional[str]) -> None:
    """``rotate --notify`` hook: announce the created key (``--runtime-url`` implies ``--notify``)."""
    if (notify or runtime_url) and res.created and not res.dry_run:
        notify_after_change(st, [res.created["kid"]], [], runtime_url)


def after_prune(st: State, res: Any, notify: bool, runtime_url: Optional[str]) -> None:
    """``prune --notify`` hook: announce the removed keys (``--runtime-url`` implies ``--notify``)."""
    if (notify or runtime_url) and res.removed and not res.dry_run:
        notify_after_change(st, [], [r["kid"] for r in res.removed], runtime_url)


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
    use --now to backdate). A kid already present with the same key is skipped, with a
    different key it is an error.
    """
    from prisme_keys.cli import output
    from prisme_keys.store import importer

    st = state(ctx)
    data, name = importer.read_source(file)
    res = importer.import_keys(st.settings, st.now(), data, name=name, alg=alg, kid=kid, create=create)
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
        msg = (
            f"imported {len(kids)} key{'s' if len(kids) != 1 else ''} into {res.path}"
            + (" (created)" if res.created_file else "")
            + (f": {', '.join(kids)}" if kids else "")
        )
        if res.skipped:
            msg += f"; skipped {len(res.skipped)} already present: {', '.join(res.skipped)}"
        output.line(msg + (f"; signing key {res.signing_kid}" if kids else ""))
    if notify or runtime_url:
        notify_after_change(st, kids, [], runtime_url)


@app.command()
def notify(
    ctx: typer.Context,
    created: list[str] = typer.Option([], "--created", metavar="KID", help="A kid that was added (repeatable)."),
    deleted: list[str] = typer.Option([], "--deleted", metavar="KID", help="A kid that was removed (repeatable)."),
    runtime_url: Optional[str] = typer.Option(
        None,
        "--runtime-url",
        metavar="URL",
        help="POST the signing key to URL/sys/certs (header "
        "x-prismeai-api-key: INTERNAL_API_KEY) instead of writing it "
        "to the runtime's Redis (CONTEXTS_CACHE_HOST).",
    ),
    runtime: bool = typer.Option(
        True,
        "--runtime/--no-runtime",
        help="Also give the runtime the current signing key from the key file (default on).",
    ),
) -> None:
    """Announce key changes to every gateway and the runtime over the Redis broker.

    Publishes gateway.jwks.updated {created, deleted} (XADD to the event's stream and the
    catch-all stream, namespace BROKER_NAMESPACE, on BROKER_HOST), so every gateway reloads
    its keys; without --created/--deleted the lists are empty and it is a plain reload. Then
    gives the runtime the key file's current signing key: runtime:jwk on CONTEXTS_CACHE_HOST
    plus runtime.jwks.updated, or POST /sys/certs with --runtime-url. Idempotent: re-run it
    after a failed rotate/prune --notify (exit 11).
    """
    from prisme_keys.cli import output
    from prisme_keys.publish import announce as broker

    st = state(ctx)
    if runtime_url is not None and not runtime:
        from prisme_keys.errors import UsageError

        raise UsageError("--runtime-url and --no-runtime contradict each other")
    if created and runtime:
        try:
            from prisme_keys.store.lifecycle import load_records

            present = {r["kid"] for r in load_records(st.settings)}
            for k in created:
                if k not in present:
                    output.warn(f"--created {k}: no such kid in {st.settings.key_file}", quiet=st.quiet)
        except KeyFileError:
            pass  # announce() reports the key file problem
    try:
        res = broker.announce(
            st.settings,
            st.now(),
            created=list(created),
            deleted=list(deleted),
            runtime=runtime,
            runtime_url=runtime_url,
        )
    except NotifyError as exc:
        raise NotifyError(
            f"{exc.message}; nothing is lost: re-run prisme-keys notify when it is reachable", code=exc.code
        ) from None
    if st.json:
        output.emit_json(res.to_dict())
    else:
        output.line(_render_notify(st, res))
