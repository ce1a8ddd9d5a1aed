"""End-of-training measures beyond MSE / SSIM / PSNR: how good a generative model the VAE is and
how well organised its latent space is.

- IWAE log-likelihood (Burda et al. 2016): log p(x) >= log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x),
  z_k ~ q(z|x). K = 1 is the ELBO; the bound tightens as K grows and reaches log p(x) as K -> inf.
- Active units (Burda et al. 2016): latent unit u is active if Cov_x(E_q[z_u]) > 0.01 over the test set.
- Latent probe: a k-nearest-neighbour digit classifier fitted on the posterior means of a fixed
  subset of the training set and scored on the test set's.
- Generation score, with vaelab's own digit classifier (classifier.py): the Fréchet distance between
  its penultimate features of prior samples and of the test set, its accuracy on reconstructions of
  the test set, and the entropy of its predicted-class histogram over the samples (log 10 when every
  digit is generated equally often); the same Fréchet distance and entropy for samples from the Gaussian
  fitted to the training codes (``latent_geometry``).
- Latent geometry (``latent_geometry``): the aggregate posterior's KL to the prior, and the interpolation
  jump, a measure of how continuously decodes change along straight lines between test codes.

All of them are deterministic functions of the weights: every random draw comes from a generator
seeded afresh, so the training run's random streams are never touched.
"""

from __future__ import annotations

import hashlib
import math
import time
from typing import Any

import numpy as np
import torch

from .classifier import ImageClassifier, TrainedClassifier, features_and_logits
from .config import RunConfig
from .data import NUM_CLASSES, Dataset
from .latent_geometry import aggregate_posterior_kl, fitted_prior_samples, interpolation_jump
from .losses import reconstruction_nll
from .models import VAE
from .precision import to_host_float64
from .prepare import as_float_images, evaluation_images, posterior_means
from .resources import IWAE_ROWS
from .training import Scorer

DEFAULT_IWAE_K = 32  # ~4 s of one CPU core for 10,000 test images with the default mlp (README)
IWAE_SEED = 4321
ACTIVE_UNIT_THRESHOLD = 0.01
PROBE_TRAIN_SIZE = 10_000
PROBE_SUBSET_SEED = 1
PROBE_NEIGHBOURS = 5
GENERATED_SAMPLES = 10_000
SAMPLE_SEED = 777
LABELLED_MEASURES = ("probe_accuracy", "fd_classifier", "recon_class_accuracy", "sample_class_entropy",
                     "classifier_test_accuracy")
NO_LABELS = "the data has no labels (a folder without class subfolders)"
NO_POSTERIOR = "a plain autoencoder has no posterior distribution to importance-sample"
LOG_2PI = math.log(2 * math.pi)


# -- IWAE ----------------------------------------------------------------------------------------


def log_importance_weights(model: VAE, x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """log p(x|z_k) + log p(z_k) - log q(z_k|x) for k samples per image: shape (k, N)."""
    mu, logvar = model.encode(x)
    eps = torch.randn((k, *mu.shape), generator=generator, dtype=mu.dtype).to(mu.device)  # a CPU generator's draw
    z = model.reparameterize(mu, logvar, eps=eps)  # k samples per image, by broadcasting
    logits = model.decode(z.flatten(0, 1))
    repeated = x.expand(k, *x.shape).flatten(0, 1)
    log_px_z = -reconstruction_nll(logits, repeated, model.config.likelihood, model.decoder_std(),
                                   model.linear_output).view(k, len(x))
    log_pz = -0.5 * (z.pow(2) + LOG_2PI).flatten(2).sum(2)
    log_qz = -0.5 * (eps.pow(2) + logvar + LOG_2PI).flatten(2).sum(2)  # (z - mu) / sigma is eps exactly
    return log_px_z + log_pz - log_qz


@torch.no_grad()
def iwae_log_likelihood(model: VAE, images: torch.Tensor, k: int = DEFAULT_IWAE_K, seed: int = IWAE_SEED,
                        rows: int = IWAE_ROWS) -> torch.Tensor:
    """The K-sample IWAE bound on log p(x) of each image (nats, float64, on the CPU).

    ``images`` are floats in [0, 1], (N, 1, 28, 28), on the model's device.
    """
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)  # on the CPU: the same draws on every device
    per_batch = max(1, rows // k)
    out = []
    for start in range(0, len(images), per_batch):
        log_w = to_host_float64(log_importance_weights(model, images[start : start + per_batch], k, generator))
        out.append(torch.logsumexp(log_w, dim=0) - math.log(k))
    model.train(was_training)
    return torch.cat(out)


def iwae_each_epoch(test_images: torch.Tensor, k: int = DEFAULT_IWAE_K) -> Scorer:
    """An evaluation-point scorer adding ``test_iwae_log_likelihood`` (mean nats) to each whole-epoch record."""

    def score(model: VAE, record: dict[str, Any]) -> dict[str, Any]:
        if float(record["epoch"]).is_integer():
            return {"test_iwae_log_likelihood": iwae_log_likelihood(model, test_images, k).mean().item()}
        return {}

    return score


# -- latent space --------------------------------------------------------------------------------


def active_units(mu: torch.Tensor, threshold: float = ACTIVE_UNIT_THRESHOLD) -> int:
    """How many units have Cov_x(E_q[z_u]) > threshold; ``mu`` is (N, units) of posterior means."""
    return int((mu.double().var(dim=0, unbiased=False) > threshold).sum())


def probe_accuracy(train_mu: torch.Tensor, train_labels: torch.Tensor, test_mu: torch.Tensor,
                   test_labels: torch.Tensor, neighbours: int = PROBE_NEIGHBOURS) -> float:
    """Test accuracy of a k-NN classifier on posterior means (Euclidean, so inactive units, which
    barely vary, barely count)."""
    from sklearn.neighbors import KNeighborsClassifier  # imported here: slow, and only needed after training

    probe = KNeighborsClassifier(n_neighbors=neighbours).fit(train_mu.numpy(), train_labels.numpy())
    return float(probe.score(test_mu.numpy(), test_labels.numpy()))


def probe_subset(n_train: int, size: int = PROBE_TRAIN_SIZE) -> torch.Tensor:
    return torch.randperm(n_train, generator=torch.Generator().manual_seed(PROBE_SUBSET_SEED))[: min(size, n_train)]


# -- generation score ----------------------------------------------------------------------------


def feature_statistics(features: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of (N, D) features, in float64."""
    f = np.asarray(features, dtype=np.float64)
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mean_a: np.ndarray, cov_a: np.ndarray, mean_b: np.ndarray, cov_b: np.ndarray) -> float:
    """||m_a - m_b||^2 + Tr(C_a + C_b - 2 (C_a C_b)^(1/2)), the squared 2-Wasserstein distance of two
    Gaussians.

    Tr (C_a C_b)^(1/2) is computed as the sum of square roots of the eigenvalues of the symmetric
    PSD matrix C_a^(1/2) C_b C_a^(1/2) (same spectrum as C_a C_b), which stays real where a
    general matrix square root picks up imaginary round-off.
    """
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    middle = root_a @ cov_b @ root_a
    trace_root = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    distance = float(np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root)
    return max(distance, 0.0)


def class_entropy(predictions: torch.Tensor, num_classes: int = NUM_CLASSES) -> float:
    """Entropy (nats) of the histogram of predicted classes; log(num_classes) for a uniform one."""
    p = torch.bincount(predictions.cpu(), minlength=num_classes).double()
    p = p[p > 0] / p.sum()
    return float(-(p * p.log()).sum()) + 0.0  # one class alone sums to -0.0, which tables print as "-0.000"


@torch.no_grad()
def prior_samples(model: VAE, n: int = GENERATED_SAMPLES, seed: int = SAMPLE_SEED,
                  batch_size: int = 2000) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)  # model.sample moves the CPU draw to the model's device
    return torch.cat([model.sample(min(batch_size, n - i), generator) for i in range(0, n, batch_size)])


@torch.no_grad()
def reconstructions(model: VAE, images: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
    return torch.cat([model.reconstruct(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


_REFERENCE_STATISTICS: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def reference_statistics(classifier: ImageClassifier, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """feature_statistics of the classifier's features of ``images``, kept for the process: every run of a
    study compares its samples with the same test set through the same classifier, so later runs skip a
    third of the generation score's classifier passes. The key hashes the weights and the pixels."""
    digest = hashlib.sha256()
    for tensor in (*classifier.state_dict().values(), images):
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    key = digest.hexdigest()
    if key not in _REFERENCE_STATISTICS:
        features, _ = features_and_logits(classifier, images)
        _REFERENCE_STATISTICS[key] = feature_statistics(features.cpu())
    return _REFERENCE_STATISTICS[key]


# -- all of them, once per run -------------------------------------------------------------------


def final_measures(model: VAE, config: RunConfig, dataset: Dataset, classifier: TrainedClassifier | None,
                   iwae_k: int = DEFAULT_IWAE_K) -> tuple[dict[str, float], dict[str, float]]:
    """(measures, seconds each took). The test images are scored exactly as the trainer scores them
    (binarised with the same fixed draw under --binarize); the Fréchet distance compares samples
    with the grey test images, the data the model imitates. ``classifier`` None (unlabelled data): the
    probe and classifier scores are left out and ``measures["absent"]`` says why."""
    device = next(model.parameters()).device
    seconds: dict[str, float] = {}
    grey_test = as_float_images(dataset.test.images, device)
    test_x = evaluation_images(grey_test, config.data.binarize, "test")
    subset = probe_subset(len(dataset.train))
    train_x = evaluation_images(as_float_images(dataset.train.images[subset], device), config.data.binarize, "probe")
    train_labels = dataset.train.labels[subset]

    absent: dict[str, str] = {}
    start = time.perf_counter()
    if model.is_autoencoder:
        iwae = None
        absent["iwae_log_likelihood"] = NO_POSTERIOR
    else:
        iwae = iwae_log_likelihood(model, test_x, iwae_k).mean().item()
    seconds["iwae"] = time.perf_counter() - start

    start = time.perf_counter()
    test_mu = posterior_means(model, test_x)
    units = active_units(test_mu)
    seconds["active_units"] = time.perf_counter() - start

    measures: dict[str, Any] = {"iwae_log_likelihood": iwae, "iwae_k": iwae_k, "active_units": units,
                                "latent_units": test_mu.shape[1]}
    if iwae is None:
        del measures["iwae_log_likelihood"], measures["iwae_k"]
    if classifier is None:  # no labels: nothing to probe for and no classes to score samples by
        absent.update({key: NO_LABELS for key in LABELLED_MEASURES})
    if absent:
        measures["absent"] = absent
    if classifier is None:
        return measures, seconds

    measures.update(class_yardsticks(dataset))
    start = time.perf_counter()
    measures["probe_accuracy"] = probe_accuracy(posterior_means(model, train_x), train_labels, test_mu,
                                                dataset.test.labels)
    seconds["probe"] = time.perf_counter() - start

    start = time.perf_counter()
    measures.update(generation_scores(model, classifier, grey_test, test_x, dataset))
    seconds["generation"] = time.perf_counter() - start
    return measures, seconds


def class_yardsticks(dataset: Dataset) -> dict[str, float]:
    """What the class scores are read against: the accuracy of always guessing the test set's majority class,
    and ln K, the entropy of K classes generated equally often."""
    counts = torch.bincount(dataset.test.labels.long())
    classes = len(torch.unique(torch.cat([dataset.train.labels, dataset.test.labels])))
    return {"chance_accuracy": counts.max().item() / len(dataset.test.labels), "max_class_entropy": math.log(classes)}


def geometry_measures(model: VAE, config: RunConfig, dataset: Dataset,
                      classifier: TrainedClassifier | None) -> tuple[dict[str, float], dict[str, float]]:
    """(measures, seconds): the latent-geometry measures behind the AE-vs-VAE claims (``latent_geometry``) and,
    with labels, the generation score of samples from the Gaussian fitted to the training codes."""
    device = next(model.parameters()).device
    grey_test = as_float_images(dataset.test.images, device)
    test_x = evaluation_images(grey_test, config.data.binarize, "test")
    start = time.perf_counter()
    measures = {"aggregate_kl": aggregate_posterior_kl(model, test_x), "interpolation_jump":
                interpolation_jump(model, test_x)}
    seconds = {"latent_geometry": time.perf_counter() - start}
    if classifier is not None:
        start = time.perf_counter()
        subset = probe_subset(len(dataset.train))
        train_x = evaluation_images(as_float_images(dataset.train.images[subset], device), config.data.binarize,
                                    "probe")
        measures.update(fitted_generation_scores(model, classifier, grey_test, train_x))
        seconds["fitted_generation"] = time.perf_counter() - start
    return measures, seconds


def fitted_generation_scores(model: VAE, classifier: TrainedClassifier, grey_test: torch.Tensor,
                             train_x: torch.Tensor) -> dict[str, float]:
    """The Fréchet distance and class entropy of samples from the Gaussian fitted to the training codes (the
    ex-post density a plain autoencoder is sampled with), beside those of samples from N(0, I)."""
    clf = classifier.model.to(next(model.parameters()).device)
    features, logits = features_and_logits(clf, fitted_prior_samples(model, train_x, GENERATED_SAMPLES))
    fd = frechet_distance(*feature_statistics(features.cpu()), *reference_statistics(clf, grey_test))
    return {"fd_classifier_fitted": fd,
            "sample_class_entropy_fitted": class_entropy(logits.argmax(1), logits.shape[1])}


def generation_scores(model: VAE, classifier: TrainedClassifier, grey_test: torch.Tensor, test_x: torch.Tensor,
                      dataset: Dataset) -> dict[str, float]:
    """The classifier-based scores: Fréchet distance of prior samples to the test set, class accuracy on
    reconstructions, entropy of the samples' predicted classes."""
    clf = classifier.model.to(next(model.parameters()).device)
    sample_features, sample_logits = features_and_logits(clf, prior_samples(model))
    fd = frechet_distance(*feature_statistics(sample_features.cpu()), *reference_statistics(clf, grey_test))
    _, recon_logits = features_and_logits(clf, reconstructions(model, test_x))
    return {
        "fd_classifier": fd,
        "recon_class_accuracy": (recon_logits.argmax(1).cpu() == dataset.test.labels).double().mean().item(),
        "sample_class_entropy": class_entropy(sample_logits.argmax(1), sample_logits.shape[1]),
        "classifier_test_accuracy": classifier.test_accuracy,
    }

