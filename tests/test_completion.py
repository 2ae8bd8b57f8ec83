"""Completion that knows the key file, in the real shells: kids for mint --kid and notify --created
(from PRISME_KEYS_FILE or --key-file on the line), file names for --key-file and --config."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import pytest
from helpers import Cli, empty_config, pty_session, record, write_keyfile
from test_shipping import COMPLETIONS, HEAVY, need, shell_env


@pytest.fixture
def files(tmp_path, keypool):
    """Two key files: the environment's (keypool 0 and 1) and another one (keypool 2)."""
    main = write_keyfile(tmp_path / "keys.json", [record(keypool[0]), record(keypool[1])])
    other = write_keyfile(tmp_path / "other" / "second-keys.json", [record(keypool[2])])
    env = dict(
        shell_env(),
        PRISME_KEYS_FILE=str(main),
        PRISME_KEYS_CONFIG=str(empty_config(tmp_path)),
        HOME=str(tmp_path),
    )
    return main, other, env


def bash_complete(line: str, env: dict) -> list[str]:
    """COMPREPLY of the generated bash function for ``line`` (the cursor at its end)."""
    words = line.split(" ")
    prog = "\n".join(
        [
            f"source {COMPLETIONS / 'prisme-keys.bash'}",
            "COMP_WORDS=(" + " ".join(shlex.quote(w) for w in words) + ")",
            f"COMP_CWORD={len(words) - 1}",
            f"COMP_LINE={shlex.quote(line)}; COMP_POINT={len(line)}",
            "_prisme_keys_completion prisme-keys",
            'printf "%s\\n" "${COMPREPLY[@]}"',
        ]
    )
    p = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", prog], capture_output=True, text=True, env=env, timeout=60
    )
    assert p.stderr == "", p.stderr
    return p.stdout.split()


def test_bash_completes_kids_of_the_key_file(files, keypool):
    need("bash")
    main, other, env = files
    kids = [keypool[0]["kid"], keypool[1]["kid"]]
    assert bash_complete("prisme-keys mint --kid ", env) == kids
    assert bash_complete(f"prisme-keys mint --kid {kids[1][:6]}", env) == [kids[1]]
    assert bash_complete("prisme-keys notify --created ", env) == kids
    assert bash_complete(f"prisme-keys --key-file {other} mint --kid ", env) == [keypool[2]["kid"]]
    assert bash_complete("prisme-keys --key-file /nowhere/keys.json mint --kid ", env) == []


def test_revoke_completes_kids_and_absent_or_deleted_complete_revoked_kids(files, keypool, tmp_path):
    need("bash")
    main, other, env = files
    kids = [keypool[0]["kid"], keypool[1]["kid"]]
    assert bash_complete("prisme-keys revoke ", env) == kids
    assert bash_complete("prisme-keys check https://jwks.example --absent ", env) == []  # nothing revoked yet
    (tmp_path / "home").mkdir()
    p = Cli(tmp_path / "home")(
        "--key-file", str(main), "revoke", "--", kids[1], env={"PRISME_KEYS_CONFIG": env["PRISME_KEYS_CONFIG"]}
    )
    assert p.returncode == 0, p.stderr
    left = [r["kid"] for r in json.loads(main.read_text())["keys"]]
    assert kids[1] not in left
    assert bash_complete("prisme-keys revoke ", env) == left
    assert bash_complete("prisme-keys check https://jwks.example --absent ", env) == [kids[1]]
    assert bash_complete("prisme-keys notify --deleted ", env) == [kids[1]]
    assert bash_complete(f"prisme-keys --key-file {other} notify --deleted ", env) == []


def test_bash_falls_back_to_file_names_for_paths(files, tmp_path):
    need("bash")
    main, other, env = files
    (tmp_path / ".bashrc").write_text(f"source {COMPLETIONS / 'prisme-keys.bash'}\ncd {tmp_path}\nPS1='READY> '\n")
    for option, typed, expected in (  # relative paths: the line stays shorter than the terminal
        ("--key-file", "other/sec", "other/second-keys.json"),
        ("--config", "empty-con", "empty-config.toml"),
    ):
        assert bash_complete(f"prisme-keys {option} {typed}", env) == []  # nothing: bash's own file names
        outs = pty_session(
            ["bash", "--rcfile", str(tmp_path / ".bashrc"), "--noprofile", "-i"],
            env,
            [(b"", "READY>"), (f"prisme-keys {option} {typed}\t".encode(), expected)],
        )
        assert expected in outs[1], outs


def test_zsh_completes_kids_and_file_names(files, keypool, tmp_path):
    need("zsh")
    main, other, env = files
    fp = tmp_path / "site-functions"
    fp.mkdir()
    (fp / "_prisme-keys").write_text((COMPLETIONS / "_prisme-keys").read_text())
    (tmp_path / ".zshrc").write_text(
        f"fpath=({fp} $fpath)\nautoload -Uz compinit && compinit -u -D\ncd {tmp_path}\nPS1='READY> '\n"
    )
    env = dict(env, ZDOTDIR=str(tmp_path))
    kid = keypool[1]["kid"]
    outs = pty_session(
        ["zsh", "-i"],
        env,
        [
            (b"", "READY>"),
            (f"prisme-keys mint --kid {kid[:8]}\t".encode(), kid),
            (b"\x15", ""),  # Ctrl-U: clear the line
            (b"prisme-keys --key-file other/second-keys.json notify --created \t", keypool[2]["kid"]),
            (b"\x15", ""),
            (b"prisme-keys --key-file other/sec\t", "other/second-keys.json"),
        ],
        cols=250,
    )
    assert kid in outs[1], outs
    assert keypool[2]["kid"] in outs[3], outs
    assert "other/second-keys.json" in outs[5], outs


@pytest.mark.parametrize("install", ["fpath", "source"])
def test_zsh_completes_on_every_tab_not_only_the_first(tmp_path, install):
    """Regression: installed on fpath, the second TAB of a session completed nothing (a bell)."""
    need("zsh")
    fp = tmp_path / "site-functions"
    fp.mkdir()
    (fp / "_prisme-keys").write_text((COMPLETIONS / "_prisme-keys").read_text())
    setup = (
        f"fpath=({fp} $fpath)\nautoload -Uz compinit && compinit -u -D\n"
        if install == "fpath"
        else f"autoload -Uz compinit && compinit -u -D\nsource {fp / '_prisme-keys'}\n"
    )
    (tmp_path / ".zshrc").write_text(setup + "PS1='READY> '\n")
    env = dict(shell_env(), ZDOTDIR=str(tmp_path))
    steps = [(b"", "READY>")]
    for typed, expected in (("ro", "rotate"), ("pr", "prune"), ("li", "list"), ("ro", "rotate")):
        steps += [(f"prisme-keys {typed}\t".encode(), f"prisme-keys {expected} "), (b"\x15", "")]
    outs = pty_session(["zsh", "-i"], env, steps)
    for i, expected in enumerate(("rotate", "prune", "list", "rotate")):
        assert f"prisme-keys {expected} " in outs[1 + 2 * i], outs


def test_fish_completes_kids_and_file_names(files, keypool, tmp_path):
    need("fish")
    main, other, env = files

    def complete(line: str) -> list[str]:
        p = subprocess.run(
            [
                "fish",
                "--no-config",
                "-c",
                f"source {COMPLETIONS / 'prisme-keys.fish'}; complete -C {shlex.quote(line)}",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        return sorted(ln.split("\t")[0] for ln in p.stdout.splitlines())  # fish sorts them its own way

    kids = sorted([keypool[0]["kid"], keypool[1]["kid"]])
    assert complete("prisme-keys mint --kid ") == kids
    assert complete("prisme-keys notify --created ") == kids
    assert complete(f"prisme-keys --key-file {other} mint --kid ") == [keypool[2]["kid"]]
    assert complete(f"prisme-keys --key-file {tmp_path}/other/sec") == [str(other)]
    assert complete(f"prisme-keys --config {tmp_path}/empty-con") == [f"{tmp_path}/empty-config.toml"]


def test_kid_completion_imports_no_heavy_module(files, keypool):
    main, other, env = files
    env = dict(env, COMP_WORDS="prisme-keys mint --kid ", COMP_CWORD="3", _PRISME_KEYS_COMPLETE="complete_bash")
    p = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "prisme_keys"], capture_output=True, text=True, env=env, timeout=60
    )
    assert p.returncode == 0, p.stderr[-500:]
    assert p.stdout.split() == [keypool[0]["kid"], keypool[1]["kid"]]
    imported = {ln.rsplit("|", 1)[1].strip() for ln in p.stderr.splitlines() if ln.startswith("import time:")}
    assert imported
    assert sorted(m for m in imported if m.split(".")[0] in HEAVY or m in HEAVY) == []


def test_group_readable_or_corrupt_key_file_completes_nothing(files, tmp_path):
    need("bash")
    main, other, env = files
    os.chmod(main, 0o644)
    assert bash_complete("prisme-keys mint --kid ", env) == []
    os.chmod(main, 0o600)
    main.write_text("{not json")
    assert bash_complete("prisme-keys mint --kid ", env) == []


def test_a_fifo_as_key_file_completes_nothing_at_once(files, tmp_path):
    # regression (newcomer break-test): kid completion waited for a writer on the FIFO forever
    need("bash")
    main, other, env = files
    fifo = tmp_path / "kf"
    os.mkfifo(fifo)
    assert bash_complete(f"prisme-keys --key-file {fifo} revoke ", env) == []  # bash_complete times out at 60 s
    assert bash_complete("prisme-keys mint --kid ", dict(env, PRISME_KEYS_FILE=str(fifo))) == []
