"""``check`` (CI check of a published JWKS) and ``serve`` (a local JWKS endpoint)."""

from __future__ import annotations

from typing import Optional

import typer

from prisme_keys.cli.app import app, state


@app.command()
def check(
    ctx: typer.Context,
    url: str = typer.Argument(..., metavar="URL", help="The JWKS URL, e.g. https://api.example.com/oidc/jwks."),
    against: Optional[bool] = typer.Option(
        None, "--against/--no-against", help="Compare with the local key file (default: when the key file exists)."
    ),
    roundtrip: bool = typer.Option(
        False,
        "--roundtrip",
        help="Mint a short-lived token with the local signing key and verify it against URL exactly as `verify` does.",
    ),
    strict: bool = typer.Option(False, "--strict", help="Treat warnings as failures."),
    junit: Optional[str] = typer.Option(None, "--junit", metavar="FILE", help="Also write a JUnit XML report to FILE."),
    algorithms: Optional[str] = typer.Option(
        None, "--algorithms", help="Allowed alg values, comma-separated (default: JWKS_ALG)."
    ),
    timeout: float = typer.Option(5.0, "--timeout", help="Total fetch timeout, seconds."),
    cacert: Optional[str] = typer.Option(None, "--cacert", metavar="FILE", help="PEM bundle of a private CA to trust."),
    allow_http: bool = typer.Option(
        False, "--allow-http", help="Allow plain HTTP to a non-loopback host (the transport.https check still fails)."
    ),
) -> None:
    """Check a published JWKS for CI: transport, shape, secrecy, known-compromised keys, and the local key file.

    Exit 0 when no check fails (warnings allowed), 10 when one fails, 9 when the fetch itself
    fails (network, TLS, timeout, too large).
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
    report = checks.run(
        st.settings,
        url,
        now=st.now(),
        against=against,
        roundtrip=roundtrip,
        strict=strict,
        algorithms=algorithms,
        timeout=timeout,
        cacert=cacert,
        allow_http=allow_http,
    )
    if junit is not None:
        from prisme_keys.cli.common import write_file

        write_file(
            checks.junit_xml(report),
            junit,
            private=False,
            key_file=st.settings.key_file,
            flag="--junit",
            force_flag=None,
        )
    if st.json:
        output.emit_json(report.to_dict())
    else:
        output.table(["check", "status", "detail"], [[c.name, c.status, c.detail] for c in report.checks])
        fails = [c for c in report.checks if c.status == "fail"]
        warns = [c for c in report.checks if c.status == "warn"]
        output.line(
            f"{'ok' if report.ok else 'FAILED'}: {len(report.checks)} checks, {len(fails)} failed, "
            f"{len(warns)} warning(s){' (strict)' if strict else ''}"
        )
    if not report.ok:
        raise CheckFailed(
            f"{url}: "
            + "; ".join(
                f"{c.name}: {c.detail}" for c in report.checks if c.status == "fail" or (strict and c.status == "warn")
            )[:500]
        )


@app.command()
def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback by default)."),
    port: int = typer.Option(8080, "--port", help="Port to bind; 0 picks a free one."),
    cache_control: str = typer.Option(
        "public, max-age=600", "--cache-control", help="Cache-Control header of the JWKS responses."
    ),
) -> None:
    """Serve the key file's JWKS and an anonymous login for development.

    Routes: GET /oidc/jwks and /.well-known/jwks.json (the public set), GET
    /oidc/.well-known/openid-configuration, POST /v2/login/anonymous {"expiresAfter": s}.
    Rotations show up without a restart. Ctrl-C stops it.
    """
    from prisme_keys.cli import output
    from prisme_keys.publish import serve as server_mod

    st = state(ctx)
    server = server_mod.start(st.settings, host, port, cache_control=cache_control or None)

    def ready() -> None:
        output.note(
            f"key file {st.settings.key_file}; issuer {server.issuer}"
            + (
                "; loopback only (use --host to expose)"
                if server_mod.is_loopback_host(host)
                else f"; listening on {host}, reachable from other hosts"
            ),
            quiet=st.quiet,
        )
        output.line(f"serving {server.base_url}/oidc/jwks")

    server_mod.run_forever(server, ready)
    output.note("stopped", quiet=st.quiet)
