"""Benchmark: the verification of a batch in-process, one thread vs threads vs forked children.

Not collected by pytest. Run with the product's venv:

    .venv/bin/python tests/benchmarks/bench_batch_workers.py [--n 10000] [--workers 2] [--repeat 7]

It signs N RS256 tokens with a fresh 2048-bit key, then times
``prisme_keys.tokens.batch.verify_stream`` over them (no process start-up: the part ``--workers``
changes) next to the raw ``cryptography`` verify loop, best of ``--repeat`` interleaved runs:
one thread (``workers=1``), threads (``workers=W``: the RSA checks shared, decoding and claims on
the calling thread) and forked children (``workers=W, processes=True``, what ``verify --batch``
does on Linux). Every run must find the N tokens valid.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time

from prisme_keys import jwk as jwk_rules
from prisme_keys.tokens import batch
from prisme_keys.tokens.keyring import StaticKeySource
from prisme_keys.tokens.verify import VerifyOptions

ISS, AUD = "https://api.example.test", "https://api.example.test/v2"


def tokens(n: int) -> tuple[dict, bytes, list[tuple[bytes, bytes]]]:
    """A public JWKS, ``n`` tokens one a line, and the (signing input, signature) pairs of the raw loop."""
    jwk = jwk_rules.generate_jwk(2048)
    sign = jwk_rules.rsa_signer(jwk_rules.private_key_from_jwk(jwk, trusted=True), "RS256")
    enc = jwk_rules.b64url_encode
    header = enc(json.dumps({"typ": "jwt", "alg": "RS256", "kid": jwk["kid"]}).encode())
    now = int(time.time())
    lines, pairs = [], []
    for i in range(n):
        claims = {"exp": now + 3600, "iat": now, "sub": f"user-{i:06d}", "iss": ISS, "aud": AUD, "n": i}
        signing_input = f"{header}.{enc(json.dumps(claims).encode())}".encode()
        sig = sign(signing_input)
        lines.append(signing_input + b"." + enc(sig).encode())
        pairs.append((signing_input, sig))
    return {"keys": [jwk_rules.public_jwk(jwk)]}, b"\n".join(lines) + b"\n", pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10000, help="tokens (default 10000)")
    ap.add_argument("--workers", type=int, default=2, help="workers of the threads and forked rows (default 2)")
    ap.add_argument("--repeat", type=int, default=7, help="runs, the best kept (default 7)")
    a = ap.parse_args()
    doc, data, pairs = tokens(a.n)
    opts = VerifyOptions(issuer=ISS, audience=AUD)
    pub = jwk_rules.public_key_from_jwk(doc["keys"][0])
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    pad, sha = padding.PKCS1v15(), hashes.SHA256()
    rows = {
        "raw `cryptography` verify loop (one thread)": None,
        "`verify_stream`, one thread": (1, False),
        f"`verify_stream`, {a.workers} threads": (a.workers, False),
        f"`verify_stream`, this process + {a.workers - 1} forked": (a.workers, True),
    }
    best = dict.fromkeys(rows, float("inf"))
    for _ in range(a.repeat):
        for label, how in rows.items():
            t0 = time.perf_counter()
            if how is None:
                for signing_input, sig in pairs:
                    pub.verify(sig, signing_input, pad, sha)
            else:
                out = io.StringIO()
                source = StaticKeySource(doc, "bench set")
                batch.verify_stream(io.BytesIO(data), source, opts, out.write, workers=how[0], processes=how[1])
                assert out.getvalue().count('"valid": true') == a.n
            best[label] = min(best[label], time.perf_counter() - t0)
    raw = best["raw `cryptography` verify loop (one thread)"]
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.2f}; "
        f"N = {a.n}, RSA-2048, best of {a.repeat}, in-process (no start-up)\n"
    )
    print("| | ms | tokens/s | ratio to the raw loop |")
    print("|---|---:|---:|---:|")
    for label, seconds in best.items():
        print(f"| {label} | {seconds * 1000:.0f} | {a.n / seconds:.0f} | {raw / seconds:.2f} |")


if __name__ == "__main__":
    main()
