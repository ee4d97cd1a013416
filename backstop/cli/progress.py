"""A progress report for long runs: a rich bar on a terminal, plain lines without one.

On a terminal the bar, the count ("12/48") and the elapsed time keep their width and the note
after them (what the keeper did in that block) is cut to the columns left, so an 80-column
terminal still shows the bar and the count. Without a terminal (CI, a pipe, a log file) a bar
would print nothing useful, so a line with the count, the share done, the elapsed time and the note
is printed whenever a tenth of the run has passed, and at the end.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterator

Progress = Callable[[int, int, str], None]
# Lines printed without a terminal: one per this share of the run.
PLAIN_STEP = 0.1


@contextmanager
def progress_bar(label: str, total: int, console=None) -> Iterator[Progress]:
    """Yields progress(done, total, note)."""
    from rich.console import Console

    console = console or Console(stderr=False)
    if not console.is_terminal:
        yield PlainProgress(label, total, console.file)
        return
    with _rich_bar(label, total, console) as progress:
        yield progress


@contextmanager
def _rich_bar(label: str, total: int, console) -> Iterator[Progress]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn
    from rich.table import Column

    columns = (
        TextColumn("{task.description}", table_column=Column(no_wrap=True, width=min(len(label), 24))),
        BarColumn(bar_width=20),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[note]}", table_column=Column(ratio=1, no_wrap=True, overflow="ellipsis")),
    )
    with RichProgress(*columns, console=console, expand=True, transient=False) as bar:
        task = bar.add_task(label, total=total, note="")

        def progress(done: int, steps: int, note: str) -> None:
            bar.update(task, completed=done, total=steps, note=note)

        yield progress


class PlainProgress:
    """Progress as plain lines, for output that is not a terminal."""

    def __init__(self, label: str, total: int, stream=None, clock: Callable[[], float] = time.monotonic):
        self.label, self.total, self.stream, self.clock = label, total, stream or sys.stdout, clock
        self.started = clock()
        self.next_share = PLAIN_STEP

    def __call__(self, done: int, total: int, note: str) -> None:
        self.total = total
        share = done / total if total else 1.0
        if share + 1e-12 < self.next_share and done < total:
            return
        while self.next_share <= share + 1e-12:
            self.next_share += PLAIN_STEP
        elapsed = int(self.clock() - self.started)
        print(f"{self.label}: {done}/{total} ({share:.0%}) after {elapsed // 60}:{elapsed % 60:02d}" + (f"; {note}" if note else ""),
              file=self.stream, flush=True)
