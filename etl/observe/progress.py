"""Progress of long runs: a rich progress bar on a terminal, plain log lines elsewhere (CI)."""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Callable, Iterator

log = logging.getLogger("etl.progress")


@contextlib.contextmanager
def progress_bar(title: str, stream=None) -> Iterator[Callable[[int, int, str, str], None]]:
    """Yield ``update(done, total, item, status)``: a bar on a TTY, one log line per item otherwise."""
    stream = stream or sys.stderr
    if hasattr(stream, "isatty") and stream.isatty():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TextColumn("{task.fields[last]}"), transient=False) as bar:
            task = bar.add_task(title, total=None, last="")

            def update(done: int, total: int, item: str, status: str) -> None:
                bar.update(task, completed=done, total=total, last=f"{item}: {status}")

            yield update
        return

    def update(done: int, total: int, item: str, status: str) -> None:
        log.info("%s: %d/%d %s %s", title, done, total, item, status)

    yield update
