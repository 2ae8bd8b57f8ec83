"""Shipping: generated completions and man page match the code, shells complete, help everywhere, wheel."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import pty_session, script

ROOT = Path(__file__).resolve().parent.parent
COMPLETIONS = ROOT / "completions"
IN_CI = os.environ.get("CI") == "true"


def need(tool):
    if shutil.which(tool) is None:
        if IN_CI:
            pytest.fail(f"{tool} is not installed; .ci/run installs it")
        pytest.skip(f"{tool} is not installed")


def shell_env():
    return dict(os.environ, PATH=str(Path(script()).parent) + os.pathsep + os.environ["PATH"], TERM="dumb")


def all_commands():
    import typer

    from prisme_keys.cli.runner import app

    root = typer.main.get_command(app)
    out = []
    for name, cmd in root.commands.items():
        if hasattr(cmd, "commands"):
            out += [(f"{name} {sub}", c) for sub, c in cmd.commands.items()]
        else:
            out.append((name, cmd))
    return out


def test_completions_match_the_code():
    p = subprocess.run([sys.executable, str(COMPLETIONS / "generate.py"), "--check"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def test_man_page_matches_the_code():
    p = subprocess.run([sys.executable, str(ROOT / "man" / "generate.py"), "--check"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def test_man_page_renders_without_groff_warnings():
    need("groff")
    p = subprocess.run(
        ["groff", "-man", "-Tutf8", "-ww", "-z", str(ROOT / "man" / "prisme-keys.1")], capture_output=True, text=True
    )
    assert (p.returncode, p.stderr) == (0, "")


def test_every_command_has_help_and_is_in_readme_and_man_page():
    readme = (ROOT / "README.md").read_text()
    man = (ROOT / "man" / "prisme-keys.1").read_text().replace("\\-", "-")
    names = [n for n, _ in all_commands()]
    for expected in (
        "init",
        "rotate",
        "prune",
        "list",
        "export",
        "generate",
        "mint",
        "decode",
        "verify",
        "check",
        "serve",
        "import",
        "notify",
        "doctor",
        "encrypt",
        "decrypt",
        "config show",
        "config path",
        "config init",
    ):
        assert expected in names, f"command {expected} is missing"
    for name, cmd in all_commands():
        assert (cmd.help or "").strip(), f"{name} has no help text"
        assert f"prisme-keys {name}" in readme or f"`{name}" in readme, f"{name} is not in the README"
        assert f".SS prisme-keys {name} " in man, f"{name} is not in the man page"
        for p in cmd.params:
            if p.param_type_name == "option" and not p.hidden:
                assert (p.help or "").strip(), f"{name} {p.opts[0]} has no help text"


def test_exit_codes_documented_everywhere():
    readme = (ROOT / "README.md").read_text()
    man = (ROOT / "man" / "prisme-keys.1").read_text()
    for code in (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 130):
        assert re.search(rf"^\| {code} \|", readme, re.M), code
        assert f".TP\n\\fB{code}\\fR" in man, code


def test_bash_completes_commands_and_verify_options():
    need("bash")

    def complete(line):
        import shlex

        words = line.split(" ")
        prog = "\n".join(
            [
                f"source {COMPLETIONS / 'prisme-keys.bash'}",
                "COMP_WORDS=(" + " ".join(shlex.quote(w) for w in words) + ")",
                f"COMP_CWORD={len(words) - 1}",
                f"COMP_LINE={shlex.quote(line)}; COMP_POINT={len(line)}",
                "_prisme_keys_completion prisme-keys",
                'printf "%s\\n" "${COMPREPLY[@]}"',
                "",
            ]
        )
        return subprocess.run(
            ["bash", "--norc", "--noprofile", "-c", prog], capture_output=True, text=True, env=shell_env(), timeout=30
        ).stdout.split()

    assert complete("prisme-keys ro") == ["rotate"]
    opts = complete("prisme-keys verify --")
    for o in ("--jwks-url", "--jwks-file", "--issuer", "--audience", "--leeway", "--algorithms", "--batch"):
        assert o in opts, (o, opts)


def test_bash_completion_file_loads_through_bash_completion():
    need("bash")
    if not Path("/usr/share/bash-completion/bash_completion").exists():
        if IN_CI:
            pytest.fail("bash-completion is not installed; .ci/run installs it")
        pytest.skip("bash-completion is not installed")
    prog = (
        "source /usr/share/bash-completion/bash_completion\n"
        f"source {COMPLETIONS / 'prisme-keys.bash'}\ncomplete -p prisme-keys\n"
    )
    p = subprocess.run(["bash", "--norc", "-c", prog], capture_output=True, text=True, env=shell_env(), timeout=30)
    assert p.stdout.strip() == "complete -o default -F _prisme_keys_completion prisme-keys"


def test_fish_lists_commands():
    need("fish")
    p = subprocess.run(
        ["fish", "--no-config", "-c", f"source {COMPLETIONS / 'prisme-keys.fish'}; complete -C 'prisme-keys '"],
        capture_output=True,
        text=True,
        env=shell_env(),
        timeout=30,
    )
    listed = {ln.split("\t")[0] for ln in p.stdout.splitlines()}
    assert {"init", "rotate", "prune", "list", "export", "mint", "verify", "check", "serve"} <= listed, p.stdout


def test_zsh_completes_from_fpath_installed_file(tmp_path):
    need("zsh")
    fp = tmp_path / "site-functions"
    fp.mkdir()
    shutil.copy(COMPLETIONS / "_prisme-keys", fp / "_prisme-keys")  # a plain fpath install
    (tmp_path / ".zshrc").write_text(f"fpath=({fp} $fpath)\nautoload -Uz compinit && compinit -u -D\nPS1='READY> '\n")
    env = dict(shell_env(), ZDOTDIR=str(tmp_path))
    outs = pty_session(["zsh", "-i"], env, [(b"", "READY>"), (b"prisme-keys ro\t", "prisme-keys rotate")])
    assert "prisme-keys rotate" in outs[1], outs


@pytest.mark.slow
def test_wheel_carries_completions_man_page_and_key_list(tmp_path):
    pytest.importorskip("build")
    dist = tmp_path / "dist"
    p = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--sdist", "--outdir", str(dist), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    import tarfile
    import zipfile

    wheel = next(dist.glob("*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for suffix in (
        "prisme_keys/data/known-compromised-keys.json",
        "data/share/man/man1/prisme-keys.1",
        "data/share/bash-completion/completions/prisme-keys.bash",
        "data/share/zsh/site-functions/_prisme-keys",
        "data/share/fish/vendor_completions.d/prisme-keys.fish",
    ):
        assert any(n.endswith(suffix) for n in names), (suffix, names)
    # every subpackage ships (the wheel once lacked store/, tokens/ and publish/), and the pytest plugin's entry point
    for pkg in ("cli", "store", "tokens", "publish", "testing"):
        assert f"prisme_keys/{pkg}/__init__.py" in names, (pkg, names)
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/entry_points.txt")))
    assert "[pytest11]\nprisme_keys = prisme_keys.testing.plugin\n" in entry_points.decode()
    sdist = next(dist.glob("*.tar.gz"))
    snames = tarfile.open(sdist).getnames()
    for suffix in (
        "man/prisme-keys.1",
        "completions/_prisme-keys",
        "completions/prisme-keys.bash",
        "completions/prisme-keys.fish",
        "prisme_keys/data/known-compromised-keys.json",
    ):
        assert any(n.endswith(suffix) for n in snames), (suffix, snames)
    # a fresh virtualenv that reuses this one's dependencies, with the wheel installed into it
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    import sysconfig

    site = Path(
        subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import sysconfig;print(sysconfig.get_path('purelib'))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "-q",
            "--no-deps",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if p.returncode != 0:  # older pip without --python: install with a target prefix
        p = subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--prefix", str(venv), str(wheel)],
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert p.returncode == 0, p.stderr
    from prisme_keys import __version__

    v = subprocess.run(
        [str(venv / "bin" / "prisme-keys"), "--version"],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=""),
        cwd=tmp_path,
    )
    assert (v.returncode, v.stdout) == (0, f"prisme-keys {__version__}\n")
    assert (venv / "share" / "man" / "man1" / "prisme-keys.1").exists()
    assert (venv / "share" / "zsh" / "site-functions" / "_prisme-keys").exists()


HEAVY = ("jose", "cryptography", "urllib.request", "rich", "redis", "http.client", "pydantic")


@pytest.mark.parametrize("case", ["help", "decode", "completion"])
def test_fast_paths_import_no_heavy_module(case):
    """--help, decode and a completion request import no python-jose, cryptography, urllib, rich, redis."""
    env = dict(os.environ)
    args = {"help": ["--help"], "decode": ["decode", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln"], "completion": []}[
        case
    ]
    if case == "completion":
        env.update(COMP_WORDS="prisme-keys ro", COMP_CWORD="1", _PRISME_KEYS_COMPLETE="complete_bash")
    p = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "prisme_keys", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr[-500:]
    imported = {ln.rsplit("|", 1)[1].strip() for ln in p.stderr.splitlines() if ln.startswith("import time:")}
    assert imported, "no -X importtime output"
    heavy = sorted(m for m in imported if m.split(".")[0] in HEAVY or m in HEAVY)
    assert heavy == [], heavy
    if case == "completion":
        assert p.stdout.split() == ["rotate"]


# What the key-file commands may import. python-jose's cryptography backend pulls in
# cryptography.x509 (30-45 ms): mint and verify sign and verify straight with cryptography.
# hashlib (2.5 ms): only verify --batch checks signatures with it (jwk.rsa_verifier, many=True).
SIGNING_HEAVY = ("jose", "cryptography.x509", "rich", "urllib.request", "http.client", "redis", "pydantic", "tomllib")
KEYFILE_HEAVY = {
    "mint": (*SIGNING_HEAVY, "hashlib"),
    "verify": (*SIGNING_HEAVY, "hashlib"),
    "list": ("jose", "cryptography", "rich", "urllib.request", "http.client", "redis", "hashlib", "tomllib"),
    "rotate": ("jose", "cryptography", "rich", "urllib.request", "http.client", "redis", "hashlib", "tomllib"),
    "prune": ("jose", "cryptography", "rich", "urllib.request", "http.client", "redis", "hashlib", "tomllib"),
}


@pytest.mark.parametrize("case", sorted(KEYFILE_HEAVY))
def test_keyfile_commands_import_only_what_they_use(case, tmp_path, keypool):
    """mint and verify (key file) import no python-jose; list, rotate and prune with nothing due
    (stdout not a terminal) import no cryptography and no rich; no config file, no TOML parser."""
    from datetime import UTC, datetime, timedelta

    from helpers import record, write_keyfile

    from prisme_keys import clock

    now = datetime.now(UTC)  # the real clock: rotate and prune refuse a --now far from it
    iso = [clock.iso(now + timedelta(days=d)) for d in (-1, 29, 59)]
    kf = write_keyfile(tmp_path / "keys.json", [record(keypool[0], created=iso[0], rotates=iso[1], expires=iso[2])])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PRISME_KEYS_", "JWKS_", "XDG_"))}
    env.update(
        PRISME_KEYS_FILE=str(kf),
        XDG_CONFIG_HOME=str(tmp_path / "no-config"),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        HOME=str(tmp_path),
    )
    args = [case]
    if case == "verify":
        mint = subprocess.run([script(), "mint"], capture_output=True, text=True, env=env)
        assert mint.returncode == 0, mint.stderr
        args.append(mint.stdout.strip())
    p = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "prisme_keys", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr[-500:]
    imported = {ln.rsplit("|", 1)[1].strip() for ln in p.stderr.splitlines() if ln.startswith("import time:")}
    heavy = sorted(m for m in imported if any(m == h or m.startswith(h + ".") for h in KEYFILE_HEAVY[case]))
    assert heavy == [], heavy
    if case in ("mint", "verify"):
        assert "cryptography.hazmat.primitives.asymmetric.rsa" in imported
