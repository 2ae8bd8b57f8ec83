"""keys.py: RFC 7638 thumbprints, JWK serialization, public projection, validation."""

import pytest

from prisme_keys import jwk as jwk_rules
from prisme_keys.errors import KeyFileError

# RFC 7638 section 3.1 example key and its thumbprint.
RFC7638_JWK = {
    "kty": "RSA",
    "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3o"
    "knjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6"
    "qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJz"
    "KnqDKgw",
    "e": "AQAB",
    "alg": "RS256",
    "kid": "2011-04-29",
}


def test_rfc7638_example_thumbprint():
    assert jwk_rules.thumbprint(RFC7638_JWK) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_thumbprint_ignores_padding_and_extra_members():
    padded = dict(RFC7638_JWK, n=RFC7638_JWK["n"] + "=", e="AQAB", use="sig", kid="other")
    assert jwk_rules.thumbprint(padded) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_thumbprint_rejects_non_rsa():
    with pytest.raises(ValueError):
        jwk_rules.thumbprint({"kty": "EC", "crv": "P-256", "x": "a", "y": "b"})


def test_generated_jwk_shape(keypool):
    jwk = keypool[0]
    assert list(jwk) == ["kty", "kid", "use", "alg", "n", "e", "d", "p", "q", "dp", "dq", "qi"]
    assert (jwk["kty"], jwk["use"], jwk["alg"], jwk["e"]) == ("RSA", "sig", "RS256", "AQAB")
    assert jwk["kid"] == jwk_rules.thumbprint(jwk)
    n = jwk_rules.b64url_decode(jwk["n"])
    assert len(n) == 256 and n[0] != 0
    assert jwk_rules.key_bits(jwk) == 2048
    for m in ("n", "e", "d", "p", "q", "dp", "dq", "qi"):
        assert "=" not in jwk[m] and "+" not in jwk[m] and "/" not in jwk[m]


def test_4096_bit_key_modulus_is_512_bytes(big_key):
    assert len(jwk_rules.b64url_decode(big_key["n"])) == 512
    assert jwk_rules.key_bits(big_key) == 4096


def test_public_projection_keeps_only_public_members(keypool):
    pub = jwk_rules.public_jwk(keypool[1])
    assert list(pub) == ["kty", "kid", "use", "alg", "n", "e"]
    assert not set(pub) & set(jwk_rules.PRIVATE_MEMBERS)


def test_private_key_roundtrip_and_consistency(keypool):
    jwk = keypool[2]
    key = jwk_rules.private_key_from_jwk(jwk)
    assert jwk_rules.private_key_to_jwk(key, "RS256") == jwk
    bad = dict(jwk, d=keypool[3]["d"])
    with pytest.raises(ValueError, match="does not match"):
        jwk_rules.private_key_from_jwk(bad)
    with pytest.raises(ValueError, match="'n'"):
        jwk_rules.private_key_from_jwk({k: v for k, v in jwk.items() if k != "n"})


def test_check_signing_jwk_rejects_small_and_compromised_keys():
    from cryptography.hazmat.primitives.asymmetric import rsa

    small = jwk_rules.private_key_to_jwk(rsa.generate_private_key(65537, 1024), "RS256")
    with pytest.raises(KeyFileError, match="has 1024 bits; at least 2048 are required"):
        jwk_rules.check_signing_jwk(small)
    # The thumbprint is recomputed from the listed public key and matches the one the list states.
    assert list(jwk_rules.compromised_thumbprints()) == ["jkbrph9-RTpMIlNxkzbbH-EwsT6iGulAhU-sxD3TjVo"]


def _with(jwk, **ints):
    """``jwk`` with members replaced by integers, CRT values recomputed from d, p, q unless given."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    v = {m: jwk_rules.b64_to_int(jwk[m]) for m in ("n", "e", "d", "p", "q")}
    v.update(ints)
    crt = {
        "dp": rsa.rsa_crt_dmp1(v["d"], v["p"]),
        "dq": rsa.rsa_crt_dmq1(v["d"], v["q"]),
        "qi": rsa.rsa_crt_iqmp(v["p"], v["q"]),
    }
    crt.update({k: ints[k] for k in ("dp", "dq", "qi") if k in ints})
    return dict(jwk, **{m: jwk_rules.int_to_b64(x) for m, x in {**v, **crt}.items()})


def test_trusted_key_signs_like_a_fully_checked_key(keypool):
    """trusted=True (keys from the key file) skips only OpenSSL's primality tests: same key, same signatures."""
    jwk = keypool[1]
    trusted = jwk_rules.private_key_from_jwk(jwk, trusted=True)
    checked = jwk_rules.private_key_from_jwk(jwk)
    assert trusted.private_numbers() == checked.private_numbers()
    msg = b"header.payload"
    for alg in jwk_rules.SUPPORTED_ALGS:
        sig = jwk_rules.rsa_signer(trusted, alg)(msg)
        assert sig == jwk_rules.rsa_signer(checked, alg)(msg)  # PKCS#1 v1.5 is deterministic
        for many in (False, True):
            verify = jwk_rules.rsa_verifier(jwk_rules.public_key_from_jwk(jwk), alg, many=many)
            assert verify(msg, sig) is True
            assert verify(msg + b"x", sig) is False
            assert verify(msg, sig[:-1]) is False  # a wrong length is False, not an exception
    with pytest.raises(ValueError, match="alg 'PS256' is not RS256, RS384 or RS512"):
        jwk_rules.rsa_signer(trusted, "PS256")


def _raw_sign(jwk: dict, em: bytes) -> bytes:
    """The RSA private operation on an encoded message of our choosing (RFC 8017 section 5.2.1)."""
    n, d = jwk_rules.b64_to_int(jwk["n"]), jwk_rules.b64_to_int(jwk["d"])
    return pow(int.from_bytes(em, "big"), d, n).to_bytes(len(em), "big")


SHA256_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


#: Encoded messages to sign with the raw RSA operation: (DigestInfo prefix, padding byte, block type).
CRAFTED = {
    "valid": (SHA256_INFO, 0xFF, 1),
    "DigestInfo without the NULL parameters": (bytes.fromhex("302f300b06096086480165030402010420"), 0xFF, 1),
    "another hash's DigestInfo": (bytes.fromhex("3041300d060960864801650304020205000430"), 0xFF, 1),
    "a byte after the digest": (SHA256_INFO, 0xFF, 1),
    "padding not all FF": (SHA256_INFO, 0xFE, 1),
    "block type 2 (encryption)": (SHA256_INFO, 0xFF, 2),
}


@pytest.mark.parametrize("many", [False, True])
@pytest.mark.parametrize("case", list(CRAFTED))
def test_verifier_accepts_exactly_what_cryptography_verify_accepts(keypool, case, many):
    """rsa_verifier recovers the DigestInfo and compares it; crafted encodings get cryptography's own verdict."""
    import hashlib

    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    t, ps_byte, block_type = CRAFTED[case]
    jwk, msg = keypool[2], b"header.payload"
    digest = hashlib.sha256(msg).digest() + (b"\x00" if case == "a byte after the digest" else b"")
    if case == "another hash's DigestInfo":
        digest = hashlib.sha384(msg).digest()
    body = t + digest
    em = bytes([0, block_type]) + bytes([ps_byte]) * (256 - 3 - len(body)) + b"\x00" + body
    sig = _raw_sign(jwk, em)
    public = jwk_rules.public_key_from_jwk(jwk)
    try:
        public.verify(sig, msg, padding.PKCS1v15(), hashes.SHA256())
        theirs = True
    except InvalidSignature:
        theirs = False
    assert jwk_rules.rsa_verifier(public, "RS256", many=many)(msg, sig) is theirs is (case == "valid")


@pytest.mark.parametrize("many", [False, True])
def test_verifier_refuses_a_signature_shorter_than_the_modulus(keypool, many):
    """A signature whose first byte is 0 stays k bytes long (RFC 8017 8.2.2 step 1): dropping that byte
    gives another token for the same signature value, which verify() must not accept."""
    jwk = keypool[3]
    sign = jwk_rules.rsa_signer(jwk_rules.private_key_from_jwk(jwk, trusted=True), "RS256")
    msg, sig = next((m, s) for m in (b"m%d" % i for i in range(100000)) if (s := sign(m))[0] == 0)
    verify = jwk_rules.rsa_verifier(jwk_rules.public_key_from_jwk(jwk), "RS256", many=many)
    assert verify(msg, sig) is True
    assert verify(msg, sig[1:]) is False
    assert verify(msg, b"\x00" + sig) is False
    n = jwk_rules.b64_to_int(jwk["n"])
    assert verify(msg, n.to_bytes(256, "big")) is False  # not below the modulus
    assert verify(msg, bytes(256)) is False


@pytest.mark.parametrize("trusted", [True, False])
def test_arithmetic_checks_run_even_for_trusted_keys(keypool, trusted):
    jwk = keypool[1]
    d = jwk_rules.b64_to_int(jwk["d"])
    p = jwk_rules.b64_to_int(jwk["p"])
    cases = [
        (_with(jwk, p=p + 2), "private members do not match n (p*q != n)"),
        (_with(jwk, dp=5), "member 'dp' does not match d, p and q"),
        (_with(jwk, qi=7), "member 'qi' does not match d, p and q"),
        # CRT values consistent with a wrong d: only e*d == 1 mod lcm(p-1, q-1) catches it
        (_with(jwk, d=d + 2), "private exponent d does not match n and e (inconsistent private key)"),
    ]
    for bad, message in cases:
        with pytest.raises(ValueError) as exc:
            jwk_rules.private_key_from_jwk(bad, trusted=trusted)
        assert str(exc.value) == message
