"""Rendering: one JSON document for programs, plain lines and rich tables for people.

Results go to stdout, diagnostics to stderr. Colour is off when the stream is not a
terminal or ``NO_COLOR`` is set. ``rich`` is imported only when a table or spinner is
drawn, so quick commands start fast.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from prisme_keys.text import cap, printable

#: Longest error line, characters: echoed inputs are capped one by one (:func:`prisme_keys.text.shown`);
#: this last cap holds for any message, such as one naming an over-long path.
MESSAGE_LIMIT = 1000


def is_tty(stream: Any) -> bool:
    """True when ``stream`` is an interactive terminal."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def console(stderr: bool = False) -> Any:
    """A rich ``Console`` on stdout (or stderr): colour only on a terminal without ``NO_COLOR``;
    not a terminal: 250 columns, so lines are not wrapped at 80."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    color = color_enabled(stream)
    tty = is_tty(stream)
    return Console(
        file=stream,
        no_color=not color,
        highlight=False,
        width=None if tty else 250,
        color_system="auto" if color else None,
    )


def json_text(doc: Any) -> str:
    """Serialize ``doc`` as indented JSON with a trailing newline.

    Text that UTF-8 cannot encode (a lone surrogate from a token's ``\\ud800`` escape) is written
    as JSON escapes, so the document stays valid JSON holding the same values.
    """
    text = json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(doc, indent=2, ensure_ascii=True, default=str) + "\n"
    return text


def plural(n: int, word: str) -> str:
    """``1 key``, ``2 keys``, ``0 warnings`` (English plurals by ``s``)."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def emit_json(doc: Any) -> None:
    """Write exactly one JSON document on stdout."""
    sys.stdout.write(json_text(doc))
    sys.stdout.flush()


def printable_lines(text: str) -> str:
    """``text`` with every non-printable character escaped except the line breaks the caller laid out.

    Untrusted strings (kids, claims, a server's text) can then never move the cursor, recolour
    the terminal or overwrite a line (CR): see :func:`prisme_keys.text.printable`.
    """
    return "\n".join(printable(part) for part in text.split("\n"))


def line(text: str = "") -> None:
    """Write one line of plain text on stdout (non-printable characters escaped)."""
    sys.stdout.write(printable_lines(text) + "\n")
    sys.stdout.flush()


def note(text: str, *, quiet: bool = False) -> None:
    """Write one informational line on stderr (suppressed by ``--quiet``; non-printable characters escaped)."""
    if not quiet:
        sys.stderr.write(printable_lines(text) + "\n")
        sys.stderr.flush()


def warn(text: str, *, quiet: bool = False) -> None:
    """Write ``warning: text`` on stderr (suppressed by ``--quiet``)."""
    note(f"warning: {text}", quiet=quiet)


def error(message: str, *, code: str, exit_code: int, as_json: bool) -> None:
    """Write an error on stderr: one line (control characters escaped), or ``{code, message, exit}`` (``--json``)."""
    if as_json:
        sys.stderr.write(json.dumps({"code": code, "message": message, "exit": exit_code}) + "\n")
    else:
        sys.stderr.write(f"prisme-keys: error: {cap(message, MESSAGE_LIMIT, tail=200)}\n")
    sys.stderr.flush()


#: Colours of the pass/warn/fail statuses of ``check`` and the severities of ``doctor``.
STATUS_STYLES = {
    "pass": "green",
    "ok": "green",
    "healthy": "green",
    "warn": "yellow",
    "warning": "yellow",
    "fail": "bold red",
    "error": "bold red",
    "FAILED": "bold red",
    "info": "cyan",
}


def color_enabled(stream: Any) -> bool:
    """Colour on ``stream``: a terminal, and ``NO_COLOR`` unset or empty (https://no-color.org)."""
    return is_tty(stream) and not os.environ.get("NO_COLOR")


def table(
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    title: str | None = None,
    status_column: int | None = None,
) -> None:
    """Draw a rich table on stdout (plain box characters when not a terminal).

    ``status_column``: the index of a column whose values (``pass``, ``warn``, ``fail``,
    ``error``, ``warning``, ``info``) are coloured by :data:`STATUS_STYLES` on a terminal.

    Cells are plain text, never rich markup, with non-printable characters escaped: a kid such as
    ``[red]x`` or ``evil\\x1b[31m`` is shown as it is spelled.
    """
    from rich import box
    from rich.table import Table
    from rich.text import Text

    con = console()
    tbl = Table(title=title, box=box.SIMPLE_HEAD if con.is_terminal else box.ASCII2, show_edge=False)
    for c in columns:
        tbl.add_column(c, overflow="fold")
    for row in rows:
        values = [str(v) if v is not None else "" for v in row]
        cells = [Text(printable(v)) for v in values]  # plain text, control characters escaped
        if status_column is not None:
            value = values[status_column]
            cells[status_column] = Text(printable(value), style=STATUS_STYLES.get(value, ""))
        tbl.add_row(*cells)
    con.print(tbl)


def status_line(text: str, status: str) -> None:
    """Write one summary line on stdout; on a terminal its head (up to the first ``:``) is
    coloured by ``status`` (a key of :data:`STATUS_STYLES`)."""
    if not color_enabled(sys.stdout) or status not in STATUS_STYLES:
        line(text)
        return
    from rich.text import Text

    head, sep, rest = printable_lines(text).partition(":")
    out = Text(head, style=STATUS_STYLES[status])
    out.append(sep + rest)
    console().print(out, soft_wrap=True)


@contextmanager
def spinner(text: str, *, enabled: bool = True) -> Iterator[None]:
    """Show a spinner on stderr while the block runs, only when stderr is a terminal."""
    if not enabled or not is_tty(sys.stderr):
        yield
        return
    with console(stderr=True).status(text):
        yield


def findings(items: Sequence[Any], heading: str = "Settings checks:") -> None:
    """Print settings findings (:class:`prisme_keys.store.settings_checks.SettingsFinding`) on stdout,
    one per line with its suggested value on the next: ``warning [code] reason`` / ``  suggested: value``."""
    line(heading)
    for f in items:
        line(f"  {f.severity} [{f.code}] {f.message}")
        line(f"    suggested: {f.suggestion}")
