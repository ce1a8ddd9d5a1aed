"""Data-parallel training on PyTorch's own engine: torch.distributed, DistributedDataParallel, torchrun.

A process started by ``torchrun`` finds RANK, LOCAL_RANK and WORLD_SIZE in its environment; it then
trains on ``cuda:LOCAL_RANK`` with NCCL where there is CUDA, or on the CPU with gloo. Every rank holds
the whole data set and draws the same per-epoch permutation; the permutation is cut into global
batches of ``--batch-size`` exactly as in a single process, and each rank trains on its contiguous
part of every global batch. Evaluation splits each scored set into contiguous row ranges, one per
rank, and all-reduces float64 sums, so the recorded metrics are the global ones. Rank 0 alone
touches the run directory; what it decides there (an error, or the checkpoint to resume from)
reaches the other ranks before training starts.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from .errors import VaelabError
from .evaluation import METRICS, Originals, SplitEvaluation, evaluate_split, split_sums
from .models import VAE

SHARD_LOG_ENV = "VAELAB_SHARD_LOG"
# While rank 0 alone runs the hooks of an evaluation point (frames, trackers, the IWAE each epoch), the other
# ranks wait in the next collective; NCCL's default 10 minutes could end a run whose hooks are slow (a large
# IWAE, a remote MLflow), so the wait is longer and a user can set it.
TIMEOUT_ENV = "VAELAB_DDP_TIMEOUT_MIN"
DEFAULT_TIMEOUT_MIN = 60  # a directory: each rank appends the sample indices it trains on
TORCHRUN_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE")

T = TypeVar("T")


@dataclass(frozen=True)
class DdpContext:
    """This process's place in a torchrun launch."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    shard_log: Path | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def backend(self) -> str:
        return backend_for(self.device)


def launched_by_torchrun(environ: dict[str, str] | os._Environ = os.environ) -> bool:
    return "RANK" in environ


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def rank_device(name: str, local_rank: int) -> torch.device:
    """The device of the process with this LOCAL_RANK: its own GPU, or the CPU."""
    if name in ("auto", "cuda") and torch.cuda.is_available():
        if local_rank >= torch.cuda.device_count():
            raise VaelabError(
                f"torchrun started a process with LOCAL_RANK {local_rank}, but this machine has only "
                f"{torch.cuda.device_count()} GPU(s); pass --nproc_per_node={torch.cuda.device_count()} or fewer."
            )
        return torch.device("cuda", local_rank)
    if name in ("auto", "cpu"):
        return torch.device("cpu")
    if name == "cuda":
        raise VaelabError("--device cuda was given, but no CUDA GPU is usable here; pass --device cpu to train "
                          "data-parallel on CPUs with gloo.")
    raise VaelabError(
        f"--device {name} cannot be used under torchrun: each process takes the GPU of its LOCAL_RANK "
        "(--device auto or cuda) or the CPU (--device cpu)."
    )


def ranks_from_environment(environ: dict[str, str] | os._Environ = os.environ) -> tuple[int, int, int]:
    try:
        rank, local_rank, world_size = (int(environ[name]) for name in TORCHRUN_ENV)
    except (KeyError, ValueError):
        shown = ", ".join(f"{name}={environ.get(name)!r}" for name in TORCHRUN_ENV)
        raise VaelabError(f"RANK is set, so this looks like a torchrun launch, but {shown} do not describe one; "
                          "launch with torchrun, or unset RANK to train in a single process.") from None
    return rank, local_rank, world_size


@contextlib.contextmanager
def data_parallel(device_name: str = "auto") -> Iterator[DdpContext | None]:
    """Joins the torchrun launch this process belongs to, for the duration of the block; None outside torchrun."""
    if not launched_by_torchrun():
        yield None
        return
    rank, local_rank, world_size = ranks_from_environment()
    device = rank_device(device_name, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL and every bare .cuda() of this process then use its own GPU
    dist.init_process_group(backend=backend_for(device), device_id=device if device.type == "cuda" else None,
                            timeout=collective_timeout())
    shard_log = os.environ.get(SHARD_LOG_ENV)
    try:
        yield DdpContext(rank, local_rank, world_size, device, Path(shard_log) if shard_log else None)
    finally:
        dist.destroy_process_group()


def collective_timeout(environ: dict[str, str] | os._Environ = os.environ) -> datetime.timedelta:
    """How long a rank waits in a collective for the others: VAELAB_DDP_TIMEOUT_MIN minutes (default 60)."""
    text = environ.get(TIMEOUT_ENV, str(DEFAULT_TIMEOUT_MIN))
    try:
        minutes = float(text)
    except ValueError:
        minutes = -1.0
    if not minutes > 0:
        raise VaelabError(f"{TIMEOUT_ENV}={text!r}: give the minutes a rank may wait for the others, a number > 0.")
    return datetime.timedelta(minutes=minutes)


def describe(ddp: DdpContext, run_dir: Path) -> str:
    role = f"writes {run_dir}" if ddp.is_main else "writes nothing (rank 0 writes the run directory)"
    return f"vaelab: data-parallel rank {ddp.rank}/{ddp.world_size} on {ddp.device} ({ddp.backend}); this rank {role}"


# -- agreeing before training ---------------------------------------------------------------------


def from_main(ddp: DdpContext | None, decide: Callable[[], T]) -> T:
    """``decide()`` run on rank 0 only, its result (or the VaelabError it raised) handed to every rank.

    Whatever rank 0 finds in the run directory (a config, a checkpoint, a reason to refuse) then holds
    for all ranks, and a refusal stops every rank with the same message instead of leaving the others
    waiting in a collective.
    """
    if ddp is None:
        return decide()
    payload: list[Any] = [None]
    if ddp.is_main:
        try:
            payload = [("ok", decide())]
        except VaelabError as exc:
            payload = [("error", exc)]
    dist.broadcast_object_list(payload, src=0)
    outcome, value = payload[0]
    if outcome == "error":
        raise value
    return value


# -- training shards ------------------------------------------------------------------------------


def local_batches(order: torch.Tensor, batch_size: int, rank: int, world_size: int) -> list[torch.Tensor]:
    """This rank's part of every global batch of an epoch.

    The global batches are the consecutive ``batch_size`` slices of the epoch's permutation, as in a
    single process (so ``--batch-size`` is the global batch and the step count does not depend on the
    world size); each is cut into ``world_size`` contiguous parts whose sizes differ by at most one.
    A last batch smaller than the world size leaves some ranks an empty part: they still take the
    step, with a zero gradient, so every rank takes the same number of steps.
    """
    return [batch.tensor_split(world_size)[rank] for batch in order.split(batch_size)]


def shard_rows(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """The contiguous rows [start, stop) of an n-row set that this rank scores; sizes differ by at most one."""
    per_rank, extra = divmod(n, world_size)
    start = rank * per_rank + min(rank, extra)
    return start, start + per_rank + (rank < extra)


def log_shard(ddp: DdpContext | None, epoch: int, first_step: int, batches: list[torch.Tensor]) -> None:
    """With VAELAB_SHARD_LOG=DIR, each rank appends the sample indices it trains on in this epoch (from step
    ``first_step`` on, after a resume) to DIR/rank<r>.jsonl: a way to check a new launch setup."""
    if ddp is None or ddp.shard_log is None:
        return
    ddp.shard_log.mkdir(parents=True, exist_ok=True)
    line = {"epoch": epoch, "first_step": first_step, "rank": ddp.rank, "world_size": ddp.world_size,
            "batches": [b.tolist() for b in batches[first_step:]]}
    with open(ddp.shard_log / f"rank{ddp.rank}.jsonl", "a") as f:
        f.write(json.dumps(line) + "\n")


# -- reductions -----------------------------------------------------------------------------------


def mean_over_ranks(values: torch.Tensor, ddp: DdpContext) -> None:
    """In place: each element becomes its mean over the ranks."""
    dist.all_reduce(values)
    values.div_(ddp.world_size)


def any_rank(flag: bool, ddp: DdpContext) -> bool:
    raised = torch.tensor([int(flag)], device=ddp.device)
    dist.all_reduce(raised, op=dist.ReduceOp.MAX)
    return bool(raised.item())


def evaluate_on_ranks(model: VAE, images: torch.Tensor, ddp: DdpContext | None,
                      originals: Originals | None = None) -> SplitEvaluation:
    """The metrics of the whole set, each rank scoring a contiguous share of its rows (``originals``: the set's
    kept SSIM reference moments, or None).

    The float64 sums and the image counts are all-reduced, so the means are those of a single process
    up to the order of float64 additions; the posterior means come back whole and in order on every rank.
    """
    if ddp is None:
        return evaluate_split(model, images, originals=originals)
    rows = shard_rows(len(images), ddp.rank, ddp.world_size)
    sums, mu = split_sums(model, images, rows, originals=originals)
    # The sums are on the host; NCCL reduces device tensors (gloo, the CPU's, either).
    totals = torch.cat([sums, sums.new_tensor([rows[1] - rows[0]])]).to(ddp.device)
    dist.all_reduce(totals)
    totals = totals.cpu()
    count = int(totals[-1].item())
    if count != len(images):
        raise RuntimeError(f"the ranks scored {count} images of {len(images)}")  # a sharding bug, not a user error
    means = (totals[:-1] / count).tolist()
    return SplitEvaluation(metrics=dict(zip(METRICS, means, strict=True)), mu=gather_rows(mu, len(images), ddp))


def gather_rows(local: torch.Tensor, n: int, ddp: DdpContext) -> torch.Tensor:
    """Every rank's ``shard_rows`` block, concatenated in rank order (on the CPU, on every rank)."""
    shards = [shard_rows(n, r, ddp.world_size) for r in range(ddp.world_size)]
    longest = max(stop - start for start, stop in shards)
    # all_gather wants equal shapes on every rank: pad, gather, trim.
    padded = local.new_zeros((longest, *local.shape[1:]), device=ddp.device)
    padded[: len(local)] = local
    gathered = [torch.empty_like(padded) for _ in range(ddp.world_size)]
    dist.all_gather(gathered, padded)
    return torch.cat([block[: stop - start].cpu() for block, (start, stop) in zip(gathered, shards, strict=True)])


# -- per-rank noise -------------------------------------------------------------------------------


def noise_seed(seed: int, rank: int) -> int:
    """Rank 0 draws the single-process noise stream; the others get streams no ordinary (< 2**32) seed uses."""
    return seed + (rank << 32)


def noise_states(noise: torch.Generator, ddp: DdpContext | None) -> dict[str, Any]:
    """Checkpoint entry with every rank's noise state (rank 0's is also the checkpoint's "noise"); a collective."""
    if ddp is None:
        return {}
    states: list[Any] = [None] * ddp.world_size
    dist.all_gather_object(states, noise.get_state())
    return {"rank_noise": states}


def saved_noise_state(saved: dict[str, Any], ddp: DdpContext | None) -> torch.Tensor | None:
    """The noise state this rank continues from, or None where the checkpoint has none for it.

    Rank 0 (and a single process) continue the checkpoint's "noise". The other ranks continue their own
    stream only when the checkpoint comes from a launch with the same world size; otherwise they start
    afresh from ``noise_seed`` and the resumed run is valid but not bitwise that of an uninterrupted one.
    """
    if ddp is None or ddp.is_main:
        return saved["noise"]
    states = saved.get("rank_noise") or []
    return states[ddp.rank] if len(states) == ddp.world_size else None
