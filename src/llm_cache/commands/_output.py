"""Terminal output of the cache commands: tables and progress bars drawn by ``rich`` (the
``cli`` extra), plain aligned text when rich is not installed.

Output stays scriptable: on a pipe, tables are printed without colour or box-drawing
characters and wide enough not to wrap (``--json`` is the stable format to parse).
"""

from __future__ import annotations

import os
import sys
from typing import IO, Any, Sequence

__all__ = ["have_rich", "print_table", "highlight", "rich_progress", "Cell"]

# A cell is plain text, or (text, [(start, end), ...]) spans to highlight.
Cell = Any

_PIPE_WIDTH = 240  # columns when stdout is not a terminal: wide rows stay on one line


def have_rich() -> bool:
    """Whether rich is importable (``LLM_CACHE_PLAIN=1`` forces the plain output)."""
    if os.environ.get("LLM_CACHE_PLAIN"):
        return False
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def _console(stream: IO[str], **options: Any) -> Any:
    from rich.console import Console

    terminal = stream.isatty()
    return Console(
        file=stream,
        width=None if terminal else _PIPE_WIDTH,
        no_color=not terminal,
        highlight=False,
        soft_wrap=False,
        **options,
    )


def highlight(text: str, spans: Sequence[tuple[int, int]]) -> Any:
    """``text`` with ``spans`` shown in reverse video (a rich Text), or ``text`` without rich."""
    if not have_rich():
        return text
    from rich.text import Text

    result = Text(text)
    for start, end in spans:
        result.stylize("bold reverse", start, end)
    return result


def print_table(
    columns: Sequence[str],
    rows: Sequence[Sequence[Cell]],
    *,
    right: Sequence[str] = (),
    stream: IO[str] | None = None,
    force_terminal: bool | None = None,
) -> None:
    """Print ``rows`` under ``columns`` (columns named in ``right`` are right-aligned)."""
    out = stream or sys.stdout
    if have_rich():
        from rich import box
        from rich.table import Table

        table = Table(box=box.SIMPLE_HEAD if out.isatty() or force_terminal else None, show_edge=False, pad_edge=False)
        for name in columns:
            table.add_column(name, justify="right" if name in right else "left", no_wrap=True, overflow="ellipsis")
        for row in rows:
            table.add_row(*row)
        console = _console(out, force_terminal=force_terminal)
        if out.isatty() or force_terminal:
            console.print(table)
            return
        with console.capture() as captured:
            console.print(table)
        # On a pipe: no trailing padding, so that rows compare and grep cleanly.
        out.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))
        return
    texts = [[str(cell) for cell in row] for row in rows]
    widths = [max([len(name)] + [len(r[i]) for r in texts]) for i, name in enumerate(columns)]

    def line(cells: Sequence[str]) -> str:
        parts = [c.rjust(w) if n in right else c.ljust(w) for c, w, n in zip(cells, widths, columns)]
        return "  ".join(parts).rstrip()

    print(line(list(columns)), file=out)
    for row_texts in texts:
        print(line(row_texts), file=out)


def rich_progress(stream: IO[str], unit: str) -> Any:
    """A rich Progress writing to ``stream`` (bar, percentage, items done, time), or None without rich."""
    if not have_rich():
        return None
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[count]} " + unit.replace("[", "\\[")),
        TimeElapsedColumn(),
        console=_console(stream),
        transient=False,
    )
