"""The seed-spread rule and the claims' verdicts, on constructed runs whose verdict is known."""

from pathlib import Path

import pytest

from vaelab.grid import Axis
from vaelab.report.cells import Stat, beyond_spread, cells_of, grid_reading
from vaelab.report.claims import NO_DIFFERENCE, NOT_SUPPORTED, ONE_SEED, SUPPORTED, claim_rows, verdict
from vaelab.report.study import ReportedRun

METRICS = {"loss": 100.0, "nll": 90.0, "kl": 10.0, "mse": 0.02, "ssim": 0.8, "psnr": 20.0}


def run(objective: str, seed: int, psnr: float, fd: float, z: int = 2, **final) -> ReportedRun:
    test = {**METRICS, "psnr": psnr}
    record = {"epoch": 1, "test": test, "train": {**METRICS, "mse": 0.019}}
    coords = (("model.objective", objective), ("model.latent_dim", z), ("train.seed", seed))
    return ReportedRun(latent_dim=z, path=Path(f"objective={objective},z={z},seed={seed}"),
                       config={"model": {"latent_dim": z}, "train": {"epochs": 1, "seed": seed}}, history=[record],
                       eval_sizes={}, environment={}, final={"fd_classifier": fd, **final}, coords=coords)


@pytest.mark.parametrize("a, b, expected", [
    (Stat(10.0, 1.0, 3), Stat(14.0, 1.0, 3), True),  # 4 > 2 * sqrt(2/3) = 1.63
    (Stat(10.0, 1.0, 3), Stat(11.0, 1.0, 3), False),
    (Stat(10.0, 0.0, 1), Stat(20.0, 0.0, 1), None),
])
def test_beyond_the_seed_spread_is_twice_the_standard_error_of_the_difference(a, b, expected):
    assert beyond_spread(a, b) is expected


@pytest.mark.parametrize("ae, vae, higher, favours, expected", [
    (Stat(20.0, 0.1, 3), Stat(18.0, 0.1, 3), True, "ae", SUPPORTED),
    (Stat(18.0, 0.1, 3), Stat(20.0, 0.1, 3), True, "ae", NOT_SUPPORTED),
    (Stat(30.0, 1.0, 3), Stat(10.0, 1.0, 3), False, "vae", SUPPORTED),
    (Stat(10.0, 5.0, 3), Stat(11.0, 5.0, 3), False, "vae", NO_DIFFERENCE),
    (Stat(10.0, 0.0, 1), Stat(11.0, 0.0, 1), False, "vae", ONE_SEED),
])
def test_a_verdict_follows_from_the_numbers(ae, vae, higher, favours, expected):
    assert verdict(ae, vae, higher, favours) == expected


def test_claim_rows_judge_each_claim_of_an_ae_vae_pair():
    runs = [run("ae", s, psnr=22 + 0.1 * s, fd=40 + s, aggregate_kl=300.0 + s) for s in range(3)]
    runs += [run("vae", s, psnr=19 + 0.1 * s, fd=5 + s, aggregate_kl=300.5 + s) for s in range(3)]
    rows = {row.topic: row for row in claim_rows(cells_of(runs))}
    assert rows["Mapping"].verdict == SUPPORTED and rows["Mapping"].ae == "22.10 ± 0.10"
    assert rows["Sampling"].verdict == SUPPORTED and rows["Focus"].verdict == SUPPORTED
    assert rows["Latent-space regularisation"].verdict == NO_DIFFERENCE
    assert "Continuity" not in rows  # not measured in these runs: no row rather than a guess


def test_the_grid_reading_counts_the_changes_beyond_the_spread():
    runs = [run("ae", s, psnr=22 + 0.1 * s, fd=40) for s in range(3)]
    runs += [run("vae", s, psnr=19 + 0.1 * s, fd=5) for s in range(3)]
    axes = (Axis("model.objective", ("ae", "vae")), Axis("model.latent_dim", (2,)))
    reading = dict(grid_reading(cells_of(runs), axes, [0, 1, 2]))
    assert reading["Along objective"].endswith("1 of 2 changes exceed the seed spread.")
    assert "test PSNR objective ae → vae (z 2): −3.00 dB (beyond the seed spread)" in reading["Along objective"]
