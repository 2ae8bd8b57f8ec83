"""`serve` as a real subprocess on a free port."""

import json
import signal
import subprocess
import urllib.error
import urllib.request

import pytest

from conftest import T0


class Served:
    def __init__(self, proc, url):
        self.proc, self.base = proc, url.rsplit("/oidc/jwks", 1)[0]

    def get(self, path, method="GET", data=None, headers=None):
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()


def start(cli, keyfile, *extra, env=None):
    proc = cli.popen("--key-file", str(keyfile), "serve", "--port", "0", *extra, stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE, text=True,
                     env={"OIDC_PROVIDER_URL": "https://issuer.test", "API_URL": "https://api.test", **(env or {})})
    line = proc.stdout.readline()
    assert line.startswith("serving http://127.0.0.1:"), (line, proc.stderr.read() if proc.poll() is not None else "")
    return Served(proc, line.split()[1])


@pytest.fixture
def served(cli, keyfile):
    s = start(cli, keyfile)
    yield s
    if s.proc.poll() is None:
        s.proc.kill()
        s.proc.wait()


def test_jwks_routes_and_discovery(served, keypool):
    for path in ("/oidc/jwks", "/.well-known/jwks.json"):
        status, headers, body = served.get(path)
        assert status == 200
        assert headers["Content-Type"] == "application/jwk-set+json; charset=utf-8"
        assert headers["Cache-Control"] == "public, max-age=600"
        doc = json.loads(body)
        assert doc == {"keys": [{m: keypool[0][m] for m in ("kty", "kid", "use", "alg", "n", "e")}]}
    status, _, body = served.get("/oidc/.well-known/openid-configuration")
    assert status == 200
    assert json.loads(body) == {"issuer": "https://issuer.test", "jwks_uri": served.base + "/oidc/jwks"}


def test_bad_requests_get_json_4xx(served):
    assert served.get("/nope")[0] == 404
    assert json.loads(served.get("/nope")[2])["error"] == "not_found"
    assert served.get("/v2/login/anonymous")[0] == 405
    assert served.get("/oidc/jwks", method="POST", data=b"{}")[0] == 405
    for body in (b"{", b"[1]", b'{"expiresAfter": "soon"}', b'{"expiresAfter": -5}', b'{"expiresAfter": true}'):
        status, _, raw = served.get("/v2/login/anonymous", method="POST", data=body,
                                    headers={"Content-Type": "application/json"})
        assert status == 400, body
        assert json.loads(raw)["error"] == "bad_request"
    assert served.get("/v2/login/anonymous", method="DELETE")[0] == 405
    assert served.proc.poll() is None


def test_anonymous_login_token_verifies_against_served_jwks(served, cli, keyfile, keypool):
    status, headers, raw = served.get("/v2/login/anonymous", method="POST", data=b'{"expiresAfter": 120}',
                                      headers={"Content-Type": "application/json"})
    assert status == 200
    doc = json.loads(raw)
    assert set(doc) == {"token", "sessionId", "expires", "id"}
    assert headers["Set-Cookie"].startswith(f"access-token={doc['token']}; Path=/; HttpOnly")
    import jwt

    claims = jwt.decode(doc["token"], options={"verify_signature": False})
    assert set(claims) == {"exp", "iat", "sub", "iss", "aud", "prismeaiSessionId"}
    assert claims["exp"] - claims["iat"] == 120
    assert claims["prismeaiSessionId"] == doc["sessionId"]
    assert (claims["iss"], claims["aud"]) == ("https://issuer.test", "https://api.test")
    assert jwt.get_unverified_header(doc["token"]) == {"typ": "jwt", "alg": "RS256", "kid": keypool[0]["kid"]}
    p = cli("verify", doc["token"], "--jwks-url", served.base + "/oidc/jwks", "--issuer", "https://issuer.test",
            "--audience", "https://api.test")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"valid: kid {keypool[0]['kid']}")
    # empty body: default lifetime ACCESS_TOKENS_MAX_AGE
    status, _, raw = served.get("/v2/login/anonymous", method="POST", data=b"")
    claims = jwt.decode(json.loads(raw)["token"], options={"verify_signature": False})
    assert status == 200 and claims["exp"] - claims["iat"] == 2592000


def test_rotation_shows_up_without_restart_and_sigint_stops_cleanly(served, cli, keyfile):
    before = [k["kid"] for k in json.loads(served.get("/oidc/jwks")[2])["keys"]]
    p = cli("--key-file", str(keyfile), "--now", "2026-02-01T00:00:00Z", "rotate")
    assert p.returncode == 0, p.stderr
    after = [k["kid"] for k in json.loads(served.get("/oidc/jwks")[2])["keys"]]
    assert len(after) == 2 and after[1] == before[0]
    served.proc.send_signal(signal.SIGINT)
    out, err = served.proc.communicate(timeout=10)
    assert served.proc.returncode == 0
    assert "Traceback" not in err and err.rstrip().endswith("stopped")


def test_loopback_by_default_and_says_so(served):
    served.proc.send_signal(signal.SIGTERM)
    _, err = served.proc.communicate(timeout=10)
    assert "loopback only (use --host to expose)" in err
    assert served.proc.returncode == 0


def test_serve_missing_key_file_exit_4(cli, tmp_path):
    p = cli("--key-file", str(tmp_path / "none.json"), "serve", "--port", "0")
    assert p.returncode == 4 and "does not exist" in p.stderr
