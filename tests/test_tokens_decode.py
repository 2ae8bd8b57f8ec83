"""Parsing and decode (no cryptography) of prisme_keys.tokens."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from jwks_server import b64, bj

from prisme_keys.cli.common import read_token_arg
from prisme_keys.errors import MalformedTokenError
from prisme_keys.tokens import jws

NOW = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
T = int(NOW.timestamp())


def tok(header=None, payload=None, sig="c2ln"):
    return (
        f"{bj(header if header is not None else {'alg': 'RS256', 'kid': 'k1', 'typ': 'jwt'})}."
        f"{bj(payload if payload is not None else {'exp': T + 300, 'iat': T - 3 * 86400, 'sub': 'u'})}.{sig}"
    )


def malformed(text) -> str:
    with pytest.raises(MalformedTokenError) as info:
        jws.decode(text, NOW)
    assert info.value.exit_code == 5
    return info.value.message


def test_decode_times_and_label():
    d = jws.decode(tok(), NOW)
    assert d.header == {"alg": "RS256", "kid": "k1", "typ": "jwt"}
    assert d.times["exp"] == {"value": T + 300, "iso": "2026-01-10T12:05:00.000Z", "relative": "expires in 5 minutes"}
    assert d.times["iat"]["relative"] == "issued 3 days ago"
    assert d.warnings == []
    assert d.to_dict()["verified"] is False and d.to_dict()["label"] == "UNVERIFIED"


def test_decode_warnings():
    d = jws.decode(tok({"alg": "none"}, {"exp": T - 3 * 86400, "nbf": "x"}, ""), NOW)
    assert d.warnings == [
        "alg is 'none': the token is unsigned; verify always rejects it",
        "the header has no kid: a verifier must guess the key",
        "the token expired 3 days ago",
        "claim 'nbf' is not a NumericDate (got 'x'); verify rejects it",
    ]
    assert d.times["exp"]["relative"] == "expired 3 days ago"


@pytest.mark.parametrize(
    "text,msg",
    [
        ("a.b", "token has 2 segments; a compact JWS has 3 separated by dots"),
        ("a.b.c.d", "token has 4 segments; a compact JWS has 3 separated by dots"),
        ("abc", "token has 1 segment; a compact JWS has 3 separated by dots"),
        (
            "a.b.c.d.e",
            "token has 5 segments: an encrypted JWE, which is not supported (only signed tokens, "
            "compact JWS with 3 segments)",
        ),
        ("", "empty token"),
        ("Bearer  ", "empty token after 'Bearer'"),
        ("e30*.e30.", "segment 1 (header) is not base64url: character '*'"),
        (
            "e30.e30=.",
            "segment 2 (payload) is not base64url: character '=' (padding '=' is not allowed in a compact JWS)",
        ),
        ("e30.e30.a", "segment 3 (signature) is not base64url: impossible length 1"),
        (f"{b64(b'[1]')}.e30.", "segment 1 (header) is JSON but not an object"),
        (f"e30.{b64(b'nope')}.", "segment 2 (payload) is not JSON: Expecting value: line 1 column 1 (char 0)"),
        (f"{b64(b'{}')}.{b64(bytes([0xFF, 0xFE]))}.", "segment 2 (payload) is not UTF-8"),
        (b64(b'{"a":1,"a":2}') + ".e30.", "segment 1 (header) is not JSON: duplicate member 'a'"),
        ("e30." + b64(b'{"exp":NaN}') + ".", "segment 2 (payload) is not JSON: NaN is not JSON"),
    ],
)
def test_malformed(text, msg):
    assert malformed(text) == msg


def test_size_cap():
    big = tok(payload={"x": "a" * jws.MAX_TOKEN_BYTES})
    msg = malformed(big)
    assert msg == f"token is {len(big)} bytes; the limit is 65536 bytes (64 KiB)"


def test_whitespace_and_bearer():
    t = tok()
    assert jws.decode(f"\n  Bearer {t} \n", NOW).header["kid"] == "k1"
    assert malformed(t.replace(".", ". ", 1)) == "token contains whitespace inside segment 2 (payload)"


def test_read_token_arg_stdin():
    import io

    t = tok()
    assert read_token_arg("-", io.BytesIO(f"  {t}\n".encode())) == t
    with pytest.raises(MalformedTokenError) as info:
        read_token_arg("-", io.BytesIO(b"x" * (jws.MAX_TOKEN_BYTES + 5000)))
    # reading stops after the cap: the real size is unknown, so the message says "more than"
    assert (
        info.value.message
        == f"token is more than {jws.MAX_TOKEN_BYTES + 4096} bytes; the limit is 65536 bytes (64 KiB)"
    )


# Regression: deeply nested JSON raised RecursionError (exit 1) instead of a malformed token (exit 5)
def test_deeply_nested_json_is_malformed():
    from prisme_keys.cli.tokens_cmds import load_claims, parse_claim_pairs
    from prisme_keys.errors import UsageError

    deep = {"a": None}
    text = '{"a":' + "[" * 20000 + "]" * 20000 + "}"
    assert (
        malformed(tok().split(".")[0] + "." + b64(text.encode()) + ".c2ln")
        == "segment 2 (payload) is nested too deeply"
    )
    assert malformed(b64(text.encode()) + "." + bj(deep) + ".c2ln") == "segment 1 (header) is nested too deeply"
    with pytest.raises(UsageError):
        parse_claim_pairs(["x=" + text])
    with pytest.raises(UsageError):
        load_claims(text, "-")
