"""``check``: named checks of a published JWKS, for CI pipelines.

Each check yields a :class:`Check` ``(name, status, detail)`` with ``status`` one of
``pass``, ``warn``, ``fail`` and a one-line ``detail``. The checks are pure functions of a
fetched response (:class:`Response`), the local key file's records and ``now``; fetching
and the round trip are done by :func:`run`.

Groups:

* ``transport.*``: HTTPS (loopback excepted), status 200, content type, Cache-Control;
* ``shape.*``: a JWK Set (RFC 7517 section 5), kids present and unique, RSA ``sig`` keys,
  allowed ``alg``, ``e`` = AQAB, canonical ``n`` (RFC 7518 section 6.3.1.1), >= 2048 bits;
* ``secrecy.private_members``: no ``d p q dp dq qi oth k`` member (values never printed);
* ``compromised.known_keys``: no key whose private half is public (RFC 7638 thumbprints);
* ``against.*``: the local key file's keys are published as they should be, and no key it
  revoked is (``against.revoked_absent``);
* ``absent.kids``: (``--absent``) none of the given kids, nor their keys under another kid
  (RFC 7638 thumbprints), is published;
* ``roundtrip``: a token minted with the local signing key verifies against the URL.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from prisme_keys import jwk as jwk_rules
from prisme_keys.store import revocation, rotation
from prisme_keys.store.records import KeyRecord
from prisme_keys.store.revocation import RevokedKeys
from prisme_keys.store.revocation import describe as describe_revocation
from prisme_keys.text import BOM_BYTES, cap, decode_utf8, redact_url, shown
from prisme_keys.tokens import freshness

PASS, WARN, FAIL = "pass", "warn", "fail"


@dataclass(frozen=True)
class Check:
    """One named check result: ``status`` is ``pass``, ``warn`` or ``fail``; ``detail`` one line
    (a :class:`prisme_keys.errors.Worded` text when it quotes an error that names arguments)."""

    name: str
    status: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        """``{name, status, detail}``."""
        return {"name": self.name, "status": self.status, "detail": self.detail}


@dataclass
class Response:
    """A fetched JWKS response.

    Attributes:
        url: the URL asked for; final_url: the URL after redirects; both as shown in reports, their
            password masked (:func:`prisme_keys.text.redact_url`).
        status: HTTP status code.
        headers: response headers, names lower-cased.
        body: the body bytes (capped by the client).
    """

    url: str
    final_url: str
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class Report:
    """All checks of one run: ``ok`` is true when none failed (after ``--strict``).

    Attributes:
        headers: the response headers (lower-case names), for freshness when polling.
        attempts: fetches made (more than 1 when polling with a wait).
        waited: seconds spent polling, or ``None`` when no wait was asked for.
        stale_until: (polling) ISO time until which caches may still serve the last failing
            response (its ``max-age`` minus ``Age``), or ``None``.
    """

    url: str
    checks: list[Check] = field(default_factory=list)
    strict: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    attempts: int = 1
    waited: float | None = None
    stale_until: str | None = None

    @property
    def ok(self) -> bool:
        """No ``fail`` (and with ``strict``, no ``warn`` either)."""
        bad = {FAIL, WARN} if self.strict else {FAIL}
        return not any(c.status in bad for c in self.checks)

    def counts(self) -> dict[str, int]:
        """``{checks, passed, warnings, failed}``: ``passed + warnings + failed == checks``.

        Counted by status, whatever ``strict`` says (a warning stays a warning; ``ok``
        tells whether warnings made the run fail).
        """
        by = {s: sum(1 for c in self.checks if c.status == s) for s in (PASS, WARN, FAIL)}
        return {"checks": len(self.checks), "passed": by[PASS], "warnings": by[WARN], "failed": by[FAIL]}

    def to_dict(self) -> dict[str, Any]:
        """``{url, ok, strict, summary: {checks, passed, warnings, failed}, checks: [{name, status, detail}]}``;
        with polling also ``attempts``, ``waited_seconds``, ``stale_until``."""
        doc: dict[str, Any] = {
            "url": self.url,
            "ok": self.ok,
            "strict": self.strict,
            "summary": self.counts(),
            "checks": [c.to_dict() for c in self.checks],
        }
        if self.waited is not None:
            doc.update(attempts=self.attempts, waited_seconds=round(self.waited, 3), stale_until=self.stale_until)
        return doc

    def failures(self) -> list[Check]:
        """The checks that make the report fail (``fail``, and ``warn`` when strict)."""
        bad = {FAIL, WARN} if self.strict else {FAIL}
        return [c for c in self.checks if c.status in bad]


def is_loopback(url: str) -> bool:
    """True when ``url``'s host is ``localhost`` or a loopback address (127.0.0.0/8, ::1)."""
    from prisme_keys.tokens.urls import is_loopback as host_is_loopback

    return host_is_loopback(urlsplit(url).hostname)


def transport_checks(resp: Response) -> list[Check]:
    """``transport.https``, ``transport.status``, ``transport.content_type``, ``transport.cache_control``."""
    out = []
    scheme = urlsplit(resp.final_url).scheme
    if scheme == "https":
        out.append(Check("transport.https", PASS, f"served over HTTPS ({resp.final_url})"))
    elif is_loopback(resp.final_url):
        out.append(Check("transport.https", PASS, "plain HTTP on a loopback address"))
    else:
        out.append(Check("transport.https", FAIL, f"served over {scheme}, not HTTPS: {resp.final_url}"))
    if resp.status == 200:
        out.append(Check("transport.status", PASS, "HTTP 200"))
    else:
        out.append(Check("transport.status", FAIL, f"HTTP {resp.status}, expected 200"))
    ctype = resp.headers.get("content-type", "")
    media = ctype.split(";")[0].strip().lower()
    if media in ("application/json", "application/jwk-set+json"):
        out.append(Check("transport.content_type", PASS, ctype))
    else:
        out.append(
            Check(
                "transport.content_type",
                FAIL,
                f"content type {ctype or '(none)'!s}; expected application/jwk-set+json or application/json",
            )
        )
    out.append(_cache_control(resp.headers))
    return out


def _cache_control(headers: dict[str, str]) -> Check:
    """``transport.cache_control``: what a verifier's cache makes of the headers (RFC 9111 4.2, one parser)."""
    name = "transport.cache_control"
    value = headers.get("cache-control")
    if value is None and "expires" not in headers:
        return Check(
            name,
            WARN,
            "no Cache-Control header: each verifier picks its own cache time (the reference gateway sends none)",
        )
    date = freshness.parse_http_date(headers.get("date"))
    at = date if date is not None else 0.0  # the server's own view: no apparent age
    fr = freshness.freshness(headers, request_time=at, response_time=at)
    cc = freshness.parse_cache_control(value)
    said = f"Cache-Control: {cap(value)}" if value is not None else f"Expires: {cap(headers['expires'])}"
    if fr.source == "no-store":
        return Check(name, WARN, f"{said} (verifiers will refetch the JWKS for every token)")
    if fr.source == "no-cache":
        return Check(name, WARN, f"{said} (verifiers will revalidate the JWKS before every token)")
    if fr.source == "invalid max-age":
        return Check(name, FAIL, f"{said} ({cc.max_age_problem}; verifiers treat the set as stale)")
    if fr.source == "invalid expires":
        return Check(name, WARN, f"{said} (not an HTTP date: verifiers treat the set as already expired)")
    if cc.max_age is not None and cc.max_age > freshness.MAX_CACHE_AGE:
        return Check(name, WARN, f"{said} (max-age over a day delays new keys for verifiers)")
    left = fr.remaining(at, at)
    if fr.lifetime > 0 and left <= 0:
        return Check(name, WARN, f"{said} ({fr.detail}: stale on arrival, verifiers refetch every time)")
    if fr.initial_age > 0:
        return Check(name, PASS, f"{said} (fresh for {left:.0f} s: {fr.detail})")
    return Check(name, PASS, said)


def parse_body(resp: Response) -> tuple[Check, list[Any] | None]:
    """``shape.jwk_set``: the body is JSON ``{"keys": [...]}``; returns the keys or ``None``."""

    def no_dupes(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        d = dict(pairs)
        if len(d) != len(pairs):
            raise ValueError("duplicate member")
        return d

    try:
        doc = json.loads(decode_utf8(resp.body), object_pairs_hook=no_dupes)
    except RecursionError:
        return Check("shape.jwk_set", FAIL, "body is JSON nested too deeply"), None
    except ValueError as exc:
        if str(exc) == "duplicate member":
            return Check("shape.jwk_set", FAIL, 'an object in the body repeats a member (e.g. two "keys")'), None
        start = resp.body[:40].decode("utf-8", "replace").strip().replace("\n", " ")
        return Check("shape.jwk_set", FAIL, f"body is not JSON (starts with {shown(start)})"), None
    except UnicodeDecodeError:
        start = resp.body[:40].decode("utf-8", "replace").strip().replace("\n", " ")
        return Check("shape.jwk_set", FAIL, f"body is not JSON (starts with {shown(start)})"), None
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        return Check("shape.jwk_set", FAIL, 'JSON is not a JWK Set (no "keys" list)'), None
    if resp.body.startswith(BOM_BYTES):
        return Check(
            "shape.jwk_set",
            WARN,
            f"a JWK Set of {len(doc['keys'])} key(s), but the body starts with a UTF-8 byte-order mark "
            "(RFC 8259 section 8.1: senders must not add one; some verifiers reject it)",
        ), doc["keys"]
    return Check("shape.jwk_set", PASS, f"a JWK Set of {len(doc['keys'])} key(s)"), doc["keys"]


def _kid(k: Any, i: int) -> str:
    return str(k.get("kid")) if isinstance(k, dict) and k.get("kid") else f"#{i + 1}"


def shape_checks(jwks: list[Any], allowed_algs: tuple[str, ...]) -> list[Check]:
    """The ``shape.*`` checks on the published keys."""
    out: list[Check] = []
    out.append(
        Check("shape.non_empty", PASS, f"{len(jwks)} key(s)")
        if jwks
        else Check("shape.non_empty", FAIL, "the set holds no key")
    )
    objs = [(i, k) for i, k in enumerate(jwks) if isinstance(k, dict)]
    if len(objs) != len(jwks):
        out.append(Check("shape.members", FAIL, f"{len(jwks) - len(objs)} entry(ies) are not JSON objects"))
    missing = [f"#{i + 1}" for i, k in objs if not isinstance(k.get("kid"), str) or not k.get("kid")]
    kids = [k["kid"] for _, k in objs if isinstance(k.get("kid"), str) and k.get("kid")]
    dups = sorted({k for k in kids if kids.count(k) > 1})
    if missing or dups:
        parts = []
        if missing:
            parts.append(f"keys without kid: {', '.join(missing)}")
        if dups:
            parts.append(f"duplicate kids: {', '.join(dups)}")
        out.append(Check("shape.kids", FAIL, "; ".join(parts)))
    elif jwks:
        out.append(Check("shape.kids", PASS, f"{len(kids)} unique kid(s)"))

    def each(name: str, test: Callable[[int, dict[str, Any]], tuple[str, str] | None], ok: str) -> None:
        worst, notes = PASS, []
        for i, k in objs:
            r = test(i, k)
            if r:
                status, note = r
                notes.append(note)
                if status == FAIL or worst == PASS:
                    worst = status
        out.append(Check(name, worst, "; ".join(notes) if notes else ok))

    each(
        "shape.kty",
        lambda i, k: None if k.get("kty") == "RSA" else (FAIL, f"{_kid(k, i)} has kty {shown(k.get('kty'))}"),
        "every key is RSA",
    )
    each(
        "shape.use",
        lambda i, k: (
            None
            if k.get("use") == "sig"
            else (
                (WARN, f"{_kid(k, i)} has no use")
                if "use" not in k
                else (FAIL, f"{_kid(k, i)} has use {shown(k.get('use'))}")
            )
        ),
        'every key has use "sig"',
    )
    each(
        "shape.alg",
        lambda i, k: (
            None
            if k.get("alg") in allowed_algs
            else (
                (WARN, f"{_kid(k, i)} has no alg")
                if "alg" not in k
                else (FAIL, f"{_kid(k, i)} has alg {shown(k.get('alg'))}, allowed: {', '.join(allowed_algs)}")
            )
        ),
        f"every key's alg is in {', '.join(allowed_algs)}",
    )
    each(
        "shape.e",
        lambda i, k: (
            None
            if k.get("e") == "AQAB" or k.get("kty") != "RSA"
            else (FAIL, f"{_kid(k, i)} has e {shown(str(k.get('e'))[:12])}, expected AQAB (65537)")
        ),
        "every e is AQAB",
    )
    each("shape.n_canonical", lambda i, k: _n_problem(i, k), "every n is unpadded base64url without a leading zero")
    each("shape.key_size", lambda i, k: _size_problem(i, k), f"every key has at least {jwk_rules.MIN_BITS} bits")
    return out


def _n_problem(i: int, k: dict[str, Any]) -> tuple[str, str] | None:
    if k.get("kty") != "RSA":
        return None
    n = k.get("n")
    if not isinstance(n, str) or not n:
        return FAIL, f"{_kid(k, i)} has no n"
    problem = jwk_rules.uint_problem(n)  # the key file's own canonical-form rule
    return (FAIL, f"{_kid(k, i)}: n {problem}") if problem else None


def _size_problem(i: int, k: dict[str, Any]) -> tuple[str, str] | None:
    if k.get("kty") != "RSA":
        return None
    bits = jwk_rules.key_bits(k)
    if bits < jwk_rules.MIN_BITS:
        return FAIL, f"{_kid(k, i)} has {bits} bits"
    return None


def secrecy_check(jwks: list[Any]) -> Check:
    """``secrecy.private_members``: names the kid and member of any private member, never the value."""
    leaks = []
    for i, k in enumerate(jwks):
        if isinstance(k, dict):
            members = [m for m in jwk_rules.PRIVATE_MEMBERS if m in k]
            if members:
                leaks.append(f"{_kid(k, i)} publishes {', '.join(members)}")
    if leaks:
        return Check("secrecy.private_members", FAIL, "PRIVATE KEY MATERIAL PUBLISHED: " + "; ".join(leaks))
    return Check("secrecy.private_members", PASS, "no private member in any key")


def compromised_check(jwks: list[Any]) -> Check:
    """``compromised.known_keys``: no published key is on the known-compromised list (by thumbprint)."""
    bad = []
    for i, k in enumerate(jwks):
        if isinstance(k, dict):
            reason = jwk_rules.compromised_reason(k)
            if reason:
                bad.append(f"{_kid(k, i)} (thumbprint {jwk_rules.thumbprint(k)}) is publicly known: {reason}")
    if bad:
        return Check("compromised.known_keys", FAIL, "; ".join(bad))
    return Check("compromised.known_keys", PASS, "no known-compromised key")


def revoked_check(jwks: list[Any], revoked: RevokedKeys) -> Check:
    """``against.revoked_absent``: no published key is one the key file revoked (by kid or RFC 7638 thumbprint)."""
    still = []
    for i, k in enumerate(jwks):
        hit = revoked.match_jwk(k) if isinstance(k, dict) else None
        if hit is not None:
            alias = "" if k.get("kid") == hit["kid"] else f" (the key revoked as {hit['kid']})"
            still.append(f"{_kid(k, i)}{alias} was {describe_revocation(hit)}")
    if still:
        return Check("against.revoked_absent", FAIL, "revoked but still published: " + "; ".join(still))
    n = len(revoked.entries)
    return Check("against.revoked_absent", PASS, f"no revoked key is published ({n} revocation{'s' if n != 1 else ''})")


def _published_thumbprint(k: Mapping[str, Any]) -> str | None:
    try:
        return jwk_rules.thumbprint(k)
    except (ValueError, TypeError):
        return None


def absent_check(jwks: list[Any] | None, wanted: list[str], known: dict[str, str]) -> Check:
    """``absent.kids``: none of ``wanted`` is published, by kid or RFC 7638 thumbprint.

    Args:
        jwks: the published keys, or ``None`` when the body is not a JWK Set.
        wanted: kids or thumbprints that must be absent.
        known: ``{kid: thumbprint}`` the key file knows (its records and revocations), so a
            key published again under another kid is still found.
    """
    name = "absent.kids"
    if jwks is None:
        return Check(name, FAIL, "cannot tell: the body is not a JWK Set")
    served = []
    for w in wanted:
        prints = {w, known[w]} if w in known else {w}
        for i, k in enumerate(jwks):
            if not isinstance(k, dict):
                continue
            if k.get("kid") == w:
                served.append(w)
                break
            if _published_thumbprint(k) in prints:
                served.append(f"{w} (as kid {_kid(k, i)}, the same RFC 7638 thumbprint)")
                break
    if served:
        return Check(name, FAIL, "still served: " + ", ".join(served))
    return Check(name, PASS, f"not served: {', '.join(wanted)} (by kid or RFC 7638 thumbprint)")


def against_checks(
    jwks: list[Any], records: list[KeyRecord], now: datetime, revoked: RevokedKeys | None = None
) -> list[Check]:
    """The ``against.*`` checks: the published set against the local key file (and its revoked keys) at ``now``."""
    published: dict[str, list[dict[str, Any]]] = {}
    for k in jwks:
        if isinstance(k, dict) and isinstance(k.get("kid"), str):
            published.setdefault(k["kid"], []).append(k)
    local = {r["kid"]: r for r in records}
    signing = rotation.signing_record(records, now)
    out = []
    if signing is None:
        out.append(Check("against.signing_published", FAIL, "the local key file holds no key"))
    elif signing["kid"] in published:
        out.append(Check("against.signing_published", PASS, f"signing key {signing['kid']} is published"))
    else:
        out.append(Check("against.signing_published", FAIL, f"signing key {signing['kid']} is not published"))
    live = [r for r in records if rotation.state(r, records, now) != "expired"]
    unpublished = [r["kid"] for r in live if r["kid"] not in published]
    out.append(
        Check("against.unexpired_published", FAIL, f"not published: {', '.join(unpublished)}")
        if unpublished
        else Check("against.unexpired_published", PASS, f"all {len(live)} unexpired key(s) are published")
    )
    unknown = [kid for kid in published if kid not in local and not (revoked and revoked.match(kid=kid))]
    out.append(
        Check("against.unknown_published", WARN, f"published but not in the key file: {', '.join(unknown)}")
        if unknown
        else Check("against.unknown_published", PASS, "every published key is in the key file")
    )
    lingering = [r["kid"] for r in records if rotation.state(r, records, now) == "expired" and r["kid"] in published]
    out.append(
        Check("against.expired_lingering", WARN, f"expired but still published: {', '.join(lingering)}")
        if lingering
        else Check("against.expired_lingering", PASS, "no expired key is published")
    )
    differ = []
    for kid, pubs in published.items():
        if kid in local:
            mine = local[kid]["jwk"]
            for p in pubs:
                for m in ("kty", "n", "e", "alg", "use"):
                    if m in mine and p.get(m) != mine[m]:
                        differ.append(f"{kid}: {m} differs")
                        break
    out.append(
        Check("against.public_parts_equal", FAIL, "; ".join(differ))
        if differ
        else Check("against.public_parts_equal", PASS, "published public parts equal the local ones")
    )
    if revoked is not None:
        out.append(revoked_check(jwks, revoked))
    return out


def evaluate(
    resp: Response,
    *,
    allowed_algs: tuple[str, ...],
    records: list[KeyRecord] | None,
    now: datetime,
    roundtrip: Callable[[], Check] | None = None,
    strict: bool = False,
    revoked: RevokedKeys | None = None,
    absent: list[str] | None = None,
    known: dict[str, str] | None = None,
) -> Report:
    """Run every check on a fetched response.

    Args:
        resp: the fetched JWKS response.
        allowed_algs: algorithms a published key may declare.
        records: the local key file's records, or ``None`` to skip the ``against.*`` checks.
        now: the time the local key states are evaluated at (UTC).
        roundtrip: a callable running the ``roundtrip`` check, or ``None``.
        strict: warnings count as failures.
        revoked: the key file's revoked keys (``against.revoked_absent``, with ``records``).
        absent: kids or thumbprints that must not be published (``absent.kids``), or ``None``.
        known: ``{kid: thumbprint}`` from the key file, for ``absent``.
    """
    report = Report(resp.url, strict=strict, headers=dict(resp.headers))
    report.checks += transport_checks(resp)
    shape, jwks = parse_body(resp)
    report.checks.append(shape)
    if jwks is not None:
        report.checks += shape_checks(jwks, allowed_algs)
        report.checks.append(secrecy_check(jwks))
        report.checks.append(compromised_check(jwks))
        if records is not None:
            report.checks += against_checks(jwks, records, now, revoked)
        if roundtrip is not None:
            report.checks.append(roundtrip())
    if absent:
        report.checks.append(absent_check(jwks, absent, known or {}))
    return report


def _roundtrip(settings: Any, url: str, now: datetime, fetch_kw: dict[str, Any]) -> Check:
    """Mint a 5-minute token with the local signing key and verify it against ``url`` as ``verify`` does."""
    from prisme_keys.errors import PrismeKeysError, Worded
    from prisme_keys.tokens import jwks_client
    from prisme_keys.tokens import mint as minter
    from prisme_keys.tokens import verify as verifier

    try:
        run = minter.mint(settings, now, minter.MintOptions(lifetime=300, sub="prisme-keys-check"))
        token = next(run.tokens).token
        source = jwks_client.UrlKeySource(url, use_cache=False, **fetch_kw)
        opts = verifier.VerifyOptions(
            algorithms=(run.alg,), issuer=settings.oidc_provider_url, audience=settings.api_url
        )
        res = verifier.verify(token, source, opts, now=now)
    except PrismeKeysError as exc:
        return Check("roundtrip", FAIL, Worded("{error} (exit {exit})", error=exc.message, exit=int(exc.exit_code)))
    return Check("roundtrip", PASS, f"a token signed by {res.kid} verifies against the published set")


def run(
    settings: Any,
    url: str,
    *,
    now: datetime,
    against: bool | None = None,
    roundtrip: bool = False,
    strict: bool = False,
    algorithms: str | None = None,
    timeout: float = 5.0,
    cacert: Any = None,
    allow_http: bool = False,
    absent: list[str] | None = None,
) -> Report:
    """Fetch ``url`` (never from the cache) and run every check.

    Args:
        settings: effective settings (key file, alg, issuer, audience).
        url: the JWKS URL.
        now: the time local key states are evaluated at (UTC).
        against: compare with the local key file; ``None`` = when the key file exists.
        roundtrip: add the ``roundtrip`` check (needs the key file's private signing key).
        strict: warnings count as failures.
        algorithms: comma-separated allowed ``alg`` values (default ``settings.alg``).
        timeout: total fetch timeout, seconds; cacert: PEM file of a private CA;
        allow_http: allow plain HTTP to a non-loopback host (``transport.https`` still fails).
        absent: kids or RFC 7638 thumbprints that must not be published (``absent.kids``);
            the key file, when it exists, tells the thumbprints of its kids and revoked kids.

    Raises:
        FetchError: the fetch itself failed (network, TLS, timeout, body over the cap) (exit 9).
        KeyFileError: ``against``/``roundtrip`` asked for and the key file is unusable (exit 4).
        UsageError: bad ``algorithms``.
    """
    from prisme_keys.store import lifecycle
    from prisme_keys.tokens import jwks_client
    from prisme_keys.tokens import verify as verifier

    algs = verifier.parse_algorithms(algorithms) if algorithms else (settings.alg,)
    fetch_kw: dict[str, Any] = {"timeout": timeout, "cacert": str(cacert) if cacert else None, "allow_http": allow_http}
    kf = lifecycle.open_keyfile(settings)
    use_file = against or (against is None and kf.exists())
    keyset = kf.load() if use_file or (absent and kf.exists()) else None
    revoked = revocation.revoked_keys(keyset, kf.path) if keyset is not None else None
    raw = jwks_client.fetch_raw(url, **fetch_kw)
    resp = Response(redact_url(url), redact_url(raw.final_url), raw.status, raw.headers, raw.body)
    rt = (lambda: _roundtrip(settings, url, now, fetch_kw)) if roundtrip else None
    return evaluate(
        resp,
        allowed_algs=algs,
        records=keyset.records if use_file and keyset is not None else None,
        now=now,
        roundtrip=rt,
        strict=strict,
        revoked=revoked,
        absent=absent,
        known=_known_thumbprints(keyset.records, revoked) if keyset is not None and revoked is not None else None,
    )


def _known_thumbprints(records: list[KeyRecord], revoked: RevokedKeys) -> dict[str, str]:
    """``{kid: RFC 7638 thumbprint}`` of the key file's records and revoked keys."""
    known = {e["kid"]: e["thumbprint"] for e in revoked.entries}
    for r in records:
        tp = _published_thumbprint(r["jwk"])
        if tp is not None:
            known.setdefault(r["kid"], tp)
    return known
