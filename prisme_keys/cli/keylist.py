"""The two text forms of ``list``: a table that fits the terminal, and tab-separated lines for pipes.

On a terminal the kid is never wrapped nor cut (it is what ``mint --kid`` and ``notify
--created`` take): the table drops detail from the other columns until it fits, in this
order: the ``private`` column and the times of day, then the relative times (``in 30 days``),
then alg, bits and the creation date, then the rotation date, then the expiry date.

Piped (stdout not a terminal) the output is one line per key, newest first, no header, no
padding: nine tab-separated fields (:data:`TSV_FIELDS`), times in ISO-8601 UTC, ``-`` for a
missing value, control characters escaped as ``\\xNN``. ``--json`` stays the stable interface.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any

from prisme_keys import clock
from prisme_keys.text import printable

#: The fields of a piped ``list`` line, in order (``cut -f1`` gives the kids).
TSV_FIELDS = ("kid", "state", "alg", "bits", "createdAt", "activatesAt", "rotatesAt", "expiresAt", "private")

#: Colours of the key states on a terminal.
STATE_STYLES = {"signing": "green", "next": "cyan", "retired": "", "expired": "dim"}

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def tsv_field(value: Any) -> str:
    """One field: ``-`` for ``None`` or empty, control characters (tab, newline) as ``\\xNN``, other
    non-printable characters (lone surrogates, bidi overrides) escaped by :func:`prisme_keys.text.printable`."""
    text = "" if value is None else str(value)
    return printable(_CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)) or "-"


def write_tsv(rows: list[dict[str, Any]]) -> None:
    """Write the piped form of ``list`` on stdout: one tab-separated line per key (see module doc)."""
    sys.stdout.write("".join("\t".join(tsv_field(r.get(f)) for f in TSV_FIELDS) + "\n" for r in rows))
    sys.stdout.flush()


def _date(iso: str | None, now: datetime, *, time_of_day: bool, relative: bool) -> str:
    if not iso:
        return ""
    dt = clock.parse_iso(iso)
    text = dt.strftime("%Y-%m-%d %H:%M" if time_of_day else "%Y-%m-%d")
    return f"{text}\n{clock.humanize(dt, now)}" if relative else text


#: ``(column header, cell(row, now))`` for each column a layout may show.
Cell = Callable[[dict[str, Any], datetime], str]


def _layouts() -> list[list[tuple[str, Cell]]]:
    """Table layouts, richest first; the first that fits the terminal is drawn."""

    def state(long: bool) -> Cell:
        def cell(r: dict[str, Any], now: datetime) -> str:
            if r["state"] == "next" and long:
                return f"next\nfrom {r['activatesAt'][:10]}"
            return str(r["state"])

        return cell

    def date(member: str, time_of_day: bool, relative: bool) -> Cell:
        return lambda r, now: _date(r.get(member), now, time_of_day=time_of_day, relative=relative)

    def plain(member: str) -> Cell:
        return lambda r, now: "" if r.get(member) is None else str(r[member])

    kid: tuple[str, Cell] = ("kid", plain("kid"))
    alg_bits: list[tuple[str, Cell]] = [("alg", plain("alg")), ("bits", plain("bits"))]

    def dates(names: tuple[str, ...], time_of_day: bool, relative: bool) -> list[tuple[str, Cell]]:
        member = {"created": "createdAt", "rotates": "rotatesAt", "expires": "expiresAt"}
        return [(n, date(member[n], time_of_day, relative)) for n in names]

    every = ("created", "rotates", "expires")
    return [
        [kid, ("state", state(True)), *alg_bits, ("private", plain("private")), *dates(every, True, True)],
        [kid, ("state", state(True)), *alg_bits, *dates(every, False, True)],
        [kid, ("state", state(False)), *alg_bits, *dates(every, False, False)],
        [kid, ("state", state(False)), *dates(("rotates", "expires"), False, False)],
        [kid, ("state", state(False)), *dates(("expires",), False, False)],
        [kid, ("state", state(False))],
        [kid],
    ]


def print_table(rows: list[dict[str, Any]], now: datetime) -> None:
    """Draw ``list`` on the terminal: the richest layout whose widest rendering fits, kid never wrapped."""
    from rich import box
    from rich.measure import Measurement
    from rich.table import Table
    from rich.text import Text

    from prisme_keys.cli import output

    console = output.console()

    def build(layout: list[tuple[str, Cell]]) -> Table:
        tbl = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        for name, _ in layout:
            tbl.add_column(name, no_wrap=name == "kid", overflow="fold")
        for r in rows:
            cells = [Text(output.printable_lines(cell(r, now))) for _, cell in layout]  # plain text: never markup
            if len(layout) > 1:
                cells[1].stylize(STATE_STYLES.get(r["state"], ""))
            tbl.add_row(*cells)
        return tbl

    unbounded = console.options.update_width(1 << 16)  # measure the table's natural width
    for layout in _layouts():
        tbl = build(layout)
        if Measurement.get(console, unbounded, tbl).maximum <= console.width:
            console.print(tbl)
            return
    # a kid wider than the terminal: plain lines the terminal wraps softly (copied whole), never cut
    sys.stdout.write("".join(tsv_field(r["kid"]) + "\n" for r in rows))
    sys.stdout.flush()
