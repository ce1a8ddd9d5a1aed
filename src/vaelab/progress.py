"""Progress bars, made in one place so that runs training side by side each keep to their own terminal line.

A study's worker processes share the terminal of the study's process: each worker is given a line and the
lock every process writes under (``place``), and every bar it draws from then on goes on that line. Elsewhere
a bar is a plain ``tqdm.auto`` bar (a widget in Jupyter).
"""

from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm

_line: int | None = None  # this process's terminal line, where a study placed it


def place(line: int, lock: Any) -> None:
    """Draw this process's bars on terminal line ``line`` (0 is the study's own), writing under ``lock``."""
    global _line
    _line = line
    tqdm.set_lock(lock)


def progress_bar(iterable: Any = None, **options: Any) -> tqdm:
    """A tqdm bar over ``iterable`` (or updated by hand), on this process's line."""
    if _line is not None:
        options.setdefault("position", _line)
    return tqdm(iterable, **options)


def write_line(text: str) -> None:
    """A line of text above the bars."""
    tqdm.write(text)
