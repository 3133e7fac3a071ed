#!/usr/bin/env python
"""Measure `darkcsp convert` (export only, no verification): time and .onnx size vs the .weights size.

Default: yolov4-tiny 416 with the trained COCO weights of the conformance corpus (target: under 1 s).

    python tools/bench_convert.py [--cfg X.cfg --weights W.weights] [--repeat 5] [--opset 17]
"""
from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import darkcsp
from darkcsp.fileio import atomic_path
from darkcsp.onnx.export import ExportOptions, export_model
from darkcsp.weights import read_weights_bytes

REPO = Path(__file__).resolve().parent.parent  # the corpus lives beside the checkout


def default_paths():
    corpus = Path(os.environ.get("DARKCSP_CONFORMANCE", REPO.parent / "shared" / "conformance"))
    cache = Path(os.environ.get("DARKCSP_CONFORMANCE_CACHE", Path.home() / ".cache" / "darkcsp-conformance"))
    return corpus / "cases" / "yolov4-tiny-coco" / "model.cfg", cache / "yolov4-tiny-coco" / "model.weights"


def main() -> int:
    cfg, weights = default_paths()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cfg", default=str(cfg))
    p.add_argument("--weights", default=str(weights))
    p.add_argument("--width", type=int, default=416)
    p.add_argument("--height", type=int, default=416)
    p.add_argument("--opset", type=int)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    logging.disable(logging.WARNING)
    opts = ExportOptions() if args.opset is None else ExportOptions(opset=args.opset)

    weights_bytes = len(read_weights_bytes(args.weights))
    load_t, export_t, write_t, total_t = [], [], [], []
    size = 0
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "model.onnx"
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            model = darkcsp.load(args.cfg, args.weights, width=args.width, height=args.height)
            t1 = time.perf_counter()
            proto, info = export_model(model, opts)
            data = proto.SerializeToString()
            t2 = time.perf_counter()
            with atomic_path(out) as tmp:
                tmp.write_bytes(data)
            t3 = time.perf_counter()
            size = out.stat().st_size
            load_t.append(t1 - t0)
            export_t.append(t2 - t1)
            write_t.append(t3 - t2)
            total_t.append(t3 - t0)
    med = statistics.median
    print(f"{args.cfg} {args.width}x{args.height}: {len(model.graph.layers)} layers, "
          f"{model.graph.params_total} params, {info.nodes} ONNX nodes, {info.initializers} initializers")
    print(f"convert (median of {args.repeat}): total {med(total_t):.3f} s = load {med(load_t):.3f} s + "
          f"export/check {med(export_t):.3f} s + write {med(write_t):.3f} s  (target < 1 s: "
          f"{'met' if med(total_t) < 1 else 'MISSED'})")
    print(f"size: .onnx {size / 1e6:.2f} MB vs .weights {weights_bytes / 1e6:.2f} MB "
          f"(ratio {size / weights_bytes:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
