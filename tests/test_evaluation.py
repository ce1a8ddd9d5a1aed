"""Scoring a model on a whole split, against quantities computed here without vaelab's evaluation: the KL term's
closed form, the squared error of the reconstructions, the Bernoulli NLL at the posterior mean."""

import pytest
import torch
from torch.nn import functional as F

from vaelab.config import ModelConfig
from vaelab.evaluation import (
    METRICS,
    evaluate_split,
    reconstruction_scores,
    split_originals,
    split_sums,
)
from vaelab.models import VAE
from vaelab.quality import reference_bytes


def model_and_images(objective: str = "vae", n: int = 50) -> tuple[VAE, torch.Tensor]:
    torch.manual_seed(3)
    model = VAE(ModelConfig(latent_dim=3, hidden=(32,), objective=objective))
    return model, torch.rand(n, 1, 28, 28)


def test_kl_and_mse_match_their_closed_forms_at_any_batch_size():
    model, x = model_and_images()
    with torch.no_grad():
        mu, logvar = model.encode(x)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1).mean().item()
        mse = (torch.sigmoid(model.decode(mu)) - x).pow(2).flatten(1).mean(1).mean().item()
    for batch_size in (7, 50):
        metrics = evaluate_split(model, x, batch_size).metrics
        assert metrics["kl"] == pytest.approx(kl, rel=1e-5)
        assert metrics["mse"] == pytest.approx(mse, rel=1e-5)
        assert metrics["loss"] == pytest.approx(metrics["nll"] + metrics["kl"], rel=1e-6)


def test_a_plain_autoencoder_is_scored_at_the_posterior_mean_without_a_kl_term():
    model, x = model_and_images("ae")
    with torch.no_grad():
        nll = F.binary_cross_entropy_with_logits(model.decode(model.encode(x)[0]), x, reduction="sum").item() / len(x)
    metrics = evaluate_split(model, x).metrics
    assert metrics["kl"] == 0.0 and metrics["loss"] == pytest.approx(nll, rel=1e-5) == metrics["nll"]


def test_sums_over_disjoint_rows_add_up_to_the_whole_split():
    """What each data-parallel rank scores: its rows get the noise they get when the split is scored at once."""
    model, x = model_and_images()
    whole, mu = split_sums(model, x, (0, len(x)), batch_size=16)
    first, mu_a = split_sums(model, x, (0, 21), batch_size=16)
    second, mu_b = split_sums(model, x, (21, len(x)), batch_size=16)
    assert torch.allclose(first + second, whole, rtol=1e-6)  # float32 products of other batch shapes
    assert torch.allclose(torch.cat([mu_a, mu_b]), mu, atol=1e-6) and mu.shape == (len(x), 3)
    assert len(whole) == len(METRICS)


def test_evaluation_leaves_the_model_in_the_mode_it_found():
    model, x = model_and_images()
    model.train()
    evaluate_split(model, x)
    assert model.training


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 8, 8)])
def test_kept_reference_moments_give_the_scores_of_originals_filtered_afresh_bit_for_bit(shape):
    """A run filters its splits' originals once; every score must be what filtering them at each point gave."""
    generator = torch.Generator().manual_seed(5)
    x = torch.rand(610, *shape, generator=generator)  # three chunks of scores, the last one short
    recon = (x + 0.2 * torch.randn(x.shape, generator=generator)).clamp(0, 1)
    kept = split_originals(x)
    assert kept is not None
    for rows in ((0, len(x)), (7, 263), (251, 610)):  # whole, and the odd shares of data-parallel ranks
        a, b = x[slice(*rows)], recon[slice(*rows)]
        for fresh, reused in zip(reconstruction_scores(a, b), reconstruction_scores(a, b, kept.rows(*rows)),
                                 strict=True):
            assert torch.equal(fresh, reused)


def test_a_run_keeps_the_split_s_moments_only_within_their_memory_limit():
    x = torch.rand(40, 3, 32, 32)
    kept = split_originals(x)
    held = kept.ssim.nbytes + sum(t.nbytes for t in kept.ssim_orig)
    assert held == len(x) * reference_bytes((3, 32, 32))  # the estimate the limit is checked with is exact
    assert split_originals(x, limit_bytes=held) is not None and split_originals(x, limit_bytes=held - 1) is None
    assert split_originals(x[:0]) is None  # an empty split has nothing to keep


def test_the_model_s_scores_are_the_same_with_the_kept_moments():
    model, x = model_and_images(n=300)
    kept = split_originals(x)
    assert evaluate_split(model, x, 64).metrics == evaluate_split(model, x, 64, kept).metrics
    for rows in ((0, 130), (130, 300)):
        assert torch.equal(split_sums(model, x, rows, 64)[0], split_sums(model, x, rows, 64, kept)[0])
