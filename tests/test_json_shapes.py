"""The shape of every ``--json`` document: golden files under tests/golden/json/, and one naming rule.

Each case runs a command in-process at a fixed ``--now`` on a key file of fixed keys (made from
seeds, :func:`helpers.fixed_jwk`; keys a command generates come from the same seeds), and compares
its document with ``tests/golden/json/<case>.json``. Values that cannot be fixed (temp paths,
ports, UUIDs, Redis entry ids, the version) are replaced by ``<placeholders>`` first.
``PRISME_KEYS_REGEN_GOLDEN=1`` rewrites the files from the current output: review the diff.

The naming rule (README, "JSON documents"): our own member names are snake_case; a member copied
from a document with its own spelling keeps it (see :func:`foreign_member`).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import typer
from helpers import Cli, empty_config, fixed_jwk, record, write_keyfile
from jwks_server import JwksServer
from redis_server import redis_env, redis_server  # noqa: F401 (fixtures)

from prisme_keys import __version__
from prisme_keys import jwk as jwk_rules
from prisme_keys.cli.runner import app
from prisme_keys.store.lifecycle import public_jwks

GOLDEN = Path(__file__).parent / "golden" / "json"
#: Set to 1 to rewrite the golden files from the current output (then review the diff).
REGEN = os.environ.get("PRISME_KEYS_REGEN_GOLDEN") == "1"
NOW = "2026-01-10T00:00:00.000Z"
#: A time when the older key has expired (prune) and the signing key is due (rotate).
LATER = "2026-02-05T00:00:00.000Z"
SESSION = "00000000-0000-4000-8000-000000000000"
PASSPHRASE = "correct horse battery staple"


@pytest.fixture(scope="session")
def seeded(request) -> list[dict]:
    """Four fixed private JWKs: [older, signing, to import, generated]. They are the same on every run
    (made from seeds); pytest's cache keeps them, since finding their primes takes a few seconds."""
    cache = getattr(request.config, "cache", None)  # None under -p no:cacheprovider
    keys = cache.get("prisme-keys/fixed-jwks-v1", None) if cache is not None else None
    if keys is None:
        keys = [fixed_jwk(seed) for seed in range(4)]
        if cache is not None:
            cache.set("prisme-keys/fixed-jwks-v1", keys)
    return keys


@dataclass
class Case:
    """One command under ``--json``.

    Attributes:
        args: the command line after the global options; ``{tmp}``, ``{older}``, ``{signing}``,
            ``{token}``, ``{jwks_url}``, ``{import}`` are filled in.
        before: commands run first (their output is ignored).
        now: the ``--now`` time; ``write``: add ``--write-at-now``.
        stdin: standard input; exit: the expected exit code; stream: ``stdout`` or ``stderr``
            (an error document).
        needs: ``redis`` (a broker), ``jwks`` (a served JWKS of the key file), ``no_key_file``.
    """

    args: list[str]
    before: list[list[str]] = field(default_factory=list)
    now: str = NOW
    write: bool = False
    stdin: str | None = None
    exit: int = 0
    stream: str = "stdout"
    needs: tuple[str, ...] = ()


MINT = ["mint", "--sub", "alice", "--session-id", SESSION, "--iss", "https://auth.example", "--aud", "api"]

#: Golden file name -> case. Every command but ``serve`` (a server: see test_output.py) has one.
CASES: dict[str, Case] = {
    "init": Case(["init"], write=True, needs=("no_key_file",)),
    "rotate": Case(["rotate", "--force"], write=True),
    "rotate-dry-run": Case(["rotate", "--dry-run"], now=LATER),
    "rotate-nothing-due": Case(["rotate"], write=True),
    "prune": Case(["prune"], now=LATER, write=True),
    "prune-dry-run": Case(["prune", "--dry-run"], now=LATER),
    "list": Case(["list"]),
    "list-timeline": Case(["list", "--timeline"]),
    "plan": Case(["plan", "--days", "35"]),
    "export": Case(["export"]),
    "export-records": Case(["export", "--format", "records", "--private", "--out", "-"]),
    "export-out": Case(["export", "--out", "{tmp}/jwks.json"]),
    "generate-public": Case(["generate", "--public"]),
    "generate-out": Case(["generate", "--out", "{tmp}/new-key.json"]),
    "mint": Case(MINT),
    "mint-count": Case(["mint", "--sub", "alice", "--iss", "https://auth.example", "--aud", "api", "--count", "2"]),
    "decode": Case(["decode", "{token}"]),
    "verify": Case(["verify", "{token}", "--issuer", "https://auth.example", "--audience", "api"]),
    "verify-batch": Case(["verify", "--batch"], stdin="{token}\nnot-a-token\n", exit=5),
    "check": Case(["check", "{jwks_url}"], needs=("jwks",)),
    "check-absent": Case(["check", "{jwks_url}", "--absent", "{older}"], exit=10, needs=("jwks",)),
    "revoke": Case(["revoke", "{older}", "--reason", "leaked in a CI log"], write=True),
    "revoke-signing-dry-run": Case(["revoke", "{signing}", "--dry-run"]),
    "import": Case(["import", "{import}"], write=True),
    "notify": Case(["notify"], write=True, needs=("redis",)),
    "notify-nothing-pending": Case(["notify"], before=[["notify"]], write=True, needs=("redis",)),
    "notify-kids": Case(["notify", "--no-runtime", "--created", "{signing}"], write=True, needs=("redis",)),
    "rotate-notify": Case(["rotate", "--force", "--notify"], write=True, needs=("redis",)),
    "doctor": Case(["doctor"]),
    "encrypt": Case(["encrypt"], write=True),
    "decrypt": Case(["decrypt"], before=[["encrypt"]], write=True),
    "config-show": Case(["config", "show"]),
    "config-path": Case(["config", "path"]),
    "config-init": Case(["config", "init", "--out", "{tmp}/config.toml"]),
    "error": Case(["list"], exit=4, stream="stderr", needs=("no_key_file",)),
    "version": Case(["--version"]),
}


class Runner:
    """The command line in-process with its own home, key file (the older and the signing key of
    :func:`seeded`) and empty config; a new key is :func:`seeded` ``[3]`` (one per case)."""

    def __init__(self, tmp: Path, keys: list[dict], monkeypatch: pytest.MonkeyPatch) -> None:
        home = tmp / "home"
        home.mkdir()
        self.tmp = tmp
        self.cli = Cli(home)
        self.key_file = tmp / "keys.json"
        self.cli.env.update(
            {
                "PRISME_KEYS_CONFIG": str(empty_config(tmp)),
                "PRISME_KEYS_FILE": str(self.key_file),
                "PRISME_KEYS_PASSPHRASE": PASSPHRASE,
            }
        )
        older, signing = keys[0], keys[1]
        self.records = [
            record(
                signing,
                "2025-12-31T00:00:00.000Z",
                "2026-01-30T00:00:00.000Z",
                "2026-03-01T00:00:00.000Z",
                older["kid"],
            ),
            record(older, "2025-12-01T00:00:00.000Z", "2025-12-31T00:00:00.000Z", "2026-01-30T00:00:00.000Z"),
        ]
        write_keyfile(self.key_file, self.records)
        fresh = iter(keys[3:])  # every case makes one new key at most
        monkeypatch.setattr(jwk_rules, "generate_jwk", lambda bits, alg: dict(next(fresh)))

    def __call__(self, *argv: str, stdin: str | None = None, env: dict | None = None) -> tuple[int, str, str]:
        p = self.cli(*argv, input=stdin, env=env)
        return p.returncode, p.stdout, p.stderr


def normalize(text: str, tmp: Path) -> str:
    """``text`` with what changes from run to run replaced by ``<placeholders>``."""
    text = text.replace(str(tmp), "<tmp>")
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:<port>", text)
    text = re.sub(
        rf"(?!{SESSION})[0-9a-f]{{8}}-[0-9a-f]{{4}}-4[0-9a-f]{{3}}-[89ab][0-9a-f]{{3}}-[0-9a-f]{{12}}", "<uuid>", text
    )
    text = re.sub(r"eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", "<compact JWS>", text)
    text = re.sub(r'"\d{13}-\d+"', '"<entry-id>"', text)
    text = text.replace(f'"{__version__}"', '"<version>"')
    return text


def golden(name: str, doc: Any, tmp: Path) -> None:
    text = normalize(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", tmp)
    path = GOLDEN / f"{name}.json"
    if REGEN:
        GOLDEN.mkdir(parents=True, exist_ok=True)
        path.write_text(text, "utf-8")
    assert path.exists(), f"no golden file {path} (PRISME_KEYS_REGEN_GOLDEN=1 writes it)"
    assert text == path.read_text("utf-8"), f"output differs from {path} (PRISME_KEYS_REGEN_GOLDEN=1 rewrites it)"


def _values(run: Runner, keys: list[dict], case: Case, request: pytest.FixtureRequest) -> dict[str, str]:
    values = {"tmp": str(run.tmp), "older": keys[0]["kid"], "signing": keys[1]["kid"]}
    if "{token}" in " ".join(case.args) + (case.stdin or ""):
        rc, out, err = run("--now", NOW, "-q", *MINT)
        assert rc == 0, err
        values["token"] = out.strip()
    if "{import}" in case.args:
        (run.tmp / "import.json").write_text(json.dumps({"keys": [keys[2]]}))
        values["import"] = str(run.tmp / "import.json")
    return values


@pytest.mark.parametrize("name", sorted(CASES))
def test_json_document_matches_its_golden_file(request, tmp_path, seeded, monkeypatch, name):
    case = CASES[name]
    run = Runner(tmp_path, seeded, monkeypatch)
    if "no_key_file" in case.needs:
        run.key_file.unlink()
    env = request.getfixturevalue("redis_env") if "redis" in case.needs else None
    values = _values(run, seeded, case, request)
    server = None
    if "jwks" in case.needs:
        server = JwksServer().__enter__()
        server.serve_json("/jwks", public_jwks(run.records), headers={"Cache-Control": "public, max-age=600"})
        values["jwks_url"] = server.url()
    globals_ = ["--json", "--now", case.now] + (["--write-at-now"] if case.write else [])
    try:
        for before in case.before:
            rc, _, err = run(*globals_, *(a.format(**values) for a in before), env=env)
            assert rc == 0, err
        stdin = case.stdin.format(**values) if case.stdin is not None else None
        rc, out, err = run(*globals_, *(a.format(**values) for a in case.args), stdin=stdin, env=env)
    finally:
        if server is not None:
            server.__exit__(None, None, None)
    assert rc == case.exit, (out, err)
    text = err if case.stream == "stderr" else out
    golden(name, json.loads(text), tmp_path)


def leaf_commands() -> set[str]:
    """Every command of the Typer app, subcommands as ``"config show"``."""

    def walk(group: Any, prefix: tuple[str, ...]) -> Any:
        for name, cmd in group.commands.items():
            if hasattr(cmd, "commands"):
                yield from walk(cmd, (*prefix, name))
            elif not getattr(cmd, "hidden", False):
                yield " ".join((*prefix, name))

    return set(walk(typer.main.get_command(app), ()))


def test_every_command_has_a_golden_json_document():
    covered = set()
    for case in CASES.values():
        words = [a for a in case.args if not a.startswith("-")]
        if words:
            covered.add(" ".join(words[:2]) if words[0] == "config" else words[0])
    assert leaf_commands() - covered == {"serve"}  # a server; its one document: test_output.py


def test_golden_files_are_all_cases():
    assert sorted(p.stem for p in GOLDEN.glob("*.json")) == sorted(CASES)


# -- one naming rule for member names -----------------------------------------------------------

SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
#: Members of the key file's records (the gateway's record shape, DESIGN.md section 3).
RECORD_MEMBERS = {"kid", "previousKeyId", "createdAt", "activatesAt", "rotatesAt", "expiresAt", "jwk"}
#: Members of documents the key file stores with their own spelling: the last announcement
#: (``announced``) and the revocation list entries (``revocations``, with their ``exposure``).
STORED_MEMBERS = {"signingKid", "revokedAt", "signingUntil"}
#: camelCase names documented before the rule, kept so that no script breaks: name -> the member
#: (or ``$``, the document) that holds it.
DOCUMENTED_BEFORE_THE_RULE = {
    "removedAt": {"keys"},  # plan/list --timeline: a key's dates, beside the record's createdAt ... expiresAt
    "signingChanged": {"pending"},  # list/doctor: the pending announcement, beside the stored signingKid
    "correlationId": {"$", "notified"},  # notify: the broker envelope's source.correlationId
}
#: Members whose value is another document, kept as it is: JWS header, JWT claims, a JWK.
OPAQUE = {"header", "claims", "jwk"}
#: Members whose value is a map keyed by data (claim names, Redis stream names), not member names.
MAPS = {"times", "gateway_event", "runtime_event"}


def foreign_member(name: str, parent: str = "$") -> bool:
    """A member name spelled by another document, or documented before the rule (see above)."""
    return name in RECORD_MEMBERS or name in STORED_MEMBERS or parent in DOCUMENTED_BEFORE_THE_RULE.get(name, set())


def member_names(doc: Any, parent: str = "$") -> list[tuple[str, str]]:
    """``(parent, name)`` of every member name of ``doc`` the rule governs; ``parent`` is the member
    holding it (``$`` for the document itself; list items count as their list)."""
    out: list[tuple[str, str]] = []
    if isinstance(doc, list):
        for item in doc:
            out += member_names(item, parent)
    elif isinstance(doc, dict):
        if doc.get("kty") == "RSA":  # a JWK (RFC 7517): its members are the RFC's
            return out
        for k, v in doc.items():
            if parent not in MAPS:
                out.append((parent, k))
            if k not in OPAQUE:
                out += member_names(v, k)
    return out


def test_every_member_name_is_snake_case_or_named_by_another_document():
    bad = []
    for path in sorted(GOLDEN.glob("*.json")):
        doc = json.loads(path.read_text("utf-8"))
        if path.stem == "config-show":  # {setting name: {value, env, source}}: settings are snake_case too
            assert all(SNAKE.match(k) for k in doc)
        for parent, name in member_names(doc):
            if not SNAKE.match(name) and not foreign_member(name, parent):
                bad.append(f"{path.name}: {parent}.{name}")
    assert bad == []


def test_the_naming_rule_finds_a_camel_case_member():
    doc = {"a": [{"signingKid": 1, "pendingSince": 2}], "jwk": {"Qx": 1}, "b": {"kty": "RSA", "Qx": 1}}
    assert member_names(doc) == [("$", "a"), ("a", "signingKid"), ("a", "pendingSince"), ("$", "jwk"), ("$", "b")]
    assert member_names({"times": {"someClaim": {"iso": 1, "inMs": 2}}}) == [
        ("$", "times"),
        ("someClaim", "iso"),
        ("someClaim", "inMs"),
    ]
    assert not foreign_member("pendingSince") and foreign_member("signingKid")
    assert foreign_member("signingChanged", "pending") and not foreign_member("signingChanged", "notified")
