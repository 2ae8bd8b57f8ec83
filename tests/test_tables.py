"""cli/output.py: tables off a terminal are drawn without rich, the same characters rich draws."""

import io

from hypothesis import given, settings
from hypothesis import strategies as st

from prisme_keys.cli import output

_TEXT = st.text(st.sampled_from("abcXYZ019 -_:()[]/.,'\"|+=*#"), max_size=30)


def rich_ascii_table(columns, cells):
    """What rich draws for the table off a terminal (the renderer output.table used before)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    buf = io.StringIO()
    console = Console(file=buf, no_color=True, highlight=False, width=250, color_system=None)
    tbl = Table(box=box.ASCII2, show_edge=False)
    for c in columns:
        tbl.add_column(Text(c), overflow="fold")
    for row in cells:
        tbl.add_row(*(Text(c) for c in row))
    console.print(tbl)
    return buf.getvalue()


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 7).flatmap(
        lambda n: st.tuples(
            st.lists(_TEXT.filter(bool), min_size=n, max_size=n),
            st.lists(st.lists(_TEXT, min_size=n, max_size=n), max_size=6),
        )
    )
)
def test_plain_table_is_what_rich_draws(table):
    columns, cells = table
    plain = output.plain_table(columns, cells)
    if plain is None:  # wider than 250 columns: rich folds it
        assert sum(max(len(r[i]) for r in [columns, *cells]) + 3 for i in range(len(columns))) - 1 > 250
        return
    assert plain == rich_ascii_table(columns, cells)


def test_cells_are_text_not_markup(capsys):
    """A kid is data: rich markup ([bold]) and emoji codes (:smile:) are printed as they are."""
    output.table(["kid", "state"], [["[bold]k1:smile:", "signing"]])
    assert capsys.readouterr().out == (
        " kid             | state   \n-----------------+---------\n [bold]k1:smile: | signing \n"
    )
    wide = "w" * 300  # folded by rich: still text, not markup
    output.table(["kid", "note"], [["[red]k2", wide]])
    out = capsys.readouterr().out
    assert "[red]k2" in out and out.count("w") == 300


def test_non_ascii_cells_go_through_rich(capsys):
    output.table(["kid"], [["clé-ü"]])
    assert capsys.readouterr().out == " kid   \n-------\n clé-ü \n"
