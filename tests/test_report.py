"""The study report, built from tiny real trainings: two finished latent sizes and one interrupted run,
with the per-run frames and figures that ``vaelab study`` makes."""

import csv
import json
import os
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers import OnPoint, one_line, small_config
from vaelab.checkpoint import load_checkpoint
from vaelab.cli import cli
from vaelab.data import Dataset, ImageSplit
from vaelab.errors import ReportError
from vaelab.evaluation import METRICS
from vaelab.report import ReportedRun, Study, build_report, plain_reading, redraw_stale_figures, runs_with_stale_figures
from vaelab.run_store import fit
from vaelab.training import Trainer
from vaelab.visualisation import ArtifactRecorder, render_run_artifacts

FINISHED, INTERRUPTED = (2, 4), 8
EPOCHS = 1
# The interrupted run of 2 epochs dies at its 7th evaluation point, the end of epoch 2, before that epoch's
# checkpoint: it keeps epoch 1's checkpoint and the 6 points that checkpoint holds (5 in epoch 1, then its end).
INTERRUPTED_EPOCHS, CRASH_AT_POINT = 2, 6


class Crash(Exception):
    """Stands for a kill: the trainer stops where it is, without saving."""


def crash_at(index: int):
    def hook(point) -> None:
        if point.index == index:
            raise Crash
    return hook


@pytest.fixture(scope="module")
def study(mnist, tmp_path_factory) -> Path:
    data = Dataset(mnist.name, mnist.root, ImageSplit(mnist.train.images[:1024], mnist.train.labels[:1024]),
                   ImageSplit(mnist.test.images[:500], mnist.test.labels[:500]))
    root = tmp_path_factory.mktemp("study")

    def trainer(z: int, *hooks, epochs: int = EPOCHS) -> Trainer:
        run_dir = root / f"latent_{z}"
        made = Trainer(small_config(z, epochs, lr=3e-3), data, run_dir, progress=False)
        made.callbacks += [*map(OnPoint, hooks), ArtifactRecorder(run_dir, made.test_x, made.test_labels, per_class=20)]
        return made

    for z in FINISHED:  # as 'vaelab study' does: frames while training, figures at the end
        fit(trainer(z))
        render_run_artifacts(root / f"latent_{z}", "pca")
    with pytest.raises(Crash):  # killed: frames so far, metrics and checkpoint of epoch 1, no figures
        fit(trainer(INTERRUPTED, crash_at(CRASH_AT_POINT), epochs=INTERRUPTED_EPOCHS))
    (root / "study.json").write_text(json.dumps({"latent_dims": [*FINISHED, INTERRUPTED]}))
    build_report(root)
    return root


def history(study: Path, z: int) -> list[dict]:
    return json.loads((study / f"latent_{z}" / "metrics.json").read_text())["history"]


@pytest.mark.slow
def test_the_interrupted_run_has_only_the_history_its_checkpoint_holds(study):
    assert len(history(study, INTERRUPTED)) == CRASH_AT_POINT
    assert load_checkpoint(study / f"latent_{INTERRUPTED}" / "checkpoint.pt")["epoch"] == 1
    assert len(history(study, FINISHED[0])) == 5 + EPOCHS


@pytest.mark.slow
def test_csv_rows_are_each_runs_latest_evaluation_point(study):
    rows = list(csv.DictReader((study / "final_metrics.csv").open()))
    assert [int(r["latent_dim"]) for r in rows] == [*FINISHED, INTERRUPTED]
    for row in rows:
        latest = history(study, int(row["latent_dim"]))[-1]
        for split in ("test", "train"):
            for m in METRICS:
                assert float(row[f"{split}_{m}"]) == latest[split][m], (row["latent_dim"], split, m)
        assert float(row["epochs_done"]) == latest["epoch"]
        assert row["finished"] == str(int(row["latent_dim"]) in FINISHED)


def markdown_rows(study: Path) -> dict[int, dict[str, str]]:
    lines = [line for line in (study / "final_metrics.md").read_text().splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = [dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=False)) for line in lines[2:]]
    return {int(r["latent size"]): r for r in rows}


@pytest.mark.slow
def test_markdown_table_rounds_the_same_numbers(study):
    rows = markdown_rows(study)
    assert sorted(rows) == sorted([*FINISHED, INTERRUPTED])
    for z, row in rows.items():
        test = history(study, z)[-1]["test"]
        assert row["test -ELBO"] == f"{test['loss']:.2f}" and row["test KL"] == f"{test['kl']:.2f}"
        assert row["test MSE"] == f"{test['mse']:.4f}" and row["test SSIM"] == f"{test['ssim']:.3f}"
    assert rows[FINISHED[0]]["epochs"] == str(EPOCHS)
    assert rows[INTERRUPTED]["epochs"] == f"1 of {INTERRUPTED_EPOCHS}"


@pytest.mark.slow
def test_every_final_measure_becomes_a_column(study, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(study, copy)
    metrics_path = copy / "latent_2" / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    metrics["final"] = {"iwae_nll": 123.456, "active_units": 2}
    metrics_path.write_text(json.dumps(metrics))
    build_report(copy)
    rows = {int(r["latent_dim"]): r for r in csv.DictReader((copy / "final_metrics.csv").open())}
    assert float(rows[2]["iwae_nll"]) == 123.456 and float(rows[2]["active_units"]) == 2
    assert rows[4]["iwae_nll"] == "" and rows[INTERRUPTED]["active_units"] == ""
    assert markdown_rows(copy)[2]["iwae nll"] == "123.5"
    assert "<th>active units</th>" in (copy / "report.html").read_text()


def reading_of(study: Path) -> dict[str, str]:
    return dict(build_report(study).reading)


@pytest.mark.slow
def test_reading_names_the_best_latent_size_among_finished_runs(study):
    latest = {z: history(study, z)[-1]["test"] for z in FINISHED}
    best_mse = min(FINISHED, key=lambda z: latest[z]["mse"])
    best_elbo = min(FINISHED, key=lambda z: latest[z]["loss"])
    reading = reading_of(study)
    assert reading["Reconstruction"].startswith(f"Latent size {best_mse} reconstructs the test digits best")
    assert f"latent size {best_elbo} is best with {latest[best_elbo]['loss']:.2f} nats" in reading["−ELBO and KL"]
    for z in FINISHED:
        assert f"{latest[z]['kl']:.2f}" in reading["−ELBO and KL"]
    assert f"Latent size {INTERRUPTED} has reached epoch" in reading["Not finished"]
    assert "left out of the comparisons" in reading["Not finished"]


@pytest.mark.slow
def test_reading_says_whether_the_elbo_gap_narrowed(study):
    def gap(epoch):
        losses = [next(r["test"]["loss"] for r in history(study, z) if r["epoch"] == epoch) for z in FINISHED]
        return max(losses) - min(losses)

    start = history(study, FINISHED[0])[0]["epoch"]  # one epoch: compared from the first point on
    first, last = gap(start), gap(float(EPOCHS))
    expected = "narrowed" if last < 0.95 * first else "widened" if last > 1.05 * first else "stayed about the same"
    start_text = f"{start:.2f}".rstrip("0").rstrip(".")
    assert (f"{expected} during training: {first:.2f} nats at epoch {start_text}, {last:.2f} nats at epoch {EPOCHS}"
            in reading_of(study)["Over training"])


class ImageLinks(HTMLParser):
    def __init__(self):
        super().__init__()
        self.srcs, self.hrefs = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.srcs.append(attrs["src"])
        if tag == "a":
            self.hrefs.append(attrs["href"])


@pytest.mark.slow
def test_page_links_only_files_that_exist_by_relative_paths(study):
    page = ImageLinks()
    page.feed((study / "report.html").read_text())
    assert "comparison.png" in page.srcs
    for link in page.srcs + [h for h in page.hrefs if not h.startswith("#")]:
        assert not link.startswith(("/", "file:", "http")), link
        assert (study / link).is_file(), link
    for z in FINISHED:
        for name in ("latent_space.gif", "reconstructions.gif", "metrics.png", "samples.png", "interpolations.png",
                     "architecture.png"):
            assert f"latent_{z}/{name}" in page.srcs
    assert "latent_2/manifold.png" in page.srcs and "latent_4/manifold.png" not in page.srcs
    assert not any(src.startswith(f"latent_{INTERRUPTED}/") for src in page.srcs)
    # figures a run does not have are named in a note, not linked
    assert f"Not in latent_{INTERRUPTED}/ (yet): latent_space.gif" in (study / "report.html").read_text()


@pytest.mark.slow
def test_what_was_run_shows_each_runs_recorded_environment(study):
    text = one_line((study / "report.html").read_text())
    setup = text[text.index('id="setup"'):text.index("Settings shared by every run")]
    environment = json.loads((study / "latent_2" / "metrics.json").read_text())["environment"]
    for title, key in (("Python", "python"), ("NumPy", "numpy"), ("CUDA", "cuda"), ("cuDNN", "cudnn"),
                       ("CPU", "cpu"), ("CPU threads", "threads")):
        assert f"<dt>{title}</dt><dd>{environment[key]}</dd>" in setup, title
    assert environment["git_commit"] in setup
    assert ("uncommitted changes" in setup) == (environment["git_dirty"] == "true")


@pytest.mark.slow
def test_cli_report_rebuilds_everything_without_retraining(study, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(study, copy)
    for name in ("report.html", "comparison.png", "final_metrics.csv", "final_metrics.md"):
        (copy / name).unlink()
    checkpoint = copy / "latent_2" / "checkpoint.pt"
    before = checkpoint.stat().st_mtime_ns
    result = CliRunner().invoke(cli, ["report", str(copy)])
    assert result.exit_code == 0, result.output
    # only the interrupted run's figures were out of date; the finished runs' were left alone
    assert f"latent_{INTERRUPTED}: redrawn" in result.output and "latent_2:" not in result.output
    assert (copy / f"latent_{INTERRUPTED}" / "latent_space.gif").exists()
    assert runs_with_stale_figures(copy) == []
    assert "Reconstruction: Latent size" in result.output
    for name in ("report.html", "comparison.png", "final_metrics.csv", "final_metrics.md"):
        assert (copy / name).stat().st_size > 0, name
    assert checkpoint.stat().st_mtime_ns == before
    assert (copy / "final_metrics.csv").read_text() == (study / "final_metrics.csv").read_text()


def test_a_directory_without_results_is_a_clear_error(tmp_path):
    with pytest.raises(ReportError, match="no such study directory"):
        build_report(tmp_path / "nowhere")
    with pytest.raises(ReportError, match="no latent_<z>/ run directories"):
        build_report(tmp_path)
    (tmp_path / "latent_3").mkdir()
    (tmp_path / "latent_3" / "config.json").write_text("{}")
    with pytest.raises(ReportError, match="latent_3/ has no metrics.json yet"):
        build_report(tmp_path)
    result = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "no run with results" in one_line(result.output)
    assert CliRunner().invoke(cli, ["report", str(tmp_path / "nowhere")]).exit_code == 2


@pytest.mark.slow
@pytest.mark.browser
def test_report_opens_in_chromium_from_a_moved_study(study, page, tmp_path):
    built = tmp_path / "built"
    shutil.copytree(study, built)
    redraw_stale_figures(built)  # the interrupted run's figures too, as 'vaelab report' does
    build_report(built)
    moved = tmp_path / "moved" / "elsewhere"
    shutil.move(built, moved)  # the page must not depend on where it was built
    page.goto((moved / "report.html").as_uri(), wait_until="load")
    images = page.evaluate("[...document.images].map(i => [i.getAttribute('src'), i.complete && i.naturalWidth])")
    # comparison + latent 2 (7 with the manifold) + latent 4 (6) + the interrupted run (6: its checkpoint of
    # epoch 1 draws samples and interpolations too)
    assert len(images) == 1 + 7 + 6 + 6 and all(width > 0 for _, width in images), images
    assert page.errors == []
    assert page.locator("#final-table tbody tr").count() == len(FINISHED) + 1
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("VAELAB_SCREENSHOT_DIR"):
        Path(os.environ["VAELAB_SCREENSHOT_DIR"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(os.environ["VAELAB_SCREENSHOT_DIR"]) / "report.png")
    assert shot.stat().st_size > 10_000


def synthetic_run(latent_dim: int, losses: dict[float, float], kl: float = 5.0) -> ReportedRun:
    """A run whose test -ELBO follows ``losses`` (epoch -> nats); the other metrics are filler."""
    def record(epoch, loss):
        split = {"loss": loss, "nll": loss - kl, "kl": kl, "mse": loss / 3000, "ssim": 0.5, "psnr": 15.0}
        return {"epoch": epoch, "step": 0, "time_s": 1.0, "train": dict(split), "test": split}
    return ReportedRun(latent_dim, Path(f"latent_{latent_dim}"), {"train": {"epochs": int(max(losses))}},
               [record(e, v) for e, v in losses.items()], {}, {}, {})


def test_reading_of_a_ranking_that_changes_during_training():
    study = Study(Path("study"), [synthetic_run(2, {0.2: 190, 1.0: 160, 2.0: 150, 3.0: 145}),
                                  synthetic_run(16, {0.2: 200, 1.0: 165, 2.0: 130, 3.0: 115})], {})
    reading = dict(plain_reading(study))
    assert reading["Over training"] == (
        "The test −ELBO gap between the best and the worst latent size widened during training: 5.00 nats at "
        "epoch 1, 30.00 nats at epoch 3. The ranking changed on the way: latent size 2 led at the first evaluation "
        "point (epoch 0.2), and latent size 16 has led since epoch 2.")
    assert "Latent sizes 2 and 16 still improved" in reading["Convergence"]


def test_reading_flags_a_rising_test_elbo_and_levelled_off_runs():
    study = Study(Path("study"), [synthetic_run(2, {1.0: 150.0, 2.0: 150.1}),
                                  synthetic_run(4, {1.0: 140.0, 2.0: 139.9})], {})
    convergence = dict(plain_reading(study))["Convergence"]
    assert "For latent size 2 it rose" in convergence and "still improved" not in convergence
    assert "+0.10 nats for latent size 2" in convergence and "−0.10 nats for latent size 4" in convergence


def test_reading_of_the_end_of_training_measures():
    runs = [synthetic_run(2, {1.0: 150.0}), synthetic_run(16, {1.0: 110.0})]
    runs[0].final = {"iwae_log_likelihood": -147.5, "iwae_k": 32, "active_units": 2, "latent_units": 2,
                     "probe_accuracy": 0.71, "fd_classifier": 40.0}
    runs[1].final = {"iwae_log_likelihood": -105.25, "iwae_k": 32, "active_units": 9, "latent_units": 16,
                     "probe_accuracy": 0.95, "fd_classifier": 12.5}
    text = dict(plain_reading(Study(Path("study"), runs, {})))["Beyond reconstruction"]
    assert ("(K = 32) puts the test log-likelihood at −147.50 nats for latent size 2 and −105.25 for latent size 16"
            in text)
    assert "tighter than the ELBO by 2.50 and 4.75 nats" in text
    assert "2 of 2 for latent size 2 and 9 of 16 for latent size 16" in text
    assert "Latent size 16 leaves 7 of its units unused" in text
    assert "most accurate for latent size 16: 71.0% for latent size 2 and 95.0% for latent size 16" in text
    assert "look most like test digits to a digit classifier for latent size 16" in text


def test_a_spatial_latent_of_two_channels_expects_its_manifold_as_the_figures_draw_it(tmp_path):
    """The report asks for a manifold by the rule the figures draw it by (the architecture's has_latent_plane): a
    conv-spatial run at c = 2 has one over its uniform latent maps, and at c = 3 neither has one."""
    from vaelab.report.page import run_section
    from vaelab.report.study import ReportedRun

    def section(arch: str, latent_dim: int = 2):
        config = {"model": {"arch": arch}, "train": {"epochs": 1}}
        run = ReportedRun(latent_dim=latent_dim, path=tmp_path / f"latent_{latent_dim}", config=config,
                          history=[{"epoch": 1, "test": {"loss": 1.0, "mse": 0.1}}], eval_sizes={}, environment={},
                          final={})
        return run_section(tmp_path, run, "#000", f"latent-{latent_dim}")

    assert "manifold.png" in section("conv-spatial").missing
    assert "manifold.png" not in section("conv-spatial", 3).missing and "manifold.png" not in section("mlp", 3).missing
    assert "manifold.png" in section("mlp").missing


@pytest.mark.slow
def test_figures_lost_to_a_kill_while_drawing_are_found_and_drawn_again(study, tmp_path):
    """A finished run killed while its figures were drawn: some missing, one older than the run."""
    from vaelab.visualisation import expected_figures, figures_outdated

    copy = tmp_path / "copy"
    shutil.copytree(study, copy)
    run = copy / "latent_2"
    assert sorted(expected_figures(run)) == sorted(p.name for p in run.iterdir() if p.suffix in (".png", ".gif"))
    assert not figures_outdated(run)
    for name in ("samples.png", "manifold.png", "interpolations.png"):
        (run / name).unlink()
    old = (run / "checkpoint.pt").stat().st_mtime_ns - 10**9
    os.utime(run / "metrics.png", ns=(old, old))
    assert figures_outdated(run) and run in runs_with_stale_figures(copy)
    outcome = redraw_stale_figures(copy)
    assert outcome[run] == "redrawn" and not figures_outdated(run)
    assert all((run / name).exists() for name in expected_figures(run))


def corrupt_frame(run: Path) -> None:
    frame = sorted((run / "frames").glob("point_*.npz"))[-1]
    frame.write_bytes(b"not a frame")
    os.utime(frame)  # newer than the figures, so that 'vaelab report' tries to draw them again


def metrics_edit(change):
    def edit(run: Path) -> None:
        path = run / "metrics.json"
        payload = json.loads(path.read_text())
        change(payload)
        path.write_text(json.dumps(payload))
    return edit


@pytest.mark.slow
@pytest.mark.parametrize("damage, words", [
    (corrupt_frame, "point_"),
    (metrics_edit(lambda p: p.update(eval_sizes=[1, 2])), "'eval_sizes' should map names to values"),
    (metrics_edit(lambda p: p["history"][-1]["test"].update(loss=None)), "malformed evaluation records"),
])
def test_a_damaged_run_is_named_and_the_report_goes_on_with_the_rest(study, tmp_path, damage, words):
    copy = tmp_path / "copy"
    shutil.copytree(study, copy)
    damage(copy / f"latent_{FINISHED[0]}")
    result = CliRunner().invoke(cli, ["report", str(copy)])
    assert result.exit_code == 0, result.output
    assert words in one_line(result.output) + (copy / "report.html").read_text()
    assert "Traceback" not in result.output
    assert f"latent size {FINISHED[-1]}" in (copy / "report.html").read_text().lower()


def test_no_convergence_is_claimed_from_a_handful_of_steps_and_the_schedule_is_the_runs_own():
    from vaelab.report.page import evaluation_schedule

    few = synthetic_run(2, {1.0: 177.44, 2.0: 177.34})  # 70 images at batch 128: one step an epoch
    for step, record in enumerate(few.history, start=1):
        record["step"] = step
    progress = dict(plain_reading(Study(Path("study"), [few], {})))["Convergence"]
    assert "took only 1 optimiser step over that interval" in progress and "levelled off (under" not in progress
    assert evaluation_schedule([few]) == "once per epoch"
    assert evaluation_schedule([synthetic_run(2, {0.2: 190, 0.4: 180, 1.0: 160})]) == (
        "two inside the first epoch, then one per epoch")


def yardstick_rows() -> list[dict]:
    """Two finished runs on a two-class set where chance is 0.6: one probe scores below it."""
    base = {"latent_dim": 2, "epochs_done": 1, "epochs_planned": 1, "finished": True, "wall_time_s": 1.0,
            "chance_accuracy": 0.6, "max_class_entropy": 0.6931471805599453}
    return [{**base, "latent_dim": 2, "probe_accuracy": 0.55, "recon_class_accuracy": 0.58},
            {**base, "latent_dim": 4, "probe_accuracy": 0.9, "recon_class_accuracy": 0.4}]


def test_a_score_at_or_below_chance_is_never_marked_best():
    from vaelab.report.tables import best_values, measure_columns

    rows = yardstick_rows()
    columns = measure_columns(rows)
    assert [c.key for c in columns] == ["probe_accuracy", "recon_class_accuracy"]  # the yardsticks are no columns
    best = best_values(rows, columns)
    assert best == {"probe_accuracy": 0.9}  # 0.58 is the higher reconstruction score, but below chance


def test_every_column_says_what_it_means_and_what_to_read_it_against():
    from vaelab.report.tables import TABLE_COLUMNS, column_notes, final_markdown, measure_columns

    rows = yardstick_rows()
    notes = dict(column_notes([*TABLE_COLUMNS, *measure_columns(rows)], rows))
    assert set(notes) == {c.header for c in TABLE_COLUMNS} | {"probe accuracy", "recon class acc."}
    assert "chance accuracy 0.600 (the test set's majority-class share" in notes["probe accuracy"]
    assert "can be negative" in notes["test −ELBO"] and "docs/original.md" in notes["test SSIM (orig.)"]
    markdown = final_markdown(rows)
    assert "- **probe accuracy**: 5-nearest-neighbour" in markdown and "chance accuracy 0.600" in markdown
