"""``plan``: the rotation schedule ahead, as a timeline chart, an event list, JSON or an SVG picture."""

# No ``from __future__ import annotations`` here: see prisme_keys.cli.app (start-up time).
import os
import stat
from datetime import datetime
from typing import TYPE_CHECKING, Optional

import typer

from prisme_keys.cli.app import app, state
from prisme_keys.cli.common import VERIFIER_CACHE_HELP, verifier_cache_flag
from prisme_keys.errors import UsageError

if TYPE_CHECKING:  # store.schedule (with rotation and jwk) is loaded by plan itself: 5 ms of every start
    from prisme_keys.store.schedule import Event, Schedule


def _day(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%d %H:%M")


def _detail(e: "Event") -> str:
    if e.kind == "prune":
        return "removed (past its expiresAt: every token it signed has expired)"
    if e.kind == "activation":
        return f"starts signing; {e.replaces} retires (verifies only)" if e.replaces else "starts signing"
    if e.signs_from is not None and e.signs_from > e.at:
        return f"published as next; signs from {_day(e.signs_from)}"
    return f"signs at once; {e.replaces} retires (verifies only)" if e.replaces else "signs at once"


def title(sched: "Schedule", what: str) -> str:
    """The chart's title line: what is shown and its window (UTC)."""
    return f"{what}; chart from {_day(sched.start)} to {_day(sched.end)} UTC, today {_day(sched.now)}"


def check_svg_target(path: str) -> None:
    """Refuse an ``--svg`` target that is not a regular file (a folder, device or FIFO).

    Raises:
        UsageError: naming ``--svg``.
    """
    try:
        st = os.stat(path)
    except OSError:
        return
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"--svg {path[:200]} is not a regular file; give the path of the SVG file to write")


def _days_in_range(value: Optional[int]) -> Optional[int]:
    """``--days`` from 1 to ``store.schedule.MAX_DAYS``, checked when given (Click's range message)."""
    if value is not None:
        from prisme_keys.store.schedule import MAX_DAYS

        if not 1 <= value <= MAX_DAYS:
            raise typer.BadParameter(f"{value} is not in the range 1<=x<={MAX_DAYS}.")
    return value


@app.command()
def plan(
    ctx: typer.Context,
    days: Optional[int] = typer.Option(
        None,
        "--days",
        metavar="N",
        callback=_days_in_range,
        help="Days to simulate, at most ten years (default: two rotation periods plus ACCESS_TOKENS_MAX_AGE).",
    ),
    svg: Optional[str] = typer.Option(None, "--svg", metavar="FILE", help="Also write the chart to FILE as SVG."),
    verifier_cache: Optional[str] = typer.Option(
        None, "--verifier-cache", metavar="DURATION", help=VERIFIER_CACHE_HELP
    ),
) -> None:
    """Show the rotation schedule ahead: the cron job (rotate, then prune, every hour) simulated on
    the key file with the current settings, the same rules the commands apply; nothing is written.

    Prints a timeline (one row per key, existing and future: next, signing, retired and expired
    spans on a shared date axis, a marker for today, the JWKS size over time), the events with
    their dates, and the settings checked against each other with suggested values. --json: the
    events, per-key spans, JWKS sizes and findings as one document.
    """
    from prisme_keys import clock
    from prisme_keys.cli import output, timeline
    from prisme_keys.store import lifecycle

    st = state(ctx)
    verifier_cache_flag(st, verifier_cache)
    s = st.settings
    if svg is not None:
        from prisme_keys.cli.common import check_out

        check_svg_target(svg)
        check_out(svg, private=False, key_file=s.key_file, flag="--svg", force_flag=None, dash_is_stdout=False)
    res = lifecycle.plan(s, st.now(), days)
    sched = res.schedule
    head = title(sched, f"Rotation plan for {res.days} day{'s' if res.days != 1 else ''}")
    if svg is not None:
        from prisme_keys.cli.common import write_file

        write_file(timeline.svg(sched, head), svg, private=False, key_file=s.key_file, flag="--svg", force_flag=None)
    if st.json:
        doc = {
            "days": res.days,
            "settings": {
                "rotation_days": s.rotation_days,
                "access_tokens_max_age": s.access_tokens_max_age,
                "publication_lead": s.publication_lead,
                "verifier_cache": s.verifier_cache,
                "alg": s.alg,
                "size": s.size,
            },
            **sched.to_dict(),
            "findings": [f.to_dict() for f in res.findings],
        }
        output.emit_json(doc)
        return
    timeline.print_chart(output.console(), sched, head)
    d = clock.format_duration
    output.line()
    output.line(
        f"Cron: rotate then prune every hour. JWKS_ROTATION_DAYS={s.rotation_days}, "
        f"ACCESS_TOKENS_MAX_AGE={d(s.access_tokens_max_age)}, publication lead {d(s.publication_lead)}, "
        f"new keys {s.alg} {s.size} bits."
    )
    output.line()
    if sched.events:
        output.table(
            ["date (UTC)", "event", "key", "detail"], [[_day(e.at), e.kind, e.kid, _detail(e)] for e in sched.events]
        )
    else:
        output.line("No rotation or prune in this window.")
    output.line("")
    if res.findings:
        output.findings(res.findings)
    else:
        output.line("Settings checks: nothing to report.")
    if svg is not None:
        output.note(f"wrote the chart to {svg}", quiet=st.quiet)
