"""The pytest plugin (``pytest11`` entry point) run by pytest's own ``pytester``: fixtures, settings, cost."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from prisme_keys import api
from prisme_keys.errors import ConfigError, KeyFileError, UsageError

pytest_plugins = ["pytester"]

#: Variables of a developer's shell the plugin reads; scrubbed so the defaults are tested.
_PLUGIN_ENV = ("OIDC_PROVIDER_URL", "API_URL", "JWKS_ALG", "JWKS_SIZE", "ACCESS_TOKENS_MAX_AGE")

#: A test module as an application's suite would write it: no conftest, no import of prisme_keys.
SAMPLE = '''
import json
import urllib.request

import jwt
import pytest


@pytest.fixture
def verify(prisme_jwks_server):
    """The gateway's check: key by kid from the JWKS URL, RS256 only, audience and issuer."""
    client = jwt.PyJWKClient(prisme_jwks_server.jwks_url)

    def check(token):
        key = client.get_signing_key_from_jwt(token)
        return jwt.decode(
            token,
            key.key,
            algorithms=["RS256"],
            audience=prisme_jwks_server.audience,
            issuer=prisme_jwks_server.issuer,
            options={"require": ["exp", "iat", "sub", "iss", "aud"]},
        )

    return check


def test_accepts_a_token_shaped_as_anonymous_login(verify, prisme_token, prisme_keyset, prisme_jwks_server):
    token = prisme_token(sub="alice", expires_in=600)
    claims = verify(token)
    assert jwt.get_unverified_header(token) == {"typ": "jwt", "alg": "RS256", "kid": prisme_keyset.kid}
    assert sorted(claims) == ["aud", "exp", "iat", "iss", "prismeaiSessionId", "sub"]
    assert claims["sub"] == "alice"
    assert claims["exp"] - claims["iat"] == 600
    assert claims["iss"] == prisme_jwks_server.base_url
    assert claims["aud"] == prisme_jwks_server.base_url + "/v2"


def test_defaults_and_extra_claims(verify, prisme_token):
    claims = verify(prisme_token(role="admin", workspaceId="w1"))
    assert len(claims["sub"]) == 24 and int(claims["sub"], 16) >= 0
    assert claims["exp"] - claims["iat"] == 2592000
    assert (claims["role"], claims["workspaceId"]) == ("admin", "w1")
    assert verify(prisme_token())["prismeaiSessionId"] != claims["prismeaiSessionId"]


def test_expired(verify, prisme_token):
    with pytest.raises(jwt.ExpiredSignatureError):
        verify(prisme_token.expired())


def test_not_yet_valid(verify, prisme_token):
    with pytest.raises(jwt.ImmatureSignatureError):
        verify(prisme_token.not_yet_valid())


def test_foreign_key_has_a_kid_the_set_does_not_publish(verify, prisme_token, prisme_keyset):
    token = prisme_token.foreign_key()
    assert jwt.get_unverified_header(token)["kid"] != prisme_keyset.kid
    with pytest.raises(jwt.PyJWKClientError, match="Unable to find a signing key"):
        verify(token)


def test_foreign_key_naming_the_published_kid(verify, prisme_token, prisme_keyset):
    with pytest.raises(jwt.InvalidSignatureError):
        verify(prisme_token.foreign_key(kid=prisme_keyset.kid))


def test_wrong_audience(verify, prisme_token):
    with pytest.raises(jwt.InvalidAudienceError):
        verify(prisme_token.wrong_audience())


def test_server_discovery_and_anonymous_login(verify, prisme_jwks_server, prisme_keyset):
    with urllib.request.urlopen(prisme_jwks_server.discovery_url) as r:
        assert json.load(r) == {"issuer": prisme_jwks_server.issuer, "jwks_uri": prisme_jwks_server.jwks_url}
    with urllib.request.urlopen(prisme_jwks_server.jwks_url) as r:
        assert json.load(r) == prisme_keyset.jwks
    req = urllib.request.Request(prisme_jwks_server.login_url, data=b'{"expiresAfter": 60}', method="POST")
    with urllib.request.urlopen(req) as r:
        body = json.load(r)
    claims = verify(body["token"])
    assert claims["exp"] - claims["iat"] == 60
    assert claims["prismeaiSessionId"] == body["sessionId"]
'''


@pytest.fixture(scope="module")
def signing_stack_loaded(keypool: list[dict]) -> None:
    """Sign and verify once out here: pytester's in-process runs drop the modules first imported
    inside them, and a second import of python-jose/PyJWT's hash classes would not be the ones
    cryptography's compiled bindings accept ("Expected instance of hashes.HashAlgorithm")."""
    import jwt

    from prisme_keys.testing import kit

    settings = api.settings_from({"key_file": "unused.json"})
    token = api.Minter.from_jwk(settings, keypool[0]).mint()
    public = {k: keypool[0][k] for k in ("kty", "kid", "n", "e")}
    jwt.decode(token, jwt.PyJWK(public).key, algorithms=["RS256"], options={"verify_aud": False})
    assert kit.DEFAULT_BASE_URL


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, signing_stack_loaded: None) -> pytest.Pytester:
    """A pytester directory with the plugin's variables scrubbed from the environment."""
    for name in _PLUGIN_ENV:
        monkeypatch.delenv(name, raising=False)
    return pytester


def test_sample_suite_verifies_tokens_and_rejects_each_negative_case(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_app=SAMPLE)
    result = suite.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=8)


def test_a_verifier_that_accepts_everything_fails_the_negative_cases(suite: pytest.Pytester) -> None:
    """The sample's negative tests can fail: with verification switched off, all five do."""
    lax = SAMPLE.replace("client.get_signing_key_from_jwt(token)", "client.get_signing_keys()[0]", 1)
    lax = lax.replace('options={"require"', 'options={"verify_signature": False, "require"', 1)
    assert lax.count("verify_signature") == 1 and "get_signing_keys()" in lax
    suite.makepyfile(test_app=lax)
    result = suite.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, failed=5)


@pytest.mark.slow
@pytest.mark.parametrize("uses_fixtures", [False, True])
def test_a_suite_that_does_not_use_the_fixtures_imports_nothing_heavy(
    suite: pytest.Pytester, uses_fixtures: bool
) -> None:
    """The plugin is loaded in every suite; cryptography, jose, rich and our key modules only on use."""
    report = suite.path / "modules.json"
    suite.makeconftest(
        f"""
import json, sys

def pytest_sessionfinish(session):
    with open({str(report)!r}, "w") as f:
        json.dump(sorted(sys.modules), f)
"""
    )
    body = (
        "def test_one(prisme_token):\n    assert prisme_token()\n" if uses_fixtures else "def test_one():\n    pass\n"
    )
    suite.makepyfile(test_plain=body)
    result = suite.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    modules = set(json.loads(report.read_text()))
    assert "prisme_keys.testing.plugin" in modules
    heavy = sorted(
        m
        for m in modules
        if m.split(".")[0] in ("cryptography", "jose", "rich")
        or m.startswith(("prisme_keys.api", "prisme_keys.store", "prisme_keys.tokens", "prisme_keys.publish"))
    )
    if uses_fixtures:  # minting signs straight with cryptography: python-jose is not loaded even then
        assert {"cryptography", "prisme_keys.api", "prisme_keys.tokens.mint"} <= set(heavy)
        assert not [m for m in heavy if m.split(".")[0] == "jose"]
    else:
        assert heavy == []


def test_issuer_follows_the_server_only_in_tests_that_use_it(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        test_iss="""
import jwt

def claims(token):
    return jwt.decode(token, options={"verify_signature": False})

def test_without_server(prisme_token):
    assert (prisme_token.issuer, prisme_token.audience) == ("https://prisme.test", "https://prisme.test/v2")
    c = claims(prisme_token())
    assert (c["iss"], c["aud"]) == ("https://prisme.test", "https://prisme.test/v2")

def test_with_server(prisme_jwks_server, prisme_token):
    c = claims(prisme_token())
    assert (c["iss"], c["aud"]) == (prisme_jwks_server.base_url, prisme_jwks_server.base_url + "/v2")
    wide = claims(prisme_jwks_server.tokens()())
    assert (wide["iss"], wide["aud"]) == (c["iss"], c["aud"])

def test_without_server_again(prisme_token):
    assert claims(prisme_token())["iss"] == "https://prisme.test"
"""
    )
    suite.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=3)


def test_ini_options_set_issuer_audience_alg_size_and_lifetime(suite: pytest.Pytester) -> None:
    suite.makeini(
        """
[pytest]
prisme_issuer = https://gw.example.test
prisme_audience = https://gw.example.test/v2
prisme_alg = RS384
prisme_key_size = 3072
prisme_token_lifetime = 900
"""
    )
    suite.makepyfile(
        test_ini="""
import jwt, json, urllib.request

def test_settings(prisme_jwks_server, prisme_token, prisme_keyset):
    token = prisme_token()
    assert jwt.get_unverified_header(token)["alg"] == "RS384"
    assert prisme_keyset.jwks["keys"][0]["alg"] == "RS384"
    assert len(jwt.utils.base64url_decode(prisme_keyset.jwks["keys"][0]["n"])) * 8 == 3072
    key = jwt.PyJWKClient(prisme_jwks_server.jwks_url).get_signing_key_from_jwt(token)
    c = jwt.decode(token, key.key, algorithms=["RS384"], audience="https://gw.example.test/v2",
                   issuer="https://gw.example.test")
    assert c["exp"] - c["iat"] == 900
    assert (prisme_jwks_server.issuer, prisme_jwks_server.audience) == (c["iss"], c["aud"])
    with urllib.request.urlopen(prisme_jwks_server.discovery_url) as r:
        assert json.load(r)["issuer"] == "https://gw.example.test"
"""
    )
    suite.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_environment_wins_over_ini_options(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    suite.makeini("[pytest]\nprisme_issuer = https://ini.test\nprisme_audience = https://ini.test/v2\n")
    monkeypatch.setenv("OIDC_PROVIDER_URL", "https://env.test")
    suite.makepyfile(
        test_env="""
import jwt

def test_env(prisme_token):
    c = jwt.decode(prisme_token(), options={"verify_signature": False})
    assert (c["iss"], c["aud"]) == ("https://env.test", "https://ini.test/v2")
"""
    )
    suite.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("ini", "env", "message"),
    [
        (
            "prisme_alg = HS256",
            {},
            "prisme-keys: bad value for JWKS_ALG: 'HS256'; allowed: RS256, RS384, RS512 (RSASSA-PKCS1-v1_5 only, "
            "as the gateway: PS256/PS384/PS512 and EC algorithms are not supported) (from ini option prisme_alg)",
        ),
        (
            "",
            {"JWKS_SIZE": "1024"},
            "prisme-keys: bad value for JWKS_SIZE: '1024'; allowed: a whole number of bits from 2048 to 16384, "
            "a multiple of 8 (from environment variable JWKS_SIZE)",
        ),
    ],
)
def test_a_bad_setting_errors_the_tests_that_use_the_fixtures(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ini: str, env: dict[str, str], message: str
) -> None:
    suite.makeini(f"[pytest]\n{ini}\n")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    suite.makepyfile(test_bad="def test_a(prisme_token):\n    pass\n\ndef test_b():\n    pass\n")
    result = suite.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    assert result.stdout.lines.count(message) == 1, result.stdout.str()
    assert "Traceback" not in result.stdout.str()


def test_keys_stay_in_pytest_temp_dirs_and_the_server_stops(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    home = tmp_path_factory.mktemp("home")
    for name in ("HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        monkeypatch.setenv(name, str(home / name.lower()) if name != "HOME" else str(home))
    report = suite.path / "seen.json"
    suite.makepyfile(
        test_where=f"""
import json

def test_where(prisme_jwks_server, prisme_keyset, prisme_token, tmp_path_factory):
    prisme_token.foreign_key()
    assert prisme_keyset.key_file.is_relative_to(tmp_path_factory.getbasetemp())
    with open({str(report)!r}, "w") as f:
        json.dump({{"url": prisme_jwks_server.base_url, "key_file": str(prisme_keyset.key_file)}}, f)
"""
    )
    suite.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    seen = json.loads(report.read_text())
    assert sorted(p.name for p in home.iterdir()) == []
    url = urlsplit(seen["url"])
    assert url.hostname == "127.0.0.1"
    with pytest.raises(ConnectionRefusedError), socket.create_connection((url.hostname, url.port), timeout=5):
        pass


def test_api_minter_signs_without_rereading_the_key_file(tmp_path) -> None:
    settings = api.settings_from(
        {"key_file": str(tmp_path / "keys.json"), "oidc_provider_url": "https://i.test", "api_url": "https://a.test"}
    )
    kid = api.init(settings).record["kid"]
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(api.export(settings)))
    minter = api.open_minter(settings)
    assert (minter.kid, minter.alg) == (kid, "RS256")
    (tmp_path / "keys.json").unlink()
    token = minter.mint(sub="bob", lifetime=60)
    claims = api.verify(token, settings, jwks_file=str(jwks)).claims
    assert (claims["sub"], claims["iss"], claims["aud"], claims["exp"] - claims["iat"]) == (
        "bob",
        "https://i.test",
        "https://a.test",
        60,
    )
    with pytest.raises(UsageError, match=r"^this minter signs with kid '.+', not 'other'$"):
        minter.mint(kid="other")
    assert len(list(minter.mint_many(api.MintOptions(count=3)).tokens)) == 3


def test_api_minter_from_a_jwk_in_memory(tmp_path, keypool) -> None:
    settings = api.settings_from({"key_file": str(tmp_path / "none.json"), "api_url": "https://a.test"})
    token = api.Minter.from_jwk(settings, keypool[0], kid="forged").mint(sub="eve")
    assert api.decode(token).header == {"typ": "jwt", "alg": "RS256", "kid": "forged"}
    with pytest.raises(KeyFileError, match=r"^key '.+' is unusable: member 'dp' does not match d, p and q$"):
        api.Minter.from_jwk(settings, {**keypool[0], "d": keypool[1]["d"]})
    with pytest.raises(KeyFileError, match=r"^key '.+' has alg 'HS256'; mint signs with RS256, RS384 or RS512$"):
        api.Minter.from_jwk(settings, {**keypool[0], "alg": "HS256"})


def test_settings_from_reads_no_config_file_and_names_the_source_of_a_bad_value(tmp_path, monkeypatch) -> None:
    config = tmp_path / "config.toml"
    config.write_text('alg = "RS512"\n')
    monkeypatch.setenv("PRISME_KEYS_CONFIG", str(config))
    monkeypatch.setenv("JWKS_ALG", "RS384")
    s = api.settings_from({"key_file": str(tmp_path / "k.json"), "size": "3072"})
    assert (s.alg, s.size, s.config_path, dict(s.sources)) == (
        "RS256",
        3072,
        None,
        {"key_file": "flag", "size": "flag"},
    )
    with pytest.raises(ConfigError) as e:
        api.settings_from({"access_tokens_max_age": "0"}, {"access_tokens_max_age": "ini option prisme_token_lifetime"})
    assert e.value.message == (
        "bad value for ACCESS_TOKENS_MAX_AGE: '0'; allowed: a positive whole number of seconds up to 3153600000 "
        "(from ini option prisme_token_lifetime)"
    )
    with pytest.raises(ConfigError, match=r"^unknown setting 'issuer'; known: kty, alg, "):
        api.settings_from({"issuer": "x"})


def test_readme_example_runs_as_written(suite: pytest.Pytester) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("\n## In your test suite\n", 1)[1]
    example = section.split("```python\n", 1)[1].split("```\n", 1)[0]
    assert example.startswith("# tests/test_auth.py\n")
    suite.makepyfile(test_auth=example)
    suite.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=5)
