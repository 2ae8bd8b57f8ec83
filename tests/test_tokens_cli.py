"""End-to-end: mint, decode, verify through the installed console script (subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import jwt as pyjwt
import pytest
from helpers import OneLineAtATime, no_traceback, one_error_line, record, write_keyfile
from jwks_server import JwksServer, Route, bj, claims, jwks, rs_token

from prisme_keys import jwk as jwk_rules

ISS, AUD = "https://api.example.test", "https://api.example.test/v2"
ENV = {"OIDC_PROVIDER_URL": ISS, "API_URL": AUD}
NOW = "2026-01-05T00:00:00Z"


@pytest.fixture
def kf(cli, keypool):
    """Key file at the default location: signing key keypool[0] (2026-01-01) and retired keypool[1]."""
    recs = [
        record(keypool[0], created="2026-01-01T00:00:00.000Z", previous=keypool[1]["kid"]),
        record(
            keypool[1],
            created="2025-12-01T00:00:00.000Z",
            rotates="2025-12-31T00:00:00.000Z",
            expires="2026-01-30T00:00:00.000Z",
        ),
    ]
    write_keyfile(cli.default_key_file, recs)
    cli.env.update(ENV)
    return cli


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stderr
    no_traceback(proc)
    return proc.stdout


def test_mint_anonymous_exactly_like_gateway(kf, keypool):
    doc = json.loads(ok(kf("--json", "mint")))
    assert doc["header"] == {"typ": "jwt", "alg": "RS256", "kid": keypool[0]["kid"]}
    c = doc["claims"]
    assert list(c) == ["exp", "iat", "sub", "iss", "aud", "prismeaiSessionId"]
    assert c["exp"] - c["iat"] == 2592000 and c["iss"] == ISS and c["aud"] == AUD
    assert uuid.UUID(c["prismeaiSessionId"]).version == 4
    assert len(c["sub"]) == 24 and int(c["sub"], 16) >= 0
    h, p, _ = doc["token"].split(".")
    assert json.loads(jwk_rules.b64url_decode(h)) == doc["header"] and json.loads(jwk_rules.b64url_decode(p)) == c


def test_mint_options(kf, keypool, tmp_path):
    extra = tmp_path / "c.json"
    extra.write_text(json.dumps({"role": "admin", "n": 1}))
    doc = json.loads(
        ok(
            kf(
                "--json",
                "mint",
                "--sub",
                "bob",
                "--ttl",
                "15m",
                "--iss",
                "i",
                "--aud",
                "a",
                "--aud",
                "b",
                "--claim",
                "n=2",
                "--claim",
                "flag=true",
                "--claim",
                "word=hello",
                "--claims",
                str(extra),
                "--session-id",
                "s1",
                "--not-before",
                "1m",
                "--kid",
                keypool[1]["kid"],
            )
        )
    )
    c = doc["claims"]
    assert doc["header"]["kid"] == keypool[1]["kid"]
    assert c["exp"] - c["iat"] == 900 and c["nbf"] - c["iat"] == 60
    assert (c["sub"], c["iss"], c["aud"], c["prismeaiSessionId"]) == ("bob", "i", ["a", "b"], "s1")
    assert (c["role"], c["n"], c["flag"], c["word"]) == ("admin", 2, True, "hello")


def test_mint_count_and_expired(kf):
    out = ok(kf("mint", "--count", "5")).splitlines()
    assert len(out) == 5 and len(set(out)) == 5
    sids = {json.loads(jwk_rules.b64url_decode(t.split(".")[1]))["prismeaiSessionId"] for t in out}
    assert len(sids) == 5
    p = kf("verify", "-", input=ok(kf("mint", "--expired")))
    assert p.returncode == 7 and p.stderr.startswith("prisme-keys: error: token expired 1 minute ago (exp ")


def test_mint_usage_errors(kf, keypool):
    p = kf("mint", "--claim", "novalue")
    assert p.returncode == 2
    assert (
        p.stderr
        == "prisme-keys: error: --claim 'novalue': use NAME=VALUE (VALUE is JSON when it parses, else a string)\n"
    )
    p = kf("mint", "--count", "2", "--session-id", "x")
    assert p.returncode == 2
    p = kf("mint", "--kid", "nope")
    assert p.returncode == 4 and "no key with kid 'nope'" in p.stderr


def test_mint_without_key_file(cli):
    p = cli("mint")
    assert p.returncode == 4
    no_traceback(p)


def test_decode_cli(kf):
    tok = ok(kf("--now", NOW, "mint")).strip()
    out = ok(kf("--now", NOW, "decode", tok))
    assert out.startswith("UNVERIFIED: the signature was not checked")
    assert "exp: " in out and "(expires in 30 days)" in out
    none = f"{bj({'alg': 'NONE'})}.{bj(claims())}."
    p = kf("decode", none)
    assert p.returncode == 0 and p.stdout.startswith("UNVERIFIED")
    assert "warning: alg is 'NONE': the token is unsigned; verify always rejects it" in p.stderr
    p = kf("decode", "a.b.c.d.e")
    assert p.returncode == 5
    assert p.stderr == (
        "prisme-keys: error: token has 5 segments: an encrypted JWE, which is not supported "
        "(only signed tokens, compact JWS with 3 segments)\n"
    )
    p = kf("--json", "decode", "x.y")
    assert p.returncode == 5 and json.loads(p.stderr)["exit"] == 5 and p.stdout == ""


def test_decode_imports_no_crypto(kf):
    tok = ok(kf("mint")).strip()
    code = (
        f"import sys; from prisme_keys.cli import main; rc = main(['decode', {tok!r}]); "
        "bad = [m for m in ('jose', 'cryptography') if m in sys.modules]; "
        "sys.exit(10 + len(bad) if bad else rc)"
    )
    p = subprocess.run([sys.executable, "-c", code], env=kf.env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


# 12. token forms on the command line
def test_verify_token_forms(kf):
    tok = ok(kf("--now", NOW, "mint")).strip()
    for arg, inp in ((f"  {tok}\n", None), (f"Bearer {tok}", None), (f"bearer {tok}", None), ("-", tok + "\n")):
        out = ok(kf("--now", NOW, "verify", arg, input=inp))
        assert out.startswith("valid: kid ") and out.endswith(", expires in 30 days\n")
    p = kf("verify", tok[:30] + " " + tok[30:])
    assert p.returncode == 5
    assert p.stderr == "prisme-keys: error: token contains whitespace inside segment 1 (header)\n"


def test_verify_result_line_and_json(kf, keypool):
    tok = ok(kf("--now", NOW, "mint", "--sub", "alice")).strip()
    out = ok(kf("--now", NOW, "verify", tok))
    assert out == f"valid: kid {keypool[0]['kid']}, sub alice, expires in 30 days\n"
    env = {"OIDC_PROVIDER_URL": "", "API_URL": ""}
    out = ok(kf("--now", NOW, "verify", tok, env=env))
    assert (
        out
        == f"valid: kid {keypool[0]['kid']}, sub alice, expires in 30 days, issuer not checked, audience not checked\n"
    )
    doc = json.loads(ok(kf("--now", NOW, "--json", "verify", tok)))
    assert doc["valid"] is True and doc["kid"] == keypool[0]["kid"] and doc["claims"]["sub"] == "alice"
    p = kf("--now", NOW, "verify", tok, "--audience", "https://other")
    assert p.returncode == 7
    assert p.stderr == f"prisme-keys: error: audience mismatch: expected 'https://other', received '{AUD}'\n"
    p = kf("verify", tok, "--algorithms", "RS256,HS256")
    assert p.returncode == 2


# 11. iat/nbf ahead, --leeway, on the command line
def test_verify_future_iat_leeway(kf, keypool):
    now = int(time.time())
    tok = rs_token(keypool[0], claims(iat=now + 30, nbf=now + 30, iss=ISS, aud=AUD))
    p = kf("verify", tok)
    assert p.returncode == 7 and "--leeway" in p.stderr
    ok(kf("verify", tok, "--leeway", "60"))


def test_verify_jwks_file(kf, keypool, tmp_path):
    f = tmp_path / "set.json"
    f.write_text(json.dumps({"keys": [{"kty": "EC", "kid": "ec"}, jwk_rules.public_jwk(keypool[2])]}))
    tok = rs_token(keypool[2], claims(iss=ISS, aud=AUD))
    p = kf("verify", tok, "--jwks-file", str(f))
    assert p.returncode == 0 and p.stderr == f"warning: skipping key 'ec' of JWKS file {f}: kty 'EC' is not RSA\n"
    p = kf("verify", tok)  # not in the key file
    assert p.returncode == 8 and "unknown kid" in p.stderr


def test_verify_url_cache_and_errors(kf, keypool):
    k1, k2 = keypool[2], keypool[3]
    with JwksServer() as s:
        s.serve_json("/jwks", jwks(k1))
        ok(kf("verify", rs_token(k1, claims(iss=ISS, aud=AUD)), "--jwks-url", s.url()))
        s.serve_json("/jwks", jwks(k1, k2))
        ok(kf("verify", rs_token(k2, claims(iss=ISS, aud=AUD)), "--jwks-url", s.url()))
        s.routes["/err"] = Route(500, b"<html>oops</html>", {"Content-Type": "text/html"})
        p = kf("verify", rs_token(k1, claims()), "--jwks-url", s.url("/err"))
        assert p.returncode == 9
        assert p.stderr == f"prisme-keys: error: HTTP 500 Internal Server Error from {s.url('/err')} (text/html body)\n"
        s.routes["/hang"] = Route(hang=True)
        t0 = time.monotonic()
        p = kf("verify", rs_token(k1, claims()), "--jwks-url", s.url("/hang"), "--timeout", "1")
        assert p.returncode == 9 and time.monotonic() - t0 < 2.5
        assert p.stderr == f"prisme-keys: error: no complete answer from {s.url('/hang')} within 1 s (--timeout)\n"


# Regression (newcomer): a redirect to a malformed URL crashed verify (exit 1, internal error);
# a password in --jwks-url was echoed in messages and in the redirect note.
def test_verify_url_bad_redirect_and_masked_password(kf, keypool):
    k1 = keypool[2]
    tok = rs_token(k1, claims(iss=ISS, aud=AUD))
    with JwksServer() as s:
        s.routes["/rbad"] = Route(302, b"", {"Location": "http://[::1"})
        p = kf("verify", tok, "--jwks-url", s.url("/rbad"))
        assert p.returncode == 9
        assert (
            p.stderr == f"prisme-keys: error: {s.url('/rbad')} redirects to a bad URL 'http://[::1': Invalid IPv6 URL\n"
        )
        p = kf("--json", "verify", tok, "--jwks-url", s.url("/rbad"))
        assert (p.returncode, json.loads(p.stderr)["code"]) == (9, "bad_url")
        secret = f"http://user:pass@127.0.0.1:{s.port}"
        masked = f"http://user:***@127.0.0.1:{s.port}"
        s.routes["/err"] = Route(500, b"oops", {"Content-Type": "text/plain"})
        p = kf("verify", tok, "--jwks-url", f"{secret}/err")
        assert p.returncode == 9
        assert p.stderr == f"prisme-keys: error: HTTP 500 Internal Server Error from {masked}/err (text/plain body)\n"
        s.serve_json("/jwks", jwks(k1))
        s.routes["/moved"] = Route(302, b"", {"Location": "/jwks"})
        p = kf("verify", tok, "--jwks-url", f"{secret}/moved")
        assert p.returncode == 0, p.stderr
        assert p.stderr == f"note: JWKS served by {masked}/jwks (redirected from {masked}/moved)\n"
        p = kf("verify", rs_token(keypool[3], claims(iss=ISS, aud=AUD)), "--jwks-url", f"{secret}/jwks")
        assert p.returncode == 8 and "pass@" not in p.stderr and f"{masked}/jwks" in p.stderr, p.stderr


def test_verify_batch_cli(kf, keypool):
    good = ok(kf("mint", "--count", "3")).splitlines()
    lines = "\n".join([good[0], "Bearer " + good[1], "garbage", good[2]]) + "\n"
    p = kf("verify", "--batch", input=lines)
    docs = [json.loads(x) for x in p.stdout.splitlines()]
    assert p.returncode == 5
    assert [d["valid"] for d in docs] == [True, True, False, True]
    assert docs[2] == {
        "line": 3,
        "valid": False,
        "exit": 5,
        "error": "token has 1 segment; a compact JWS has 3 separated by dots",
    }
    assert set(docs[0]) == {"line", "valid", "exit", "kid", "sub"}
    p = kf("verify", "--batch", input="\n".join(good) + "\n")
    assert p.returncode == 0 and len(p.stdout.splitlines()) == 3


# Interop with an independent library (PyJWT), both directions
def test_interop_mint_verifies_in_pyjwt(kf):
    tok = ok(kf("mint")).strip()
    jwk_set = pyjwt.PyJWKSet.from_dict(json.loads(ok(kf("export"))))
    kid = pyjwt.get_unverified_header(tok)["kid"]
    key = next(k for k in jwk_set.keys if k.key_id == kid)
    c = pyjwt.decode(
        tok,
        key.key,
        algorithms=["RS256"],
        audience=AUD,
        issuer=ISS,
        options={"require": ["exp", "iat", "sub", "iss", "aud"]},
    )
    assert "prismeaiSessionId" in c


def test_interop_pyjwt_token_verifies_here(kf, keypool):
    from cryptography.hazmat.primitives import serialization

    pem = jwk_rules.private_key_from_jwk(keypool[0]).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    tok = pyjwt.encode(
        claims(iss=ISS, aud=AUD, sub="from-pyjwt"), pem, algorithm="RS256", headers={"kid": keypool[0]["kid"]}
    )
    out = ok(kf("verify", tok, "--require", "prismeaiSessionId"))
    assert out.startswith(f"valid: kid {keypool[0]['kid']}, sub from-pyjwt, expires in ")


# Regression: JSON nested 20000 deep (a token still under 64 KiB) raised RecursionError: exit 1
def _deep_token(keypool, where: str, depth: int = 20000) -> str:
    from jwks_server import b64

    deep = b64(b'{"a":' + b"[" * depth + b"]" * depth + b"}")
    hdr, payload, sig = rs_token(keypool[0], claims(iss=ISS, aud=AUD)).split(".")
    tok = ".".join((deep, payload, sig) if where == "header" else (hdr, deep, sig))
    assert len(tok) < 64 * 1024
    return tok


@pytest.mark.parametrize("where,seg", [("header", "segment 1 (header)"), ("payload", "segment 2 (payload)")])
def test_deeply_nested_json_is_malformed_exit_5(kf, keypool, where, seg):
    tok = _deep_token(keypool, where)
    for args in (("decode", tok), ("verify", tok), ("--json", "decode", "-")):
        p = kf(*args, input=tok if args[-1] == "-" else None)
        assert p.returncode == 5, (args, p.stderr[-300:])
        no_traceback(p)
        assert f"{seg} is nested too deeply" in p.stderr
    good = ok(kf("mint")).strip()
    p = kf("verify", "--batch", input=f"{good}\n{tok}\n{good}\n")
    docs = [json.loads(x) for x in p.stdout.splitlines()]
    assert p.returncode == 5
    no_traceback(p)
    assert [d["exit"] for d in docs] == [0, 5, 0]
    assert docs[1] == {"line": 2, "valid": False, "exit": 5, "error": f"{seg} is nested too deeply"}


# Regression: --claim exp=1e400 printed a token whose payload held Infinity (not JSON)
def test_mint_refuses_non_json_numbers(kf, tmp_path):
    for args in (("--claim", "exp=1e400"), ("--claim", "x=[1, -1e999]")):
        p = kf("mint", *args)
        assert p.returncode == 2, args
        assert p.stdout == "" and p.stderr.startswith(f"prisme-keys: error: claim '{args[1].split('=')[0]}': ")
        assert "not representable in JSON" in p.stderr
    f = tmp_path / "c.json"
    f.write_text('{"score": NaN}')
    p = kf("mint", "--claims", str(f))
    assert p.returncode == 2 and "claim 'score'" in p.stderr and p.stdout == ""


# Regression: a lifetime of 0 or an nbf past exp gave a useless token without a word
def test_mint_warns_about_never_valid_tokens(kf):
    for args in (("--ttl", "0"), ("--expires-after", "0")):
        p = kf("mint", *args)
        assert p.returncode == 0 and p.stdout.count(".") == 2
        assert "warning: lifetime 0 s: the token is already expired\n" in p.stderr
    p = kf("mint", "--ttl", "60", "--not-before", "2m")
    assert p.returncode == 0
    assert "warning: not-before 120 s is not within the lifetime (60 s): the token will never be valid\n" in p.stderr
    assert "warning:" not in kf("mint", "--ttl", "60", "--not-before", "30s").stderr
    assert "warning:" not in kf("mint", "--expired").stderr


# Regression: sub and kid with control characters / ANSI escapes were written raw to the terminal
def test_verify_human_line_escapes_control_characters(kf, keypool):
    sub = "a\x1b[31mred\x07\nb\u202e\x9bz"
    tok = rs_token(keypool[0], claims(sub=sub, iss=ISS, aud=AUD))
    out = ok(kf("verify", tok))
    assert out.startswith(f"valid: kid {keypool[0]['kid']}, sub a\\x1b[31mred\\x07\\nb\\u202e\\x9bz, expires in ")
    assert "\x1b" not in out and "\x07" not in out and out.count("\n") == 1
    assert json.loads(ok(kf("--json", "verify", tok)))["claims"]["sub"] == sub  # JSON keeps the value


# Regression: a signed exp beyond year 9999 raised OverflowError (exit 1) when shown
@pytest.mark.parametrize("exp", [99999999999999999999999, 1e300, 253402300800])
def test_verify_exp_out_of_range_is_exit_7(kf, keypool, exp):
    tok = rs_token(keypool[0], claims(exp=exp, iss=ISS, aud=AUD))
    for args in (("verify", tok), ("--json", "verify", tok)):
        p = kf(*args)
        assert p.returncode == 7, (args, p.stderr)
        no_traceback(p)
        assert "claim 'exp' is out of range" in p.stderr
    # mint never signs what verify rejects (issue 11): exit 2, nothing on stdout
    p = kf("mint", "--claim", f"exp={exp}")
    assert (p.returncode, p.stdout) == (2, "")
    assert "claim 'exp' is out of range" in p.stderr and "nothing was signed" in p.stderr
    assert ok(kf("verify", ok(kf("mint", "--claim", "exp=253402300799")).strip())).startswith("valid: ")


# Regression: a lone surrogate ("\ud800", valid JSON) in a token's claims was an internal error (exit 1) when
# decode --json or verify --json printed the claims
def test_lone_surrogate_in_claims_is_shown_escaped(kf, keypool):
    tok = rs_token(keypool[0], claims(sub="\ud800", iss=ISS, aud=AUD))  # the payload holds the escape \ud800
    out = ok(kf("decode", tok))
    assert '"sub": "\\ud800"' in out
    assert json.loads(ok(kf("--json", "decode", tok)))["claims"]["sub"] == "\ud800"
    assert ok(kf("verify", tok)).startswith(f"valid: kid {keypool[0]['kid']}, sub \\ud800, expires in ")
    assert json.loads(ok(kf("--json", "verify", tok)))["claims"]["sub"] == "\ud800"


def test_mint_claims_from_stdin_are_capped(cli, keyfile):
    big = '{"x": "' + "a" * (2 * 1024 * 1024) + '"}'
    p = cli("--key-file", str(keyfile), "mint", "--claims", "-", input=big)
    assert (p.returncode, p.stdout) == (2, "")
    assert p.stderr == "prisme-keys: error: --claims -: more than 1048576 bytes\n"
    p = cli("--key-file", str(keyfile), "mint", "--claims", "-", "--sub", "a", input='{"role": "admin"}')
    assert p.returncode == 0, p.stderr


def test_mint_expired_at_the_first_second_of_year_1_says_before_year_1(kf):
    p = kf("--now", "0001-01-01T00:00:00Z", "mint", "--expired")
    no_traceback(p)
    assert (p.returncode, p.stderr) == (
        2,
        "prisme-keys: error: an expired token's exp (-62135596860, one minute before now) would be before the year 1; "
        "nothing was signed\n",
    )


# Regression (newcomer): --jwks-file /dev/zero was read whole (OOM, exit 137); a JWKS file or stdin
# is capped like a JWKS URL's body (1 MiB, --max-bytes) and a larger one is exit 9 too_large
def test_verify_jwks_file_is_capped(kf, keypool, tmp_path):
    tok = rs_token(keypool[2], claims(iss=ISS, aud=AUD))
    p = kf("verify", tok, "--jwks-file", "/dev/zero")
    one_error_line(p, 9)
    assert (
        p.stderr == "prisme-keys: error: JWKS file /dev/zero is larger than the limit of 1048576 bytes (--max-bytes)\n"
    )
    p = kf("--json", "verify", tok, "--jwks-file", "-", input=b" " * (1024 * 1024 + 1))
    assert p.returncode == 9 and json.loads(p.stderr)["code"] == "too_large"
    f = tmp_path / "set.json"
    f.write_text(json.dumps({"keys": [jwk_rules.public_jwk(keypool[2])]}))
    p = kf("verify", tok, "--jwks-file", str(f), "--max-bytes", "100")
    one_error_line(p, 9)
    assert p.stderr == f"prisme-keys: error: JWKS file {f} is larger than the limit of 100 bytes (--max-bytes)\n"
    ok(kf("verify", tok, "--jwks-file", str(f), "--max-bytes", str(f.stat().st_size)))


def test_mint_refuses_bad_kids(kf):
    # was: --kid of any length was looked up and echoed whole in the "no such key" error
    for kid, line in (
        ("k" * 100_000, "--kid '" + "k" * 200 + "'... (100000 characters) has 100000 characters (at most 256)"),
        ("a\tb", "--kid 'a\\tb' contains control characters"),
    ):
        p = kf("mint", "--kid", kid)
        assert (p.returncode, p.stderr, p.stdout) == (
            2,
            f"prisme-keys: error: {line} (see prisme-keys mint --help)\n",
            "",
        )


# -- mint --count and verify --batch on several threads: --workers (issue 13)


def _workers_alive() -> list[str]:
    import threading

    return [t.name for t in threading.enumerate() if t.name.startswith("prisme-keys-worker")]


@pytest.mark.parametrize("value", ["0", "65", "-1", "1.5", "two", "", " 2", "٢"])
@pytest.mark.parametrize("command", [["mint", "--count", "5"], ["verify", "--batch"], ["verify", "x.y.z"]])
def test_workers_must_be_a_whole_number_from_1_to_64(kf, command, value):
    shown = value if value in ("0", "65") else repr(value)
    p = kf(*command, "--workers", value, input="")
    assert (p.returncode, p.stdout) == (2, "")
    assert p.stderr == (
        f"prisme-keys: error: --workers must be a whole number from 1 to 64, not {shown} "
        f"(see prisme-keys {command[0]} --help)\n"
    )
    p = kf("--json", *command, "--workers", value, input="")
    assert p.returncode == 2
    assert json.loads(p.stderr) == {
        "code": "usage_error",
        "message": f"--workers must be a whole number from 1 to 64, not {shown}",
        "exit": 2,
    }


def test_mint_count_with_workers_pairs_every_token_with_its_claims(kf, keypool):
    docs = json.loads(ok(kf("--json", "mint", "--count", "150", "--workers", "3")))
    assert _workers_alive() == []  # the pool is shut down before main() returns
    assert len(docs) == 150 and len({d["claims"]["prismeaiSessionId"] for d in docs}) == 150
    for d in docs:
        h, p, _ = d["token"].split(".")
        assert json.loads(jwk_rules.b64url_decode(h)) == d["header"]
        assert json.loads(jwk_rules.b64url_decode(p)) == d["claims"]
    tokens = [d["token"] for d in docs]
    p = kf("verify", "--batch", "--workers", "1", input="\n".join(tokens) + "\n")
    assert p.returncode == 0 and [json.loads(x)["sub"] for x in p.stdout.splitlines()] == [
        d["claims"]["sub"] for d in docs
    ]
    plain = ok(kf("mint", "--count", "40", "--workers", "2", "--sub", "same")).splitlines()
    assert len(plain) == 40 and _workers_alive() == []


def test_mint_progress_and_order_with_workers(kf, cli, keypool):
    """Progress counts every token once, in order, from the calling thread; one token makes no pool."""
    import threading

    from prisme_keys import clock, settings
    from prisme_keys.api import open_minter
    from prisme_keys.tokens import mint as minter

    s = settings.load({"key_file": str(cli.default_key_file)})
    calls, threads = [], set()

    def progress(done, total):
        calls.append((done, total, threading.current_thread() is threading.main_thread()))
        threads.update(_workers_alive())

    run = minter.mint(s, clock.now(), minter.MintOptions(count=100, claims={"i": 0}), progress, workers=2)
    assert calls == [] and _workers_alive() == []  # nothing is signed before the tokens are asked for
    tokens = list(run.tokens)
    assert calls == [(i, 100, True) for i in range(1, 101)] and threads == {
        "prisme-keys-worker_0",
        "prisme-keys-worker_1",
    }
    assert len({t.claims["sub"] for t in tokens}) == 100 and _workers_alive() == []
    # stopped early (a reader that went away): the pool is closed with the run
    run = minter.mint(s, clock.now(), minter.MintOptions(count=10_000), workers=2)
    assert next(run.tokens).token.count(".") == 2 and _workers_alive() != []
    run.close()
    assert _workers_alive() == []
    # one token, and the library's one-at-a-time minter: no pool at all
    calls.clear(), threads.clear()
    minted = next(minter.mint(s, clock.now(), minter.MintOptions(count=1), progress, workers=4).tokens)
    assert (calls, threads) == ([(1, 1, True)], set()) and minted.token.count(".") == 2
    one_at_a_time = open_minter(s)
    assert [one_at_a_time.mint(sub="x").count(".") for _ in range(3)] == [2, 2, 2]
    assert list(one_at_a_time.mint_many(minter.MintOptions(count=3)).tokens)[2].token.count(".") == 2
    assert _workers_alive() == []


def test_verify_batch_cli_writes_the_same_with_one_or_more_workers(kf, keypool):
    good = ok(kf("mint", "--count", "120")).splitlines()
    retired = ok(kf("mint", "--kid", keypool[1]["kid"], "--count", "20")).splitlines()  # a second header
    expired = ok(kf("mint", "--expired")).strip()
    lines = []
    for i, token in enumerate(good):
        lines.append(token)
        if i % 6 == 0:
            lines.append(retired[i // 6])
        if i % 10 == 3:
            lines.append(expired)
        if i % 15 == 4:
            lines += ["", token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")]  # blank, bad signature
        if i % 40 == 9:
            lines += [rs_token(keypool[2], claims(iss=ISS, aud=AUD)), "x" * 70_000, "Bearer " + token]
    data = "\n".join(lines) + "\n"
    one = kf("verify", "--batch", "--workers", "1", input=data)
    docs = [json.loads(x) for x in one.stdout.splitlines()]
    assert one.returncode == 7 and len(docs) == len(lines) - lines.count("")
    assert {d["exit"] for d in docs} == {0, 5, 6, 7, 8}
    for workers in ("2", "4"):
        p = kf("verify", "--batch", "--workers", workers, input=data)
        assert (p.returncode, p.stdout, p.stderr) == (one.returncode, one.stdout, one.stderr)
        p = kf("--json", "verify", "--batch", "--workers", workers, input=data)
        assert p.returncode == 7 and json.loads(p.stdout)["results"] == docs
        assert p.stdout == kf("--json", "verify", "--batch", "--workers", "1", input=data).stdout  # same bytes
    assert _workers_alive() == []


# Regression (newcomer break-test): verify --batch judged every token at the time the command started,
# so a long-running batch accepted a token expired since and refused one minted since ("issued in the
# future"). Without --now, each piece of input is checked at the time it arrives.
@pytest.mark.parametrize("workers", ["1", "2"])
def test_verify_batch_judges_each_token_when_it_arrives(kf, cli, keypool, monkeypatch, capsys, workers):
    from prisme_keys import clock
    from prisme_keys.cli import main

    start = clock.now().replace(microsecond=0)
    box = [start]
    monkeypatch.setattr(clock, "now", lambda: box[0])
    t0 = int(start.timestamp())
    short = rs_token(keypool[0], claims(now=t0, exp=t0 + 5, iss=ISS, aud=AUD))
    later = rs_token(keypool[0], claims(now=t0 + 60, iss=ISS, aud=AUD))
    monkeypatch.setattr(sys, "stdin", OneLineAtATime([short, short, later], box, 30))
    kfile = ["--key-file", str(cli.default_key_file)]
    assert main([*kfile, "verify", "--batch", "--workers", workers], cli.env) == 7
    docs = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [(d["line"], d["exit"]) for d in docs] == [(1, 0), (2, 7), (3, 0)]
    assert docs[1]["error"].startswith("token expired 25 seconds ago")
    box[0] = start  # --now fixes the time for the whole batch
    monkeypatch.setattr(sys, "stdin", OneLineAtATime([short, short, later], box, 30))
    assert main([*kfile, "--now", clock.iso(start), "verify", "--batch", "--workers", workers], cli.env) == 7
    assert [json.loads(x)["exit"] for x in capsys.readouterr().out.splitlines()] == [0, 0, 7]


# -- --json mint --count N and --json verify --batch stream their one document (memory flat in N):
# the bytes are those json_text writes for the whole document, whatever the number of results


def json_text_of(out: str) -> str:
    """What :func:`prisme_keys.cli.output.json_text` writes for the document ``out`` holds."""
    from prisme_keys.cli.output import json_text

    return json_text(json.loads(out))


#: ``mint`` with every token the same bytes: a fixed time, subject and session id.
FIXED = ["--now", NOW, "mint", "--sub", "alice", "--claim", "prismeaiSessionId=s-1"]


@pytest.mark.parametrize("count", [1, 2, 3, 60])
def test_json_mint_is_the_bytes_of_json_text_on_any_number_of_workers(kf, keypool, count):
    one, two = (ok(kf("--json", *FIXED, "--count", str(count), "--workers", w)) for w in ("1", "2"))
    assert one == two == json_text_of(one)
    doc = json.loads(one)
    if count == 1:  # the single object
        assert doc["claims"]["sub"] == "alice" and doc["header"]["kid"] == keypool[0]["kid"]
    else:
        assert len(doc) == count and all(d == doc[0] for d in doc) and doc[0]["claims"]["iat"] == 1767571200
    assert _workers_alive() == []


def test_json_verify_batch_is_the_bytes_of_json_text_results_first_counts_last(kf, keypool):
    good = ok(kf("-q", "--now", NOW, "mint", "--count", "150")).split()
    retired = ok(kf("-q", "--now", NOW, "mint", "--kid", keypool[1]["kid"])).strip()
    many = [t if i % 7 else retired if i % 2 else "not-a-token" for i, t in enumerate(good)]
    cases = {"0": "", "0 (blank lines)": "\n \n", "1": good[0] + "\n", "2": f"{good[0]}\nnot-a-token\n"}
    cases["many"] = "\n".join(many) + "\n"
    for name, data in cases.items():
        one, two = (kf("--now", NOW, "--json", "verify", "--batch", "--workers", w, input=data) for w in ("1", "2"))
        assert (one.stdout, one.returncode) == (two.stdout, two.returncode), name
        assert one.stdout == json_text_of(one.stdout), name
        doc = json.loads(one.stdout)
        assert list(doc) == ["results", "tokens", "valid", "invalid", "exit"], name
        n = len(doc["results"])
        valid = sum(r["valid"] for r in doc["results"])
        assert (doc["tokens"], doc["valid"], doc["invalid"]) == (n, valid, n - valid), name
        assert doc["exit"] == one.returncode == (0 if valid == n else 5), name
        lines = kf("--now", NOW, "verify", "--batch", input=data).stdout.splitlines()
        assert doc["results"] == [json.loads(x) for x in lines], name  # the text form's results, in order
    assert json.loads(one.stdout)["tokens"] == 150 and json.loads(one.stdout)["invalid"] == 11
    assert json.loads(kf("--json", "verify", "--batch", input="").stdout)["results"] == []


# Each result decides for itself whether it needs JSON escapes: json_text escapes a whole document
# that holds text UTF-8 cannot encode, a streamed document only the result holding it.
def test_json_verify_batch_with_a_lone_surrogate_escapes_only_its_result(kf, keypool):
    odd, plain, accented = (rs_token(keypool[0], claims(sub=sub, iss=ISS, aud=AUD)) for sub in ("\ud800", "al", "é"))
    p = kf("--json", "verify", "--batch", input=f"{odd}\n{plain}\n")
    assert p.returncode == 0 and p.stdout == json_text_of(p.stdout)  # the rest is ASCII: json_text's very bytes
    assert [r["sub"] for r in json.loads(p.stdout)["results"]] == ["\ud800", "al"]
    p = kf("--json", "verify", "--batch", input=f"{odd}\n{accented}\n{plain}\n")
    assert p.returncode == 0 and [r["sub"] for r in json.loads(p.stdout)["results"]] == ["\ud800", "é", "al"]
    assert '"sub": "\\ud800"' in p.stdout and '"sub": "é"' in p.stdout


# Regression (jsonstream helper): the text form of verify --batch wrote a lone surrogate of a claim
# raw, which UTF-8 cannot encode: exit 1, "internal error: UnicodeEncodeError". Each result line now
# escapes what UTF-8 cannot encode, as every JSON output does (text.json_utf8), on both paths: the
# first token (verify) and the others (the header's fast path); an error message quotes a claim as repr.
@pytest.mark.parametrize("workers", ["1", "2"])
def test_verify_batch_text_form_escapes_a_lone_surrogate(kf, keypool, workers):
    odd = rs_token(keypool[0], claims(sub="\ud800", iss=ISS, aud=AUD))
    plain = rs_token(keypool[0], claims(sub="al", iss=ISS, aud=AUD))
    accented = rs_token(keypool[0], claims(sub="é", iss=ISS, aud=AUD))
    wrong_iss = rs_token(keypool[0], claims(sub="al", iss="\ud800", aud=AUD))
    lines = [odd, plain] + [odd, accented, plain] * 20 + [wrong_iss]
    p = kf("verify", "--batch", "--workers", workers, input="\n".join(lines) + "\n")
    assert p.returncode == 7, p.stderr
    docs = [json.loads(x) for x in p.stdout.splitlines()]
    assert [d.get("sub") for d in docs[:5]] == ["\ud800", "al", "\ud800", "é", "al"]
    assert p.stdout.count('"sub": "\\ud800"') == 21 and p.stdout.count('"sub": "é"') == 20
    assert (docs[-1]["exit"], docs[-1]["error"]) == (7, f"issuer mismatch: expected '{ISS}', received '\\ud800'")


class _FailsAfter:
    """A standard input whose binary stream gives ``lines`` one per read, then fails with EIO (a real
    device's I/O error, which nothing in a test can make happen to a pipe)."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = [ln.encode() + b"\n" for ln in lines]
        self.buffer = self

    def read1(self, n: int = -1) -> bytes:
        import errno
        import os

        if self.lines:
            return self.lines.pop(0)
        raise OSError(errno.EIO, os.strerror(errno.EIO))


def test_json_verify_batch_failing_mid_stream_ends_its_document_with_the_exit_code(kf, monkeypatch, capsys):
    from prisme_keys.cli import main

    token = ok(kf("-q", "mint")).strip()
    monkeypatch.setattr(sys, "stdin", _FailsAfter([token, "not-a-token", token]))
    argv = ["--key-file", str(kf.default_key_file), "--json", "verify", "--batch"]
    assert main(argv, kf.env) == 2
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert out == json_text_of(out)
    assert [(r["line"], r["exit"]) for r in doc["results"]] == [(1, 0), (2, 5), (3, 0)]
    assert {k: v for k, v in doc.items() if k != "results"} == {"tokens": 3, "valid": 2, "invalid": 1, "exit": 2}
    assert json.loads(err) == {
        "code": "stdin_unreadable",
        "message": "cannot read standard input: Input/output error (EIO)",
        "exit": 2,
    }


@pytest.mark.parametrize("workers", ["1", "2"])
def test_json_mint_failing_mid_stream_ends_its_list(kf, monkeypatch, workers):
    """An error raised after the list began (a bug: nothing real fails there, so a stand-in for the
    41st token's document) leaves the 40 tokens written so far as one whole list on stdout, the error
    object on stderr, and no worker thread behind."""
    from prisme_keys.tokens.mint import Minted

    real, calls = Minted.to_dict, []

    def to_dict(self: Minted) -> dict:
        calls.append(1)
        if len(calls) > 40:
            raise RuntimeError("a bug")
        return real(self)

    monkeypatch.setattr(Minted, "to_dict", to_dict)
    p = kf("--json", *FIXED, "--count", "1000", "--workers", workers)
    assert p.returncode == 1
    assert json.loads(p.stderr) == {
        "code": "internal_error",
        "message": "internal error: RuntimeError: a bug (run with --debug for a traceback)",
        "exit": 1,
    }
    docs = json.loads(p.stdout)
    assert p.stdout == json_text_of(p.stdout) and len(docs) == 40
    assert _workers_alive() == []


# Regression (jsonstream helper): Ctrl-C again while the first one was being reported (its error
# line written) escaped main() as a KeyboardInterrupt: a traceback.
def test_a_second_ctrl_c_while_the_first_is_reported_stops_quietly_with_130(kf, monkeypatch, capsys):
    from prisme_keys.cli import main, output

    class CtrlCAfter(_FailsAfter):  # the lines, then Ctrl-C at the next read
        def read1(self, n: int = -1) -> bytes:
            if self.lines:
                return self.lines.pop(0)
            raise KeyboardInterrupt

    def ctrl_c_again(*args, **kwargs):
        raise KeyboardInterrupt

    token = ok(kf("-q", "mint")).strip()
    monkeypatch.setattr(sys, "stdin", CtrlCAfter([token, token]))
    monkeypatch.setattr(output, "error", ctrl_c_again)  # Ctrl-C again as each error line is written
    argv = ["--key-file", str(kf.default_key_file), "--json", "verify", "--batch"]
    assert main(argv, kf.env) == 130
    out, err = capsys.readouterr()
    doc = json.loads(out)  # the document was ended before the error line: one whole document
    assert (doc["tokens"], doc["valid"], doc["exit"]) == (2, 2, 130)
    assert err == ""


# Regression (newcomer break-test): a token or tokens file saved with a UTF-8 byte-order mark (a
# Windows editor) was malformed on stdin ("character '\ufeff'").
def test_a_byte_order_mark_before_tokens_on_stdin_is_accepted(kf, keypool):
    token = rs_token(keypool[0], claims(sub="bom", iss=ISS, aud=AUD))
    p = kf("verify", "-", input="\ufeff" + token + "\r\n")
    assert p.returncode == 0 and p.stdout.startswith("valid: ")
    p = kf("verify", "--batch", input=f"\ufeff{token}\r\n{token}\n")
    assert p.returncode == 0
    assert [(d["line"], d["sub"]) for d in map(json.loads, p.stdout.splitlines())] == [(1, "bom"), (2, "bom")]
