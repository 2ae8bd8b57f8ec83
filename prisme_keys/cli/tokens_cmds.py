"""Token commands: mint, decode, verify."""

# No ``from __future__ import annotations`` here: see prisme_keys.cli.app (start-up time).
import json
import sys
from collections.abc import Iterable
from typing import Annotated, Any, Optional

import typer

from prisme_keys.cli.app import app, state
from prisme_keys.cli.common import duration, read_stdin_capped, read_token_arg, text_option
from prisme_keys.cli.completion import complete_kid
from prisme_keys.errors import UsageError
from prisme_keys.text import json_error, open_input, redact_url, shown, strip_bom

_TOKEN_HELP = (
    "The token, or - to read it from stdin. Surrounding whitespace and one 'Bearer ' prefix "
    "are accepted; at most 64 KiB."
)


def _duration(value: Optional[str], flag: str) -> Optional[int]:
    return None if value is None else duration(value, flag)


def _check_texts(**values: Optional[str] | Optional[list[str]]) -> None:
    """Each free-text option (``sub=`` for ``--sub``) non-empty and valid UTF-8, before anything is read or signed."""
    for name, value in values.items():
        for v in value if isinstance(value, list) else [value]:
            text_option(v, "--" + name.replace("_", "-"))


def parse_claim_pairs(pairs: Iterable[str]) -> dict[str, Any]:
    """Parse ``--claim K=V`` values: V is JSON when it parses, else a string.

    JSON text is parsed as :func:`prisme_keys.tokens.jws.no_json_constants` allows (no NaN, Infinity).

    Raises:
        UsageError: a pair without ``=`` or with an empty name.
    """
    from prisme_keys.tokens.jws import no_json_constants

    out: dict[str, Any] = {}
    for pair in pairs:
        k, sep, v = pair.partition("=")
        if not sep or not k:
            raise UsageError(f"--claim {shown(pair)}: use NAME=VALUE (VALUE is JSON when it parses, else a string)")
        try:
            out[k] = json.loads(v, parse_constant=no_json_constants)
        except ValueError:
            out[k] = v
        except RecursionError:
            raise UsageError(f"--claim {k}: the value is nested too deeply") from None
    return out


def load_claims(text: str, where: str) -> dict[str, Any]:
    """Parse the ``--claims FILE|-`` document: a JSON object.

    Raises:
        UsageError: not JSON or not an object.
    """
    try:
        doc = json.loads(strip_bom(text))  # a leading BOM is accepted
    except json.JSONDecodeError as exc:
        raise UsageError(f"--claims {where}: not JSON: {json_error(exc)}") from None
    except ValueError as exc:
        raise UsageError(f"--claims {where}: not JSON: {exc}") from None
    except RecursionError:
        raise UsageError(f"--claims {where}: not JSON: nested too deeply") from None
    if not isinstance(doc, dict):
        raise UsageError(f"--claims {where}: a JSON object is required, got {type(doc).__name__}")
    return doc


def _extra_claims(claims: Optional[str], pairs: list[str]) -> dict[str, Any]:
    """The ``--claims FILE|-`` object, then the ``--claim K=V`` pairs over it."""
    extra: dict[str, Any] = {}
    if claims is not None:
        limit = 1024 * 1024  # a claims object over 1 MiB is not a token's claims
        try:
            if claims == "-":
                raw = read_stdin_capped(limit)
            else:
                with open_input(claims) as fh:
                    raw = fh.read(limit + 1)
            if len(raw) > limit:
                raise UsageError(f"--claims {claims}: more than {limit} bytes")
            text = raw.decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--claims {claims}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
        extra.update(load_claims(text, claims))
    extra.update(parse_claim_pairs(pairs))
    return extra


# -- mint's options --------------------------------------------------------------------------

Sub = Annotated[
    Optional[str],
    typer.Option(
        "--sub",
        help="Subject (user id). Without it: an anonymous token "
        "exactly as the gateway's anonymous login makes it (fresh unique sub).",
    ),
]
SigningKid = Annotated[
    Optional[str],
    typer.Option(
        "--kid",
        autocompletion=complete_kid,
        help="Sign with this key instead of the signing key (it must still hold its private key; e.g. a retired key).",
    ),
]
ExpiresAfter = Annotated[
    Optional[int],
    typer.Option(
        "--expires-after",
        metavar="SECONDS",
        min=0,
        help="Lifetime in seconds, as anonymous login's expiresAfter (default ACCESS_TOKENS_MAX_AGE).",
    ),
]
Ttl = Annotated[
    Optional[str],
    typer.Option("--ttl", metavar="DURATION", help="Lifetime: 90s, 15m, 2h, 30d or seconds (same as --expires-after)."),
]
Iss = Annotated[Optional[str], typer.Option("--iss", help="Issuer (default OIDC_PROVIDER_URL).")]
Aud = Annotated[Optional[list[str]], typer.Option("--aud", help="Audience; repeat for a list (default API_URL).")]
ClaimPairs = Annotated[
    Optional[list[str]],
    typer.Option(
        "--claim",
        metavar="K=V",
        help="Extra claim; V is JSON when it parses, else a string. Repeatable; overrides others.",
    ),
]
ClaimsFile = Annotated[
    Optional[str],
    typer.Option("--claims", metavar="FILE|-", help="A JSON object of claims merged in (--claim wins)."),
]
SessionId = Annotated[
    Optional[str], typer.Option("--session-id", help="prismeaiSessionId (default a fresh UUIDv4 per token).")
]
NotBefore = Annotated[
    Optional[str], typer.Option("--not-before", metavar="DURATION", help="Set nbf this long after iat.")
]
Expired = Annotated[
    bool,
    typer.Option("--expired", help="Make the token already expired (exp one minute ago), for negative tests."),
]
Count = Annotated[
    int,
    typer.Option(
        "--count",
        min=1,
        help="Mint N tokens, one a line, each with its own session id (and, anonymous, its own sub).",
    ),
]
Workers = Annotated[
    Optional[str],
    typer.Option(
        "--workers",
        metavar="N",
        help="Workers for many tokens, 1 to 64: mint --count signs in threads; verify --batch forks child "
        "processes on Linux (else threads). Default: the CPUs this process may run on, at most 4. 1: none.",
    ),
]


def _workers(value: Optional[str]) -> int:
    """The ``--workers`` value (default :func:`~prisme_keys.tokens.workers.default_workers`), checked.

    Raises:
        InvalidArgument: not a whole number from 1 to 64 (exit 2).
    """
    from prisme_keys.tokens.workers import check_workers, default_workers

    if value is None:
        return default_workers()
    return check_workers(int(value) if value.isascii() and value.isdigit() else value)


@app.command()
def mint(
    ctx: typer.Context,
    sub: Sub = None,
    kid: SigningKid = None,
    expires_after: ExpiresAfter = None,
    ttl: Ttl = None,
    iss: Iss = None,
    aud: Aud = None,
    claim: ClaimPairs = None,
    claims: ClaimsFile = None,
    session_id: SessionId = None,
    not_before: NotBefore = None,
    expired: Expired = False,
    count: Count = 1,
    workers: Workers = None,
) -> None:
    """Mint tokens signed by the signing key, as the gateway issues them.

    Prints the bare token(s), one a line. With --json: {token, header, claims} (a list
    of them when --count is above 1).
    """
    from prisme_keys.tokens import mint as minter

    st = state(ctx)
    _check_texts(sub=sub, kid=kid, iss=iss, session_id=session_id, aud=aud, claim=claim)
    threads = _workers(workers)
    if ttl is not None and expires_after is not None:
        raise UsageError("give --ttl or --expires-after, not both")
    lifetime = _duration(ttl, "--ttl") if ttl is not None else expires_after
    extra = _extra_claims(claims, claim or [])
    opts = minter.MintOptions(
        sub=sub,
        kid=kid,
        lifetime=lifetime,
        iss=iss,
        aud=list(aud) if aud else None,
        claims=extra,
        session_id=session_id,
        not_before=_duration(not_before, "--not-before"),
        expired=expired,
        count=count,
    )
    from prisme_keys.cli.progress import Progress, wanted

    with Progress("minting", "tokens", enabled=count > 1 and wanted(st, streams_to_stdout=True)) as progress:
        _print_tokens(st, minter.mint(st.settings, st.now(), opts, progress=progress, workers=threads), count)


def _print_tokens(st: Any, run: Any, count: int) -> None:
    """Warnings on stderr, then the tokens (a lazy iterator: minted while written) on stdout: one a
    line, or with ``--json`` one document (a list streamed token by token when ``count`` is above 1).

    However the writing ends (a reader gone, Ctrl-C), minting stops here: the worker threads are
    joined before the command returns (and a ``--json`` list begun is ended by the runner)."""
    from prisme_keys.cli import output

    try:
        for w in run.warnings:
            output.warn(w, quiet=st.quiet)
        if run.missing:
            output.warn(missing_claims_warning(run.missing), quiet=st.quiet)
        if st.json and count == 1:
            output.emit_json(next(run.tokens).to_dict())
        elif st.json:
            from prisme_keys.cli.token_output import stream_json_tokens

            stream_json_tokens(st, run.tokens)
        else:
            out = sys.stdout
            for m in run.tokens:  # minted lazily and flushed one by one: a reader that goes away stops the work
                out.write(m.token + "\n")
                out.flush()
    finally:
        run.close()


#: The setting that gives each gateway-required claim its value (the flag: :data:`prisme_keys.cli.words.FLAGS`).
_CLAIM_SETTINGS = {"iss": "OIDC_PROVIDER_URL", "aud": "API_URL"}


def missing_claims_warning(missing: list[str]) -> str:
    """The one warning line ``mint`` prints when tokens lack ``iss`` and/or ``aud``.

    >>> missing_claims_warning(["iss", "aud"])
    'no iss/aud claims: OIDC_PROVIDER_URL and API_URL are unset (set them or pass --iss/--aud; -q silences warnings)'
    """
    from prisme_keys.cli.words import FLAGS

    envs = " and ".join(_CLAIM_SETTINGS[c] for c in missing)
    flags = "/".join(FLAGS[c] for c in missing)
    if len(missing) == 1:
        return f"no {missing[0]} claim: {envs} is unset (set it or pass {flags}; -q silences warnings)"
    return f"no {'/'.join(missing)} claims: {envs} are unset (set them or pass {flags}; -q silences warnings)"


@app.command()
def decode(
    ctx: typer.Context,
    token: str = typer.Argument(..., metavar="TOKEN|-", help=_TOKEN_HELP),
) -> None:
    """Show a token's header and claims WITHOUT verifying it (labelled UNVERIFIED).

    Time claims are shown as ISO-8601 and relative ("in 5 minutes", "expired 3 days ago").
    Warns on alg none, a missing kid, an expired token. A malformed token is exit 5,
    saying what is wrong; tokens over 64 KiB and encrypted tokens (JWE) are refused.
    """
    import json

    from prisme_keys.cli import output
    from prisme_keys.tokens import jws

    st = state(ctx)
    d = jws.decode(read_token_arg(token), st.now())
    for w in d.warnings:
        output.warn(w, quiet=st.quiet)
    if st.json:
        output.emit_json(d.to_dict())
        return
    output.line("UNVERIFIED: the signature was not checked (prisme-keys verify checks it)")
    output.line("header: " + json.dumps(d.header, ensure_ascii=False))
    output.block("claims: " + json.dumps(d.claims, indent=2, ensure_ascii=False))
    for name, t in d.times.items():
        output.line(f"{name}: {t['iso']} ({t['relative']})")


# -- verify's options ------------------------------------------------------------------------

TokenOrBatch = Annotated[Optional[str], typer.Argument(metavar="TOKEN|-", help=_TOKEN_HELP)]
JwksFile = Annotated[
    Optional[str],
    typer.Option("--jwks-file", metavar="FILE", help="Verify against this JWK Set file instead of the key file."),
]
JwksUrl = Annotated[
    Optional[str],
    typer.Option(
        "--jwks-url",
        metavar="URL",
        help="Verify against the JWKS at URL (https required except for loopback; cached, see --no-cache).",
    ),
]
Algorithms = Annotated[
    Optional[str],
    typer.Option(
        "--algorithms",
        metavar="ALGS",
        help="Comma-separated "
        "allow-list, e.g. RS256,RS384 (default JWKS_ALG). HS*, ES*, PS* "
        "and none are never accepted.",
    ),
]
Issuer = Annotated[
    Optional[str],
    typer.Option("--issuer", help="Expected iss (default OIDC_PROVIDER_URL; unchecked when neither is set)."),
]
Audience = Annotated[
    Optional[str], typer.Option("--audience", help="Expected aud (default API_URL; unchecked when neither is set).")
]
Leeway = Annotated[
    float, typer.Option("--leeway", metavar="SECONDS", min=0, help="Clock skew tolerated for exp, nbf and iat.")
]
NoExpRequired = Annotated[bool, typer.Option("--no-exp-required", help="Accept a token without exp.")]
Require = Annotated[
    Optional[list[str]],
    typer.Option("--require", metavar="CLAIM", help="Claim that must be present (repeatable), e.g. prismeaiSessionId."),
]
Batch = Annotated[
    bool,
    typer.Option(
        "--batch",
        help="Read tokens from stdin, one a line; print one JSON "
        "line per token {line, valid, exit, error?, kid?, sub?}; exit 0 when all are "
        "valid, else the exit code of the first failure.",
    ),
]
Timeout = Annotated[float, typer.Option("--timeout", metavar="SECONDS", help="Total time for fetching the JWKS.")]
MaxBytes = Annotated[
    int, typer.Option("--max-bytes", metavar="BYTES", min=1, help="Largest JWKS body or JWKS file, bytes.")
]
CaCert = Annotated[
    Optional[str],
    typer.Option("--cacert", metavar="FILE", help="Trust this CA (PEM) for the JWKS URL instead of the system store."),
]
AllowHttp = Annotated[bool, typer.Option("--allow-http", help="Allow a plain http JWKS URL on a non-loopback host.")]
NoCache = Annotated[bool, typer.Option("--no-cache", help="Do not read or write the JWKS cache.")]


@app.command()
def verify(
    ctx: typer.Context,
    token: TokenOrBatch = None,
    jwks_file: JwksFile = None,
    jwks_url: JwksUrl = None,
    algorithms: Algorithms = None,
    issuer: Issuer = None,
    audience: Audience = None,
    leeway: Leeway = 0,
    no_exp_required: NoExpRequired = False,
    require: Require = None,
    batch: Batch = False,
    timeout: Timeout = 5.0,
    max_bytes: MaxBytes = 1 << 20,
    cacert: CaCert = None,
    allow_http: AllowHttp = False,
    no_cache: NoCache = False,
    workers: Workers = None,
) -> None:
    """Verify a token's signature and claims against the key file, a JWKS file or a JWKS URL.

    Prints "valid: kid ..., sub ..., expires in ..." (or {valid, kid, header, claims} with
    --json). Exit 5 malformed, 6 signature/algorithm rejected, 7 claims rejected, 8 no
    usable key, 9 JWKS fetch failed.
    """
    from prisme_keys.cli import output
    from prisme_keys.tokens import verify as verifier

    st = state(ctx)
    s = st.settings
    _check_token_args(token, batch, leeway)
    threads = _workers(workers)
    opts = verifier.VerifyOptions(
        algorithms=verifier.parse_algorithms(algorithms) if algorithms is not None else (s.alg,),
        issuer=issuer if issuer is not None else s.oidc_provider_url,
        audience=audience if audience is not None else s.api_url,
        leeway=leeway,
        require_exp=not no_exp_required,
        require=tuple(require or ()),
    )
    raw = _read_token(token, batch, jwks_file, jwks_url)
    source = verifier.open_source(
        s,
        jwks_file=jwks_file,
        jwks_url=jwks_url,
        timeout=timeout,
        max_bytes=max_bytes,
        cacert=cacert,
        allow_http=allow_http,
        use_cache=not no_cache,
        jwks_data=read_stdin_capped(max_bytes) if jwks_file == "-" else None,
    )
    final = getattr(getattr(source, "result", None), "final_url", None)
    if final and final != jwks_url:
        output.note(
            f"note: JWKS served by {redact_url(final)} (redirected from {redact_url(jwks_url or '')})", quiet=st.quiet
        )

    from prisme_keys.cli.words import say

    def warn(w: str) -> None:
        output.warn(say(w), quiet=st.quiet)

    for w in source.take_warnings():
        warn(w)
    if raw is None:  # --batch
        from prisme_keys.cli.token_output import verify_batch

        raise typer.Exit(verify_batch(st, source, opts, warn, threads))
    try:
        res = verifier.verify(raw, source, opts, now=st.now())
    finally:
        for w in source.take_warnings():
            warn(w)
    if st.json:
        output.emit_json(res.to_dict())
        return
    output.line(res.summary(st.now()))  # non-printable characters escaped; an out-of-range exp never raises


def _check_token_args(token: Optional[str], batch: bool, leeway: float) -> None:
    """``verify``'s TOKEN, ``--batch`` and ``--leeway`` make sense together.

    Raises:
        UsageError: a NaN or infinite leeway, TOKEN with ``--batch``, or neither.
    """
    if leeway != leeway or leeway == float("inf"):  # NaN would make every time comparison false
        raise UsageError(f"--leeway must be a finite number of seconds, not {leeway}")
    if batch and token is not None:
        raise UsageError("--batch reads tokens from stdin; give no TOKEN argument")
    if not batch and token is None:
        raise UsageError("missing TOKEN (or - for stdin, or --batch)")


def _read_token(token: Optional[str], batch: bool, jwks_file: Optional[str], jwks_url: Optional[str]) -> Optional[str]:
    """The token to verify (``None`` with ``--batch``), read and split before any key is loaded.

    Raises:
        UsageError: both ``--jwks-file`` and ``--jwks-url``, or the JWKS and the token both on stdin.
        MalformedTokenError: the token is no compact JWS (an opaque credential...), exit 5.
    """
    if jwks_file is not None and jwks_url is not None:
        raise UsageError("give --jwks-file or --jwks-url, not both")
    if jwks_file == "-" and (batch or token == "-"):
        raise UsageError("--jwks-file - and the token cannot both come from stdin")
    if batch or token is None:
        return None
    from prisme_keys.tokens import jws

    raw = read_token_arg(token)
    jws.split(raw)  # a token that is no JWS (an opaque credential...) is said so before any key is loaded
    return raw
