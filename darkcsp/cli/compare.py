"""``darkcsp compare``: totals of several cfgs side by side, with the change relative to the first."""
from __future__ import annotations

import json
import sys
import time
from typing import Optional

import numpy as np

from .. import analysis
from ..dialect import ALEXEYAB, DIALECTS
from ..errors import DarkcspError
from ..graph import load_graph
from .common import add_json_arguments, json_on_stdout, write_json

NAME = "compare"
HELP = ("compare cfgs: params, BFLOPs, CIO, peak layer BFLOPs, peak live memory (and optionally fps) with the "
        "relative change from the first cfg; optional PNG")


def add_arguments(p) -> None:
    p.add_argument("cfgs", nargs="+", metavar="CFG", help="two or more Darknet .cfg files; the first is the baseline")
    p.add_argument("--width", type=int, help="override [net] width of every cfg")
    p.add_argument("--height", type=int, help="override [net] height of every cfg")
    p.add_argument("--dialect", choices=list(DIALECTS), default=ALEXEYAB.name,
                   help="Darknet lineage whose semantics to follow (default: alexeyab)")
    p.add_argument("--plot", metavar="PNG", help="write relative totals and per-layer BFLOPs as a PNG")
    p.add_argument("--fps", action="store_true", help="also time each network (random weights, batch 1)")
    p.add_argument("--backend", default="numpy", help="backend for --fps (numpy, onnxruntime, ...; default numpy)")
    p.add_argument("--runs", type=int, default=10, help="timed runs per network for --fps (default 10)")
    add_json_arguments(p, "the comparison")


def measure_fps(cfg, backend: str, runs: int, width: Optional[int], height: Optional[int], dialect: str) -> float:
    """Median-latency fps of ``cfg`` with random weights on ``backend`` (one warm-up run first)."""
    import logging

    from ..backends import create_backend
    from ..model import load

    log = logging.getLogger("darkcsp")
    level = log.level
    log.setLevel(logging.ERROR)  # the "random weights" warning is expected here
    try:
        model = load(cfg, width=width, height=height, dialect=dialect)
    finally:
        log.setLevel(level)
    be = create_backend(backend, model)
    x = np.random.default_rng(0).random((1,) + tuple(model.graph.input_shape), dtype=np.float32)
    be.run(x)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        be.run(x)
        times.append(time.perf_counter() - t0)
    return 1.0 / float(np.median(times))


def run(args) -> int:
    if len(args.cfgs) < 2:
        raise DarkcspError("compare needs at least two cfg files")
    if args.runs < 1:
        raise DarkcspError("--runs must be >= 1")
    profiles = [analysis.profile(load_graph(c, dialect=args.dialect, width=args.width, height=args.height))
                for c in args.cfgs]
    fps = None
    if args.fps:
        fps = [measure_fps(c, args.backend, args.runs, args.width, args.height, args.dialect) for c in args.cfgs]
    result = analysis.compare(profiles, fps)
    if fps is not None:
        result["backend"] = args.backend
    if args.plot:
        analysis.plot_compare(profiles, result, args.plot)
    if args.json or args.json_file:
        write_json(args, json.dumps(result))
    if not json_on_stdout(args):
        print(analysis.format_compare(result))
        if fps is not None:
            print(f"fps: {args.backend} backend, batch 1, random weights, median of {args.runs} runs")
    if args.plot and not args.quiet:
        print(f"plot written to {args.plot}", file=sys.stderr)
    return 0
