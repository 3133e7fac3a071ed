#!/usr/bin/env python3
"""One convolution, lowered for each ONNX target (darkcsp.onnx.conv), timed on onnxruntime and OpenCV DNN.

This is where the rule ``darkcsp.onnx.conv.winograd_pays`` comes from: it prints, per layer shape, the
latency of the generic ``Conv`` and of the target's rewrite, interleaved in one process, and the speed-up::

    python tools/bench_conv.py                                  # the shapes of yolov4-tiny and a few more
    python tools/bench_conv.py --shape 128,128,52 --shape 512,512,13 --threads 2

Single layers run with warm caches; inside a network the rewritten layers gain less (their bigger weights,
4x for Winograd, come from memory), so check a rule change with ``darkcsp bench`` on whole models.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
from onnx import TensorProto, helper

from darkcsp.onnx.builder import OnnxGraph
from darkcsp.onnx.conv import conv1x1_matmul, tile_waste, winograd_f4x4_3x3, winograd_pays

SHAPES = ["64,64,104", "128,128,104", "64,128,52", "128,128,52", "64,64,52", "256,256,52", "128,128,26",
          "256,256,26", "384,256,26", "512,512,26", "256,512,13", "512,512,13", "1024,1024,13", "256,256,64"]


def build(cin, cout, h, k, how) -> bytes:
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((cout, cin, k, k)) / np.sqrt(cin * k * k)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    g = OnnxGraph()
    if how == "winograd":
        y = winograd_f4x4_3x3(g, "x", w, b, h, h)
    elif how == "matmul":
        y = conv1x1_matmul(g, "x", w, b, h, h)
    else:
        p = k // 2
        y = g.op("Conv", ["x", g.const(w), g.const(b)], kernel_shape=[k, k], pads=[p] * 4)
    y = g.op("LeakyRelu", [y], alpha=0.1)
    graph = helper.make_graph(g.nodes, "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, h, h])],
                              [helper.make_tensor_value_info(y, TensorProto.FLOAT, [1, cout, h, h])], g.initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", g.opset)]).SerializeToString()


def runner(engine, data, threads):
    if engine == "onnxruntime":
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        # several sessions in one process: spinning threads of one would steal the cores of the next
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
        return lambda x: sess.run(None, {"x": x})[0]
    import cv2
    cv2.setNumThreads(threads)
    net = cv2.dnn.readNetFromONNX(np.frombuffer(data, np.uint8))

    def run(x):
        net.setInput(x)
        return net.forward()
    return run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", action="append", help="CIN,COUT,SIZE (repeatable; default: a built-in list)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--engine", choices=["onnxruntime", "opencv"], default="onnxruntime")
    args = ap.parse_args()
    how = "winograd" if args.engine == "onnxruntime" else "matmul"
    k = 3 if how == "winograd" else 1
    print(f"{args.engine}, {args.threads} threads, {k}x{k} convolution: generic Conv vs {how}")
    print(f"{'cin->cout @ size':>20} {'tiles':>6} {'Conv ms':>8} {how + ' ms':>12} {'speed-up':>9}  rule")
    for spec in args.shape or SHAPES:
        cin, cout, h = (int(v) for v in spec.split(","))
        x = np.random.default_rng(1).standard_normal((1, cin, h, h)).astype(np.float32)
        fns = [runner(args.engine, build(cin, cout, h, k, m), args.threads) for m in ("conv", how)]
        ref, got = fns[0](x), fns[1](x)
        err = float(np.max(np.abs(got.reshape(ref.shape) - ref)) / max(1e-12, float(np.max(np.abs(ref)))))
        times = [[], []]
        for _ in range(3):
            fns[0](x), fns[1](x)
        for _ in range(args.runs // 5):  # interleaved blocks of 5
            for i, fn in enumerate(fns):
                for _ in range(5):
                    t = time.perf_counter()
                    fn(x)
                    times[i].append(time.perf_counter() - t)
        a, b = (statistics.median(t) * 1e3 for t in times)
        # the opencv target applies to OpenCV 4.x and OpenCV 5's classic engine; this times the buffer-read default engine
        rule = ("yes" if winograd_pays(cin, cout, h, h) else "no") if how == "winograd" else "classic only"
        print(f"{cin:>8}->{cout:<5} @ {h:<4} {tile_waste(h, h):6.2f} {a:8.2f} {b:12.2f} {a / b:8.2f}x  {rule}"
              f"   (max rel. diff {err:.1e})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
