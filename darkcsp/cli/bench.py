"""``darkcsp bench``: latency, fps, effective GFLOP/s and peak RSS of each backend on one network."""
from __future__ import annotations

import sys

from ..errors import DarkcspError, UnsupportedError
from .common import add_json_arguments, add_model_arguments, json_on_stdout, write_json

NAME = "bench"
HELP = ("time each backend on a cfg (median/p10/p90 latency, fps, GFLOP/s, peak RSS), interleaved in one run; "
        "the machine and library versions in the header")

EPILOG = """backend specs: NAME[=ONNX_FILE][@PYTHON]
  numpy, onnxruntime, opencv, ... darkcsp's backends (the ONNX ones on darkcsp's own export)
  opencv-darknet                  OpenCV's readNetFromDarknet (OpenCV 4.x; removed in OpenCV 5)
  onnxruntime-int8, ...           darkcsp's ONNX statically quantised to INT8 (needs --calib)
  onnxruntime=FILE.onnx           an ONNX file made elsewhere, on onnxruntime (opencv=FILE.onnx: OpenCV DNN,
                                  likewise for every ONNX backend)
  ...@/path/to/python             run that backend under another interpreter, e.g.
                                  opencv-darknet@/opt/venv-cv4/bin/python (or set $DARKCSP_OPENCV4_PYTHON)
Each backend runs in its own process; unavailable ones are skipped with the reason."""


def add_arguments(p) -> None:
    import argparse
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG
    add_model_arguments(p)
    p.add_argument("--backends", default=None,
                   help="comma-separated backend specs (default: every darkcsp backend and opencv-darknet, "
                        "plus the INT8 ones with --calib)")
    p.add_argument("--threads", type=int, default=0, help="threads per backend (default: every usable core)")
    p.add_argument("--batch", type=int, default=1, help="images per inference (default 1)")
    p.add_argument("--warmup", type=int, default=5, help="untimed runs per backend first (default 5)")
    p.add_argument("--runs", type=int, default=30, help="timed runs per backend (default 30)")
    p.add_argument("--block", type=int, default=5,
                   help="timed runs per backend before switching to the next one (default 5)")
    p.add_argument("--input", help="input tensor .npy (N,C,H,W) instead of a seeded random one")
    p.add_argument("--end-to-end", action="store_true",
                   help="time image decode + resize + network + box decoding + NMS (needs --images)")
    p.add_argument("--images", nargs="+", default=[], metavar="IMAGE", help="photos for --end-to-end")
    p.add_argument("--agreement", nargs="+", default=[], metavar="DIR",
                   help="folders with input.npy and Darknet's detections.json: report how many of Darknet's "
                        "detections each backend recovers (same class, IoU >= 0.8)")
    p.add_argument("--calib", nargs="+", default=[], metavar="IMAGE",
                   help="calibration photos (or .npy input tensors) for the INT8 backends")
    p.add_argument("--baseline", help="backend label the ratio column compares with (default opencv-darknet)")
    p.add_argument("--nice", type=int, default=0,
                   help="add this to the backends' scheduling priority (e.g. -5 on a shared machine; negative "
                        "values need root)")
    add_json_arguments(p, "the result")
    p.add_argument("--json-times", action="store_true", help="with --json/--json-file: include every run's time")
    p.add_argument("--plot", metavar="PNG", help="write a bar chart of fps per backend")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    from .. import bench

    if args.threads < 0 or args.batch < 1 or args.runs < 1 or args.warmup < 0 or args.block < 1:
        raise DarkcspError("--threads must be >= 0, --batch, --runs and --block >= 1, --warmup >= 0")
    if args.backends:
        names = [s for s in args.backends.split(",") if s.strip()]
    else:
        names = bench.default_backends() + (bench.calibrated_backends() if args.calib else [])
    specs = [bench.parse_backend_spec(s) for s in names]
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise UnsupportedError(f"a backend is listed twice in --backends: {', '.join(labels)}")
    config = bench.BenchConfig(
        cfg=args.cfg, weights=args.weights, width=args.width, height=args.height, dialect=args.dialect,
        backends=specs, threads=args.threads, batch=args.batch, warmup=args.warmup, runs=args.runs,
        block=args.block, input=args.input, end_to_end=args.end_to_end, images=args.images,
        agreement=args.agreement, calib=args.calib, baseline=args.baseline, nice=args.nice)
    bar = None

    def show(done: int, total: int, label: str) -> None:
        nonlocal bar
        from tqdm import tqdm
        if bar is None:
            bar = tqdm(total=total, unit="run", file=sys.stderr, leave=False, dynamic_ncols=True, disable=None)
        bar.set_postfix_str(label, refresh=False)
        bar.update(done - bar.n)
    progress = None if args.no_progress or args.quiet else show
    try:
        result = bench.run_bench(config, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    for e in result["backends"]:
        if e["status"] != "ok" and not args.quiet:
            print(f"darkcsp bench: {e['label']} {e['status']}: {e.get('message', '')}", file=sys.stderr)
    if args.plot:
        bench.plot(result, args.plot)
    if args.json or args.json_file:
        write_json(args, bench.to_json(result, keep_times=args.json_times))
    if not json_on_stdout(args):
        print(bench.format_table(result))
    ok = [e for e in result["backends"] if e["status"] == "ok"]
    return 0 if ok else 1
