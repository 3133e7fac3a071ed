#!/usr/bin/env python
"""Load benchmark of `darkcsp serve` on loopback: requests/s and p50/p99 latency at 1, 4 and 16 concurrent
clients, against the in-process detector's images/s on the same photos, in one interleaved run.

The server is a real `darkcsp serve` process on a free 127.0.0.1 port (default options: 1 worker, queue 32).
Clients are threads of this process, each with one keep-alive connection, POSTing pre-encoded multipart uploads
(field `image`), so that the client side costs little. The in-process baseline is what the service does per
request without HTTP: `decode_image(bytes)` + `Detector.detect_images` (the same as `detector(path)` minus the
file read), in this process, while the server idles. Blocks alternate (in-process, 1, 4, 16 clients, ...) for
--rounds rounds; each ratio is computed within its round and the median is reported. Bounded: every block stops
after --requests requests or --seconds seconds, whichever first.

Target (issue 14): at 4+ clients the service sustains >= 85% of the in-process images/s with 0 errors.

    python tools/bench_serve.py [--cfg X --weights W --names N] [--images a.jpg b.jpg] [--rounds 3]
                                [--requests 60] [--seconds 20] [--clients 1 4 16] [--workers 1] [--json out.json]
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parent.parent

import darkcsp
from darkcsp.image import decode_image


def default_case():
    corpus = Path(os.environ.get("DARKCSP_CONFORMANCE", REPO.parent / "shared" / "conformance"))
    cache = Path(os.environ.get("DARKCSP_CONFORMANCE_CACHE", Path.home() / ".cache" / "darkcsp-conformance"))
    d = corpus / "cases" / "yolov4-tiny-coco"
    images = sorted(p for p in (d / "images").glob("*/*") if p.suffix.lower() in (".jpg", ".png"))
    return d / "model.cfg", cache / "yolov4-tiny-coco" / "model.weights", d / "coco.names", images


def multipart(name: str, data: bytes):
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def start_server(args) -> (subprocess.Popen, int):
    cmd = [sys.executable, "-m", "darkcsp", "serve", "--cfg", args.cfg, "--weights", args.weights, "--port", "0",
           "--workers", str(args.workers), "--queue", str(args.queue)]
    if args.names:
        cmd += ["--names", args.names]
    if args.backend:
        cmd += ["--backend", args.backend]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, cwd=str(REPO))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        if m:
            # keep draining stderr so that the server never blocks on a full pipe
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc, int(m.group(1))
    proc.kill()
    raise SystemExit(f"the server did not start: {proc.stderr.read() if proc.stderr else ''}")


def run_clients(port: int, bodies, clients: int, requests: int, seconds: float) -> Dict[str, float]:
    """``clients`` threads share ``requests`` requests (stopping at ``seconds``); latency per request."""
    lock = threading.Lock()
    state = {"next": 0}
    latencies: List[float] = []
    errors: List[str] = []
    stop_at = time.monotonic() + seconds

    def client(k: int):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            while True:
                with lock:
                    i = state["next"]
                    if i >= requests or time.monotonic() > stop_at:
                        return
                    state["next"] += 1
                body, ctype = bodies[i % len(bodies)]
                t0 = time.perf_counter()
                try:
                    conn.request("POST", "/detect", body=body, headers={"Content-Type": ctype})
                    r = conn.getresponse()
                    payload = r.read()
                    ok = r.status == 200 and payload.startswith(b"{\"image\"")
                except (OSError, http.client.HTTPException) as e:
                    ok, payload = False, repr(e).encode()
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                dt = time.perf_counter() - t0
                with lock:
                    if ok:
                        latencies.append(dt)
                    else:
                        errors.append(payload[:200].decode("utf-8", "replace"))
        finally:
            conn.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat = sorted(latencies)

    def pct(q):
        return lat[min(len(lat) - 1, int(round(q * (len(lat) - 1))))] * 1000 if lat else float("nan")

    return {"requests": len(lat) + len(errors), "ok": len(lat), "errors": len(errors), "wall_s": wall,
            "rps": len(lat) / wall, "p50_ms": pct(0.5), "p99_ms": pct(0.99), "first_error": errors[0] if errors else ""}


def in_process(det, photos, requests: int, seconds: float) -> Dict[str, float]:
    n, stop_at = 0, time.monotonic() + seconds
    t0 = time.perf_counter()
    while n < requests and time.monotonic() < stop_at:
        name, data = photos[n % len(photos)]
        det.detect_images([decode_image(data, name)])
        n += 1
    wall = time.perf_counter() - t0
    return {"images": n, "wall_s": wall, "ips": n / wall}


def main() -> int:
    cfg, weights, names, images = default_case()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cfg", default=str(cfg))
    p.add_argument("--weights", default=str(weights))
    p.add_argument("--names", default=str(names) if names.exists() else None)
    p.add_argument("--backend", default=None)
    p.add_argument("--images", nargs="+", default=[str(i) for i in images])
    p.add_argument("--clients", nargs="+", type=int, default=[1, 4, 16])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--requests", type=int, default=60, help="requests per block (default 60)")
    p.add_argument("--seconds", type=float, default=20.0, help="time limit per block (default 20 s)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--queue", type=int, default=32)
    p.add_argument("--json", help="write the results to this file")
    args = p.parse_args()
    if not args.images:
        raise SystemExit("no photos: pass --images or set DARKCSP_CONFORMANCE")
    photos = [(Path(f).name, Path(f).read_bytes()) for f in args.images]
    bodies = [multipart(n, d) for n, d in photos]

    det = darkcsp.load(args.cfg, args.weights).detector(backend=args.backend, names=args.names)
    in_process(det, photos, 5, 30)  # warm-up
    proc, port = start_server(args)
    try:
        run_clients(port, bodies, 2, 10, 30)  # warm-up
        rounds = []
        for r in range(args.rounds):
            row = {"in_process": in_process(det, photos, args.requests, args.seconds)}
            for c in args.clients:
                row[c] = run_clients(port, bodies, c, args.requests, args.seconds)
            rounds.append(row)
            line = ", ".join(f"{c} clients {row[c]['rps']:.1f} req/s ({row[c]['rps'] / row['in_process']['ips']:.0%})"
                             for c in args.clients)
            print(f"round {r + 1}: in-process {row['in_process']['ips']:.1f} img/s; {line}", file=sys.stderr)
    finally:
        proc.terminate()
        proc.wait(30)

    print(f"darkcsp serve on loopback: {Path(args.cfg).name}, backend {det.backend_name}, {len(photos)} photos "
          f"({', '.join(n for n, _ in photos)}), server --workers {args.workers} --queue {args.queue}, "
          f"{args.rounds} rounds x {args.requests} requests per block, {os.cpu_count()} CPUs")
    base = statistics.median(r["in_process"]["ips"] for r in rounds)
    print(f"{'clients':>8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'vs in-process':>14}")
    print(f"{'in-proc':>8} {base:8.1f} {1000 / base:8.1f} {'':>8} {0:7d} {'1.00':>14}")
    summary = {"in_process_ips": base, "clients": {}}
    for c in args.clients:
        ratio = statistics.median(r[c]["rps"] / r["in_process"]["ips"] for r in rounds)
        rps = statistics.median(r[c]["rps"] for r in rounds)
        p50 = statistics.median(r[c]["p50_ms"] for r in rounds)
        p99 = statistics.median(r[c]["p99_ms"] for r in rounds)
        errors = sum(r[c]["errors"] for r in rounds)
        print(f"{c:8d} {rps:8.1f} {p50:8.1f} {p99:8.1f} {errors:7d} {ratio:14.2f}")
        summary["clients"][c] = {"rps": rps, "p50_ms": p50, "p99_ms": p99, "errors": errors, "ratio": ratio,
                                 "first_error": next((r[c]["first_error"] for r in rounds if r[c]["errors"]), "")}
    ok = all(v["ratio"] >= 0.85 and v["errors"] == 0 for c, v in summary["clients"].items() if c >= 4)
    print(f"target (>= 85% of in-process images/s with 0 errors at 4+ clients): {'met' if ok else 'NOT met'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rounds": rounds, "summary": summary}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
