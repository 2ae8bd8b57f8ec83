"""What each setting accepts: the value parsers of :data:`prisme_keys.settings.SPECS`.

A parser takes a raw value (a string from the environment, a TOML value, or a value given as an
argument) and returns it typed, or raises :class:`~prisme_keys.errors.ConfigError` naming the
setting's environment variable, the value (capped: :func:`prisme_keys.text.shown`) and what is
allowed. :func:`prisme_keys.settings.load` adds where a bad value came from.

Raises (every parser):
    ConfigError: a value the setting does not accept.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prisme_keys.errors import ConfigError
from prisme_keys.text import shown


def _positive_int(name: str, value: Any, what: str) -> int:
    """``value`` as a positive whole number (digits only when a string); ``ValueError`` otherwise."""
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


def key_type(v: Any) -> str:
    """``RSA``, the only key type this tool manages (``JWKS_KTY``)."""
    if v != "RSA":
        raise ConfigError(f"bad value for JWKS_KTY: {shown(v)}; allowed: RSA (the only key type this tool manages)")
    return str(v)


def algorithm(v: Any) -> str:
    """A supported signature algorithm, ``RS256``/``RS384``/``RS512`` (``JWKS_ALG``; RFC 7518 section 3.3)."""
    from prisme_keys.jwk import SUPPORTED_ALGS

    if v not in SUPPORTED_ALGS:
        raise ConfigError(
            f"bad value for JWKS_ALG: {shown(v)}; allowed: RS256, RS384, RS512 "
            "(RSASSA-PKCS1-v1_5 only, as the gateway: PS256/PS384/PS512 and EC algorithms are not supported)"
        )
    return str(v)


def key_size(v: Any) -> int:
    """An RSA key size, bits: a whole number from 2048 to 16384, a multiple of 8 (``JWKS_SIZE``)."""
    try:
        n = _positive_int("JWKS_SIZE", v, "bits")
    except ValueError:
        n = None
    if n is None or n < 2048 or n > 16384 or n % 8:
        raise ConfigError(
            f"bad value for JWKS_SIZE: {shown(v)}; allowed: a whole number of bits from 2048 to 16384, a multiple of 8"
        )
    return n


def positive(env: str, unit: str, limit: int = 10**9) -> Callable[[Any], int]:
    """Parser of a positive whole number of ``unit`` up to ``limit`` (dates must stay within year 9999),
    for the setting ``env``."""

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


def seconds(env: str) -> Callable[[Any], float]:
    """Parser of a number of seconds (float) from 0 to :data:`MAX_SECONDS`, for the setting ``env``."""

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


def seconds_or_duration(env: str) -> Callable[[Any], float]:
    """Parser of plain seconds (``3600``, ``0.5``) or a duration (``90s``, ``15m``, ``2h``, ``1d``), 0 or more,
    for the setting ``env``; returns seconds (float)."""

    def parse(v: Any) -> float:
        try:
            return seconds(env)(v)
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


def boolean(env: str) -> Callable[[Any], bool]:
    """Parser of true/false (``1``/``0``, ``yes``/``no``, ``on``/``off``; empty is false), for the setting ``env``."""

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


def optional_text(v: Any) -> str | None:
    """The value as a string; ``None`` for ``None`` or an empty string (the setting is unset)."""
    if v is None:
        return None
    s = str(v)
    return s or None


def optional_path(v: Any) -> Path | None:
    """A path (``~`` expanded); ``None`` for ``None`` or ``""``. A name holding NUL is refused."""
    if v is None or v == "":
        return None
    if not isinstance(v, (str, os.PathLike)) or "\0" in str(v):  # the OS cannot open a name holding NUL
        raise ConfigError(f"bad value for a path setting: {shown(v)}; allowed: a path string without NUL characters")
    return Path(os.path.expanduser(str(v)))
