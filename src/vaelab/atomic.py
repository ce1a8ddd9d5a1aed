"""Writing a file so that no reader, and no kill at any moment, ever sees half of it.

The bytes go to ``.NAME.tmpPID`` beside the target, are flushed to disk, then renamed onto it; on
any failure the temporary file is removed and the previous version stays. (A writer killed outright
leaves its temporary file; the next run that takes the run lock sweeps such files away.)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from .errors import OutputDirError


@contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def check_writable(directory: str | os.PathLike, purpose: str) -> None:
    """Refuse, before any work, to write ``purpose`` under ``directory`` where that cannot succeed: a read-only
    file system or a directory without write permission (its nearest existing ancestor, when it is still to be
    made). Creates nothing. ``access`` answers for the effective user, so root passes where permissions
    alone would stop another user, but not on a read-only file system."""
    target = Path(directory)
    existing = next(p for p in (target, *target.parents) if p.exists() or p == Path(p.anchor or "."))
    if existing.is_dir() and not os.access(existing, os.W_OK | os.X_OK):
        why = "a read-only file system" if _read_only_mount(existing) else "no write permission"
        raise OutputDirError(f"cannot write {purpose} to {target}: {existing} is not writable ({why}). Choose a "
                             "writable directory, or copy the files somewhere writable first.")


def _read_only_mount(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_file(path) as f:
        f.write(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """``text`` to ``path`` as a whole or not at all; a failure is the user's one-paragraph error."""
    try:
        with atomic_file(path, "w") as f:
            f.write(text)
    except OSError as exc:
        raise OutputDirError(f"{path}: cannot be written ({exc.strerror or exc}); the previous one is kept.") from None
