"""vaelab.locks: one writer per run directory and one trainer per cached classifier, on filelock, across
real processes (a lock must hold between processes and die with its holder, kill -9 included)."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from vaelab.errors import OutputDirError
from vaelab.locks import RunLock, exclusive
from vaelab.rundir import LOCK as LOCK_NAME

HOLD = """
import sys, time
from pathlib import Path
from vaelab.locks import RunLock, exclusive
kind, path = sys.argv[1], Path(sys.argv[2])
with (RunLock(path) if kind == "run" else exclusive(path)):
    print("held", flush=True)
    time.sleep(600)
"""


def holder(kind: str, path) -> subprocess.Popen:
    """A process that takes the lock, says so, and then holds it until it is killed."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, kind, str(path)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def killed(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    process.stdout.close()


def test_a_second_writer_is_refused_with_the_holders_pid_until_the_holder_is_killed(tmp_path):
    first = holder("run", tmp_path)
    try:
        assert (tmp_path / LOCK_NAME).read_text() == str(first.pid)
        with pytest.raises(OutputDirError, match=f"in use by another vaelab run \\(pid {first.pid}\\)"):
            with RunLock(tmp_path):
                pass
    finally:
        killed(first)
    with RunLock(tmp_path):  # kill -9 left the lock file behind but no lock
        assert (tmp_path / LOCK_NAME).read_text() == str(os.getpid())


def test_the_run_lock_excludes_a_second_holder_in_the_same_process_and_is_released_on_exit(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(OutputDirError, match=f"pid {os.getpid()}"):
            with RunLock(tmp_path):
                pass
    with RunLock(tmp_path):
        pass


def test_exclusive_waits_for_the_holder_and_a_killed_holder_frees_it(tmp_path):
    cache_entry = tmp_path / "classifier.pt"
    first = holder("exclusive", cache_entry)
    entered = threading.Event()

    def wait_for_it() -> None:
        with exclusive(cache_entry):
            entered.set()

    waiter = threading.Thread(target=wait_for_it)
    waiter.start()
    try:
        time.sleep(0.5)
        assert not entered.is_set()  # blocked while the other process holds it
    finally:
        killed(first)
    assert entered.wait(timeout=10)
    waiter.join(timeout=10)
