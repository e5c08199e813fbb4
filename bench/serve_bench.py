"""Load benchmark of `fe_serve`, run by hand (not a test), on the loopback interface only.

`fe_serve` serves the demo's trained model and gallery (`fe_demo`'s output folder: run `fe_demo` first), once with
batching on (its defaults: up to 32 images a pass, 5 ms of waiting) and once with batching off (`--max-batch 1`:
each request runs on its own), in alternating rounds. In each, `--clients` threads (16) send `POST /search` with
one demo test image each, as fast as the answers come, for `--seconds` (60); every answer is checked. It prints the
machine (CPU and flags), then per round the requests a second, the p50 and p99 latency and the errors, and the ratio
of batched to unbatched requests a second. Targets: no errors, and batched at least 2x unbatched. The server and
the clients share the machine's cores, as they would on one machine.

    fe_demo && python bench/serve_bench.py                      # 2 rounds of 60 s each way: about 4.5 min
    python bench/serve_bench.py --seconds 20 --rounds 1 --demo-dir /path/to/fe_demo
"""
import argparse
import http.client
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_bench import cpu_description  # noqa: E402 (this folder's scripts are not a package)

TARGET_RATIO = 2.0


def multipart(image: bytes) -> tuple:
    "(body, content type) of a search request for one image."
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"images\"; filename=\"q.jpg\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + image + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def client(port: int, bodies: list, stop: float, latencies: list, errors: list):
    "Send searches over one kept-alive connection until `stop`; record each latency, and each failure."
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    i = 0
    while time.monotonic() < stop:
        body, kind = bodies[i % len(bodies)]
        i += 1
        start = time.perf_counter()
        try:
            connection.request("POST", "/search", body, {"Content-Type": kind})
            response = connection.getresponse()
            answer = response.read()
            if response.status != 200 or "items" not in json.loads(answer)["results"][0]:
                errors.append(f"{response.status}: {answer[:200]!r}")
        except (OSError, http.client.HTTPException, ValueError) as e:
            errors.append(repr(e))
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            continue
        latencies.append(time.perf_counter() - start)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: Path, index: Path, batched: bool) -> tuple:
    "(process, port) of `fe_serve` on a free loopback port, once it answers."
    port = free_port()
    options = [] if batched else ["--max-batch", "1"]
    server = subprocess.Popen(["fe_serve", str(model), str(index), "--port", str(port), "--device", "cpu", *options],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None: raise RuntimeError(f"fe_serve stopped: {server.stderr.read()[-2000:]}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200: return server, port
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("fe_serve did not start")


def round_of(model: Path, index: Path, batched: bool, bodies: list, clients: int, seconds: float) -> dict:
    "One round: a server, `clients` threads for `seconds` (after a 3 s warm-up), and what they measured."
    server, port = start_server(model, index, batched)
    try:
        warm_up: list = []
        client(port, bodies[:4], time.monotonic() + 3, warm_up, [])
        latencies, errors = [], []
        stop = time.monotonic() + seconds
        threads = [threading.Thread(target=client, args=(port, bodies, stop, latencies, errors))
                   for _ in range(clients)]
        for thread in threads: thread.start()
        for thread in threads: thread.join()
    finally:
        server.terminate()
        server.wait(30)
    latencies.sort()
    return {"batched": batched, "requests/s": len(latencies) / seconds, "errors": len(errors),
            "p50 ms": 1000 * latencies[len(latencies) // 2], "p99 ms": 1000 * latencies[int(len(latencies) * 0.99)],
            "first error": errors[0] if errors else ""}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo-dir", default="fe_demo", help="fe_demo's output folder (inference/, gallery/)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rounds", type=int, default=2, help="rounds each way, alternating")
    args = parser.parse_args()
    demo = Path(args.demo_dir)
    model, index = demo / "inference", demo / "gallery"
    if not (model / "inference.yml").exists() or not (index / "CURRENT").exists():
        sys.exit(f"error: {demo} holds no demo model and gallery: run fe_demo first (or give --demo-dir)")
    from feature_extraction.data import demo_data
    images = [demo_data() / line.split()[0] for line in (demo_data() / "test_list.txt").read_text().splitlines()]
    bodies = [multipart(path.read_bytes()) for path in images]
    print(f"machine: {cpu_description()}; {len(__import__('os').sched_getaffinity(0))} cores")
    print(f"{args.clients} clients, {args.seconds:.0f} s a round, {len(bodies)} query images, gallery {index}")
    rounds = []
    for _ in range(args.rounds):
        for batched in (True, False):
            rounds.append(round_of(model, index, batched, bodies, args.clients, args.seconds))
            found = rounds[-1]
            print(f"{'batched  ' if batched else 'unbatched'}  {found['requests/s']:7.1f} requests/s  "
                  f"p50 {found['p50 ms']:6.1f} ms  p99 {found['p99 ms']:6.1f} ms  errors {found['errors']}"
                  + (f"  (first: {found['first error']})" if found["errors"] else ""), flush=True)
    speed = {batched: statistics.median(r["requests/s"] for r in rounds if r["batched"] == batched)
             for batched in (True, False)}
    ratio, errors = speed[True] / speed[False], sum(r["errors"] for r in rounds)
    print(f"median requests/s: batched {speed[True]:.1f}, unbatched {speed[False]:.1f}: ratio {ratio:.2f}x "
          f"(target {TARGET_RATIO}x); errors {errors}")
    sys.exit(0 if ratio >= TARGET_RATIO and errors == 0 else 1)


if __name__ == "__main__":
    main()
