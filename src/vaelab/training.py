"""Training one VAE: Adam on the negative ELBO, evaluation points, checkpoints, exact resume.

The whole data set lives on the device as one uint8 tensor and batches are taken by indexing a per-epoch
permutation, so a step does no per-item Python work. Each epoch's permutation is derived from
(seed, epoch) and the reparameterization noise comes from a generator whose state is checkpointed,
so a resumed run takes exactly the steps an uninterrupted one would have taken.

The trainer emits the moments of a run to callbacks (the run's files, latent frames, trackers, your code);
it knows nothing of what they write or draw.
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from . import architectures, distributed, precision
from .callbacks import Callback, CallbackList, Checkpoint, EvalPoint, RunStart
from .config import RunConfig, TrainConfig
from .data import Dataset
from .environment import describe_environment
from .errors import CheckpointError, Interrupted, TrainingDivergedError, VaelabError
from .evaluation import split_originals
from .losses import summed_negative_elbo
from .metrics import summary_text
from .models import VAE
from .perceptual import PerceptualTerms
from .prepare import as_float_images, evaluation_images
from .progress import progress_bar, write_line
from .rundir import CHECKPOINT

TRAIN_SUBSET_SEED = 0  # the same training images are scored in every run, whatever its seed
RESUMED_STATE = ("epoch", "step_in_epoch", "step", "history", "elapsed_s", "eval_s")  # TrainState's position
TRAINING_DEVICES = ("cpu", "cuda", "mps")
SYNC_EVERY = 50  # steps between host syncs that check the losses (and agree on Ctrl-C under DDP)
# Apart from any stream noise_seed starts (those differ below 2**33 and by rank << 32); wraps within 2**63.
RESEED_STRIDE = 2**40
FEW_STEPS = 10  # optimiser steps (an epoch's, an interval's) below which the curves say little about convergence
# Scores added to an evaluation point's record beyond the split metrics (the test IWAE each epoch, say):
# (model, record so far) -> entries to add.
Scorer = Callable[[VAE, dict[str, Any]], dict[str, Any]]


@dataclass
class TrainState:
    """Everything a run carries from step to step: what a checkpoint saves and a resume restores."""

    model: VAE
    optimizer: torch.optim.Optimizer
    noise: torch.Generator  # the reparameterization (and dynamic binarisation) noise
    epoch: int = 0  # whole epochs done
    step_in_epoch: int = 0  # steps done in the current epoch
    step: int = 0  # steps done in all
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per evaluation point
    elapsed_s: float = 0.0  # wall time of the sessions so far
    eval_s: float = 0.0  # of which spent in evaluation points

    def to_checkpoint(self, config: RunConfig, rank_noise: dict[str, Any]) -> dict[str, Any]:
        return {"config": config.to_dict(), "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "noise": self.noise.get_state(), "device_type": self.noise.device.type,
                **{k: getattr(self, k) for k in RESUMED_STATE}, **rank_noise}

    def restore(self, saved: dict[str, Any], noise: torch.Tensor | None) -> None:
        """Load a checkpoint's weights, optimizer and position; ``noise`` is this rank's generator state, if any."""
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        if noise is not None:
            self.noise.set_state(noise.to("cpu") if self.noise.device.type == "cpu" else noise)
        for key in RESUMED_STATE:
            setattr(self, key, saved[key])


@dataclass
class _EpochPass:
    """One epoch's loop variables: its batches, the losses of its steps so far and its progress bar."""

    index: int
    batches: list[torch.Tensor]
    losses: torch.Tensor
    bar: Any  # its progress bar
    last_checked: int  # the losses of the steps before this one have been checked


def select_device(name: str = "auto") -> torch.device:
    if name != "auto":
        try:
            device = torch.device(name)
            if device.type not in TRAINING_DEVICES:
                raise VaelabError(f"--device {name}: vaelab trains on {', '.join(TRAINING_DEVICES)} "
                                  f"(e.g. cpu, cuda:1, mps), not on a device of type {device.type}.")
            torch.empty(1, device=device)
        except (RuntimeError, AssertionError) as exc:
            raise VaelabError(f"device {name!r} is not usable here ({exc}). Give --device auto or another device "
                              "(a resumed run can move to another device with --device).") from None
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def first_epoch_eval_steps(steps_per_epoch: int, count: int) -> list[int]:
    """Steps (1-based, within epoch 1) of ``count`` evenly spaced points strictly inside it."""
    return sorted({max(1, round(k * steps_per_epoch / (count + 1))) for k in range(1, count + 1)} - {steps_per_epoch})


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))


def kl_weight(beta: float, warmup_epochs: float, step: int, steps_per_epoch: int) -> float:
    """beta, ramped linearly from 0 over the first ``warmup_epochs`` epochs."""
    if warmup_epochs <= 0:
        return beta
    return beta * min(1.0, step / (warmup_epochs * steps_per_epoch))


def scheduled_lr(cfg: TrainConfig, step: int, total_steps: int) -> float:
    """The learning rate of the update after ``step`` updates: a pure function of the step, so a resumed
    run needs no scheduler state. onecycle: PyTorch's OneCycleLR shape (cosine up from lr / 25 over the
    first 30% of training, then cosine down to lr / 250000); cosine: from lr down to 0."""
    t = min(1.0, step / max(1, total_steps))
    if cfg.lr_schedule == "cosine":
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * t))
    if cfg.lr_schedule == "onecycle":
        start, end, peak_at = cfg.lr / 25.0, cfg.lr / 25.0 / 1e4, 0.3
        if t < peak_at:
            return start + (cfg.lr - start) * 0.5 * (1.0 - math.cos(math.pi * t / peak_at))
        return end + (cfg.lr - end) * 0.5 * (1.0 + math.cos(math.pi * (t - peak_at) / (1.0 - peak_at)))
    return cfg.lr


def set_lr(optimizer: torch.optim.Optimizer, rate: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = rate


def train_eval_subset(n_train: int, size: int) -> torch.Tensor:
    return torch.randperm(n_train, generator=torch.Generator().manual_seed(TRAIN_SUBSET_SEED))[: min(size, n_train)]


def weights_finite(model: torch.nn.Module) -> bool:
    """Whether every weight is finite, at the cost of one host sync (not one per parameter)."""
    return bool(torch.stack([torch.isfinite(p).all() for p in model.parameters()]).all())


def build_model(config: RunConfig) -> VAE:
    with torch.random.fork_rng(devices=[]):  # seeded init without disturbing the caller's RNG
        torch.manual_seed(config.train.seed)
        return VAE(config.model)


def wrap_for_ddp(model: VAE, ddp: distributed.DdpContext | None, device: torch.device) -> torch.nn.Module:
    """Under DDP, the module that averages the gradients over ranks; checkpoints and callbacks keep the bare model."""
    if not ddp:
        return model
    return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


class _SigintLatch:
    """Turns the first Ctrl-C into a flag checked between steps; a second one aborts at once."""

    def __init__(self) -> None:
        self.raised = False
        self._previous: Any = None

    def __enter__(self) -> _SigintLatch:
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: leave Ctrl-C alone
            self._previous = None
        return self

    def _handle(self, signum, frame) -> None:
        if self.raised:
            raise KeyboardInterrupt
        self.raised = True

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class Trainer:
    """The loop: a typed state, the steps, the evaluation schedule, DDP and Ctrl-C. What happens at each
    moment (files, frames, trackers, your code) is the callbacks'; where the run starts from is ``run``'s
    argument, the checkpoint a ``RunStore`` found."""

    def __init__(self, config: RunConfig, dataset: Dataset, run_dir: str | Path, callbacks: Sequence[Callback] = (),
                 progress: bool = True, detect_anomaly: bool = False, ddp: distributed.DdpContext | None = None,
                 scorers: Sequence[Scorer] = (), label: str | None = None):
        self.config = config
        self.run_dir = Path(run_dir)
        self.callbacks = list(callbacks)
        self.scorers = list(scorers)
        self.detect_anomaly = detect_anomaly
        # Under torchrun (ddp given) rank 0 alone runs callbacks and shows progress.
        self.ddp = ddp
        self.rank, self.world_size = (ddp.rank, ddp.world_size) if ddp else (0, 1)
        self.is_main = self.rank == 0
        self.progress = progress and self.is_main
        self.label = label or f"latent {config.model.latent_dim}"  # what its progress lines call the run
        self.device = ddp.device if ddp else select_device(config.train.device)
        if tuple(config.model.image_shape) != dataset.image_shape:
            raise VaelabError(f"the model is configured for images of shape {tuple(config.model.image_shape)} but "
                              f"the data's are {dataset.image_shape}; resume with the data the run was trained on.")
        # The training images stay uint8 on the device (a quarter of float32's memory), converted a batch at a time.
        self.train_images = torch.as_tensor(dataset.train.images).to(self.device)
        self.test_labels = dataset.test.labels
        subset = train_eval_subset(len(self.train_images), config.data.train_eval_size)
        binarize = config.data.binarize
        self.train_eval_x = evaluation_images(as_float_images(self.train_images[subset.to(self.device)]), binarize,
                                              "train_eval")
        self.test_x = evaluation_images(as_float_images(dataset.test.images, self.device), binarize, "test")
        self.steps_per_epoch = math.ceil(len(self.train_images) / config.train.batch_size)
        self.eval_sizes = {"train": len(self.train_eval_x), "test": len(self.test_x)}
        # Filtered once here, not at each of the run's evaluation points.
        self.originals = {"train": split_originals(self.train_eval_x), "test": split_originals(self.test_x)}
        self.precision = precision.resolve(config.train.precision, self.device, config.model.arch)
        # Each architecture says whether its bf16 step runs channels-last; fp32 runs keep the default layout.
        self.channels_last = self.precision == "bf16" and architectures.get(config.model.arch).channels_last
        self.perceptual = PerceptualTerms(config, self.device, self.precision, self._optimizer, data_parallel=bool(ddp))
        # Where and with what the latest session ran, for the study report.
        self.environment = {**describe_environment(self.device, self.world_size, dataset.root),
                            "precision": self.precision,
                            **precision.backend_record(self.device, config.train.deterministic)}
        self.environment["images"] = dataset.describe()
        self.state: TrainState | None = None  # set by run(): the trained model is self.state.model

    # -- state -----------------------------------------------------------------------------------

    def _fresh_state(self) -> TrainState:
        model = build_model(self.config).to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        seed = distributed.noise_seed(self.config.train.seed, self.rank)
        noise = torch.Generator(device=self.device).manual_seed(seed)
        return TrainState(model, self._optimizer(model), noise)

    def _optimizer(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        # The fused kernel does the whole update in one pass: measured ~2x faster per step on CPU.
        fused = self.device.type in ("cpu", "cuda")
        cfg = self.config.train
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=cfg.betas, fused=fused)

    def _restore(self, saved: dict[str, Any]) -> TrainState:
        state = self._fresh_state()
        noise = distributed.saved_noise_state(saved, self.ddp)
        if saved.get("device_type", self.device.type) != self.device.type:
            noise = reseeded_noise(saved, distributed.noise_seed(self.config.train.seed, self.rank), self.device,
                                   self.run_dir)
        try:
            state.restore(saved, noise)
            self.perceptual.load_state_dict(saved)
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{self.run_dir / CHECKPOINT}: does not fit this run ({exc}).") from None
        return state

    def _save(self, state: TrainState) -> None:
        # A finite last loss does not prove finite weights: the update after it may have overflowed.
        if not weights_finite(state.model):
            raise self._diverged(f"the weights became non-finite by step {state.step}", state.step)
        rank_noise = distributed.noise_states(state.noise, self.ddp)  # a collective: every rank gets here
        if self.is_main:
            saved = {**state.to_checkpoint(self.config, rank_noise), **self.perceptual.state_dict()}
            CallbackList(self.callbacks).on_checkpoint(Checkpoint(state.step, saved, tuple(state.history)))

    # -- evaluation ------------------------------------------------------------------------------

    def _evaluate(self, state: TrainState, elapsed_s: float) -> None:
        started = time.perf_counter()
        train_eval = distributed.evaluate_on_ranks(state.model, self.train_eval_x, self.ddp, self.originals["train"])
        test_eval = distributed.evaluate_on_ranks(state.model, self.test_x, self.ddp, self.originals["test"])
        for split, evaluation in (("train", train_eval), ("test", test_eval)):
            bad = {k: v for k, v in evaluation.metrics.items() if not math.isfinite(v)}
            if bad:  # never let a NaN into the history, the artifacts or a checkpoint
                raise self._diverged(f"the {split} evaluation after step {state.step} gave {bad}", state.step)
        record = {
            "epoch": round(state.step / self.steps_per_epoch, 4),
            "step": state.step,
            "time_s": round(elapsed_s, 3),
            "train_s": round(elapsed_s - state.eval_s, 3),  # wall time in training steps alone
            "train": train_eval.metrics,
            "test": test_eval.metrics,
        }
        if self.is_main:
            for score in self.scorers:
                record.update(score(state.model, record))
        state.history.append(record)
        if self.is_main:
            point = EvalPoint(len(state.history) - 1, record, state.model, test_eval.mu, self.test_labels,
                              self.run_dir)
            CallbackList(self.callbacks).on_eval_point(point)
        state.eval_s += time.perf_counter() - started

    # -- the loop --------------------------------------------------------------------------------

    def run(self, saved: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Train to ``config.train.epochs`` from ``saved`` (a checkpoint) or afresh; returns the metric history
        (the model is ``self.state.model``)."""
        self.state = state = self._restore(saved) if saved is not None else self._fresh_state()
        if self.is_main:
            start = RunStart(self.run_dir, self.config, saved is not None, tuple(state.history), self.eval_sizes,
                             self.environment)
            CallbackList(self.callbacks).on_fit_start(start)
        anomaly = torch.autograd.detect_anomaly() if self.detect_anomaly else contextlib.nullcontext()
        backends = precision.backend_settings(self.device, self.config.train.deterministic)
        with _SigintLatch() as sigint, anomaly, backends:
            self._train(state, sigint)
        return state.history

    def _train(self, state: TrainState, sigint: _SigintLatch) -> None:
        model = wrap_for_ddp(state.model, self.ddp, self.device)
        model.train()
        first_epoch_points = set(first_epoch_eval_steps(self.steps_per_epoch, self.config.train.evals_in_first_epoch))
        session_start = time.perf_counter() - state.elapsed_s
        while state.epoch < self.config.train.epochs:
            epoch = self._start_epoch(state)
            for i in range(state.step_in_epoch, self.steps_per_epoch):
                self._step(state, model, epoch, i)
                at_eval = epoch.index == 0 and (i + 1) in first_epoch_points
                synced = at_eval or (i + 1) % SYNC_EVERY == 0 or i + 1 == self.steps_per_epoch
                if synced:  # host syncs only here, not every step
                    self._check_losses(state, epoch, i + 1)
                if at_eval:
                    self._evaluate(state, time.perf_counter() - session_start)
                if self._interrupted(sigint, synced):
                    self._stop_for_sigint(state, epoch, i + 1, session_start)
            self._end_epoch(state, epoch, session_start)
            if state.epoch < self.config.train.epochs and self._interrupted(sigint, True):  # Ctrl-C at the epoch's end
                raise interruption(state.step, self.steps_per_epoch, self.run_dir)

    def _start_epoch(self, state: TrainState) -> _EpochPass:
        cfg = self.config.train
        n = len(self.train_images)
        order = epoch_permutation(n, cfg.seed, state.epoch).to(self.device)
        batches = distributed.local_batches(order, cfg.batch_size, self.rank, self.world_size)
        distributed.log_shard(self.ddp, state.epoch, state.step_in_epoch, batches)
        bar = progress_bar(total=n, initial=min(state.step_in_epoch * cfg.batch_size, n), unit="img", unit_scale=True,
                           desc=f"{self.label} · epoch {state.epoch + 1}/{cfg.epochs}", disable=not self.progress,
                           leave=False, dynamic_ncols=True)
        losses = torch.zeros(self.steps_per_epoch, device=self.device)
        return _EpochPass(state.epoch, batches, losses, bar, state.step_in_epoch)

    def _step(self, state: TrainState, model: torch.nn.Module, epoch: _EpochPass, i: int) -> None:
        """One optimizer step on the epoch's batch ``i``."""
        cfg = self.config
        n, bs = len(self.train_images), cfg.train.batch_size
        x = as_float_images(self.train_images[epoch.batches[i]])
        if cfg.data.binarize:
            x = torch.bernoulli(x, generator=state.noise)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with precision.autocast(self.precision, self.device):
            logits, mu, logvar = model(x, state.noise)
        bare = state.model  # DDP wraps it
        # A plain autoencoder trains on the reconstruction term alone.
        beta = 0.0 if bare.is_autoencoder else kl_weight(cfg.train.beta, cfg.train.warmup_epochs, state.step,
                                                         self.steps_per_epoch)
        # The loss itself in fp32, whatever precision the network ran in.
        total = summed_negative_elbo(logits.float(), x, mu.float(), logvar.float(), cfg.model.likelihood, beta,
                                     bare.decoder_std(), bare.linear_output)
        global_batch = min(bs, n - i * bs)
        # DDP averages the ranks' gradients; weighting each rank's sum by world / global batch makes that
        # the gradient of the global batch's mean loss, however unevenly the batch splits.
        loss = total * (self.world_size / global_batch) if self.ddp else total / len(x)
        if self.perceptual.active:  # an inactive term would still add a node to every step's graph
            loss = loss + self.perceptual.generator_loss(bare, logits, x, state.step)[0]
        state.optimizer.zero_grad(set_to_none=True)
        self._backward(loss, state.step + 1)
        if cfg.train.lr_schedule != "constant":
            set_lr(state.optimizer, scheduled_lr(cfg.train, state.step, cfg.train.epochs * self.steps_per_epoch))
        state.optimizer.step()
        self.perceptual.after_step(x, state.step)
        epoch.losses[i] = loss.detach()
        state.step_in_epoch, state.step = i + 1, state.step + 1
        epoch.bar.update(global_batch)

    def _backward(self, loss: torch.Tensor, step: int) -> None:
        try:
            loss.backward()
        except RuntimeError as exc:  # anomaly mode names the operation that made a NaN
            if not (self.detect_anomaly and "nan values" in str(exc)):
                raise
            raise self._diverged(f"anomaly detection stopped step {step}: {exc}", step) from None

    def _check_losses(self, state: TrainState, epoch: _EpochPass, stop: int) -> None:
        """The steps' losses since the last check: finite, and shown on the progress bar."""
        window = epoch.losses[epoch.last_checked : stop]
        if self.ddp:  # every rank then checks (and shows) the global batches' mean losses
            distributed.mean_over_ranks(window, self.ddp)
        self._check_finite(epoch.losses, epoch.last_checked, stop, state)
        epoch.bar.set_postfix(loss=f"{window.mean().item():.2f}")
        epoch.last_checked = stop

    def _end_epoch(self, state: TrainState, epoch: _EpochPass, session_start: float) -> None:
        epoch.bar.close()
        state.epoch, state.step_in_epoch = epoch.index + 1, 0
        self._evaluate(state, time.perf_counter() - session_start)
        state.elapsed_s = time.perf_counter() - session_start
        self._save(state)
        if self.progress:
            write_line(f"{self.label} · epoch {state.epoch}/{self.config.train.epochs}: "
                       f"test {summary_text(state.history[-1]['test'])}")

    def _check_finite(self, losses: torch.Tensor, start: int, stop: int, state: TrainState) -> None:
        bad = (~torch.isfinite(losses[start:stop])).nonzero()
        if len(bad):  # the first non-finite loss, at the step that made it
            step = state.step - (stop - start) + int(bad[0]) + 1
            raise self._diverged(f"the loss became {losses[start + int(bad[0])].item()} at step {step}", step)

    def _diverged(self, what: str, step: int) -> TrainingDivergedError:
        return diverged(what, epoch_of(step, self.steps_per_epoch), self.run_dir, self.config.train)

    # -- Ctrl-C ----------------------------------------------------------------------------------

    def _interrupted(self, sigint: _SigintLatch, synced: bool) -> bool:
        """A single process stops at the step after Ctrl-C; DDP ranks agree at the next sync point, so that
        they stop after the same step."""
        if self.ddp is None:
            return sigint.raised
        return synced and distributed.any_rank(sigint.raised, self.ddp)

    def _stop_for_sigint(self, state: TrainState, epoch: _EpochPass, stop: int, session_start: float) -> None:
        self._check_finite(epoch.losses, epoch.last_checked, stop, state)  # never checkpoint a diverged model
        epoch.bar.close()
        state.elapsed_s = time.perf_counter() - session_start
        self._save(state)
        raise interruption(state.step, self.steps_per_epoch, self.run_dir)


def reseeded_noise(saved: dict[str, Any], seed: int, device: torch.device, run_dir: Path) -> torch.Tensor:
    """A noise state for a run checkpointed on another kind of device: CPU and CUDA generators differ in kind
    and state, so the stream cannot continue; a new one, seeded from the run's noise seed and the step, can."""
    warnings.warn(f"{run_dir}: resuming on {device.type} a run checkpointed on {saved['device_type']}; the weights, "
                  "optimiser and position carry over, but the noise stream cannot, so it is reseeded at step "
                  f"{saved['step']}: the continuation is a valid run, not bitwise the one an uninterrupted "
                  f"{saved['device_type']} run would have taken.", UserWarning, stacklevel=4)
    reseeded = seed + RESEED_STRIDE * (int(saved["step"]) + 1)
    return torch.Generator(device=device).manual_seed(reseeded % 2**63).get_state()


def interruption(step: int, steps_per_epoch: int, run_dir: Path) -> Interrupted:
    return Interrupted(f"interrupted at step {step} (epoch {epoch_of(step, steps_per_epoch)}); checkpoint saved in "
                       f"{run_dir}. Continue with: vaelab train --run-dir {run_dir} --resume")


def epoch_of(step: int, steps_per_epoch: int) -> int:
    return max(1, math.ceil(step / steps_per_epoch))


def diverged(what: str, epoch: int, run_dir: Path, cfg: TrainConfig) -> TrainingDivergedError:
    """The error that stops a run whose loss or weights stopped being finite, with its likely causes."""
    checkpoint = run_dir / CHECKPOINT
    kept = (f"The last good checkpoint, {checkpoint}, is kept unchanged." if checkpoint.exists()
            else "No checkpoint had been saved yet.")
    return TrainingDivergedError(
        f"{what} (epoch {epoch}); training stopped. Likely cause: a learning rate too high for this model (--lr, "
        f"now {cfg.lr:g}) or an extreme --beta (now {cfg.beta:g}); start a new run with a lower --lr (a resumed "
        f"run keeps its settings), or add --detect-anomaly to find the operation that made it. {kept}"
    )
