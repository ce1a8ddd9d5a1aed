"""vaelab from Python: train one VAE, or a study of latent sizes, end to end.

``train`` trains a run, then scores its end-of-training measures and draws its figures with the
trained model still in memory; ``study`` does that for each latent size and builds the report. Both
return result objects (run directories, histories, final measures, figures) and are what the
``vaelab train`` and ``vaelab study`` commands call::

    import vaelab
    result = vaelab.study([2, 16], "runs/demo", vaelab.RunConfig(train=vaelab.TrainConfig(epochs=2)))
    result.runs[16].test["loss"], result.report.html

Messages (what is being drawn, the final measures) go to ``notify``, ``print`` unless told otherwise.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import distributed, grid, parallel, precision, resources, rundir
from .atomic import check_writable
from .callbacks import Callback, CallbackList
from .checkpoint import load_checkpoint
from .config import PROJECTIONS, RunConfig
from .data import Dataset
from .datasets import load_dataset
from .errors import ConfigError, DataError, Interrupted, ReportError, SettingsError, VaelabError
from .measures import DEFAULT_IWAE_K, PROBE_NEIGHBOURS, final_measures, geometry_measures, iwae_each_epoch
from .metrics import summary_text
from .models import VAE
from .progress import progress_bar
from .report import Report, build_report
from .run_store import RunStore
from .training import FEW_STEPS, Trainer, select_device

DEFAULT_STUDY_DIR = Path("runs/study")
DEFAULT_LATENT_DIMS = (2, 4, 16)
# Fewer cannot be scored: the latent probe asks for 5 neighbours, a Fréchet distance for a covariance.
MIN_TRAIN_IMAGES = PROBE_NEIGHBOURS
MIN_TEST_IMAGES = 2
Notify = Callable[[str], None]


@dataclass
class RunOptions:
    """How to run (what to train is the RunConfig)."""

    resume: bool = False  # continue the run(s) in the directory; they keep the settings they were started with...
    resume_epochs: int | None = None  # ...except the epoch count, when given here,
    resume_device: str | None = None  # ...and the device, when given here (a run may move between nodes)
    progress: bool = True  # progress bars
    detect_anomaly: bool = False  # autograd anomaly detection, to find the operation that makes a NaN (slow)
    artifacts: bool = True  # record latent frames while training, draw the figures and GIFs at the end
    projection: str | None = None  # 2-D view of larger latent spaces: tsne or pca (default: the run's last, else tsne)
    measures: bool = True  # IWAE log-likelihood, active units, probe, generation score after training
    iwae_k: int = DEFAULT_IWAE_K
    iwae_every_epoch: bool = False  # also estimate the test IWAE log-likelihood after every epoch
    tensorboard: bool = True  # TensorBoard event files in RUN_DIR/tensorboard
    mlflow_uri: str | None = None  # also log to MLflow: this tracking server, or "" for STUDY_DIR/mlflow.db
    wandb_project: str | None = None  # also log to Weights & Biases (offline): this project, or "" for the study's
    progress_label: str | None = None  # what progress lines call the run (default "latent <z>"; a study names a grid's)

    def __post_init__(self) -> None:
        """The same refusal as the configs': a ConfigError naming the option, before anything trains."""
        for spec in dataclasses.fields(self):
            value, key = getattr(self, spec.name), f"options.{spec.name}"
            if spec.type in ("bool", bool) and not isinstance(value, bool):
                raise ConfigError(f"{key} must be true or false, got {value!r}.", key=key)
        for key, value in (("resume_epochs", self.resume_epochs), ("iwae_k", self.iwae_k)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral)
                                      or value < 1):
                raise ConfigError(f"options.{key} must be a whole number >= 1, got {value!r}.", key=f"options.{key}")
        if self.projection not in (None, *PROJECTIONS):
            raise ConfigError(f"options.projection must be one of {', '.join(PROJECTIONS)} (or None), got "
                              f"{self.projection!r}.", key="options.projection")
        for key in ("mlflow_uri", "wandb_project", "progress_label"):
            if getattr(self, key) is not None and not isinstance(getattr(self, key), str):
                raise ConfigError(f"options.{key} must be a string, got {getattr(self, key)!r}.", key=f"options.{key}")


@dataclass
class RunResult:
    run_dir: Path
    config: RunConfig
    history: list[dict[str, Any]]  # one record per evaluation point, as in metrics.json
    final: dict[str, Any] = field(default_factory=dict)  # the end-of-training measures, when scored
    figures: dict[str, Path] = field(default_factory=dict)  # file name -> path, when drawn
    model: VAE | None = None  # the trained model (None for a run a resumed study skipped as finished)
    skipped: bool = False  # already finished: loaded from disk, not trained

    @property
    def test(self) -> dict[str, float]:
        """The test metrics of the last evaluation point: loss (-ELBO), nll, kl, mse, ssim, psnr."""
        return self.history[-1]["test"]


@dataclass
class StudyResult:
    study_dir: Path
    runs: dict[int | str, RunResult]  # by latent size (a latent-size study), else by run directory name
    report: Report


def train(config: RunConfig | None = None, run_dir: str | os.PathLike | None = None,
          options: RunOptions | None = None, *, dataset: Dataset | None = None,
          ddp: distributed.DdpContext | None = None, callbacks: Sequence[Callback] = (),
          notify: Notify = print) -> RunResult:
    """Train one VAE into ``run_dir`` (default: the default study's ``latent_<z>``), then score its final
    measures and draw its figures. ``dataset`` replaces the one the config names (e.g. a slice of it).
    Under torchrun pass this process's ``ddp``: every rank trains, rank 0 alone measures and draws.
    ``callbacks`` (``vaelab.Callback``) are called at the start, at each evaluation point, at the end and on
    an error, on rank 0."""
    config = config or RunConfig()
    options = options or RunOptions()
    run_dir = (output_dir(run_dir, "run_dir") if run_dir is not None
               else rundir.run_dir_of(DEFAULT_STUDY_DIR, config.model.latent_dim))
    if options.resume:  # under torchrun rank 0 reads the saved config and every rank uses it
        config = distributed.from_main(ddp, lambda: resumed_config(run_dir, config, options.resume_epochs,
                                                                   options.resume_device))
    refuse_before_training(config, options, ddp)
    if dataset is None:
        dataset = load_dataset(config.data.dataset, config.data.data_dir, channels=config.data.channels,
                               image_size=config.data.image_size, progress=options.progress)
    check_trainable(dataset)
    # The models build from the data's shape, and the run's config records it so load_model can too.
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, image_shape=dataset.image_shape))
    store = RunStore(run_dir)
    trainer = Trainer(config, dataset, run_dir, progress=options.progress, detect_anomaly=options.detect_anomaly,
                      ddp=ddp, label=options.progress_label)
    resources.check_fits(config, trainer.device, options.iwae_k if options.measures else None)
    if trainer.is_main and trainer.steps_per_epoch < FEW_STEPS:
        warnings.warn(few_steps_warning(len(dataset.train), config.train.batch_size, trainer.steps_per_epoch),
                      UserWarning, stacklevel=2)
    trainer.scorers = point_scorers(trainer, options)
    own, tracking = own_callbacks(trainer, options, dataset) if trainer.is_main else ([], None)
    user = CallbackList(callbacks if trainer.is_main else [])
    # The run's files are written last at each moment, once the frames and trackers have what they keep.
    trainer.callbacks = [*own, *user.callbacks, store] if trainer.is_main else []
    try:
        # The measures score in the run's numerical settings (TF32 off, determinism as asked) too.
        backends = precision.backend_settings(trainer.device, config.train.deterministic)
        with store.held(config, options.resume, ddp) as saved, backends:
            history = trainer.run(saved)
            result = RunResult(run_dir, config, history, model=trainer.state.model.eval())
            if trainer.is_main and options.measures:
                result.final = measure(trainer, store, dataset, options, notify)
            if trainer.is_main and options.artifacts:
                result.figures = draw(trainer, options, notify)
    except BaseException as error:
        if tracking is not None:
            tracking.abandon()
        user.on_exception(error)
        raise
    if tracking is not None:
        tracking.finish(result.final or None, [run_dir / rundir.METRICS_JSON, run_dir / rundir.CONFIG,
                                               *result.figures.values()])
    user.on_fit_end(result)
    return result


def check_trainable(dataset: Dataset) -> None:
    """A split too small to train or score on is the user's error, not a ZeroDivisionError or a failing measure."""
    for split, images, least in (("training", dataset.train, MIN_TRAIN_IMAGES),
                                 ("test", dataset.test, MIN_TEST_IMAGES)):
        if len(images) < least:
            raise DataError(f"{dataset.name} data in {dataset.root}: its {split} split has {len(images)} images; "
                            f"vaelab needs at least {MIN_TRAIN_IMAGES} training and {MIN_TEST_IMAGES} test images to "
                            f"train a model and score it (the latent probe asks for {PROBE_NEIGHBOURS} neighbours, a "
                            "Fréchet distance for a spread).")


def few_steps_warning(images: int, batch_size: int, steps: int) -> str:
    suggested = max(1, images // FEW_STEPS)
    return (f"{images} training images at --batch-size {batch_size} make {steps} optimiser step"
            f"{'s' if steps != 1 else ''} per epoch, too few for the curves to say much; try --batch-size "
            f"{suggested} or more epochs.")


def point_scorers(trainer: Trainer, options: RunOptions) -> list[Any]:
    """What each evaluation point scores beyond the split metrics: the test IWAE each epoch, when asked for."""
    if options.iwae_every_epoch and trainer.config.model.objective == "vae":
        return [iwae_each_epoch(trainer.test_x, options.iwae_k)]
    return []


def own_callbacks(trainer: Trainer, options: RunOptions, dataset: Dataset) -> tuple[list[Callback], Any]:
    """vaelab's own callbacks on rank 0: the frames the figures are drawn from and the experiment trackers'
    (also returned alone, or None when no tracker is asked for)."""
    from .trackers import tracker_hook

    own: list[Callback] = []
    if options.artifacts:
        from .visualisation import ArtifactRecorder

        own.append(ArtifactRecorder(trainer.run_dir, trainer.test_x, trainer.test_labels,
                                    class_names=dataset.class_names))
    hook = tracker_hook(trainer.run_dir, trainer.config, trainer.test_x, trainer.test_labels, options.tensorboard,
                        options.mlflow_uri, options.wandb_project)
    return ([*own, hook] if hook is not None else own), hook


def measure(trainer: Trainer, store: RunStore, dataset: Dataset, options: RunOptions,
            notify: Notify) -> dict[str, Any]:
    """The end-of-training measures of the trained model, added to metrics.json under "final"."""
    from .classifier import load_or_train_classifier

    state = trainer.state
    classifier = None  # unlabelled data: no probe and no classifier scores (final_measures says why)
    if dataset.labelled:
        classifier = load_or_train_classifier(dataset, trainer.device, progress=options.progress)
        if classifier.trained_now:
            notify(f"trained the classifier for the generation score in {classifier.train_time_s:.0f} s "
                   f"(test accuracy {classifier.test_accuracy:.2%}); cached in {classifier.path}")
    measures, seconds = final_measures(state.model, trainer.config, dataset, classifier, options.iwae_k)
    geometry, geometry_seconds = geometry_measures(state.model, trainer.config, dataset, classifier)
    measures, seconds = {**measures, **geometry}, {**seconds, **geometry_seconds}
    store.record_final(measures)
    notify(measures_text(measures, seconds))
    return measures


def measures_text(measures: dict[str, Any], seconds: dict[str, float]) -> str:
    """The final measures in one line; without labels, why the probe and classifier scores are absent."""
    iwae = (f"IWAE log p(x) {measures['iwae_log_likelihood']:.2f} nats (K={measures['iwae_k']})"
            if "iwae_log_likelihood" in measures else "no IWAE (plain autoencoder)")
    text = (f"final measures ({sum(seconds.values()):.1f} s): {iwae}, active units "
            f"{measures['active_units']}/{measures['latent_units']}")
    if "probe_accuracy" not in measures:
        return f"{text}; no probe or classifier scores: {measures['absent'].get('probe_accuracy', '?')}"
    return (f"{text}, probe {measures['probe_accuracy']:.3f}, FD {measures['fd_classifier']:.2f}, recon class acc "
            f"{measures['recon_class_accuracy']:.3f}, sample class entropy {measures['sample_class_entropy']:.3f}")


def draw(trainer: Trainer, options: RunOptions, notify: Notify) -> dict[str, Path]:
    from .visualisation import render_run_artifacts

    latent_dim = trainer.config.model.latent_dim
    notify(f"latent {latent_dim}: drawing figures and GIFs ...")
    written = render_run_artifacts(trainer.run_dir, options.projection, model=trainer.state.model)
    notify(f"latent {latent_dim}: {len(written)} figures in {trainer.run_dir}")
    return written


def study(latent_dims: Iterable[int] | None = DEFAULT_LATENT_DIMS, study_dir: str | os.PathLike = DEFAULT_STUDY_DIR,
          config: RunConfig | None = None, options: RunOptions | None = None, *,
          axes: dict[str, Iterable[Any]] | Sequence[grid.Axis] | None = None, seeds: int | Iterable[int] | None = None,
          jobs: int | str = 1, executor: str = "process", ray_address: str | None = None,
          threads: int | None = None, run_index: int | None = None, dataset: Dataset | None = None,
          callbacks: Sequence[Callback] = (), notify: Notify = print) -> StudyResult:
    """Train one run per cell of the grid (``axes`` by dotted name or alias, times the latent sizes, times
    ``seeds``: a count from ``config.train.seed`` on, or a list) under ``study_dir``, then build the report.

    With only latent sizes and one seed the runs go to ``latent_<z>/`` as ever; any other grid names each run
    by its coordinates. ``jobs`` > 1 (or "auto") trains that many runs at once as processes, ``executor="ray"``
    as Ray tasks. With ``options.resume`` finished runs are skipped, interrupted ones continue, and values
    added to an axis train only their new cells. ``latent_dims`` None on resume keeps the recorded sizes.
    ``threads`` sets each run's thread count (default: every core for one run at a time, an equal share for
    several): a run's numbers depend on its thread count, never on how many runs share the machine.
    ``run_index`` trains only that run of the grid (0-based, in study.json's order): one task of a job array."""
    config = config or RunConfig()
    options = options or RunOptions()
    study_dir = output_dir(study_dir, "study_dir")
    # Read before plan_study rewrites study.json with the plan.
    started_with = (rundir.read_study_file(study_dir) or {}).get("threads") if options.resume else None
    plan_grid, planned = plan_study(study_dir, latent_dims, axes, seeds, config, options)
    dims = list(next(a.values for a in plan_grid.axes if a.key == grid.LATENT_KEY))
    # A latent-size study names its sizes, so that the hint also works where study.json was lost.
    resume_hint = (f"vaelab study --study-dir {study_dir} --latent-dims {','.join(map(str, dims))} --resume"
                   if plan_grid.latent_only else f"vaelab study --study-dir {study_dir} --resume")
    if run_index is not None and not 0 <= run_index < len(planned):
        raise SettingsError(f"--run-index {run_index}: the grid has {len(planned)} runs, numbered 0 to "
                            f"{len(planned) - 1}.")
    chosen = planned if run_index is None else [planned[run_index]]
    todo, results = runs_to_train(chosen, study_dir, plan_grid, options, notify)
    jobs = parallel.auto_jobs(len(todo)) if jobs == "auto" else int(jobs)
    if jobs < 1:
        raise SettingsError(f"--jobs must be at least 1 (or auto), got {jobs}.")
    if threads is not None and threads < 1:
        raise SettingsError(f"--threads must be at least 1, got {threads}.")
    threads = study_threads(study_dir, threads, jobs, started_with)
    if jobs == 1 and executor == "process":
        with parallel.torch_threads(threads):
            for run, run_dir, run_config in todo:
                notify(f"== {describe(run, plan_grid, 'latent size')} -> {run_dir}")
                try:
                    results[run.dir_name] = train(run_config, run_dir, labelled(options, run, plan_grid),
                                                  dataset=dataset, callbacks=callbacks, notify=notify)
                except Interrupted as exc:
                    raise Interrupted(f"{exc}, or the whole study with: {resume_hint}") from None
    elif todo:
        results.update(train_side_by_side(todo, plan_grid, options, dataset=dataset, callbacks=callbacks, jobs=jobs,
                                          threads=threads, executor=executor, ray_address=ray_address, notify=notify,
                                          resume_hint=resume_hint))
    runs = {(run.config.model.latent_dim if plan_grid.latent_only else run.dir_name): results[run.dir_name]
            for run in planned if run.dir_name in results}
    report = build_report(study_dir)
    if options.tensorboard and not plan_grid.latent_only:
        from .trackers import log_study_figures

        log_study_figures(study_dir, {"study/rate_distortion": study_dir / rundir.RATE_DISTORTION_PNG,
                                      "study/comparison": study_dir / rundir.COMPARISON_PNG})
    return StudyResult(study_dir, runs, report)


def study_threads(study_dir: Path, threads: int | None, jobs: int, started_with: Any) -> int:
    """Each run's thread count: ``threads`` if given; on resume the one the study started with (a run's numbers
    depend on it, so an interrupted study finishes as it would have); else every core for one run at a time and
    an equal share for several. Recorded in study.json."""
    if threads is None:
        threads = (started_with if isinstance(started_with, int) and started_with >= 1
                   else torch.get_num_threads() if jobs == 1 else parallel.threads_per_job(jobs))
    rundir.record_study_threads(study_dir, threads)
    return threads


def plan_study(study_dir: Path, latent_dims: Iterable[int] | None, axes: Any, seeds: int | Iterable[int] | None,
               config: RunConfig, options: RunOptions) -> tuple[grid.Grid, list[grid.PlannedRun]]:
    """The study's grid and runs (on resume: the recorded grid and settings, with any values added now), every
    run's config checked before anything trains; then study.json, written before the first run starts so that
    an interrupted study's report (and `vaelab report` while it trains) lists the runs still to come."""
    resume = options.resume
    recorded = rundir.read_study_file(study_dir) if resume else None
    wanted = study_grid(latent_dims, axes, seeds, recorded, config.train.seed)
    plan_grid = grid.merged(grid.grid_from_dict(recorded), wanted) if recorded and "axes" in recorded else wanted
    dims = list(next(a.values for a in plan_grid.axes if a.key == grid.LATENT_KEY))
    base = resumed_base(study_dir, recorded, dims, config, options.resume_device) if resume else config
    planned = plan_grid.plan(base)
    device = select_device(base.train.device)
    for run in planned:  # the data's image shape is not known yet: the config's (MNIST's unless set)
        resources.check_fits(run.config, device, options.iwae_k if options.measures else None)
    check_writable(study_dir, "the study")
    study_dir.mkdir(parents=True, exist_ok=True)
    rundir.write_study_file(study_dir, dims, None if plan_grid.latent_only else {
        **plan_grid.to_dict(), "base_config": base.to_dict(),
        "runs": [{"dir": run.dir_name, "coords": {k: _json_value(v) for k, v in run.coords}} for run in planned]})
    return plan_grid, planned


def runs_to_train(planned: list[grid.PlannedRun], study_dir: Path, plan: grid.Grid, options: RunOptions,
                  notify: Notify) -> tuple[list[tuple[grid.PlannedRun, Path, RunConfig]], dict[str, RunResult]]:
    """The runs still to train, with their directories and configs; and, on resume, the finished ones as they
    are on disk (a resumed run keeps the config it was started with)."""
    todo, finished = [], {}
    for run in planned:
        run_dir = study_dir / run.dir_name
        run_config = with_epochs(run.config, options.resume_epochs)
        if options.resume:
            run_config = resumed_config(run_dir, run_config, options.resume_epochs, options.resume_device)
            done = finished_run(run_dir, run_config, options)
            if done is not None:
                notify(f"{describe(run, plan, 'latent')}: already finished, skipped")
                finished[run.dir_name] = done
                if options.artifacts:
                    redraw_if_outdated(run_dir, options, notify)
                continue
        todo.append((run, run_dir, run_config))
    return todo, finished


def study_grid(latent_dims: Iterable[int] | None, axes: Any, seeds: int | Iterable[int] | None,
               recorded: dict[str, Any] | None, first_seed: int) -> grid.Grid:
    """The grid asked for: ``axes`` as Axis objects or {key: values}; seeds as a list, or a count of seeds
    from ``first_seed`` on (one seed: no replicates, the runs keep the configured seed)."""
    if isinstance(axes, dict):
        axes = [grid.axis_of(key, values) for key, values in axes.items()]
    if latent_dims is None:
        latent_dims = (recorded or {}).get("latent_dims") or DEFAULT_LATENT_DIMS
    dims = list(dict.fromkeys(whole_numbers("the latent sizes", latent_dims)))
    seed_list = None
    if isinstance(seeds, numbers.Integral) and not isinstance(seeds, bool):
        if seeds < 1:
            raise SettingsError(f"--seeds must be at least 1, got {seeds}.")
        seed_list = None if seeds == 1 else [first_seed + i for i in range(int(seeds))]
    elif seeds is not None:
        seed_list = whole_numbers("the seeds (a count, or a list of seeds)", seeds)
    return grid.make_grid(dims, list(axes or []), seed_list)


def whole_numbers(what: str, values: Any) -> list[int]:
    """``values`` as a list of ints; a string, a float or a bool in it is the user's error, not a silent
    conversion ("24" is not [2, 4], 2.7 is not 2)."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise SettingsError(f"{what} must be a list of whole numbers, e.g. [2, 4, 16]; got {values!r}.")
    values = list(values)
    bad = next((v for v in values if isinstance(v, bool) or not isinstance(v, numbers.Integral)), None)
    if bad is not None or not values:
        raise SettingsError(f"{what} must be a non-empty list of whole numbers, e.g. [2, 4, 16]; got {values!r}"
                            + (f" ({bad!r} is not one)." if bad is not None else "."))
    return [int(v) for v in values]


def output_dir(path: str | os.PathLike, what: str) -> Path:
    """A directory to write into; an empty name would silently mean the current directory."""
    if not str(os.fspath(path)).strip():
        raise SettingsError(f"{what} is empty; give the directory to write to, or leave it out for the default.")
    return Path(path)


def describe(run: grid.PlannedRun, plan: grid.Grid, latent_words: str = "latent") -> str:
    return f"{latent_words} {run.config.model.latent_dim}" if plan.latent_only else grid.coords_text(run.coords)


def labelled(options: RunOptions, run: grid.PlannedRun, plan: grid.Grid) -> RunOptions:
    """``options`` with the run's name in the study for its progress lines: several runs of a grid share a
    latent size."""
    return dataclasses.replace(options, progress_label=describe(run, plan))


def _json_value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def train_side_by_side(todo: list[tuple[grid.PlannedRun, Path, RunConfig]], plan: grid.Grid, options: RunOptions, *,
                       dataset: Dataset | None, callbacks: Sequence[Callback], jobs: int, threads: int,
                       executor: str, ray_address: str | None, notify: Notify,
                       resume_hint: str) -> dict[str, RunResult]:
    """The runs in ``todo`` as parallel processes or Ray tasks; a line per finished run, and one error at the
    end naming every run that failed (the others are kept). In a terminal each local process also shows its
    run's progress bar on a line of its own."""
    bars = options.progress and executor == "process" and sys.stderr.isatty()
    worker_options = dataclasses.replace(options, progress=bars)
    if options.mlflow_uri is not None:  # the store and experiment made once, before the runs race to make them
        from .trackers import open_experiment, require_mlflow

        require_mlflow()
        open_experiment(todo[0][1].parent, options.mlflow_uri or None)
    tasks = [parallel.RunTask(run_config, run_dir, labelled(worker_options, run, plan), dataset, tuple(callbacks))
             for run, run_dir, run_config in todo]
    where = f"Ray ({ray_address or 'a local instance'})" if executor == "ray" else f"{jobs} processes"
    notify(f"training {len(tasks)} runs on {where}, {threads} thread(s) each ...")
    bar = progress_bar(total=len(tasks), desc="runs", unit="run", disable=not options.progress)

    def done(task: parallel.RunTask, result: Any) -> None:
        outcome = (f"failed: {result}" if isinstance(result, BaseException)
                   else "test " + summary_text(result.history[-1]["test"]))
        line = f"{task.options.progress_label}: {outcome}"  # the run's name in the study, set by labelled()
        bar.write(line) if options.progress else notify(line)
        bar.update()

    try:
        outcomes = parallel.run_tasks(train, tasks, jobs, threads, executor, ray_address, done, bars=bars)
    except KeyboardInterrupt:  # Ctrl-C reached the workers too: each saved a checkpoint before it stopped
        raise Interrupted(f"interrupted; every run keeps its last checkpoint. Continue with: {resume_hint}") from None
    finally:
        bar.close()
    failed = [(task.options.progress_label, outcome) for task, outcome in zip(tasks, outcomes, strict=True)
              if isinstance(outcome, BaseException)]
    if failed:
        build_report_quietly(todo[0][1].parent)
        listing = "; ".join(f"{name}: {type(exc).__name__}: {exc}" for name, exc in failed)
        raise VaelabError(f"{len(failed)} of {len(tasks)} runs failed ({listing}). The other runs are saved; "
                          f"fix the cause and finish the study with: {resume_hint}")
    return {run.dir_name: result for (run, _, _), result in zip(todo, outcomes, strict=True)}


def build_report_quietly(study_dir: Path) -> None:
    """The report of what a failed study has, where there is anything to report."""
    try:
        build_report(study_dir)
    except ReportError:
        pass


def refuse_before_training(config: RunConfig, options: RunOptions, ddp: distributed.DdpContext | None) -> None:
    """The settings that cannot run, refused before any data is read: a global batch smaller than the
    process count, a tracker whose package is absent."""
    if ddp and config.train.batch_size < ddp.world_size:
        raise SettingsError(f"--batch-size {config.train.batch_size} is the global batch, shared out among "
                            f"{ddp.world_size} processes; give at least one image per process.")
    if options.mlflow_uri is not None or options.wandb_project is not None:
        from .trackers import require_trackers

        require_trackers(options.mlflow_uri, options.wandb_project)


def resumed_config(run_dir: Path, fallback: RunConfig, epochs: int | None, device: str | None = None) -> RunConfig:
    """A resumed run keeps the config it was started with (``fallback`` where it saved none); only the
    epoch count and the device may change, where given: a run may move between a GPU node and a CPU one."""
    saved_path = run_dir / rundir.CONFIG
    if not saved_path.exists():
        return fallback
    saved = RunConfig.load(saved_path)
    if epochs is not None:
        reached = trained_epochs(run_dir)
        if epochs < reached:  # config.json must never say fewer epochs than its history holds
            raise SettingsError(f"--epochs {epochs}: {run_dir} has already trained {reached} epochs; a resumed run "
                                f"can only go further (--epochs {reached} or more). To train a shorter run, start "
                                "one in a new directory.")
        saved.train.epochs = epochs
    if device is not None:
        saved.train.device = device
    return saved


def trained_epochs(run_dir: Path) -> int:
    """The epochs a run's checkpoint holds (0 where it has none yet)."""
    checkpoint = run_dir / rundir.CHECKPOINT
    return int(load_checkpoint(checkpoint)["epoch"]) if checkpoint.exists() else 0


def resumed_base(study_dir: Path, recorded: dict[str, Any] | None, dims: list[int], fresh: RunConfig,
                 device: str | None = None) -> RunConfig:
    """The settings a resumed study keeps: study.json's base config, else (studies of latent sizes from before
    it recorded one) its runs' config.json; ``fresh`` where it has saved neither. The device is ``device``
    where given (where the study runs now)."""
    if recorded and "base_config" in recorded:
        base = RunConfig.from_dict(recorded["base_config"], f"{study_dir / rundir.STUDY_FILE}")
    else:
        base = saved_study_config(study_dir, dims, fresh)
    return base.with_settings({"train.device": device}) if device is not None else base


def saved_study_config(study_dir: Path, dims: list[int], fresh: RunConfig) -> RunConfig:
    """A resumed study keeps the settings it was started with, also for the sizes it has not reached."""
    for d in dims:
        saved = rundir.run_dir_of(study_dir, d) / rundir.CONFIG
        if saved.exists():
            return RunConfig.load(saved)
    return fresh


def with_epochs(config: RunConfig, epochs: int | None = None) -> RunConfig:
    if epochs is None:
        return config
    return dataclasses.replace(config, train=dataclasses.replace(config.train, epochs=epochs))


def redraw_if_outdated(run_dir: Path, options: RunOptions, notify: Notify) -> None:
    """A finished run's figures drawn again where one is missing or older than the run (killed while drawing)."""
    from .visualisation import figures_outdated, render_run_artifacts

    if figures_outdated(run_dir):
        written = render_run_artifacts(run_dir, options.projection)
        notify(f"{run_dir.name}: its figures were incomplete; {len(written)} drawn again")


def finished_run(run_dir: Path, config: RunConfig, options: RunOptions) -> RunResult | None:
    """The run as it is on disk when it has trained all its epochs (and has its final measures, if they are
    asked for); None when it still has work to do."""
    checkpoint = run_dir / rundir.CHECKPOINT
    if not checkpoint.exists():
        return None
    saved = load_checkpoint(checkpoint)
    if saved["epoch"] < config.train.epochs or (options.measures and not rundir.has_final_measures(run_dir)):
        return None
    metrics = rundir.read_metrics(run_dir)
    return RunResult(run_dir, config, saved["history"], final=metrics.final if metrics else {}, skipped=True)
