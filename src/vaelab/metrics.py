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
    meaning: str = ""  # one line for the reader of a table: what the number is
    reference: str = ""  # the yardstick: a fixed text, or the key of the "final" value it is read against
    column: bool = True  # False: recorded to be read against (a yardstick), not shown as a column

    @property
    def short(self) -> str:
        """The header without its unit: "PSNR"."""
        return self.header.replace(" (dB)", "")

    @property
    def better_text(self) -> str:
        return {"low": "lower is better", "high": "higher is better"}.get(self.better or "", "")


POINT_METRICS = (
    Metric("loss", "−ELBO", ".2f", "low", "nats per image", "−ELBO (nats/image)", core=True,
           meaning="negative evidence lower bound: reconstruction NLL plus KL, the loss a VAE minimises",
           reference="under a Gaussian likelihood it can be negative (a density, not a probability)"),
    Metric("nll", "NLL", ".2f", "low", "nats per image", "reconstruction NLL (nats)", "−E[log p(x|z)]", core=True,
           meaning="how unlikely the decoder finds the image, given codes drawn from q(z|x)"),
    Metric("kl", "KL", ".2f", None, "nats per image", "KL(q(z|x) ‖ p(z)) (nats)", "rate", core=True,
           meaning="the rate: nats the code carries about the image beyond the prior",
           reference="0 means the latent is ignored (posterior collapse)"),
    Metric("mse", "MSE", ".4f", "low", "per pixel", "MSE per pixel", core=True,
           meaning="mean squared error of the reconstruction per pixel, pixels in [0, 1]", reference="0 is perfect"),
    Metric("ssim", "SSIM", ".3f", "high", "", "SSIM", core=True,
           meaning="structural similarity of reconstruction and image (Gaussian window, data range 1)",
           reference="1 is identical, about 0 unrelated"),
    Metric("psnr", "PSNR (dB)", ".2f", "high", "dB", "PSNR (dB)", core=True,
           meaning="peak signal-to-noise ratio of the reconstruction, per image then averaged",
           reference="each halving of the MSE adds 3 dB"),
    # The published project's definitions (scikit-image defaults on [-1, 1]), for like-for-like comparison.
    Metric("ssim_orig", "SSIM (orig.)", ".3f", "high",
           meaning="SSIM as the published project computed it (scikit-image defaults on images scaled to [-1, 1])",
           reference="comparable only with the published project's figures (docs/original.md), not with SSIM"),
    Metric("psnr_orig", "PSNR (orig., dB)", ".2f", "high", "dB",
           meaning="PSNR as the published project computed it (images scaled to [-1, 1], data range 2)",
           reference="comparable only with the published project's figures (docs/original.md), not with PSNR"),
)

FINAL_MEASURES = (
    Metric("iwae_log_likelihood", "IWAE log p(x)", ".2f", "high", "nats per image",
           meaning="importance-weighted lower bound on the test log-likelihood",
           reference="at least the ELBO (the −ELBO column negated), tighter as K grows"),
    Metric("iwae_k", "IWAE K", "g", meaning="importance samples per image in the IWAE bound"),
    Metric("active_units", "active units", "g", meaning="latent units whose posterior mean varies over the test set",
           reference="at most the latent units"),
    Metric("latent_units", "latent units", "g", meaning="the size of the latent code"),
    Metric("probe_accuracy", "probe accuracy", ".3f", "high",
           meaning="5-nearest-neighbour classification of the test set's codes by the training set's",
           reference="chance_accuracy"),
    Metric("fd_classifier", "FD (classifier)", ".2f", "low",
           meaning="Fréchet distance of prior samples to the test images in vaelab's classifier's features",
           reference="0 is identical statistics; compare only between vaelab runs (not Inception FID)"),
    Metric("recon_class_accuracy", "recon class acc.", ".3f", "high",
           meaning="the classifier's accuracy on the reconstructions of the test set", reference="chance_accuracy"),
    Metric("sample_class_entropy", "sample class entropy", ".3f",
           meaning="entropy (nats) of the classes the classifier sees in prior samples", reference="max_class_entropy"),
    Metric("classifier_test_accuracy", "classifier test acc.", ".4f",
           meaning="the classifier's own accuracy on the test set, the ceiling of the scores it gives",
           reference="chance_accuracy"),
    Metric("aggregate_kl", "aggregate KL to N(0, I)", ".2f", "low", "nats",
           meaning="KL from the test set's aggregate posterior (a fitted Gaussian) to the prior",
           reference="0 when the codes fill the prior"),
    Metric("interpolation_jump", "interpolation jump", ".3f", "low",
           meaning="the largest step between neighbouring images of latent interpolations, per pixel"),
    Metric("fd_classifier_fitted", "FD (fitted Gaussian)", ".2f", "low",
           meaning="as FD (classifier), for samples from a Gaussian fitted to the training codes"),
    Metric("sample_class_entropy_fitted", "sample class entropy (fitted)", ".3f",
           meaning="as sample class entropy, for samples from a Gaussian fitted to the training codes",
           reference="max_class_entropy"),
    Metric("chance_accuracy", "chance accuracy", ".3f", column=False,
           meaning="the test set's majority-class share: what always guessing that class scores"),
    Metric("max_class_entropy", "max class entropy", ".3f", column=False,
           meaning="ln K for the K classes: every class generated equally often"),
)

POINT_KEYS = tuple(m.key for m in POINT_METRICS)
CORE_KEYS = tuple(m.key for m in POINT_METRICS if m.core)
BY_KEY = {m.key: m for m in (*POINT_METRICS, *FINAL_MEASURES)}


def metric_of(key: str) -> Metric:
    return BY_KEY[key]


def reference_text(metric: Metric, finals: list[dict[str, float]]) -> str:
    """``metric``'s yardstick in words: its fixed text, or the "final" value it is read against (one value, or
    the range over runs whose data differ)."""
    if metric.reference not in BY_KEY:
        return metric.reference
    yardstick = BY_KEY[metric.reference]
    values = sorted({round(f[yardstick.key], 6) for f in finals if isinstance(f.get(yardstick.key), (int, float))})
    if not values:
        return ""
    shown = format(values[0], yardstick.fmt) if len(values) == 1 else \
        f"{format(values[0], yardstick.fmt)} to {format(values[-1], yardstick.fmt)}"
    return f"{yardstick.header} {shown} ({yardstick.meaning})"


SUMMARY_KEYS = ("loss", "mse", "ssim", "psnr")  # the metrics of summary_text's line


def summary_text(test: dict[str, float]) -> str:
    """One evaluation point's test metrics on one line, as the CLI, the trainer and the notebook print it."""
    return (f"-ELBO {test['loss']:7.2f} nats  MSE {test['mse']:.4f}  SSIM {test['ssim']:.3f}  "
            f"PSNR {test['psnr']:.2f} dB")
