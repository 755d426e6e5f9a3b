"""Progress bars: rich's, transient, on stderr, drawn only on a terminal.

On stderr, so that a command's output on stdout stays what it prints (a transient bar on stdout
leaves a blank line behind it when stdout is a pipe or a file); only on a terminal, so that a log
file gets no half-drawn bars.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, TypeVar

__all__ = ["progress_bar", "track"]


T = TypeVar("T")


def progress_bar(*columns: Any, disable: bool = False, **kwargs: Any):
    """A ``rich.progress.Progress`` (default columns unless given), transient, on stderr."""
    from rich.console import Console
    from rich.progress import Progress

    console = Console(stderr=True)
    return Progress(*columns, console=console, transient=True, disable=disable or not console.is_terminal, **kwargs)


def track(items: Iterable[T], total: int, description: str, disable: bool = False) -> Iterator[T]:
    """``items``, with a bar over ``total`` of them while they are consumed."""
    with progress_bar(disable=disable) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)
