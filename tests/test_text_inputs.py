"""Text inputs and echoed text (issue 11): a leading UTF-8 BOM is accepted by every text input;
JSON errors are worded once; untrusted and echoed text is escaped and capped by one helper."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from helpers import DEEP, one_error_line, record, script, write_keyfile
from jwks_server import JwksServer, claims, jwks, rs_token

from prisme_keys import jwk as jwk_rules
from prisme_keys.text import cap, json_error, printable, redact_url, shown

BOM = b"\xef\xbb\xbf"


@pytest.fixture
def run(cli):
    """The command line, in-process (:class:`helpers.Cli`)."""
    return cli


@pytest.fixture
def kf(tmp_path, keypool):
    return write_keyfile(tmp_path / "keys.json", [record(keypool[0])])


def with_bom(path, text: str):
    path.write_bytes(BOM + text.encode("utf-8"))
    path.chmod(0o600)
    return path


def test_key_file_with_bom(run, kf, keypool):
    with_bom(kf, kf.read_text())
    p = run("--key-file", str(kf), "export")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == {"keys": [jwk_rules.public_jwk(keypool[0])]}


def test_config_toml_with_bom(run, tmp_path):
    cfg = with_bom(tmp_path / "config.toml", "rotation_days = 7\n")
    p = run("--config", str(cfg), "--json", "config", "show")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["rotation_days"] == {"value": 7, "env": "JWKS_ROTATION_DAYS", "source": f"config:{cfg}"}


def test_jwks_file_and_stdin_with_bom(run, tmp_path, keypool):
    f = with_bom(tmp_path / "set.json", json.dumps(jwks(keypool[1])))
    token = rs_token(keypool[1], claims())
    assert run("verify", token, "--jwks-file", str(f)).returncode == 0


def test_jwks_url_body_with_bom(run, keypool):
    with JwksServer() as s:
        from jwks_server import Route

        s.routes["/jwks"] = Route(
            200, BOM + json.dumps(jwks(keypool[1])).encode(), {"Content-Type": "application/json"}
        )
        p = run("verify", rs_token(keypool[1], claims()), "--jwks-url", s.url(), "--no-cache")
        assert p.returncode == 0, p.stderr
        p = run("--json", "check", s.url(), "--no-against")
        got = {c["name"]: c for c in json.loads(p.stdout)["checks"]}["shape.jwk_set"]
        assert got == {
            "name": "shape.jwk_set",
            "status": "warn",
            "detail": "a JWK Set of 1 key(s), but the body starts with a UTF-8 byte-order mark (RFC 8259 section "
            "8.1: senders must not add one; some verifiers reject it)",
        }


def test_import_records_and_pem_with_bom(run, tmp_path, keypool):
    from cryptography.hazmat.primitives import serialization

    recs = with_bom(tmp_path / "records.json", json.dumps([record(keypool[2])]))
    dst = tmp_path / "dst.json"
    p = run("--key-file", str(dst), "import", "--create", str(recs))
    assert p.returncode == 0, p.stderr
    pem = jwk_rules.private_key_from_jwk(keypool[3]).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pf = with_bom(tmp_path / "key.pem", pem.decode())
    p = run("--key-file", str(dst), "import", str(pf))
    assert p.returncode == 0, p.stderr
    assert [r["jwk"]["n"] for r in json.loads(dst.read_text())["keys"]] == [keypool[3]["n"], keypool[2]["n"]]


def test_claims_file_with_bom(run, kf, tmp_path):
    cf = with_bom(tmp_path / "claims.json", '{"role": "admin"}')
    p = run("--key-file", str(kf), "--json", "mint", "--claims", str(cf), "--ttl", "5m")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["claims"]["role"] == "admin"


# -- JSON errors: one wording --------------------------------------------------------------


def test_json_error_wording():
    with pytest.raises(json.JSONDecodeError) as info:
        json.loads('{\n  "a": 1,\n  "b": "cut')
    assert json_error(info.value) == "unterminated string starting at line 3 column 8"
    with pytest.raises(json.JSONDecodeError) as info:
        json.loads("[1,]")
    assert json_error(info.value) == "expecting value at line 1 column 4"


def test_truncated_key_file_message(run, kf):
    # Regression: "Unterminated string starting at at line 15"
    text = kf.read_text()
    kf.write_text(text[: text.index('"n": "') + 20])
    p = run("--key-file", str(kf), "list")
    assert p.returncode == 4
    assert " at at " not in p.stderr
    assert p.stderr.startswith(
        f"prisme-keys: error: key file {kf} is unusable: not valid JSON (unterminated string starting at line "
    )
    assert p.stderr.endswith("; truncated?); it was left unchanged\n")


def test_jwks_file_and_claims_json_errors(run, kf, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"keys": [')
    p = run("verify", "a.b.c", "--jwks-file", str(bad))
    assert (p.returncode, p.stderr) == (
        9,
        f"prisme-keys: error: JWKS file {bad} is not JSON: expecting value at line 1 column 11\n",
    )
    cf = tmp_path / "claims.json"
    cf.write_text('{"a": "b')
    p = run("--key-file", str(kf), "mint", "--claims", str(cf))
    assert (p.returncode, p.stderr) == (
        2,
        f"prisme-keys: error: --claims {cf}: not JSON: unterminated string starting at line 1 column 7\n",
    )


# -- escaping and capping: one helper each -------------------------------------------------


def test_printable_cap_and_shown():
    assert printable("kid-1 ünï 鍵") == "kid-1 ünï 鍵"
    assert printable("evil\x1b[31mRED\x1b[0m\rFAKE") == "evil\\x1b[31mRED\\x1b[0m\\rFAKE"
    assert printable("\x07\x7f\x9b\u202e\u200b\n\t") == "\\x07\\x7f\\x9b\\u202e\\u200b\\n\\t"
    assert cap("x" * 100) == "x" * 100
    assert cap("x" * 100_000) == "x" * 200 + "... (100000 characters)"
    assert cap("\x1b" * 300, 4) == "\\x1b" * 4 + "... (300 characters)"
    assert cap("a" * 50 + "b" * 50, 10, tail=4) == "aaaaaa... (100 characters) ...bbbb"
    assert shown("a'b") == '"a\'b"'
    assert shown("k" * 1000) == "'" + "k" * 200 + "'... (1000 characters)"
    assert shown({"a": [1, 2]}) == "{'a': [1, 2]}" and shown(None) == "None"
    assert shown({"a": [1, 2]}, as_json=True) == '{"a": [1, 2]}' and shown(None, as_json=True) == "null"


# -- regression tests (defects found by a newcomer's break-test)


def test_deeply_nested_json_is_a_documented_error(cli, tmp_path):
    kf = tmp_path / "deep.json"
    kf.write_text('{"format": 1, "keys": ' + DEEP + "}")
    os.chmod(kf, 0o600)
    one_error_line(cli("--key-file", str(kf), "list"), 4)
    src = tmp_path / "deep-import.json"
    src.write_text(DEEP)
    one_error_line(cli("--key-file", str(tmp_path / "new.json"), "import", "--create", str(src)), 4)
    assert not (tmp_path / "new.json").exists()


# One redactor for every echoed URL (check, verify, notify, config show): the password becomes ***.
@pytest.mark.parametrize(
    "url, shown_as",
    [
        ("http://user:pass@127.0.0.1:8080/jwks", "http://user:***@127.0.0.1:8080/jwks"),
        ("redis://:hunter2@cache:6380/0", "redis://:***@cache:6380/0"),
        ("https://tok3n@issuer.test/x", "https://***@issuer.test/x"),
        ("https://a@b:p@ss@host/x", "https://a@b:***@host/x"),
        ("https://u:p?ss#w@host/x", "https://u:***@host/x"),
        ("http://u:pw@[::1", "http://u:***@[::1"),
        ("http://u:pw@host:99999/x", "http://u:***@host:99999/x"),
        ("https://host/users/@me/jwks", "https://host/users/@me/jwks"),
        ("https://host:8443/jwks?x=1", "https://host:8443/jwks?x=1"),
        ("not a url user:pw@host", "not a url user:pw@host"),
        ("", ""),
    ],
)
def test_redact_url(url, shown_as):
    assert redact_url(url) == shown_as


# Regression (newcomer): `--key-file $'new\nline.json' init` printed "created new" and "line.json: ..."
# on two lines; every message echoing a path (or any input) is one line, control characters escaped
def test_paths_with_line_breaks_and_esc_are_echoed_on_one_line(run, tmp_path):
    kf = tmp_path / "new\nline\x1b[31m.json"
    shown_kf = printable(str(kf))
    assert shown_kf == f"{tmp_path}/new\\nline\\x1b[31m.json"

    def one_line(p, stream="stdout"):
        text = getattr(p, stream)
        assert "\x1b" not in p.stdout + p.stderr and "\r" not in p.stdout + p.stderr
        assert len(text.splitlines()) == 1 and text.endswith("\n"), text
        return text

    p = run("--key-file", str(kf), "init")
    assert p.returncode == 0, p.stderr
    assert one_line(p).startswith(f"created {shown_kf}: signing key ")
    assert run("--key-file", str(kf), "rotate", "--force").returncode == 0
    out = tmp_path / "o\nut\x1b[31m.json"
    p = run("--key-file", str(kf), "export", "--out", str(out))
    assert (p.returncode, p.stdout, p.stderr) == (0, "", "") and out.exists()
    p = run("--key-file", str(kf), "doctor")
    assert p.stdout.splitlines()[-1].startswith(f"healthy: 2 keys in {shown_kf}; ")
    cfg = tmp_path / "c\nfg\x1b[31m.toml"
    p = run("--config", str(cfg), "config", "init")
    assert one_line(p) == f"wrote {printable(str(cfg))}\n"
    p = run("--config", str(cfg), "config", "path")
    assert one_line(p) == f"{printable(str(cfg))}\n"
    svg = tmp_path / "p\nlan\x1b[31m.svg"
    p = run("--key-file", str(kf), "--config", str(cfg), "plan", "--svg", str(svg))
    assert p.returncode == 0 and one_line(p, "stderr") == f"wrote the chart to {printable(str(svg))}\n"
    p = run("--key-file", str(tmp_path / "no\npe\x1b.json"), "list")
    one_error_line(p, 4)
    assert p.stderr.startswith(f"prisme-keys: error: key file {tmp_path}/no\\npe\\x1b.json does not exist; ")


# -- FIFOs and pipes as input files (newcomer break-test, defect 2)

FIFO_CASES = [
    (["--config", "{fifo}", "list"], 0, ""),  # an empty config file: nothing set
    (["--passphrase-file", "{fifo}", "encrypt"], 4, "passphrase file {fifo} is empty"),
    (["import", "{fifo}"], 4, "{fifo} is empty; nothing was imported"),
    (
        ["verify", "--jwks-file", "{fifo}", "a.b.c"],
        9,
        "JWKS file {fifo} is not JSON: expecting value at line 1 column 1",
    ),
    (["mint", "--claims", "{fifo}"], 2, "--claims {fifo}: not JSON: expecting value at line 1 column 1"),
]


@pytest.mark.parametrize(("args", "code", "line"), FIFO_CASES)
def test_a_fifo_nobody_writes_to_reads_as_empty_at_once(cli, kf, tmp_path, args, code, line):
    # opening a FIFO used to wait for a writer forever (cron stuck); now it is an empty input
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    args = [a.format(fifo=fifo) for a in args]
    p = cli.proc("--key-file", str(kf), "-q", *args, timeout=30)
    assert (p.returncode, p.stderr) == (code, f"prisme-keys: error: {line.format(fifo=fifo)}\n" if line else "")


def test_process_substitution_still_feeds_passphrase_claims_and_import(cli, kf, tmp_path, keypool):
    env = dict(cli.env, P=f"{script()} --key-file {kf} -q")
    other = write_keyfile(tmp_path / "other.json", [record(keypool[1])])
    line = (
        "set -e; $P --passphrase-file <(echo 'correct horse battery staple') encrypt > /dev/null;"
        " $P --passphrase-file <(echo 'correct horse battery staple') mint --claims <(echo '{\"x\": 7}') > tok;"
        f" $P --passphrase-file <(echo 'correct horse battery staple') import <(cat {other}) > /dev/null;"
        " $P --passphrase-file <(echo 'correct horse battery staple') list; $P --json decode - < tok > claims.json"
    )
    p = subprocess.run(["bash", "-c", line], env=env, cwd=cli.home, capture_output=True, text=True, timeout=120)
    assert (p.returncode, p.stderr) == (0, "")
    assert sorted(ln.split("\t")[0] for ln in p.stdout.splitlines()) == sorted([keypool[0]["kid"], keypool[1]["kid"]])
    assert json.loads((cli.home / "claims.json").read_text())["claims"]["x"] == 7
