"""Benchmark: one whole command of prisme-keys next to its scripting peers, in one run.

Not collected by pytest. Run with the product's venv (its ``prisme-keys`` script is taken from the
same folder as the interpreter):

    .venv/bin/python tests/benchmarks/bench_peers.py [--runs 7] [--n 10000] [--profile]
        [--skip-table] [--skip-throughput] [--no-node]

Every figure comes from whole processes started the way a cron job or a CI step starts them.
Part 1 prints a Markdown table of the median and the minimum wall time (milliseconds, RSA-2048,
key file, warm page cache; the median CPU time beside it, less sensitive to a busy machine) of:
``python -c pass``, ``python -c "import typer"`` (same venv), our
commands, PyJWT one-shot sign (``python -c`` with a PEM), node jose one-shot sign (``node -e``;
``npm install jose`` into a temporary folder, skipped with a note when npm is absent) and the jose
C tool (``jose jws sig`` / ``jws ver``, Debian package ``jose``; skipped when absent). The rounds
are interleaved (each round runs every command once), so a busy neighbour slows all rows alike.
The goals of issue 13 are checked against the medians of this same run. Then, in-process (the
one measurement that imports the package): how long the key file's signing key takes to become a
signer, 2048 and 4096 bits, next to OpenSSL's full RSA key check of the same key.

Part 2 prints throughput: ``mint --count N`` against a raw ``cryptography`` sign loop with the
same key, ``verify --batch`` over N tokens against a raw verify loop (best of ``--repeat``
interleaved runs), each with its default ``--workers`` and with ``--workers 1`` (one thread: the
figure of a single core), and the peak RSS (``ru_maxrss`` of the child, ``os.wait4``) at N and 4N.

``--profile`` adds, for decode, list, verify and mint, the import time by top-level package
(``python -X importtime``) and the functions with the largest cumulative time (cProfile), both
run in a child process through the ``prisme-keys`` console-script entry point.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PY = sys.executable
EXE = str(Path(PY).parent / "prisme-keys")
ISS, AUD = "https://api.example.test", "https://api.example.test/v2"

NODE_SIGN = """
import {readFileSync} from 'node:fs'; import {importJWK, SignJWT} from 'jose';
const jwk = JSON.parse(readFileSync(process.argv[1], 'utf8'));
const key = await importJWK(jwk, 'RS256');
const now = Math.floor(Date.now() / 1000);
console.log(await new SignJWT({sub: 'u1', iss: process.argv[2], aud: process.argv[3]})
  .setProtectedHeader({typ: 'jwt', alg: 'RS256', kid: jwk.kid}).setIssuedAt(now).setExpirationTime(now + 3600)
  .sign(key));
"""
PYJWT_SIGN = """
import sys, time, jwt
key = open(sys.argv[1]).read()
now = int(time.time())
print(jwt.encode({"sub": "u1", "iss": sys.argv[3], "aud": sys.argv[4], "iat": now, "exp": now + 3600}, key,
                 algorithm="RS256", headers={"typ": "jwt", "kid": sys.argv[2]}))
"""
# The child of key_load(): how long the key file's signing key takes to become a signer, in-process
# (imports done first), against OpenSSL's full RSA key check of the same key. argv[1]: key file.
KEY_LOAD = """
import statistics, sys, time
from prisme_keys import clock, jwk as jwk_rules, settings
from prisme_keys.store import lifecycle
from prisme_keys.tokens.mint import signer_for
s = settings.load({"key_file": sys.argv[1]})
now = clock.now()
loads, signs, full = [], [], []
for _ in range(9):
    t0 = time.perf_counter()
    rec, jwk = lifecycle.signing_jwk(s, now)
    signer = signer_for(jwk, jwk["alg"])
    t1 = time.perf_counter()
    signer.sign({"sub": "u1"})
    t2 = time.perf_counter()
    jwk_rules.private_key_from_jwk(jwk)
    t3 = time.perf_counter()
    loads.append(t1 - t0); signs.append(t2 - t1); full.append(t3 - t2)
print(*(f"{statistics.median(x) * 1000:.2f}" for x in (loads, signs, full)))
"""
# The child of --profile: the console-script entry point (module:function as argv[1]) under cProfile;
# prints the functions with the largest cumulative time, import machinery and typer/click frames left out.
PROFILE_RUN = """
import cProfile, importlib, io, pstats, sys
mod, fn = sys.argv[1].split(":")
sys.argv = ["prisme-keys", *sys.argv[2:]]
prof = cProfile.Profile()
prof.enable()
try:
    getattr(importlib.import_module(mod), fn)()
except SystemExit:
    pass
prof.disable()
out = io.StringIO()
hide = r"^(?!.*(<frozen|built-in method builtins\\.(exec|__import__)|/typer/|/click/|/importlib/))"
pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(hide, 16)
sys.stderr.write(out.getvalue())
"""


# Forks and times one command (argv[2:], argv[2] a path);
# writes "milliseconds peak-RSS-KiB" to the file named by argv[1].
REAPER = """
import os, sys, time
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execv(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
ms = (time.perf_counter() - t0) * 1000
with open(sys.argv[1], "w") as f:
    f.write(f"{ms} {usage.ru_maxrss} {(usage.ru_utime + usage.ru_stime) * 1000}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


@dataclass
class Result:
    ms: float
    maxrss_kib: int
    cpu_ms: float = 0.0


def run(
    argv: list[str], env: dict, stdin: Path | None = None, stdout: Path | None = None, cwd: Path | None = None
) -> Result:
    """Run one process to its end through the small reaper process; its wall time and peak RSS. Exits on failure.

    The command is forked by the reaper, not by this process: a child spawned straight from the
    benchmark would report the benchmark's own RSS (the kernel's high-water mark survives
    vfork/exec), which holds N tokens in memory.
    """
    with (
        open(stdin or os.devnull, "rb") as i,
        open(stdout or os.devnull, "wb") as o,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile("r") as report,
    ):
        p = subprocess.run(
            [PY, "-I", "-S", "-c", REAPER, report.name, *argv],
            env=env,
            stdin=i,
            stdout=o,
            stderr=err,
            cwd=cwd,
            check=False,
        )
        if p.returncode != 0:
            err.seek(0)
            raise SystemExit(f"{' '.join(argv)[:200]} failed with exit {p.returncode}: {err.read().decode()[:500]}")
        ms, rss, cpu = report.read().split()
    return Result(float(ms), int(rss), float(cpu))


def b64d(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def private_key(jwk: dict):  # type: ignore[no-untyped-def]
    """The cryptography RSA private key of a private JWK (harness side, fully validated)."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    i = {k: int.from_bytes(b64d(jwk[k]), "big") for k in ("n", "e", "d", "p", "q", "dp", "dq", "qi")}
    pub = rsa.RSAPublicNumbers(i["e"], i["n"])
    return rsa.RSAPrivateNumbers(i["p"], i["q"], i["d"], i["dp"], i["dq"], i["qi"], pub).private_key()


class JwksHandler(BaseHTTPRequestHandler):
    body = b""
    # Headers and body leave in two writes: with Nagle's algorithm on, the body would wait for the
    # client's delayed ACK (40 ms on Linux loopback). Web servers set TCP_NODELAY (nginx: tcp_nodelay on).
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/jwk-set+json")
        self.send_header("Cache-Control", "public, max-age=600")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@dataclass
class Fixture:
    """The key files, tokens and peer tools the benchmark runs against, in one temporary folder."""

    work: Path
    env: dict
    kid: str = ""
    token: str = ""
    jwks_url: str = ""
    node_dir: Path | None = None
    notes: list[str] = field(default_factory=list)

    def path(self, name: str) -> Path:
        return self.work / name


def prepare(work: Path, want_node: bool) -> Fixture:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JWKS_", "PRISME_KEYS_", "XDG_"))}
    env.update(
        {
            "HOME": str(work / "home"),
            "XDG_CONFIG_HOME": str(work / "config"),
            "XDG_DATA_HOME": str(work / "data"),
            "XDG_CACHE_HOME": str(work / "cache"),
            "PRISME_KEYS_FILE": str(work / "keys.json"),
            "OIDC_PROVIDER_URL": ISS,
            "API_URL": AUD,
            "NO_COLOR": "1",
        }
    )
    (work / "home").mkdir()
    fx = Fixture(work, env)
    run([EXE, "init"], env)
    run([EXE, "--key-file", str(work / "keys4096.json"), "init"], dict(env, JWKS_SIZE="4096"))
    run([EXE, "export", "--out", str(work / "jwks.json")], env)
    run([EXE, "export", "--private", "--out", str(work / "private-jwks.json")], env)
    run([EXE, "mint", "--ttl", "1d"], env, stdout=work / "token.txt")
    fx.token = (work / "token.txt").read_text().strip()
    priv = json.loads((work / "private-jwks.json").read_text())["keys"][0]
    fx.kid = priv["kid"]
    (work / "key.jwk").write_text(json.dumps(priv))
    pub = {k: priv[k] for k in ("kty", "kid", "use", "alg", "n", "e")}
    (work / "pub.jwk").write_text(json.dumps(pub))
    from cryptography.hazmat.primitives import serialization

    pem = private_key(priv).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (work / "key.pem").write_bytes(pem)
    now = int(time.time())
    (work / "payload.json").write_text(
        json.dumps({"sub": "u1", "iss": ISS, "aud": AUD, "iat": now, "exp": now + 86400})
    )
    jose_c = shutil.which("jose")
    if jose_c:
        run(
            [
                jose_c,
                "jws",
                "sig",
                "-I",
                str(work / "payload.json"),
                "-k",
                str(work / "key.jwk"),
                "-s",
                json.dumps({"protected": {"typ": "jwt", "alg": "RS256", "kid": fx.kid}}),
                "-c",
                "-o",
                str(work / "jose-token.txt"),
            ],
            env,
        )
    else:
        fx.notes.append("jose (C) not installed (Debian package `jose`): its rows are skipped")
    if want_node:
        fx.node_dir = install_node_jose(work)
        if fx.node_dir is None:
            fx.notes.append("node jose skipped: node/npm absent or `npm install jose` failed")
    JwksHandler.body = (work / "jwks.json").read_bytes()
    server = ThreadingHTTPServer(("127.0.0.1", 0), JwksHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    fx.jwks_url = f"http://127.0.0.1:{server.server_address[1]}/oidc/jwks"
    return fx


def install_node_jose(work: Path) -> Path | None:
    """``npm install jose`` into a folder of the temporary tree; None when node or npm is missing."""
    if not (shutil.which("node") and shutil.which("npm")):
        return None
    d = work / "node"
    d.mkdir()
    try:
        p = subprocess.run(
            ["npm", "install", "--silent", "--no-audit", "--no-fund", "jose"],
            cwd=d,
            capture_output=True,
            timeout=300,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None
    return d if p.returncode == 0 and (d / "node_modules" / "jose").is_dir() else None


@dataclass
class Case:
    name: str
    argv: list[str]
    env: dict
    setup: Callable[[], None] | None = None
    cwd: Path | None = None
    times: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


def cases(fx: Fixture) -> list[Case]:
    e, w, t = fx.env, fx.work, fx.token
    cache = w / "cache"

    def fresh_cache() -> None:
        shutil.rmtree(cache, ignore_errors=True)

    out = [
        Case("`python -c pass`", [PY, "-c", "pass"], e),
        Case('`python -c "import typer"` (same venv)', [PY, "-c", "import typer"], e),
        Case("`prisme-keys --help`", [EXE, "--help"], e),
        Case("`prisme-keys decode TOKEN`", [EXE, "decode", t], e),
        Case("`prisme-keys list`", [EXE, "list"], e),
        Case("`prisme-keys rotate` (nothing due)", [EXE, "rotate"], e),
        Case("`prisme-keys prune` (nothing due)", [EXE, "prune"], e),
        Case("`prisme-keys verify TOKEN` (key file)", [EXE, "verify", t], e),
        Case("`prisme-keys verify TOKEN --jwks-file`", [EXE, "verify", t, "--jwks-file", str(w / "jwks.json")], e),
        Case(
            "`prisme-keys verify TOKEN --jwks-url` (fresh cache)",
            [EXE, "verify", t, "--jwks-url", fx.jwks_url],
            e,
            fresh_cache,
        ),
        Case("`prisme-keys verify TOKEN --jwks-url` (warm cache)", [EXE, "verify", t, "--jwks-url", fx.jwks_url], e),
        Case("`prisme-keys mint` (one token)", [EXE, "mint"], e),
        Case("`prisme-keys mint` (one token, 4096-bit key)", [EXE, "--key-file", str(w / "keys4096.json"), "mint"], e),
        Case("PyJWT one-shot sign (`python -c`, PEM)", [PY, "-c", PYJWT_SIGN, str(w / "key.pem"), fx.kid, ISS, AUD], e),
    ]
    if fx.node_dir is not None:
        out.append(
            Case(
                "node jose one-shot sign (`node -e`)",
                [shutil.which("node") or "node", "--input-type=module", "-e", NODE_SIGN, str(w / "key.jwk"), ISS, AUD],
                e,
                cwd=fx.node_dir,
            )
        )
    jose_c = shutil.which("jose")
    if jose_c:
        out.append(
            Case(
                "jose (C) `jose jws sig`",
                [jose_c, "jws", "sig", "-I", str(w / "payload.json"), "-k", str(w / "key.jwk"), "-c", "-o", "-"],
                e,
            )
        )
        out.append(
            Case(
                "jose (C) `jose jws ver`",
                [jose_c, "jws", "ver", "-i", str(w / "jose-token.txt"), "-k", str(w / "pub.jwk")],
                e,
            )
        )
    return out


def part_one(fx: Fixture, runs: int) -> dict[str, float]:
    cs = cases(fx)
    for c in cs:  # one untimed warm-up each: byte-code, page cache, JWKS cache
        run(c.argv, c.env, cwd=c.cwd)
    for _ in range(runs):
        for c in cs:
            if c.setup:
                c.setup()
            r = run(c.argv, c.env, cwd=c.cwd)
            c.times.append(r.ms)
            c.cpu.append(r.cpu_ms)
    print(f"| command (median of {runs}, RSA-2048 unless said) | median ms | min ms | CPU ms (user+sys) |")
    print("|---|---:|---:|---:|")
    med = {}
    for c in cs:
        med[c.name] = statistics.median(c.times)
        print(f"| {c.name} | {med[c.name]:.0f} | {min(c.times):.0f} | {statistics.median(c.cpu):.0f} |")
    for n in fx.notes:
        print(f"\nnote: {n}")
    return med


def key_load(fx: Fixture) -> None:
    """In-process: key file -> signer (the trusted load ``mint`` does), first signature, and
    OpenSSL's full key check (what ``doctor``, ``import`` and ``decrypt`` run) of the same key."""
    print("\nKey load for signing, in-process, median of 9 (imports excluded):\n")
    print("| key | key file -> signer ms | first signature ms | full RSA key check ms (doctor, import) |")
    print("|---|---:|---:|---:|")
    for bits, name in ((2048, "keys.json"), (4096, "keys4096.json")):
        p = subprocess.run(
            [PY, "-c", KEY_LOAD, str(fx.work / name)], env=fx.env, capture_output=True, text=True, check=False
        )
        if p.returncode != 0:
            raise SystemExit(f"key load measurement failed: {p.stderr[-500:]}")
        load, sign, full = p.stdout.split()
        print(f"| RSA-{bits} | {load} | {sign} | {full} |")


def goals(med: dict[str, float]) -> None:
    def m(prefix: str) -> float | None:
        return next((v for k, v in med.items() if k.startswith(prefix)), None)

    node, hlp, typer_ = m("node jose"), m("`prisme-keys --help`"), m('`python -c "import typer"')
    print("\nGoals (issue 13), from the medians above:")
    checks: list[tuple[str, float | None, float | None, float]] = []
    for name in (
        "`prisme-keys mint` (one token)",
        "`prisme-keys verify TOKEN` (key file)",
        "`prisme-keys verify TOKEN --jwks-file`",
        "`prisme-keys verify TOKEN --jwks-url` (fresh cache)",
    ):
        checks.append((f"{name} <= node jose one-shot", med.get(name), node, 1.0))
    for name in (
        "`prisme-keys decode TOKEN`",
        "`prisme-keys list`",
        "`prisme-keys rotate` (nothing due)",
        "`prisme-keys prune` (nothing due)",
    ):
        checks.append((f"{name} <= 1.3 x --help", med.get(name), hlp, 1.3))
    checks.append(("`prisme-keys --help` <= 1.3 x import typer", hlp, typer_, 1.3))
    for label, v, ref, k in checks:
        if v is None or ref is None:
            print(f"- {label}: skipped (reference not measured)")
            continue
        print(f"- {label}: {v:.0f} vs {ref * k:.0f} ms ({v / ref:.2f}x) {'met' if v <= ref * k else 'MISSED'}")


def part_two(fx: Fixture, n: int, repeat: int) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    w, e = fx.work, fx.env
    priv = private_key(json.loads((w / "key.jwk").read_text()))
    pub = priv.public_key()
    pad, sha = padding.PKCS1v15(), hashes.SHA256()
    toks, out, one = w / "tokens.txt", w / "verified.jsonl", w / "one-token.txt"
    best: dict[str, float] = {}
    rss: dict[str, int] = {}
    one_thread = ["--workers", "1"]

    def keep(key: str, r: Result) -> None:
        best[key] = min(best.get(key, 1e12), r.ms)
        rss[key] = r.maxrss_kib

    def batch(key: str, extra: list[str]) -> None:
        keep(key, run([EXE, "verify", "--batch", *extra], e, stdin=toks, stdout=out))
        assert sum(1 for line in out.open() if json.loads(line)["valid"]) == n

    for _ in range(repeat):  # interleaved; each figure keeps its quietest run
        keep("mint-w1", run([EXE, "mint", "--count", str(n), *one_thread], e, stdout=toks))
        keep("mint", run([EXE, "mint", "--count", str(n)], e, stdout=toks))
        keep("mint1", run([EXE, "mint", "--count", "1"], e, stdout=one))
        lines = toks.read_text().split()
        assert len(lines) == n, len(lines)
        si = lines[0].rsplit(".", 1)[0].encode()
        t0 = time.perf_counter()
        for _ in range(n):
            priv.sign(si, pad, sha)
        best["sign"] = min(best.get("sign", 1e12), (time.perf_counter() - t0) * 1000)
        pairs = [(s.encode(), b64d(sig)) for s, sig in (t.rsplit(".", 1) for t in lines)]
        t0 = time.perf_counter()
        for s, sig in pairs:
            pub.verify(sig, s, pad, sha)
        best["verify"] = min(best.get("verify", 1e12), (time.perf_counter() - t0) * 1000)
        batch("batch", [])
        batch("batch-w1", one_thread)
        keep("batch1", run([EXE, "verify", "--batch"], e, stdin=one))
    throughput_table(best, n, repeat)
    big = 4 * n
    rss["mint4"] = run([EXE, "mint", "--count", str(big)], e, stdout=toks).maxrss_kib
    rss["mint-w14"] = run([EXE, "mint", "--count", str(big), *one_thread], e, stdout=toks).maxrss_kib
    rss["batch4"] = run([EXE, "verify", "--batch"], e, stdin=toks, stdout=out).maxrss_kib
    rss["batch-w14"] = run([EXE, "verify", "--batch", *one_thread], e, stdin=toks, stdout=out).maxrss_kib
    rss["mint-w11"], rss["batch-w11"] = rss["mint1"], rss["batch1"]  # one token: no pool either way
    print(f"\nPeak RSS of the process (MiB), N = {n} and N = {big}:\n")
    print(f"| command | N = 1 | N = {n} | N = {big} | ratio {big} / {n} |")
    print("|---|---:|---:|---:|---:|")
    for label, k in (
        ("`mint --count N`", "mint"),
        ("`mint --count N --workers 1`", "mint-w1"),
        ("`verify --batch`", "batch"),
        ("`verify --batch --workers 1`", "batch-w1"),
    ):
        print(
            f"| {label} | {rss[k + '1'] / 1024:.1f} | {rss[k] / 1024:.1f} | {rss[k + '4'] / 1024:.1f} | "
            f"{rss[k + '4'] / rss[k]:.2f} |"
        )


def throughput_table(best: dict[str, float], n: int, repeat: int) -> None:
    """The throughput rows of part 2: each raw loop, then our command with its default workers and with one."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    print(
        f"\nThroughput, N = {n}, RSA-2048, best of {repeat}. End to end: the whole process, start-up "
        "included; steady state: (N - 1) / (time for N - time for 1 token). Default workers: "
        f"{min(4, cpus)} ({cpus} CPUs this process may run on, at most 4).\n"
    )
    print("| | ms | tokens/s | end-to-end ratio | steady-state ratio | goal |")
    print("|---|---:|---:|---:|---:|---|")
    for label, ours, raw, goal in (
        (f"`mint --count {n}`", "mint", "sign", 0.9),
        (f"`mint --count {n} --workers 1`", "mint-w1", "sign", 0.9),
        (f"`verify --batch` ({n} tokens)", "batch", "verify", 0.7),
        (f"`verify --batch --workers 1` ({n} tokens)", "batch-w1", "verify", 0.7),
    ):
        e2e = best[raw] / best[ours]
        one = best[ours.split("-")[0] + "1"]  # one token: the same with any number of workers
        steady = best[raw] * (n - 1) / n / max(best[ours] - one, 1e-9)
        if not ours.endswith("-w1"):
            print(f"| raw `cryptography` {raw} loop, same key | {best[raw]:.0f} | {n / best[raw] * 1000:.0f} | | | |")
        print(
            f"| {label} | {best[ours]:.0f} | {n / best[ours] * 1000:.0f} | {e2e:.2f} | {steady:.2f} | "
            f">= {goal}: end to end {'met' if e2e >= goal else 'MISSED'}, "
            f"steady {'met' if steady >= goal else 'MISSED'} |"
        )


def profile(fx: Fixture) -> None:
    """Import time by top-level package and the cProfile top of decode, list, verify and mint."""
    import importlib.metadata as md

    entry = next(ep.value for ep in md.entry_points(group="console_scripts") if ep.name == "prisme-keys")
    e, t = fx.env, fx.token
    for name, args in (("decode", ["decode", t]), ("list", ["list"]), ("verify", ["verify", t]), ("mint", ["mint"])):
        p = subprocess.run([PY, "-X", "importtime", EXE, *args], env=e, capture_output=True, text=True, check=False)
        per: dict[str, int] = {}
        for line in p.stderr.splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            self_us, _, mod = (x.strip() for x in line[len("import time:") :].split("|"))
            per[mod.split(".")[0]] = per.get(mod.split(".")[0], 0) + int(self_us)
        tops = sorted(per.items(), key=lambda kv: -kv[1])[:10]
        print(
            f"\n### {name}: imports {sum(per.values()) / 1000:.0f} ms (self time by top-level package: "
            + ", ".join(f"{k} {v / 1000:.1f}" for k, v in tops)
            + ")\n"
        )
        p = subprocess.run([PY, "-c", PROFILE_RUN, entry, *args], env=e, capture_output=True, text=True, check=False)
        body = p.stderr.split("ncalls", 1)
        print("   ncalls" + body[1].rstrip() if len(body) == 2 else p.stderr[-2000:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7, help="interleaved rounds of part 1 (default 7)")
    ap.add_argument("--n", type=int, default=10000, help="tokens for the throughput part (default 10000)")
    ap.add_argument("--repeat", type=int, default=3, help="throughput runs, the best kept (default 3)")
    ap.add_argument("--skip-table", action="store_true", help="no one-command table (part 1)")
    ap.add_argument("--skip-throughput", action="store_true", help="no throughput and memory (part 2)")
    ap.add_argument("--no-node", action="store_true", help="skip node jose (no npm install)")
    ap.add_argument("--profile", action="store_true", help="also profile decode, list, verify and mint")
    a = ap.parse_args()
    if not Path(EXE).exists():
        raise SystemExit(f"{EXE} not found: run this with the product venv's python")
    node = (
        subprocess.run(["node", "--version"], capture_output=True, text=True, check=False).stdout.strip()
        if shutil.which("node")
        else "absent"
    )
    print(
        f"python {sys.version.split()[0]}, node {node}, {os.cpu_count()} cpus, "
        f"load average {os.getloadavg()[0]:.2f}, {time.strftime('%Y-%m-%d')}\n"
    )
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as d:
        fx = prepare(Path(d), want_node=not a.no_node)
        if not a.skip_table:
            goals(part_one(fx, a.runs))
            key_load(fx)
        if not a.skip_throughput:
            part_two(fx, a.n, a.repeat)
        if a.profile:
            profile(fx)


if __name__ == "__main__":
    main()
