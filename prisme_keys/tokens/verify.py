"""Verification of compact JWS tokens carrying JWT claims (RFC 7515, RFC 7519).

The algorithm comes from an allow-list (never from the token), the key is chosen by us (kid,
``kty``, ``use``, ``alg``; see :mod:`prisme_keys.tokens.keyring`), the signature is checked with
RSASSA-PKCS1-v1_5 (RFC 7518 section 3.3), then the registered claims (RFC 7519 section 4.1).

Signatures are checked straight with ``cryptography`` (:func:`prisme_keys.jwk.rsa_verifier`), not
through python-jose: importing python-jose's cryptography backend costs more (it pulls in
``cryptography.x509``, 30-45 ms) than one verification, and its high-level ``jws``/``jwt``
functions pick no key by kid, trust an ``algorithms=None`` list and would parse the token a
second time. python-jose is the independent implementation ``doctor`` checks each key against.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from prisme_keys import clock
from prisme_keys.errors import (
    ClaimsRejected,
    InvalidArgument,
    NoUsableKey,
    SignatureRejected,
    Worded,
)
from prisme_keys.jwk import MIN_BITS, SUPPORTED_ALGS
from prisme_keys.store.revocation import RevokedKeys, load_revoked
from prisme_keys.store.revocation import describe as describe_revocation
from prisme_keys.text import printable, shown
from prisme_keys.tokens.jws import (
    MAX_NUMERIC_DATE,
    MIN_NUMERIC_DATE,
    STRING_CLAIMS,
    b64_segment,
    clean_token,
    json_object,
    numeric_date_problem,
    show_value,
    split,
    string_claim_problem,
)
from prisme_keys.tokens.keyring import (
    DEFAULT_MAX_BYTES,
    KeyEntry,
    KeyRing,
    KeySource,
    jwks_file_source,
    keyfile_source,
)


class VerifyOptions(NamedTuple):
    """What :func:`verify` requires.

    Attributes:
        algorithms: allow-list of ``alg`` values (subset of RS256/RS384/RS512).
        issuer: expected ``iss``; ``None`` = not checked.
        audience: expected ``aud`` (the token's ``aud`` may be a list holding it); ``None`` = not checked.
        leeway: seconds of clock skew tolerated for ``exp``, ``nbf``, ``iat``.
        require_exp: ``exp`` must be present (default true).
        require: claim names that must be present (e.g. ``prismeaiSessionId``).
    """

    algorithms: tuple[str, ...] = ("RS256",)
    issuer: str | None = None
    audience: str | None = None
    leeway: float = 0
    require_exp: bool = True
    require: tuple[str, ...] = ()


def parse_algorithms(text: str) -> tuple[str, ...]:
    """Parse an allow-list of algorithms written ``RS256,RS384`` (comma-separated).

    Raises:
        InvalidArgument: ``algorithms``: an empty list, or an algorithm other than RS256/RS384/RS512 (HS*, ES*,
            PS* and ``none`` can never be allowed).
    """
    algs = tuple(a.strip() for a in text.split(",") if a.strip())
    if not algs:
        raise InvalidArgument("algorithms", "{algorithms}: give at least one of RS256, RS384, RS512")
    for a in algs:
        if a not in SUPPORTED_ALGS:
            raise InvalidArgument(
                "algorithms",
                "{algorithms}: {value} is not supported; allowed: RS256, RS384, RS512 "
                "(HMAC, EC, PSS and none are never accepted)",
                value=shown(a),
            )
    return algs


class VerifyResult(NamedTuple):
    """A verified token.

    Attributes:
        kid: kid of the key that verified it (``None`` for a kid-less key).
        header, claims: the token's header and claims.
        issuer_checked, audience_checked: whether ``iss`` / ``aud`` were compared.
    """

    kid: str | None
    header: dict[str, Any]
    claims: dict[str, Any]
    issuer_checked: bool = True
    audience_checked: bool = True
    valid: bool = True

    def summary(self, now: datetime) -> str:
        """The human line ``valid: kid K, sub S, expires in ...``; non-printable characters escaped."""
        exp = self.claims.get("exp")
        try:
            expires = f"expires {clock.humanize(clock.from_numeric_date(exp), now)}" if exp is not None else "no exp"
        except (OverflowError, OSError, ValueError):  # excluded by check_claims; never a traceback
            expires = f"expires at {printable(str(exp))}"
        parts = [
            f"valid: kid {printable(str(self.kid))}",
            f"sub {printable(str(self.claims.get('sub', '(none)')))}",
            expires,
        ]
        if not self.issuer_checked:
            parts.append("issuer not checked")
        if not self.audience_checked:
            parts.append("audience not checked")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """The ``verify --json`` document ``{valid, kid, header, claims}``."""
        return {
            "valid": True,
            "kid": self.kid,
            "header": self.header,
            "claims": self.claims,
            "issuer_checked": self.issuer_checked,
            "audience_checked": self.audience_checked,
        }


def _check_header(header: dict[str, Any], options: VerifyOptions) -> str:
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise SignatureRejected("the header has no alg" if alg is None else "the header's alg is not a string")
    if alg.lower() == "none":
        raise SignatureRejected(f"alg {shown(alg)}: unsigned tokens are never accepted", code="alg_none")
    if alg not in options.algorithms:
        extra = ""
        if alg[:2].upper() in ("HS", "ES", "PS", "ED"):
            extra = "; HMAC, EC, EdDSA and PSS tokens are never accepted"
        elif alg in SUPPORTED_ALGS:
            extra = "; widen the list with {algorithms}"
        raise SignatureRejected(
            Worded(
                "algorithm {alg} is not allowed (allowed: {allowed})" + extra,
                alg=show_value(alg),
                allowed=", ".join(options.algorithms),
            ),
            code="alg_not_allowed",
        )
    crit = header.get("crit")
    if crit is not None:  # RFC 7515 4.1.11: an extension we do not understand makes the JWS invalid
        raise SignatureRejected(
            f"the header marks {show_value(crit)} as critical (crit); no extension is supported",
            code="critical_header",
        )
    if "b64" in header and header["b64"] is not True:
        # RFC 7797: an unencoded payload; RFC 7519 section 7.2 signs the base64url-encoded claims, always
        raise SignatureRejected(
            f"the header sets b64 to {show_value(header['b64'])} (RFC 7797 unencoded payload); "
            "a JWT's payload is always base64url-encoded",
            code="unencoded_payload",
        )
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise NoUsableKey("the header's kid is not a string")
    return alg


def candidate_keys(source: KeySource, kid: str | None, alg: str, *, refresh: bool = True) -> list[KeyEntry]:
    """The keys that may have signed a token with this kid and ``alg``, revoked keys refused.

    With ``refresh``, an unknown kid makes ``source.refresh()`` reload the set once (rate-limited
    by the source); without it, an unknown kid gives ``[]``.

    Raises:
        SignatureRejected: the kid (or every candidate key) is revoked (``key_revoked``), or the
            key with this kid has another ``alg`` (``alg_key_mismatch``).
        NoUsableKey: no kid and not exactly one candidate, or (``refresh``) an unknown kid.
        FetchError: the refetch after an unknown kid failed.
    """
    revoked = source.revoked
    if revoked:
        refuse_revoked(revoked, kid=kid)
    ring = source.ring()
    cands = _candidates(ring, kid, alg)
    if not cands:
        if not refresh:
            return cands
        why = source.refresh()
        ring = source.ring()
        cands = _candidates(ring, kid, alg)
        if not cands:
            raise _unknown_kid(ring, kid, why)
    if revoked:
        cands = _drop_revoked(revoked, cands)
    return cands


def _candidates(ring: KeyRing, kid: str | None, alg: str) -> list[KeyEntry]:
    hit = ring.chosen.get((kid, alg))
    if hit is not None:
        return hit
    cands = _choose(ring, kid, alg)
    if cands:
        ring.chosen[(kid, alg)] = cands
    return cands


def _choose(ring: KeyRing, kid: str | None, alg: str) -> list[KeyEntry]:
    if not ring.entries:
        raise NoUsableKey(
            f"{ring.source} has no usable RSA signing key"
            + (f" ({len(ring.warnings)} skipped)" if ring.warnings else "")
        )
    if kid is None:
        cands = [k for k in ring.entries if k.alg is None or k.alg == alg]
        if len(cands) == 1:
            return cands
        raise NoUsableKey(
            f"the token has no kid and {ring.source} has {len(cands)} candidate keys for {alg}; cannot choose"
            if cands
            else f"the token has no kid and {ring.source} has no key for {alg}"
        )
    same = [k for k in ring.entries if k.kid == kid]
    if not same:
        return []
    cands = [k for k in same if k.alg is None or k.alg == alg]
    if not cands:
        raise SignatureRejected(
            f"the token's alg {alg} does not match key {shown(kid)} "
            f"(alg {', '.join(sorted({str(k.alg) for k in same}))})",
            code="alg_key_mismatch",
        )
    return cands


def refuse_revoked(revoked: RevokedKeys, *, kid: str | None = None, thumbprint: str | None = None) -> None:
    """Refuse a key the key file has revoked (by kid or RFC 7638 thumbprint), whatever the source serves.

    Raises:
        SignatureRejected: (exit 6, code ``key_revoked``) naming the revocation.
    """
    hit = revoked.match(kid=kid, thumbprint=thumbprint)
    if hit is not None:
        same = kid is not None and hit["kid"] == kid
        via = "" if same else f" (the same key, RFC 7638 thumbprint {hit['thumbprint']})"
        raise SignatureRejected(
            f"key {shown(hit['kid'])}{via} was {describe_revocation(hit)}: tokens it signed are refused",
            code="key_revoked",
        )


def _drop_revoked(revoked: RevokedKeys, cands: list[KeyEntry]) -> list[KeyEntry]:
    """The candidates whose key is not revoked; when all are, the revocation is the error."""
    kept = [c for c in cands if revoked.match(thumbprint=c.thumbprint) is None]
    if not kept:
        refuse_revoked(revoked, thumbprint=cands[0].thumbprint)
    return kept


def _unknown_kid(ring: KeyRing, kid: str | None, why: str | None) -> NoUsableKey:
    if kid in ring.skipped:
        return NoUsableKey(f"key {shown(kid)} in {ring.source} cannot verify signatures: {ring.skipped[kid]}")
    present = ", ".join(repr(k) for k in ring.kids) or "none"
    return NoUsableKey(
        f"unknown kid {shown(kid)}; kids in {ring.source}: {present}" + (f" ({why})" if why else ""), code="unknown_kid"
    )


def _check_time(claims: dict[str, Any], name: str) -> float | None:
    v: Any = claims.get(name)
    if type(v) is int and MIN_NUMERIC_DATE <= v < MAX_NUMERIC_DATE:  # the common case, first
        return v
    if v is None and name not in claims:
        return None
    problem = numeric_date_problem(v)
    if problem:
        raise ClaimsRejected(f"claim {shown(name)} {problem}", code="claim_type")
    return float(v)


def _iso(ts: float) -> str:
    try:
        return clock.iso(clock.from_numeric_date(ts))
    except (OverflowError, OSError, ValueError):
        return str(ts)


def _rel(ts: float, now: datetime) -> str:
    try:
        return clock.humanize(clock.from_numeric_date(ts), now)
    except (OverflowError, OSError, ValueError):
        return "far away"


def check_claims(claims: dict[str, Any], options: VerifyOptions, now: datetime) -> tuple[bool, bool]:
    """Check the registered claims (RFC 7519 section 4.1) at ``now``.

    Returns:
        ``(issuer_checked, audience_checked)``.

    Raises:
        ClaimsRejected: naming the claim: ill-typed or missing time claim, expired, not yet
            valid or issued in the future (hint ``leeway``), issuer/audience missing or
            different (showing expected and received), a required claim missing.
    """
    ts = now.timestamp()
    lw = options.leeway
    exp = _check_time(claims, "exp")
    nbf = _check_time(claims, "nbf")
    iat = _check_time(claims, "iat")
    if exp is None and options.require_exp:
        raise ClaimsRejected(Worded("claim 'exp' is missing", hint="require_exp"), code="claim_missing")
    if exp is not None and ts >= exp + lw:
        raise ClaimsRejected(
            f"token expired {_rel(exp, now)} (exp {_iso(exp)})" + (f", beyond the leeway of {lw:g} s" if lw else ""),
            code="expired",
        )
    if nbf is not None and nbf > ts + lw:
        raise ClaimsRejected(
            Worded(
                "token not valid yet: nbf {at} is {ahead} ahead", hint="leeway", at=_iso(nbf), ahead=_rel(nbf, now)[3:]
            ),
            code="not_yet_valid",
        )
    if iat is not None and iat > ts + lw:
        raise ClaimsRejected(
            Worded(
                "token issued in the future: iat {at} is {ahead} ahead",
                hint="leeway",
                at=_iso(iat),
                ahead=_rel(iat, now)[3:],
            ),
            code="issued_in_future",
        )
    for name in STRING_CLAIMS:
        value = claims.get(name)
        if type(value) is not str and name in claims:  # the common case (a string) first
            problem = string_claim_problem(name, value)
            if problem:
                raise ClaimsRejected(f"claim {shown(name)} {problem}", code="claim_type")
    if options.issuer is not None:
        if "iss" not in claims:
            raise ClaimsRejected(f"claim 'iss' is missing; expected {shown(options.issuer)}", code="issuer")
        if claims["iss"] != options.issuer:
            raise ClaimsRejected(
                f"issuer mismatch: expected {shown(options.issuer)}, received {show_value(claims['iss'])}",
                code="issuer",
            )
    if options.audience is not None:
        if "aud" not in claims:
            raise ClaimsRejected(f"claim 'aud' is missing; expected {shown(options.audience)}", code="audience")
        aud = claims["aud"]
        ok = (
            aud == options.audience
            if isinstance(aud, str)
            else (isinstance(aud, list) and all(isinstance(a, str) for a in aud) and options.audience in aud)
        )
        if not ok:
            raise ClaimsRejected(
                f"audience mismatch: expected {shown(options.audience)}, received {show_value(aud)}", code="audience"
            )
    for name in options.require:
        if name not in claims:
            raise ClaimsRejected(f"required claim {shown(name)} is missing", code="claim_missing")
    return options.issuer is not None, options.audience is not None


def verify(
    token: str | bytes, source: KeySource, options: VerifyOptions | None = None, now: datetime | None = None
) -> VerifyResult:
    """Verify a token: algorithm allow-list, our own key choice, RSA signature, then claims.

    Steps: parse (RFC 7515 compact serialization, size cap) -> header ``alg`` must be in
    ``options.algorithms`` (``none`` in any spelling, HS*, ES*, PS* always refused) -> the
    key is chosen by kid among usable RSA ``sig`` keys whose ``alg`` is absent or equal ->
    unknown kid: ``source.refresh()`` once -> RSASSA-PKCS1-v1_5 with SHA-256/384/512
    (RFC 7518 section 3.3) against each candidate -> :func:`check_claims`.

    Args:
        token: the token (whitespace and one ``Bearer`` prefix accepted).
        source: a :class:`KeySource`.
        options: :class:`VerifyOptions` (default: RS256 only, nothing else checked but ``exp``).
        now: the time to check against (default :func:`clock.now`).

    Returns:
        :class:`VerifyResult`.

    Raises:
        MalformedTokenError (5), SignatureRejected (6), ClaimsRejected (7), NoUsableKey (8),
        FetchError (9, when a refetch after an unknown kid fails).
    """
    options = options or VerifyOptions()
    h, p, s = split(clean_token(token))
    header = json_object(b64_segment(h, 0), 0)
    alg = _check_header(header, options)
    claims = json_object(b64_segment(p, 1), 1)
    sig = b64_segment(s, 2)
    kid = header.get("kid")
    cands = candidate_keys(source, kid, alg)
    signing_input = f"{h}.{p}".encode("ascii")
    small = None
    used = None
    for entry in cands:
        if entry.bits < MIN_BITS:
            small = entry
            continue
        # a signature of the wrong length or value is False (cryptography's InvalidSignature, caught in
        # jwk.rsa_verifier); anything else is a bug and propagates, never a "bad signature" verdict
        if not entry.verifier(alg)(signing_input, sig):
            continue
        used = entry
        break
    if used is None:
        if small is not None:
            raise SignatureRejected(
                f"key {shown(small.kid)} is a {small.bits}-bit RSA key; at least {MIN_BITS} bits are required",
                code="key_too_small",
            )
        which = (
            f"key {shown(cands[0].kid)}" if len(cands) == 1 else f"any of the {len(cands)} keys with kid {shown(kid)}"
        )
        raise SignatureRejected(f"the signature does not verify with {which}", code="bad_signature")
    iss_checked, aud_checked = check_claims(claims, options, now if now is not None else clock.now())
    return VerifyResult(used.kid, header, claims, iss_checked, aud_checked)


def open_source(
    settings: Any,
    *,
    jwks_file: str | None = None,
    jwks_url: str | None = None,
    timeout: float | None = None,
    max_bytes: int | None = None,
    cacert: str | None = None,
    allow_http: bool = False,
    use_cache: bool = True,
    jwks_data: bytes | None = None,
) -> KeySource:
    """The key source ``verify`` uses: the key file (default), a JWKS file, or a JWKS URL.

    Whatever the source, when the key file exists its revoked keys are attached
    (:attr:`KeySource.revoked`) and :func:`verify` refuses them, even when a JWKS still serves them.

    Args:
        settings: effective settings (key file, cache folder).
        jwks_file / jwks_url: at most one of them.
        jwks_data: the JWKS file's content when the caller has read it (e.g. from stdin).
        timeout (s), max_bytes, cacert, allow_http, use_cache: see :func:`jwks_client.fetch`;
            ``max_bytes`` caps a JWKS file (and ``jwks_data``) too (default 1 MiB).

    Raises:
        ValueError: both a file and a URL given (a programming error: the caller checks).
        KeyFileError (4): the key file is missing (key-file source) or exists but is unusable.
        FetchError (9).
    """
    if jwks_file is not None and jwks_url is not None:
        raise ValueError("give a JWKS file or a JWKS URL, not both")
    if jwks_file is None and jwks_url is None:
        return keyfile_source(settings)  # the key file's revoked keys come with it
    revoked = load_revoked(settings)  # read first: an unusable key file fails before any fetch
    source = _other_source(settings, jwks_file, jwks_url, timeout, max_bytes, cacert, allow_http, use_cache, jwks_data)
    source.revoked = revoked
    return source


def _other_source(
    settings: Any,
    jwks_file: str | None,
    jwks_url: str | None,
    timeout: float | None,
    max_bytes: int | None,
    cacert: str | None,
    allow_http: bool,
    use_cache: bool,
    jwks_data: bytes | None,
) -> KeySource:
    if jwks_url is not None:
        from prisme_keys.settings import default_cache_dir
        from prisme_keys.tokens import jwks_client

        return jwks_client.UrlKeySource(
            jwks_url,
            timeout=timeout if timeout is not None else jwks_client.DEFAULT_TIMEOUT,
            max_bytes=max_bytes if max_bytes is not None else DEFAULT_MAX_BYTES,
            cacert=cacert,
            allow_http=allow_http,
            use_cache=use_cache,
            cache_dir=default_cache_dir(),
        )
    return jwks_file_source(str(jwks_file), jwks_data, max_bytes if max_bytes is not None else DEFAULT_MAX_BYTES)
