"""The published project's AE-vs-VAE claims, each put to a measurement of a study that varies ``objective``.

Each claim names a number vaelab measures and which objective it says should come out better. For every pair
of cells that differ only in their objective, the verdict follows from the numbers by one rule
(docs/studies.md):

- "supported": the two means differ beyond the seed spread (``cells.beyond_spread``) in the claimed direction;
- "not supported": they differ beyond the seed spread the other way;
- "no difference beyond the seed spread": they do not differ by more than it;
- "one seed: no spread to judge by": a cell has a single seed.

"Focus" combines two claims: supported when the autoencoder reconstructs better *and* the VAE samples better.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..grid import coords_text
from .cells import GridCell, Stat, beyond_spread
from .study import ReportedRun

OBJECTIVE_KEY = "model.objective"
SUPPORTED, NOT_SUPPORTED, NO_DIFFERENCE, ONE_SEED = (
    "supported", "not supported", "no difference beyond the seed spread", "one seed: no spread to judge by")


@dataclass(frozen=True)
class Claim:
    topic: str
    claim: str  # vaelab's wording of what the published comparison table asserts, as a testable statement
    measure: str  # what is compared
    fmt: str
    higher_is_better: bool
    favours: str  # "ae" or "vae": which objective the claim says comes out better
    ae_value: Callable[[ReportedRun], float | None]
    vae_value: Callable[[ReportedRun], float | None]


def _test(metric: str) -> Callable[[ReportedRun], float | None]:
    return lambda run: run.latest["test"].get(metric)


def _final(key: str) -> Callable[[ReportedRun], float | None]:
    return lambda run: run.final.get(key)


def _mse_gap(run: ReportedRun) -> float:
    return float(run.latest["test"]["mse"]) - float(run.latest["train"]["mse"])


CLAIMS = (
    Claim("Mapping", "Fixed (deterministic) codes reconstruct the input more faithfully than sampled ones.",
          "test PSNR (dB)", ".2f", True, "ae", _test("psnr"), _test("psnr")),
    Claim("Sampling", "Decoding draws from N(0, I) gives images like the data for the VAE, not for the autoencoder.",
          "Fréchet distance of N(0, I) samples (classifier features)", ".2f", False, "vae",
          _final("fd_classifier"), _final("fd_classifier")),
    Claim("Latent-space regularisation", "The KL term pulls the codes toward N(0, I); an autoencoder's are free.",
          "aggregate-posterior KL to N(0, I) (nats)", ".1f", False, "vae",
          _final("aggregate_kl"), _final("aggregate_kl")),
    Claim("Continuity", "Decodes change smoothly along straight lines between the VAE's codes.",
          "interpolation jump (1 = even change)", ".2f", False, "vae",
          _final("interpolation_jump"), _final("interpolation_jump")),
    Claim("Generative capability", "The VAE generates varied new images; the autoencoder cannot, even from a "
          "Gaussian fitted to its codes.", "Fréchet distance: AE from its fitted Gaussian, VAE from N(0, I)", ".2f",
          False, "vae", _final("fd_classifier_fitted"), _final("fd_classifier")),
    Claim("Generalisation", "The VAE's regularised latent space generalises better: a smaller train–test gap.",
          "test − train MSE", ".5f", False, "vae", _mse_gap, _mse_gap),
)
FOCUS = ("Focus", "The autoencoder buys reconstruction with generation: it reconstructs better and samples worse.")


@dataclass
class ClaimRow:
    topic: str
    claim: str
    where: str  # the other coordinates of the pair ("z 2"), empty when there is one pair
    measure: str
    ae: str
    vae: str
    verdict: str


def verdict(ae: Stat | None, vae: Stat | None, higher_is_better: bool, favours: str) -> str | None:
    """The rule of the module's docstring; None where either side was not measured."""
    if ae is None or vae is None:
        return None
    beyond = beyond_spread(ae, vae)
    if beyond is None:
        return ONE_SEED
    if not beyond:
        return NO_DIFFERENCE
    vae_better = (vae.mean > ae.mean) == higher_is_better
    return SUPPORTED if vae_better == (favours == "vae") else NOT_SUPPORTED


def focus_verdict(mapping: str | None, sampling: str | None) -> str | None:
    if mapping is None or sampling is None:
        return None
    if NOT_SUPPORTED in (mapping, sampling):
        return NOT_SUPPORTED
    if mapping == sampling == SUPPORTED:
        return SUPPORTED
    return ONE_SEED if ONE_SEED in (mapping, sampling) else NO_DIFFERENCE


def objective_pairs(cells: Sequence[GridCell]) -> list[tuple[str, GridCell, GridCell]]:
    """(the other coordinates, the AE cell, the VAE cell) for every pair that differs only in the objective."""
    by_rest: dict[tuple, dict[str, GridCell]] = {}
    for cell in cells:
        rest = tuple((k, v) for k, v in cell.coords if k != OBJECTIVE_KEY)
        by_rest.setdefault(rest, {})[cell.value(OBJECTIVE_KEY)] = cell
    return [(coords_text(rest), group["ae"], group["vae"]) for rest, group in by_rest.items()
            if "ae" in group and "vae" in group]


def claim_rows(cells: Sequence[GridCell]) -> list[ClaimRow]:
    """One row per claim and pair of cells, with the measured means and the verdict; [] without such pairs."""
    pairs = objective_pairs(cells)
    rows = []
    for where, ae_cell, vae_cell in pairs:
        verdicts = {}
        for claim in CLAIMS:
            ae, vae = ae_cell.stat(claim.ae_value), vae_cell.stat(claim.vae_value)
            verdicts[claim.topic] = verdict(ae, vae, claim.higher_is_better, claim.favours)
            if verdicts[claim.topic] is None:
                continue
            rows.append(ClaimRow(claim.topic, claim.claim, where if len(pairs) > 1 else "", claim.measure,
                                 ae.text(claim.fmt), vae.text(claim.fmt), verdicts[claim.topic]))
        focus = focus_verdict(verdicts["Mapping"], verdicts["Sampling"])
        if focus is not None:
            rows.append(ClaimRow(*FOCUS, where if len(pairs) > 1 else "", "the Mapping and Sampling rows together",
                                 "", "", focus))
    return rows
