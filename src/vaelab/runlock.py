"""One writer per run directory.

An advisory ``flock`` on ``RUN_DIR/.lock``: the kernel drops it when the holder exits, however it
dies (kill -9 included), so a crashed run never leaves the directory locked.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import OutputDirError

try:
    import fcntl
except ImportError:  # Windows: no flock; runs there are not protected against a second writer
    fcntl = None

LOCK_NAME = ".lock"


class RunLock:
    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        if fcntl is None:
            return self
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(self._fd, 64).decode(errors="replace").strip() or "another process"
            os.close(self._fd)
            self._fd = None
            raise OutputDirError(
                f"{self.path.parent} is in use by another vaelab run (pid {holder}). Wait for it to finish, "
                "stop it, or choose another run directory."
            ) from None
        os.ftruncate(self._fd, 0)
        os.write(self._fd, str(os.getpid()).encode())
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
