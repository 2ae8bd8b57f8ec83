"""clock.py and settings.py: durations, times, precedence, bad values."""

from datetime import UTC, datetime

import pytest
from helpers import empty_config, one_error_line

from prisme_keys import clock, settings
from prisme_keys.errors import ConfigError

T = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "text,secs", [("90s", 90), ("15m", 900), ("2h", 7200), ("30d", 2592000), ("3600", 3600), (" 1w ", 604800)]
)
def test_durations(text, secs):
    assert clock.parse_duration(text) == secs


@pytest.mark.parametrize("text", ["", "-5", "1.5h", "10y", "soon", "h"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        clock.parse_duration(text)


def test_parse_time_forms():
    assert clock.parse_time("+31d", T) == datetime(2026, 2, 1, tzinfo=UTC)
    assert clock.parse_time("-2h", T) == datetime(2025, 12, 31, 22, tzinfo=UTC)
    assert clock.parse_time("1767225600") == T
    assert clock.parse_time("2026-01-01T00:00:00Z") == T
    assert clock.parse_time("2026-01-01T01:00:00+01:00") == T
    with pytest.raises(ValueError, match="not a time"):
        clock.parse_time("yesterday")


def test_iso_has_milliseconds_and_z():
    assert clock.iso(datetime(2026, 11, 29, 8, 0, 0, 123456, tzinfo=UTC)) == "2026-11-29T08:00:00.123Z"


def test_humanize():
    assert clock.humanize(datetime(2026, 1, 4, tzinfo=UTC), T) == "in 3 days"
    assert clock.humanize(datetime(2025, 12, 30, tzinfo=UTC), T) == "2 days ago"
    assert clock.humanize(datetime(2026, 1, 1, 0, 5, tzinfo=UTC), T) == "in 5 minutes"


def test_precedence_flag_env_config_default(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('rotation_days = 7\nsize = 3072\nalg = "RS384"\nkey_file = "/from/config.json"\n')
    s = settings.load({"config_path": cfg, "key_file": "/from/flag.json"}, {"JWKS_SIZE": "4096"})
    assert s.rotation_days == 7 and s.sources["rotation_days"] == f"config:{cfg}"
    assert s.size == 4096 and s.sources["size"] == "env:JWKS_SIZE"
    assert s.alg == "RS384"
    assert str(s.key_file) == "/from/flag.json" and s.sources["key_file"] == "flag"
    assert s.access_tokens_max_age == 2592000 and s.sources.get("access_tokens_max_age", "default") == "default"
    s2 = settings.load({"config_path": cfg}, {"PRISME_KEYS_FILE": "/from/env.json"})
    assert str(s2.key_file) == "/from/env.json"


@pytest.mark.parametrize(
    "env,value,msg",
    [
        ("JWKS_KTY", "EC", "bad value for JWKS_KTY: 'EC'; allowed: RSA"),
        ("JWKS_ALG", "PS256", "bad value for JWKS_ALG: 'PS256'; allowed: RS256, RS384, RS512 (RSASSA-PKCS1-v1_5 only"),
        ("JWKS_ALG", "HS256", "bad value for JWKS_ALG: 'HS256'"),
        (
            "JWKS_SIZE",
            "1024",
            "bad value for JWKS_SIZE: '1024'; allowed: a whole number of bits from 2048 to 16384, a multiple of 8",
        ),
        ("JWKS_SIZE", "16392", "bad value for JWKS_SIZE: '16392'"),
        ("JWKS_SIZE", "2049", "bad value for JWKS_SIZE: '2049'"),
        ("JWKS_SIZE", "big", "bad value for JWKS_SIZE: 'big'"),
        ("JWKS_ROTATION_DAYS", "0", "bad value for JWKS_ROTATION_DAYS: '0'; allowed: a positive whole number of days"),
        ("JWKS_ROTATION_DAYS", "-3", "bad value for JWKS_ROTATION_DAYS: '-3'"),
        ("JWKS_ROTATION_DAYS", "1.5", "bad value for JWKS_ROTATION_DAYS: '1.5'"),
        (
            "ACCESS_TOKENS_MAX_AGE",
            "abc",
            "bad value for ACCESS_TOKENS_MAX_AGE: 'abc'; allowed: a positive whole number of seconds",
        ),
    ],
)
def test_bad_values_name_setting_value_and_allowed(tmp_path, env, value, msg):
    with pytest.raises(ConfigError) as info:
        settings.load({"config_path": empty_config(tmp_path)}, {env: value})
    assert info.value.message.startswith(msg)
    assert info.value.exit_code == 3


def test_bad_config_file(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("size = [")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        settings.load({"config_path": cfg}, {})
    cfg.write_text("sise = 4096\n")
    with pytest.raises(ConfigError, match="unknown setting 'sise'"):
        settings.load({"config_path": cfg}, {})
    cfg.write_text("size = 1000\n")
    with pytest.raises(ConfigError, match=r"bad value for JWKS_SIZE: 1000.*\(from "):
        settings.load({"config_path": cfg}, {})


def test_cli_bad_setting_exit_3(cli):
    p = cli("list", env={"JWKS_SIZE": "1024"})
    assert p.returncode == 3
    assert p.stderr.strip().startswith("prisme-keys: error: bad value for JWKS_SIZE: '1024'")
    assert len(p.stderr.strip().splitlines()) == 1


def test_config_init_show_path(cli):
    p = cli("config", "path")
    assert p.returncode == 0
    path = cli.home / "config" / "prisme-keys" / "config.toml"
    assert p.stdout.strip() == str(path)
    p = cli("config", "init")
    assert p.returncode == 0, p.stderr
    import tomllib

    data = tomllib.loads(path.read_text())
    assert data["size"] == 2048 and data["alg"] == "RS256" and data["rotation_days"] == 30
    assert data["access_tokens_max_age"] == 2592000
    assert cli("config", "init").returncode == 3
    path.write_text("rotation_days = 9\n")
    import json

    p = cli("--json", "config", "show", env={"JWKS_ALG": "RS512", "INTERNAL_API_KEY": "s3cret"})
    doc = json.loads(p.stdout)
    assert doc["rotation_days"] == {"value": 9, "env": "JWKS_ROTATION_DAYS", "source": f"config:{path}"}
    assert doc["alg"]["source"] == "env:JWKS_ALG" and doc["alg"]["value"] == "RS512"
    assert doc["size"]["source"] == "default"
    assert doc["internal_api_key"]["value"] == "***" and "s3cret" not in p.stdout


def test_describe_masks_url_passwords(cli):
    import json

    env = {
        "BROKER_HOST": "redis://user:p%40ss@10.0.0.5:6379/10",
        "CONTEXTS_CACHE_HOST": "rediss://:hunter2@cache:6380/0",
        "OIDC_PROVIDER_URL": "https://tok3n@issuer.test/x",
    }
    s = settings.load(environ=env)
    rows = {r["name"]: r["value"] for r in s.describe()}
    assert rows["broker_host"] == "redis://user:***@10.0.0.5:6379/10"
    assert rows["contexts_cache_host"] == "rediss://:***@cache:6380/0"
    assert rows["oidc_provider_url"] == "https://***@issuer.test/x"
    assert settings.load(environ={}).describe()[0]["value"] == "RSA"
    assert {r["name"]: r["value"] for r in settings.load(environ={}).describe()}[
        "broker_host"
    ] == "redis://localhost:6379/10"
    for args in (("--json", "config", "show"), ("config", "show")):
        p = cli(*args, env=env)
        assert p.returncode == 0, p.stderr
        assert "p%40ss" not in p.stdout and "hunter2" not in p.stdout and "tok3n" not in p.stdout
    assert (
        json.loads(cli("--json", "config", "show", env=env).stdout)["broker_host"]["value"]
        == "redis://user:***@10.0.0.5:6379/10"
    )


# -- regression tests (defects found by a newcomer's break-test)


def test_non_finite_and_out_of_range_values(cli, keyfile):
    g = ["--key-file", str(keyfile)]
    one_error_line(cli(*g, "verify", "a.b.c", "--leeway", "nan"), 2)
    one_error_line(cli(*g, "verify", "a.b.c", "--jwks-url", "http://127.0.0.1:9/x", "--timeout", "nan"), 2)
    one_error_line(cli(*g, "--now", "+99999999d", "rotate", "--dry-run"), 2)
    for env in (
        {"JWKS_ROTATION_DAYS": "99999999999"},
        {"ACCESS_TOKENS_MAX_AGE": "300000000000"},
        {"PRISME_KEYS_PUBLICATION_LEAD": "9999999d"},
        {"PRISME_KEYS_LOCK_TIMEOUT": "inf"},
    ):
        p = cli(*g, "rotate", "--force", env=env)
        one_error_line(p, 3)
        assert f"bad value for {next(iter(env))}" in p.stderr
    one_error_line(cli(*g, "--now", "\u0663", "list"), 2)  # an Arabic-Indic digit is not a Unix time


def test_named_config_file_must_exist(cli, keyfile, tmp_path):
    missing = tmp_path / "typo.toml"
    p = cli("--key-file", str(keyfile), "--config", str(missing), "list")
    one_error_line(p, 3)
    assert f"config file {missing} (from --config) does not exist" in p.stderr
    p = cli("--key-file", str(keyfile), "list", env={"PRISME_KEYS_CONFIG": str(missing)})
    one_error_line(p, 3)
    assert cli("--key-file", str(keyfile), "list").returncode == 0  # the default path may be absent


def test_relative_times_round_to_the_nearest_unit():
    from datetime import datetime, timedelta

    from prisme_keys import clock

    t = datetime(2026, 1, 1, tzinfo=UTC)
    assert clock.humanize(t + timedelta(days=30, milliseconds=-5), t) == "in 30 days"  # right after init
    assert clock.humanize(t - timedelta(hours=2, seconds=1), t) == "2 hours ago"


def test_non_string_path_in_config_is_exit_3(cli, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("key_file = 5\n")
    p = cli("--config", str(cfg), "list")
    one_error_line(p, 3)
    assert p.stderr == (
        "prisme-keys: error: bad value for a path setting: 5; allowed: a path string without NUL characters "
        f"(from {cfg})\n"
    )


# Regression (newcomer): a NUL in a path setting was exit 1 "internal error: ValueError: embedded
# null byte"; it is exit 3 from the config file or the environment, exit 2 as an argument
def test_nul_in_a_path_setting(cli, tmp_path, capsys):
    rule = "allowed: a path string without NUL characters"
    cfg = tmp_path / "c.toml"
    cfg.write_text('key_file = "\\u0000"\n')
    p = cli("--config", str(cfg), "list")
    one_error_line(p, 3)
    assert p.stderr == f"prisme-keys: error: bad value for a path setting: '\\x00'; {rule} (from {cfg})\n"
    from prisme_keys.cli import main

    capsys.readouterr()
    for env in ("PRISME_KEYS_FILE", "PRISME_KEYS_PASSPHRASE_FILE", "PRISME_KEYS_CONFIG"):
        assert main(["list"], env={**cli.env, env: "a\0b"}) == 3  # os.environ cannot hold NUL; main's env can
        err = capsys.readouterr().err
        assert err == f"prisme-keys: error: bad value for a path setting: 'a\\x00b'; {rule} (from {env})\n"
    for flag in ("--key-file", "--config", "--passphrase-file"):
        p = cli(flag, "a\0b", "list")
        one_error_line(p, 2)
        assert p.stderr == f"prisme-keys: error: {flag}: 'a\\x00b' holds a NUL character\n"
    # the library's own check, for callers of settings.load (the Python API): exit 2, worded for the flag
    from prisme_keys.cli.words import say
    from prisme_keys.errors import InvalidArgument

    with pytest.raises(InvalidArgument) as exc:
        settings.load({"key_file": "a\0b"}, {})
    assert say(exc.value.message) == f"--key-file: bad value for a path setting: 'a\\x00b'; {rule}"
    with pytest.raises(InvalidArgument):
        settings.load_config_path({}, "a\0b")


# Regression (newcomer): any argument holding NUL (main([...]) can pass one) was exit 1 on a file option
@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["export", "--out", "a\0b"], "--out"),
        (["mint", "--claims=a\0b"], "--claims"),
        (["import", "a\0b"], "argument 2"),
        (["verify", "t", "--jwks-file", "a\0b"], "--jwks-file"),
    ],
)
def test_nul_in_any_argument_is_exit_2(cli, argv, named):
    p = cli(*argv)
    one_error_line(p, 2)
    assert p.stderr == f"prisme-keys: error: {named}: 'a\\x00b' holds a NUL character\n"


# Regression (newcomer): --config /dev/zero was read whole (MemoryError, exit 1)
def test_config_file_is_capped(cli, tmp_path):
    p = cli("--config", "/dev/zero", "list")
    one_error_line(p, 3)
    assert p.stderr == (
        "prisme-keys: error: config file /dev/zero is larger than 1048576 bytes; a config file is a few lines\n"
    )
    big = tmp_path / "big.toml"
    big.write_text("# " + "x" * (1 << 20) + "\n")
    p = cli("--config", str(big), "list")
    one_error_line(p, 3)
    assert (
        p.stderr
        == f"prisme-keys: error: config file {big} is larger than 1048576 bytes; a config file is a few lines\n"
    )


@pytest.mark.parametrize("year", [1, 9, 99, 999, 2026, 9999])
def test_iso_writes_four_digit_years_and_round_trips(year):
    dt = datetime(year, 1, 1, 23, 59, 59, 999000, tzinfo=UTC)
    text = clock.iso(dt)
    assert text == f"{year:04d}-01-01T23:59:59.999Z"
    assert clock.parse_iso(text) == dt


def test_shift_saturates_at_years_1_and_9999():
    assert clock.shift(datetime(9999, 12, 1, tzinfo=UTC), clock.days(90)) == clock.LATEST
    assert clock.shift(clock.LATEST, 10**12) == clock.LATEST
    assert clock.shift(datetime(1, 1, 2, tzinfo=UTC), -2 * 86400) == clock.EARLIEST
    assert clock.shift(clock.EARLIEST, -(10**12)) == clock.EARLIEST
    assert clock.shift(datetime(2026, 1, 1, tzinfo=UTC), 3600) == datetime(2026, 1, 1, 1, tzinfo=UTC)
    assert (
        clock.iso(clock.LATEST) == "9999-12-31T23:59:59.999Z"
        and clock.iso(clock.EARLIEST) == "0001-01-01T00:00:00.000Z"
    )
    assert clock.fits(datetime(2026, 1, 1, tzinfo=UTC), 86400) and not clock.fits(clock.LATEST, 1)
    assert clock.span(9998 * 365 * 86400) == "3649270 days"  # no date arithmetic behind a span


def test_settings_written_out_methods_follow_the_field_declarations(tmp_path):
    """Settings' __init__/__repr__/__eq__/hash/frozenness are written by hand (start-up time, issue 13):
    they must do what the generated ones of ``@dataclass(frozen=True)`` would, field by field."""
    import dataclasses
    import inspect

    fields = dataclasses.fields(settings.Settings)
    params = list(inspect.signature(settings.Settings.__init__).parameters.values())[1:]
    assert [p.name for p in params] == [f.name for f in fields]
    default = settings.Settings()
    for f in fields:  # every default is the field's own (a factory's value for key_file and sources)
        want = f.default_factory() if f.default is dataclasses.MISSING else f.default
        assert getattr(default, f.name) == want, f.name

    given = {f.name: f"value of {f.name}" for f in fields}
    s = settings.Settings(**given)
    assert [getattr(s, f.name) for f in fields] == list(given.values())  # each argument lands in its field
    shown = ", ".join(f"{f.name}={given[f.name]!r}" for f in fields if f.repr)
    assert repr(s) == f"Settings({shown})"
    assert "'value of passphrase'" not in repr(s) and "value of new_passphrase" not in repr(s)
    for f in fields:
        other = dataclasses.replace(s, **{f.name: "changed"})
        assert (other == s) is (not f.compare), f.name
        assert (hash(other) == hash(s)) is (not f.compare), f.name
    assert settings.Settings() != tmp_path and settings.Settings().__eq__(tmp_path) is NotImplemented
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'alg'"):
        s.alg = "RS384"
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot delete field 'alg'"):
        del s.alg
    assert dataclasses.replace(s, alg="RS384").alg == "RS384" and s.alg == "value of alg"
