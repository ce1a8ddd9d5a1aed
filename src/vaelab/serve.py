"""``vaelab serve``: a local web app to move through a trained model's latent space.

A Flask app (JSON API + one static page, no external assets) served by waitress. Everything the app
shows comes from an ``Explorer`` loaded once at start-up; requests name runs, never paths.

API (every error is JSON ``{"error": message}`` with a 4xx status):
  GET  /api/runs                        the runs (with the range of z each accepts), the data set
  GET  /api/digits                      the gallery of test digits (index, label, pixels)
  GET  /api/runs/<run>/plane?x=0&y=1    test posterior means of a subset on two dimensions, labels, bounds
  GET  /api/runs/<run>/digits/<index>   a test digit's posterior mean and its pixels
  POST /api/runs/<run>/decode           {"z": [...]} -> decoded pixels and the server-side decode time
  POST /api/runs/<run>/sample           {"seed": int?} -> a prior draw and its decoding
  POST /api/runs/<run>/interpolate      {"a": index, "b": index, "steps": n} -> the decoded strip
  POST /api/runs/<run>/encode           {"image": data URL} -> model input (a drawing made MNIST-style,
                                        or an upload fitted to the data's size), mean, std, reconstruction
Pixels are row-major lists of levels 0..255: H*W grey, or H*W*3 interleaved RGB (``image`` in /api/runs).
Requests addressed to other names than the ones served, non-JSON POST bodies and cross-site POSTs are
refused, and every response carries a strict Content-Security-Policy (see ``guard``).
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, NotFound

from . import guard
from .data import item_word
from .errors import VaelabError
from .explorer import (
    MAX_INTERPOLATION_STEPS,
    BadInput,
    Explorer,
    ServedRun,
    bounded_int,
    decode,
    decode_image_data,
    encode_digit,
    fitted_upload,
    interpolation_path,
    latent_vector,
    load_explorer,
    mnist_style,
    prior_sample,
    rounded,
    scatter_bounds,
)

MAX_REQUEST_BYTES = 4 * 2**20  # a drawn 280x280 canvas is ~20 KB as PNG; anything near this is a mistake
SERVER_THREADS = 4
# What waitress itself bounds, before Flask sees a request: a body over MAX_REQUEST_BYTES is refused (413) from its
# Content-Length, before a byte of it is read, and an accepted one stays in memory (waitress spools larger bodies to
# a temporary file); idle connections close after CHANNEL_TIMEOUT_S; waitress's I/O is asynchronous, so a few hundred
# slow clients hold only sockets, and SERVER_CONNECTIONS of them still leave room for everyone else.
CHANNEL_TIMEOUT_S = 30
SERVER_CONNECTIONS = 500


def pixels(image: np.ndarray) -> list[int]:
    return image.reshape(-1).tolist()


def create_app(explorer: Explorer, hosts: Iterable[str] = ()) -> Flask:
    """The explorer's app, answering requests whose Host is one of ``hosts`` (``make_server`` adds the
    names of the address it binds)."""
    app = Flask(__name__, static_folder="static", static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    app.json.sort_keys = False
    guard.install(app, hosts)

    @app.errorhandler(BadInput)
    def bad_input(exc: BadInput) -> tuple[Response, int]:
        return jsonify(error=str(exc)), 400

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        return jsonify(error=exc.description or exc.name), exc.code or 500

    @app.get("/")
    def index() -> Response:
        return app.send_static_file("explorer.html")

    add_data_routes(app, explorer)
    add_model_routes(app, explorer)
    return app


def find_run(explorer: Explorer, name: str) -> ServedRun:
    try:
        return explorer.run(name)
    except KeyError:
        raise NotFound(f"no run named {name!r}; this server has {', '.join(explorer.runs)}.") from None


def checked_test_index(explorer: Explorer, value: Any, field: str) -> int:
    return bounded_int(value, field, 0, len(explorer.test_labels) - 1)


def add_data_routes(app: Flask, explorer: Explorer) -> None:
    """What the page reads once: the runs, the test digits, a run's latent plane."""
    @app.get("/api/runs")
    def runs() -> Response:
        channels, height, width = explorer.image_shape
        return jsonify(dataset=explorer.dataset, test_size=len(explorer.test_labels),
                       image={"channels": channels, "height": height, "width": width},
                       drawable=explorer.drawable, labelled=explorer.labelled,
                       class_names=list(explorer.class_names) if explorer.class_names else None,
                       max_interpolation_steps=MAX_INTERPOLATION_STEPS,
                       runs=[run.summary() for run in explorer.runs.values()])

    @app.get("/api/digits")
    def gallery() -> Response:
        indices = explorer.gallery_indices.tolist()
        return jsonify(digits=[{"index": i, "label": int(explorer.test_labels[i]),
                                "pixels": pixels(explorer.display_image(i))} for i in indices])

    @app.get("/api/runs/<name>/plane")
    def plane(name: str) -> Response:
        run = find_run(explorer, name)
        if run.latent_dim < 2:
            raise NotFound(f"run {name} has a 1-D latent space; a plane needs at least 2 dimensions.")
        x, y = (query_int(axis, default, 0, run.latent_dim - 1) for axis, default in (("x", 0), ("y", 1)))
        if x == y:
            raise BadInput(f"'x' and 'y' must be different dimensions, got {x} twice.")
        points = run.test_mu[explorer.scatter_indices][:, [x, y]]
        return jsonify(dims=[x, y], x=rounded(points[:, 0]), y=rounded(points[:, 1]),
                       labels=explorer.test_labels[explorer.scatter_indices].tolist(),
                       indices=explorer.scatter_indices.tolist(), bounds=scatter_bounds(points, run.z_limit))

    @app.get("/api/runs/<name>/digits/<int:index>")
    def digit(name: str, index: int) -> Response:
        run = find_run(explorer, name)
        if index >= len(explorer.test_labels):
            raise NotFound(f"no test {item_word(explorer.dataset)[:-1]} {index}; the test set has "
                           f"{len(explorer.test_labels)} images "
                           f"(0 to {len(explorer.test_labels) - 1}).")
        return jsonify(index=index, label=int(explorer.test_labels[index]), mu=rounded(run.test_mu[index], 5),
                       pixels=pixels(explorer.display_image(index)))


def add_model_routes(app: Flask, explorer: Explorer) -> None:
    """What the page asks the models for: decodings, prior samples, interpolations, encodings of drawings."""
    @app.post("/api/runs/<name>/decode")
    def decode_point(name: str) -> Response:
        run = find_run(explorer, name)
        z = latent_vector(json_body().get("z"), run.latent_dim, run.z_limit)
        start = time.perf_counter()
        image = decode(run, z)[0]
        decode_ms = (time.perf_counter() - start) * 1000.0
        response = jsonify(pixels=pixels(image), decode_ms=round(decode_ms, 3))
        response.headers["Server-Timing"] = f"decode;dur={decode_ms:.3f}"
        return response

    @app.post("/api/runs/<name>/sample")
    def sample(name: str) -> Response:
        run = find_run(explorer, name)
        seed = json_body().get("seed")
        if seed is not None:
            seed = bounded_int(seed, "seed", 0, 2**63 - 1)
        z = prior_sample(run.latent_dim, seed)
        return jsonify(z=rounded(z[0], 5), pixels=pixels(decode(run, z)[0]))

    @app.post("/api/runs/<name>/interpolate")
    def interpolate(name: str) -> Response:
        run = find_run(explorer, name)
        body = json_body()
        a, b = checked_test_index(explorer, body.get("a"), "a"), checked_test_index(explorer, body.get("b"), "b")
        steps = bounded_int(body.get("steps", 10), "steps", 2, MAX_INTERPOLATION_STEPS)
        path = interpolation_path(run.test_mu[a], run.test_mu[b], steps)
        return jsonify(a=a, b=b, z=[rounded(p, 5) for p in path], images=[pixels(im) for im in decode(run, path)])

    @app.post("/api/runs/<name>/encode")
    def encode(name: str) -> Response:
        run = find_run(explorer, name)
        uploaded = decode_image_data(json_body().get("image"))
        digit_image = mnist_style(uploaded) if explorer.drawable else fitted_upload(uploaded, explorer.image_shape)
        posterior = encode_digit(run, digit_image)
        return jsonify(input=pixels(digit_image), mu=rounded(posterior["mu"], 5), std=rounded(posterior["std"], 5),
                       reconstruction=pixels(posterior["reconstruction"]))


def json_body() -> dict[str, Any]:
    """The request's JSON object. NaN and Infinity literals parse, so the value checks can name them."""
    raw = request.get_data(cache=True)
    try:
        body = json.loads(raw) if raw.strip() else {}
    except (ValueError, UnicodeDecodeError):
        raise BadInput("the request body is not valid JSON.") from None
    except RecursionError:  # arrays or objects nested thousands deep: no request of this page looks like that
        raise BadInput("the request body is nested too deeply.") from None
    if not isinstance(body, dict):
        raise BadInput("the request body must be a JSON object.")
    return body


def query_int(field: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(field)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadInput(f"'{field}' must be an integer, got {raw!r}.") from None
    return bounded_int(value, field, low, high)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_server(app: Flask, host: str, port: int, allow_hosts: Iterable[str] = ()):  # -> waitress's server
    """A waitress server bound to host:port (0 picks a free port: see ``server.effective_port``); the app
    then answers the loopback names and ``host`` with that port, and ``allow_hosts``."""
    from waitress.server import create_server

    try:
        server = create_server(app, host=host, port=port, threads=SERVER_THREADS, ident="vaelab",
                               max_request_body_size=MAX_REQUEST_BYTES + 1, inbuf_overflow=MAX_REQUEST_BYTES + 1,
                               connection_limit=SERVER_CONNECTIONS, channel_timeout=CHANNEL_TIMEOUT_S,
                               cleanup_interval=5)
    except (OSError, ValueError) as exc:  # ValueError: an address that is no address (999.1.1.1)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise VaelabError(f"cannot listen on {host}:{port} ({reason}); pick another with --port "
                          "or --host.") from None
    app.config[guard.ALLOWED_HOSTS] |= guard.served_hosts(host, int(server.effective_port), allow_hosts)
    return server


def serve_forever(directory: str | os.PathLike, host: str, port: int, data_dir: str | os.PathLike | None,
                  echo: Callable[[str], None] = print, allow_hosts: Iterable[str] = ()) -> None:
    explorer = load_explorer(Path(directory), data_dir)
    server = make_server(create_app(explorer), host, port, allow_hosts)
    where = f"[{host}]" if ":" in host else host
    echo(f"vaelab: serving {', '.join(explorer.runs)} from {directory} at http://{where}:{server.effective_port}/ "
         "(Ctrl-C to stop)")
    if explorer.training:
        echo(f"vaelab: not served: {', '.join(explorer.training)} (no checkpoint yet: still training, or stopped in "
             "the first epoch); restart 'vaelab serve' to add them.")
    if not is_loopback(host):
        echo(f"vaelab: warning: --host {host} lets other machines reach this server; it has no authentication. "
             "It answers only requests addressed to the names it serves: add the name or address other machines "
             "use with --allow-host.")
    try:
        server.run()
    finally:
        server.close()
