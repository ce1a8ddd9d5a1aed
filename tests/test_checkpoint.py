"""Checkpoints: written whole or not at all, read back only when they are vaelab's, whole and not too new."""

import pytest
import torch

from vaelab.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    load_checkpoint,
    remove_stale_temp_files,
    save_checkpoint,
)
from vaelab.errors import CheckpointError

STATE = {"config": {}, "model": {"w": torch.arange(4.0)}, "optimizer": {}, "epoch": 1, "step": 8, "history": []}


def test_a_saved_checkpoint_reads_back_with_its_format(tmp_path):
    save_checkpoint(tmp_path / "checkpoint.pt", STATE)
    saved = load_checkpoint(tmp_path / "checkpoint.pt")
    assert torch.equal(saved["model"]["w"], STATE["model"]["w"]) and saved["step"] == 8
    assert (saved["format"], saved["checkpoint_version"]) == (CHECKPOINT_FORMAT, CHECKPOINT_VERSION)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary file left


@pytest.mark.parametrize("damage, words", [
    (lambda path: path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2]), "not a readable checkpoint"),
    (lambda path: torch.save({"weights": 1}, path), "not a vaelab checkpoint"),
    (lambda path: torch.save({**STATE, "format": CHECKPOINT_FORMAT, "checkpoint_version": 99}, path), "newer vaelab"),
    (lambda path: torch.save({"format": CHECKPOINT_FORMAT, "model": {}}, path), "lacks"),
    (lambda path: None, "no checkpoint here"),
])
def test_a_torn_foreign_newer_or_partial_checkpoint_is_refused_by_name(tmp_path, damage, words):
    path = tmp_path / "checkpoint.pt"
    if words != "no checkpoint here":
        save_checkpoint(path, STATE)
    damage(path)
    with pytest.raises(CheckpointError, match=words):
        load_checkpoint(path)


def test_only_the_temporary_files_of_killed_writers_are_swept(tmp_path):
    kept = [tmp_path / name for name in ("checkpoint.pt", "metrics.json", ".lock", ".hidden")]
    stale = [tmp_path / name for name in (".checkpoint.pt.tmp123", ".metrics.json.tmp9")]
    for path in kept + stale:
        path.write_text("x")
    remove_stale_temp_files(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in kept)
