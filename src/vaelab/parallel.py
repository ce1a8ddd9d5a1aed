"""Running a study's runs side by side: as local processes (``--jobs N``) or as Ray tasks (``--executor ray``).

Each run trains in its own process with its own share of the cores (``threads`` each), writes its run
directory exactly as ``vaelab train`` does, and sends back its result without the model. Runs are
independent: one that fails leaves the others training, and the study reports every failure at the end
with the command that resumes it. Why processes: the machines vaelab is made on do more work as
single-threaded processes side by side than as one process using every core (docs/performance.md).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from . import progress
from .errors import SettingsError, VaelabError

EXECUTORS = ("process", "ray")
PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies


@dataclass(frozen=True)
class RunTask:
    """What one worker needs: the run's config and directory, how to run it, and the data when the caller
    passed a data set in memory (else the worker loads the one the config names)."""

    config: Any  # RunConfig
    run_dir: Path
    options: Any  # RunOptions, with progress bars off
    dataset: Any = None
    callbacks: tuple[Any, ...] = ()  # vaelab.Callback objects, called in the worker


def cores() -> int:
    """The cores this process may use (the affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def auto_jobs(n_runs: int) -> int:
    """Every run at once while there are fewer than two per core, else one per core; single-threaded runs.

    Why not always one per core: three runs on two cores would then leave a core idle while the third trains
    alone, and all three sharing the two cores finished the default study sooner (docs/performance.md). From
    two runs per core on, that idle tail is a small part of the whole, and each process holds its own data."""
    available = cores()
    return max(1, n_runs if n_runs < 2 * available else available)


def threads_per_job(jobs: int) -> int:
    return max(1, cores() // jobs)


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's thread count set to ``threads`` for the block (None: left as it is), then restored."""
    import torch

    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_task(train: Callable[..., Any], task: RunTask, threads: int) -> Any:
    """Train one run in this (worker) process with ``threads`` threads through ``train`` (the pipeline's,
    passed in so that this module needs nothing later in the flow); the result without the model."""
    import torch

    torch.set_num_threads(threads)
    result = train(task.config, task.run_dir, task.options, dataset=task.dataset, callbacks=task.callbacks,
                   notify=_quiet)
    return replace(result, model=None)


def _quiet(_: str) -> None:
    """Workers keep their chatter to themselves; the study prints one line per finished run."""


def run_tasks(train: Callable[..., Any], tasks: Sequence[RunTask], jobs: int, threads: int,
              executor: str = "process", ray_address: str | None = None,
              on_done: Callable[[RunTask, Any], None] | None = None, bars: bool = False) -> list[Any]:
    """Each task's result, or the exception it raised, in the order of ``tasks``; ``jobs`` at once, each with
    ``threads`` threads. ``bars``: the worker processes draw their runs' progress bars, each on a terminal line
    of its own below this process's (line 0)."""
    if executor not in EXECUTORS:
        raise SettingsError(f"--executor {executor!r}: choose one of {', '.join(EXECUTORS)}.")
    if executor == "ray":
        return _run_on_ray(train, tasks, jobs, threads, ray_address, on_done)
    results: list[Any] = [None] * len(tasks)
    # spawn, not fork: a forked child inherits torch's thread pools and any held locks of the parent.
    context = multiprocessing.get_context("spawn")
    lock, lines = None, None
    if bars:  # one lock for every process's writes, and a line for each worker
        lock, lines = context.RLock(), context.SimpleQueue()
        progress.place(0, lock)
        for line in range(1, jobs + 1):
            lines.put(line)
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=start_worker,
                                                initargs=(lock, lines)) as pool:
        futures = {pool.submit(train_task, train, task, threads): i for i, task in enumerate(tasks)}
        for future in concurrent.futures.as_completed(futures):
            i = futures[future]
            results[i] = _outcome(future.result, tasks[i], on_done)
    return results


def start_worker(lock: Any = None, lines: Any = None) -> None:
    """A worker's set-up: it dies with the study's process and, where given, takes a terminal line for its bars."""
    die_with_parent()
    if lock is not None:
        progress.place(lines.get(), lock)


def die_with_parent() -> None:
    """A worker ends when the study's process does, even by kill -9, so that no orphan keeps training and
    holding its run's lock: the interrupted runs are left for ``--resume`` (Linux; elsewhere a no-op)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return  # no prctl: the worker ends when it next asks the pool for work
    if os.getppid() == 1:  # the parent died before the signal was armed
        os._exit(1)


def _outcome(get: Callable[[], Any], task: RunTask, on_done: Callable[[RunTask, Any], None] | None) -> Any:
    try:
        result = get()
    except Exception as exc:  # a user error, a killed worker or a bug: kept for the summary, the others go on
        result = exc
    if on_done is not None:
        on_done(task, result)
    return result


def require_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise SettingsError("--executor ray needs Ray: pip install 'vaelab[ray]' (or pip install ray).") from None
    return ray


def _run_on_ray(train: Callable[..., Any], tasks: Sequence[RunTask], jobs: int, threads: int, address: str | None,
                on_done: Callable[[RunTask, Any], None] | None) -> list[Any]:
    """Each run as a Ray task asking for ``threads`` CPUs; a local Ray instance unless ``address`` is given.
    Every task writes to the study directory, which must be shared where the cluster has several machines."""
    ray = require_ray()
    started_here = not ray.is_initialized()
    if started_here:
        local = {"num_cpus": jobs * threads} if address is None else {}
        ray.init(address=address, include_dashboard=False, log_to_driver=False, **local)
    try:
        remote = ray.remote(num_cpus=threads, max_retries=0)(train_task)
        refs = [remote.remote(train, task, threads) for task in tasks]
        index = {ref: i for i, ref in enumerate(refs)}
        results: list[Any] = [None] * len(tasks)
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            i = index[done[0]]
            results[i] = _outcome(lambda ref=done[0]: _ray_get(ray, ref), tasks[i], on_done)
        return results
    finally:
        if started_here:
            ray.shutdown()


def _ray_get(ray: Any, ref: Any) -> Any:
    """The task's value; a failed task's own exception where Ray kept it (RayTaskError wraps it)."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        raise (cause if isinstance(cause, BaseException) else VaelabError(str(exc))) from None
