"""The architecture holds: no import cycles, small modules and functions, one registry of error
codes, and per-invocation state (two ``main()`` calls in one process never share options)."""

from __future__ import annotations

import ast
import json
import re
from collections import defaultdict
from pathlib import Path

import grimp
from helpers import write_keyfile
from jwks_server import claims, rs_token

from prisme_keys import jwk as jwk_rules
from prisme_keys.cli import main
from prisme_keys.errors import ERROR_CODES, EXIT_MEANINGS, ExitCode

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "prisme_keys"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in list(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_counting_imports_inside_functions():
    graph = grimp.build_graph("prisme_keys")  # grimp reads every import statement, in functions too
    edges: dict[str, set[str]] = defaultdict(set)
    for module in graph.modules:
        edges[module] |= graph.find_modules_directly_imported_by(module)
    assert _cycles(edges) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles(defaultdict(set, {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})) == [["a", "b", "c"]]


def test_modules_and_functions_are_small():
    too_long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        name = str(path.relative_to(ROOT))
        if len(text.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    too_long.append(f"{name}:{node.lineno} {node.name}(): {n} lines")
    assert too_long == []


def test_every_raised_error_code_is_registered():
    source = "".join(p.read_text() for p in PACKAGE.rglob("*.py"))
    raised = set(re.findall(r'\bcode="([a-z_]+)"', source))
    assert raised - set(ERROR_CODES) == set()
    assert {e.exit for e in ERROR_CODES.values()} <= set(ExitCode)
    assert set(EXIT_MEANINGS) == set(ExitCode)


def test_generated_exit_code_tables_match_the_code():
    import subprocess
    import sys

    p = subprocess.run([sys.executable, str(ROOT / "man" / "generate.py"), "--check"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


# -- state per invocation ---------------------------------------------------------------------


def _run(capsys, argv: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
    code = main(argv, env=env or {})
    out, err = capsys.readouterr()
    return code, out, err


def _records(keypool, n: int) -> list[dict]:
    from helpers import record

    return [record(keypool[n])]


def test_two_main_calls_see_only_their_own_options(capsys, tmp_path, keypool):
    a = write_keyfile(tmp_path / "a.json", _records(keypool, 0))
    b = write_keyfile(tmp_path / "b.json", _records(keypool, 1))
    code, out_a, _ = _run(capsys, ["--key-file", str(a), "--json", "--now", "2026-01-02T00:00:00Z", "list"])
    assert code == 0
    doc_a = json.loads(out_a)
    code, out_b, _ = _run(capsys, ["--key-file", str(b), "list"])
    assert code == 0
    assert [k["kid"] for k in doc_a["keys"]] == [keypool[0]["kid"]]
    assert keypool[1]["kid"] in out_b and keypool[0]["kid"] not in out_b
    assert not out_b.lstrip().startswith("{")  # --json did not stick
    # the real clock (2026-11-29 or later), not the first call's --now, is the time of a later call
    code, out_c, _ = _run(capsys, ["--key-file", str(b), "--json", "list"])
    assert code == 0 and doc_a["now"] == "2026-01-02T00:00:00.000Z" and json.loads(out_c)["now"] >= "2026-11-29"


def test_env_argument_is_the_environment_of_the_call(capsys, tmp_path, keypool):
    a = write_keyfile(tmp_path / "a.json", _records(keypool, 2))
    code, out, _ = _run(capsys, ["--json", "list"], env={"PRISME_KEYS_FILE": str(a)})
    assert code == 0
    assert [k["kid"] for k in json.loads(out)["keys"]] == [keypool[2]["kid"]]


def test_now_never_moves_the_jwks_cache_clock(capsys, tmp_path, keypool, monkeypatch):
    import time

    from jwks_server import JwksServer

    from prisme_keys.tokens import jwks_client

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cache = tmp_path / "cache" / "prisme-keys"
    with JwksServer() as server:
        server.serve_json("/jwks", {"keys": [jwk_rules.public_jwk(keypool[3])]})
        later = time.time() + 45 * 86400
        token = rs_token(keypool[3], claims(now=later))
        before = time.time()
        code, _, err = _run(capsys, ["--now", "+45d", "verify", token, "--jwks-url", server.url()])
        after = time.time()
        assert (code, err) == (0, "")
        entry = json.loads(jwks_client.cache_path(server.url(), cache).read_text())
        assert before - 1 <= entry["fetched_at"] <= after + 1
        assert jwks_client.refetch_allowed(server.url(), cache) == 0


def test_now_does_not_outlive_its_call(capsys, tmp_path, keypool):
    kf = write_keyfile(tmp_path / "k.json", _records(keypool, 4))
    code, out, _ = _run(capsys, ["--key-file", str(kf), "--now", "2026-01-02T00:00:00Z", "--json", "list"])
    assert code == 0 and json.loads(out)["now"] == "2026-01-02T00:00:00.000Z"
    code, out, _ = _run(capsys, ["--key-file", str(kf), "--json", "list"])
    assert code == 0 and json.loads(out)["now"] >= "2026-11-29"  # the real clock again


# -- the library speaks no command line ---------------------------------------------------------

#: Core modules: everything but the command line and the pytest plugin.
CORE = [p for p in sorted(PACKAGE.rglob("*.py")) if not {"cli", "testing"} & set(p.relative_to(PACKAGE).parts[:1])]
FLAG = re.compile(r"(?<![\w-])--[a-z]")

#: Exceptions to the rules below, each with its reason: ``(module, what) -> why``.
ALLOWED = {
    ("prisme_keys/errors.py", "--debug"): "EXIT_MEANINGS documents the command line's exit statuses "
    "(the README and man page tables are generated from it)",
    ("prisme_keys/errors.py", "--now"): "ERROR_CODES documents the command line's error codes (README table)",
    ("prisme_keys/settings.py", "os.environ"): "the one home of the environment: load() reads the mapping it is given, "
    "os.environ by default",
    ("prisme_keys/store/doctor.py", "except Exception in _jose_round_trip"): "the python-jose boundary: whatever it "
    "raises on a key is the check's verdict (only python-jose runs in the block)",
    ("prisme_keys/tokens/http.py", "except BaseException in run"): "a thread boundary: the fetch thread hands "
    "everything to the caller, which maps network errors and re-raises the rest",
    ("prisme_keys/tokens/batch.py", "except Exception in here"): "a slice of verify --batch run in the "
    "calling thread holds what it raised, as the pool's futures do, for the line it belongs to",
    ("prisme_keys/tokens/batch.py", "except Exception in _answer"): "a forked child stops at a bug and gives "
    "back what it did; the command does the rest itself and meets the bug at the line it belongs to",
}


def _messages(tree: ast.AST) -> list[ast.Constant]:
    """The string constants of a module that are not docstrings (f-string parts included)."""
    docstrings = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
    }
    return [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings
    ]


def _command_line_uses(path: Path) -> list[str]:
    """What a core module must not do, as ``what`` labels: flag names in messages, stdin, prompts,
    the environment outside settings, ``except Exception`` that would turn a bug into a verdict."""
    tree = ast.parse(path.read_text())
    found = [
        re.match(r"--[a-z][a-z-]*", c.value[m.start() :]).group()
        for c in _messages(tree)
        for m in FLAG.finditer(c.value)
    ]  # type: ignore[union-attr]
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]

    def owner(node: ast.AST) -> str:
        inside = [f for f in functions if f.lineno <= node.lineno <= (f.end_lineno or f.lineno)]
        return max(inside, key=lambda f: f.lineno).name if inside else "<module>"

    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "input":
            found.append("input()")
        elif isinstance(node, ast.Import) and any(a.name == "getpass" for a in node.names):
            found.append("getpass")
        elif isinstance(node, ast.ImportFrom) and node.module in ("getpass", "sys", "os"):
            found += [
                f"{node.module}.{a.name}" for a in node.names if a.name in ("getpass", "stdin", "environ", "getenv")
            ]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if (node.value.id, node.attr) in (
                ("sys", "stdin"),
                ("os", "environ"),
                ("os", "getenv"),
                ("os", "environb"),
            ):
                found.append(f"{node.value.id}.{node.attr}")
        elif isinstance(node, ast.ExceptHandler):
            kinds = node.type.elts if isinstance(node.type, ast.Tuple) else [node.type]
            for kind in kinds:
                if kind is None or (isinstance(kind, ast.Name) and kind.id in ("Exception", "BaseException")):
                    name = "bare" if kind is None else kind.id
                    found.append(f"except {name} in {owner(node)}")
    return found


def test_core_modules_speak_no_command_line():
    """No flag names in messages, no stdin, no prompts, no environment outside settings.py, no
    ``except Exception`` turning a bug into a verdict, outside ``cli/`` and ``testing/``."""
    found = {
        (str(path.relative_to(ROOT)), what): None
        for path in CORE
        for what in _command_line_uses(path)
        if (str(path.relative_to(ROOT)), what) not in ALLOWED
    }
    assert sorted(found) == []


def test_the_command_line_check_finds_each_kind_of_use(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        '"""Docstrings may name --flags."""\n'
        "import getpass\nimport os\nimport sys\nfrom os import environ\n\n\n"
        "def f(x):\n"
        '    """So may --this one."""\n'
        "    try:\n"
        '        return input("? ") + sys.stdin.read() + os.environ["A"] + os.getenv("B")\n'
        "    except Exception:\n"
        '        raise ValueError(f"--count {x} is bad; see --max-bytes") from None\n'
        '    raise ValueError("a - b -- c -----BEGIN")\n'
    )
    assert sorted(_command_line_uses(bad)) == [
        "--count",
        "--max-bytes",
        "except Exception in f",
        "getpass",
        "input()",
        "os.environ",
        "os.environ",
        "os.getenv",
        "sys.stdin",
    ]


def _template_fields(call: ast.Call, *scopes: ast.AST) -> set[str]:
    """The argument names a ``Worded``/``InvalidArgument`` call's template names: its ``{fields}`` that are
    not keyword values. Parts held in variables assigned in ``scopes`` (its function, its module) are followed."""
    import string

    template = call.args[0] if isinstance(call.func, ast.Name) and call.func.id == "Worded" else call.args[1]
    names = {n.id for n in ast.walk(template) if isinstance(n, ast.Name)}
    parts = [template] + [
        a.value
        for scope in scopes
        for a in ast.walk(scope)
        if isinstance(a, ast.Assign) and any(isinstance(t, ast.Name) and t.id in names for t in a.targets)
    ]
    fields = {
        field
        for part in parts
        for c in ast.walk(part)
        if isinstance(c, ast.Constant) and isinstance(c.value, str)
        for _, field, _, _ in string.Formatter().parse(c.value)
        if field
    }
    return fields - {k.arg for k in call.keywords if k.arg}


def test_every_argument_and_hint_the_library_names_has_the_command_lines_words():
    import typer.main

    from prisme_keys.cli.runner import app
    from prisme_keys.cli.words import FLAGS, HINTS

    named: set[str] = set()
    hints: set[str] = set()
    for path in CORE:
        tree = ast.parse(path.read_text())
        for function in [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef))]:
            for call in ast.walk(function):
                if isinstance(call, ast.Call) and getattr(call.func, "id", None) in ("Worded", "InvalidArgument"):
                    named |= _template_fields(call, function, tree)
        for node in ast.walk(tree):  # hint="init" in a call, hint: str = "passphrase" as a default
            if isinstance(node, ast.keyword) and node.arg == "hint" and isinstance(node.value, ast.Constant):
                hints.add(node.value.value)
            if isinstance(node, ast.FunctionDef):
                args = node.args.args[len(node.args.args) - len(node.args.defaults) :] + node.args.kwonlyargs
                defaults = node.args.defaults + node.args.kw_defaults
                hints |= {
                    d.value
                    for a, d in zip(args, defaults, strict=True)
                    if a.arg == "hint" and isinstance(d, ast.Constant)
                }
    hints.discard(None)
    assert {"timeout", "max_bytes", "session_id", "count", "alg", "kid", "rekey", "config_path"} <= named  # seen
    assert {"init", "leeway", "passphrase", "new_passphrase", "rekey_weak"} <= hints
    assert named - set(FLAGS) == set()
    assert hints - set(HINTS) == set()
    options: set[str] = set()
    stack = [typer.main.get_command(app)]
    while stack:
        command = stack.pop()
        options |= {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
        stack += list(getattr(command, "commands", {}).values())
    assert set(FLAGS.values()) - options == set()


def test_the_root_group_builds_only_the_command_it_runs_and_shows_what_typer_shows():
    """cli.app.root_command builds each command on first use; the tree and the help are Typer's own."""
    import typer

    from prisme_keys.cli.app import root_command
    from prisme_keys.cli.runner import app

    eager, lazy = typer.main.get_command(app), root_command(app)
    assert list(lazy.commands) == list(eager.commands) and len(lazy.commands) == 19
    assert lazy.commands._built == {}
    mint = lazy.commands["mint"]
    assert list(lazy.commands._built) == ["mint"]
    assert [p.opts for p in mint.params] == [p.opts for p in eager.commands["mint"].params]
    assert [p.opts for p in lazy.params] == [p.opts for p in eager.params]
    for cmd in (eager, lazy):
        assert "--json" in {o for p in cmd.commands["config"].commands["show"].params for o in p.opts}
    with typer.Context(eager) as a, typer.Context(lazy) as b:
        assert lazy.get_help(b) == eager.get_help(a)
