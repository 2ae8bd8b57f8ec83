"""Benchmark: how long the record classes that one command imports take to create (issue 13).

Not collected by pytest. Run with the product's venv:

    .venv/bin/python tests/benchmarks/bench_classes.py [--runs 7] [--top 12]

A ``@dataclass`` is created by generating and compiling its methods (``exec``): 0.2-0.5 ms each on
Python 3.11, a frozen one about twice a plain one; a ``typing.NamedTuple`` about 0.06 ms, a plain
class with ``__slots__`` a few microseconds. Those costs are paid again by every process, so they
are part of every one-shot command.

Each run is a fresh child process that wraps ``dataclasses._process_class`` and
``typing.NamedTupleMeta.__new__`` with a timer, imports ``prisme_keys.cli`` and runs
``main(ARGV)`` for one of: ``--help``, ``mint`` (key file) and ``verify TOKEN`` (key file). It
reports every class created on the way and the time each took. Printed: per command, the median
over ``--runs`` of the total class-creation time (milliseconds) split by kind, then the
``--top`` costliest classes of each command (median microseconds, module-qualified name).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

# The child: time every dataclass and NamedTuple created while importing the command line and
# running one command; write ``[[kind, qualified name, seconds], ...]`` to the file argv[1].
CHILD = r"""
import dataclasses, io, json, sys, time, typing

created = []
_process_class = dataclasses._process_class

def timed_process_class(cls, *args, **kwargs):
    t0 = time.perf_counter()
    try:
        return _process_class(cls, *args, **kwargs)
    finally:
        created.append(("dataclass", f"{cls.__module__}.{cls.__qualname__}", time.perf_counter() - t0))

dataclasses._process_class = timed_process_class
_nt_new = typing.NamedTupleMeta.__new__

def timed_nt_new(mcls, typename, bases, ns):
    t0 = time.perf_counter()
    try:
        return _nt_new(mcls, typename, bases, ns)
    finally:
        name = f"{ns.get('__module__', '?')}.{ns.get('__qualname__', typename)}"
        created.append(("namedtuple", name, time.perf_counter() - t0))

typing.NamedTupleMeta.__new__ = staticmethod(timed_nt_new)

out, sys.stdout = sys.stdout, io.StringIO()
from prisme_keys.cli import main

code = main(sys.argv[2:])
sys.stdout = out
if code != 0:
    raise SystemExit(f"command {sys.argv[2:]} exited {code}")
with open(sys.argv[1], "w") as fh:
    json.dump(created, fh)
"""


def run_child(argv: list[str], env: dict[str, str], out: Path) -> list[tuple[str, str, float]]:
    """One fresh process running ``main(argv)``; the classes it created, each with its time (seconds)."""
    subprocess.run([sys.executable, "-c", CHILD, str(out), *argv], env=env, check=True, stdout=subprocess.DEVNULL)
    return [tuple(row) for row in json.loads(out.read_text())]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7, help="fresh processes per command (default 7)")
    ap.add_argument("--top", type=int, default=12, help="costliest classes listed per command (default 12)")
    a = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bench-classes-"))
    env = dict(
        os.environ,
        HOME=str(home),
        XDG_DATA_HOME=str(home / "d"),
        XDG_CONFIG_HOME=str(home / "c"),
        XDG_CACHE_HOME=str(home / "k"),
        OIDC_PROVIDER_URL="https://api.example.test",
        API_URL="https://api.example.test/v2",
    )
    env.pop("PRISME_KEYS_FILE", None)
    kf = str(home / "keys.json")
    exe = [sys.executable, "-c", "import sys; from prisme_keys.cli import main; sys.exit(main())"]
    subprocess.run([*exe, "--key-file", kf, "init"], env=env, check=True, stdout=subprocess.DEVNULL)
    token = subprocess.run(
        [*exe, "--key-file", kf, "mint"], env=env, check=True, stdout=subprocess.PIPE, text=True
    ).stdout.strip()
    commands = {
        "--help": ["--help"],
        "mint": ["--key-file", kf, "mint"],
        "verify TOKEN": ["--key-file", kf, "verify", token],
    }
    out = home / "created.json"
    print(f"Class creation per command (Python {sys.version.split()[0]}, median of {a.runs} fresh processes)\n")
    print("| command | dataclasses | ms | NamedTuples | ms | total ms |")
    print("|---|---:|---:|---:|---:|---:|")
    details: dict[str, dict[str, list[float]]] = {}
    for label, argv in commands.items():
        totals: dict[str, list[float]] = {"dataclass": [], "namedtuple": []}
        counts: dict[str, int] = {}
        per_class: dict[str, list[float]] = {}
        for _ in range(a.runs):
            rows = run_child(argv, env, out)
            for kind in totals:
                totals[kind].append(sum(t for k, _, t in rows if k == kind))
                counts[kind] = sum(1 for k, _, _ in rows if k == kind)
            for kind, name, t in rows:
                per_class.setdefault(f"{name} ({kind})", []).append(t)
        details[label] = per_class
        dc, nt = (statistics.median(totals[k]) * 1000 for k in ("dataclass", "namedtuple"))
        print(f"| `{label}` | {counts['dataclass']} | {dc:.2f} | {counts['namedtuple']} | {nt:.2f} | {dc + nt:.2f} |")
    for label, per_class in details.items():
        print(f"\n{label}: costliest classes (median us)")
        ranked = sorted(per_class.items(), key=lambda kv: -statistics.median(kv[1]))
        for name, times in ranked[: a.top]:
            print(f"  {statistics.median(times) * 1e6:7.0f}  {name}")
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
