"""Every number vaelab records about a model, declared once: its key in metrics.json, how tables and plots
name it, its format, which way is better, and when it is scored.

``POINT_METRICS`` are scored on the training subset and the test set at every evaluation point (in this
order: evaluation computes them as one vector); ``FINAL_MEASURES`` once, after training (metrics.json
"final"). Evaluation, the run's figures, the report's tables, plots and grid, and the one-line summaries
read them from here, so a new metric is one entry here plus the code that computes it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    key: str
    header: str  # in tables: "−ELBO", "PSNR (dB)"
    fmt: str  # format spec of a value
    better: str | None = None  # "low", "high", or None where neither is (a KL, an entropy)
    unit: str = ""  # for plot subtitles: "nats per image", "per pixel", "dB"
    title: str = ""  # the panel title in a run's metrics.png (points only)
    note: str = ""  # that panel's note, where "lower/higher is better" would not say it
    core: bool = False  # recorded by every vaelab version (older runs lack the others)

    @property
    def short(self) -> str:
        """The header without its unit: "PSNR"."""
        return self.header.replace(" (dB)", "")

    @property
    def better_text(self) -> str:
        return {"low": "lower is better", "high": "higher is better"}.get(self.better or "", "")


POINT_METRICS = (
    Metric("loss", "−ELBO", ".2f", "low", "nats per image", "−ELBO (nats/image)", core=True),
    Metric("nll", "NLL", ".2f", "low", "nats per image", "reconstruction NLL (nats)", "−E[log p(x|z)]", core=True),
    Metric("kl", "KL", ".2f", None, "nats per image", "KL(q(z|x) ‖ p(z)) (nats)", "rate", core=True),
    Metric("mse", "MSE", ".4f", "low", "per pixel", "MSE per pixel", core=True),
    Metric("ssim", "SSIM", ".3f", "high", "", "SSIM", core=True),
    Metric("psnr", "PSNR (dB)", ".2f", "high", "dB", "PSNR (dB)", core=True),
    # The published project's definitions (scikit-image defaults on [-1, 1]), for like-for-like comparison.
    Metric("ssim_orig", "SSIM (orig.)", ".3f", "high"),
    Metric("psnr_orig", "PSNR (orig., dB)", ".2f", "high", "dB"),
)

FINAL_MEASURES = (
    Metric("iwae_log_likelihood", "IWAE log p(x)", ".2f", "high", "nats per image"),
    Metric("iwae_k", "IWAE K", "g"),
    Metric("active_units", "active units", "g"),
    Metric("latent_units", "latent units", "g"),
    Metric("probe_accuracy", "probe accuracy", ".3f", "high"),
    Metric("fd_classifier", "FD (classifier)", ".2f", "low"),
    Metric("recon_class_accuracy", "recon class acc.", ".3f", "high"),
    Metric("sample_class_entropy", "sample class entropy", ".3f"),
    Metric("classifier_test_accuracy", "classifier test acc.", ".4f"),
    Metric("aggregate_kl", "aggregate KL to N(0, I)", ".2f", "low", "nats"),
    Metric("interpolation_jump", "interpolation jump", ".3f", "low"),
    Metric("fd_classifier_fitted", "FD (fitted Gaussian)", ".2f", "low"),
    Metric("sample_class_entropy_fitted", "sample class entropy (fitted)", ".3f"),
)

POINT_KEYS = tuple(m.key for m in POINT_METRICS)
CORE_KEYS = tuple(m.key for m in POINT_METRICS if m.core)
BY_KEY = {m.key: m for m in (*POINT_METRICS, *FINAL_MEASURES)}


def metric_of(key: str) -> Metric:
    return BY_KEY[key]


def summary_text(test: dict[str, float]) -> str:
    """One evaluation point's test metrics on one line, as the CLI, the trainer and the notebook print it."""
    return (f"-ELBO {test['loss']:7.2f} nats  MSE {test['mse']:.4f}  SSIM {test['ssim']:.3f}  "
            f"PSNR {test['psnr']:.2f} dB")
