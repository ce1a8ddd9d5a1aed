"""Draw docs/original_curves.png: vaelab's test PSNR and SSIM on the published project's definitions
(psnr_orig, ssim_orig) against epochs, over the published final values.

Usage (from the repository root):
    python docs/original_curves.py docs/runs/faithful docs/runs/small docs/runs/wide-128-256 -o docs/original_curves.png

Each argument is a study-like directory holding latent_<c>/metrics.json runs; its name labels its curves.
The published values are read off the plots in its README (test_plots.png per latent size, after 20 epochs).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from vaelab import rundir  # noqa: E402

# The published project's final test values (its README's plots; read off to the plot's resolution).
PUBLISHED = {2: {"psnr_orig": 30.5, "ssim_orig": 0.98}, 4: {"psnr_orig": 32.8, "ssim_orig": 0.98},
             16: {"psnr_orig": 35.5, "ssim_orig": 0.99}}
COLOURS = {2: "#1f77b4", 4: "#2ca02c", 16: "#d62728"}
STYLES = ("-", "--", ":", "-.")


def read_curves(directory: Path) -> dict[int, tuple[list[float], dict[str, list[float]]]]:
    curves = {}
    for run in rundir.study_run_dirs(directory):  # latent_<c>/ directories, by latent size
        c = rundir.latent_dim_of(run)
        history = json.loads((run / rundir.METRICS_JSON).read_text())["history"]
        epochs = [r["epoch"] for r in history]
        curves[c] = (epochs, {m: [r["test"][m] for r in history] for m in ("psnr_orig", "ssim_orig")})
    return curves


def draw(directories: list[Path], output: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    for style, directory in zip(STYLES, directories, strict=False):
        for c, (epochs, values) in read_curves(directory).items():
            for ax, metric in zip(axes, ("psnr_orig", "ssim_orig"), strict=True):
                ax.plot(epochs, values[metric], style, marker="o", markersize=3, color=COLOURS.get(c, "0.3"),
                        label=f"{directory.name}, c = {c}")
    for ax, metric, name in zip(axes, ("psnr_orig", "ssim_orig"), ("test PSNR (dB)", "test SSIM"), strict=True):
        for c, published in PUBLISHED.items():
            ax.scatter([20], [published[metric]], marker="*", s=160, color=COLOURS[c], edgecolor="black", zorder=5,
                       label=f"published, c = {c} (20 epochs)")
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{name}, published definition")
        ax.grid(alpha=0.3)
    axes[1].set_ylim(0.6, 1.0)
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle("vaelab's test curves on the published metrics (lines) against the published final values (stars)")
    fig.tight_layout()
    fig.savefig(output, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directories", nargs="+", type=Path)
    parser.add_argument("-o", "--output", type=Path, default=Path("docs/original_curves.png"))
    args = parser.parse_args()
    draw(args.directories, args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
