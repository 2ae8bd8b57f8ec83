"""Text for people and text from files: the one home of escaping, capping and BOM handling.

* :func:`printable` escapes what must never reach a terminal raw: control characters (ESC of
  ANSI sequences, CR, LF, BEL, DEL, C1), bidirectional overrides and other invisible format
  characters. Every untrusted string (a kid, a claim, a server's header or body text) goes
  through it before human output.
* :func:`cap` / :func:`shown` shorten an echoed input to :data:`ECHO_LIMIT` characters and say
  how long it was, so a 100,000-character argument never becomes a 100 KB error line.
* :func:`decode_utf8` / :func:`strip_bom` accept a leading UTF-8 byte-order mark (``EF BB BF``,
  as Windows editors save it) on every text input: passphrase files, config TOML, JWKS, key
  files and records, claims files, PEM, tokens on stdin (:func:`strip_bom_bytes`).
* :func:`redact_url` masks the password of a URL (``https://user:***@host/``) wherever a URL is
  echoed: messages, reports, JSON, JUnit, ``config show``.
* :func:`read_capped` reads a file named by the user up to a size cap, so ``/dev/zero`` or a
  runaway pipe ends promptly instead of filling the memory.
* :func:`open_input` opens a file named by the user to read from (config, passphrase, JWKS,
  import, claims files) without ever waiting for a FIFO's writer.
* :func:`json_error` words a :class:`json.JSONDecodeError` as one phrase
  (``unterminated string starting at line 15 column 3``).

This module imports nothing from the package; every layer may use it.
"""

from __future__ import annotations

import json
import os
from typing import Any, BinaryIO

#: Longest echoed input, in characters, before :func:`cap` shortens it.
ECHO_LIMIT = 200
_BOM = "\ufeff"


def printable(text: str) -> str:
    """``text`` with every non-printable character escaped as in ``repr`` (``\\x1b``, ``\\r``, ``\\u202e``).

    Printable characters (letters of any script, spaces, punctuation) are kept as they are; only
    characters that could move the cursor, recolour the terminal, reorder the line or hide text
    are escaped, so the result is safe on a terminal and in one log line.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def cap(text: str, limit: int = ECHO_LIMIT, *, tail: int = 0) -> str:
    """``text`` escaped (:func:`printable`) and, when longer than ``limit`` characters, cut with its length.

    ``cap("x" * 100000)`` is ``"xxx…xxx... (100000 characters)"`` (``limit`` characters kept). With
    ``tail``, the last ``tail`` of the ``limit`` characters come from the end (an error's reason
    after a long path): ``"head... (100043 characters) ...: File name too long"``.
    """
    n = len(text)
    if n <= limit:
        return printable(text)
    tail = min(tail, limit)
    end = f" ...{printable(text[n - tail :])}" if tail else ""
    return f"{printable(text[: limit - tail])}... ({n} characters){end}"


def json_utf8(value: Any, **options: Any) -> str:
    """``json.dumps(value, ensure_ascii=False, **options)``, unless UTF-8 cannot encode that text (a
    lone surrogate, from a token's ``\\ud800`` escape): then ``ensure_ascii=True``, whose JSON escapes
    hold the same values. The one rule for JSON written to a UTF-8 stream (stdout, a file).

    Raises:
        what ``json.dumps`` raises (``TypeError``, ``ValueError``, ``RecursionError``).
    """
    text = json.dumps(value, ensure_ascii=False, **options)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, ensure_ascii=True, **options)
    return text


def shown(value: Any, limit: int = ECHO_LIMIT, *, as_json: bool = False) -> str:
    """An echoed value for a message, as ``{value!r}`` would show it (or as JSON with ``as_json``), capped.

    Strings are quoted as ``repr`` quotes them (so control characters are escaped); a value longer
    than ``limit`` characters keeps its first ``limit`` and says how long it was, so a
    100,000-character argument gives ``'xxx…'... (100000 characters)``, not a 100 KB line.
    """
    if isinstance(value, str):
        n = len(value)
        text = repr(value if n <= limit else value[:limit])
        return text if n <= limit else f"{text}... ({n} characters)"
    if as_json:
        try:
            text = json.dumps(value, ensure_ascii=False)
        except (RecursionError, ValueError, TypeError):
            text = f"<{type(value).__name__}>"
    else:
        try:
            text = repr(value)
        except RecursionError:
            text = f"<{type(value).__name__}>"
    return cap(text, limit)


def redact_url(url: str) -> str:
    """``url`` with its password masked as ``***``: ``https://user:***@host/jwks``; a lone user name
    (possibly a token) becomes ``***`` (``https://***@host/``). The one redactor of echoed URLs.

    Works on text, not a parse, so a malformed URL is redacted too: the authority is what follows
    ``scheme://`` up to the first ``/``, and everything before its last ``@`` is the userinfo (RFC 3986
    section 3.2.1), so an unencoded ``?`` or ``#`` in a password is masked as well. A URL without
    userinfo is returned as it is.
    """
    import re

    m = re.match(r"([A-Za-z][A-Za-z0-9+.-]*://)([^/]*)", url)
    if not m or "@" not in m.group(2):
        return url
    userinfo, _, hostport = m.group(2).rpartition("@")
    user, colon, _ = userinfo.partition(":")
    masked = f"{user}:***" if colon else "***"
    return f"{m.group(1)}{masked}@{hostport}{url[m.end() :]}"


def strip_bom(text: str) -> str:
    """``text`` without one leading UTF-8 byte-order mark (U+FEFF)."""
    return text[1:] if text.startswith(_BOM) else text


#: The UTF-8 byte-order mark as bytes (``EF BB BF``).
BOM_BYTES = _BOM.encode("utf-8")


def strip_bom_bytes(data: bytes) -> bytes:
    """``data`` without one leading UTF-8 byte-order mark (:data:`BOM_BYTES`): a token or tokens read
    from stdin, as a Windows editor saves a text file."""
    return data[len(BOM_BYTES) :] if data.startswith(BOM_BYTES) else data


def decode_utf8(data: bytes) -> str:
    """Decode UTF-8 text, dropping one leading byte-order mark.

    Raises:
        UnicodeDecodeError: the bytes are not UTF-8.
    """
    return data.decode("utf-8-sig")


def read_capped(path: Any, limit: int) -> bytes:
    """At most ``limit + 1`` bytes of the file at ``path`` (a regular file, pipe or device), so the
    caller tells "too large" (``len(result) > limit``) from "fits" without reading the rest.

    Args:
        path: a file name (``str`` or ``os.PathLike``).
        limit: the largest size the caller accepts, in bytes.

    Raises:
        OSError: the file cannot be opened or read.
    """
    with open_input(path) as fh:  # never waits for a FIFO's writer
        return fh.read(limit + 1)


def json_error(exc: json.JSONDecodeError) -> str:
    """One phrase for a JSON syntax error: ``unterminated string starting at line 15 column 3``.

    The standard library's own wording (``Unterminated string starting at: line 15 column 3
    (char 301)``) repeats "at" when a position is appended; this one does not.
    """
    msg = exc.msg.rstrip(": ")
    if msg.endswith(" at"):
        msg = msg[: -len(" at")]
    msg = msg[:1].lower() + msg[1:]
    return f"{msg} at line {exc.lineno} column {exc.colno}"


def open_input(path: str | os.PathLike[str]) -> BinaryIO:
    """Open ``path`` for reading in binary mode without waiting for a FIFO's writer.

    A pipe (``<(pass show x)``, a FIFO) is read as it is; ``open()`` would block until a writer
    opens a named FIFO, forever when nobody does (cron stuck). Opened with ``O_NONBLOCK`` and then
    back in blocking mode, a FIFO nobody writes to reads as empty (end of file) at once.

    Raises:
        OSError: as ``open()`` (``FileNotFoundError``, ``PermissionError``, ...); a folder opens and
        fails on the first read with ``IsADirectoryError``.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except OSError:
        os.close(fd)
        raise
