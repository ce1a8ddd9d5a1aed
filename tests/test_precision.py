"""Precision and where values live: float64 only on the host, fixed draws from CPU generators, the bf16 choice."""

from __future__ import annotations

import pytest
import torch

from helpers import DeviceFloat64Guard, small_config
from vaelab import measures, prepare, training
from vaelab.data import Dataset, ImageSplit
from vaelab.measures import final_measures, iwae_each_epoch
from vaelab.training import Trainer


def guarded_functions(guard: DeviceFloat64Guard, monkeypatch) -> None:
    """What a run puts on its device is marked: the images it converts there and the model's weights."""

    def marked_images(images, device=None):
        converted = prepare.as_float_images(images, device)
        if device is not None:
            guard.mark(converted)
        return converted

    build = training.build_model

    def marked_model(config):
        model = build(config)
        guard.mark(*model.parameters(), *model.buffers())
        return model
    monkeypatch.setattr(training, "as_float_images", marked_images)
    monkeypatch.setattr(measures, "as_float_images", marked_images)
    monkeypatch.setattr(training, "build_model", marked_model)


def test_the_guard_sees_float64_computed_from_device_values():
    guard = DeviceFloat64Guard()
    with guard:
        x = torch.rand(3, 4)
        guard.mark(x)
        (x * 2).sum().double()  # what an MPS device refuses
        x.cpu().double()  # a host copy first: allowed
        x.to(device="cpu", dtype=torch.float64)
    assert len(guard.found) == 1 and "_to_copy" in guard.found[0]


@pytest.mark.slow
def test_a_short_run_and_its_final_measures_never_compute_float64_on_the_device(mnist, tiny_classifier, tmp_path,
                                                                                  monkeypatch):
    """A run's training, evaluation points (binarised, with the IWAE each epoch) and final measures, with every
    device value followed: none of them is float64, so MPS (no float64) can run them all."""
    data = Dataset(mnist.name, mnist.root, ImageSplit(mnist.train.images[:512], mnist.train.labels[:512]),
                   ImageSplit(mnist.test.images[:256], mnist.test.labels[:256]))
    config = small_config(latent_dim=2, epochs=1, train_eval_size=128)
    config = config.with_settings({"data.binarize": True})
    guard = DeviceFloat64Guard()
    guarded_functions(guard, monkeypatch)
    with guard:
        trainer = Trainer(config, data, tmp_path, progress=False)
        trainer.scorers = [iwae_each_epoch(trainer.test_x, 4)]
        trainer.run()
        scores, _ = final_measures(trainer.state.model, config, data, tiny_classifier, iwae_k=4)
    assert guard.found == []
    assert len(trainer.state.history) == 6 and "test_iwae_log_likelihood" in trainer.state.history[-1]
    assert scores["iwae_log_likelihood"] < 0 and guard.on_device(next(trainer.state.model.parameters()))
