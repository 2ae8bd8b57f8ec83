"""Property-based tests (hypothesis): key-file loading, decode and verify on arbitrary bytes and
structured near-misses. Never a traceback, always a documented exit code, never a valid result
for an invalid token."""

import base64
import json
import time

import pytest
from helpers import no_traceback, record
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from prisme_keys import clock
from prisme_keys import jwk as jwk_rules
from prisme_keys.errors import KeyFileError, PrismeKeysError
from prisme_keys.store import keyfile, lifecycle, rotation
from prisme_keys.tokens import jws, keyring
from prisme_keys.tokens import verify as verifier

pytestmark = pytest.mark.slow  # crash, race and fuzz runs: CI runs them too

NOW = clock.parse_iso("2026-01-10T00:00:00.000Z")
FAST = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
DOCUMENTED = {2, 3, 4, 5, 6, 7, 8, 9, 10, 11}

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))
json_values = st.recursive(
    json_scalars,
    lambda c: st.one_of(st.lists(c, max_size=4), st.dictionaries(st.text(max_size=8), c, max_size=4)),
    max_leaves=12,
)


def load_all(data: bytes) -> None:
    """Parse, then drive every read path a command takes on the parsed set."""
    ks = keyfile.parse(data, "fuzz.json")
    recs = ks.records
    lifecycle.describe(recs, NOW)
    lifecycle.public_jwks(recs)
    rotation.plan_rotation(recs, rotation.Policy(), NOW)
    rotation.plan_prune(recs, NOW)
    rotation.next_prune(recs, NOW)


# -------------------------------------------------------------------------------- key file
@FAST
@given(st.binary(max_size=2000))
def test_keyfile_arbitrary_bytes(data):
    try:
        load_all(data)
    except KeyFileError as exc:
        assert exc.exit_code == 4 and "\n" not in exc.message


@pytest.fixture(scope="module")
def good_record():
    jwk = jwk_rules.generate_jwk(2048)
    return record(jwk)


def mutate_record(rec, draw):
    rec = json.loads(json.dumps(rec))
    target = draw(
        st.sampled_from(
            [
                "kid",
                "previousKeyId",
                "createdAt",
                "rotatesAt",
                "expiresAt",
                "activatesAt",
                "jwk",
                "jwk.kty",
                "jwk.n",
                "jwk.e",
                "jwk.d",
                "jwk.enc",
                "jwk.kid",
                "drop",
            ]
        )
    )
    value = draw(
        json_values
        | st.sampled_from(
            ["", "2026-13-01T00:00:00Z", "2026-01-01", "+31d", "Zm9v", "==", "2026-01-01T00:00:00.000+25:00", "9" * 40]
        )
    )
    if target == "drop":
        rec.pop(draw(st.sampled_from(sorted(rec))), None)
    elif target.startswith("jwk."):
        if isinstance(rec.get("jwk"), dict):
            rec["jwk"][target[4:]] = value
    else:
        rec[target] = value
    return rec


@FAST
@given(st.data())
def test_keyfile_structured_near_misses(good_record, data):
    draw = data.draw
    recs = [
        mutate_record(good_record, draw) if draw(st.booleans()) else good_record for _ in range(draw(st.integers(1, 3)))
    ]
    doc = {"format": draw(st.sampled_from([1, 1, 1, 2, "1", 1.0, True, None])), "keys": recs}
    if draw(st.booleans()):
        doc["encryption"] = draw(json_values)
    if draw(st.integers(0, 5)) == 0:
        doc["keys"] = draw(json_values)
    text = json.dumps(doc)
    cut = draw(st.integers(0, len(text)))
    raw = (text if draw(st.integers(0, 3)) else text[:cut]).encode()
    try:
        load_all(raw)
    except KeyFileError as exc:
        assert exc.exit_code == 4


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.binary(max_size=300)
    | st.sampled_from(
        [b'{"format":1,"keys":[{"kid":"a"}]}', b"\xff\xfe", b'{"format":1,"keys":[],"encryption":{"version":1}}']
    )
)
def test_cli_commands_on_hostile_files(cli, tmp_path, data):
    kf = tmp_path / "hostile.json"
    kf.write_bytes(data)
    kf.chmod(0o600)
    for args in (["list"], ["export"], ["doctor"]):
        p = cli("--key-file", str(kf), *args, input="", env={"PRISME_KEYS_PASSPHRASE": "x"})
        no_traceback(p)
        assert p.returncode in (0, 4), (args, p.returncode, p.stderr)
    assert kf.read_bytes() == data


# -------------------------------------------------------------------------------- tokens
tokens = pytest.importorskip("prisme_keys.tokens")


def b64(d: bytes) -> str:
    return base64.urlsafe_b64encode(d).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def signer():
    jwk = jwk_rules.generate_jwk(2048)
    priv = jwk_rules.private_key_from_jwk(jwk)
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    def sign(header: dict, claims: dict) -> str:
        h = b64(json.dumps(header).encode())
        p = b64(json.dumps(claims).encode())
        sig = priv.sign(f"{h}.{p}".encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{h}.{p}.{b64(sig)}"

    now = int(time.time())
    good = sign({"typ": "jwt", "alg": "RS256", "kid": jwk["kid"]}, {"sub": "u", "iat": now, "exp": now + 3600})
    source = keyring.StaticKeySource({"keys": [jwk_rules.public_jwk(jwk)]}, "test keys")
    assert verifier.verify(good, source).kid == jwk["kid"]
    return sign, good, source, jwk_rules.public_jwk(jwk)  # no private member in hypothesis reports


@FAST
@given(st.text(max_size=300) | st.binary(max_size=300))
def test_decode_and_verify_arbitrary_input(signer, data):
    _, _, source, _ = signer
    for fn in (lambda: jws.decode(data), lambda: verifier.verify(data, source)):
        try:
            res = fn()
        except PrismeKeysError as exc:
            assert exc.exit_code in DOCUMENTED and "\n" not in exc.message
        else:
            assert not isinstance(res, verifier.VerifyResult), "random input verified"


@FAST
@given(st.data())
def test_verify_near_misses_never_valid(signer, data):
    sign, good, source, jwk = signer
    draw = data.draw
    h, p, s = good.split(".")
    kind = draw(st.sampled_from(["flip", "truncate", "segments", "alg", "claims", "resign_bad_header", "pad"]))
    if kind == "flip":
        i = draw(st.integers(0, len(good) - 1))
        c = draw(st.sampled_from("AQgw_-.=+/ "))
        bad = good[:i] + c + good[i + 1 :]
    elif kind == "truncate":
        bad = good[: draw(st.integers(0, len(good) - 1))]
    elif kind == "segments":
        bad = draw(
            st.sampled_from(
                [
                    f"{h}.{p}",
                    f"{h}.{p}.{s}.{s}",
                    f"{p}.{h}.{s}",
                    f"{h}.{p}.",
                    f"{h}..{s}",
                    f"{h}.{p}.{s}.",
                    f"{h}.{p}.{s}.x.y",
                ]
            )
        )
    elif kind == "alg":
        alg = draw(st.sampled_from(["none", "None", "NONE", "HS256", "RS384", "ES256", "PS256", "", None]))
        hdr = {"typ": "jwt", "alg": alg, "kid": jwk["kid"]}
        bad = f"{b64(json.dumps(hdr).encode())}.{p}.{draw(st.sampled_from([s, '']))}"
    elif kind == "claims":
        claims = json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
        claims[draw(st.sampled_from(["sub", "exp", "iat", "admin"]))] = draw(json_values)
        bad = f"{h}.{b64(json.dumps(claims).encode())}.{s}"  # not re-signed
    elif kind == "resign_bad_header":
        # validly signed, but the header is not an acceptable RS256 header
        hdr = draw(
            st.sampled_from(
                [
                    {"alg": "RS256", "kid": "unknown"},
                    {"alg": "RS256", "kid": jwk["kid"], "crit": ["x"]},
                    {"alg": "HS256", "kid": jwk["kid"]},
                ]
            )
        )
        now = int(time.time())
        bad = (
            sign(hdr, {"sub": "u", "exp": now - draw(st.integers(1, 10**6))})
            if draw(st.booleans())
            else sign(hdr, {"sub": "u", "exp": now + 60})
        )
        assume(hdr.get("kid") != jwk["kid"] or hdr.get("alg") != "RS256" or "crit" in hdr)
    else:
        bad = good + draw(st.sampled_from(["=", "==", "\x00", "A"]))
    try:
        assume(jws.clean_token(bad) != good)  # a flip to the same character, or whitespace it strips
    except PrismeKeysError:
        pass
    try:
        res = verifier.verify(bad, source)
    except PrismeKeysError as exc:
        assert exc.exit_code in DOCUMENTED
    else:
        pytest.fail(f"near-miss ({kind}) verified: kid {res.kid}")


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=200))
def test_cli_decode_verify_never_traceback(cli, tmp_path, signer, text):
    _, good, source, jwk = signer
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk_rules.public_jwk(jwk)]}))
    for args in (["decode", "-"], ["verify", "-", "--jwks-file", str(jwks)]):
        p = cli(*args, input=text)
        no_traceback(p)
        assert p.returncode in DOCUMENTED, (args, p.returncode, p.stderr)
