"""Everyday output: one JSON document from every command (--json before or after it), quiet and
verbose after the command, list's piped form, summaries that add up, one mint warning."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
import typer
from helpers import Cli, empty_config, record, script, write_keyfile
from jwks_server import JwksServer
from redis_server import redis_env, redis_server  # noqa: F401 (fixtures)

from prisme_keys import clock
from prisme_keys.cli.runner import app
from prisme_keys.store.lifecycle import public_jwks


def fresh_records(jwks: list[dict], now=None) -> list[dict]:
    """Records around ``jwks`` (newest first) created an hour apart before the real ``now``: healthy."""
    now = now or clock.now()
    out = []
    for i, jwk in enumerate(jwks):
        created = now - timedelta(hours=1 + i)
        out.append(
            record(
                jwk,
                created=clock.iso(created),
                rotates=clock.iso(created + timedelta(days=30)),
                expires=clock.iso(created + timedelta(days=60)),
                previous=jwks[i + 1]["kid"] if i + 1 < len(jwks) else None,
            )
        )
    return out


class Runner:
    """Runs the command line in-process (helpers.Cli) with a key file and an empty config of its own;
    returns ``(exit code, stdout, stderr)``."""

    def __init__(self, tmp: Path) -> None:
        home = tmp / "home"
        home.mkdir()
        self.cli = Cli(home)
        self.key_file = tmp / "keys.json"
        self.env = {"PRISME_KEYS_CONFIG": str(empty_config(tmp)), "PRISME_KEYS_FILE": str(self.key_file)}
        self.cli.env.update(self.env)

    def __call__(self, *argv: str, stdin: bytes | None = None, env: dict | None = None) -> tuple[int, str, str]:
        p = self.cli(*argv, input=stdin.decode() if stdin is not None else None, env=env)
        return p.returncode, p.stdout, p.stderr


@pytest.fixture
def run(tmp_path, keypool):
    r = Runner(tmp_path)
    write_keyfile(r.key_file, fresh_records(keypool[:2]))
    return r


# ---------------------------------------------------------------------------------------------
# Every command prints exactly one JSON document under --json


@dataclass
class Case:
    """How to run one command for the walk: its arguments (after the command name), commands to
    run first, stdin, and what it needs. ``{tmp}``, ``{token}``, ``{jwks_url}``, ``{import}`` are
    filled in."""

    args: list[str] = field(default_factory=list)
    before: list[list[str]] = field(default_factory=list)
    stdin: str | None = None
    needs: tuple[str, ...] = ()
    no_key_file: bool = False


#: One or more cases per command; a command missing here fails the walk (add it when you add a command).
CASES: dict[str, list[Case]] = {
    "init": [Case(no_key_file=True)],
    "rotate": [Case(), Case(["--force"]), Case(["--dry-run"])],
    "prune": [Case(), Case(["--dry-run"])],
    "list": [Case(), Case(["--timeline"])],
    "plan": [Case(), Case(["--days", "40", "--svg", "{tmp}/plan.svg"])],
    "export": [Case(), Case(["--out", "{tmp}/jwks.json"]), Case(["--format", "records", "--private", "--out", "-"])],
    "generate": [Case(["--public"]), Case(["--out", "{tmp}/gen.json"])],
    "mint": [Case(), Case(["--count", "3"])],
    "decode": [Case(["{token}"])],
    "verify": [Case(["{token}"]), Case(["--batch"], stdin="{token}\nnot-a-token\n")],
    "check": [
        Case(["{jwks_url}"], needs=("jwks",)),
        Case(["{jwks_url}", "--junit", "{tmp}/r.xml"], needs=("jwks",)),
        Case(["{jwks_url}", "--absent", "{revoked}"], needs=("jwks",)),
    ],
    "revoke": [
        Case(["{retired}", "--reason", "leaked"]),
        Case(["{signing}", "--dry-run"]),
        Case(["{retired}"], before=[["revoke", "{retired}"]]),  # already revoked: nothing to do
    ],
    "serve": [Case(["--port", "0"], needs=("process",))],
    "import": [Case(["{import}"])],
    "notify": [Case(needs=("redis",)), Case(["--no-runtime", "--created", "k1"], needs=("redis",))],
    "doctor": [Case()],
    "encrypt": [Case()],
    "decrypt": [Case(before=[["encrypt"]])],
    "config show": [Case()],
    "config path": [Case()],
    "config init": [Case(["--out", "{tmp}/config.toml"])],
}


def leaf_commands() -> list[str]:
    """Every command of the Typer app, subcommands as ``"config show"``."""

    def walk(group, prefix):
        for name, cmd in group.commands.items():
            if getattr(cmd, "hidden", False):
                continue
            if hasattr(cmd, "commands"):
                yield from walk(cmd, (*prefix, name))
            else:
                yield " ".join((*prefix, name))

    return sorted(walk(typer.main.get_command(app), ()))


def test_every_command_has_a_json_case():
    missing = sorted(set(leaf_commands()) - set(CASES))
    assert missing == [], f"add the commands {missing} to CASES in {__file__} (how to run them under --json)"
    assert sorted(set(CASES) - set(leaf_commands())) == []


def one_document(out: str) -> object:
    """The single JSON document of ``out`` (json.loads fails on a second one or trailing text)."""
    assert out.strip(), "nothing on stdout"
    return json.loads(out)


CASE_IDS = [(name, i) for name in CASES for i in range(len(CASES[name]))]


@pytest.mark.parametrize("where", ["after", "before"])
@pytest.mark.parametrize(("name", "index"), CASE_IDS, ids=[f"{n}-{i}" for n, i in CASE_IDS])
def test_every_command_prints_one_json_document(request, run, keypool, tmp_path, name, index, where):
    case = CASES[name][index]
    records = json.loads(run.key_file.read_text())["keys"]
    if case.no_key_file:
        run.key_file.unlink()
    env: dict[str, str] = {"PRISME_KEYS_PASSPHRASE": "correct horse battery staple"}
    if "redis" in case.needs:
        env.update(request.getfixturevalue("redis_env"))
    values = {"tmp": str(tmp_path), "signing": records[0]["kid"], "retired": records[1]["kid"], "revoked": "gone"}
    for before in case.before:
        rc, _, err = run(*(a.format(**values) for a in before), env=env)
        assert rc == 0, err
    if "{token}" in " ".join(case.args) + (case.stdin or ""):
        rc, out, err = run("-q", "mint", env=env)
        assert rc == 0, err
        values["token"] = out.strip()
    if "{import}" in case.args:
        (tmp_path / "import.json").write_text(json.dumps({"keys": [keypool[2]]}))
        values["import"] = str(tmp_path / "import.json")
    command = name.split()
    jwks_server = None
    if "jwks" in case.needs:
        jwks_server = JwksServer().__enter__()
        jwks_server.serve_json("/jwks", public_jwks(records), headers={"Cache-Control": "public, max-age=600"})
        values["jwks_url"] = jwks_server.url()
    args = [a.format(**values) for a in case.args]
    argv = [*command, "--json", *args] if where == "after" else ["--json", *command, *args]
    try:
        if "process" in case.needs:
            doc = serve_json_document(argv, {**run.cli.env, **env})
        else:
            stdin = case.stdin.format(**values).encode() if case.stdin is not None else None
            rc, out, err = run(*argv, stdin=stdin, env=env)
            expected_rc = 5 if "--batch" in args else 0  # the batch holds one malformed token
            assert rc == expected_rc, (argv, err)
            doc = one_document(out)
    finally:
        if jwks_server is not None:
            jwks_server.__exit__(None, None, None)
    assert isinstance(doc, (dict, list)), doc
    if "--out" in args and args[args.index("--out") + 1] != "-":
        assert doc["written"] == args[args.index("--out") + 1] or doc.get("path") == args[args.index("--out") + 1]


def serve_json_document(argv: list[str], env: dict[str, str]) -> object:
    """Run ``serve`` as a process, read its one document, stop it with SIGTERM; stdout must hold only that."""
    proc = subprocess.Popen(
        [script(), *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **env}
    )
    try:
        text = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            text += proc.stdout.readline()
            try:
                doc = json.loads(text)
                break
            except ValueError:
                continue
        else:
            pytest.fail(f"serve printed no JSON document: {text!r}")
        assert doc["jwks_url"].startswith("http://127.0.0.1:") and doc["jwks_url"].endswith("/oidc/jwks")
        proc.send_signal(signal.SIGTERM)
        rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert rest == "", rest
    return doc


def test_files_written_under_json_say_what_where_and_how_many(run, tmp_path, keypool):
    out_file = tmp_path / "jwks.json"
    rc, out, _ = run("export", "--out", str(out_file), "--json")
    doc = json.loads(out)
    assert rc == 0 and doc == {
        "written": str(out_file),
        "format": "jwks",
        "private": False,
        "keys": 2,
        "kids": [keypool[0]["kid"], keypool[1]["kid"]],
        "bytes": out_file.stat().st_size,
    }
    gen = tmp_path / "gen.json"
    rc, out, _ = run("--json", "generate", "--out", str(gen))
    doc = json.loads(out)
    assert (rc, doc["written"], doc["bits"], doc["private"]) == (0, str(gen), 2048, True)
    assert doc["kid"] == json.loads(gen.read_text())["kid"]


def test_quiet_and_verbose_after_the_command(run, keypool, tmp_path):
    assert run("rotate", "-q") == (0, "", "")
    assert run("rotate", "--quiet") == (0, "", "")
    rc, out, _ = run("rotate")
    assert rc == 0 and out.startswith("nothing due; next rotation on ")
    src = tmp_path / "more.json"
    src.write_text(json.dumps({"keys": keypool[2:7]}))
    rc, out, err = run("import", str(src), "-v")
    kids = [k["kid"] for k in keypool[2:7]]
    assert rc == 0 and err.splitlines() == [f"imported {k}" for k in kids]


def test_json_before_and_after_give_the_same_document(run):
    assert run("--json", "config", "path") == run("config", "path", "--json")
    assert json.loads(run("config", "path", "--json")[1])["path"] == run.env["PRISME_KEYS_CONFIG"]


def test_usage_error_after_the_command_is_json_under_json(run):
    rc, out, err = run("doctor", "--json", "--bogus")
    assert (rc, out) == (2, "")
    assert json.loads(err) == {
        "code": "usage_error",
        "message": "No such option: --bogus",  # not "(Possible options: --verbose)": too far to be meant
        "exit": 2,
    }


#: The newcomer's inputs: Click printed a 4-line block (usage, hint, blank line, "Error: ...").
USAGE_ERRORS = [
    (["mint", "--count", "0"], "Invalid value for '--count': 0 is not in the range x>=1", "mint"),
    (["plan", "--days", "0"], "Invalid value for '--days': 0 is not in the range 1<=x<=3660", "plan"),
    (["serve", "--port", "70000"], "Invalid value for '--port': 70000 is not in the range 0<=x<=65535", "serve"),
    (["export", "--format", "xml"], "Invalid value for '--format': 'xml' is not one of 'jwks', 'records'", "export"),
    (["verify", "x", "--leeway", "-5"], "Invalid value for '--leeway': -5.0 is not in the range x>=0", "verify"),
    (["revoke"], "Missing argument 'KID'", "revoke"),
    (["check"], "Missing argument 'URL'", "check"),
    (["--bogus", "list"], "No such option: --bogus", ""),  # Click suggested the unrelated --verbose
    (["list", "--verbos"], "No such option: --verbos; did you mean --verbose?", "list"),
    (["lst"], "No such command 'lst'. Did you mean 'list'?", ""),
    (["config", "bogus"], "No such command 'bogus'", "config"),
    (["-q"], "Missing command", ""),
    # Regression (newcomer break-test, second round): these named no help to read
    (["mint", "--count"], "Option '--count' requires an argument", "mint"),  # Click gives it no context
    (["--key-file"], "Option '--key-file' requires an argument", ""),
    (["mint", "--workers", "0"], "--workers must be a whole number from 1 to 64, not 0", "mint"),  # ours
    (
        ["verify", "x", "--algorithms", "HS256"],
        "--algorithms: 'HS256' is not supported; allowed: RS256, RS384, "
        "RS512 (HMAC, EC, PSS and none are never accepted)",
        "verify",
    ),
]


@pytest.mark.parametrize(
    "argv, message, command", USAGE_ERRORS, ids=lambda a: " ".join(a) if isinstance(a, list) else ""
)
def test_a_usage_error_is_one_line(run, argv, message, command):
    where = f"prisme-keys {command}".strip()
    assert run(*argv) == (2, "", f"prisme-keys: error: {message} (see {where} --help)\n")
    rc, out, err = run("--json", *argv)
    assert (rc, out) == (2, "")
    assert err.count("\n") == 1 and json.loads(err) == {"code": "usage_error", "message": message, "exit": 2}


@pytest.mark.parametrize("argv", [[], ["config"]], ids=["prisme-keys", "config"])
def test_no_command_prints_the_help_on_stderr_with_exit_2(run, argv):
    """Regression: bare `prisme-keys` printed the help as one error line with literal \\n sequences.

    Decision (README "Output"): no command is a usage error, so exit 2 and the help on stderr,
    formatted (Click 8.2's convention for no_args_is_help); stdout stays empty.
    """
    rc, out, err = run(*argv)
    assert (rc, out) == (2, "")
    assert err.startswith(f"Usage: prisme-keys {' '.join(argv) + ' ' if argv else ''}[OPTIONS] COMMAND [ARGS]...\n\n")
    assert "\\n" not in err and "prisme-keys: error" not in err and "\nCommands:\n" in err
    rc, out, err = run("--json", *argv)
    assert (rc, out) == (2, "")
    assert json.loads(err) == {"code": "usage_error", "message": "Missing command", "exit": 2}


def test_json_help_is_text_help(run):
    """--help is for people: --json does not change it (README "Output")."""
    rc, out, err = run("--json", "--help")
    assert (rc, err) == (0, "") and out.startswith("Usage: prisme-keys [OPTIONS] COMMAND [ARGS]...\n")


# ---------------------------------------------------------------------------------------------
# list: the piped form


def test_list_piped_is_tab_separated_without_header_or_padding(run, keypool):
    rc, out, _ = run("list")
    lines = out.splitlines()
    assert rc == 0 and len(lines) == 2 and out.endswith("\n")
    recs = json.loads(run.key_file.read_text())["keys"]
    for line, rec in zip(lines, recs, strict=True):
        fields = line.split("\t")
        assert fields == [
            rec["kid"],
            "signing" if rec is recs[0] else "retired",
            "RS256",
            "2048",
            rec["createdAt"],
            rec["createdAt"],
            rec["rotatesAt"],
            rec["expiresAt"],
            "yes",
        ]
        assert line == line.strip() and "  " not in line
    cut = subprocess.run(["cut", "-f1"], input=out, capture_output=True, text=True, check=True).stdout
    assert cut.split() == [keypool[0]["kid"], keypool[1]["kid"]]
    awk = subprocess.run(
        ["awk", "-F\t", '$2 == "retired" {print $1}'], input=out, capture_output=True, text=True, check=True
    )
    assert awk.stdout == keypool[1]["kid"] + "\n"


def test_list_piped_escapes_control_characters_and_marks_missing(run, keypool):
    recs = fresh_records(keypool[:1])
    recs[0]["kid"] = "a\tb"
    recs[0]["jwk"] = {**recs[0]["jwk"], "kid": "a\tb"}
    recs[0]["jwk"].pop("alg")
    write_keyfile(run.key_file, recs)
    rc, out, err = run("list")
    assert rc == 0, err
    assert out.split("\t")[:3] == ["a\\x09b", "signing", "-"]


# ---------------------------------------------------------------------------------------------
# Summaries that add up; one mint warning


def test_doctor_summary_adds_up(run, keypool):
    recs = fresh_records(keypool[:3])
    recs[1]["jwk"] = {k: v for k, v in recs[1]["jwk"].items() if k not in ("d", "p", "q", "dp", "dq", "qi")}
    recs[0]["jwk"] = {k: v for k, v in recs[0]["jwk"].items() if k not in ("d", "p", "q", "dp", "dq", "qi")}
    write_keyfile(run.key_file, recs)
    rc, out, _ = run("doctor")
    doc = json.loads(run("doctor", "--json")[1])
    errors = sum(1 for f in doc["findings"] if f["severity"] == "error")
    warnings = sum(1 for f in doc["findings"] if f["severity"] == "warning")
    notes = sum(1 for f in doc["findings"] if f["severity"] == "info")
    assert rc == 4 and doc["problems"] == errors + warnings >= 1
    assert out.splitlines()[-1] == (
        f"{errors + warnings} problem{'s' if errors + warnings != 1 else ''}: 3 keys in {run.key_file}; "
        f"{errors} error{'s' if errors != 1 else ''}, {warnings} warning{'s' if warnings != 1 else ''}, "
        f"{notes} note{'s' if notes != 1 else ''}"
    )


def test_check_summary_adds_up_under_strict(run):
    records = json.loads(run.key_file.read_text())["keys"]
    with JwksServer() as srv:
        srv.serve_json("/jwks", public_jwks(records))  # no Cache-Control: a warning
        rc, out, err = run("check", srv.url(), "--strict")
        doc = json.loads(run("check", srv.url(), "--strict", "--json")[1])
        rc2, out2, _ = run("check", srv.url())
    s = doc["summary"]
    assert s["passed"] + s["warnings"] + s["failed"] == s["checks"] == len(doc["checks"])
    assert s["warnings"] == 1 and s["failed"] == 0 and doc["ok"] is False and doc["strict"] is True
    assert rc == 10 and out.splitlines()[-1] == (
        f"FAILED: {s['checks']} checks: {s['passed']} passed, 1 warning, 0 failed (--strict: warnings fail)"
    )
    assert "transport.cache_control" in err
    assert rc2 == 0 and out2.splitlines()[-1] == f"ok: {s['checks']} checks: {s['passed']} passed, 1 warning, 0 failed"


def test_import_of_many_keys_prints_one_summary_line(run, keypool, tmp_path):
    src = tmp_path / "many.json"
    src.write_text(json.dumps({"keys": keypool[2:8]}))
    rc, out, _ = run("import", str(src))
    assert rc == 0
    assert out == f"imported 6 keys into {run.key_file}; signing key {keypool[2]['kid']}\n"
    rc, out, _ = run("import", str(src))
    assert out == f"imported 0 keys into {run.key_file}; skipped 6 already present\n"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {},
            "warning: no iss/aud claims: OIDC_PROVIDER_URL and API_URL are unset "
            "(set them or pass --iss/--aud; -q silences warnings)\n",
        ),
        (
            {"API_URL": "https://api.example.test"},
            "warning: no iss claim: OIDC_PROVIDER_URL is unset (set it or pass --iss; -q silences warnings)\n",
        ),
        ({"API_URL": "https://a.test", "OIDC_PROVIDER_URL": "https://i.test"}, ""),
    ],
)
def test_mint_missing_claims_is_one_line(run, env, expected):
    rc, out, err = run("mint", "--count", "3", env=env)
    assert rc == 0 and len(out.splitlines()) == 3 and err == expected
    assert run("mint", "-q", env=env)[2] == ""
    assert run("-q", "mint", env=env)[2] == ""


# -- JsonStream: a --json document written member by member (mint --count, verify --batch)

STREAMED = [
    [],
    [{"line": 1, "valid": True}],
    [{"a": 1}, "two"],
    [{"a": [1, {"b": []}, {}], "c": {"d": None, "e": 1.5}}, "x", None, [], {}, [[1]], {"é": "ü\u2028"}, True],
]


def streamed(items: list, key: str | None = None, tail: dict | None = None) -> str:
    from prisme_keys.cli.output import JsonStream

    out: list[str] = []
    doc = JsonStream(out.append, key=key)
    for item in items:
        doc.add(item)
    doc.close(tail)
    assert doc.count == len(items)
    return "".join(out)


@pytest.mark.parametrize("items", STREAMED, ids=["0", "1", "2", "many"])
def test_a_streamed_json_document_is_byte_for_byte_json_text(items):
    from prisme_keys.cli.output import json_text

    assert streamed(items) == json_text(items)
    tail = {"tokens": len(items), "nested": {"x": [1, 2]}, "exit": 0}
    assert streamed(items, "results", tail) == json_text({"results": items, **tail})
    assert streamed(items, "results") == json_text({"results": items})


def test_a_streamed_json_document_escapes_only_the_member_utf8_cannot_encode():
    from prisme_keys.cli.output import json_text

    ascii_rest = [{"sub": "\ud800"}, {"sub": "alice"}]  # json_text escapes the whole document: the same bytes
    assert streamed(ascii_rest, "results", {"exit": 0}) == json_text({"results": ascii_rest, "exit": 0})
    mixed = [{"sub": "\ud800"}, {"sub": "é"}]
    text = streamed(mixed, "results", {"exit": 0})
    assert json.loads(text) == {"results": mixed, "exit": 0}
    assert '"sub": "\\ud800"' in text and '"sub": "é"' in text  # UTF-8 wherever it can be
    text.encode("utf-8")  # the whole document can be written


def test_a_streamed_json_document_begins_with_its_first_member_and_ends_once():
    from prisme_keys.cli.output import JsonStream

    out: list[str] = []
    doc = JsonStream(out.append, key="results", flush=lambda: out.append("<flush>"))
    doc.close_begun({"exit": 130})  # stopped before its first member: nothing was written
    assert out == []
    doc.add(1)
    assert out == ['{\n  "results": [\n    1']
    doc.close_begun({"exit": 130})
    doc.close({"exit": 0})  # a second end writes nothing
    assert "".join(out) == '{\n  "results": [\n    1\n  ],\n  "exit": 130\n}\n<flush>'
    with pytest.raises(ValueError, match="closed"):
        doc.add(2)
    with pytest.raises(ValueError, match="no members after"):
        JsonStream(out.append).close({"exit": 0})
