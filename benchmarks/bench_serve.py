"""Serving under load: text search through `lookalike serve`, end to end, on loopback.

What runs:

* a collection of >= 5,000 real images with the bundled ``lite`` model: the benchmark
  folders of ``bench_index.py`` (2,000 camera-size photos cut from Debian's wallpapers and
  3,000 openclipart PNGs), built and cached by ``tools/bench_data.py``; the collection itself
  is cached in ``--workdir`` and reused when it is complete;
* the server: ``lookalike serve`` in its own process, bound to 127.0.0.1 on a free port;
* the load: this process sends ``--requests`` text searches (``GET /api/search?q=...&k=24``)
  over keep-alive HTTP/1.1 connections from ``--concurrency`` threads, stopping early at
  ``--duration`` seconds. Every query text is distinct (adjective + subject + setting
  combinations), so the server's text-embedding cache never answers; a second, smaller
  pass repeats queries to show the cached path;
* the baseline, measured in the same run: the same searches through the library in this
  process (``Collection.search``), so the HTTP stack's share is visible as a ratio.

Reported: requests, errors (non-200 or transport failures), throughput, p50/p90/p99 latency
and the target: text search p50 <= 50 ms end to end with 0 errors.

    python benchmarks/bench_serve.py [--requests 600] [--duration 120] [--concurrency 1]
        [--workdir .cache/bench-serve] [--photos 2000] [--clipart 3000]

Traffic goes to 127.0.0.1 only; the run is bounded in count and time and stops by itself.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tools/, which is not part of the installed package

from tools import bench_data, samples  # noqa: E402

import lookalike  # noqa: E402

TARGET_P50_MS = 50.0
ADJECTIVES = ["red", "blue", "green", "yellow", "old", "small", "large", "bright", "dark", "wooden", "shiny",
              "striped", "snowy", "sunny", "rusty", "tiny", "giant", "colourful", "black and white", "smiling"]
SUBJECTS = ["car", "house", "tree", "flower", "dog", "cat", "bird", "boat", "mountain", "beach", "apple", "guitar",
            "clock", "bicycle", "castle", "robot", "butterfly", "lighthouse", "train", "chair", "cake", "fish",
            "rocket", "horse", "bridge"]
SETTINGS = ["", "at night", "in the rain", "on a table", "in a field", "by the sea", "in a city", "cartoon",
            "drawing", "photo"]


def queries(n: int, seed: int) -> list[str]:
    combos = [" ".join(w for w in (a, s, t) if w) for a, s, t in itertools.product(ADJECTIVES, SUBJECTS, SETTINGS)]
    random.Random(seed).shuffle(combos)
    if n > len(combos):
        raise SystemExit(f"--requests {n} is more than the {len(combos)} distinct queries available")
    return combos[:n]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_collection(workdir: Path, photos: int, clipart: int) -> Path:
    """The cached collection over the benchmark folders (built or completed incrementally)."""
    data = samples.cache_dir() / "bench"
    folders = [data / f"photos-{photos}", data / f"clipart-{clipart}"]
    bench_data.make_photo_folder(folders[0], n=photos)
    bench_data.make_clipart_folder(folders[1], n=clipart)
    path = workdir / f"serve-{photos}-{clipart}.lkl"
    t0 = time.perf_counter()
    with lookalike.Collection.create(path, model="lite", device="cpu", exist_ok=True) as coll:
        report = coll.add(folders)
        n = len(coll)
    print(f"collection: {path} ({n} images; add took {time.perf_counter() - t0:.1f}s, "
          f"{report.added} added now)", file=sys.stderr)
    if n < 5000 and photos + clipart >= 5000:
        raise SystemExit(f"the collection holds {n} images, fewer than 5,000")
    return path


def start_server(collection: Path, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "lookalike.cli", "serve", "--collection", str(collection), "--host", "127.0.0.1",
           "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not answer /healthz within 120 s")


def load(port: int, texts: list[str], concurrency: int, duration: float) -> tuple[list[float], int, float]:
    """Send the searches; returns (latencies in s of successful requests, errors, wall time)."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    todo = iter(texts)
    stop_at = time.monotonic() + duration

    def worker() -> None:
        nonlocal errors
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.monotonic() < stop_at:
            with lock:
                text = next(todo, None)
            if text is None:
                break
            path = "/api/search?" + urllib.parse.urlencode({"q": text, "k": 24})
            t0 = time.perf_counter()
            try:
                conn.request("GET", path)
                resp = conn.getresponse()
                body = resp.read()
                ok = resp.status == 200 and len(json.loads(body)["hits"]) == 24
            except (OSError, http.client.HTTPException, ValueError, KeyError):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            dt = time.perf_counter() - t0
            with lock:
                if ok:
                    latencies.append(dt)
                else:
                    errors += 1
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors, time.perf_counter() - t0


def summary(name: str, lat: list[float], errors: int, wall: float) -> dict[str, float]:
    ms = np.asarray(lat) * 1e3
    n = len(lat) + errors
    row = {"requests": n, "errors": errors, "rps": n / wall if wall else 0.0,
           "p50": float(np.percentile(ms, 50)) if len(ms) else float("nan"),
           "p90": float(np.percentile(ms, 90)) if len(ms) else float("nan"),
           "p99": float(np.percentile(ms, 99)) if len(ms) else float("nan")}
    print(f"| {name} | {row['requests']} | {row['errors']} | {row['rps']:.1f} | {row['p50']:.1f} | "
          f"{row['p90']:.1f} | {row['p99']:.1f} |")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=600, help="distinct text searches to send")
    parser.add_argument("--duration", type=float, default=120.0, help="stop sending after this many seconds")
    parser.add_argument("--concurrency", type=int, default=1, help="client threads (connections)")
    parser.add_argument("--baseline", type=int, default=200, help="library searches for the in-process baseline")
    parser.add_argument("--workdir", type=Path, default=ROOT / ".cache" / "bench-serve")
    parser.add_argument("--photos", type=int, default=2000)
    parser.add_argument("--clipart", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    collection = build_collection(args.workdir, args.photos, args.clipart)
    texts = queries(args.requests + args.baseline, args.seed)
    http_texts, lib_texts = texts[: args.requests], texts[args.requests:]

    # Baseline: the library in this process, the same kind of query (texts not sent over HTTP).
    with lookalike.Collection.open(collection) as coll:
        n_items = len(coll)
        for text in lib_texts[:10]:  # the same warm-up the server gets below
            coll.search("warm " + text, k=24)
        lib = []
        for text in lib_texts:
            t0 = time.perf_counter()
            coll.search(text, k=24)
            lib.append(time.perf_counter() - t0)

    port = free_port()
    proc = start_server(collection, port)
    try:
        load(port, ["warm " + t for t in lib_texts[:10]], 1, 30)  # connections, first thumbnails of the path
        lat, errors, wall = load(port, http_texts, args.concurrency, args.duration)
        repeat = http_texts[:50] * 4
        cached_lat, cached_err, cached_wall = load(port, repeat, args.concurrency, 60)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)

    print(f"\n{n_items} images, model lite (CPU), exact search | client: {args.concurrency} connection(s), "
          f"loopback | cores: {os.cpu_count()} | load average at end: {os.getloadavg()[0]:.1f}\n")
    print("| run | requests | errors | req/s | p50 ms | p90 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|")
    base = summary("library baseline: Collection.search in-process, distinct texts", lib, 0, sum(lib))
    main_row = summary("HTTP GET /api/search, distinct texts (no cache hits)", lat, errors, wall)
    summary("HTTP GET /api/search, repeated texts (embedding cache)", cached_lat, cached_err, cached_wall)
    print(f"\nHTTP p50 / library p50: {main_row['p50'] / base['p50']:.2f}x")
    ok = main_row["p50"] <= TARGET_P50_MS and main_row["errors"] == 0 and main_row["requests"] >= 1
    print(f"target: text search p50 <= {TARGET_P50_MS:g} ms end to end with 0 errors: "
          f"{'PASS' if ok else 'FAIL'} (p50 {main_row['p50']:.1f} ms, {main_row['errors']} errors, "
          f"{main_row['requests']} requests in {wall:.1f} s)")


if __name__ == "__main__":
    main()
