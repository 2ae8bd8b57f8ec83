"""The README's two set-up commands, in order, into one .venv: the man page and completions survive."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from test_shipping import COMPLETIONS, IN_CI, need

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ["pyproject.toml", "MANIFEST.in", "README.md", "man", "completions", "prisme_keys"]
SHARE = {
    "man/man1/prisme-keys.1": ROOT / "man" / "prisme-keys.1",
    "bash-completion/completions/prisme-keys.bash": COMPLETIONS / "prisme-keys.bash",
    "zsh/site-functions/_prisme-keys": COMPLETIONS / "_prisme-keys",
    "fish/vendor_completions.d/prisme-keys.fish": COMPLETIONS / "prisme-keys.fish",
}


def readme_pip_installs() -> list[list[str]]:
    """The arguments of each ``.venv/bin/pip install`` in the README's first code block, in order."""
    block = re.search(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block, "the README starts with a sh code block"
    out = []
    for line in block.group(1).splitlines():
        m = re.search(r"\.venv/bin/pip install ([^&]+)", line)
        if m:
            out.append(shlex.split(m.group(1)))
    return out


@pytest.mark.slow
def test_readme_setup_commands_keep_man_page_and_completions(tmp_path):
    installs = readme_pip_installs()
    assert [a[-1] for a in installs] == [".", ".[test]"] and installs[1][0] == "-e", installs
    project = tmp_path / "project"
    project.mkdir()
    for name in SHIPPED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, project / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(src, project / name)
    venv = project / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(
        subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")  # dependencies: this environment's
    for args in installs:  # the README's commands, without dependencies (already at hand)
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
                *args,
            ],
            capture_output=True,
            text=True,
            cwd=project,
            timeout=600,
        )
        assert p.returncode == 0, p.stderr[-3000:]
    for rel, source in SHARE.items():
        installed = venv / "share" / rel
        assert installed.is_file(), f"{rel} is missing after the README's second command"
        assert installed.read_bytes() == source.read_bytes()
    env = dict(os.environ, PATH=f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", TERM="dumb")
    env.pop("MANPATH", None)
    if shutil.which("man"):
        p = subprocess.run(["man", "-w", "prisme-keys"], capture_output=True, text=True, env=env, cwd=tmp_path)
        assert p.stdout.strip() == str(venv / "share" / "man" / "man1" / "prisme-keys.1"), p.stderr
    elif IN_CI:
        pytest.fail("man is not installed; .ci/run installs it")
    need("bash")
    # the README's bash line for a .venv: source the installed script
    prog = (
        f"source {venv}/share/bash-completion/completions/prisme-keys.bash\n"
        "COMP_WORDS=(prisme-keys ro); COMP_CWORD=1; _prisme_keys_completion prisme-keys\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    p = subprocess.run(["bash", "--norc", "--noprofile", "-c", prog], capture_output=True, text=True, env=env)
    assert (p.stdout, p.stderr) == ("rotate\n", "")
    # uninstalling removes what the editable install added
    p = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "uninstall", "-y", "-q", "prisme-keys"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    assert [rel for rel in SHARE if (venv / "share" / rel).exists()] == []
