"""The public Python API (prisme_keys.api) as the README shows it."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from prisme_keys import api
from prisme_keys.errors import ClaimsRejected, ConfigError, KeyFileError, UsageError

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_api_example_runs_as_written(tmp_path, monkeypatch):
    section = README.read_text().split("### Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PRISME_KEYS_CONFIG", str(tmp_path / "none.toml"))
    (tmp_path / "none.toml").write_text("")
    exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "keys.json").stat().st_mode & 0o777 == 0o600


def test_api_lifecycle_and_tokens(tmp_path):
    s = api.settings_from(
        {"key_file": tmp_path / "k.json", "oidc_provider_url": "https://i.test", "api_url": "https://a.test"}
    )
    created = api.init(s)
    kid = created.record["kid"]
    assert [k["kid"] for k in api.export(s)["keys"]] == [kid]
    token = api.mint(s, sub="bob", lifetime=60)
    res = api.verify(token, s)
    assert (res.kid, res.claims["sub"], res.claims["iss"], res.claims["aud"]) == (
        kid,
        "bob",
        "https://i.test",
        "https://a.test",
    )
    expired = api.mint(s, sub="bob", expired=True)
    with pytest.raises(ClaimsRejected) as exc:
        api.verify(expired, s)
    assert (exc.value.code, int(exc.value.exit_code)) == ("expired", 7)
    assert api.decode(expired).claims["sub"] == "bob"
    with pytest.raises(KeyFileError) as exc:
        api.init(s)
    assert exc.value.code == "key_file_exists"


# Regressions from the newcomer's break test: the API's input checks raise PrismeKeysError subclasses
@pytest.fixture
def s(tmp_path):
    s = api.settings_from({"key_file": tmp_path / "k.json"})
    api.init(s)
    return s


def test_load_settings_refuses_unknown_flag_keys(tmp_path):
    # was: {"siz": 1} accepted (the same typo in the TOML file is exit 3)
    cfg = tmp_path / "c.toml"
    cfg.write_text("")
    for flags in ({"siz": 1}, {"siz": None}):
        with pytest.raises(ConfigError) as info:
            api.load_settings({"config_path": cfg, **flags}, {})
        assert info.value.exit_code == 3
        assert info.value.message.startswith("unknown setting 'siz'; known: config_path, kty, alg, size, ")
    assert api.load_settings({"config_path": cfg, "size": 3072}, {}).size == 3072


@pytest.mark.parametrize(
    "options,message",
    [
        ({"lifetime": -1}, "lifetime must be a whole number of seconds, 0 or more, not -1"),
        ({"lifetime": "x"}, "lifetime must be a whole number of seconds, 0 or more, not 'x'"),
        ({"not_before": -5}, "not_before must be a whole number of seconds, 0 or more, not -5"),
        ({"count": "2"}, "count must be a whole number, not '2'"),
        ({"kid": ""}, "kid '' is not a non-empty string"),
        (
            {"lifetim": 5},
            "unknown mint option 'lifetim'; known: sub, kid, lifetime, iss, aud, claims, session_id, "
            "not_before, expired, count",
        ),
    ],
)
def test_mint_refuses_bad_options(s, options, message):
    # was: lifetime=-1 minted an already expired token; lifetime='x' raised TypeError
    with pytest.raises(UsageError) as info:
        api.mint(s, **options)
    assert (info.value.message, info.value.exit_code) == (message, 2)
    with pytest.raises(UsageError) as info:
        api.open_minter(s).mint(**options)
    assert info.value.message == message


@pytest.mark.parametrize("token", [None, 5, ["a.b.c"]])
def test_verify_and_decode_refuse_a_token_that_is_not_text(s, token):
    # was: AttributeError / TypeError
    message = f"token must be str or bytes (a compact JWS), not {type(token).__name__}"
    for call in (lambda: api.verify(token, s), lambda: api.decode(token)):
        with pytest.raises(UsageError) as info:
            call()
        assert info.value.message == message


def test_now_must_be_an_aware_datetime(s):
    # was: a naive datetime raised TypeError deep inside the rotation rules
    with pytest.raises(UsageError) as info:
        api.rotate(s, now=datetime(2026, 1, 1))
    assert info.value.message == (
        "now 2026-01-01T00:00:00 is a naive datetime: give an aware one, e.g. datetime.now(timezone.utc)"
    )
    with pytest.raises(UsageError) as info:
        api.list_keys(s, now="2026-01-01")
    assert info.value.message == "now must be a datetime, not str"
    paris = timezone(timedelta(hours=1))
    assert api.rotate(s, now=datetime.now(paris), dry_run=True) is not None  # aware: any offset, used in UTC
