#!/usr/bin/env python
"""Speed of the NumPy reference executor against NumPy's own sgemm on the same machine.

For each network (random Darknet-like weights; the output values do not matter for speed) the executor is
run ``--warmup`` times, then timed ``--runs`` times; the median is reported. Effective GFLOP/s = Darknet's
BFLOPs for the network (what Darknet prints as "Total BFLOPS") / median time, and its ratio to the GFLOP/s of
a large square float32 ``np.matmul`` (BLAS sgemm) measured in the same run, before and after the networks
(the better of the two is the reference). Prints Markdown tables.

    python tools/bench_numpy.py [--runs 5] [--warmup 1] [--profile] [--single-thread] [--cpu-time]

``--profile`` adds the time per layer type (mean per forward). The machine should be otherwise idle: other
processes competing for the cores slow multi-threaded BLAS down far more than they slow the sgemm reference.
On a busy machine, ``--single-thread --cpu-time`` (one BLAS thread, process CPU time) gives a stable ratio.
"""
from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Tuple

if "--single-thread" in sys.argv:  # must be set before numpy loads OpenBLAS
    os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = "1"

import numpy as np  # noqa: E402

import darkcsp  # noqa: E402
from darkcsp.model import load  # noqa: E402

REPO = Path(__file__).resolve().parent.parent  # the checkout's cfg/ folder and the corpus beside it

CASES = Path(os.environ.get("DARKCSP_CONFORMANCE", REPO.parent / "shared" / "conformance")) / "cases"

#: (label, cfg, width, height)
NETWORKS: List[Tuple[str, Path, int, int]] = [
    ("yolov4-tiny", CASES / "yolov4-tiny-coco" / "model.cfg", 416, 416),
    ("csresnext50-panet-spp", CASES / "csresnext50-panet-spp-256" / "model.cfg", 512, 512),
]


CLOCK = time.perf_counter


def sgemm_gflops(n: int, runs: int = 5) -> float:
    """GFLOP/s of an n x n float32 matmul (median of ``runs`` after one warmup)."""
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    np.matmul(a, b)
    times = []
    for _ in range(runs):
        t = CLOCK()
        np.matmul(a, b)
        times.append(CLOCK() - t)
    return 2.0 * n ** 3 / statistics.median(times) / 1e9


def time_network(cfg: Path, width: int, height: int, runs: int, warmup: int, profile: bool):
    model = load(cfg, width=width, height=height)
    x = np.random.default_rng(0).random((1,) + tuple(model.graph.input_shape), dtype=np.float32)
    per_type: Dict[str, List[float]] = defaultdict(list)
    if profile:  # wrap each layer's forward to accumulate its time
        for layer in model.graph.layers:
            def timed(xs, w, _f=layer.forward, _t=layer.type):
                t = CLOCK()
                y = _f(xs, w)
                per_type[_t].append(CLOCK() - t)
                return y
            layer.forward = timed
    for _ in range(warmup):
        model.forward(x)
    per_type.clear()
    times = []
    for _ in range(runs):
        t = CLOCK()
        model.forward(x)
        times.append(CLOCK() - t)
    type_share = {k: sum(v) / runs for k, v in per_type.items()}
    return model.graph.bflops_total, statistics.median(times), min(times), type_share


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--sgemm-size", type=int, nargs="+", default=[1024, 2048])
    p.add_argument("--profile", action="store_true", help="also print the time per layer type")
    p.add_argument("--single-thread", action="store_true", help="one BLAS thread (OPENBLAS_NUM_THREADS=1)")
    p.add_argument("--cpu-time", action="store_true", help="time with the process CPU clock instead of wall time")
    args = p.parse_args(argv)
    global CLOCK
    CLOCK = time.process_time if args.cpu_time else time.perf_counter
    logging.basicConfig(level=logging.ERROR)  # random-weights warnings are expected here

    # sgemm is measured before and after the networks; the best figure is the reference (conservative when
    # other processes disturb one of the measurements)
    sgemm = {n: sgemm_gflops(n) for n in args.sgemm_size}
    results = []
    profiles = {}
    for label, cfg, w, h in NETWORKS:
        bf, t, t_min, share = time_network(cfg, w, h, args.runs, args.warmup, args.profile)
        profiles[label] = (t, share)
        results.append((label, w, h, bf, t, t_min))
    sgemm_after = {n: sgemm_gflops(n) for n in args.sgemm_size}
    best = max(list(sgemm.values()) + list(sgemm_after.values()))
    print(f"darkcsp {darkcsp.__version__}, numpy {np.__version__}, "
          f"{os.cpu_count()} CPUs, OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'default')}, "
          f"clock: {'process CPU time' if args.cpu_time else 'wall'}")
    print()
    print("| sgemm n | GFLOP/s (before) | GFLOP/s (after) |")
    print("|---|---|---|")
    for n in args.sgemm_size:
        print(f"| {n} | {sgemm[n]:.1f} | {sgemm_after[n]:.1f} |")
    print()
    print(f"| network | input | Darknet BFLOPs | median time (s) | min time (s) | effective GFLOP/s (median) "
          f"| % of best sgemm ({best:.0f}) |")
    print("|---|---|---|---|---|---|---|")
    for label, w, h, bf, t, t_min in results:
        print(f"| {label} | {w}x{h} | {bf:.3f} | {t:.3f} | {t_min:.3f} | {bf / t:.1f} | {100 * bf / t / best:.0f}% |")
    if args.profile:
        for label, (t, share) in profiles.items():
            print()
            print(f"{label}: time per layer type (s per forward)")
            for k, v in sorted(share.items(), key=lambda kv: -kv[1]):
                print(f"  {k:16s} {v:.4f}  ({100 * v / t:.0f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
