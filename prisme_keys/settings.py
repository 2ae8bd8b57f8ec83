"""Settings: defaults, TOML config file, environment and flags merged into one frozen object.

Precedence (DESIGN.md section 2): flag > environment > config file > default. Environment
variables use the reference gateway's names (``JWKS_ALG`` ...); the TOML file uses
snake_case (``alg = "RS256"``, ``rotation_days = 30``). Every effective value remembers
where it came from, for ``config show``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from prisme_keys.errors import ConfigError, Worded
from prisme_keys.text import decode_utf8, open_input, redact_url, shown

APP_NAME = "prisme-keys"


def _positive_int(name: str, value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, str):
        v = value.strip()
        if not v or not all("0" <= c <= "9" for c in v):
            raise ValueError
        value = int(v)
    if not isinstance(value, int) or value <= 0:
        raise ValueError
    return value


def _p_kty(v: Any) -> str:
    if v != "RSA":
        raise ConfigError(f"bad value for JWKS_KTY: {shown(v)}; allowed: RSA (the only key type this tool manages)")
    return str(v)


def _p_alg(v: Any) -> str:
    from prisme_keys.jwk import SUPPORTED_ALGS

    if v not in SUPPORTED_ALGS:
        raise ConfigError(
            f"bad value for JWKS_ALG: {shown(v)}; allowed: RS256, RS384, RS512 "
            "(RSASSA-PKCS1-v1_5 only, as the gateway: PS256/PS384/PS512 and EC algorithms are not supported)"
        )
    return str(v)


def _p_size(v: Any) -> int:
    try:
        n = _positive_int("JWKS_SIZE", v, "bits")
    except ValueError:
        n = None
    if n is None or n < 2048 or n > 16384 or n % 8:
        raise ConfigError(
            f"bad value for JWKS_SIZE: {shown(v)}; allowed: a whole number of bits from 2048 to 16384, a multiple of 8"
        )
    return n


def _p_pos(env: str, unit: str, limit: int = 10**9) -> Callable[[Any], int]:
    """Parser of a positive whole number of ``unit`` up to ``limit`` (dates must stay within year 9999)."""

    def parse(v: Any) -> int:
        try:
            n = _positive_int(env, v, unit)
            if n > limit:
                raise ValueError
            return n
        except ValueError:
            raise ConfigError(
                f"bad value for {env}: {shown(v)}; allowed: a positive whole number of {unit} up to {limit}"
            ) from None

    return parse


#: Upper bounds that keep every computed date within the calendar (about 100 years).
MAX_DAYS = 36500
MAX_SECONDS = MAX_DAYS * 86400


def _p_nonneg_seconds(env: str) -> Callable[[Any], float]:
    def parse(v: Any) -> float:
        try:
            if isinstance(v, bool):
                raise ValueError
            f = float(v)
            if f < 0 or f != f or f > MAX_SECONDS:
                raise ValueError
            return f
        except (TypeError, ValueError):
            raise ConfigError(
                f"bad value for {env}: {shown(v)}; allowed: a number of seconds from 0 to {MAX_SECONDS}"
            ) from None

    return parse


def _p_seconds_or_duration(env: str) -> Callable[[Any], float]:
    """Parser of plain seconds (``3600``, ``0.5``) or a duration (``90s``, ``15m``, ``2h``, ``1d``), 0 or more."""

    def parse(v: Any) -> float:
        try:
            return _p_nonneg_seconds(env)(v)
        except ConfigError:
            if isinstance(v, str):
                from prisme_keys.clock import parse_duration

                try:
                    secs = float(parse_duration(v))
                    if secs <= MAX_SECONDS:
                        return secs
                except ValueError:
                    pass
            raise ConfigError(
                f"bad value for {env}: {shown(v)}; allowed: seconds (0 or more) or a duration like 90s, 15m, 2h, 1d"
            ) from None

    return parse


_p_lead = _p_seconds_or_duration("PRISME_KEYS_PUBLICATION_LEAD")

#: The reference gateway's verifier (jwks-rsa) keeps a fetched key for 10 minutes.
REFERENCE_VERIFIER_CACHE = 600


def _p_bool(env: str) -> Callable[[Any], bool]:
    def parse(v: Any) -> bool:
        if isinstance(v, bool):
            return v
        s = str(v).strip().lower()
        if s in ("1", "true", "yes", "on"):
            return True
        if s in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(f"bad value for {env}: {shown(v)}; allowed: true or false (1/0, yes/no)")

    return parse


def _p_str(v: Any) -> str | None:
    if v is None:
        return None
    s = str(v)
    return s or None


def _p_path(v: Any) -> Path | None:
    if v is None or v == "":
        return None
    if not isinstance(v, (str, os.PathLike)):
        raise ConfigError(f"bad value for a path setting: {shown(v)}; allowed: a path string")
    return Path(os.path.expanduser(str(v)))


@dataclass(frozen=True)
class Spec:
    """One setting: TOML name, environment variable, default, parser and description."""

    name: str
    env: str
    default: Any
    parse: Callable[[Any], Any]
    help: str
    secret: bool = False
    #: written by ``config init`` (else as a comment: setting it declares something, e.g. caching verifiers)
    in_template: bool = True


def _default_key_file() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)) / "keys.json"


def default_config_path() -> Path:
    """``<user config dir>/config.toml`` (platformdirs, app name ``prisme-keys``)."""
    import platformdirs

    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / "config.toml"


def default_cache_dir() -> Path:
    """``<user cache dir>`` (platformdirs, app name ``prisme-keys``): the JWKS cache."""
    import platformdirs

    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))


SPECS: tuple[Spec, ...] = (
    Spec("kty", "JWKS_KTY", "RSA", _p_kty, "key type of new keys"),
    Spec("alg", "JWKS_ALG", "RS256", _p_alg, "signature algorithm of new keys; default verify allow-list"),
    Spec("size", "JWKS_SIZE", 2048, _p_size, "size of new keys, bits"),
    Spec(
        "rotation_days",
        "JWKS_ROTATION_DAYS",
        30,
        _p_pos("JWKS_ROTATION_DAYS", "days", MAX_DAYS),
        "days before the signing key is replaced",
    ),
    Spec(
        "access_tokens_max_age",
        "ACCESS_TOKENS_MAX_AGE",
        2592000,
        _p_pos("ACCESS_TOKENS_MAX_AGE", "seconds", MAX_SECONDS),
        "longest token lifetime, seconds",
    ),
    Spec("oidc_provider_url", "OIDC_PROVIDER_URL", None, _p_str, "issuer (iss) of minted tokens, expected issuer"),
    Spec("api_url", "API_URL", None, _p_str, "audience (aud) of minted tokens, expected audience"),
    Spec("key_file", "PRISME_KEYS_FILE", None, _p_path, "key file"),
    Spec(
        "lock_timeout",
        "PRISME_KEYS_LOCK_TIMEOUT",
        30.0,
        _p_nonneg_seconds("PRISME_KEYS_LOCK_TIMEOUT"),
        "longest wait for the key file lock, seconds",
    ),
    Spec(
        "allow_group_read",
        "PRISME_KEYS_ALLOW_GROUP_READ",
        False,
        _p_bool("PRISME_KEYS_ALLOW_GROUP_READ"),
        "accept a group-readable key file (shared group file)",
    ),
    Spec(
        "publication_lead",
        "PRISME_KEYS_PUBLICATION_LEAD",
        0,
        _p_lead,
        "seconds (or a duration like 1h, 1d) a new key is published before it signs",
    ),
    Spec(
        "verifier_cache",
        "PRISME_KEYS_VERIFIER_CACHE",
        REFERENCE_VERIFIER_CACHE,
        _p_seconds_or_duration("PRISME_KEYS_VERIFIER_CACHE"),
        "longest time (seconds or a duration) a verifier caches the JWKS; checked against the publication lead",
        in_template=False,
    ),
    Spec(
        "passphrase_file",
        "PRISME_KEYS_PASSPHRASE_FILE",
        None,
        _p_path,
        "file holding the passphrase of an encrypted key file (first line)",
    ),
    Spec(
        "passphrase",
        "PRISME_KEYS_PASSPHRASE",
        None,
        _p_str,
        "passphrase of an encrypted key file (environment only)",
        secret=True,
    ),
    Spec("broker_host", "BROKER_HOST", "redis://localhost:6379/10", _p_str, "Redis URL of the event broker"),
    Spec(
        "broker_namespace",
        "BROKER_NAMESPACE",
        "",
        lambda v: "" if v is None else str(v),
        "prefix of the broker's stream names",
    ),
    Spec(
        "broker_topic_maxlen",
        "BROKER_TOPIC_MAXLEN",
        10000,
        _p_pos("BROKER_TOPIC_MAXLEN", "entries"),
        "approximate MAXLEN of each stream",
    ),
    Spec(
        "contexts_cache_host",
        "CONTEXTS_CACHE_HOST",
        "redis://localhost:6379/0",
        _p_str,
        "Redis URL of the runtime's cache (runtime:jwk)",
    ),
    Spec(
        "internal_api_key", "INTERNAL_API_KEY", None, _p_str, "runtime internal API key (POST /sys/certs)", secret=True
    ),
)
_BY_NAME = {s.name: s for s in SPECS}


@dataclass(frozen=True)
class Settings:
    """Effective settings.

    Attributes:
        kty: key type, always ``"RSA"``.
        alg: ``RS256``/``RS384``/``RS512``.
        size: bits of new keys.
        rotation_days: days (int) between rotations.
        access_tokens_max_age: seconds (int), longest token lifetime.
        oidc_provider_url / api_url: issuer / audience, or ``None``.
        key_file: the key file path (never ``None`` after :func:`load`).
        config_path: the TOML file consulted.
        lock_timeout: seconds (float) to wait for the key-file lock.
        allow_group_read: accept a group-readable key file.
        publication_lead: seconds (float) a new key is published before it signs.
        verifier_cache: seconds (float) the verifiers may cache the JWKS (default 600, the
            reference gateway's jwks-rsa); checked against ``publication_lead``.
        passphrase_file: file holding the key file's passphrase, or ``None``.
        passphrase: ``PRISME_KEYS_PASSPHRASE`` (environment only; never shown), or ``None``.
        new_passphrase: ``PRISME_KEYS_NEW_PASSPHRASE``, the new passphrase of a rekey (environment
            only; never shown), or ``None``.
        passphrase_prompt: who to ask for a passphrase when no other source gives one,
            ``(prompt text, confirm) -> passphrase | None`` (:data:`prisme_keys.store.encryption.Prompt`);
            ``None`` (the default, and always after :func:`load`): nobody is asked. The command line
            sets a terminal prompt.
        broker_host, broker_namespace, broker_topic_maxlen, contexts_cache_host,
        internal_api_key: the gateway platform's broker/runtime settings.
        sources: ``{name: "flag"|"env:VAR"|"config:PATH"|"default"}``.
    """

    kty: str = "RSA"
    alg: str = "RS256"
    size: int = 2048
    rotation_days: int = 30
    access_tokens_max_age: int = 2592000
    oidc_provider_url: str | None = None
    api_url: str | None = None
    key_file: Path = field(default_factory=_default_key_file)
    config_path: Path | None = None
    lock_timeout: float = 30.0
    allow_group_read: bool = False
    publication_lead: float = 0
    verifier_cache: float = REFERENCE_VERIFIER_CACHE
    broker_host: str | None = "redis://localhost:6379/10"
    broker_namespace: str = ""
    broker_topic_maxlen: int = 10000
    contexts_cache_host: str | None = "redis://localhost:6379/0"
    internal_api_key: str | None = None
    passphrase_file: Path | None = None
    passphrase: str | None = field(default=None, repr=False)
    new_passphrase: str | None = field(default=None, repr=False)
    passphrase_prompt: Callable[[str, bool], str | None] | None = field(default=None, repr=False, compare=False)
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    def describe(self) -> list[dict[str, Any]]:
        """Rows for ``config show``: ``[{name, env, value, source}]``; secrets shown as ``***``.

        URL values (``BROKER_HOST``, ``CONTEXTS_CACHE_HOST``, any URL with a user) keep the user
        name and hide the password: ``redis://user:***@host:6379/10`` (a lone user, possibly a
        token, becomes ``***``).
        """
        rows = []
        for spec in SPECS:
            value = getattr(self, spec.name)
            if spec.secret and value:
                value = "***"
            elif isinstance(value, Path):
                value = str(value)
            elif isinstance(value, str):
                value = redact_url(value)
            rows.append(
                {"name": spec.name, "env": spec.env, "value": value, "source": self.sources.get(spec.name, "default")}
            )
        rows.append(
            {
                "name": "config_path",
                "env": "PRISME_KEYS_CONFIG",
                "value": str(self.config_path),
                "source": self.sources.get("config_path", "default"),
            }
        )
        return rows


def read_config(path: Path) -> dict[str, Any]:
    """Read a TOML config file (tomllib).

    Returns ``{}`` when the file does not exist.

    Raises:
        ConfigError: unreadable file, bad TOML, or an unknown setting name.
    """
    try:
        with open_input(path) as fh:
            raw = fh.read()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    import tomllib  # only when there is a file: 2.3 ms of start-up otherwise

    try:
        data = tomllib.loads(decode_utf8(raw))  # a leading BOM (Windows editors) is accepted
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    if "passphrase" in data:
        raise ConfigError(
            f"config file {path}: the passphrase is not read from the config file; "
            "use PRISME_KEYS_PASSPHRASE or passphrase_file"
        )
    unknown = sorted(set(data) - set(_BY_NAME))
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown setting {shown(unknown[0])}; known: {', '.join(s.name for s in SPECS)}"
        )
    return data


def load(flags: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Build the effective :class:`Settings`.

    Args:
        flags: values given on the command line, by setting name (``key_file``,
            ``config_path``, ...); ``None`` values are ignored.
        environ: the environment (default ``os.environ``).

    Raises:
        ConfigError: a bad value (naming the setting, the value and what is allowed),
            an unreadable or invalid config file.
    """
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    env = os.environ if environ is None else environ
    sources: dict[str, str] = {}

    if "config_path" in flags:
        config_path, sources["config_path"] = Path(flags["config_path"]), "flag"
    elif env.get("PRISME_KEYS_CONFIG"):
        config_path, sources["config_path"] = Path(env["PRISME_KEYS_CONFIG"]), "env:PRISME_KEYS_CONFIG"
    else:
        config_path, sources["config_path"] = default_config_path(), "default"
    if sources["config_path"] != "default" and not config_path.exists():
        # A config file named on purpose must exist: a typo must not fall back to defaults.
        how = "{config_path}" if sources["config_path"] == "flag" else "PRISME_KEYS_CONFIG"
        raise ConfigError(
            Worded("config file {path} (from " + how + ") does not exist", hint="config_init", path=config_path)
        )
    config = read_config(config_path)

    values: dict[str, Any] = {}
    for spec in SPECS:
        if spec.name in flags:
            raw, src = flags[spec.name], "flag"
        elif spec.env in env:
            raw, src = env[spec.env], f"env:{spec.env}"
        elif spec.name in config:
            raw, src = config[spec.name], f"config:{config_path}"
        else:
            continue
        try:
            values[spec.name] = spec.parse(raw)
        except ConfigError as exc:
            if src.startswith("config:"):
                raise ConfigError(f"{exc.message} (from {config_path})") from None
            raise
        sources[spec.name] = src
    if values.get("key_file") is None:
        values.pop("key_file", None)
        sources["key_file"] = "default"
    new_passphrase = env.get("PRISME_KEYS_NEW_PASSPHRASE") or None  # environment only, like the passphrase
    return Settings(config_path=config_path, sources=sources, new_passphrase=new_passphrase, **values)


def defaults_toml() -> str:
    """The TOML text ``config init`` writes: every non-secret setting at its default (tomli-w).

    ``verifier_cache`` is written as a comment: setting it declares verifiers that cache the JWKS,
    which the publication-lead check then holds a lead of 0 against.
    """
    import tomli_w

    data: dict[str, Any] = {}
    comments = []
    for spec in SPECS:
        if spec.default is None or spec.secret:
            continue
        if spec.in_template:
            data[spec.name] = spec.default
        else:
            comments.append(f"# {tomli_w.dumps({spec.name: spec.default}).strip()}  # {spec.help}\n")
    header = "# prisme-keys settings; environment variables and flags override these.\n"
    return header + tomli_w.dumps(data) + "".join(comments)


def parse_setting(name: str, raw: Any) -> Any:
    """Parse one setting's value (TOML name ``name``) as the environment or config file would.

    Raises:
        ConfigError: a bad value, naming the setting, the value and what is allowed.
        KeyError: an unknown setting name.
    """
    return _BY_NAME[name].parse(raw)


def setting_names() -> list[str]:
    """All TOML setting names, in table order."""
    return [f.name for f in fields(Settings) if f.name in _BY_NAME]


def load_config_path(environ: Mapping[str, str] | None = None) -> Path:
    """The config file path from ``PRISME_KEYS_CONFIG`` or the platform default."""
    env = os.environ if environ is None else environ
    return Path(env["PRISME_KEYS_CONFIG"]) if env.get("PRISME_KEYS_CONFIG") else default_config_path()


def from_values(values: Mapping[str, Any], sources: Mapping[str, str] | None = None) -> Settings:
    """Settings from explicit values only: no config file, no environment (e.g. a throwaway test key set).

    Args:
        values: by TOML setting name (``alg``, ``size``, ``oidc_provider_url``, ``key_file``...);
            each is parsed by its setting's own rule; ``None`` values keep the default.
        sources: where each value came from, for messages (default ``"flag"``).

    Raises:
        ConfigError: an unknown setting name or a bad value.
    """
    parsed: dict[str, Any] = {}
    where: dict[str, str] = {}
    for name, raw in values.items():
        if raw is None:
            continue
        spec = _BY_NAME.get(name)
        if spec is None:
            raise ConfigError(f"unknown setting {shown(name)}; known: {', '.join(s.name for s in SPECS)}")
        source = (sources or {}).get(name, "flag")
        try:
            value = spec.parse(raw)
        except ConfigError as exc:
            raise ConfigError(exc.message if source == "flag" else f"{exc.message} (from {source})") from None
        if value is not None:
            parsed[name] = value
            where[name] = source
    return Settings(sources=where, **parsed)
