"""Benchmark: median wall time of common commands, next to `python3 -c pass`, in one run.

Usage: python tests/benchmarks/bench_cli.py [--runs N]
Prints one line per command: median and min in milliseconds over N runs (default 15;
init runs 5 times at 2048 bits and 3 times at 4096 bits: key generation dominates).
Covers start-up (`--help`, `decode`, one bash completion request, next to `import typer`)
and the lifecycle commands (`list`, `rotate` with nothing due, `init`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def script() -> str:
    cand = Path(sys.executable).parent / "prisme-keys"
    return str(cand) if cand.exists() else shutil.which("prisme-keys")


def timed(cmd, env, setup=None) -> float:
    if setup:
        setup()
    t = time.perf_counter()
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return (time.perf_counter() - t) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    a = ap.parse_args()
    home = Path(tempfile.mkdtemp())
    env = dict(
        os.environ,
        HOME=str(home),
        XDG_DATA_HOME=str(home / "d"),
        XDG_CONFIG_HOME=str(home / "c"),
        XDG_CACHE_HOME=str(home / "k"),
    )
    kf = home / "keys.json"
    pk = script()
    subprocess.run([pk, "--key-file", str(kf), "init"], env=env, check=True, stdout=subprocess.DEVNULL)
    target = home / "new.json"

    def rm_target():
        for p in (target, Path(str(target) + ".lock")):
            if p.exists():
                p.unlink()

    import base64
    import json

    def b64(d):
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    token = b64({"typ": "jwt", "alg": "RS256", "kid": "k"}) + "." + b64({"sub": "u", "exp": 1900000000}) + ".c2ln"
    comp = {"COMP_WORDS": "prisme-keys ro", "COMP_CWORD": "1", "_PRISME_KEYS_COMPLETE": "complete_bash"}
    cases = [
        ("python3 -c pass", [sys.executable, "-c", "pass"], {}, None, a.runs),
        ('python3 -c "import typer"', [sys.executable, "-c", "import typer"], {}, None, a.runs),
        ("prisme-keys --help", [pk, "--help"], {}, None, a.runs),
        ("prisme-keys decode TOKEN", [pk, "decode", token], {}, None, a.runs),
        ("completion request (bash, 'ro<TAB>')", [pk], comp, None, a.runs),
        ("prisme-keys list", [pk, "--key-file", str(kf), "list"], {}, None, a.runs),
        ("prisme-keys rotate (nothing due)", [pk, "--key-file", str(kf), "rotate"], {}, None, a.runs),
        ("prisme-keys init (2048 bits)", [pk, "--key-file", str(target), "init"], {}, rm_target, 5),
        ("prisme-keys init (4096 bits)", [pk, "--key-file", str(target), "init"], {"JWKS_SIZE": "4096"}, rm_target, 3),
    ]
    print(f"{'command':40s} {'median ms':>10s} {'min ms':>8s} runs")
    for name, cmd, extra, setup, runs in cases:
        e = dict(env, **extra)
        times = [timed(cmd, e, setup) for _ in range(runs)]
        print(f"{name:40s} {statistics.median(times):10.1f} {min(times):8.1f} {runs}")
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
