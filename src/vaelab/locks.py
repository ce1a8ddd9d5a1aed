"""Every lock vaelab takes, through the ``filelock`` package: one writer per run directory, and one
process at a time training a cached classifier.

filelock holds an OS lock on an open file (``flock`` on Unix, ``msvcrt.locking`` on Windows). The OS
drops it when the holder exits, however it dies (kill -9 included), so a crashed process never leaves
a stuck lock; the lock file itself stays behind and means nothing on its own.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from .errors import OutputDirError
from .rundir import LOCK


class RunLock:
    """The run directory's lock, taken without waiting: a second writer is refused with the holder's pid,
    which the holder writes into the lock file."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK
        self._lock = FileLock(self.path, timeout=0, thread_local=False)

    def __enter__(self) -> RunLock:
        try:
            self._lock.acquire()
        except Timeout:
            raise OutputDirError(
                f"{self.path.parent} is in use by another vaelab run (pid {self.holder()}). Wait for it to finish, "
                "stop it, or choose another run directory."
            ) from None
        with contextlib.suppress(OSError):  # Windows refuses writes to a locked byte range; the lock still holds
            self.path.write_text(str(os.getpid()))
        return self

    def __exit__(self, *exc) -> None:
        self._lock.release()

    def holder(self) -> str:
        try:
            return self.path.read_text().strip() or "another process"
        except OSError:
            return "another process"


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Wait until this process alone holds ``path``'s lock (``path`` + ".lock")."""
    with FileLock(path.with_name(path.name + ".lock"), thread_local=False):
        yield
