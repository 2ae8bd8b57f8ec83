"""prisme_keys.jwks_client against a real threaded HTTP(S) server on 127.0.0.1."""

from __future__ import annotations

import json
import time
import tracemalloc

import pytest
from jwks_server import JwksServer, Route, claims, jwks, rs_token, tls_context

from prisme_keys.cli.words import say
from prisme_keys.errors import FetchError, NoUsableKey, UsageError
from prisme_keys.tokens import jwks_client
from prisme_keys.tokens import verify as verifier
from prisme_keys.tokens.verify import VerifyOptions


@pytest.fixture
def server():
    with JwksServer() as s:
        yield s


@pytest.fixture(scope="module")
def ca():
    import trustme

    return trustme.CA()


def fail(url, **kw) -> str:
    with pytest.raises(FetchError) as info:
        jwks_client.fetch(url, use_cache=False, **kw)
    assert info.value.exit_code == 9
    return info.value.message


def test_fetch_ok(server, keypool):
    server.serve_json("/jwks", jwks(keypool[0]))
    res = jwks_client.fetch(server.url(), use_cache=False)
    assert res.status == 200 and res.content_type == "application/jwk-set+json"
    assert res.doc == jwks(keypool[0]) and not res.from_cache and res.final_url == server.url()
    assert res.body_bytes


# 7. 500 with HTML, or 200 text/html
def test_status_500_html(server):
    server.routes["/jwks"] = Route(500, b"<html>boom</html>", {"Content-Type": "text/html"})
    assert fail(server.url()) == f"HTTP 500 Internal Server Error from {server.url()} (text/html body)"


def test_200_text_html(server):
    server.routes["/jwks"] = Route(
        200, b"<!DOCTYPE html><form>login</form>", {"Content-Type": "text/html; charset=utf-8"}
    )
    assert fail(server.url()) == (
        f"{server.url()} answered with Content-Type text/html, not a JWK Set (a login or error page?)"
    )


def test_not_json_and_not_a_set(server):
    server.routes["/jwks"] = Route(200, b"<html>", {"Content-Type": "application/json"})
    assert fail(server.url()) == (
        f"the body from {server.url()} is not JSON (Content-Type application/json, starts with '<html>')"
    )
    server.serve_json("/jwks", {"kty": "RSA"})
    assert fail(server.url()) == f'the JSON from {server.url()} is not a JWK Set: an object without a "keys" array'
    server.serve_json("/jwks", [1])
    assert fail(server.url()) == f"the JSON from {server.url()} is not a JWK Set: a JSON list"


# 8. a server that never answers; a huge body
def test_hanging_server_times_out(server):
    server.routes["/jwks"] = Route(hang=True)
    t0 = time.monotonic()
    msg = fail(server.url(), timeout=1)
    assert msg == f"no complete answer from {server.url()} within 1 s (timeout)"  # the library's words
    assert say(msg) == f"no complete answer from {server.url()} within 1 s (--timeout)"  # the command line's
    assert time.monotonic() - t0 < 2.0


def test_huge_body_capped_flat_memory(server):
    server.routes["/jwks"] = Route(200, headers={"Content-Type": "application/json"}, stream_bytes=50 * 1024 * 1024)
    tracemalloc.start()
    try:
        msg = fail(server.url())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert say(msg) == (
        f"the JWKS at {server.url()} is larger than the limit of 1048576 bytes (--max-bytes); stopped reading"
    )
    assert peak < 4 * 1024 * 1024


def test_content_length_over_cap(server):
    server.routes["/jwks"] = Route(200, b"x" * 2000, {"Content-Type": "application/json"})
    msg = fail(server.url(), max_bytes=1000)
    assert msg == f"the JWKS at {server.url()} is 2000 bytes; the limit is 1000 bytes (max_bytes)"
    assert say(msg) == f"the JWKS at {server.url()} is 2000 bytes; the limit is 1000 bytes (--max-bytes)"


def test_redirects(server, keypool):
    server.serve_json("/final", jwks(keypool[0]))
    for i in range(4):
        server.routes[f"/r{i}"] = Route(302, b"", {"Location": "/final" if i == 0 else f"/r{i - 1}"})
    res = jwks_client.fetch(server.url("/r2"), use_cache=False)
    assert res.final_url == server.url("/final") and len(res.redirects) == 3
    assert (
        fail(server.url("/r3")) == f"more than 3 redirects fetching {server.url('/r3')} (last: {server.url('/final')})"
    )


def test_http_refused_for_non_loopback():
    assert say(fail("http://jwks.example.invalid/jwks")) == (
        "refusing plain http for jwks.example.invalid: use https:// or --allow-http "
        "(http is accepted for loopback addresses only)"
    )
    with pytest.raises(UsageError) as info:  # a malformed URL is a usage error (exit 2), not a fetch failure
        jwks_client.fetch("ftp://x/y", use_cache=False)
    assert (info.value.exit_code, info.value.message) == (2, "bad URL 'ftp://x/y': use an https:// URL")


def test_connection_refused():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    assert fail(f"http://127.0.0.1:{port}/jwks") == f"cannot connect to 127.0.0.1:{port}: connection refused"


def test_https_with_private_ca(ca, keypool, tmp_path):
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    with JwksServer(tls_context(ca)) as s:
        s.serve_json("/jwks", jwks(keypool[0]))
        res = jwks_client.fetch(s.url(), use_cache=False, cacert=str(cafile))
        assert res.doc["keys"][0]["kid"] == keypool[0]["kid"]
        msg = fail(s.url())
        assert msg.startswith("TLS certificate of 127.0.0.1 not trusted: ")
        assert msg.endswith("(cacert FILE trusts a private CA)")
        assert say(msg).endswith("(--cacert FILE trusts a private CA)")
        # never from https to http
        with JwksServer() as plain:
            plain.serve_json("/jwks", jwks(keypool[0]))
            s.routes["/down"] = Route(302, b"", {"Location": plain.url()})
            assert fail(s.url("/down"), cacert=str(cafile)) == (
                f"refusing a redirect from https to http ({s.url('/down')} -> {plain.url()})"
            )


def test_private_members_never_cached(server, keypool, tmp_path):
    server.serve_json("/jwks", {"keys": [keypool[0]]})
    res = jwks_client.fetch(server.url(), cache_dir=tmp_path)
    assert "d" not in res.doc["keys"][0]
    assert res.warnings == [
        f"{server.url()} publishes private key members for key(s) {keypool[0]['kid']}; they "
        "were ignored and not cached (the private key is exposed: replace it)"
    ]
    text = jwks_client.cache_path(server.url(), tmp_path).read_text()
    assert keypool[0]["d"] not in text and keypool[0]["p"] not in text
    again = jwks_client.fetch(server.url(), cache_dir=tmp_path)
    assert again.from_cache and again.warnings == res.warnings


def test_cache_max_age_and_revalidation(server, keypool, tmp_path):
    server.serve_json("/jwks", jwks(keypool[0]), headers={"Cache-Control": "max-age=0"}, etag='"v1"')
    first = jwks_client.fetch(server.url(), cache_dir=tmp_path)
    assert not first.from_cache
    second = jwks_client.fetch(server.url(), cache_dir=tmp_path)
    assert second.from_cache and second.status == 304
    assert server.requests[-1][1]["if-none-match"] == '"v1"'
    # default freshness: 10 minutes, no request at all
    server.serve_json("/plain", jwks(keypool[0]))
    jwks_client.fetch(server.url("/plain"), cache_dir=tmp_path)
    n = len(server.requests)
    cached = jwks_client.fetch(server.url("/plain"), cache_dir=tmp_path)
    assert cached.from_cache and cached.status == 0 and len(server.requests) == n
    # --no-cache bypasses it
    jwks_client.fetch(server.url("/plain"), use_cache=False)
    assert len(server.requests) == n + 1


class FakeClock:
    """A real-clock stand-in (Unix seconds) that tests move by hand."""

    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t


# Regression (issue 11): Cache-Control max-age=600 with Age: 590 was cached for 600 s, not 10 s
def test_age_header_shortens_freshness(server, keypool, tmp_path):
    server.serve_json("/jwks", jwks(keypool[0]), headers={"Cache-Control": "public, max-age=600", "Age": "590"})
    clk = FakeClock()
    jwks_client.fetch(server.url(), cache_dir=tmp_path, real_clock=clk)
    clk.t += 9
    assert jwks_client.fetch(server.url(), cache_dir=tmp_path, real_clock=clk).from_cache
    assert len(server.requests) == 1
    clk.t += 21  # 30 s after the first fetch: refetched
    again = jwks_client.fetch(server.url(), cache_dir=tmp_path, real_clock=clk)
    assert not again.from_cache and len(server.requests) == 2


@pytest.mark.parametrize(
    "headers",
    [{"Cache-Control": "max-age=-1"}, {"Cache-Control": "max-age=abc"}, {"Expires": "0"}],
    ids=["max-age=-1", "max-age=abc", "Expires: 0"],
)
def test_invalid_freshness_is_stale_not_the_default(server, keypool, tmp_path, headers):
    server.serve_json("/jwks", jwks(keypool[0]), headers=headers)
    clk = FakeClock()
    jwks_client.fetch(server.url(), cache_dir=tmp_path, real_clock=clk)
    clk.t += 1
    assert not jwks_client.fetch(server.url(), cache_dir=tmp_path, real_clock=clk).from_cache
    assert len(server.requests) == 2


def test_repeated_cache_control_lines_are_one_list(server, keypool, tmp_path):
    body = json.dumps(jwks(keypool[0])).encode()
    lines = [("Cache-Control", "no-cache"), ("Cache-Control", "max-age=600")]
    server.routes["/jwks"] = Route(200, body, {"Content-Type": "application/json"}, header_lines=lines)
    res = jwks_client.fetch(server.url(), cache_dir=tmp_path)
    assert res.headers["cache-control"] == "no-cache, max-age=600"
    assert not jwks_client.fetch(server.url(), cache_dir=tmp_path).from_cache  # no-cache wins


def test_no_store_answer_drops_the_stored_copy(server, keypool, tmp_path):
    server.serve_json("/jwks", jwks(keypool[0]), headers={"Cache-Control": "max-age=0"}, etag='"v1"')
    jwks_client.fetch(server.url(), cache_dir=tmp_path)
    assert jwks_client.cache_path(server.url(), tmp_path).exists()
    server.serve_json("/jwks", jwks(keypool[1]), headers={"Cache-Control": "no-store"})
    jwks_client.fetch(server.url(), cache_dir=tmp_path)
    assert not jwks_client.cache_path(server.url(), tmp_path).exists()


def test_304_keeps_the_stored_lifetime_and_renews_it(server, keypool, tmp_path):
    # RFC 9111 4.3.4: a 304 without Cache-Control freshens the stored response with its own lifetime
    body = json.dumps(jwks(keypool[0])).encode()
    server.routes["/jwks"] = Route(
        200, body, {"Content-Type": "application/json", "Cache-Control": "max-age=60"}, etag='"v1"'
    )
    clk = FakeClock()
    clk.t -= 1000  # behind the server's Date, so no apparent age (RFC 9111 4.2.3) enters the sums
    jwks_client.fetch(server.url(), cache_dir=tmp_path, real_clock=clk)
    server.routes["/jwks"] = Route(200, body, {"Content-Type": "application/json"}, etag='"v1"')
    clk.t += 61
    assert jwks_client.fetch(server.url(), cache_dir=tmp_path, real_clock=clk).status == 304
    clk.t += 59
    assert jwks_client.fetch(server.url(), cache_dir=tmp_path, real_clock=clk).status == 0
    assert len(server.requests) == 2


# 6. the cache holds [k1]; the server now serves [k1, k2]; a k2 token verifies
def test_unknown_kid_refetch_once(server, keypool, tmp_path):
    k1, k2, k3 = keypool[0], keypool[1], keypool[2]
    server.serve_json("/jwks", jwks(k1))
    src0 = jwks_client.UrlKeySource(server.url(), cache_dir=tmp_path)
    assert verifier.verify(rs_token(k1, claims()), src0).kid == k1["kid"]
    server.serve_json("/jwks", jwks(k1, k2))
    src1 = jwks_client.UrlKeySource(server.url(), cache_dir=tmp_path)
    assert src1.result.from_cache
    assert verifier.verify(rs_token(k2, claims()), src1).kid == k2["kid"]
    # a second unknown kid within 30 s: no new request
    server.serve_json("/jwks", jwks(k1, k2, k3))
    n = len(server.requests)
    src2 = jwks_client.UrlKeySource(server.url(), cache_dir=tmp_path)
    with pytest.raises(NoUsableKey) as info:
        verifier.verify(rs_token(k3, claims()), src2)
    assert len(server.requests) == n
    assert info.value.message.startswith(f"unknown kid {k3['kid']!r}; kids in {server.url()}: ")
    assert "next refetch allowed in" in info.value.message


def test_refetch_limited_within_one_source(server, keypool, tmp_path):
    k1, k2 = keypool[0], keypool[1]
    server.serve_json("/jwks", jwks(k1))
    jwks_client.fetch(server.url(), cache_dir=tmp_path)
    src = jwks_client.UrlKeySource(server.url(), cache_dir=tmp_path)
    n = len(server.requests)
    for _ in range(3):
        with pytest.raises(NoUsableKey):
            verifier.verify(rs_token(k2, claims()), src)
    assert len(server.requests) == n + 1


def test_no_usable_key_in_fetched_set(server, keypool):
    server.serve_json("/jwks", {"keys": [{"kty": "EC", "kid": "e1"}]})
    src = jwks_client.UrlKeySource(server.url(), use_cache=False)
    with pytest.raises(NoUsableKey) as info:
        verifier.verify(rs_token(keypool[0], claims()), src, VerifyOptions())
    assert info.value.message == f"{server.url()} has no usable RSA signing key (1 skipped)"


# Regression (issue 11), through the command line: a second verify after the 2 s that
# "max-age=600" minus "Age: 598" leaves must refetch (the real clock: one short real wait)
def test_verify_cli_refetches_when_age_uses_up_max_age(server, keypool, cli):
    server.serve_json("/jwks", jwks(keypool[0]), headers={"Cache-Control": "public, max-age=600", "Age": "598"})
    token = rs_token(keypool[0], claims())
    t0 = time.monotonic()
    for _ in range(2):
        p = cli("verify", token, "--jwks-url", server.url())
        assert (p.returncode, p.stderr) == (0, "")
    assert len(server.requests) == 1 or time.monotonic() - t0 > 1.5  # fresh for 2 s: from the cache
    time.sleep(max(0.0, 2.2 - (time.monotonic() - t0)))
    assert cli("verify", token, "--jwks-url", server.url()).returncode == 0
    assert len(server.requests) == 2


# Regression (newcomer): a redirect to a malformed URL crashed with "internal error: ValueError:
# Invalid IPv6 URL" (exit 1). Every Location goes through the one URL check: bad_url, exit 9.
@pytest.mark.parametrize(
    "location, shown_as, why",
    [
        ("http://[::1", "'http://[::1'", "Invalid IPv6 URL"),
        ("//[::1/x", "'//[::1/x'", "Invalid IPv6 URL"),
        ("http://127.0.0.1:99999/x", "'http://127.0.0.1:99999/x'", "Port out of range 0-65535"),
        ("//127.0.0.1:70000/x", "'http://127.0.0.1:70000/x'", "Port out of range 0-65535"),
        ("http://127.0.0.1:ab/x", "'http://127.0.0.1:ab/x'", "Port could not be cast to integer value as 'ab'"),
        ("ftp://127.0.0.1/x", "'ftp://127.0.0.1/x'", "use an https:// URL"),
        ("https:///x", "'https:///x'", "no host name"),
        ("/a b", "'http://127.0.0.1:{port}/a b'", "spaces or control characters (percent-encode them)"),
        (
            "http://u:s3cret@127.0.0.1:{port}/jwks",
            "'http://u:***@127.0.0.1:{port}/jwks'",
            "it has a user name or password (userinfo is refused in a redirect, RFC 9110 section 4.2.4)",
        ),
        (
            "http://tok3n@127.0.0.1:{port}/jwks",
            "'http://***@127.0.0.1:{port}/jwks'",
            "it has a user name or password (userinfo is refused in a redirect, RFC 9110 section 4.2.4)",
        ),
    ],
)
def test_malformed_location_is_bad_url(server, keypool, location, shown_as, why):
    server.serve_json("/jwks", jwks(keypool[0]))
    server.routes["/rbad"] = Route(302, b"", {"Location": location.format(port=server.port)})
    with pytest.raises(FetchError) as info:
        jwks_client.fetch(server.url("/rbad"), use_cache=False)
    assert (info.value.exit_code, info.value.code) == (9, "bad_url")
    assert (
        info.value.message == f"{server.url('/rbad')} redirects to a bad URL {shown_as.format(port=server.port)}: {why}"
    )
    assert "s3cret" not in info.value.message and "tok3n" not in info.value.message


# Regression (newcomer): a password in the URL was echoed in every message; it is masked as ***.
def test_messages_mask_the_password(server, keypool):
    server.routes["/jwks"] = Route(404, b"no", {"Content-Type": "text/plain"})
    url = f"http://user:pass@127.0.0.1:{server.port}"
    assert (
        fail(f"{url}/jwks") == f"HTTP 404 Not Found from http://user:***@127.0.0.1:{server.port}/jwks (text/plain body)"
    )
    with pytest.raises(UsageError) as info:
        jwks_client.fetch("http://user:pass@127.0.0.1:99999/jwks", use_cache=False)
    assert (info.value.code, info.value.message) == (
        "invalid_url",
        "bad URL 'http://user:***@127.0.0.1:99999/jwks': Port out of range 0-65535",
    )
    server.routes["/big"] = Route(200, b"x" * 2000, {"Content-Type": "application/json"})
    assert fail(f"{url}/big", max_bytes=1000) == (
        f"the JWKS at http://user:***@127.0.0.1:{server.port}/big is 2000 bytes; the limit is 1000 bytes (max_bytes)"
    )
    server.serve_json("/leak", {"keys": [keypool[0]]})
    res = jwks_client.fetch(f"{url}/leak", use_cache=False)
    assert res.warnings[0].startswith(f"http://user:***@127.0.0.1:{server.port}/leak publishes private key members")
    source = jwks_client.UrlKeySource(f"{url}/leak", use_cache=False)
    assert source.description == f"http://user:***@127.0.0.1:{server.port}/leak"
    assert all("pass@" not in w for w in source.take_warnings())


# Regression (newcomer's break test): a body shorter than its Content-Length was taken as complete
def test_body_shorter_than_its_content_length_is_truncated(server, keypool):
    body = json.dumps(jwks(keypool[0])).encode()
    server.routes["/jwks"] = Route(200, body, {"Content-Type": "application/json"}, cut=len(body) - 1)
    with pytest.raises(FetchError) as info:
        jwks_client.fetch(server.url(), use_cache=False)
    assert (info.value.code, info.value.exit_code, info.value.message) == (
        "truncated",
        9,
        f"the answer from {server.url()} was cut short: the connection closed after {len(body) - 1} bytes "
        f"of the {len(body)} its Content-Length announced",
    )


def test_check_and_verify_say_truncated(server, keypool, cli):
    body = json.dumps(jwks(keypool[0])).encode()
    server.routes["/jwks"] = Route(200, body, {"Content-Type": "application/json"}, cut=10)
    line = (
        f"prisme-keys: error: the answer from {server.url()} was cut short: the connection closed after 10 bytes "
        f"of the {len(body)} its Content-Length announced\n"
    )
    p = cli("check", server.url(), "--no-against")
    assert (p.returncode, p.stderr) == (9, line)
    p = cli("verify", rs_token(keypool[0], claims()), "--jwks-url", server.url(), "--no-cache")
    assert (p.returncode, p.stderr) == (9, line)


# Regression (newcomer break-test): a long-running source (verify --batch as a sidecar) refetched
# once in its life at most: a set it had fetched itself counted as "fetched just now" forever.
def test_a_long_running_source_refetches_once_per_interval(server, keypool, tmp_path):
    k1, k2, k3 = keypool[0], keypool[1], keypool[2]
    t = [1_000_000.0]

    def clk() -> float:
        return t[0]

    server.serve_json("/jwks", jwks(k1))
    src = jwks_client.UrlKeySource(server.url(), cache_dir=tmp_path, real_clock=clk)
    assert not src.result.from_cache and len(server.requests) == 1
    server.serve_json("/jwks", jwks(k1, k2))  # a rotation published after the start
    t[0] += 10
    assert src.refresh() == "fetched just now" and len(server.requests) == 1
    t[0] += 21  # 31 s after the fetch
    assert src.refresh() is None and len(server.requests) == 2
    assert [e.kid for e in src.ring().entries] == [k1["kid"], k2["kid"]]
    server.serve_json("/jwks", jwks(k2, k3))
    t[0] += 29
    assert src.refresh() == "refetched 29 s ago" and len(server.requests) == 2
    t[0] += 2
    assert src.refresh() is None and len(server.requests) == 3
    assert [e.kid for e in src.ring().entries] == [k2["kid"], k3["kid"]]


# A long-running source checks the set's freshness again every 30 s (newcomer break-test, follow-up):
# a key removed from the published set stopped being accepted only by new processes.
def test_a_long_running_source_checks_freshness_again_every_interval(server, keypool, tmp_path):
    k1, k2 = keypool[0], keypool[1]
    t = [2_000_000.0]

    def clk() -> float:
        return t[0]

    server.serve_json("/jwks", jwks(k1, k2), headers={"Cache-Control": "max-age=10"})
    src = jwks_client.UrlKeySource(server.url(), cache_dir=tmp_path, real_clock=clk)
    first = src.ring()
    server.serve_json("/jwks", jwks(k2), headers={"Cache-Control": "max-age=600"})  # k1 revoked, unpublished
    t[0] += 29
    assert src.ring() is first and len(server.requests) == 1  # a one-shot run never asks again
    t[0] += 1  # 30 s: the set (fresh for 10 s) is stale; asked again, the new set replaces it
    assert [e.kid for e in src.ring().entries] == [k2["kid"]] and len(server.requests) == 2
    with pytest.raises(NoUsableKey):
        verifier.verify(rs_token(k1, claims()), src)
    t[0] += 30  # fresh (max-age 600): served from the cache, no request, the same ring
    again = src.ring()
    assert again is src.ring() and len(server.requests) == 2 and [e.kid for e in again.entries] == [k2["kid"]]
    # the server fails: the current set stays, with one warning, and it is tried again 30 s later
    server.serve_json("/jwks", {"error": "down"}, status=503)
    t[0] += 600
    assert src.ring() is again and len(server.requests) == 3
    assert [say(w) for w in src.take_warnings()] == [
        f"cannot check the JWKS again (HTTP 503 Service Unavailable from {server.url()} (application/jwk-set+json "
        "body)); still using the set fetched before"
    ]
    t[0] += 10
    assert src.ring() is again and len(server.requests) == 3
