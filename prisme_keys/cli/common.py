"""Helpers shared by the command modules (no typer needed here)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from ..errors import UsageError


def when(iso_time: Optional[str]) -> str:
    """``on 2026-12-29 08:00 UTC (in 30 days)`` for an ISO time, or ``""``."""
    if not iso_time:
        return ""
    from .. import clock

    dt = clock.parse_iso(iso_time)
    return f"on {dt.strftime('%Y-%m-%d %H:%M')} UTC ({clock.humanize(dt)})"


def _to_stdout(out: Optional[Path | str]) -> bool:
    return out is None or str(out) == "-"


def refuse_private_on_terminal(out: Optional[Path | str], to_terminal: bool) -> None:
    """Refuse private key material bound for stdout when stdout is a terminal (unless ``to_terminal``).

    Raises:
        UsageError: naming the ways out (``--out FILE``, a pipe or redirect, ``--to-terminal``).
    """
    from ..output import is_tty

    if _to_stdout(out) and not to_terminal and is_tty(sys.stdout):
        raise UsageError("refusing to print private key material on a terminal; "
                         "use --out FILE, a pipe or a redirect, or add --to-terminal")


def write_result(text: str, out: Optional[Path | str], *, private: bool, to_terminal: bool = False) -> None:
    """Write a command's document to ``out`` (atomic; 0600 when ``private``) or to stdout.

    Private material goes to stdout only when stdout is not a terminal, or ``to_terminal``.

    Raises:
        UsageError: private material bound for a terminal without ``to_terminal``.
        KeyFileError: ``out`` cannot be written.
    """
    if not _to_stdout(out):
        from ..keyfile import write_output

        write_output(out, text, private=private)
        return
    if private:
        refuse_private_on_terminal(out, to_terminal)
    sys.stdout.write(text)
    sys.stdout.flush()
