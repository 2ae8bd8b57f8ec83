"""Library-level tests of prisme_keys.tokens.verify: algorithms, key choice, claims (issue 3, "must hold")."""

from __future__ import annotations

import io
import json
import threading
import time
from datetime import UTC

import pytest
from helpers import OneLineAtATime, Pieces, break_signature_checks, mixed_batch
from jwks_server import bj, claims, hs_token, jwks, rs_token

from prisme_keys import clock
from prisme_keys import jwk as jwk_rules
from prisme_keys.cli.words import say
from prisme_keys.errors import (
    ClaimsRejected,
    MalformedTokenError,
    NoUsableKey,
    PrismeKeysError,
    SignatureRejected,
    UsageError,
)
from prisme_keys.tokens import batch, jws
from prisme_keys.tokens import verify as verifier
from prisme_keys.tokens.keyring import StaticKeySource
from prisme_keys.tokens.verify import VerifyOptions

OPTS = VerifyOptions(issuer="https://issuer.test", audience="https://api.test")


def src(doc: dict) -> StaticKeySource:
    return StaticKeySource(doc, "test set")


def expect(exc_type: type, token: str, source: StaticKeySource, opts: VerifyOptions = OPTS, **kw) -> str:
    with pytest.raises(exc_type) as info:
        verifier.verify(token, source, opts, **kw)
    assert exc_type.exit_code == info.value.exit_code
    return info.value.message


def test_valid_token_verifies(keypool):
    k = keypool[0]
    res = verifier.verify(rs_token(k, claims()), src(jwks(k)), OPTS)
    assert res.kid == k["kid"] and res.claims["sub"] == "u1"
    assert res.issuer_checked and res.audience_checked
    assert res.to_dict()["valid"] is True


# 1. HS256 with the RSA public key as secret (PEM, DER, the JWK's JSON text)
def _pub_forms(jwk):
    from cryptography.hazmat.primitives import serialization

    pub = jwk_rules.public_key_from_jwk(jwk)
    pem = pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    der = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    pkcs1 = pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
    return [pem, der, pkcs1, json.dumps(jwk_rules.public_jwk(jwk)).encode()]


@pytest.mark.parametrize("form", range(4))
def test_hs256_key_confusion_rejected(keypool, form):
    k = keypool[0]
    secret = _pub_forms(k)[form]
    tok = hs_token(secret, claims(), {"typ": "JWT", "alg": "HS256", "kid": k["kid"]})
    msg = expect(SignatureRejected, tok, src(jwks(k)))
    assert msg == "algorithm 'HS256' is not allowed (allowed: RS256); HMAC, EC, EdDSA and PSS tokens are never accepted"
    # widening the allow-list can never admit HMAC
    with pytest.raises(UsageError):
        verifier.parse_algorithms("RS256,HS256")


# 2. alg none in any spelling
@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_rejected(keypool, alg):
    k = keypool[0]
    tok = f"{bj({'alg': alg, 'kid': k['kid']})}.{bj(claims())}."
    msg = expect(SignatureRejected, tok, src(jwks(k)), VerifyOptions(algorithms=("RS256", "RS384", "RS512")))
    assert msg == f"alg {alg!r}: unsigned tokens are never accepted"
    d = jws.decode(tok)
    assert d.to_dict()["label"] == "UNVERIFIED"
    assert any("unsigned" in w for w in d.warnings)


@pytest.mark.parametrize("alg", ["ES256", "PS256", "HS512", "EdDSA"])
def test_other_families_rejected(keypool, alg):
    k = keypool[0]
    tok = rs_token(k, claims(), {"alg": alg, "kid": k["kid"]})
    msg = expect(SignatureRejected, tok, src(jwks(k)))
    assert msg.startswith(f"algorithm '{alg}' is not allowed")


def test_rs384_outside_default_list_then_widened(keypool):
    k = dict(keypool[1])
    k.pop("alg")
    tok = rs_token(k, claims(), alg="RS384")
    msg = expect(SignatureRejected, tok, src(jwks(k)))
    assert msg == "algorithm 'RS384' is not allowed (allowed: RS256); widen the list with algorithms"
    assert say(msg) == "algorithm 'RS384' is not allowed (allowed: RS256); widen the list with --algorithms"
    opts = VerifyOptions(
        algorithms=verifier.parse_algorithms("RS256,RS384"), issuer="https://issuer.test", audience="https://api.test"
    )
    assert verifier.verify(tok, src(jwks(k)), opts).kid == k["kid"]


def test_alg_must_match_key_alg(keypool):
    k = keypool[0]  # alg RS256
    tok = rs_token(k, claims(), alg="RS384")
    msg = expect(SignatureRejected, tok, src(jwks(k)), VerifyOptions(algorithms=("RS256", "RS384")))
    assert msg == f"the token's alg RS384 does not match key {k['kid']!r} (alg RS256)"


# 3. EC, OKP and an RSA key without alg
def test_skips_unusable_keys_with_one_warning_each(keypool):
    k = dict(keypool[2])
    k.pop("alg")
    doc = {
        "keys": [
            {
                "kty": "EC",
                "kid": "ec1",
                "crv": "P-256",
                "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
            },
            {"kty": "OKP", "kid": "ed1", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            jwk_rules.public_jwk(k),
        ]
    }
    s = src(doc)
    warnings = s.take_warnings()
    assert warnings == [
        "skipping key 'ec1' of test set: kty 'EC' is not RSA",
        "skipping key 'ed1' of test set: kty 'OKP' is not RSA",
    ]
    assert verifier.verify(rs_token(k, claims()), s, OPTS).kid == k["kid"]


def test_malformed_members_never_break_the_set(keypool):
    k = keypool[0]
    doc = {
        "keys": [
            "not an object",
            {"kty": "RSA", "kid": "nomod", "e": "AQAB"},
            {"kty": "RSA", "kid": "cert", "x5c": ["MIIB..."]},
            {"kty": "RSA", "kid": "badn", "n": "!!!", "e": "AQAB"},
            {"kty": "RSA", "kid": "numn", "n": 12345, "e": "AQAB"},
            {"kty": "RSA", "kid": "oaep", "alg": "RSA-OAEP", "n": k["n"], "e": "AQAB"},
            {"kty": "RSA", "kid": "ops", "key_ops": ["encrypt"], "n": k["n"], "e": "AQAB"},
            {"kid": 7},
            jwk_rules.public_jwk(k),
        ]
    }
    s = src(doc)
    w = s.take_warnings()
    assert w == [
        "skipping key #1 of test set: not a JSON object",
        "skipping key 'nomod' of test set: missing n",
        "skipping key 'cert' of test set: certificate-only key (x5c without n and e) is not supported",
        "skipping key 'badn' of test set: member 'n' is not base64url",
        "skipping key 'numn' of test set: member 'n' is not a base64url string",
        "skipping key 'oaep' of test set: alg 'RSA-OAEP' is not RS256, RS384 or RS512",
        'skipping key \'ops\' of test set: key_ops ["encrypt"] does not allow "verify"',
        "skipping key #8 of test set: kid is not a string",
    ]
    assert verifier.verify(rs_token(k, claims()), s, OPTS).kid == k["kid"]
    msg = expect(NoUsableKey, rs_token(k, claims(), {"alg": "RS256", "kid": "cert"}), s)
    assert (
        msg == "key 'cert' in test set cannot verify signatures: "
        "certificate-only key (x5c without n and e) is not supported"
    )


def test_no_usable_key_at_all(keypool):
    s = src({"keys": [{"kty": "EC", "kid": "e"}]})
    msg = expect(NoUsableKey, rs_token(keypool[0], claims()), s)
    assert msg == "test set has no usable RSA signing key (1 skipped)"


# 4. one kid on an RSA-OAEP enc key and the sig key, either order
@pytest.mark.parametrize("enc_first", [True, False])
def test_same_kid_enc_and_sig(keypool, enc_first):
    sig = keypool[0]
    enc = {"kty": "RSA", "kid": sig["kid"], "use": "enc", "alg": "RSA-OAEP", "n": keypool[1]["n"], "e": "AQAB"}
    pub = jwk_rules.public_jwk(sig)
    s = src({"keys": [enc, pub] if enc_first else [pub, enc]})
    assert len(s.take_warnings()) == 1
    assert verifier.verify(rs_token(sig, claims()), s, OPTS).kid == sig["kid"]


def test_same_kid_two_sig_keys_tries_each(keypool):
    a, b = keypool[0], dict(keypool[1])
    b["kid"] = a["kid"]
    s = src(jwks(a, b))
    assert verifier.verify(rs_token(b, claims()), s, OPTS).kid == a["kid"]
    c = dict(keypool[2])
    c["kid"] = a["kid"]
    msg = expect(SignatureRejected, rs_token(c, claims()), s)
    assert msg == f"the signature does not verify with any of the 2 keys with kid {a['kid']!r}"


# 5. no kid
def test_no_kid_single_key(keypool):
    k = keypool[0]
    tok = rs_token(k, claims(), {"typ": "jwt", "alg": "RS256"})
    assert verifier.verify(tok, src(jwks(k)), OPTS).kid == k["kid"]


def test_no_kid_two_keys(keypool):
    k = keypool[0]
    tok = rs_token(k, claims(), {"typ": "jwt", "alg": "RS256"})
    msg = expect(NoUsableKey, tok, src(jwks(k, keypool[1])))
    assert msg == "the token has no kid and test set has 2 candidate keys for RS256; cannot choose"


def test_unknown_kid_lists_kids(keypool):
    a, b = keypool[0], keypool[1]
    msg = expect(NoUsableKey, rs_token(keypool[2], claims()), src(jwks(a, b)))
    assert msg == (
        f"unknown kid {keypool[2]['kid']!r}; kids in test set: {a['kid']!r}, {b['kid']!r} (the key set is local)"
    )


def test_bad_signature(keypool):
    k = keypool[0]
    tok = rs_token(k, claims())
    h, p, s = tok.split(".")
    other = rs_token(k, claims(sub="u2")).split(".")[2]
    msg = expect(SignatureRejected, f"{h}.{p}.{other}", src(jwks(k)))
    assert msg == f"the signature does not verify with key {k['kid']!r}"
    msg = expect(SignatureRejected, f"{h}.{p}.", src(jwks(k)))
    assert msg == f"the signature does not verify with key {k['kid']!r}"


def test_malformed_signatures_are_bad_signatures_and_a_bug_is_not(keypool, monkeypatch):
    k = keypool[0]
    h, p, s = rs_token(k, claims()).split(".")
    raw = jwk_rules.b64url_decode(s)
    for cut in (raw[:1], raw[:128], raw + b"\0\0\0", b"\xff" * 1500):  # too short, truncated, too long, huge
        sig = jwk_rules.b64url_encode(cut)
        msg = expect(SignatureRejected, f"{h}.{p}.{sig}", src(jwks(k)))
        assert msg == f"the signature does not verify with key {k['kid']!r}"

    def broken(public_key, alg, many=False):  # a bug in the verifier (mock: a real bug cannot be summoned on demand)
        def verify(message, signature):
            raise TypeError("a bug")

        return verify

    monkeypatch.setattr(jwk_rules, "rsa_verifier", broken)
    with pytest.raises(TypeError, match="a bug"):  # propagates (exit 1 at the command line), never a verdict
        verifier.verify(f"{h}.{p}.{s}", src(jwks(k)), OPTS)
    with pytest.raises(TypeError, match="a bug"):
        batch.verify_batch([(1, f"{h}.{p}.{s}".encode())], src(jwks(k)), OPTS, lambda _: None)


def test_small_key_rejected_naming_size():
    from cryptography.hazmat.primitives.asymmetric import rsa

    small = jwk_rules.private_key_to_jwk(rsa.generate_private_key(65537, 1024), "RS256")
    msg = expect(SignatureRejected, rs_token(small, claims()), src(jwks(small)))
    assert msg == f"key {small['kid']!r} is a 1024-bit RSA key; at least 2048 bits are required"


def test_crit_header_rejected(keypool):
    k = keypool[0]
    tok = rs_token(k, claims(), {"alg": "RS256", "kid": k["kid"], "crit": ["b64"], "b64": False})
    assert "critical" in expect(SignatureRejected, tok, src(jwks(k)))


# Regression (issue 11): "b64": false (RFC 7797) verified; a JWT never uses an unencoded payload
@pytest.mark.parametrize(
    "extra,message",
    [
        (
            {"b64": False},
            "the header sets b64 to false (RFC 7797 unencoded payload); a JWT's payload is always base64url-encoded",
        ),
        (
            {"b64": "no"},
            "the header sets b64 to 'no' (RFC 7797 unencoded payload); a JWT's payload is always base64url-encoded",
        ),
        ({"b64": False, "crit": ["b64"]}, 'the header marks ["b64"] as critical (crit); no extension is supported'),
        ({"crit": ["exp"], "exp": 1}, 'the header marks ["exp"] as critical (crit); no extension is supported'),
        ({"crit": []}, "the header marks [] as critical (crit); no extension is supported"),
    ],
)
def test_unencoded_payload_and_unknown_crit_rejected(keypool, extra, message):
    k = keypool[0]
    tok = rs_token(k, claims(), {"typ": "jwt", "alg": "RS256", "kid": k["kid"], **extra})
    assert expect(SignatureRejected, tok, src(jwks(k))) == message


def test_b64_true_is_the_default_and_accepted(keypool):
    k = keypool[0]
    tok = rs_token(k, claims(), {"typ": "jwt", "alg": "RS256", "kid": k["kid"], "b64": True})
    assert verifier.verify(tok, src(jwks(k)), VerifyOptions()).kid == k["kid"]


def test_b64_false_cli_exit_6(tmp_path, keypool, cli):
    run = cli
    k = keypool[0]
    f = tmp_path / "set.json"
    f.write_text(json.dumps(jwks(k)))
    for extra in ({"b64": False}, {"b64": False, "crit": ["b64"]}):
        tok = rs_token(k, claims(), {"typ": "jwt", "alg": "RS256", "kid": k["kid"], **extra})
        p = run("verify", tok, "--jwks-file", str(f))
        assert p.returncode == 6 and p.stdout == "" and p.stderr.count("\n") == 1, p.stderr
    d = run("decode", tok)
    assert "warning: the header asks for an unencoded payload (b64, RFC 7797): verify rejects it\n" in d.stderr


# 9. padded n and e
def test_padded_n_e_accepted_with_warning(keypool):
    k = keypool[3]
    pub = jwk_rules.public_jwk(k)
    pub["n"] = pub["n"] + "=" * (-len(pub["n"]) % 4)
    pub["e"] = "AQAB="  # "AQAB" needs none; an extra '=' as some publishers write
    s = src({"keys": [pub]})
    assert s.take_warnings() == [
        f"key {k['kid']!r} of test set: n/e carry '=' padding (RFC 7518 section 6.3.1 "
        "wants unpadded base64url); accepted"
    ]
    assert verifier.verify(rs_token(k, claims()), s, OPTS).kid == k["kid"]


# 10. exp types
@pytest.mark.parametrize(
    "value,shown",
    [("1700000000", "str '1700000000'"), ("soon", "str 'soon'"), (True, "bool true"), (None, None), ([1], "list [1]")],
)
def test_exp_must_be_numeric_date(keypool, value, shown):
    k = keypool[0]
    c = claims()
    if value is None:
        c.pop("exp")
        msg = expect(ClaimsRejected, rs_token(k, c), src(jwks(k)))
        assert (msg, msg.hint) == ("claim 'exp' is missing", "require_exp")  # the library names what to change
        assert say(msg) == "claim 'exp' is missing (a token must expire; --no-exp-required accepts it)"
        opts = VerifyOptions(issuer="https://issuer.test", audience="https://api.test", require_exp=False)
        assert verifier.verify(rs_token(k, c), src(jwks(k)), opts).claims["sub"] == "u1"
        return
    c["exp"] = value
    msg = expect(ClaimsRejected, rs_token(k, c), src(jwks(k)))
    assert msg == f"claim 'exp' must be a NumericDate (seconds since the epoch as a number), got {shown}"


@pytest.mark.parametrize("name", ["iat", "nbf"])
def test_iat_nbf_types(keypool, name):
    k = keypool[0]
    msg = expect(ClaimsRejected, rs_token(k, claims(**{name: "123"})), src(jwks(k)))
    assert msg.startswith(f"claim {name!r} must be a NumericDate")


def test_fractional_future_exp_ok(keypool):
    k = keypool[0]
    c = claims(exp=time.time() + 120.5)
    assert verifier.verify(rs_token(k, c), src(jwks(k)), OPTS).claims["exp"] == c["exp"]


def test_expired(keypool):
    from datetime import datetime

    k = keypool[0]
    now = datetime(2026, 1, 10, tzinfo=UTC)
    c = claims(now=now.timestamp() - 3 * 86400 - 3600)
    msg = expect(ClaimsRejected, rs_token(k, c), src(jwks(k)), now=now)
    assert msg == f"token expired 3 days ago (exp {verifier._iso(c['exp'])})"
    o = VerifyOptions(issuer="https://issuer.test", audience="https://api.test", leeway=4 * 86400)
    assert verifier.verify(rs_token(k, c), src(jwks(k)), o, now=now)


# 11. iat / nbf ahead
@pytest.mark.parametrize("name,word", [("iat", "issued in the future: iat"), ("nbf", "not valid yet: nbf")])
def test_future_iat_nbf_and_leeway(keypool, name, word):
    from datetime import datetime

    k = keypool[0]
    now = datetime(2026, 1, 10, tzinfo=UTC)
    t = now.timestamp()
    c = claims(now=t, **{name: int(t) + 30})
    msg = expect(ClaimsRejected, rs_token(k, c), src(jwks(k)), now=now)
    assert (msg, msg.hint) == (f"token {word} {verifier._iso(t + 30)} is 30 seconds ahead", "leeway")
    assert say(msg) == (
        f"token {word} {verifier._iso(t + 30)} is 30 seconds ahead; if clocks differ, allow it with --leeway SECONDS"
    )
    o = VerifyOptions(issuer="https://issuer.test", audience="https://api.test", leeway=60)
    assert verifier.verify(rs_token(k, c), src(jwks(k)), o, now=now).kid == k["kid"]


def test_issuer_and_audience(keypool):
    k = keypool[0]
    s = src(jwks(k))
    assert (
        expect(ClaimsRejected, rs_token(k, claims(iss="https://evil.test")), s)
        == "issuer mismatch: expected 'https://issuer.test', received 'https://evil.test'"
    )
    assert (
        expect(ClaimsRejected, rs_token(k, claims(iss=None)), s)
        == "claim 'iss' is missing; expected 'https://issuer.test'"
    )
    assert (
        expect(ClaimsRejected, rs_token(k, claims(aud="https://other.test")), s)
        == "audience mismatch: expected 'https://api.test', received 'https://other.test'"
    )
    assert (
        expect(ClaimsRejected, rs_token(k, claims(aud=None)), s)
        == "claim 'aud' is missing; expected 'https://api.test'"
    )
    assert (
        expect(ClaimsRejected, rs_token(k, claims(aud=["a", "b"])), s)
        == 'audience mismatch: expected \'https://api.test\', received ["a", "b"]'
    )
    assert verifier.verify(rs_token(k, claims(aud=["a", "https://api.test"])), s, OPTS)
    res = verifier.verify(rs_token(k, claims(aud=None, iss=None)), s, VerifyOptions())
    assert not res.audience_checked and not res.issuer_checked


def test_require_claim(keypool):
    k = keypool[0]
    o = VerifyOptions(require=("prismeaiSessionId",))
    assert verifier.verify(rs_token(k, claims()), src(jwks(k)), o)
    msg = expect(ClaimsRejected, rs_token(k, claims(prismeaiSessionId=None)), src(jwks(k)), o)
    assert msg == "required claim 'prismeaiSessionId' is missing"


# 12. token forms
@pytest.mark.parametrize("fmt", ["  {}\n", "Bearer {}", "bearer {}", "BEARER   {}\t", "{}"])
def test_token_forms_accepted(keypool, fmt):
    k = keypool[0]
    assert verifier.verify(fmt.format(rs_token(k, claims())), src(jwks(k)), OPTS).kid == k["kid"]


def test_space_inside_segment(keypool):
    k = keypool[0]
    tok = rs_token(k, claims())
    bad = tok[:20] + " " + tok[20:]
    assert expect(MalformedTokenError, bad, src(jwks(k))) == "token contains whitespace inside segment 1 (header)"
    i = tok.index(".") + 10
    assert (
        expect(MalformedTokenError, tok[:i] + " " + tok[i:], src(jwks(k)))
        == "token contains whitespace inside segment 2 (payload)"
    )


def test_verify_batch_json_lines(keypool):
    import io

    k = keypool[0]
    good = rs_token(k, claims())
    lines = f"{good}\n\nnot-a-token\n{rs_token(k, claims(iss='x'))}\n{good}\n".encode()
    out = io.StringIO()
    rc = batch.verify_batch(batch.iter_lines(io.BytesIO(lines)), src(jwks(k)), OPTS, out.write)
    docs = [json.loads(x) for x in out.getvalue().splitlines()]
    assert rc == 5
    assert docs == [
        {"line": 1, "valid": True, "exit": 0, "kid": k["kid"], "sub": "u1"},
        {"line": 3, "valid": False, "exit": 5, "error": "token has 1 segment; a compact JWS has 3 separated by dots"},
        {
            "line": 4,
            "valid": False,
            "exit": 7,
            "error": "issuer mismatch: expected 'https://issuer.test', received 'x'",
        },
        {"line": 5, "valid": True, "exit": 0, "kid": k["kid"], "sub": "u1"},
    ]


def test_batch_gives_every_token_the_verdict_verify_gives(keypool):
    """verify_batch checks a header segment once, then takes a shorter way for the tokens sharing it:
    each verdict and message must still be exactly verify()'s, whichever way the token went."""
    import io

    from jwks_server import b64

    k0, k1 = keypool[0], keypool[1]
    doc = jwks(k0)
    doc["keys"].append(dict(jwk_rules.public_jwk(k1), kid=k0["kid"]))  # two keys share a kid
    good = rs_token(k0, claims())
    h, p, s = good.split(".")
    by_k1 = rs_token(k1, claims(sub="second key"), header={"typ": "jwt", "alg": "RS256", "kid": k0["kid"]})
    t = int(time.time())
    dup = b64(b'{"sub":"a","sub":"b","exp":9999999999}')
    lines = [
        good, good + "\r", "  " + good, "Bearer " + good, good + " \t ", by_k1,
        rs_token(k0, claims(sub="u2")), rs_token(k0, claims(exp=t - 10)), rs_token(k0, claims(iss="x")),
        rs_token(k0, claims(exp="soon")), rs_token(k0, claims(sub={"nested": ["x"]})), rs_token(k0, {"sub": "no exp"}),
        f"{h}.{p}.{s[:-1]}B",  # non-canonical: padding bits set
        f"{h}.{p}.{s[:-2]}", f"{h}.{p}.{s}=", f"{h}.{p}.+{s[1:]}", f"{h}.{p}.{s}.{s}", f"{h}.{p}", f"{h}..{s}",
        f"{h}.{p}x.{s}", f"{h}.{p} .{s}", f"{h}.{p}.{by_k1.split('.')[2]}",
        f"{h}.{dup}.{s}",  # a duplicate claim
        f"{h}.{b64(b' {} ')}.{s}", f"{h}.{b64(bytes([0xFF]))}.{s}", f"{h}.{bj([1])}.{s}",
        rs_token(k0, claims(), header={"alg": "RS256", "kid": k0["kid"], "typ": "jwt"}),  # another header
        rs_token(k0, claims(), header={"typ": "jwt", "alg": "RS384", "kid": k0["kid"]}, alg="RS384"),
        good,
    ]  # fmt: skip
    source = src(doc)
    out = io.StringIO()
    data = "\n".join(lines).encode() + b"\n"
    rc = batch.verify_batch(batch.iter_lines(io.BytesIO(data)), source, OPTS, out.write)
    got = [json.loads(x) for x in out.getvalue().splitlines()]
    want = []
    for n, line in enumerate(lines, 1):
        try:
            res = verifier.verify(line, src(doc), OPTS)
            want.append({"line": n, "valid": True, "exit": 0, "kid": res.kid, "sub": res.claims.get("sub")})
        except PrismeKeysError as exc:
            want.append({"line": n, "valid": False, "exit": exc.exit_code, "error": exc.message})
    assert got == want
    assert [d["line"] for d in got if d["valid"]] == [1, 2, 3, 4, 5, 6, 7, 27, 29]
    assert (rc, got[5]["sub"], got[10]["exit"]) == (7, "second key", 7)
    assert got[10]["error"] == 'claim \'sub\' must be a string (RFC 7519 section 4.1), got {"nested": ["x"]}'


def test_iter_lines_caps_long_lines():
    import io

    data = b"a" * (jws.MAX_TOKEN_BYTES + 10000) + b"\nshort\n"
    assert list(batch.iter_lines(io.BytesIO(data))) == [(1, None), (2, b"short\n")]


# Regression (found by tests/test_fuzz.py): a 2048-bit signature is 342 base64url characters whose
# last one carries 4 unused bits; flipping only those bits gave a different token that decoded to
# the same signature and verified. Every segment must be canonical base64url (RFC 4648 section 3.5).
@pytest.mark.parametrize("segment", [0, 1, 2])
def test_non_canonical_base64url_segment_is_malformed(keypool, segment):
    k = keypool[0]
    token = rs_token(k, claims())
    parts = token.split(".")
    seg = parts[segment]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    unused = {2: 0x0F, 3: 0x03}.get(len(seg) % 4)
    if unused is None:  # a segment of 4n characters has no unused bits: pad the JSON to get one
        pytest.skip("segment length is a multiple of 4")
    twin = alphabet[alphabet.index(seg[-1]) | 1]  # same decoded bytes, one padding bit set
    assert jwk_rules.b64url_decode(seg[:-1] + twin) == jwk_rules.b64url_decode(seg)
    parts[segment] = seg[:-1] + twin
    msg = expect(MalformedTokenError, ".".join(parts), src(jwks(k)))
    assert msg.startswith(f"segment {segment + 1} (")
    assert "is not canonical base64url: its last character" in msg


# Regression: an exp beyond year 9999 passed check_claims and broke the caller (OverflowError, exit 1)
@pytest.mark.parametrize("name,value", [("exp", 10**23), ("exp", 1e300), ("nbf", -(10**20)), ("iat", 10**400)])
def test_time_claims_out_of_range_rejected(keypool, name, value):
    k = keypool[0]
    msg = expect(ClaimsRejected, rs_token(k, claims(**{name: value})), src(jwks(k)))
    assert msg.startswith(f"claim {name!r} is out of range: ")


def test_printable_escapes_control_characters():
    from prisme_keys.text import printable

    assert printable("plain ünïcode") == "plain ünïcode"
    assert printable("a\x1b[2Jb\r\t\x00\x9b\u202e") == "a\\x1b[2Jb\\r\\t\\x00\\x9b\\u202e"


# -- verify --batch on several threads (issue 13): the same bytes, in the same order, as one thread


def _workers_alive() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("prisme-keys-worker")]


def _run_stream(stream, source, workers: int, opts: VerifyOptions = OPTS, now=None) -> tuple[int, str, list, set]:
    """verify_stream over ``stream`` (at ``now``, default the real clock): (exit code, output, progress calls,
    worker threads seen while it ran)."""
    out, calls, seen = io.StringIO(), [], set()

    def progress(done, total):
        calls.append((done, total))
        seen.update(_workers_alive())

    rc = batch.verify_stream(stream, source, opts, out.write, progress=progress, now=now, workers=workers)
    assert _workers_alive() == []  # the pool is closed before verify_stream returns
    return rc, out.getvalue(), calls, seen


def test_verify_stream_gives_the_same_bytes_in_the_same_order_on_any_number_of_threads(keypool):
    lines = mixed_batch(keypool)
    doc = jwks(keypool[0], keypool[1])
    data = "\n".join(lines).encode()  # the last line without its newline
    # one time for every run: "expired 10 seconds ago" must not become "11 seconds ago" between runs
    at = clock.now()
    want_rc, want, want_calls, alone = _run_stream(io.BytesIO(data), src(doc), 1, now=at)
    assert alone == set()  # one worker: no pool
    # the reference is verify_batch, one thread, line by line: what verify --batch wrote before workers
    ref = io.StringIO()
    assert batch.verify_batch(batch.iter_lines(io.BytesIO(data)), src(doc), OPTS, ref.write, now=at) == want_rc
    assert want == ref.getvalue()
    docs = [json.loads(x) for x in want.splitlines()]
    blank = [n for n, line in enumerate(lines, 1) if not line.strip()]
    assert [d["line"] for d in docs] == [n for n in range(1, len(lines) + 1) if n not in blank]
    assert want_calls == [(i, None) for i in range(1, len(docs) + 1)]
    exits = {d["line"]: d["exit"] for d in docs}
    assert (exits[1], exits[4], exits[6], exits[8], exits[10], exits[101], exits[151]) == (0, 7, 6, 8, 0, 5, 5)
    assert want_rc == 7
    for workers in (2, 3, 8):
        for stream in (io.BytesIO(data), Pieces(data, [1000, 40_000, 25_000, 30_000, 700, 64 * 1024])):
            rc, got, calls, seen = _run_stream(stream, src(doc), workers, now=at)
            assert (rc, got, calls) == (want_rc, want, want_calls)
            assert "prisme-keys-worker_0" in seen and len(seen) <= workers - 1  # the pool did RSA checks


def test_verify_stream_with_workers_keeps_verdicts_when_the_key_set_is_refetched_mid_piece(keypool, tmp_path):
    """A token with an unknown kid makes the source refetch its key set in the middle of a piece
    whose other tokens were checked by the pool against the old set: from that line on, they get
    the verdicts of the new set, as with one thread."""
    from jwks_server import JwksServer

    from prisme_keys.tokens import jwks_client

    k1, k2 = keypool[0], keypool[1]
    lines = [rs_token(k1, claims(sub=f"a{i}")) for i in range(30)]
    lines += [rs_token(k2, claims(sub="new key"))]
    lines += [rs_token(k1, claims(sub=f"b{i}")) for i in range(30)]
    data = ("\n".join(lines) + "\n").encode()
    results = {}
    with JwksServer() as server:
        for workers in (1, 2):
            server.serve_json("/jwks", jwks(k1))
            cache = tmp_path / f"cache{workers}"
            jwks_client.UrlKeySource(server.url(), cache_dir=cache)  # the cache holds k1
            server.serve_json("/jwks", jwks(k2))  # k1 left the published set
            source = jwks_client.UrlKeySource(server.url(), cache_dir=cache)
            first = Pieces(data, [len(lines[0]) + 1])  # line 1 alone, then the 60 others in one piece
            results[workers] = _run_stream(first, source, workers)
    assert results[1][:3] == results[2][:3]
    docs = [json.loads(x) for x in results[1][1].splitlines()]
    assert [d["exit"] for d in docs] == [0] * 31 + [8] * 30
    assert "prisme-keys-worker_0" in results[2][3]


def test_verify_stream_an_error_in_a_worker_is_raised_at_its_line(keypool, monkeypatch):
    """A bug (not a verdict) in a pool thread is raised in the calling thread when its line comes:
    every line before it is written, as with one thread, and the pool is closed."""
    k = keypool[0]
    lines = [rs_token(k, claims(sub=f"u{i}")) for i in range(81)]
    break_signature_checks(monkeypatch, lines[70])
    data = ("\n".join(lines) + "\n").encode()
    written = {}
    for workers in (1, 2):
        out, threads = io.StringIO(), set()

        def progress(done, total, threads=threads):
            threads.update(_workers_alive())

        stream = Pieces(data, [len(lines[0]) + 1])  # line 1 alone: its header is known for the others
        with pytest.raises(RuntimeError, match="a bug in a signature check"):
            batch.verify_stream(stream, src(jwks(k)), OPTS, out.write, progress=progress, workers=workers)
        assert _workers_alive() == []
        written[workers] = out.getvalue()
        assert bool(threads) == (workers == 2)
    assert written[1] == written[2]
    assert [json.loads(x)["line"] for x in written[2].splitlines()] == list(range(1, 71))


@pytest.mark.parametrize("workers", [0, 65, -1, True, 2.0, "2", None])
def test_verify_stream_refuses_a_number_of_workers_out_of_range(keypool, workers):
    with pytest.raises(UsageError) as info:
        batch.verify_stream(io.BytesIO(b""), src(jwks(keypool[0])), OPTS, print, workers=workers)
    assert info.value.exit_code == 2
    assert say(info.value.message) == f"--workers must be a whole number from 1 to 64, not {workers!r}"
    assert info.value.message == f"workers must be a whole number from 1 to 64, not {workers!r}"


# Regression (newcomer break-test): a long-running verify --batch judged every token at the time it
# started: a token that had expired since was valid, a token minted since was "issued in the future".
@pytest.mark.parametrize("workers", [1, 2])
def test_verify_stream_judges_each_piece_at_the_time_it_arrives(keypool, monkeypatch, workers):
    k = keypool[0]
    start = clock.now().replace(microsecond=0)
    box = [start]
    monkeypatch.setattr(clock, "now", lambda: box[0])
    t0 = int(start.timestamp())
    short = rs_token(k, claims(now=t0, exp=t0 + 5))  # valid for 5 s
    later = rs_token(k, claims(now=t0 + 60))  # minted a minute after the batch started
    out = io.StringIO()
    rc = batch.verify_stream(
        OneLineAtATime([short, short, later], box, 30), src(jwks(k)), VerifyOptions(), out.write, workers=workers
    )
    assert rc == 7
    docs = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [(d["line"], d["exit"]) for d in docs] == [(1, 0), (2, 7), (3, 0)]
    assert docs[1]["error"].startswith("token expired 25 seconds ago")
    # a time given by the caller (--now) stays fixed for the whole batch
    out = io.StringIO()
    box[0] = start
    batch.verify_stream(
        OneLineAtATime([short, short, later], box, 30),
        src(jwks(k)),
        VerifyOptions(),
        out.write,
        now=start,
        workers=workers,
    )
    assert [json.loads(x)["exit"] for x in out.getvalue().splitlines()] == [0, 0, 7]


# Regression (newcomer break-test): verify accepted a non-string sub (null, 123), iss (5) and aud ([1])
# when no issuer or audience was expected, though mint refuses to sign them as "claims verify would
# reject" (RFC 7519 section 4.1: StringOrURI values). One rule for both: jws.string_claim_problem.
@pytest.mark.parametrize(
    ("claim", "value", "shown_as"),
    [
        ("sub", None, "null"),
        ("sub", 123, "123"),
        ("iss", 5, "5"),
        ("jti", ["a"], '["a"]'),
        ("aud", [1], "[1]"),
        ("aud", {"a": 1}, '{"a": 1}'),
    ],
)
def test_a_registered_string_claim_of_another_type_is_refused(keypool, claim, value, shown_as):
    token = rs_token(keypool[0], {"exp": int(time.time()) + 600, claim: value})
    kind = "a string or a list of strings" if claim == "aud" else "a string"
    want = f"claim {claim!r} must be {kind} (RFC 7519 section 4.1), got {shown_as}"
    assert expect(ClaimsRejected, token, src(jwks(keypool[0])), VerifyOptions()) == want
    out = io.StringIO()
    assert batch.verify_batch([(1, token.encode())], src(jwks(keypool[0])), VerifyOptions(), out.write) == 7
    assert json.loads(out.getvalue())["error"] == want


def test_empty_strings_and_string_lists_are_still_accepted(keypool):
    token = rs_token(keypool[0], {"exp": int(time.time()) + 600, "sub": "", "iss": "", "aud": ["a", ""], "jti": ""})
    assert verifier.verify(token, src(jwks(keypool[0])), VerifyOptions()).claims["sub"] == ""


# Regression (newcomer break-test): a tokens file saved with a UTF-8 byte-order mark made line 1 of
# verify --batch malformed ("character '\ufeff'"); every other text input accepts the mark.
@pytest.mark.parametrize("sizes", [[], [1], [2, 1], [3], [1, 1, 1, 5]])
def test_iter_pieces_drops_a_leading_byte_order_mark_even_split_across_reads(sizes):
    data = b"\xef\xbb\xbfab\r\n\xef\xbb\xbfcd\n"  # only the stream's first mark is dropped
    got = [line for piece in batch.iter_pieces(Pieces(data, sizes)) for line in piece]
    assert got == [(1, b"ab\r\n"), (2, b"\xef\xbb\xbfcd\n")]
    assert [line for piece in batch.iter_pieces(Pieces(b"\xef\xbb\xbf", sizes)) for line in piece] == []
    assert list(batch.iter_pieces(Pieces(b"\xef\xbb", sizes))) == [[(1, b"\xef\xbb")]]  # not a whole mark: kept
