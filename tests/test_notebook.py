"""The example notebook runs top to bottom (on a tiny setting) in a real Jupyter kernel, and is stored
without outputs; StudyView renders a study's figures inline."""

import json

import pytest

from helpers import REPO, write_idx_dataset

NOTEBOOK = REPO / "examples" / "latent_size_study.ipynb"


def test_the_notebook_is_stored_without_outputs():
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)


def test_the_notebook_trains_through_the_python_api_not_the_shell():
    code = ["".join(c["source"]) for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "code"]
    assert any("vaelab.study(" in source for source in code) and any("StudyView(result)" in source for source in code)
    assert not [line for source in code for line in source.splitlines()
                if line.lstrip().startswith("!") or "-m vaelab" in line or "metrics.json" in line]


@pytest.mark.slow
def test_the_notebook_runs_top_to_bottom(mnist, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    data_dir = write_idx_dataset(tmp_path / "idx", mnist.head(600, 200))
    monkeypatch.setenv("VAELAB_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("VAELAB_NOTEBOOK_STUDY", str(tmp_path / "study"))
    monkeypatch.setenv("VAELAB_NOTEBOOK_SETTINGS", json.dumps({
        "data.dataset": "idx", "data.data_dir": str(data_dir), "model.hidden": [64], "data.train_eval_size": 300,
        "train.device": "cpu"}))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    views = [o for o in outputs if "text/html" in o.get("data", {}) and "vaelab-study" in o["data"]["text/html"]]
    assert len(views) == 1 and views[0]["data"]["text/html"].count("data:image/gif;base64") == 2 * 3
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 2  # the -ELBO curves and the samples
    assert (tmp_path / "shared_model" / "model.safetensors").exists()


def test_study_view_shows_what_a_run_directory_holds(tmp_path):
    from vaelab.notebook import StudyView

    run = tmp_path / "latent_4"
    run.mkdir()
    (run / "config.json").write_text("{}")
    test = {"loss": 99.5, "mse": 0.02, "ssim": 0.5, "psnr": 17.0}
    (run / "metrics.json").write_text(json.dumps({"history": [{"test": test}]}))
    (run / "latent_space.gif").write_bytes(b"GIF89a")
    html = StudyView(tmp_path)._repr_html_()
    assert "latent_4" in html and "-ELBO   99.50 nats" in html and html.count("data:image/gif;base64,") == 1
    # the summary's numbers explained with their yardsticks, from the metric registry
    assert "<b>SSIM</b>: structural similarity" in html and "1 is identical, about 0 unrelated" in html
    assert "<b>−ELBO</b>: negative evidence lower bound" in html and "can be negative" in html
    assert StudyView(run).run_dirs() == [run] and str(tmp_path).replace("&", "&amp;") in html
