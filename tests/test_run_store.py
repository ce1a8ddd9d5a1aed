"""The run store, a run directory's one writer: its claim (lock, existing run, resume) and what it writes at
each moment of the run."""

import dataclasses
from pathlib import Path

import pytest
import torch

from helpers import small_config
from vaelab import rundir
from vaelab.callbacks import Checkpoint, EvalPoint, RunStart
from vaelab.checkpoint import save_checkpoint
from vaelab.errors import CheckpointError, OutputDirError
from vaelab.run_store import RunStore

RECORD = {"epoch": 1.0, "step": 8, "train": {"loss": 1.0}, "test": {"loss": 2.0}}


def checkpoint_state(config) -> dict:
    return {"config": config.to_dict(), "model": {}, "optimizer": {}, "noise": torch.zeros(1), "epoch": 1,
            "step_in_epoch": 0, "step": 8, "history": [RECORD], "elapsed_s": 1.0, "eval_s": 0.1}


def point(run_dir: Path) -> EvalPoint:
    return EvalPoint(0, dict(RECORD), None, torch.zeros(2, 2), torch.zeros(2), run_dir)


def test_a_held_directory_refuses_a_second_writer_and_is_free_after(tmp_path):
    config = small_config()
    with RunStore(tmp_path).held(config, resume=False) as saved:
        assert saved is None
        with pytest.raises(OutputDirError, match="in use by another vaelab run"), \
                RunStore(tmp_path).held(config, resume=False):
            pass
    with RunStore(tmp_path).held(config, resume=False):
        pass


def test_an_existing_run_is_continued_only_on_resume_and_only_with_its_own_config(tmp_path):
    config = small_config()
    save_checkpoint(tmp_path / rundir.CHECKPOINT, checkpoint_state(config))
    with pytest.raises(OutputDirError, match="--resume"), RunStore(tmp_path).held(config, resume=False):
        pass
    with RunStore(tmp_path).held(config, resume=True) as saved:
        assert saved["step"] == 8 and saved["history"] == [RECORD]
    other = dataclasses.replace(config, model=dataclasses.replace(config.model, latent_dim=5))
    with pytest.raises(CheckpointError, match="different model"), RunStore(tmp_path).held(other, resume=True):
        pass


def test_it_writes_the_config_then_each_checkpoint_with_its_history_and_the_final_measures(tmp_path):
    config, store = small_config(), RunStore(tmp_path)
    store.on_fit_start(RunStart(tmp_path, config, False, (), {"train": 4, "test": 2}, {"device": "cpu"}))
    assert (tmp_path / rundir.CONFIG).exists() and rundir.read_metrics(tmp_path) is None
    store.on_eval_point(point(tmp_path))
    assert rundir.read_metrics(tmp_path) is None  # a point is written with the checkpoint that holds it
    store.on_checkpoint(Checkpoint(8, checkpoint_state(config), (RECORD,)))
    assert (tmp_path / rundir.CHECKPOINT).exists() and rundir.read_metrics(tmp_path).history == [RECORD]
    written = (tmp_path / rundir.METRICS_JSON).stat().st_mtime_ns
    store.on_checkpoint(Checkpoint(8, checkpoint_state(config), (RECORD,)))
    assert (tmp_path / rundir.METRICS_JSON).stat().st_mtime_ns == written  # the same history: not written again
    store.record_final({"active_units": 2})
    metrics = rundir.read_metrics(tmp_path)
    assert metrics.final == {"active_units": 2.0} and metrics.eval_sizes == {"train": 4, "test": 2}
