"""`check` against `serve` and against small handmade servers on 127.0.0.1."""

import json
import subprocess
import threading
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from helpers import DEEP, no_traceback, one_error_line, record, write_keyfile

from prisme_keys import jwk as jwk_rules

COMPROMISED = json.load(open(jwk_rules.__file__.rsplit("/", 1)[0] + "/data/known-compromised-keys.json"))["keys"][0][
    "jwk"
]


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        status, headers, body = self.server.reply
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


@pytest.fixture
def handmade():
    """A server answering every GET with ``server.reply = (status, headers, body)``."""
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.reply = (200, {}, b"")
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/oidc/jwks"

    def set_reply(doc=None, status=200, ctype="application/jwk-set+json", cache="max-age=600", body=None):
        headers = {"Content-Type": ctype}
        if cache is not None:
            headers["Cache-Control"] = cache
        srv.reply = (status, headers, body if body is not None else json.dumps(doc).encode())

    srv.set = set_reply
    yield srv
    srv.shutdown()
    srv.server_close()


def pub(jwk, **over):
    d = jwk_rules.public_jwk(jwk)
    d.update(over)
    return d


def run_check(cli, url, *args, keyfile=None):
    g = ["--key-file", str(keyfile)] if keyfile else []
    p = cli(*g, "--json", "check", url, *args)
    no_traceback(p)
    doc = json.loads(p.stdout) if p.stdout else None
    return p, doc, ({c["name"]: c for c in doc["checks"]} if doc else {})


def test_clean_set_passes(cli, handmade, keypool):
    handmade.set({"keys": [pub(keypool[0]), pub(keypool[1])]})
    p, doc, checks = run_check(cli, handmade.url, "--no-against")
    assert p.returncode == 0, p.stderr
    assert doc["ok"] is True and doc["url"] == handmade.url
    assert all(c["status"] == "pass" for c in doc["checks"]), doc
    assert "against.signing_published" not in checks


def test_leaked_private_member_fails_without_printing_it(cli, handmade, keypool, tmp_path):
    leaked = dict(pub(keypool[0]), d=keypool[0]["d"], qi=keypool[0]["qi"])
    handmade.set({"keys": [leaked]})
    p, doc, checks = run_check(cli, handmade.url, "--no-against")
    assert p.returncode == 10
    assert checks["secrecy.private_members"]["status"] == "fail"
    assert (
        checks["secrecy.private_members"]["detail"]
        == f"PRIVATE KEY MATERIAL PUBLISHED: {keypool[0]['kid']} publishes d, qi"
    )
    junit = tmp_path / "r.xml"
    p2 = cli("check", handmade.url, "--no-against", "--junit", str(junit))
    for stream in (p.stdout, p.stderr, p2.stdout, p2.stderr, junit.read_text()):
        assert keypool[0]["d"] not in stream and keypool[0]["qi"] not in stream
        assert keypool[0]["d"][:20] not in stream


@pytest.mark.parametrize(
    "case,check,status",
    [
        ("duplicate kids", "shape.kids", "fail"),
        ("1024-bit key", "shape.key_size", "fail"),
        ("padded n", "shape.n_canonical", "fail"),
        ("oct key", "shape.kty", "fail"),
        ("compromised sample key", "compromised.known_keys", "fail"),
        ("e not AQAB", "shape.e", "fail"),
        ("use enc", "shape.use", "fail"),
        ("alg HS256", "shape.alg", "fail"),
        ("empty set", "shape.non_empty", "fail"),
    ],
)
def test_shape_problems(cli, handmade, keypool, case, check, status):
    from cryptography.hazmat.primitives.asymmetric import rsa

    good = pub(keypool[0])
    keyset = {
        "duplicate kids": [good, pub(keypool[1], kid=good["kid"])],
        "1024-bit key": [
            jwk_rules.public_jwk(jwk_rules.private_key_to_jwk(rsa.generate_private_key(65537, 1024), "RS256"))
        ],
        "padded n": [dict(good, n=good["n"] + "==")],
        "oct key": [good, {"kty": "oct", "kid": "sym", "use": "sig", "alg": "HS256"}],
        "compromised sample key": [good, dict(COMPROMISED, kid="renamed-kid")],
        "e not AQAB": [dict(good, e="Aw")],
        "use enc": [dict(good, use="enc")],
        "alg HS256": [dict(good, alg="HS256")],
        "empty set": [],
    }[case]
    handmade.set({"keys": keyset})
    p, doc, checks = run_check(cli, handmade.url, "--no-against")
    assert p.returncode == 10, (case, doc)
    assert checks[check]["status"] == status, (case, checks[check])
    assert p.stderr.startswith("{") and json.loads(p.stderr)["exit"] == 10
    if case == "compromised sample key":
        assert (
            "renamed-kid (thumbprint jkbrph9-RTpMIlNxkzbbH-EwsT6iGulAhU-sxD3TjVo) is publicly known"
            in checks[check]["detail"]
        )
    if case == "1024-bit key":
        assert checks[check]["detail"].endswith("has 1024 bits")


def test_html_at_200_and_404(cli, handmade):
    handmade.set(body=b"<html><body>Login</body></html>", ctype="text/html")
    p, doc, checks = run_check(cli, handmade.url, "--no-against")
    assert p.returncode == 10
    assert checks["transport.content_type"]["status"] == "fail"
    assert checks["transport.content_type"]["detail"].startswith("content type text/html")
    assert checks["shape.jwk_set"]["detail"] == "body is not JSON (starts with '<html><body>Login</body></html>')"
    handmade.set(status=404, body=b'{"error":"not found"}', ctype="application/json")
    p, doc, checks = run_check(cli, handmade.url, "--no-against")
    assert p.returncode == 10
    assert checks["transport.status"] == {
        "name": "transport.status",
        "status": "fail",
        "detail": "HTTP 404, expected 200",
    }


def test_no_cache_control_warns_and_strict_fails(cli, handmade, keypool):
    handmade.set({"keys": [pub(keypool[0])]}, cache=None)
    p, doc, checks = run_check(cli, handmade.url, "--no-against")
    assert p.returncode == 0
    assert checks["transport.cache_control"]["status"] == "warn"
    p, doc, checks = run_check(cli, handmade.url, "--no-against", "--strict")
    assert p.returncode == 10 and doc["ok"] is False


def test_missing_signing_key_against_local_file(cli, handmade, keypool, tmp_path):
    kf = write_keyfile(
        tmp_path / "k.json",
        [
            record(
                keypool[1],
                created="2026-02-01T00:00:00.000Z",
                rotates="2026-03-03T00:00:00.000Z",
                expires="2026-04-02T00:00:00.000Z",
                previous=keypool[0]["kid"],
            ),
            record(keypool[0], expires="2026-03-03T00:00:00.000Z"),
        ],
    )
    handmade.set({"keys": [pub(keypool[0]), pub(keypool[2])]})
    p, doc, checks = run_check(cli, handmade.url, keyfile=kf)
    assert p.returncode == 10
    assert checks["against.signing_published"] == {
        "name": "against.signing_published",
        "status": "fail",
        "detail": f"signing key {keypool[1]['kid']} is not published",
    }
    assert checks["against.unexpired_published"]["detail"] == f"not published: {keypool[1]['kid']}"
    assert checks["against.unknown_published"]["status"] == "warn"


def test_fetch_failure_is_exit_9(cli, handmade):
    port = handmade.server_address[1]
    handmade.shutdown()
    handmade.server_close()
    p = cli("check", f"http://127.0.0.1:{port}/oidc/jwks", "--no-against")
    assert p.returncode == 9
    assert p.stderr.startswith("prisme-keys: error: cannot connect to 127.0.0.1")


def test_junit_report(cli, handmade, keypool, tmp_path):
    handmade.set({"keys": [pub(keypool[0]), pub(keypool[0])]}, cache=None)
    junit = tmp_path / "report.xml"
    p = cli("check", handmade.url, "--no-against", "--junit", str(junit))
    assert p.returncode == 10
    root = ET.parse(junit).getroot()
    cases = root.findall(".//testcase")
    p2, doc, _ = run_check(cli, handmade.url, "--no-against")
    assert [c.get("name") for c in cases] == [c["name"] for c in doc["checks"]]
    failed = {c.get("name") for c in cases if c.find("failure") is not None}
    assert failed == {c["name"] for c in doc["checks"] if c["status"] == "fail"} == {"shape.kids"}
    assert root.find("testsuite").get("failures") == "1"


def test_check_against_serve_roundtrip_and_after_rotation(cli, keyfile):
    env = {"OIDC_PROVIDER_URL": "https://issuer.test", "API_URL": "https://api.test"}
    proc = cli.popen(
        "--key-file",
        str(keyfile),
        "serve",
        "--port",
        "0",
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        url = proc.stdout.readline().split()[1]
        g = ["--key-file", str(keyfile)]
        p = cli(*g, "--now", "2026-01-02T00:00:00Z", "check", url, env=env)
        assert p.returncode == 0, p.stdout + p.stderr
        assert p.stdout.rstrip().endswith("ok: 21 checks: 21 passed, 0 warnings, 0 failed")
        p = cli(*g, "--now", "2026-01-02T00:00:00Z", "--json", "check", url, "--roundtrip", env=env)
        assert p.returncode == 0, p.stdout + p.stderr
        rt = [c for c in json.loads(p.stdout)["checks"] if c["name"] == "roundtrip"]
        assert rt and rt[0]["status"] == "pass"
        assert cli(*g, "--now", "2026-02-01T00:00:00Z", "--write-at-now", "rotate").returncode == 0
        p = cli(*g, "--now", "2026-02-01T00:00:01Z", "--json", "check", url, "--roundtrip", env=env)
        assert p.returncode == 0, p.stdout + p.stderr
        doc = json.loads(p.stdout)
        assert all(c["status"] == "pass" for c in doc["checks"]), doc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def run(cli):
    """The command line, in-process (:class:`helpers.Cli`)."""
    return cli


EVIL_KID = "evil\u001b[31mRED\u001b[0m\rFAKE"


# Regression (issue 11): a published kid with ESC and CR reached the terminal raw, and the JUnit
# file did not parse
def test_untrusted_kid_is_escaped_and_junit_parses(run, handmade, keypool, tmp_path):
    evil = pub(keypool[0], kid=EVIL_KID, e="Aw")  # e = 3
    handmade.set({"keys": [evil, pub(keypool[1], kid="[red]markup[/red]", use="enc")]})
    junit = tmp_path / "r.xml"
    p = run("check", handmade.url, "--no-against", "--junit", str(junit))
    assert p.returncode == 10
    for stream in (p.stdout, p.stderr):
        assert "\x1b" not in stream and "\r" not in stream
    assert "evil\\x1b[31mRED\\x1b[0m\\rFAKE has e 'Aw', expected AQAB (65537)" in p.stdout
    assert "[red]markup[/red] has use 'enc'" in p.stdout  # shown as spelled, not taken as rich markup
    assert p.stderr == (
        f"prisme-keys: error: {handmade.url}: shape.use: [red]markup[/red] has use 'enc'; "
        "shape.e: evil\\x1b[31mRED\\x1b[0m\\rFAKE has e 'Aw', expected AQAB (65537)\n"
    )
    root = ET.parse(junit).getroot()  # parses
    failure = root.find(".//testcase[@name='shape.e']/failure")
    assert failure.get("message") == "evil\\x1b[31mRED\\x1b[0m\\rFAKE has e 'Aw', expected AQAB (65537)"
    # --json keeps the kid exactly (JSON escapes it)
    pj = run("--json", "check", handmade.url, "--no-against")
    detail = {c["name"]: c for c in json.loads(pj.stdout)["checks"]}["shape.e"]["detail"]
    assert detail == f"{EVIL_KID} has e 'Aw', expected AQAB (65537)"
    assert "\x1b" not in pj.stdout


def test_junit_parses_whatever_the_details_hold():
    from prisme_keys.publish.check import Check, Report
    from prisme_keys.publish.junit import junit_xml

    nasty = "\x00\x1b\x7f\x9b\ud800\ufffe\uffff<&>\"'\r\n\u202e"
    report = Report("http://x/" + nasty, [Check("shape." + nasty, "fail", nasty), Check("a.b", "warn", nasty)])
    root = ET.fromstring(junit_xml(report).encode("utf-8"))
    assert root.find(".//failure").get("message") == ("\\x00\\x1b\\x7f\\x9b\\ud800\\ufffe\\uffff<&>\"'\\r\\n\\u202e")
    assert root.find(".//system-out").text.startswith("warning: \\x00\\x1b")


@pytest.mark.parametrize(
    "headers,status,detail",
    [
        (
            {},
            "warn",
            "no Cache-Control header: each verifier picks its own cache time (the reference gateway sends none)",
        ),
        ({"cache-control": "public, max-age=600"}, "pass", "Cache-Control: public, max-age=600"),
        (
            {"cache-control": "public, max-age=600", "age": "590"},
            "pass",
            "Cache-Control: public, max-age=600 (fresh for 10 s: max-age 600 minus Age 590)",
        ),
        (
            {"cache-control": "max-age=600", "age": "600"},
            "warn",
            "Cache-Control: max-age=600 (max-age 600 minus Age 600: stale on arrival, verifiers refetch every time)",
        ),
        (
            {"cache-control": "max-age=-1"},
            "fail",
            "Cache-Control: max-age=-1 (max-age has '-1', not a whole number of seconds; "
            "verifiers treat the set as stale)",
        ),
        (
            {"cache-control": "max-age=abc"},
            "fail",
            "Cache-Control: max-age=abc (max-age has 'abc', not a whole number of seconds; verifiers treat the set as "
            "stale)",
        ),
        (
            {"cache-control": "max-age=60, max-age=600"},
            "fail",
            "Cache-Control: max-age=60, max-age=600 (max-age is given twice with different values; verifiers treat the "
            "set as stale)",
        ),
        ({"expires": "0"}, "warn", "Expires: 0 (not an HTTP date: verifiers treat the set as already expired)"),
        (
            {"cache-control": "no-store"},
            "warn",
            "Cache-Control: no-store (verifiers will refetch the JWKS for every token)",
        ),
        (
            {"cache-control": "no-cache"},
            "warn",
            "Cache-Control: no-cache (verifiers will revalidate the JWKS before every token)",
        ),
        (
            {"cache-control": "max-age=90000"},
            "warn",
            "Cache-Control: max-age=90000 (max-age over a day delays new keys for verifiers)",
        ),
        (
            {"cache-control": "max-age=60\x1b[2J"},
            "fail",
            "Cache-Control: max-age=60\\x1b[2J (max-age has '60\\x1b[2J', not a whole number of seconds; "
            "verifiers treat the set as stale)",
        ),
    ],
)
def test_cache_control_check_uses_the_freshness_rules(headers, status, detail):
    from prisme_keys.publish.check import Response, transport_checks

    resp = Response(
        "http://127.0.0.1/j", "http://127.0.0.1/j", 200, {"content-type": "application/json", **headers}, b""
    )
    got = {c.name: c for c in transport_checks(resp)}["transport.cache_control"]
    assert (got.status, got.detail) == (status, detail)


# -- regression tests (defects found by a newcomer's break-test)


def test_check_deep_json_duplicate_keys_and_negative_max_age(cli):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    replies = []

    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            body, cache = replies[-1]
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", cache)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/jwks"
    try:
        cases = [
            ((DEEP.encode(), "max-age=60"), "shape.jwk_set", "body is JSON nested too deeply"),
            ((b'{"keys": [], "keys": []}', "max-age=60"), "shape.jwk_set", "repeats a member"),
            ((b'{"keys": []}', "max-age=-5"), "transport.cache_control", "not a whole number"),
        ]
        for reply, name, detail in cases:
            replies.append(reply)
            p = cli("--json", "check", url, "--no-against")
            no_traceback(p)
            assert p.returncode == 10, p.stderr
            checks = {c["name"]: c for c in json.loads(p.stdout)["checks"]}
            assert checks[name]["status"] == "fail" and detail in checks[name]["detail"], checks[name]
    finally:
        srv.shutdown()
        srv.server_close()


# Regression (newcomer): a redirect to a malformed URL crashed check ("internal error: ValueError:
# Invalid IPv6 URL", exit 1); it is bad_url, exit 9, whatever the Location's flaw.
@pytest.mark.parametrize(
    "location, shown_as, why",
    [
        ("http://[::1", "'http://[::1'", "Invalid IPv6 URL"),
        ("http://127.0.0.1:99999/x", "'http://127.0.0.1:99999/x'", "Port out of range 0-65535"),
        ("http://127.0.0.1:ab/x", "'http://127.0.0.1:ab/x'", "Port could not be cast to integer value as 'ab'"),
    ],
)
def test_redirect_to_malformed_url_is_exit_9(cli, location, shown_as, why):
    from jwks_server import JwksServer, Route

    with JwksServer() as s:
        s.routes["/rbad"] = Route(302, b"", {"Location": location})
        p = cli("check", s.url("/rbad"), "--no-against")
        one_error_line(p, 9)
        assert p.stderr == f"prisme-keys: error: {s.url('/rbad')} redirects to a bad URL {shown_as}: {why}\n"
        p = cli("--json", "check", s.url("/rbad"), "--no-against")
        assert (p.returncode, json.loads(p.stderr)["code"]) == (9, "bad_url")


# Regression (newcomer): a password in the URL was printed in the error line and the JUnit file;
# every output masks it as ***.
def test_password_in_url_is_masked_everywhere(cli, tmp_path):
    from jwks_server import JwksServer, Route

    with JwksServer() as s:
        s.routes["/priv"] = Route(404, b"no", {"Content-Type": "text/plain"})
        url, masked = f"http://user:pass@127.0.0.1:{s.port}/priv", f"http://user:***@127.0.0.1:{s.port}/priv"
        junit = tmp_path / "report.xml"
        p = cli("check", url, "--no-against", "--junit", str(junit))
        one_error_line(p, 10)
        assert p.stderr.startswith(f"prisme-keys: error: {masked}: transport.status: HTTP 404, expected 200; ")
        assert ET.parse(junit).getroot().find("testsuite").get("name") == f"check {masked}"
        p = cli("--json", "check", url, "--no-against")
        assert json.loads(p.stdout)["url"] == masked
        assert json.loads(p.stderr)["message"].startswith(f"{masked}: transport.status")
        s.routes["/moved"] = Route(302, b"", {"Location": "/priv"})
        p = cli("check", url.replace("/priv", "/moved"), "--no-against", "--allow-http")
        assert p.returncode == 10
        for out in (p.stdout, p.stderr, junit.read_text()):
            assert "pass@" not in out and "user:pass" not in out
        s.routes["/https"] = Route(302, b"", {"Location": "https://u:pw@127.0.0.1:1/x"})
        p = cli("check", url.replace("/priv", "/https"), "--no-against")
        one_error_line(p, 9)
        assert p.stderr == (
            f"prisme-keys: error: {masked.replace('/priv', '/https')} redirects to a bad URL "
            "'https://u:***@127.0.0.1:1/x': it has a user name or password "
            "(userinfo is refused in a redirect, RFC 9110 section 4.2.4)\n"
        )
