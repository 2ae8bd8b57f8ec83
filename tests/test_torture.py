"""Crash safety and races on one key file, with forked processes (fast: no interpreter start-up).

* Crash: 200 runs of ``rotate`` killed with SIGKILL at a random moment; after each, the file
  parses and is exactly the old set or exactly the new set.
* Races: 50 processes mixing ``rotate --force``, ``prune`` and ``export`` for a few seconds;
  no record lost, none duplicated, every process ends 0 or with the lock-timeout exit 4.
"""

import json
import os
import random
import signal
import time
from collections import Counter

import pytest
from helpers import empty_config, write_keyfile

from prisme_keys import clock, settings
from prisme_keys import jwk as jwk_rules
from prisme_keys.errors import PrismeKeysError
from prisme_keys.store import keyfile, lifecycle, rotation

pytestmark = pytest.mark.slow  # crash, race and fuzz runs: CI runs them too

NOW = clock.parse_iso("2026-01-15T00:00:00.000Z")


def big_set(keypool, n):
    """``n`` records (kids distinct, key material reused) created a day apart before T0 + 14 d."""
    recs = []
    for i in range(n):
        created = NOW - clock.days(1) - clock.seconds(3600 * i)
        jwk = dict(keypool[i % len(keypool)], kid=f"k{i:04d}")
        recs.append(
            {
                "kid": jwk["kid"],
                "previousKeyId": f"k{i + 1:04d}" if i + 1 < n else None,
                "createdAt": clock.iso(created),
                "rotatesAt": clock.iso(created + clock.days(30)),
                "expiresAt": clock.iso(created + clock.days(60)),
                "jwk": jwk,
            }
        )
    return recs


def load_settings(kf, tmp_path, **env):
    return settings.load({"key_file": kf, "config_path": empty_config(tmp_path)}, environ=env)


def test_sigkill_during_rotate_leaves_old_or_new(tmp_path, keypool, big_key):
    kf = tmp_path / "keys.json"
    old_records = big_set(keypool, 150)  # ~0.5 MB: parsing and writing take measurable time
    write_keyfile(kf, old_records)
    old_bytes = kf.read_bytes()
    s = load_settings(kf, tmp_path)
    policy = rotation.Policy.from_settings(s)
    expected_new = rotation.apply_rotation(old_records, big_key, policy, NOW).records
    jwk_rules.check_signing_jwk(big_key)

    def child(wfd):
        real = keyfile.KeyFile._write_atomic

        def marked(self, text, **kw):
            os.write(wfd, b"W")
            real(self, text, **kw)
            os.write(wfd, b"D")

        keyfile.KeyFile._write_atomic = marked
        # the key was validated once in the parent; skip the slow re-validation (RSA checks) so the
        # run is dominated by the file work this test is about
        jwk_rules.check_signing_jwk = lambda jwk, **kw: None
        os.write(wfd, b"S")
        lifecycle.rotate(s, NOW, force=True, keygen=lambda b, a: dict(big_key))
        os.write(wfd, b"E")

    def one(delay, after_w=False):
        """Run a rotation; kill it ``delay`` s after the start (or, ``after_w``, after it starts writing)."""
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(r)
                child(w)
            finally:
                os._exit(0)
        os.close(w)
        t0 = time.monotonic()
        marks = b""
        if delay is not None:
            if after_w:
                while b"W" not in marks:
                    chunk = os.read(r, 64)
                    if not chunk:
                        break
                    marks += chunk
            time.sleep(delay)
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        elapsed = time.monotonic() - t0
        while True:
            chunk = os.read(r, 64)
            if not chunk:
                break
            marks += chunk
        os.close(r)
        return marks, elapsed

    # calibrate: an unkilled run's duration
    durations = []
    for _ in range(3):
        write_keyfile(kf, old_records)
        marks, el = one(None)
        assert marks == b"SWDE"
        durations.append(el)
    span = max(durations) * 1.1
    rng = random.Random(7)
    phases = Counter()
    for i in range(200):
        kf.write_bytes(old_bytes)
        os.chmod(kf, 0o600)
        # three runs in four: a kill time uniform over the whole run; one in four: uniform over
        # the first 30 ms after the write began (serialize, write, fsync, rename, folder fsync)
        if i % 4 == 3:
            marks, _ = one(rng.uniform(0, 0.03), after_w=True)
        else:
            marks, _ = one(rng.uniform(0, span))
        phase = {
            b"": "before start",
            b"S": "reading/planning",
            b"SW": "during write",
            b"SWD": "after write",
            b"SWDE": "completed",
        }[marks]
        phases[phase] += 1
        data = kf.read_bytes()
        ks = keyfile.parse(data, kf)  # never corrupt, never truncated
        if data == old_bytes:
            state = "old"
            assert phase != "after write" and phase != "completed"
        else:
            assert ks.records == expected_new, f"run {i}: a mix ({phase})"
            state = "new"
            assert phase in ("during write", "after write", "completed")
        phases[state] += 1
        assert os.stat(kf).st_mode & 0o777 == 0o600
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    kf.write_bytes(old_bytes)
    assert one(None)[0] == b"SWDE"  # the next writer removes what killed writers left
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    print(f"\ncrash test: run {span * 1000:.0f} ms; {dict(phases)}; {len(leftovers)} temp files left by kills")
    assert phases["during write"] >= 5, phases  # the dangerous window was actually hit
    assert phases["old"] and phases["new"]


def test_fifty_processes_rotate_prune_export(tmp_path, keypool):
    kf = tmp_path / "keys.json"
    live = big_set(keypool, 6)
    expired = []
    for i in range(6):  # expired non-signing keys for prune to remove
        created = NOW - clock.days(200 + i)
        jwk = dict(keypool[i], kid=f"old{i}")
        expired.append(
            {
                "kid": jwk["kid"],
                "previousKeyId": None,
                "createdAt": clock.iso(created),
                "rotatesAt": clock.iso(created + clock.days(30)),
                "expiresAt": clock.iso(created + clock.days(60)),
                "jwk": jwk,
            }
        )
    write_keyfile(kf, live + expired)
    s = load_settings(kf, tmp_path, PRISME_KEYS_LOCK_TIMEOUT="1.5")
    logdir = tmp_path / "log"
    logdir.mkdir()
    deadline = time.time() + 3.0

    def child(n):
        jwk_rules.check_signing_jwk = lambda jwk, **kw: None  # pool keys are valid; keep the CPU for the file work
        rng = random.Random(n)
        created, i, code = [], 0, 0
        try:
            while time.time() < deadline:
                op = rng.choice(("rotate", "prune", "export", "export"))
                if op == "rotate":
                    kid = f"c{n:02d}-{i}"
                    i += 1
                    jwk = dict(keypool[rng.randrange(len(keypool))], kid=kid)
                    res = lifecycle.rotate(s, NOW, force=True, keygen=lambda b, a: jwk)
                    assert res.created["kid"] == kid
                    created.append(kid)
                elif op == "prune":
                    lifecycle.prune(s, NOW)
                else:
                    doc = lifecycle.export(s)
                    assert len({k["kid"] for k in doc["keys"]}) == len(doc["keys"])
        except PrismeKeysError as exc:
            code = exc.exit_code if exc.code == "lock_timeout" else 90
        except BaseException:
            code = 91
        (logdir / f"{n}.json").write_text(json.dumps({"created": created, "code": code}))
        return code

    pids = []
    for n in range(50):
        pid = os.fork()
        if pid == 0:
            code = 92
            try:
                code = child(n)
            finally:
                os._exit(code)
        pids.append(pid)
    codes = [os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in pids]
    assert set(codes) <= {0, 4}, Counter(codes)
    logs = [json.loads((logdir / f"{n}.json").read_text()) for n in range(50)]
    created = [k for log in logs for k in log["created"]]
    final = [r["kid"] for r in keyfile.parse(kf.read_bytes()).records]
    assert len(final) == len(set(final)), "duplicate record"
    assert set(final) == {r["kid"] for r in live} | set(created), "record lost or unexpected record"
    print(f"\nraces: {len(created)} rotations, exits {dict(Counter(codes))}, {len(final)} records at the end")
    assert len(created) >= 30
