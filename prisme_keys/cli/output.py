"""Rendering: one JSON document for programs, plain lines and rich tables for people.

Results go to stdout, diagnostics to stderr. Colour is off when the stream is not a
terminal or ``NO_COLOR`` is set. ``rich`` is imported only when a table or spinner is
drawn, so quick commands start fast.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from prisme_keys.errors import EXIT_INTERRUPTED
from prisme_keys.text import cap, json_utf8, printable

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
    return _json(doc) + "\n"


def _json(value: Any, level: int = 0) -> str:
    """``value`` as :func:`json_text` writes it (no trailing newline), nested ``level`` deep in an
    indented document: every line after the first indented by ``2 * level`` more spaces.

    UTF-8 text where it can be encoded, else the whole value with JSON escapes (``ensure_ascii``).
    A JSON string never holds a raw line break, so each ``\\n`` of the text starts a line.
    """
    text = json_utf8(value, indent=2, default=str)
    return text.replace("\n", "\n" + "  " * level) if level else text


class JsonStream:
    """One JSON document written a member at a time, for a list of any length with flat memory.

    The document is a list (``key=None``), or an object whose first member ``key`` holds the list
    and whose other members (counts known only at the end) follow it, given to :meth:`close`. The
    text goes to ``write`` as each member is added (nothing is kept here) and is byte for byte what
    :func:`json_text` writes for the whole document, ``[]`` and ``"key": []`` included, with one
    difference: text UTF-8 cannot encode (a lone surrogate) makes :func:`json_text` escape the
    whole document, here only the member holding it (the document stays valid JSON holding the
    same values; a member that is plain ASCII is the same bytes either way).

    The opening bracket goes out with the first member: a run that fails before its first member
    has written nothing. ``flush`` (optional) is called after :meth:`close` wrote the end.

    Attributes:
        count: the members added so far.
    """

    def __init__(
        self, write: Callable[[str], object], key: str | None = None, flush: Callable[[], object] | None = None
    ) -> None:
        self._write, self._key, self._flush = write, key, flush
        self._level = 1 if key is None else 2  # the members' nesting depth
        self.count = 0
        self._closed = False

    def _opening(self) -> str:
        return "[" if self._key is None else "{\n  " + _json(self._key) + ": ["

    def add(self, member: Any) -> None:
        """Write ``member`` (any value :func:`json_text` takes) as the next item of the list.

        Raises:
            ValueError: the document is already closed.
        """
        if self._closed:
            raise ValueError("the JSON document is closed")
        head = ",\n" if self.count else self._opening() + "\n"
        self._write(head + "  " * self._level + _json(member, self._level))
        self.count += 1

    def close(self, tail: Mapping[str, Any] | None = None) -> None:
        """Write the end of the document: the list's ``]``, then (an object) the ``tail`` members in
        order and the ``}``, and the trailing newline; then ``flush``. A second call does nothing.

        Raises:
            ValueError: ``tail`` given for a document that is a list.
        """
        if self._closed:
            return
        if tail and self._key is None:
            raise ValueError("a JSON list has no members after its items")
        self._closed = True
        text = "\n" + "  " * (self._level - 1) + "]" if self.count else self._opening() + "]"
        if self._key is not None:
            text += "".join(",\n  " + _json(name) + ": " + _json(value, 1) for name, value in (tail or {}).items())
            text += "\n}"
        self._write(text + "\n")
        if self._flush is not None:
            self._flush()

    def close_begun(self, tail: Mapping[str, Any] | None = None) -> None:
        """:meth:`close` when the document has begun (a member was written), else nothing: for a run
        stopped by an error or Ctrl-C, whose stdout must then hold one whole document or none."""
        if self.count:
            self.close(tail)


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
    """Write one line of plain text on stdout.

    Every non-printable character is escaped (:func:`prisme_keys.text.printable`), line breaks
    too: a path or other input echoed in it (``created new\\nline.json: ...``) keeps the message
    on one line. Text laid out on several lines goes through :func:`block`.
    """
    sys.stdout.write(printable(text) + "\n")
    sys.stdout.flush()


def block(text: str) -> None:
    """Write text laid out on several lines on stdout: each ``\\n`` is a line break of the
    layout, every other non-printable character is escaped (:func:`printable_lines`)."""
    sys.stdout.write(printable_lines(text) + "\n")
    sys.stdout.flush()


def note(text: str, *, quiet: bool = False) -> None:
    """Write one informational line on stderr (suppressed by ``--quiet``).

    Every non-printable character is escaped, line breaks too (see :func:`line`).
    """
    if not quiet:
        sys.stderr.write(printable(text) + "\n")
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


def interrupted(as_json: bool) -> None:
    """Report Ctrl-C (SIGINT) on stderr: ``prisme-keys: interrupted``, or (``--json``) the error
    object of code ``interrupted``."""
    if as_json:
        error("interrupted", code="interrupted", exit_code=EXIT_INTERRUPTED, as_json=True)
    else:
        sys.stderr.write("prisme-keys: interrupted\n")
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
    """Draw a table on stdout: rich on a terminal; off a terminal, plain ASCII (box ASCII2, no outer edge).

    Off a terminal the plain text is written without importing rich (about 40 ms of start-up):
    the same characters rich draws there. Rich still draws a table with a title, cells that are
    not printable ASCII, tables wider than 250 columns (it folds them), and whenever rich would
    see a terminal (``FORCE_COLOR``, ``TTY_COMPATIBLE=1``). Cells are text, never rich markup.

    ``status_column``: the index of a column whose values (``pass``, ``warn``, ``fail``,
    ``error``, ``warning``, ``info``) are coloured by :data:`STATUS_STYLES` on a terminal.

    Cells are plain text, never rich markup, with non-printable characters escaped: a kid such as
    ``[red]x`` or ``evil\\x1b[31m`` is shown as it is spelled.
    """
    cells = [[str(v) if v is not None else "" for v in row] for row in rows]
    if title is None and not _rich_sees_terminal():
        text = plain_table(columns, cells)
        if text is not None:
            sys.stdout.write(text)
            sys.stdout.flush()
            return
    from rich import box
    from rich.table import Table
    from rich.text import Text

    con = console()
    tbl = Table(title=title, box=box.SIMPLE_HEAD if con.is_terminal else box.ASCII2, show_edge=False)
    for c in columns:
        tbl.add_column(Text(c), overflow="fold")
    for row in cells:
        texts = [Text(printable(c)) for c in row]  # plain text, control characters escaped
        if status_column is not None:
            value = row[status_column]
            texts[status_column] = Text(printable(value), style=STATUS_STYLES.get(value, ""))
        tbl.add_row(*texts)
    con.print(tbl)


def _rich_sees_terminal() -> bool:
    """Whether rich's ``Console`` would treat stdout as a terminal (its ``is_terminal`` rules)."""
    compatible = os.environ.get("TTY_COMPATIBLE", "")
    if compatible in ("0", "1"):
        return compatible == "1"
    if os.environ.get("FORCE_COLOR") is not None:
        return os.environ.get("FORCE_COLOR") != ""
    return is_tty(sys.stdout)


def status_line(text: str, status: str) -> None:
    """Write one summary line on stdout; on a terminal its head (up to the first ``:``) is
    coloured by ``status`` (a key of :data:`STATUS_STYLES`)."""
    if not color_enabled(sys.stdout) or status not in STATUS_STYLES:
        line(text)
        return
    from rich.text import Text

    head, sep, rest = printable(text).partition(":")
    out = Text(head, style=STATUS_STYLES[status])
    out.append(sep + rest)
    console().print(out, soft_wrap=True)


def plain_table(columns: Sequence[str], cells: Sequence[Sequence[str]], width: int = 250) -> str | None:
    """The table rich draws off a terminal (box ASCII2, no outer edge, one space of padding), as text.

    Returns:
        The lines, each ending with a newline; ``None`` when a cell is not printable ASCII or the
        table is wider than ``width`` columns (then rich must fold it).
    """
    all_rows = [list(columns), *cells]
    if not all(c.isascii() and c.isprintable() for row in all_rows for c in row):
        return None
    widths = [max(len(row[i]) for row in all_rows) for i in range(len(columns))]
    if sum(widths) + 3 * len(widths) - 1 > width:
        return None

    def line(row: Sequence[str]) -> str:
        return "|".join(f" {c.ljust(w)} " for c, w in zip(row, widths, strict=True))

    out = [line(columns), "+".join("-" * (w + 2) for w in widths), *(line(row) for row in cells)]
    return "\n".join(out) + "\n"


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
