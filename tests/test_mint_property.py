"""Whatever ``mint`` produces, ``verify`` accepts (issue 11): a property over mint's options.

For any options, ``mint`` either refuses with a usage error before signing (exit 2), or signs a
token that ``verify`` accepts at a time inside the token's own validity window
(``max(iat, nbf) <= t < exp``), with the token's own issuer and audience expected. A token
whose window is empty is allowed only with mint's "never valid" / "already expired" warning (the
documented negative-test tokens).
"""

from __future__ import annotations

from datetime import timedelta

from helpers import record, write_keyfile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prisme_keys import clock
from prisme_keys import settings as settings_mod
from prisme_keys.errors import UsageError
from prisme_keys.tokens import mint as minter
from prisme_keys.tokens import verify as verifier
from prisme_keys.tokens.keyring import keyfile_source

NOW = clock.parse_iso("2026-01-10T00:00:00Z")

text = st.text(min_size=1, max_size=20)
json_scalar = st.none() | st.booleans() | st.integers(-(10**20), 10**20) | st.floats(allow_nan=True) | text
json_value = st.recursive(
    json_scalar, lambda c: st.lists(c, max_size=3) | st.dictionaries(text, c, max_size=3), max_leaves=6
)
registered = st.sampled_from(["exp", "nbf", "iat", "iss", "sub", "aud", "jti", "prismeaiSessionId"])
time_value = st.integers(-(10**13), 10**13) | st.floats(allow_nan=True) | json_value
claims = st.dictionaries(registered | text, json_value | time_value, max_size=4)
seconds = st.integers(0, 10**13) | st.integers(0, 10**7)

options = st.builds(
    minter.MintOptions,
    sub=st.none() | text,
    lifetime=st.none() | seconds,
    iss=st.none() | text,
    aud=st.none() | st.lists(text, min_size=1, max_size=3),
    claims=claims,
    session_id=st.none() | text,
    not_before=st.none() | seconds,
    expired=st.booleans(),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(opts=options)
def test_whatever_mint_signs_verify_accepts(tmp_path_factory, keypool, opts):
    folder = tmp_path_factory.mktemp("kf", numbered=True)
    kf = write_keyfile(folder / "keys.json", [record(keypool[0])])
    s = settings_mod.load(
        {"key_file": str(kf)}, {"OIDC_PROVIDER_URL": "https://issuer.test", "API_URL": "https://api.test"}
    )
    try:
        run = minter.mint(s, NOW, opts)
    except UsageError:
        return  # refused before signing: the documented outcome (exit 2)
    minted = next(run.tokens)
    c = minted.claims
    start = max(c["iat"], c.get("nbf", c["iat"]))
    if c["exp"] <= start:
        assert any("never be valid" in w or "already expired" in w for w in run.warnings), (c, run.warnings)
        return
    aud = c.get("aud")
    expect = verifier.VerifyOptions(
        algorithms=(run.alg,),
        issuer=c.get("iss"),
        audience=aud if isinstance(aud, str) else (aud[0] if aud else None),
    )
    at = clock.from_numeric_date(start)
    if at.timestamp() < start:  # a fractional NumericDate: datetimes hold microseconds, round up
        at += timedelta(microseconds=1)
    res = verifier.verify(minted.token, keyfile_source(s), expect, now=at)
    assert res.kid == keypool[0]["kid"] and res.claims == c
