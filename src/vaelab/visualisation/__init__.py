"""Per-run artifacts: what a run looked like while it trained, and what the trained model does.

Two halves, kept apart so training stays fast:

* recording (``frames``): ``ArtifactRecorder``, a trainer hook, saves a little data per evaluation point;
* drawing: ``render_run_artifacts`` builds every figure from what is on disk (frames, metrics.json, the
  checkpoint, or the trained model handed over in memory), so it works on a finished run, an interrupted
  one and one still training. ``projection`` shows latent spaces larger than 2 on the plane, ``drawing``
  draws the figures and GIFs, ``architecture`` the model's layers.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from .. import rundir
from ..atomic import check_writable, write_text_atomic
from ..checkpoint import load_model
from ..config import RunConfig, has_latent_plane
from ..errors import ArtifactError
from ..models import VAE
from ..rundir import CONFIG, FRAMES_DIR, PROJECTION_CHOICE
from .architecture import describe_architecture, render_architecture
from .drawing import (
    render_interpolations,
    render_latent_space,
    render_manifold,
    render_metrics,
    render_reconstructions,
    render_samples,
)
from .frames import ArtifactRecorder, Frame, first_index_per_class, load_frames, read_history, stratified_subsample
from .projection import (
    cached_projections,
    chosen_projection,
    independent_projections,
    mean_displacement,
    procrustes_align,
    project_sequence,
)

__all__ = ["ArtifactRecorder", "Frame", "cached_projections", "chosen_projection", "describe_architecture",
           "expected_figures", "figures_outdated", "first_index_per_class", "independent_projections", "load_frames",
           "mean_displacement", "procrustes_align", "project_sequence", "render_run_artifacts", "stratified_subsample"]


def expected_figures(run_dir: str | Path) -> list[str]:
    """The figures ``render_run_artifacts`` draws from what ``run_dir`` holds now (a test keeps the two in step)."""
    run_dir = Path(run_dir)
    config = RunConfig.load(run_dir / CONFIG)
    frames, trained = bool(rundir.frame_paths(run_dir)), rundir.has_checkpoint(run_dir)
    names = [rundir.LATENT_SPACE_GIF, rundir.LATENT_SPACE_PNG, rundir.RECONSTRUCTIONS_GIF,
             rundir.RECONSTRUCTIONS_PNG] if frames else []
    names += [rundir.METRICS_PNG] if _has_history(run_dir) else []
    names += [rundir.SAMPLES_PNG, *([rundir.INTERPOLATIONS_PNG] if frames else []),
              *([rundir.MANIFOLD_PNG] if has_latent_plane(config.model.arch, config.model.latent_dim) else [])
              ] if trained else []
    return [*names, rundir.ARCHITECTURE_PNG]


def _has_history(run_dir: Path) -> bool:
    try:
        return bool(read_history(run_dir))
    except ArtifactError:  # unreadable: the metrics figure is then expected, so that drawing it names the file
        return True


def figures_outdated(run_dir: str | Path) -> bool:
    """Whether a run that records frames lacks one of its figures, or has one older than its newest frame or its
    checkpoint: a run killed while its figures were drawn, interrupted, or still training."""
    run_dir = Path(run_dir)
    frames = rundir.frame_paths(run_dir)
    if not frames or not (run_dir / CONFIG).exists():
        return False  # trained with --no-artifacts: nothing to draw from
    checkpoint = run_dir / rundir.CHECKPOINT
    newest = max([f.stat().st_mtime_ns for f in frames] + ([checkpoint.stat().st_mtime_ns] if checkpoint.exists()
                                                            else []))
    paths = [run_dir / name for name in expected_figures(run_dir)]
    return any(not path.exists() or path.stat().st_mtime_ns < newest for path in paths)


def on_cpu(model: VAE) -> VAE:
    """The model itself where it is on the CPU, else a CPU copy: the caller's model stays where it is."""
    return model if next(model.parameters()).device.type == "cpu" else copy.deepcopy(model).cpu()


def render_run_artifacts(run_dir: str | Path, projection: str | None = None,
                         model: VAE | None = None) -> dict[str, Path]:
    """(Re)build every per-run figure from what the run directory holds; returns name -> path.

    Works while the run is training or after it was interrupted: it uses whatever frames and history
    exist, and skips what needs a checkpoint (samples, interpolations, manifold) until there is one.
    ``model``: the trained model, already in memory (on any device: the figures are drawn from a CPU copy of it),
    instead of the checkpoint's.
    """
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG).exists():
        raise ArtifactError(f"{run_dir}: no {CONFIG} here; is this a vaelab run directory?")
    config = RunConfig.load(run_dir / CONFIG)
    check_writable(run_dir, "the run's figures")
    projection = chosen_projection(run_dir, projection)
    latent_dim = config.model.latent_dim
    written: dict[str, Path] = {}
    frames = load_frames(run_dir)
    history = read_history(run_dir) or []
    if frames:
        write_text_atomic(run_dir / FRAMES_DIR / PROJECTION_CHOICE, json.dumps({"projection": projection}) + "\n")
        for path in [*render_latent_space(run_dir, frames, projection), *render_reconstructions(run_dir, frames)]:
            written[path.name] = path
    if history:
        written[rundir.METRICS_PNG] = render_metrics(run_dir, history, latent_dim)
    if model is not None or rundir.has_checkpoint(run_dir):
        model = on_cpu(model) if model is not None else load_model(run_dir)[0]
        written[rundir.SAMPLES_PNG] = render_samples(run_dir, model)
        if frames:
            written[rundir.INTERPOLATIONS_PNG] = render_interpolations(run_dir, model, frames[-1])
        if has_latent_plane(model.config.arch, model.latent_dim):
            written[rundir.MANIFOLD_PNG] = render_manifold(run_dir, model, frames[-1] if frames else None)
    else:
        model = VAE(config.model)  # untrained, but the same shapes: enough for the architecture
    written[rundir.ARCHITECTURE_PNG] = render_architecture(run_dir, model)
    return written
