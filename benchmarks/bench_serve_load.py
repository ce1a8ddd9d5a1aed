"""A bounded load test of `vaelab serve`: many clients at once on loopback, a realistic mix of requests
and a share of malformed ones, against the real server started as `vaelab serve` in its own process.

Each client thread keeps one HTTP/1.1 connection to 127.0.0.1 alive and sends requests drawn at random:
decode a random point, encode a drawn digit (a gallery digit scaled up to a 140x140 PNG), interpolate
between two test digits (16 steps), sample the prior, and a share of malformed requests (bad JSON, a
text/plain body, a forged Host, a wrong-sized z, too many steps, an image that is not one, an unknown
run), each with the 4xx it must get. The run stops after --requests requests or --time-limit seconds,
whichever comes first. It reports throughput, p50/p99 latency per kind, the status counts, and the
server's resident memory (RSS) before the traffic, half-way and at the end; it fails (exit 1) on any
5xx, any unexpected status or any dropped connection. Traffic only ever goes to 127.0.0.1.

Beside that traffic run two hostile phases: --slow-clients connections that each trickle a header line every
2 s and never finish their request (more than waitress's default connection limit), and a loop of oversized
bodies (a cross-site text/plain POST announcing 500 MiB, whose body is never sent), each of which must get 413
from its headers alone. The server runs with its own empty TMPDIR, whose size is sampled throughout: anything
spooled to disk shows there, and fails the run.

    python benchmarks/bench_serve_load.py runs/study --data-dir ../shared/data/mnist
    python benchmarks/bench_serve_load.py runs/study --clients 64 --requests 20000 --time-limit 300
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import os
import platform
import random
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

HOST = "127.0.0.1"  # never anything else: this script loads a server it started itself
# The mix: (kind, weight). Malformed requests are about 15% of the traffic.
MIX = (("decode", 35), ("interpolate", 25), ("encode", 15), ("sample", 10), ("bad_json", 3), ("text_plain", 3),
       ("forged_host", 3), ("wrong_z", 2), ("too_many_steps", 2), ("not_an_image", 1), ("unknown_run", 1))
EXPECTED = {"decode": 200, "interpolate": 200, "encode": 200, "sample": 200, "bad_json": 400, "text_plain": 415,
            "forged_host": 421, "wrong_z": 400, "too_many_steps": 400, "not_an_image": 400, "unknown_run": 404}
INTERPOLATION_STEPS = 16
SERVER_LOG: list[str] = []  # the server's output after its start-up line


@dataclass
class Target:
    port: int
    runs: list[dict]
    test_size: int
    drawings: list[str]  # PNG data URLs


@dataclass
class Results:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: Counter = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    sent: int = 0


# --- the server ---------------------------------------------------------------------------------------


def start_server(directory: str, data_dir: str | None, tmpdir: Path) -> tuple[subprocess.Popen, int]:
    command = [sys.executable, "-m", "vaelab", "serve", directory, "--host", HOST, "--port", "0"]
    if data_dir:
        command += ["--data-dir", data_dir]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "TMPDIR": str(tmpdir)})
    line = server.stdout.readline()
    found = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    if not found:
        server.kill()
        raise SystemExit(f"the server did not start: {line}{server.stdout.read()}")
    # Keep reading what the server prints (waitress warns when its task queue is deep): a full pipe would
    # block its logging, and with it the worker threads.
    threading.Thread(target=lambda: SERVER_LOG.extend(server.stdout), daemon=True).start()
    return server, int(found.group(1))


def rss_mib(pid: int) -> float | None:
    """Resident memory of a process from /proc (Linux); None elsewhere."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def disk_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def drawing(pixels: list[int]) -> str:
    """A 28x28 gallery digit as a user's drawing: 140x140, dark ink on white, as a PNG data URL."""
    image = Image.fromarray(255 - np.asarray(pixels, dtype=np.uint8).reshape(28, 28)).resize((140, 140))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def read_target(port: int) -> Target:
    connection = http.client.HTTPConnection(HOST, port, timeout=30)
    connection.request("GET", "/api/runs")
    meta = json.loads(connection.getresponse().read())
    connection.request("GET", "/api/digits")
    digits = json.loads(connection.getresponse().read())["digits"]
    connection.close()
    return Target(port, meta["runs"], meta["test_size"], [drawing(d["pixels"]) for d in digits])


# --- the clients --------------------------------------------------------------------------------------


def request_for(kind: str, target: Target, rng: random.Random) -> tuple[str, str, bytes | None, dict[str, str]]:
    """(method, path, body, headers) of one request of this kind."""
    run = rng.choice(target.runs)
    base = f"/api/runs/{run['name']}"
    json_headers = {"Content-Type": "application/json"}
    dim = run["latent_dim"]

    def post(path: str, body: object, headers: dict[str, str] = json_headers):
        return "POST", path, json.dumps(body).encode(), headers

    if kind == "decode":
        return post(f"{base}/decode", {"z": [round(rng.gauss(0, 1), 4) for _ in range(dim)]})
    if kind == "interpolate":
        a, b = rng.randrange(target.test_size), rng.randrange(target.test_size)
        return post(f"{base}/interpolate", {"a": a, "b": b, "steps": INTERPOLATION_STEPS})
    if kind == "encode":
        return post(f"{base}/encode", {"image": rng.choice(target.drawings)})
    if kind == "sample":
        return post(f"{base}/sample", {"seed": rng.randrange(2**31)})
    if kind == "bad_json":
        return "POST", f"{base}/decode", b'{"z": [0, 0', json_headers
    if kind == "text_plain":
        return post(f"{base}/decode", {"z": [0.0] * dim}, {"Content-Type": "text/plain"})
    if kind == "forged_host":
        return "GET", "/api/runs", None, {"Host": "evil.example.com"}
    if kind == "wrong_z":
        return post(f"{base}/decode", {"z": [0.0] * (dim + 1)})
    if kind == "too_many_steps":
        return post(f"{base}/interpolate", {"a": 0, "b": 1, "steps": 10_000})
    if kind == "not_an_image":
        return post(f"{base}/encode", {"image": "data:image/png;base64," + base64.b64encode(b"not a png").decode()})
    return post("/api/runs/no_such_run/decode", {"z": [0.0]})  # unknown_run


def client(target: Target, seed: int, budget: threading.Semaphore, deadline: float, results: Results,
           halfway: threading.Event, half: int) -> None:
    rng = random.Random(seed)
    kinds, weights = zip(*MIX, strict=True)
    connection = http.client.HTTPConnection(HOST, target.port, timeout=60)
    on_connection = 0  # requests sent on this connection so far: says whether a drop came at connect time
    while time.monotonic() < deadline and budget.acquire(blocking=False):
        on_connection += 1
        kind = rng.choices(kinds, weights)[0]
        method, path, body, headers = request_for(kind, target, rng)
        start = time.perf_counter()
        try:
            if "Host" in headers:  # http.client sends its own Host unless told not to
                connection.putrequest(method, path, skip_host=True)
                for name, value in headers.items():
                    connection.putheader(name, value)
                connection.endheaders(body)
            else:
                connection.request(method, path, body, headers)
            response = connection.getresponse()
            response.read()
        except (OSError, http.client.HTTPException) as exc:
            with results.lock:
                results.dropped.append(f"{kind} (request {on_connection} on its connection, after "
                                       f"{time.perf_counter() - start:.1f} s): {type(exc).__name__}: {exc}")
            connection.close()
            connection = http.client.HTTPConnection(HOST, target.port, timeout=60)
            on_connection = 0
            continue
        elapsed = time.perf_counter() - start
        with results.lock:
            results.latencies[kind].append(elapsed)
            results.statuses[response.status] += 1
            if response.status != EXPECTED[kind]:
                results.unexpected.append(f"{kind} {method} {path}: {response.status}, expected {EXPECTED[kind]}")
            results.sent += 1
            if results.sent == half:
                halfway.set()
    connection.close()


# --- the hostile phases -------------------------------------------------------------------------------


@dataclass
class Hostile:
    stop: threading.Event = field(default_factory=threading.Event)
    slow_held: int = 0  # slow connections still open when the traffic ended
    oversized: Counter = field(default_factory=Counter)  # status line -> count
    spooled_max: int = 0  # the most bytes the server's TMPDIR held at any sample
    lock: threading.Lock = field(default_factory=threading.Lock)


def slow_clients(port: int, count: int, hostile: Hostile) -> None:
    """``count`` requests that never end: a header line every 2 s, until the traffic stops."""
    sockets = []
    for _ in range(count):
        sock = socket.create_connection((HOST, port), timeout=10)
        sock.sendall(f"GET /api/runs HTTP/1.1\r\nHost: {HOST}:{port}\r\n".encode())
        sockets.append(sock)
    while not hostile.stop.wait(2.0):
        for sock in list(sockets):
            try:
                sock.sendall(b"X-Slow: 1\r\n")
            except OSError:
                sockets.remove(sock)
    hostile.slow_held = len(sockets)
    for sock in sockets:
        sock.close()


def oversized_bodies(port: int, hostile: Hostile) -> None:
    """Cross-site text/plain POSTs announcing 500 MiB; the body is never sent, so only the headers can be judged."""
    while not hostile.stop.wait(0.05):
        with socket.create_connection((HOST, port), timeout=10) as sock:
            sock.sendall(f"POST /api/runs HTTP/1.1\r\nHost: {HOST}:{port}\r\nOrigin: https://evil.example.com\r\n"
                         f"Content-Type: text/plain\r\nContent-Length: {500 * 2**20}\r\n\r\n".encode())
            try:
                status = sock.recv(64).decode(errors="replace").split("\r\n", 1)[0]
            except OSError as exc:
                status = f"{type(exc).__name__}"
        with hostile.lock:
            hostile.oversized[status] += 1


def run_load(target: Target, server_pid: int, clients: int, requests: int, time_limit: float,
             slow: int = 0, tmpdir: Path | None = None) -> dict:
    hostile = Hostile()
    phases = [threading.Thread(target=slow_clients, args=(target.port, slow, hostile)),
              threading.Thread(target=oversized_bodies, args=(target.port, hostile))] if slow else []
    for phase in phases:
        phase.start()
    time.sleep(1.0 if slow else 0.0)  # the slow connections are open before the traffic starts
    summary = run_traffic(target, server_pid, clients, requests, time_limit, hostile, tmpdir)
    hostile.stop.set()
    for phase in phases:
        phase.join()
    if tmpdir is not None:
        hostile.spooled_max = max(hostile.spooled_max, disk_bytes(tmpdir))
    summary["hostile"] = {"slow_clients": slow, "slow_held": hostile.slow_held,
                          "oversized": dict(hostile.oversized), "spooled_max_bytes": hostile.spooled_max}
    return summary


def run_traffic(target: Target, server_pid: int, clients: int, requests: int, time_limit: float, hostile: Hostile,
                tmpdir: Path | None) -> dict:
    results = Results()
    budget = threading.Semaphore(requests)
    halfway = threading.Event()
    rss = {"start": rss_mib(server_pid)}
    deadline = time.monotonic() + time_limit
    threads = [threading.Thread(target=client, args=(target, seed, budget, deadline, results, halfway, requests // 2))
               for seed in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        if tmpdir is not None:
            hostile.spooled_max = max(hostile.spooled_max, disk_bytes(tmpdir))
        if halfway.wait(0.05) and "middle" not in rss:
            rss["middle"] = rss_mib(server_pid)
    rss.setdefault("middle", rss_mib(server_pid))
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    rss["end"] = rss_mib(server_pid)
    return summarise(results, wall, rss, clients)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q * 100)) if values else float("nan")


def summarise(results: Results, wall: float, rss: dict, clients: int) -> dict:
    every = [t for times in results.latencies.values() for t in times]
    kinds = {kind: {"count": len(times), "p50_ms": percentile(times, 0.5) * 1e3,
                    "p99_ms": percentile(times, 0.99) * 1e3}
             for kind, times in sorted(results.latencies.items(), key=lambda item: -len(item[1]))}
    return {"clients": clients, "requests": len(every), "wall_s": wall, "throughput_rps": len(every) / wall,
            "p50_ms": percentile(every, 0.5) * 1e3, "p99_ms": percentile(every, 0.99) * 1e3,
            "statuses": {str(k): v for k, v in sorted(results.statuses.items())}, "kinds": kinds,
            "server_errors": sum(v for k, v in results.statuses.items() if k >= 500),
            "unexpected": results.unexpected[:20], "unexpected_count": len(results.unexpected),
            "dropped": results.dropped[:20], "dropped_count": len(results.dropped), "rss_mib": rss}


# --- the report ---------------------------------------------------------------------------------------


def mib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def print_table(summary: dict) -> None:
    rss = summary["rss_mib"]
    print(f"{summary['requests']} requests from {summary['clients']} clients in {summary['wall_s']:.1f} s: "
          f"{summary['throughput_rps']:.0f} requests/s, p50 {summary['p50_ms']:.0f} ms, "
          f"p99 {summary['p99_ms']:.0f} ms; "
          f"statuses {summary['statuses']}; 5xx {summary['server_errors']}, unexpected statuses "
          f"{summary['unexpected_count']}, dropped connections {summary['dropped_count']}; server RSS "
          f"{mib(rss['start'])} -> {mib(rss['middle'])} -> {mib(rss['end'])} MiB (start, middle, end)\n")
    hostile = summary.get("hostile")
    if hostile and hostile["slow_clients"]:
        print(f"beside it: {hostile['slow_clients']} slow clients ({hostile['slow_held']} still connected at the end), "
              f"oversized bodies answered {hostile['oversized']}; the server's TMPDIR held at most "
              f"{hostile['spooled_max_bytes']} bytes\n")
    print("| request | count | status | p50 (ms) | p99 (ms) |")
    print("|---|---|---|---|---|")
    for kind, row in summary["kinds"].items():
        print(f"| {kind} | {row['count']} | {EXPECTED[kind]} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", help="a run directory or a study directory to serve")
    parser.add_argument("--data-dir", default=None, help="where the test images are (as for vaelab serve)")
    parser.add_argument("--clients", type=int, default=64, help="concurrent client threads, one connection each")
    parser.add_argument("--requests", type=int, default=10_000, help="stop after this many requests in all")
    parser.add_argument("--time-limit", type=float, default=120.0, help="stop sending after this many seconds")
    parser.add_argument("--slow-clients", type=int, default=150,
                        help="hostile connections that never finish their request, beside the traffic (0: none, "
                             "and no oversized bodies either)")
    parser.add_argument("--json", type=Path, default=None, help="also write the summary here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="vaelab-serve-tmp-") as tmp:
        server, port = start_server(args.directory, args.data_dir, Path(tmp))
        try:
            target = read_target(port)
            print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average "
                  f"{' '.join(Path('/proc/loadavg').read_text().split()[:3])}; serving "
                  f"{', '.join(r['name'] for r in target.runs)} on {HOST}:{port}")
            summary = run_load(target, server.pid, args.clients, args.requests, args.time_limit,
                               args.slow_clients, Path(tmp))
        finally:
            server.terminate()
            server.wait(timeout=30)
    summary["server_log_lines"] = len(SERVER_LOG)
    print_table(summary)
    queue_warnings = sum("Task queue depth" in line for line in SERVER_LOG)
    print(f"\nserver output: {len(SERVER_LOG)} lines ({queue_warnings} waitress 'task queue depth' warnings)")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    hostile = summary["hostile"]
    refused = hostile["oversized"].get("HTTP/1.1 413 Request Entity Too Large", 0)
    wrong_oversized = sum(hostile["oversized"].values()) - refused
    failed = (summary["server_errors"] or summary["unexpected_count"] or summary["dropped_count"]
              or hostile["spooled_max_bytes"] or wrong_oversized)
    if failed:
        print("\nFAILED:", *summary["unexpected"], *summary["dropped"], sep="\n  ")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
