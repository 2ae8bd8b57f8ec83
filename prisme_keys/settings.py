"""Settings: defaults, TOML config file, environment and flags merged into one frozen object.

Precedence (DESIGN.md section 2): flag > environment > config file > default. Environment
variables use the reference gateway's names (``JWKS_ALG`` ...); the TOML file uses
snake_case (``alg = "RS256"``, ``rotation_days = 30``). Every effective value remembers
where it came from, for ``config show``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import FrozenInstanceError, dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

from prisme_keys import setting_values
from prisme_keys.errors import ConfigError, InvalidArgument, Worded
from prisme_keys.setting_values import MAX_DAYS, MAX_SECONDS
from prisme_keys.text import decode_utf8, read_capped, redact_url, shown

APP_NAME = "prisme-keys"


#: The reference gateway's verifier (jwks-rsa) keeps a fetched key for 10 minutes.
REFERENCE_VERIFIER_CACHE = 600


def _parsed(name: str, env_name: str, parse: Callable[[Any], Any], raw: Any, src: str) -> Any:
    """``parse(raw)``, a bad value's error naming where it came from (``src``: ``flag``, ``env:NAME``
    or ``config:PATH``).

    Raises:
        InvalidArgument: a bad value given as an argument (``src`` ``flag``; exit 2).
        ConfigError: a bad value from the environment or the config file (exit 3).
    """
    try:
        return parse(raw)
    except ConfigError as exc:
        if src == "flag":
            template = {  # the argument named as a field, for a front end to word (--key-file)
                "key_file": "{key_file}: {problem}",
                "config_path": "{config_path}: {problem}",
                "passphrase_file": "{passphrase_file}: {problem}",
            }.get(name, name + ": {problem}")
            raise InvalidArgument(name, template, problem=exc.message) from None
        if src.startswith("config:"):
            raise ConfigError(f"{exc.message} (from {src[len('config:') :]})") from None
        if env_name not in exc.message:
            raise ConfigError(f"{exc.message} (from {env_name})") from None
        raise


class Spec(NamedTuple):
    """One setting: TOML name, environment variable, default, parser and description (immutable)."""

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
    Spec("kty", "JWKS_KTY", "RSA", setting_values.key_type, "key type of new keys"),
    Spec(
        "alg",
        "JWKS_ALG",
        "RS256",
        setting_values.algorithm,
        "signature algorithm of new keys; default verify allow-list",
    ),
    Spec("size", "JWKS_SIZE", 2048, setting_values.key_size, "size of new keys, bits"),
    Spec(
        "rotation_days",
        "JWKS_ROTATION_DAYS",
        30,
        setting_values.positive("JWKS_ROTATION_DAYS", "days", MAX_DAYS),
        "days before the signing key is replaced",
    ),
    Spec(
        "access_tokens_max_age",
        "ACCESS_TOKENS_MAX_AGE",
        2592000,
        setting_values.positive("ACCESS_TOKENS_MAX_AGE", "seconds", MAX_SECONDS),
        "longest token lifetime, seconds",
    ),
    Spec(
        "oidc_provider_url",
        "OIDC_PROVIDER_URL",
        None,
        setting_values.optional_text,
        "issuer (iss) of minted tokens, expected issuer",
    ),
    Spec(
        "api_url", "API_URL", None, setting_values.optional_text, "audience (aud) of minted tokens, expected audience"
    ),
    Spec("key_file", "PRISME_KEYS_FILE", None, setting_values.optional_path, "key file"),
    Spec(
        "lock_timeout",
        "PRISME_KEYS_LOCK_TIMEOUT",
        30.0,
        setting_values.seconds("PRISME_KEYS_LOCK_TIMEOUT"),
        "longest wait for the key file lock, seconds",
    ),
    Spec(
        "allow_group_read",
        "PRISME_KEYS_ALLOW_GROUP_READ",
        False,
        setting_values.boolean("PRISME_KEYS_ALLOW_GROUP_READ"),
        "accept a group-readable key file (shared group file)",
    ),
    Spec(
        "publication_lead",
        "PRISME_KEYS_PUBLICATION_LEAD",
        0,
        setting_values.seconds_or_duration("PRISME_KEYS_PUBLICATION_LEAD"),
        "seconds (or a duration like 1h, 1d) a new key is published before it signs",
    ),
    Spec(
        "verifier_cache",
        "PRISME_KEYS_VERIFIER_CACHE",
        REFERENCE_VERIFIER_CACHE,
        setting_values.seconds_or_duration("PRISME_KEYS_VERIFIER_CACHE"),
        "longest time (seconds or a duration) a verifier caches the JWKS; checked against the publication lead",
        in_template=False,
    ),
    Spec(
        "passphrase_file",
        "PRISME_KEYS_PASSPHRASE_FILE",
        None,
        setting_values.optional_path,
        "file holding the passphrase of an encrypted key file (first line)",
    ),
    Spec(
        "passphrase",
        "PRISME_KEYS_PASSPHRASE",
        None,
        setting_values.optional_text,
        "passphrase of an encrypted key file (environment only)",
        secret=True,
    ),
    Spec(
        "broker_host",
        "BROKER_HOST",
        "redis://localhost:6379/10",
        setting_values.optional_text,
        "Redis URL of the event broker",
    ),
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
        setting_values.positive("BROKER_TOPIC_MAXLEN", "entries"),
        "approximate MAXLEN of each stream",
    ),
    Spec(
        "contexts_cache_host",
        "CONTEXTS_CACHE_HOST",
        "redis://localhost:6379/0",
        setting_values.optional_text,
        "Redis URL of the runtime's cache (runtime:jwk)",
    ),
    Spec(
        "internal_api_key",
        "INTERNAL_API_KEY",
        None,
        setting_values.optional_text,
        "runtime internal API key (POST /sys/certs)",
        secret=True,
    ),
)
_BY_NAME = {s.name: s for s in SPECS}


@dataclass(init=False, repr=False, eq=False)
class Settings:
    """Effective settings: frozen (assigning a field raises :class:`dataclasses.FrozenInstanceError`).

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

    A dataclass, so that ``dataclasses.replace`` and ``dataclasses.fields`` work on it, whose
    methods are written out below instead of generated: generating them (``frozen=True``) costs
    about 1 ms of every command's start-up. They follow the fields' declarations: ``repr`` leaves
    out the ``repr=False`` fields (the passphrases), ``==`` and ``hash`` the ``compare=False`` ones.
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

    def __init__(
        self,
        kty: str = "RSA",
        alg: str = "RS256",
        size: int = 2048,
        rotation_days: int = 30,
        access_tokens_max_age: int = 2592000,
        oidc_provider_url: str | None = None,
        api_url: str | None = None,
        key_file: Path | None = None,
        config_path: Path | None = None,
        lock_timeout: float = 30.0,
        allow_group_read: bool = False,
        publication_lead: float = 0,
        verifier_cache: float = REFERENCE_VERIFIER_CACHE,
        broker_host: str | None = "redis://localhost:6379/10",
        broker_namespace: str = "",
        broker_topic_maxlen: int = 10000,
        contexts_cache_host: str | None = "redis://localhost:6379/0",
        internal_api_key: str | None = None,
        passphrase_file: Path | None = None,
        passphrase: str | None = None,
        new_passphrase: str | None = None,
        passphrase_prompt: Callable[[str, bool], str | None] | None = None,
        sources: Mapping[str, str] | None = None,
    ) -> None:
        """The defaults are the fields' (``key_file``: the platform's data folder, ``sources``: ``{}``)."""
        vars(self).update(  # past the frozen __setattr__, as a generated __init__ does
            kty=kty,
            alg=alg,
            size=size,
            rotation_days=rotation_days,
            access_tokens_max_age=access_tokens_max_age,
            oidc_provider_url=oidc_provider_url,
            api_url=api_url,
            key_file=_default_key_file() if key_file is None else key_file,
            config_path=config_path,
            lock_timeout=lock_timeout,
            allow_group_read=allow_group_read,
            publication_lead=publication_lead,
            verifier_cache=verifier_cache,
            broker_host=broker_host,
            broker_namespace=broker_namespace,
            broker_topic_maxlen=broker_topic_maxlen,
            contexts_cache_host=contexts_cache_host,
            internal_api_key=internal_api_key,
            passphrase_file=passphrase_file,
            passphrase=passphrase,
            new_passphrase=new_passphrase,
            passphrase_prompt=passphrase_prompt,
            sources={} if sources is None else sources,
        )

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in _REPR_FIELDS)
        return f"{type(self).__qualname__}({shown})"

    def _compared(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in _COMPARED_FIELDS)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Settings) and other.__class__ is self.__class__:
            return self._compared() == other._compared()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._compared())

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


#: The fields :meth:`Settings.__repr__` shows and those :meth:`Settings.__eq__` and ``hash`` compare, in order.
_REPR_FIELDS = tuple(f.name for f in fields(Settings) if f.repr)
_COMPARED_FIELDS = tuple(f.name for f in fields(Settings) if f.compare)


#: Largest config file read, bytes (reading stops past it: ``--config /dev/zero`` ends at once).
MAX_CONFIG_BYTES = 1 << 20


def read_config(path: Path) -> dict[str, Any]:
    """Read a TOML config file (tomllib), at most :data:`MAX_CONFIG_BYTES`.

    Returns ``{}`` when the file does not exist.

    Raises:
        ConfigError: unreadable or too large file, bad TOML, or an unknown setting name.
    """
    try:
        raw = read_capped(path, MAX_CONFIG_BYTES)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {path} is larger than {MAX_CONFIG_BYTES} bytes; a config file is a few lines")
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
        ConfigError: a bad value (naming the setting, the value and what is allowed) from the
            environment or the config file, a key of ``flags`` that is no setting name (nor
            ``config_path``), an unreadable, too large or invalid config file (exit 3).
        InvalidArgument: a bad value in ``flags`` (exit 2), e.g. a path holding a NUL character.
    """
    unknown = sorted(set(flags or {}) - set(_BY_NAME) - {"config_path"}, key=str)
    if unknown:  # a misspelled key must not fall back to the default, as in the config file
        known = ", ".join(["config_path", *(s.name for s in SPECS)])
        raise ConfigError(f"unknown setting {shown(unknown[0])}; known: {known}")
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    env = os.environ if environ is None else environ
    sources: dict[str, str] = {}

    config_path, sources["config_path"] = _config_path(flags.get("config_path"), env)
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
        values[spec.name] = _parsed(spec.name, spec.env, spec.parse, raw, src)
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


def load_config_path(environ: Mapping[str, str] | None = None, flag: str | None = None) -> Path:
    """The config file path: ``flag`` (the argument naming it), else ``PRISME_KEYS_CONFIG``, else the platform default.

    Raises:
        InvalidArgument: ``flag`` is not a usable path (exit 2).
        ConfigError: ``PRISME_KEYS_CONFIG`` is not a usable path (exit 3).
    """
    return _config_path(flag, os.environ if environ is None else environ)[0]


def _config_path(flag: Any, env: Mapping[str, str]) -> tuple[Path, str]:
    """``(config file path, its source)`` from the argument, the environment or the default."""
    if flag:
        return _parsed("config_path", "PRISME_KEYS_CONFIG", setting_values.optional_path, flag, "flag"), "flag"
    if env.get("PRISME_KEYS_CONFIG"):
        src = "env:PRISME_KEYS_CONFIG"
        return _parsed(
            "config_path", "PRISME_KEYS_CONFIG", setting_values.optional_path, env["PRISME_KEYS_CONFIG"], src
        ), src
    return default_config_path(), "default"


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
