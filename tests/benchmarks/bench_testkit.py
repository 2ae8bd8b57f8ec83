"""Benchmark: in-process minting of the pytest plugin next to the raw ``cryptography`` sign loop.

Usage: python tests/benchmarks/bench_testkit.py [--tokens N] [--rounds R] [--bits BITS]

Builds the plugin's key set (:mod:`prisme_keys.testing.kit`, as the ``prisme_keyset`` fixture
does) in a temporary directory, then runs R rounds; each round times N tokens of each loop
back to back (so a busy machine slows the loops of one round alike):

* raw: ``private_key.sign(signing_input, PKCS1v15(), SHA256())`` with the same key and a
  signing input of the same length (no JSON, no base64, no claims);
* prisme_token: ``prisme_token()`` as a test calls it (claims shaped, JSON, base64url, signed);
* api.mint: :func:`prisme_keys.api.mint`, which re-reads the key file for every token (context).

Prints tokens per second of each loop's best round side by side, its speed relative to raw's
best round (timeit's convention: the least disturbed run), and the median over rounds of its
speed relative to raw in the same round (disturbed rounds included: on a busy machine the
Python-heavy loops lose more than OpenSSL's). The goal for prisme_token(): >= 0.9 of raw.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from prisme_keys import api
from prisme_keys import jwk as jwk_rules
from prisme_keys.testing import kit


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=25)
    ap.add_argument("--bits", type=int, default=2048)
    a = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        settings = kit.settings_for(Path(tmp) / "keys.json", lambda name: "", {"JWKS_SIZE": str(a.bits)})
        keyset = kit.make_keyset(settings)
        prisme_token = keyset.tokens()
        jwk = api.export(settings, fmt="records", private=True)[0]["jwk"]
        key = jwk_rules.private_key_from_jwk(jwk)
        signing_input = prisme_token().rsplit(".", 1)[0].encode("ascii")
        pad, sha = padding.PKCS1v15(), hashes.SHA256()
        n = a.tokens

        def raw() -> None:
            for _ in range(n):
                key.sign(signing_input, pad, sha)

        def plugin() -> None:
            for _ in range(n):
                prisme_token()

        def api_mint() -> None:
            for _ in range(n):
                api.mint(settings, iss=prisme_token.issuer, aud=[prisme_token.audience])

        loops: dict[str, Callable[[], None]] = {"raw cryptography": raw, "prisme_token()": plugin, "api.mint": api_mint}
        times: dict[str, list[float]] = {name: [] for name in loops}
        for _ in range(a.rounds):
            for name, loop in loops.items():
                t = time.perf_counter()
                loop()
                times[name].append(time.perf_counter() - t)

    raw_times = times["raw cryptography"]
    print(f"RSA-{a.bits} RS256, {a.rounds} rounds of {n} tokens per loop")
    print(f"{'loop':<18} {'tokens/s':>10} {'us/token':>9} {'vs raw (best)':>14} {'(median)':>9}")
    for name, ts in times.items():
        rate = n / min(ts)
        best = min(raw_times) / min(ts)
        median = statistics.median(r / t for r, t in zip(raw_times, ts, strict=True))
        print(f"{name:<18} {rate:>10.0f} {1e6 / rate:>9.1f} {best:>14.2f} {median:>9.2f}")


if __name__ == "__main__":
    main()
