"""The generated reading: a few paragraphs that say what a study's numbers say, written from the numbers.

Each ``describe_*`` function writes one paragraph (or None when it has nothing to say); ``plain_reading``
puts them in order. The small formatting helpers here are shared by the tables and the page.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..data import item_word
from ..training import FEW_STEPS
from .study import ReportedRun, Study, comparable_runs

LEVELLED_OFF = 0.002


def duration(seconds: float) -> str:
    if seconds < 9.95:
        return f"{seconds:.1f} s"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def and_list(items: Iterable[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def epoch_text(epoch: float) -> str:
    return f"{float(epoch):.2f}".rstrip("0").rstrip(".")


def signed(value: float) -> str:
    return f"{value:+.2f}".replace("-", "−")


def probe_word(dataset: str) -> str:
    """What the probe and the classifier tell apart: digits on digit data, else classes."""
    return "digit" if item_word(dataset) == "digits" else "class"


def describe_reconstruction(runs: Sequence[ReportedRun], others: bool) -> str:
    if len(runs) == 1:
        run = runs[0]
        only = ("Only latent size {} has finished" if others and run.finished else "Only latent size {} has results"
                ).format(run.latent_dim)
        return (f"{only} so far: at epoch {epoch_text(run.epochs_done)} it reconstructs the test "
                f"{item_word(run.dataset)} with MSE "
                f"{run.test('mse'):.4f}, SSIM {run.test('ssim'):.3f} and PSNR {run.test('psnr'):.2f} dB.")
    by_mse = sorted(runs, key=lambda r: r.test("mse"))
    best, worst = by_mse[0], by_mse[-1]
    ratio = ""
    if best.test("mse") > 0:
        factor = worst.test("mse") / best.test("mse")
        ratio = f" ({factor:.1f}× lower)" if factor >= 1.5 else f" ({1 - 1 / factor:.1%} lower)"
    text = (f"Latent size {best.latent_dim} reconstructs the test {item_word(best.dataset)} best: MSE "
            f"{best.test('mse'):.4f} against "
            f"{worst.test('mse'):.4f} for latent size {worst.latent_dim}{ratio}, SSIM {best.test('ssim'):.3f} "
            f"against {worst.test('ssim'):.3f}, PSNR {best.test('psnr'):.2f} dB against {worst.test('psnr'):.2f} dB.")
    order = [r.latent_dim for r in by_mse]
    if len(runs) > 2:
        if order == sorted(order, reverse=True):
            text += " The error falls with every step up in latent size."
        elif order == sorted(order):
            text += " The error rises with every step up in latent size."
        else:
            text += f" Ranked by MSE, best first: latent sizes {and_list(map(str, order))}."
    for metric, name in (("ssim", "SSIM"), ("psnr", "PSNR")):
        top = max(runs, key=lambda r: r.test(metric))
        if top is not best:
            text += f" {name} ranks latent size {top.latent_dim} first, though."
    return text


def describe_elbo_and_kl(runs: Sequence[ReportedRun]) -> str:
    by_loss = sorted(runs, key=lambda r: r.test("loss"))
    best, worst = by_loss[0], by_loss[-1]
    text = (f"On the test −ELBO (a bound on the negative log-likelihood; lower is better) latent size "
            f"{best.latent_dim} is best with {best.test('loss'):.2f} nats per image")
    if len(runs) > 1:
        text += (f", {worst.test('loss') - best.test('loss'):.2f} nats below latent size {worst.latent_dim} "
                 f"({worst.test('loss'):.2f})")
    kls = [f"{r.test('kl'):.2f}{' nats' if i == 0 else ''} for latent size {r.latent_dim}" for i, r in enumerate(runs)]
    per_dim = [f"{r.test('kl') / r.latent_dim:.2f}" for r in runs]
    text += (f". The KL term, the information the code holds about each image, is {and_list(kls)}: "
             f"{and_list(per_dim)} nats per latent dimension.")
    if len(runs) > 1:
        small, large = runs[0], runs[-1]
        d_nll = large.test("nll") - small.test("nll")
        d_kl = large.test("kl") - small.test("kl")
        text += (f" From latent size {small.latent_dim} to {large.latent_dim} the reconstruction term (NLL) "
                 f"{'falls' if d_nll < 0 else 'rises'} by {abs(d_nll):.2f} nats and the KL "
                 f"{'rises' if d_kl > 0 else 'falls'} by {abs(d_kl):.2f}")
        if d_nll < 0 < d_kl:
            net = "a net gain" if -d_nll > d_kl else "a net loss"
            text += (f": the larger code spends {d_kl:.2f} nats more on KL to save {-d_nll:.2f} on reconstruction, "
                     f"{net} of {abs(d_nll + d_kl):.2f} nats.")
        else:
            text += f", a net change of {signed(d_nll + d_kl)} nats in the −ELBO."
    return text


def common_epochs(runs: Sequence[ReportedRun]) -> list[float]:
    sets = [{round(float(r["epoch"]), 4) for r in run.history} for run in runs]
    return sorted(set.intersection(*sets))


def loss_at(run: ReportedRun, epoch: float) -> float:
    return next(float(r["test"]["loss"]) for r in run.history if round(float(r["epoch"]), 4) == epoch)


def describe_gap_over_training(runs: Sequence[ReportedRun]) -> str | None:
    """How the -ELBO spread between latent sizes moved from early to late in training."""
    if len(runs) < 2:
        return None
    epochs = common_epochs(runs)
    if len(epochs) < 2:
        return None
    whole = [e for e in epochs if e == int(e)]
    first, last = (whole[0] if len(whole) >= 2 else epochs[0]), epochs[-1]

    def spread(epoch: float) -> tuple[float, int]:
        losses = {run.latent_dim: loss_at(run, epoch) for run in runs}
        leader = min(losses, key=losses.get)
        return max(losses.values()) - losses[leader], leader

    gap_first, (gap_last, lead_last) = spread(first)[0], spread(last)
    leaders = [(epoch, spread(epoch)[1]) for epoch in epochs]
    if gap_last < 0.95 * gap_first:
        verb = "narrowed"
    elif gap_last > 1.05 * gap_first:
        verb = "widened"
    else:
        verb = "stayed about the same"
    text = (f"The test −ELBO gap between the best and the worst latent size {verb} during training: "
            f"{gap_first:.2f} nats at epoch {epoch_text(first)}, {gap_last:.2f} nats at epoch {epoch_text(last)}")
    if any(run.epochs_done > last for run in runs):
        text += " (the last point every run has reached)"
    text += "."
    if leaders[0][1] != lead_last:
        since = next(epoch for i, (epoch, _) in enumerate(leaders) if all(lead == lead_last for _, lead in leaders[i:]))
        text += (f" The ranking changed on the way: latent size {leaders[0][1]} led at the first evaluation point "
                 f"(epoch {epoch_text(leaders[0][0])}), and latent size {lead_last} has led since epoch "
                 f"{epoch_text(since)}.")
    return text


def describe_generalisation(runs: Sequence[ReportedRun]) -> str:
    gaps = [(run.latent_dim, run.test("loss") - run.train("loss")) for run in runs]
    text = ("Test minus train −ELBO (positive when a model fits its training images better than unseen ones) is "
            + and_list(f"{signed(gap)} nats for latent size {dim}" for dim, gap in gaps) + ".")
    values = [gap for _, gap in gaps]
    if len(gaps) > 2 and values == sorted(values) and values[-1] > values[0] > 0:
        text += " The gap grows with the latent size."
    return text


def describe_progress(runs: Sequence[ReportedRun]) -> str | None:
    """Whether each finished run was still improving over its last evaluation interval."""
    parts, still, rising, few = [], [], [], []
    for run in runs:
        if len(run.history) < 2 or not run.finished:
            continue
        before, after = run.history[-2], run.history[-1]
        span = float(after["epoch"]) - float(before["epoch"])
        drop = float(before["test"]["loss"]) - float(after["test"]["loss"])
        parts.append(f"{signed(-drop)} nats for latent size {run.latent_dim} (epoch {epoch_text(before['epoch'])} → "
                     f"{epoch_text(after['epoch'])})")
        steps = int(after.get("step", 0)) - int(before.get("step", 0))
        if 0 < steps < FEW_STEPS:  # a handful of steps says nothing about convergence
            few.append((str(run.latent_dim), steps))
        elif drop < 0:
            rising.append(str(run.latent_dim))
        elif span > 0 and drop / span > LEVELLED_OFF * float(after["test"]["loss"]):
            still.append(str(run.latent_dim))
    if not parts:
        return None
    text = "Over the last evaluation interval the test −ELBO changed by " + and_list(parts) + "."
    if still:
        text += (f" Latent size{'s' if len(still) > 1 else ''} {and_list(still)} still improved by more than "
                 f"{LEVELLED_OFF:.1%} per epoch, so more epochs would likely lower {'them' if len(still) > 1 else 'it'}"
                 " further.")
    if rising:
        text += (f" For latent size{'s' if len(rising) > 1 else ''} {and_list(rising)} it rose: a rising test −ELBO "
                 "is the first sign of overfitting.")
    if few:
        took = and_list([f"latent size {z} took only {n} optimiser step{'s' if n != 1 else ''}" for z, n in few])
        text += (f" {took[0].upper()}{took[1:]} over that interval, too few to say whether training has levelled "
                 "off (a smaller --batch-size gives more steps per epoch).")
    elif not still and not rising:
        text += f" Every run has levelled off (under {LEVELLED_OFF:.1%} per epoch)."
    return text


def describe_final_measures(runs: Sequence[ReportedRun]) -> str | None:
    """The end-of-training measures every compared run has, when training wrote them."""
    def have(*keys: str) -> bool:
        return all(key in run.final for run in runs for key in keys)

    def each(value_of, fmt: str, unit: str = "") -> str:
        """ "v1 unit for latent size a, v2 for latent size b and v3 for latent size c", minus signs typeset."""
        return and_list(f"{format(value_of(r), fmt).replace('-', '−')}{unit if i == 0 else ''} for latent size "
                        f"{r.latent_dim}" for i, r in enumerate(runs))

    parts = []
    if have("iwae_log_likelihood"):
        k = runs[0].final.get("iwae_k")
        parts.append(f"The importance-weighted bound{f' (K = {k:g})' if k else ''} puts the test log-likelihood at "
                     f"{each(lambda r: r.final['iwae_log_likelihood'], '.2f', ' nats')} per image, tighter than the "
                     f"ELBO by {and_list(format(r.final['iwae_log_likelihood'] + r.test('loss'), '.2f') for r in runs)}"
                     " nats.")
    if have("active_units", "latent_units"):
        parts.append("Active latent units: " + and_list(
            f"{r.final['active_units']:g} of {r.final['latent_units']:g} for latent size {r.latent_dim}" for r in runs)
                     + ".")
        idle = [r for r in runs if r.final["active_units"] < r.final["latent_units"]]
        if idle:
            parts.append(and_list(f"Latent size {r.latent_dim} leaves "
                                  f"{r.final['latent_units'] - r.final['active_units']:g}" for r in idle)
                         + " of its units unused: their posterior stays at the prior whatever the image.")
    if len(runs) > 1 and have("probe_accuracy"):
        best = max(runs, key=lambda r: r.final["probe_accuracy"])
        parts.append(f"A nearest-neighbour {probe_word(best.dataset)} probe on the posterior means is most accurate "
                     "for latent size "
                     f"{best.latent_dim}: {each(lambda r: r.final['probe_accuracy'], '.1%')}.")
    if len(runs) > 1 and have("fd_classifier"):
        best = min(runs, key=lambda r: r.final["fd_classifier"])
        parts.append(f"Prior samples look most like test {item_word(best.dataset)} to a {probe_word(best.dataset)} "
                     "classifier for latent size "
                     f"{best.latent_dim} (Fréchet distance of its features, lower is better: "
                     f"{each(lambda r: r.final['fd_classifier'], '.2f')}).")
    return " ".join(parts) or None


def describe_completeness(study: Study, compared: Sequence[ReportedRun]) -> str | None:
    notes = []
    for run in study.runs:
        if not run.finished:
            left = " and is left out of the comparisons above" if run not in compared else ""
            notes.append(f"Latent size {run.latent_dim} has reached epoch {epoch_text(run.epochs_done)} of "
                         f"{run.epochs_planned} only (still training, or interrupted: 'vaelab study --resume' "
                         f"continues it){left}.")
    notes += [f"Not in this report: {reason}." for reason in study.left_out.values()]
    return " ".join(notes) or None


def plain_reading(study: Study) -> list[tuple[str, str]]:
    """A few (topic, paragraph) pairs that say what the numbers say, written from the numbers."""
    runs = comparable_runs(study)
    paragraphs = [("Reconstruction", describe_reconstruction(runs, others=len(runs) < len(study.runs))),
                  ("−ELBO and KL", describe_elbo_and_kl(runs)),
                  ("Over training", describe_gap_over_training(runs)),
                  ("Generalisation", describe_generalisation(runs)),
                  ("Convergence", describe_progress(runs)),
                  ("Beyond reconstruction", describe_final_measures(runs)),
                  ("Not finished", describe_completeness(study, runs))]
    return [(topic, text) for topic, text in paragraphs if text]
