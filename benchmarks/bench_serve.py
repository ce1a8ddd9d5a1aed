"""How fast `vaelab serve` answers: decode latency per run, inside the server and as a browser sees it.

For every run of a run or study directory it times, on the CPU:
  decode       the server's own work for one point (the decoder and the uint8 conversion), as the
               page's "decoded on the server in ... ms" line and the Server-Timing header report it;
  round trip   POST /api/runs/<run>/decode over a kept-alive HTTP connection to the real waitress
               server on 127.0.0.1, JSON in and out: what a dragging pointer waits for.
The target is decode <= 50 ms. Prints a Markdown table.

    python benchmarks/bench_serve.py runs/study --data-dir ../shared/data/mnist
"""

from __future__ import annotations

import argparse
import http.client
import json
import platform
import statistics
import threading
import time

import torch

from vaelab.explorer import decode, load_explorer
from vaelab.serve import create_app, make_server

TARGET_MS = 50.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def random_points(n: int, latent_dim: int, seed: int) -> torch.Tensor:
    return torch.randn((n, latent_dim), generator=torch.Generator().manual_seed(seed)).clamp(-4, 4)


def time_decode(run, points: torch.Tensor) -> list[float]:
    times = []
    for z in points:
        start = time.perf_counter()
        decode(run, z.unsqueeze(0))
        times.append((time.perf_counter() - start) * 1000.0)
    return times


def time_round_trips(port: int, name: str, points: torch.Tensor) -> list[float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    times = []
    for z in points:
        body = json.dumps({"z": [round(v, 4) for v in z.tolist()]})
        start = time.perf_counter()
        connection.request("POST", f"/api/runs/{name}/decode", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        payload = response.read()
        times.append((time.perf_counter() - start) * 1000.0)
        if response.status != 200:
            raise SystemExit(f"{name}: server answered {response.status}: {payload[:200]!r}")
    connection.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", help="a run directory or a study directory")
    parser.add_argument("--data-dir", default=None, help="where the MNIST files are")
    parser.add_argument("-n", "--requests", type=int, default=500, help="timed decodes per run and kind")
    args = parser.parse_args()

    explorer = load_explorer(args.directory, args.data_dir)
    server = make_server(create_app(explorer), "127.0.0.1", 0)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}; {args.requests} decodes per row after 50 warm-up ones\n")
    print("| run | arch | decode median (ms) | decode p95 (ms) | decode max (ms) | round trip median (ms) "
          "| round trip p95 (ms) |")
    print("|---|---|---|---|---|---|---|")
    try:
        for name, run in explorer.runs.items():
            warm = random_points(50, run.latent_dim, seed=1)
            time_decode(run, warm)
            time_round_trips(server.effective_port, name, warm)
            points = random_points(args.requests, run.latent_dim, seed=2)
            inside = time_decode(run, points)
            trips = time_round_trips(server.effective_port, name, points)
            print(f"| {name} | {run.config.model.arch} | {statistics.median(inside):.3f} | "
                  f"{percentile(inside, 0.95):.3f} | {max(inside):.2f} | {statistics.median(trips):.2f} | "
                  f"{percentile(trips, 0.95):.2f} |")
            if percentile(inside, 0.95) > TARGET_MS:
                print(f"\n{name}: p95 decode above the {TARGET_MS:g} ms target")
    finally:
        server.close()


if __name__ == "__main__":
    main()
