"""The metric registry: every number evaluation and the measures record is declared there, once."""

from pathlib import Path

import torch

from vaelab.config import ModelConfig, RunConfig
from vaelab.data import Dataset, ImageSplit
from vaelab.evaluation import evaluate_split
from vaelab.measures import NO_LABELS, final_measures, geometry_measures
from vaelab.metrics import BY_KEY, FINAL_MEASURES, POINT_KEYS, POINT_METRICS, summary_text
from vaelab.models import VAE


def tiny_dataset() -> Dataset:
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(64, 28, 28, generator=g) * 255).to(torch.uint8)
    unlabelled = torch.full((64,), -1, dtype=torch.int64)
    return Dataset("idx", Path("."), ImageSplit(images[:48], unlabelled[:48]), ImageSplit(images[48:], unlabelled[48:]),
                   labelled=False)


def test_evaluation_records_exactly_the_point_metrics_in_their_order():
    model = VAE(ModelConfig(latent_dim=2, hidden=(16,)))
    assert tuple(evaluate_split(model, torch.rand(20, 1, 28, 28)).metrics) == POINT_KEYS


def test_every_final_measure_is_declared():
    model = VAE(ModelConfig(latent_dim=2, hidden=(16,)))
    data, config = tiny_dataset(), RunConfig()
    measures, _ = final_measures(model, config, data, None, iwae_k=2)
    geometry, _ = geometry_measures(model, config, data, None)
    recorded = {k for k in {**measures, **geometry} if k != "absent"}
    assert recorded <= set(BY_KEY) and measures["absent"]["probe_accuracy"] == NO_LABELS
    assert len({m.key for m in (*POINT_METRICS, *FINAL_MEASURES)}) == len(POINT_METRICS) + len(FINAL_MEASURES)


def test_the_one_line_summary_reads_from_the_test_record():
    text = summary_text({"loss": 101.234, "mse": 0.01234, "ssim": 0.8456, "psnr": 19.987})
    assert text == "-ELBO  101.23 nats  MSE 0.0123  SSIM 0.846  PSNR 19.99 dB"
