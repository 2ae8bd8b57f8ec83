"""``check`` (CI check of a published JWKS) and ``serve`` (a local JWKS endpoint)."""

# No ``from __future__ import annotations`` here: see prisme_keys.cli.app (start-up time).
import dataclasses
from typing import Annotated, Any, Optional

import typer

from prisme_keys.cli.app import app, state
from prisme_keys.cli.common import duration
from prisme_keys.cli.completion import complete_revoked_kid
from prisme_keys.cli.words import say
from prisme_keys.errors import UsageError
from prisme_keys.text import redact_url

# -- check's options -------------------------------------------------------------------------

Url = Annotated[str, typer.Argument(metavar="URL", help="The JWKS URL, e.g. https://api.example.com/oidc/jwks.")]
Against = Annotated[
    Optional[bool],
    typer.Option("--against/--no-against", help="Compare with the local key file (default: when the key file exists)."),
]
Roundtrip = Annotated[
    bool,
    typer.Option(
        "--roundtrip",
        help="Mint a short-lived token with the local signing key and verify it against URL exactly as `verify` does.",
    ),
]
Strict = Annotated[bool, typer.Option("--strict", help="Treat warnings as failures.")]
Junit = Annotated[Optional[str], typer.Option("--junit", metavar="FILE", help="Also write a JUnit XML report to FILE.")]
Algorithms = Annotated[
    Optional[str], typer.Option("--algorithms", help="Allowed alg values, comma-separated (default: JWKS_ALG).")
]
Timeout = Annotated[float, typer.Option("--timeout", help="Total fetch timeout, seconds.")]
CaCert = Annotated[Optional[str], typer.Option("--cacert", metavar="FILE", help="PEM bundle of a private CA to trust.")]
AllowHttp = Annotated[
    bool,
    typer.Option(
        "--allow-http", help="Allow plain HTTP to a non-loopback host (the transport.https check still fails)."
    ),
]
Absent = Annotated[
    Optional[list[str]],
    typer.Option(
        "--absent",
        metavar="KID",
        autocompletion=complete_revoked_kid,
        help="Fail while this kid, or its key under another kid (RFC 7638 thumbprint), is published "
        "(repeatable; a thumbprint is accepted too). Run it after a revoke.",
    ),
]
Wait = Annotated[
    Optional[str],
    typer.Option(
        "--wait",
        metavar="DURATION",
        help="Keep fetching until the checks pass or DURATION (90s, 15m) has passed; never sooner than "
        "--interval, nor before the last response goes stale (Cache-Control max-age minus Age).",
    ),
]
Interval = Annotated[
    Optional[float],
    typer.Option("--interval", metavar="SECONDS", help="With --wait: least seconds between two fetches (default 5)."),
]


@app.command()
def check(
    ctx: typer.Context,
    url: Url,
    against: Against = None,
    roundtrip: Roundtrip = False,
    strict: Strict = False,
    junit: Junit = None,
    algorithms: Algorithms = None,
    timeout: Timeout = 5.0,
    cacert: CaCert = None,
    allow_http: AllowHttp = False,
    absent: Absent = None,
    wait: Wait = None,
    interval: Interval = None,
) -> None:
    """Check a published JWKS for CI: transport, shape, secrecy, known-compromised keys, and the local key file.

    Exit 0 when no check fails (warnings allowed), 10 when one fails, 9 when the fetch itself
    fails (network, TLS, timeout, too large). With --wait, 10 when the checks still fail when
    the time runs out, naming what is still served.
    """
    from prisme_keys.cli import output
    from prisme_keys.errors import CheckFailed
    from prisme_keys.publish import check as checks

    st = state(ctx)
    if junit is not None:
        from prisme_keys.cli.common import check_out

        check_out(
            junit, private=False, key_file=st.settings.key_file, flag="--junit", force_flag=None, dash_is_stdout=False
        )
    run_kw: dict[str, Any] = {
        "now": st.now(),
        "against": against,
        "roundtrip": roundtrip,
        "strict": strict,
        "algorithms": algorithms,
        "timeout": timeout,
        "cacert": cacert,
        "allow_http": allow_http,
        "absent": _absent_kids(absent),
    }
    if wait is None:
        if interval is not None:
            raise UsageError("--interval needs --wait DURATION")
        report = _worded(checks.run(st.settings, url, **run_kw))
    else:
        report = _worded(_poll(st, url, duration(wait, "--wait"), 5.0 if interval is None else interval, run_kw))
    if junit is not None:
        _write_junit(st, report, junit)
    if st.json:
        output.emit_json({**report.to_dict(), **({"junit": junit} if junit is not None else {})})
    else:
        _render(st, report)
    if not report.ok:
        waited = f" after {report.attempts} attempts in {report.waited:.1f} s" if report.waited is not None else ""
        why = "; ".join(f"{c.name}: {c.detail}" for c in report.failures())[:500]
        raise CheckFailed(f"{report.url}{waited}: {why}")  # report.url: its password masked


def _worded(report: Any) -> Any:
    """``report`` with each check's detail in the command line's words (:func:`prisme_keys.cli.words.say`)."""
    report.checks[:] = [dataclasses.replace(c, detail=say(c.detail)) for c in report.checks]
    return report


def _write_junit(st: Any, report: Any, junit: str) -> None:
    """``--junit FILE``: the report as JUnit XML (:func:`prisme_keys.publish.junit.junit_xml`), written atomically."""
    from prisme_keys.cli.common import write_file
    from prisme_keys.publish.junit import junit_xml

    write_file(junit_xml(report), junit, private=False, key_file=st.settings.key_file, flag="--junit", force_flag=None)


def _absent_kids(values: Optional[list[str]]) -> Optional[list[str]]:
    if not values:
        return None
    for v in values:
        if not v.strip() or not v.isprintable() or len(v) > 200:
            raise UsageError("--absent: a kid is a non-empty line of at most 200 printable characters")
    return list(dict.fromkeys(values))


def _poll(st: Any, url: str, wait: int, interval: float, run_kw: dict[str, Any]) -> Any:
    """``check --wait``: fetch again until the checks pass or ``wait`` seconds have passed (progress on stderr)."""
    import math

    from prisme_keys.cli import output
    from prisme_keys.publish import watch

    if not math.isfinite(interval) or interval <= 0:
        raise UsageError(f"--interval must be a number of seconds above 0, not {interval}")

    def retry(outcome: Any, pause: float) -> None:
        if hasattr(outcome, "failures"):
            why = "; ".join(f"{c.name}: {say(c.detail)}" for c in outcome.failures())
        else:
            why = say(outcome.message)
        output.note(f"waiting: {why[:300]}; next fetch in {pause:.1f} s", quiet=st.quiet)

    return watch.run_until(st.settings, url, wait=wait, interval=interval, on_retry=retry, **run_kw)


def _render(st: Any, report: Any) -> None:
    """The human report: a table of the checks, a summary line, and (``--wait``) how the wait ended on stderr."""
    from prisme_keys.cli import output

    output.table(["check", "status", "detail"], [[c.name, c.status, c.detail] for c in report.checks], status_column=1)
    output.status_line(summary(report.ok, report.counts(), report.strict), "ok" if report.ok else "FAILED")
    if report.waited is None:
        return
    done = "passed" if report.ok else "still failing"
    msg = f"{done} after {report.attempts} attempt{'s' if report.attempts != 1 else ''} in {report.waited:.1f} s"
    if report.stale_until:
        msg += f"; caches that fetched the failing set may serve it until {report.stale_until} (its max-age)"
    output.note(msg, quiet=st.quiet)


def summary(ok: bool, counts: dict[str, int], strict: bool) -> str:
    """``ok: 20 checks: 18 passed, 2 warnings, 0 failed``; the parts add up to the total.

    Under ``--strict`` it says so, and why the run failed when only warnings did.
    """
    from prisme_keys.cli.output import plural

    text = (
        f"{'ok' if ok else 'FAILED'}: {plural(counts['checks'], 'check')}: {counts['passed']} passed, "
        f"{plural(counts['warnings'], 'warning')}, {counts['failed']} failed"
    )
    if strict:
        text += " (--strict: warnings fail)" if counts["warnings"] else " (--strict)"
    return text


@app.command()
def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback by default)."),
    port: int = typer.Option(8080, "--port", min=0, max=65535, help="Port to bind (0 to 65535); 0 picks a free one."),
    read_timeout: float = typer.Option(
        10.0,
        "--read-timeout",
        metavar="SECONDS",
        help="Close a connection that sends nothing for this long (idle keep-alive or half-sent request).",
    ),
    cache_control: str = typer.Option(
        "public, max-age=600", "--cache-control", help="Cache-Control header of the JWKS responses."
    ),
) -> None:
    """Serve the key file's JWKS and an anonymous login for development.

    Routes: GET /oidc/jwks and /.well-known/jwks.json (the public set), GET
    /oidc/.well-known/openid-configuration, POST /v2/login/anonymous {"expiresAfter": s}.
    Rotations show up without a restart. Ctrl-C stops it. With --json: one document
    {serving, url, jwks_url, issuer, key_file} once it listens. With -q (before the
    command): no access log on stderr.
    """
    from prisme_keys.cli import output
    from prisme_keys.publish import serve as server_mod

    st = state(ctx)
    if not read_timeout > 0 or read_timeout == float("inf"):
        raise UsageError(f"--read-timeout must be a number of seconds above 0, not {read_timeout}")
    server = server_mod.start(
        st.settings, host, port, cache_control=cache_control or None, read_timeout=read_timeout, access_log=not st.quiet
    )

    def ready() -> None:
        output.note(
            f"key file {st.settings.key_file}; issuer {redact_url(server.issuer)}"
            + (
                "; loopback only (use --host to expose)"
                if server_mod.is_loopback_host(host)
                else f"; listening on {host}, reachable from other hosts"
            ),
            quiet=st.quiet,
        )
        if st.json:  # one document, once listening; "stopped" goes to stderr
            output.emit_json(
                {
                    "serving": True,
                    "url": server.base_url,
                    "jwks_url": f"{server.base_url}/oidc/jwks",
                    "issuer": redact_url(server.issuer),
                    "key_file": str(st.settings.key_file),
                }
            )
        else:
            output.line(f"serving {server.base_url}/oidc/jwks")

    server_mod.run_forever(server, ready)
    output.note("stopped", quiet=st.quiet)
