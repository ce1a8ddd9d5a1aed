"""Run the real vaelab CLI and signal it at a chosen moment (a helper of test_reliability.py).

    python fault_driver.py MOMENT N SIGNAL VAELAB-ARGUMENTS...

sends SIGNAL to this process at the N-th time (counted from 1 in this process) that MOMENT happens:

    step        an optimizer step, after the backward pass and before the weights are updated;
    eval        an evaluation point, after the training subset is scored and before the test set is;
    write:NAME  an atomic write of the file NAME (checkpoint.pt, metrics.json, metrics.csv, ...), after
                its temporary file is complete and before it is renamed into place.

SIGNAL is KILL (the process dies on the spot, as on a power cut or an OOM kill) or INT (a Ctrl-C; the
process goes on and handles it). The moments are found by wrapping the library calls that make them
(``torch.optim.Adam.step``, ``vaelab.distributed.evaluate_on_ranks``, ``os.replace``), so vaelab itself carries
no test hook and the CLI runs unchanged. Tests import ``moment_patch`` to arm the same moments in-process.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import vaelab.distributed
from vaelab.cli import main


def on_nth_call(fn: Callable, n: int, fire: Callable[[], None], before: bool, counts: Callable[..., bool]) -> Callable:
    """``fn`` that calls ``fire`` before (or after) its n-th call among those for which ``counts(args)``."""
    seen = 0

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal seen
        hit = counts(*args, **kwargs) and (seen := seen + 1) == n
        if hit and before:
            fire()
        result = fn(*args, **kwargs)
        if hit and not before:
            fire()
        return result

    return wrapper


def moment_patch(moment: str, n: int, fire: Callable[[], None]) -> tuple[Any, str, Callable]:
    """(owner, attribute, replacement) that calls ``fire`` at the n-th ``moment``; set it to arm the fault."""
    if moment == "step":
        return torch.optim.Adam, "step", on_nth_call(torch.optim.Adam.step, n, fire, True, lambda *a, **k: True)
    if moment == "eval":
        # Each evaluation point scores two splits: the (2n-1)-th call is the first split of the n-th point.
        wrapper = on_nth_call(vaelab.distributed.evaluate_on_ranks, 2 * n - 1, fire, False, lambda *a, **k: True)
        return vaelab.distributed, "evaluate_on_ranks", wrapper
    if moment.startswith("write:"):
        name = moment.removeprefix("write:")
        return os, "replace", on_nth_call(os.replace, n, fire, True, lambda src, dst, *a, **k: Path(dst).name == name)
    raise ValueError(f"unknown moment {moment!r}")


def send(signum: int) -> Callable[[], None]:
    return lambda: os.kill(os.getpid(), signum)


if __name__ == "__main__":
    moment, count, signame, *vaelab_args = sys.argv[1:]
    setattr(*moment_patch(moment, int(count), send(getattr(signal, f"SIG{signame}"))))
    sys.argv = ["vaelab", *vaelab_args]
    main()
