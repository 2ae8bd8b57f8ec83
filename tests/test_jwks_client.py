"""prisme_keys.jwks_client against a real threaded HTTP(S) server on 127.0.0.1."""

from __future__ import annotations

import time
import tracemalloc

import pytest
from jwks_server import JwksServer, Route, claims, jwks, rs_token, tls_context

from prisme_keys.errors import FetchError, NoUsableKey
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
    assert fail(server.url(), timeout=1) == f"no complete answer from {server.url()} within 1 s (--timeout)"
    assert time.monotonic() - t0 < 2.0


def test_huge_body_capped_flat_memory(server):
    server.routes["/jwks"] = Route(200, headers={"Content-Type": "application/json"}, stream_bytes=50 * 1024 * 1024)
    tracemalloc.start()
    try:
        msg = fail(server.url())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert msg == (
        f"the JWKS at {server.url()} is larger than the limit of 1048576 bytes (--max-bytes); stopped reading"
    )
    assert peak < 4 * 1024 * 1024


def test_content_length_over_cap(server):
    server.routes["/jwks"] = Route(200, b"x" * 2000, {"Content-Type": "application/json"})
    assert fail(server.url(), max_bytes=1000) == (
        f"the JWKS at {server.url()} is 2000 bytes; the limit is 1000 bytes (--max-bytes)"
    )


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
    assert fail("http://jwks.example.invalid/jwks") == (
        "refusing plain http for jwks.example.invalid: use https:// or --allow-http "
        "(http is accepted for loopback addresses only)"
    )
    assert fail("ftp://x/y") == "bad URL 'ftp://x/y': use an https:// URL"


def test_connection_refused():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    assert fail(f"http://127.0.0.1:{port}/jwks") == "cannot connect to 127.0.0.1: connection refused"


def test_https_with_private_ca(ca, keypool, tmp_path):
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    with JwksServer(tls_context(ca)) as s:
        s.serve_json("/jwks", jwks(keypool[0]))
        res = jwks_client.fetch(s.url(), use_cache=False, cacert=str(cafile))
        assert res.doc["keys"][0]["kid"] == keypool[0]["kid"]
        msg = fail(s.url())
        assert msg.startswith("TLS certificate of 127.0.0.1 not trusted: ")
        assert msg.endswith("(--cacert FILE trusts a private CA)")
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
