"""Load on `jaxnsfw serve`, one run: images/s and p50/p99 latency at concurrency 1, 8 and 64 over the
readable reference images, against two baselines on the same images and the same machine:

- the in-process ceiling: Classifier.scores over the images' bytes (decoding in this process,
  scoring in device batches), and Classifier.score one image at a time (the latency floor);
- a one-request-at-a-time server, the way the existing open_nsfw wrappers work (opennsfw2's
  FastAPI app and its kind): uvicorn, decode and score inside the request, under a lock.

Each request carries one image as its body. Traffic goes to 127.0.0.1 only, one pass over the
images per concurrency level. The client runs on the same machine as the servers (it competes
with them for the cores), as does anything else running there; the output says how many cores.

    python bench/serve_load.py [--out bench/results/serve_load_2core.json] [--note TEXT]
    python bench/serve_load.py --one-at-a-time-server PORT     (the baseline server; started by the run)
"""

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO.parent / "shared" / "caffe_reference"
CONCURRENCY = (1, 8, 64)


def reference_images() -> list[tuple[str, bytes]]:
    """The reference images Caffe could read (scores.json has their score), else tests/data/images."""
    if (REFERENCE / "scores.json").exists():
        scores = json.loads((REFERENCE / "scores.json").read_text())
        paths = [p for p in sorted((REFERENCE / "images").glob("*/*")) if "nsfw" in scores.get(p.stem, {})]
    else:
        paths = [p for p in sorted((REPO / "tests" / "data" / "images").iterdir()) if p.suffix != ".tif"]
    return [(p.name, p.read_bytes()) for p in paths]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def summary(latencies: list[float], seconds: float) -> dict:
    return {"images": len(latencies), "seconds": round(seconds, 3), "images_per_s": round(len(latencies) / seconds, 2),
            "p50_ms": round(percentile(latencies, 50) * 1000, 2), "p99_ms": round(percentile(latencies, 99) * 1000, 2)}


# -- the one-at-a-time baseline server ------------------------------------------------------------


def one_at_a_time_server(port: int) -> None:
    """What the popular wrappers do: the request handler decodes and scores its image, one at a time."""
    # (No `from __future__ import annotations` in this file: FastAPI must see the Request class itself.)
    import uvicorn
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    from jaxnsfw.classifier import Classifier

    classifier = Classifier(batch_size=1)
    classifier.warm_up()
    app = FastAPI()
    lock = threading.Lock()

    @app.post("/v1/score")
    async def score_request(request: Request):
        data = await request.body()

        def run() -> float:
            with lock:
                return classifier.score(data)

        try:
            value = await asyncio.to_thread(run)
        except ValueError as err:
            return JSONResponse({"error": str(err)}, status_code=422)
        return {"results": [{"name": "image", "score": value}]}

    @app.get("/readyz")
    async def readyz():
        return {"status": "ready"}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# -- running servers and load ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(command: list[str], port: int) -> subprocess.Popen:
    import httpx

    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{command} exited: {process.stderr.read().decode() if process.stderr else ''}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{command} did not get ready")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(30)


async def load(url: str, images: list[tuple[str, bytes]], concurrency: int) -> dict:
    """One pass over `images`, `concurrency` clients each sending its next image as soon as it has an answer."""
    import httpx

    latencies: list[float] = []
    errors = 0
    next_index = iter(range(len(images)))  # shared by the clients: each image is sent once

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal errors
        for index in next_index:
            name, data = images[index]
            started = time.perf_counter()
            response = await http.post("/v1/score", content=data)
            latencies.append(time.perf_counter() - started)
            errors += response.status_code != 200

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as http:
        for _, data in images[:4]:  # connections and workers warm
            await http.post("/v1/score", content=data)
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return {**summary(latencies, seconds), "errors": errors}


def in_process(images: list[tuple[str, bytes]]) -> dict:
    import numpy as np

    from jaxnsfw.bulk.command import use_one_cpu_device_per_core

    use_one_cpu_device_per_core()  # as the server does
    from jaxnsfw.classifier import Classifier

    batched = Classifier(batch_size=32)
    batched.warm_up()
    batched.scores([data for _, data in images[:4]])
    started = time.perf_counter()
    batched.scores([data for _, data in images])
    throughput = summary([0.0] * len(images), time.perf_counter() - started)
    single = Classifier(batch_size=1)
    single.warm_up()
    latencies = []
    for _, data in images:
        started = time.perf_counter()
        single.score(data)
        latencies.append(time.perf_counter() - started)
    one = summary(latencies, sum(latencies))
    # The network alone, per image, at batch 1 and at a full batch: on a CPU a batch does not make
    # an image cheaper, which is what a batching server has to gain.
    forward = {}
    for size, classifier in ((1, single), (32, batched)):
        pixels = np.zeros((size, 256, 256, 3), np.uint8)
        classifier.score_rgb256(pixels)
        started = time.perf_counter()
        for _ in range(3):
            classifier.score_rgb256(pixels)
        forward[f"forward_ms_per_image_batch_{size}"] = round((time.perf_counter() - started) / 3 / size * 1000, 2)
    return {**forward, "batched_images_per_s": throughput["images_per_s"], "single_p50_ms": one["p50_ms"],
            "single_p99_ms": one["p99_ms"], "single_images_per_s": one["images_per_s"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "serve_load_2core.json"))
    parser.add_argument("--note", default="", help="what else ran on the machine meanwhile")
    parser.add_argument("--one-at-a-time-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--serve-args", default="", help="extra flags for jaxnsfw serve")
    args = parser.parse_args()
    if args.one_at_a_time_server:
        one_at_a_time_server(args.one_at_a_time_server)
        return 0
    images = reference_images()
    results: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "images": len(images),
                     "cores": os.cpu_count(), "machine": platform.platform(), "note": args.note,
                     "serve_args": args.serve_args, "servers": {}}
    print(f"{len(images)} images, {os.cpu_count()} cores; client and servers on this machine. {args.note}",
          flush=True)
    results["in_process"] = in_process(images)
    print(f"in process: {results['in_process']}", flush=True)
    with tempfile.TemporaryDirectory() as state:
        servers = {
            "jaxnsfw serve": lambda port: [sys.executable, "-m", "jaxnsfw", "serve", "--port", str(port),
                                           "--state-dir", state, "--log-level", "warning",
                                           *args.serve_args.split()],
            "one at a time": lambda port: [sys.executable, str(Path(__file__).resolve()),
                                           "--one-at-a-time-server", str(port)],
        }
        for name, command in servers.items():
            port = free_port()
            process = start(command(port), port)
            try:
                results["servers"][name] = {}
                for concurrency in CONCURRENCY:
                    measured = asyncio.run(load(f"http://127.0.0.1:{port}", images, concurrency))
                    results["servers"][name][str(concurrency)] = measured
                    print(f"{name}, concurrency {concurrency}: {measured}", flush=True)
            finally:
                stop(process)
    failed = {f"{name} c{c}": m["errors"] for name, levels in results["servers"].items()
              for c, m in levels.items() if m["errors"]}
    if failed:
        print(f"error: requests failed: {failed}", file=sys.stderr)
        return 1
    ceiling = results["in_process"]["batched_images_per_s"]
    served = results["servers"]["jaxnsfw serve"]
    baseline = results["servers"]["one at a time"]
    results["goals"] = {
        "c64_vs_in_process": round(served["64"]["images_per_s"] / ceiling, 3),
        "c64_vs_one_at_a_time": round(served["64"]["images_per_s"] / baseline["64"]["images_per_s"], 3),
        "c1_p99_minus_single_in_process_p99_ms": round(served["1"]["p99_ms"] - results["in_process"]["single_p99_ms"],
                                                       2),
        "c1_p50_minus_single_in_process_p50_ms": round(served["1"]["p50_ms"] - results["in_process"]["single_p50_ms"],
                                                       2),
    }
    print()
    print("| server | concurrency | images/s | p50 ms | p99 ms |")
    print("| --- | --- | --- | --- | --- |")
    for name, levels in results["servers"].items():
        for concurrency, measured in levels.items():
            print(f"| {name} | {concurrency} | {measured['images_per_s']} | {measured['p50_ms']} | "
                  f"{measured['p99_ms']} |")
    one = results["in_process"]
    print(f"| in-process Classifier.scores (batches of 32) | - | {ceiling} | - | - |")
    print(f"| in-process Classifier.score, one image at a time | 1 | {one['single_images_per_s']} | "
          f"{one['single_p50_ms']} | {one['single_p99_ms']} |")
    print(f"\ngoals: {results['goals']} (targets: >= 0.8, >= 3, <= 15 ms)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    print(f"raw results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
