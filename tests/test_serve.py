"""`vaelab serve`: the JSON API in-process (Flask's test client), the command line, and the page itself in
headless Chromium against the real waitress server."""

import base64
import contextlib
import io
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from helpers import one_line
from vaelab.checkpoint import load_model
from vaelab.cli import cli
from vaelab.errors import VaelabError
from vaelab.explorer import Z_LIMIT, load_explorer
from vaelab.guard import SECURITY_HEADERS, served_hosts
from vaelab.serve import MAX_REQUEST_BYTES, create_app, is_loopback, make_server

STATIC = Path(__file__).resolve().parents[1] / "src" / "vaelab" / "static"
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="session")
def explorer(serve_study):
    return load_explorer(serve_study)


@pytest.fixture(scope="session")
def client(explorer):
    return create_app(explorer, hosts={"localhost"}).test_client()  # the Host the test client sends


@pytest.fixture(scope="session")
def reference(serve_study, mnist):
    """The trained models and test images loaded independently of the server, to check its answers."""
    models = {name: load_model(serve_study / name)[0] for name in ("latent_2", "latent_10")}
    images = mnist.test.images.unsqueeze(1).float() / 255.0
    return models, images


def expected_pixels(model, z: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return (torch.sigmoid(model.decode(z)) * 255).numpy().reshape(len(z), -1)


def png_data_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def error_of(response, status: int) -> str:
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()["error"]


# --- the API ------------------------------------------------------------------------------------------


def test_runs_lists_the_study_in_order_with_what_the_page_needs(client):
    body = client.get("/api/runs").get_json()
    assert [r["name"] for r in body["runs"]] == ["latent_2", "latent_10"]
    assert [r["latent_dim"] for r in body["runs"]] == [2, 10]
    assert body["runs"][0]["epochs"] == 1 and body["runs"][0]["test_loss"] > 0
    assert body["dataset"] == "mnist" and body["test_size"] == 10_000
    for run in body["runs"]:
        assert run["z_limit"] >= Z_LIMIT and run["z_limit"] >= run["mean_extent"]


def test_the_page_and_its_assets_are_served_and_reference_nothing_outside(client):
    page = client.get("/")
    assert page.status_code == 200 and b"explorer.js" in page.data and b"explorer.css" in page.data
    for name in ("explorer.js", "explorer.css"):
        assert client.get(f"/static/{name}").status_code == 200
    for path in STATIC.iterdir():
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", path.read_text()), f"{path.name} links outside"
    assert client.get("/static/../explorer.py").status_code == 404
    assert client.get("/static/%2e%2e/explorer.py").status_code == 404


def test_digits_are_the_first_test_digits_of_each_class(client, mnist):
    digits = client.get("/api/digits").get_json()["digits"]
    assert [d["label"] for d in digits] == [c for c in range(10) for _ in range(3)]
    for d in digits:
        assert mnist.test.labels[d["index"]] == d["label"]
        assert np.array_equal(np.array(d["pixels"]), mnist.test.images[d["index"]].numpy().ravel())
    first_sevens = [int(i) for i in torch.nonzero(mnist.test.labels == 7).flatten()[:3]]
    assert [d["index"] for d in digits if d["label"] == 7] == first_sevens


def test_plane_holds_posterior_means_of_test_digits(client, reference):
    models, images = reference
    body = client.get("/api/runs/latent_2/plane").get_json()
    assert body["dims"] == [0, 1] and len(body["x"]) == len(body["labels"]) == 2000
    with torch.no_grad():
        mu = models["latent_2"].encode(images[body["indices"]])[0].numpy()
    assert np.allclose(body["x"], mu[:, 0], atol=1e-3) and np.allclose(body["y"], mu[:, 1], atol=1e-3)
    x0, x1, y0, y1 = body["bounds"]
    assert x0 <= min(body["x"]) and max(body["x"]) <= x1 and y0 <= min(body["y"]) and max(body["y"]) <= y1
    slice_ = client.get("/api/runs/latent_10/plane?x=3&y=7").get_json()
    with torch.no_grad():
        mu10 = models["latent_10"].encode(images[slice_["indices"]])[0].numpy()
    assert slice_["dims"] == [3, 7] and np.allclose(slice_["y"], mu10[:, 7], atol=1e-3)


@pytest.mark.parametrize("query, complaint", [("x=1&y=1", "different"), ("x=10", "between 0 and 9"),
                                              ("y=-1", "between 0 and 9"), ("x=abc", "integer")])
def test_plane_refuses_bad_dimensions(client, query, complaint):
    assert complaint in error_of(client.get(f"/api/runs/latent_10/plane?{query}"), 400)


def test_digit_gives_its_posterior_mean(client, reference, mnist):
    models, images = reference
    body = client.get("/api/runs/latent_10/digits/1234").get_json()
    with torch.no_grad():
        mu = models["latent_10"].encode(images[1234:1235])[0][0].numpy()
    assert body["label"] == int(mnist.test.labels[1234]) and np.allclose(body["mu"], mu, atol=1e-4)
    assert np.array_equal(body["pixels"], mnist.test.images[1234].numpy().ravel())


def test_unknown_runs_and_digits_are_404_with_a_message(client):
    assert "latent_2, latent_10" in error_of(client.get("/api/runs/latent_3/digits/0"), 404)
    assert error_of(client.post("/api/runs/..%2f..%2fetc/decode", json={"z": [0, 0]}), 404)
    assert "0 to 9999" in error_of(client.get("/api/runs/latent_2/digits/10000"), 404)
    assert error_of(client.get("/api/runs/latent_2/digits/-1"), 404)
    assert error_of(client.get("/api/nothing"), 404)
    assert error_of(client.get("/api/runs/latent_2/decode"), 405)


def test_decode_matches_the_decoder_and_reports_its_time(client, reference):
    models, _ = reference
    z = [0.31, -1.2]
    response = client.post("/api/runs/latent_2/decode", json={"z": z})
    body = response.get_json()
    assert np.abs(np.array(body["pixels"]) - expected_pixels(models["latent_2"], torch.tensor([z]))[0]).max() <= 1
    assert body["decode_ms"] >= 0 and response.headers["Server-Timing"].startswith("decode;dur=")
    other = client.post("/api/runs/latent_2/decode", json={"z": [2.5, 2.5]}).get_json()["pixels"]
    assert other != body["pixels"]


@pytest.mark.parametrize(
    "body, complaint",
    [
        ("{}", "'z' must be a list of 2 numbers"),
        ('{"z": [1]}', "must have 2 numbers"),
        ('{"z": [1, 2, 3]}', "must have 2 numbers"),
        ('{"z": "0,0"}', "must be a list"),
        ('{"z": [0, "1"]}', "only numbers"),
        ('{"z": [0, null]}', "only numbers"),
        ('{"z": [NaN, 0]}', "NaN or infinite"),
        ('{"z": [0, Infinity]}', "NaN or infinite"),
        ('{"z": [0, -1e400]}', "NaN or infinite"),
        ('{"z": [0, LIMIT]}', "magnitude"),
        ('{"z": [1e30, 0]}', "magnitude"),
        ("[0, 0]", "JSON object"),
        ("{z: [0, 0]}", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        ('{"z": [0, ' + "9" * 400 + "]}", "too large for a number"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ],
)
def test_decode_refuses_bad_points_with_400_and_a_message(client, explorer, body, complaint):
    body = body.replace("LIMIT", str(explorer.runs["latent_2"].z_limit + 0.01)) if isinstance(body, str) else body
    response = client.post("/api/runs/latent_2/decode", data=body, content_type="application/json")
    assert complaint in error_of(response, 400)


def test_oversized_requests_are_refused(client):
    response = client.post("/api/runs/latent_2/encode", data=b"x" * (MAX_REQUEST_BYTES + 1),
                           content_type="application/json")
    assert error_of(response, 413)


def test_sample_draws_from_the_prior_reproducibly(client, reference):
    models, _ = reference
    first = client.post("/api/runs/latent_10/sample", json={"seed": 5}).get_json()
    again = client.post("/api/runs/latent_10/sample", json={"seed": 5}).get_json()
    assert first == again and len(first["z"]) == 10
    expected_z = torch.randn((1, 10), generator=torch.Generator().manual_seed(5))
    assert np.allclose(first["z"], expected_z[0].numpy(), atol=1e-4)
    assert np.abs(np.array(first["pixels"]) - expected_pixels(models["latent_10"], expected_z)[0]).max() <= 1
    unseeded = [client.post("/api/runs/latent_10/sample", json={}).get_json()["z"] for _ in range(2)]
    assert unseeded[0] != unseeded[1]
    assert "'seed'" in error_of(client.post("/api/runs/latent_10/sample", json={"seed": "x"}), 400)
    assert "'seed'" in error_of(client.post("/api/runs/latent_10/sample", json={"seed": -3}), 400)


def test_interpolate_decodes_the_straight_line_between_two_means(client, reference):
    models, images = reference
    body = client.post("/api/runs/latent_10/interpolate", json={"a": 3, "b": 17, "steps": 6}).get_json()
    with torch.no_grad():
        mu = models["latent_10"].encode(images[[3, 17]])[0]
    z = torch.tensor(body["z"])
    expected = torch.stack([mu[0] + t * (mu[1] - mu[0]) for t in np.linspace(0, 1, 6)])
    assert z.shape == (6, 10) and torch.allclose(z, expected, atol=1e-4)
    assert len(body["images"]) == 6
    assert np.abs(np.array(body["images"]) - expected_pixels(models["latent_10"], expected)).max() <= 1


@pytest.mark.parametrize(
    "body, complaint",
    [
        ({"a": 3}, "'b' must be an integer"),
        ({"a": -1, "b": 2}, "'a' must be between 0 and 9999"),
        ({"a": 1, "b": 10_000}, "'b' must be between 0 and 9999"),
        ({"a": 1.5, "b": 2}, "'a' must be an integer"),
        ({"a": 1, "b": 2, "steps": 1}, "'steps' must be between 2 and 32"),
        ({"a": 1, "b": 2, "steps": 10_000}, "'steps' must be between 2 and 32"),
        ({"a": 1, "b": 2, "steps": "ten"}, "'steps' must be an integer"),
    ],
)
def test_interpolate_refuses_bad_requests(client, body, complaint):
    assert complaint in error_of(client.post("/api/runs/latent_2/interpolate", json=body), 400)


def test_encode_a_drawing_of_a_test_digit_finds_it(client, reference, mnist):
    models, images = reference
    digit = mnist.test.images[0].numpy()
    drawing = Image.fromarray(digit).resize((280, 280), Image.Resampling.BILINEAR)
    body = client.post("/api/runs/latent_2/encode", json={"image": png_data_url(drawing)}).get_json()
    seen = np.array(body["input"])
    assert np.corrcoef(seen, digit.ravel())[0, 1] > 0.9
    with torch.no_grad():
        mu, logvar = models["latent_2"].encode(torch.tensor(seen, dtype=torch.float32).view(1, 1, 28, 28) / 255)
    assert np.allclose(body["mu"], mu[0].numpy(), atol=1e-4)
    assert np.allclose(body["std"], torch.exp(0.5 * logvar)[0].numpy(), atol=1e-4)
    assert np.abs(np.array(body["reconstruction"]) - expected_pixels(models["latent_2"], mu)[0]).max() <= 1


def blank_png() -> str:
    return png_data_url(Image.new("L", (64, 64)))


@pytest.mark.parametrize(
    "body, complaint",
    [
        ({}, "'image' must be a base64 string"),
        ({"image": [0] * 784}, "'image' must be a base64 string"),
        ({"image": "data:image/png;base64,@@@"}, "not valid base64"),
        ({"image": base64.b64encode(b"GIF89a not really").decode()}, "not a readable image"),
        ({"image": "BLANK"}, "blank"),
    ],
)
def test_encode_refuses_malformed_images(client, body, complaint):
    if body.get("image") == "BLANK":
        body = {"image": blank_png()}
    assert complaint in error_of(client.post("/api/runs/latent_10/encode", json=body), 400)


# --- what protects it from other pages ------------------------------------------------------------


def assert_security_headers(headers) -> None:
    headers = {name.lower(): value for name, value in dict(headers).items()}
    csp = headers.get("content-security-policy", "")
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert headers.get("x-content-type-options") == "nosniff"
    assert all(headers.get(name.lower()) == value for name, value in SECURITY_HEADERS.items())


@pytest.mark.parametrize("method, path, body, status", [
    ("GET", "/", None, 200), ("GET", "/static/explorer.js", None, 200), ("GET", "/static/explorer.css", None, 200),
    ("GET", "/api/runs", None, 200), ("POST", "/api/runs/latent_2/decode", {"z": [0, 0]}, 200),
    ("GET", "/api/runs/latent_2/plane?x=1&y=1", None, 400), ("GET", "/static/absent.js", None, 404),
    ("GET", "/api/runs/latent_2/decode", None, 405), ("POST", "/api/runs/latent_2/decode", "x" * (5 << 20), 413),
])
def test_every_response_carries_the_security_headers(client, method, path, body, status):
    kwargs = {"json": body} if isinstance(body, dict) else {"data": body, "content_type": "application/json"}
    response = client.open(path, method=method, **kwargs)
    assert response.status_code == status
    assert_security_headers(response.headers)


@pytest.mark.parametrize("host", ["evil.example.com", "evil.example.com:8000", "localhost.evil.example",
                                  "127.0.0.1.nip.io", ""])
@pytest.mark.parametrize("method, path", [("GET", "/"), ("GET", "/static/explorer.js"), ("GET", "/api/runs"),
                                          ("POST", "/api/runs/latent_2/sample")])
def test_a_forged_host_is_refused_with_421(client, host, method, path):
    response = client.open(path, method=method, json={} if method == "POST" else None, headers={"Host": host})
    assert "--allow-host" in error_of(response, 421)
    assert_security_headers(response.headers)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                                          None])
def test_post_bodies_other_than_json_are_refused_with_415(client, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/api/runs/latent_2/decode", data='{"z": [0, 0]}', headers=headers)
    assert "application/json" in error_of(response, 415)
    assert_security_headers(response.headers)


def test_a_post_from_another_origin_is_refused(client):
    refused = client.post("/api/runs/latent_2/sample", json={}, headers={"Origin": "https://evil.example.com"})
    assert "evil.example.com" in error_of(refused, 403)
    own = client.post("/api/runs/latent_2/sample", json={}, headers={"Origin": "http://localhost"})
    assert own.status_code == 200


def test_served_hosts_are_loopback_and_the_bound_address_with_the_port():
    assert served_hosts("127.0.0.1", 8000) == {"127.0.0.1:8000", "localhost:8000", "[::1]:8000"}
    assert served_hosts("::1", 8000) == {"127.0.0.1:8000", "localhost:8000", "[::1]:8000"}
    assert "192.168.1.5:8000" in served_hosts("192.168.1.5", 8000)
    assert {"127.0.0.1", "localhost", "[::1]"} <= served_hosts("127.0.0.1", 80)  # browsers omit port 80
    extra = served_hosts("127.0.0.1", 8000, ["Lab.Example.org", "proxy.local:443", "fe80::1"])
    assert {"lab.example.org", "lab.example.org:8000", "proxy.local:443", "[fe80::1]", "[fe80::1]:8000"} <= extra
    assert "proxy.local" not in extra and "proxy.local:8000" not in extra


def raw_get(port: int, path: str, host: str) -> tuple[int, dict[str, str]]:
    """A GET over a real socket with exactly this Host header."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest("GET", path, skip_host=True)
        connection.putheader("Host", host)
        connection.endheaders()
        response = connection.getresponse()
        response.read()
        return response.status, dict(response.headers)
    finally:
        connection.close()


def test_the_real_server_answers_its_own_names_only(explorer):
    app = create_app(explorer)
    server = make_server(app, "127.0.0.1", 0, allow_hosts=["lab.example.org"])
    port = int(server.effective_port)
    with running(server):
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", f"LOCALHOST:{port}",
                     "lab.example.org", f"lab.example.org:{port}"):
            status, headers = raw_get(port, "/api/runs", host)
            assert status == 200, host
            assert_security_headers(headers)
        for host in ("evil.example.com", f"evil.example.com:{port}", "127.0.0.1", f"127.0.0.1:{port + 1}",
                     f"lab.example.org:{port + 1}"):
            assert raw_get(port, "/api/runs", host)[0] == 421, host


def test_a_bounded_load_gets_only_the_statuses_it_asks_for_and_memory_stays_steady(serve_study, mnist_dir, tmp_path):
    """The load benchmark, short: 16 clients, 400 requests of every kind (malformed ones included) against
    `vaelab serve` in its own process, beside 150 slow clients and a stream of oversized bodies."""
    summary_path = tmp_path / "load.json"
    command = [sys.executable, str(BENCHMARKS / "bench_serve_load.py"), str(serve_study), "--data-dir", str(mnist_dir),
               "--clients", "16", "--requests", "400", "--time-limit", "240", "--json", str(summary_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(summary_path.read_text())
    assert summary["requests"] == 400 and summary["server_errors"] == 0
    assert summary["unexpected_count"] == 0 and summary["dropped_count"] == 0
    assert set(summary["kinds"]) >= {"decode", "interpolate", "encode", "sample", "text_plain", "forged_host"}
    assert {"200", "400", "415", "421"} <= set(summary["statuses"])
    hostile = summary["hostile"]  # beside the traffic: 150 slow clients held open, oversized bodies refused
    assert hostile["slow_held"] == 150 and hostile["spooled_max_bytes"] == 0
    assert set(hostile["oversized"]) == {"HTTP/1.1 413 Request Entity Too Large"}
    rss = summary["rss_mib"]
    if rss["start"] is not None:  # Linux: the server's memory must not grow with the traffic
        assert rss["end"] < rss["start"] * 1.5, rss
        assert rss["end"] - rss["middle"] < 0.25 * rss["start"], rss


# --- the command line and the server ------------------------------------------------------------


def test_serve_refuses_what_is_not_a_run_with_a_clear_message(tmp_path, serve_study):
    missing = CliRunner().invoke(cli, ["serve", str(tmp_path / "absent")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    empty = CliRunner().invoke(cli, ["serve", str(tmp_path)])
    assert empty.exit_code == 1 and "Traceback" not in empty.output
    assert "neither a run directory" in one_line(empty.output)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((serve_study / "latent_2" / "config.json").read_text())
    (broken / "checkpoint.pt").write_text("not a checkpoint")
    result = CliRunner().invoke(cli, ["serve", str(broken)])
    message = one_line(result.output)
    assert result.exit_code == 1 and "checkpoint.pt: not a readable checkpoint" in message
    assert "Traceback" not in message
    assert "--port" in CliRunner().invoke(cli, ["serve", "--help"]).output


@pytest.mark.slow
def test_the_command_serves_the_study_on_loopback_and_says_where(serve_study, mnist_dir):
    command = [sys.executable, "-m", "vaelab", "serve", str(serve_study), "--port", "0", "--data-dir", str(mnist_dir)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = server.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert url and "latent_2, latent_10" in line, line
        with urllib.request.urlopen(url.group(0) + "api/runs", timeout=10) as response:
            assert [r["name"] for r in json.load(response)["runs"]] == ["latent_2", "latent_10"]
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.mark.slow
def test_serve_finds_the_data_the_run_was_trained_on_without_vaelab_data(mnist_dir, tmp_path, monkeypatch):
    run = tmp_path / "run"
    monkeypatch.setenv("VAELAB_DATA", str(mnist_dir))
    trained = CliRunner().invoke(cli, ["train", "--run-dir", str(run), "-z", "2", "--epochs", "1", "--hidden", "32",
                                       "--batch-size", "512", "--train-eval-size", "100", "--no-progress",
                                       "--device", "cpu", "--no-artifacts", "--no-measures"])
    assert trained.exit_code == 0, trained.output
    assert json.loads((run / "config.json").read_text())["data"]["data_dir"] is None  # only metrics.json says where
    monkeypatch.delenv("VAELAB_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    assert load_explorer(run).test_labels.shape == (10_000,)

    metrics = json.loads((run / "metrics.json").read_text())
    metrics["environment"]["data_dir"] = str(tmp_path / "moved")
    (run / "metrics.json").write_text(json.dumps(metrics))
    result = CliRunner().invoke(cli, ["serve", str(run), "--port", "0"])
    message = one_line(result.output)
    assert result.exit_code == 1 and "Traceback" not in message
    assert f"tried {tmp_path / 'moved'}; {tmp_path / 'empty-cache' / 'vaelab' / 'mnist'}" in message


def test_only_loopback_hosts_count_as_private():
    assert all(is_loopback(host) for host in ("127.0.0.1", "127.3.2.1", "::1", "localhost"))
    assert not any(is_loopback(host) for host in ("0.0.0.0", "::", "192.168.1.2", "example.org"))


def test_a_port_in_use_is_a_clear_error(explorer):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(VaelabError, match="--port"):
            make_server(create_app(explorer), "127.0.0.1", taken.getsockname()[1])


@pytest.fixture
def live_server(explorer):
    """The real waitress server on a free loopback port, in a thread. Ask for it before ``page`` so the
    browser hangs up first and the server's loop, left with no connections, ends at once."""
    server = make_server(create_app(explorer), "127.0.0.1", 0)
    with running(server):
        yield f"http://127.0.0.1:{server.effective_port}"


@contextlib.contextmanager
def running(server) -> Iterator[None]:
    """``server`` answering in a thread until the block ends. It is closed from inside its own loop: closed from
    here, its loop could still be waiting in select() on the socket just closed (EBADF in that thread)."""
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.trigger.pull_trigger(server.close)
        thread.join(timeout=5)
    assert not thread.is_alive(), "the server's loop did not end"


# --- the page in a real browser ------------------------------------------------------------------


def image_of(page, canvas_id: str) -> str:
    return page.evaluate(f"document.getElementById('{canvas_id}').toDataURL()")


def wait_until(page, expression: str, timeout_s: float = 10.0) -> None:
    """Poll ``expression`` until it is true. Playwright's wait_for_function evaluates its predicate with
    eval() inside the page, which the explorer's Content-Security-Policy forbids; page.evaluate does not."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"still false after {timeout_s} s: {expression}"
        page.wait_for_timeout(50)


def wait_for_new_image(page, canvas_id: str, before: str) -> str:
    wait_until(page, f"document.getElementById('{canvas_id}').toDataURL() !== {json.dumps(before)}")
    return image_of(page, canvas_id)


def drag(page, selector: str, points: list[tuple[float, float]]) -> None:
    """Press at the first point (fractions of the element's box), move through the rest, release."""
    page.locator(selector).scroll_into_view_if_needed()
    box = page.locator(selector).bounding_box()
    at = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
    page.mouse.move(*at[0])
    page.mouse.down()
    for point in at[1:]:
        page.mouse.move(*point, steps=6)
    page.mouse.up()


def save_screenshot(page, tmp_path: Path, name: str) -> None:
    page.screenshot(path=str(tmp_path / name), full_page=True)
    target = os.environ.get("VAELAB_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(target) / name), full_page=True)


@pytest.mark.browser
def test_the_page_explores_a_study_in_a_real_browser(live_server, page, tmp_path):
    # Every Content-Security-Policy violation, reported or not as a console message.
    page.add_init_script("window.cspViolations = []; document.addEventListener('securitypolicyviolation', "
                         "(e) => window.cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));")
    console = []
    page.on("console", lambda message: console.append(message.text))
    response = page.goto(live_server)
    assert_security_headers(response.headers)
    page.wait_for_selector("body[data-ready='1']", timeout=20_000)
    assert page.locator("#runs button").all_inner_texts() == ["latent 2", "latent 10"]
    steps = int(page.input_value("#steps"))
    assert page.locator("#strip canvas").count() == steps
    page.focus("#steps")
    page.keyboard.press("ArrowLeft")  # one step fewer: the strip is decoded again
    wait_until(page, f"document.querySelectorAll('#strip canvas').length === {steps - 1}")
    wait_until(page, "Number(document.getElementById('decoded').dataset.decodes) >= 1")

    # Dragging on the 2-D plane decodes the points under the pointer.
    decoded = image_of(page, "decoded")
    drag(page, "#plane", [(0.2, 0.2), (0.5, 0.5), (0.85, 0.8)])
    decoded = wait_for_new_image(page, "decoded", decoded)
    slider_values = page.locator("#sliders input").evaluate_all("inputs => inputs.map(i => Number(i.value))")
    assert slider_values[0] > 0 and slider_values[1] < 0  # bottom-right of the plane: z1 up, z2 down

    # Moving a slider decodes too.
    slider = page.locator("#sliders input").first
    slider.focus()
    for _ in range(3):
        page.keyboard.press("PageDown")
    decoded = wait_for_new_image(page, "decoded", decoded)

    # Sampling from the prior and resetting to a test digit move the point.
    page.click("#sample")
    decoded = wait_for_new_image(page, "decoded", decoded)
    page.locator("#gallery canvas").nth(12).click()
    assert page.locator("#gallery canvas.selected").count() == 1
    decoded = wait_for_new_image(page, "decoded", decoded)

    # A drawing is encoded: the model's input, a reconstruction and the posterior chart appear.
    blank = image_of(page, "drawn-recon")
    drag(page, "#draw", [(0.35, 0.2), (0.65, 0.2), (0.5, 0.5), (0.4, 0.85)])  # a 7
    wait_until(page, "Number(document.getElementById('drawn-recon').dataset.encodes) >= 1")
    assert wait_for_new_image(page, "drawn-recon", blank) != blank
    page.click("#explore-drawn")
    decoded = wait_for_new_image(page, "decoded", decoded)

    # Switching to the 10-D run: ten sliders, eight shown until "Show all", and the plane becomes a slice.
    page.click("#runs button[data-run='latent_10']")
    page.wait_for_selector("body[data-run='latent_10']")
    assert page.locator("#sliders input").count() == 10 and page.locator("#sliders input:visible").count() == 8
    page.click("#toggle-all")
    assert page.locator("#sliders input:visible").count() == 10
    assert page.inner_text("#plane-title") == "Latent slice"
    decoded = image_of(page, "decoded")
    drag(page, "#plane", [(0.3, 0.3), (0.7, 0.6)])
    wait_for_new_image(page, "decoded", decoded)
    page.wait_for_timeout(300)  # let the last replies land before the screenshot
    save_screenshot(page, tmp_path, "serve.png")
    assert page.evaluate("window.cspViolations") == []
    assert not [text for text in console if "Content Security Policy" in text]
    assert page.errors == []
    assert page.locator("#toast").is_hidden()


# --- what waitress bounds: oversized bodies and slow clients -----------------------------------------


def test_an_oversized_body_is_refused_from_its_length_before_it_is_sent(live_server):
    """A cross-site page's 500 MiB text/plain POST: answered 413 from its headers alone. The client never sends
    a byte of the body, so the refusal cannot have read or spooled any of it."""
    port = int(live_server.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"POST /api/decode HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: https://evil.example.com\r\n"
                     f"Content-Type: text/plain\r\nContent-Length: {500 * 2**20}\r\n\r\n".encode())
        answer = sock.recv(4096).decode(errors="replace")
    assert answer.startswith("HTTP/1.1 413")


def test_slow_clients_do_not_lock_out_a_normal_request(live_server):
    """150 connections trickling a header line each second (more than waitress's default limit of 100)."""
    port = int(live_server.rsplit(":", 1)[1])
    slow = []
    try:
        for _ in range(150):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(f"GET /api/runs HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode())
            slow.append(sock)
        for _ in range(2):
            time.sleep(1.0)
            for sock in slow:
                sock.sendall(b"X-Slow: 1\r\n")
        started = time.monotonic()
        status, _ = raw_get(port, "/api/runs", f"127.0.0.1:{port}")
        assert status == 200 and time.monotonic() - started < 5
    finally:
        for sock in slow:
            sock.close()


def test_a_missing_test_image_is_named_in_the_data_sets_words(client):
    assert "no test digit 10000" in error_of(client.get("/api/runs/latent_2/digits/10000"), 404)  # MNIST: digits
