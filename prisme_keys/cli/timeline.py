"""The rotation timeline chart (rich): one row per key on a shared date axis, a today marker, the JWKS size.

Used by ``plan`` (the simulated schedule) and ``list --timeline`` (the keys in the file). Each
cell covers an equal slice of the window and shows the state the key spent most of that slice
in; a key present for any part of a slice is drawn. ``rich`` is imported only here, when a chart
is drawn.
"""

from __future__ import annotations

import io
from datetime import datetime
from typing import Any

from prisme_keys.store.schedule import JwksSize, KeyTimeline, Schedule

#: state -> (character, colour); the characters alone tell the states apart without colour.
STATES = {
    "signing": ("█", "green"),
    "next": ("░", "cyan"),
    "retired": ("▒", "yellow"),
    "expired": ("×", "red"),
}
_PRIORITY = ("signing", "next", "retired", "expired")
LABEL = 14
MAX_COLUMNS = 72
MIN_COLUMNS = 20
#: Rows drawn at most (a schedule with daily rotations over years has thousands of keys).
MAX_ROWS = 40
SPARK = "▁▂▃▄▅▆▇█"


def columns_for(width: int) -> int:
    """Chart columns that fit a console ``width`` (at most :data:`MAX_COLUMNS`)."""
    return max(MIN_COLUMNS, min(MAX_COLUMNS, width - LABEL - 2))


def _cell(key: KeyTimeline, a: datetime, b: datetime) -> str | None:
    """The state ``key`` spent most of ``[a, b)`` in, or ``None`` when it was absent throughout."""
    best: tuple[float, int, str] | None = None
    for s in key.spans:
        lo, hi = max(a, s.start), b if s.end is None else min(b, s.end)
        if hi > lo:
            cand = ((hi - lo).total_seconds(), -_PRIORITY.index(s.state), s.state)
            best = cand if best is None or cand > best else best
    return best[2] if best else None


def _jwks_at(points: list[JwksSize], a: datetime, b: datetime) -> JwksSize | None:
    """The largest published set (by bytes) during ``[a, b)``."""
    inside = [p for p in points if a < p.at < b]
    before = [p for p in points if p.at <= a]
    cands = inside + (before[-1:] if before else [])
    return max(cands, key=lambda p: (p.bytes, p.keys)) if cands else None


def _axis(sched: Schedule, cols: int) -> tuple[list[datetime], int, str]:
    span = sched.end - sched.start
    edges = [sched.start + span * i / cols for i in range(cols + 1)]
    today = min(cols - 1, max(0, int((sched.now - sched.start) / span * cols))) if span.total_seconds() else 0
    fmt = "%m-%d %H:%M" if span.total_seconds() <= 3 * 86400 else "%Y-%m-%d"
    return edges, today, fmt


def chart(sched: Schedule, cols: int) -> tuple[list[Any], list[str]]:
    """The chart: rich ``Text`` rows (axis, today marker, one row per key, JWKS keys and bytes), and
    footer lines (the JWKS size range, the legend)."""
    from rich.text import Text

    edges, today, fmt = _axis(sched, cols)
    pad = " " * (LABEL + 1)
    step = len(edges[0].strftime(fmt)) + 2
    labels, ticks = [" "] * (cols + step), [" "] * cols
    for i in range(0, cols, step):
        for j, ch in enumerate(edges[i].strftime(fmt)):
            labels[i + j] = ch
        ticks[i] = "|"
    ticks[today] = "▼"
    lines = [Text(pad + "".join(labels).rstrip()), Text(pad + "".join(ticks).rstrip())]
    lines[1].stylize("bold magenta", LABEL + 1 + today, LABEL + 2 + today)
    shown = sched.keys if len(sched.keys) <= MAX_ROWS else _rows_around_today(sched.keys, sched.now)
    for key in shown:
        label = key.kid if len(key.kid) <= LABEL else key.kid[: LABEL - 1] + "…"
        row = Text(label.ljust(LABEL) + " ", style="italic" if key.future else "bold")
        for i in range(cols):
            state = _cell(key, edges[i], edges[i + 1])
            if state is None:
                row.append("┊" if i == today else " ", style="magenta" if i == today else "")
            else:
                ch, colour = STATES[state]
                row.append(ch, style=colour)
        row.rstrip()
        lines.append(row)
    if len(shown) < len(sched.keys):
        lines.append(
            Text(f"({len(sched.keys) - len(shown)} more keys not drawn: {len(sched.keys)} in all)", style="dim")
        )
    lines += _jwks_rows(sched, edges, cols)
    counts = [p.keys for p in sched.jwks if p.keys] or [0]
    sizes = [p.bytes for p in sched.jwks if p.keys] or [0]
    keys = f"{min(counts)} to {max(counts)} keys" if min(counts) != max(counts) else _plural(counts[0], "key")
    size = f"{min(sizes)} to {max(sizes)} bytes" if min(sizes) != max(sizes) else _plural(sizes[0], "byte")
    footer = [
        f"JWKS published: {keys}, {size} (compact JSON)",
        "█ signing  ░ next (published, not signing yet)  ▒ retired (verifies only)  "
        "× expired (not pruned yet)  ▼ today" + ("  new-N: keys rotate will create" if _has_future(sched) else ""),
    ]
    return lines, footer


def _rows_around_today(keys: list[KeyTimeline], now: datetime) -> list[KeyTimeline]:
    """At most :data:`MAX_ROWS` keys: those present today, then the next ones created, oldest first."""
    first = next((i for i, k in enumerate(keys) if k.state_at(now) is not None), 0)
    first = max(0, min(first, len(keys) - MAX_ROWS))
    return keys[first : first + MAX_ROWS]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _has_future(sched: Schedule) -> bool:
    return any(k.future for k in sched.keys)


def _jwks_rows(sched: Schedule, edges: list[datetime], cols: int) -> list[Any]:
    from rich.text import Text

    cells = [_jwks_at(sched.jwks, edges[i], edges[i + 1]) for i in range(cols)]
    top = max((p.bytes for p in sched.jwks), default=0)
    keys, size = Text("JWKS keys".ljust(LABEL) + " "), Text("JWKS bytes".ljust(LABEL) + " ")
    for p in cells:
        keys.append(" " if p is None or not p.keys else (str(p.keys) if p.keys < 10 else "+"))
        level = 0 if p is None or not top else max(1, -(-p.bytes * len(SPARK) // top))
        size.append(" " if level == 0 else SPARK[level - 1], style="blue")
    return [keys, size]


def print_chart(console: Any, sched: Schedule, title: str) -> None:
    """Print ``title`` and the chart on a rich ``console`` (no wrapping: long rows are cropped)."""
    rows, footer = chart(sched, columns_for(console.width))
    console.print(title, markup=False, highlight=False)
    for ln in rows:
        console.print(ln, no_wrap=True, overflow="crop", crop=True)
    for text in footer:
        console.print(text, markup=False, highlight=False)


def svg(sched: Schedule, title: str) -> str:
    """The chart as an SVG document (rich's recorded console export), ``MAX_COLUMNS`` wide."""
    from rich.console import Console

    console = Console(
        record=True,
        file=io.StringIO(),
        width=LABEL + 2 + MAX_COLUMNS + 8,
        force_terminal=True,
        color_system="truecolor",
        highlight=False,
    )
    print_chart(console, sched, title)
    return console.export_svg(title="prisme-keys")
