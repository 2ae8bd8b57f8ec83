"""Helpers shared by the command modules (no typer needed here)."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

from prisme_keys.errors import UsageError
from prisme_keys.text import strip_bom_bytes


def when(iso_time: Optional[str], now: datetime) -> str:
    """``on 2026-12-29 08:00 UTC (in 30 days)`` for an ISO time relative to ``now``, or ``""``."""
    if not iso_time:
        return ""
    from prisme_keys import clock

    dt = clock.parse_iso(iso_time)
    return f"on {dt.strftime('%Y-%m-%d %H:%M')} UTC ({clock.humanize(dt, now)})"


def duration(value: str, flag: str) -> int:
    """A duration option's value in whole seconds (``90s``, ``15m``, ``2h``, ``30d`` or seconds).

    Raises:
        UsageError: naming ``flag`` and the accepted forms.
    """
    from prisme_keys import clock

    try:
        return clock.parse_duration(value)
    except ValueError as exc:
        raise UsageError(f"{flag}: {exc}") from None


def keygen(st: Any) -> Any:
    """The ``(bits, alg) -> private JWK`` generator of writing commands: a spinner on stderr for 3072 bits or more."""
    from prisme_keys import jwk as jwk_rules
    from prisme_keys.cli import output

    def gen(bits: int, alg: str) -> jwk_rules.RSAJwk:
        with output.spinner(f"generating a {bits}-bit RSA key...", enabled=bits >= 3072 and not st.quiet):
            return jwk_rules.generate_jwk(bits, alg)

    return gen


def _to_stdout(out: Optional[Path | str]) -> bool:
    return out is None or str(out) == "-"


def refuse_private_on_terminal(out: Optional[Path | str], to_terminal: bool) -> None:
    """Refuse private key material bound for stdout when stdout is a terminal (unless ``to_terminal``).

    Raises:
        UsageError: naming the ways out (``--out FILE``, a pipe or redirect, ``--to-terminal``).
    """
    from prisme_keys.cli.output import is_tty

    if _to_stdout(out) and not to_terminal and is_tty(sys.stdout):
        raise UsageError(
            "refusing to print private key material on a terminal; "
            "use --out FILE, a pipe or a redirect, or add --to-terminal"
        )


def check_out(
    out: Optional[Path | str],
    *,
    private: bool,
    key_file: Optional[Path | str],
    force: bool = False,
    flag: str = "--out",
    force_flag: Optional[str] = "--force",
    dash_is_stdout: bool = True,
) -> None:
    """Check an output file option before any work (see :func:`prisme_keys.store.files.check_output`).

    Args:
        dash_is_stdout: ``-`` names standard output (``--out``), not a file (``--svg``, ``--junit``).

    Raises:
        UsageError: worded with ``flag``, and ``force_flag`` as the way to replace a protected file.
    """
    if out is None or (dash_is_stdout and _to_stdout(out)):
        return
    from prisme_keys.store import files

    try:
        files.check_output(out, private=private, key_file=key_file, force=force)
    except UsageError as exc:
        raise _out_error(exc, out, flag, force_flag) from None


def write_file(
    text: str,
    path: Path | str,
    *,
    private: bool,
    key_file: Optional[Path | str],
    force: bool = False,
    flag: str = "--out",
    force_flag: Optional[str] = "--force",
) -> None:
    """Write ``text`` to the file ``path`` named by ``flag`` (atomic; 0600 when ``private``, else 0644).

    It never replaces the key file, a lock file or a file holding private key material, and a
    private document never replaces an existing file, unless ``force``.

    Raises:
        UsageError: ``path`` is a folder, a device, or protected (worded with ``flag``).
        KeyFileError: ``path`` cannot be written (exit 4, naming the file and the error).
    """
    from prisme_keys.store import files

    try:
        files.write_output(path, text, private=private, key_file=key_file, force=force)
    except UsageError as exc:
        raise _out_error(exc, path, flag, force_flag) from None


def _out_error(exc: UsageError, out: Any, flag: str, force_flag: Optional[str]) -> UsageError:
    if exc.code == "output_is_folder":
        return UsageError(f"{flag} {out} is a folder; name a file to write", code=exc.code)
    if exc.code == "output_not_regular":
        return UsageError(
            f"{flag} {out} is not a regular file (a device or FIFO); "
            "write to a file, or to stdout through a pipe or redirect",
            code=exc.code,
        )
    if exc.code == "output_protected":
        way = f"add {force_flag} to replace it" if force_flag else "choose another file"
        return UsageError(f"{flag}: {exc.message}; {way}", code=exc.code)
    return exc


def write_result(
    text: str,
    out: Optional[Path | str],
    *,
    private: bool,
    to_terminal: bool = False,
    key_file: Optional[Path | str] = None,
    force: bool = False,
    flag: str = "--out",
    force_flag: Optional[str] = "--force",
) -> None:
    """Write a command's document to ``out`` (atomic; 0600 when ``private``) or to stdout.

    Private material goes to stdout only when stdout is not a terminal, or ``to_terminal``.
    ``out`` never replaces the key file, a lock file or a file holding private key material,
    and a private document never replaces an existing file, unless ``force``.

    Raises:
        UsageError: private material bound for a terminal without ``to_terminal``; ``out`` is a
            folder, a device, or protected (see :func:`check_out`).
        KeyFileError: ``out`` cannot be written (exit 4, naming the file and the error).
    """
    if out is not None and not _to_stdout(out):
        write_file(text, out, private=private, key_file=key_file, force=force, flag=flag, force_flag=force_flag)
        return
    if private:
        refuse_private_on_terminal(out, to_terminal)
    sys.stdout.write(text)
    sys.stdout.flush()


def text_option(value: Optional[str], flag: str) -> Optional[str]:
    """A free-text option's value (``--sub``, ``--iss``, ...): non-empty and valid UTF-8.

    On POSIX, command-line bytes that are not UTF-8 reach Python as lone surrogates; a claim must
    be UTF-8 JSON, so they are refused here with the byte named, instead of failing while signing.

    Raises:
        UsageError: an empty value, or one holding bytes that are not UTF-8.
    """
    if value is None:
        return None
    if not value.strip():
        raise UsageError(f"{flag}: empty value; give a non-empty text")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(value[exc.start])
        byte = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"character U+{code:04X}"
        raise UsageError(f"{flag}: not valid UTF-8 text ({byte} at character {exc.start + 1})") from None
    return value


def passphrase_prompt(prompt: str, confirm: bool) -> Optional[str]:
    """Ask for a passphrase on the terminal (``getpass``, no echo): the command line's
    :data:`prisme_keys.store.encryption.Prompt`.

    Args:
        prompt: the question (``Passphrase for keys.json: ``).
        confirm: a passphrase being set: ask twice.

    Returns:
        The passphrase, or ``None`` when stdin is not a terminal (a script is never asked) or at
        end of input.

    Raises:
        KeyFileError: code ``passphrase_mismatch``, the two answers differ.
    """
    from prisme_keys.cli.output import is_tty

    if not is_tty(sys.stdin):
        return None
    import getpass

    try:
        first = getpass.getpass(prompt)
        if confirm and getpass.getpass("Repeat the passphrase: ") != first:
            from prisme_keys.errors import KeyFileError

            raise KeyFileError("the passphrases differ; nothing was changed", code="passphrase_mismatch")
    except EOFError:
        return None
    return first


def read_stdin_capped(limit: int) -> bytes:
    """Read at most ``limit + 1`` bytes of stdin (binary), so callers can tell "too large" apart.

    Raises:
        UsageError: stdin is closed or unreadable.
    """
    try:
        return sys.stdin.buffer.read(limit + 1)
    except (AttributeError, ValueError, OSError) as exc:
        raise UsageError(f"cannot read standard input: {getattr(exc, 'strerror', None) or exc}") from None


def read_token_arg(arg: str, stdin: Any = None) -> str:
    """The token named by a command argument: the text itself, or ``-`` for stdin (size-capped).

    Raises:
        MalformedTokenError: empty or over 64 KiB, whitespace inside, not UTF-8 (exit 5).
    """
    from prisme_keys.tokens import jws

    if arg != "-":
        return jws.clean_token(arg)
    limit = jws.MAX_TOKEN_BYTES + 4096
    data = stdin.read(limit + 1) if stdin is not None else read_stdin_capped(limit)
    if len(data) > limit:  # reading stopped at limit + 1 bytes: the real size is unknown
        raise jws.too_large(limit, more=True)
    return jws.clean_token(strip_bom_bytes(data))


VERIFIER_CACHE_HELP = (
    "Longest time the verifiers cache the JWKS: seconds or a duration like 10m "
    "(also PRISME_KEYS_VERIFIER_CACHE; default 600, the reference gateway's jwks-rsa); "
    "the publication lead is checked against it."
)


def verifier_cache_flag(st: Any, value: Optional[str]) -> None:
    """Put ``--verifier-cache VALUE`` into the invocation's settings (flag precedence).

    Raises:
        UsageError: VALUE is not seconds or a duration (exit 2).
    """
    if value is None:
        return
    from prisme_keys import settings as settings_mod
    from prisme_keys.errors import ConfigError

    try:
        secs = settings_mod.parse_setting("verifier_cache", value)
    except ConfigError:
        raise UsageError(
            f"--verifier-cache: {value[:40]!r} is not a time; "
            "use seconds (0 or more) or a duration like 90s, 15m, 2h, 1d"
        ) from None
    st.set_setting_flags(verifier_cache=secs)
