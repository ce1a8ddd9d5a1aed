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
