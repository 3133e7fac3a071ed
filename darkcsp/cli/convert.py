"""``darkcsp convert``: lower a Darknet cfg + weights to an ONNX model, verified against the NumPy executor."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from ..errors import DarkcspError
from ..fileio import atomic_path
from ..model import load
from ..onnx.builder import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET
from ..onnx.conv import TARGETS
from .common import add_model_arguments

log = logging.getLogger("darkcsp")

NAME = "convert"
HELP = "convert a Darknet cfg + weights to ONNX (outputs layer_<i> = darkcsp run's outputs), verified on onnxruntime"

EPILOG = f"""\
Outputs: one graph output per output layer, named layer_<i> (0-based Darknet index), equal to what
`darkcsp run` writes ([yolo]: (N, C, H, W) after the layer's activations; [region]: (N, H, W, num*K),
Darknet's cell-major CPU buffer). The input is `input`, float32 (N, C, H, W), RGB in [0, 1].

--decode adds `boxes` (N, boxes, 4+1+classes): Darknet's box decoding (centre x, y, w, h relative to the
network input, objectness, per-class probability = objectness * class probability), concatenated over the
heads in layer order. No letterbox correction (it depends on the image size): apply it outside.

--nms adds `selected_indices` (M, 3) = (image, class, box) from ONNX NonMaxSuppression on `boxes`: per image
and class, boxes whose probability > --nms-score, greedy by descending probability, suppressing IoU >
--nms-iou, at most --nms-max boxes per class. This matches Darknet's do_nms_sort (nms_kind=default) per
class up to ties and the box limit, but NOT greedynms/diounms (yolov4's DIoU-based test) and not Darknet's
per-box output grouping: use darkcsp detect for exact Darknet detections.

--dynamic-batch makes the batch axis symbolic (N). --dynamic-size makes H and W symbolic when every layer
allows it (convolutions, pooling, route, yolo...); networks with [connected], [region], [reorg], [upsample],
[shortcut], ... keep the cfg size (a warning says so).

--fp16 stores weights and computes in float16; the input and outputs stay float32 (a Cast at each edge),
so callers feed the same arrays. Verification then uses a looser tolerance.

Default opset {DEFAULT_OPSET} (allowed {MIN_OPSET}..{MAX_OPSET}; all run on onnxruntime, OpenCV 4.x and OpenCV 5):
the last opset with reduction axes as attributes, which older importers read; nothing we emit needs newer."""


def add_arguments(p) -> None:
    import argparse
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG
    add_model_arguments(p)
    p.add_argument("-o", "--output", required=True, help="output .onnx file (written atomically)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                   help=f"ONNX opset ({MIN_OPSET}..{MAX_OPSET}, default {DEFAULT_OPSET})")
    p.add_argument("--decode", action="store_true", help="add a `boxes` output with Darknet's box decoding")
    p.add_argument("--nms", action="store_true", help="add ONNX NonMaxSuppression (implies --decode)")
    p.add_argument("--nms-iou", type=float, default=0.45, help="NMS IoU threshold (default 0.45)")
    p.add_argument("--nms-score", type=float, default=0.25, help="NMS probability threshold (default 0.25)")
    p.add_argument("--nms-max", type=int, default=100, help="NMS: at most this many boxes per class (default 100)")
    p.add_argument("--dynamic-batch", action="store_true", help="symbolic batch axis")
    p.add_argument("--dynamic-size", action="store_true", help="symbolic H/W where the network allows it")
    p.add_argument("--fp16", action="store_true", help="float16 weights and compute (float32 input/outputs)")
    p.add_argument("--all-layers", action="store_true", help="expose every layer's output as layer_<i>")
    p.add_argument("--target", choices=TARGETS, default="generic",
                   help="runtime to tune the graph for: generic (one Conv per convolution, default), onnxruntime "
                        "(large 3x3 convolutions as Winograd F(4x4,3x3): faster, file 2-3x bigger), opencv (1x1 "
                        "convolutions as MatMul: for OpenCV 4.x and OpenCV 5's classic engine)")
    p.add_argument("--no-verify", action="store_true", help="skip the onnxruntime vs NumPy check")
    p.add_argument("--tolerance", type=float,
                   help="verification limit on max |onnx - numpy| / max(1, max |numpy|) per output "
                        "(default 1e-2; 5e-2 with --fp16): far above float32 rounding in deep nets, far below "
                        "what a wrong lowering gives")
    p.add_argument("--int8", action="store_true",
                   help="static INT8 quantisation (onnxruntime QDQ, per-channel weights; the detection heads "
                        "stay float); needs --calib")
    p.add_argument("--calib", nargs="+", metavar="IMAGE",
                   help="calibration photos (or .npy input tensors) for --int8")
    p.add_argument("--calib-method", choices=["percentile", "minmax", "entropy"], default="percentile",
                   help="activation range calibration for --int8 (default percentile 99.999)")


def run(args) -> int:
    from ..onnx.export import ExportOptions, export_model
    t0 = time.perf_counter()
    model = load(args.cfg, args.weights, width=args.width, height=args.height, dialect=args.dialect)
    if args.int8:
        from ..onnx.quantize import convert_int8
        print(convert_int8(model, args))
        return 0
    options = ExportOptions(opset=args.opset, decode=args.decode or args.nms, nms=args.nms, nms_iou=args.nms_iou,
                            nms_score=args.nms_score, nms_max_per_class=args.nms_max,
                            dynamic_batch=args.dynamic_batch, dynamic_size=args.dynamic_size, fp16=args.fp16,
                            all_layers=args.all_layers, target=args.target)
    proto, info = export_model(model, options)
    data = proto.SerializeToString()
    t_export = time.perf_counter() - t0
    verified = ""
    with atomic_path(Path(args.output)) as tmp:
        if not args.no_verify:
            tol = args.tolerance if args.tolerance is not None else (5e-2 if args.fp16 else 1e-2)
            diffs = verify(model, data, info, tol, args)
            worst = max(diffs.values()) if diffs else 0.0
            verified = f"; onnxruntime vs numpy: max abs diff {worst:.2g}"
        tmp.write_bytes(data)
    graph = model.graph
    outs = ", ".join(f"{name} {_shape_text(info.output_shapes.get(name))}"
                     for name in list(info.outputs.values())[:6] + info.extra_outputs)
    if len(info.outputs) > 6:
        outs += f", ... ({len(info.outputs)} layer outputs)"
    target = "" if args.target == "generic" else f", target {args.target}"
    print(f"{args.output}: {len(graph.layers)} layers, {graph.params_total} params, opset {args.opset}{target}, "
          f"{len(data) / 1e6:.1f} MB, outputs {outs}{verified} ({t_export:.2f} s)")
    return 0


def _shape_text(shape) -> str:
    if shape is None:
        return "(?)"
    return "(" + ",".join("?" if d is None or str(d).startswith("unk__") else str(d) for d in shape) + ")"


def verification_input(shape) -> np.ndarray:
    """A smooth synthetic image in [0, 1] (gradients and low-frequency waves per channel, a different phase
    per batch item). Uniform noise is a poor probe: it drives calibrated networks far outside the range
    they were trained for, where float32 rounding differences blow up (enet-coco's SE blocks, for one)."""
    n, c, h, w = shape
    yy, xx = np.meshgrid(np.linspace(0, 1, h, dtype=np.float64), np.linspace(0, 1, w, dtype=np.float64),
                         indexing="ij")
    out = np.empty(shape, np.float32)
    for b in range(n):
        for ch in range(c):
            ph = 0.7 * b + 1.3 * ch
            out[b, ch] = 0.5 + 0.25 * np.sin(2 * np.pi * (1.5 * xx + ph)) * np.cos(2 * np.pi * (yy - ph)) \
                + 0.2 * (xx - 0.5) * (1 if ch % 2 else -1)
    return np.clip(out, 0, 1)


def verify(model, data: bytes, info, tol: float, args) -> dict:
    """Run the exported model once in onnxruntime and in the NumPy executor on the same input; raise
    DarkcspError if an output differs by more than ``tol * max(1, max |numpy|)``. Returns {output: max abs diff}."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    try:
        sess = ort.InferenceSession(data, sess_options=so, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise DarkcspError(f"onnxruntime cannot load the exported model: {e}") from None
    checks = [(model, 2 if args.dynamic_batch else 1)]
    if info.dynamic_size:
        # run once more at another size (64 more each way: keeps stride-64 grids whole) with the same weights
        c, h, w = model.graph.input_shape
        other = load(args.cfg, args.weights, width=w + 64, height=h + 64, dialect=args.dialect)
        checks.append((other, 1))
    diffs = {}
    for m, batch in checks:
        x = verification_input((batch,) + tuple(m.graph.input_shape))
        ref = m.forward(x, outputs=list(info.outputs))
        got = sess.run(list(info.outputs.values()), {"input": x})
        for (i, name), a in zip(info.outputs.items(), got):
            r = ref[i]
            if a.shape != r.shape:
                raise DarkcspError(f"verification failed: {name} has shape {a.shape} in ONNX, {r.shape} in NumPy")
            d = float(np.max(np.abs(a.astype(np.float64) - r))) if r.size else 0.0
            scale = max(1.0, float(np.max(np.abs(r))) if r.size else 0.0)
            if not np.isfinite(d) or d > tol * scale:
                raise DarkcspError(f"verification failed: {name} differs from the NumPy executor by {d:.3g} "
                                   f"(limit {tol * scale:.3g}); no file written (use --no-verify to write anyway)")
            diffs[name] = max(diffs.get(name, 0.0), d)
    return diffs
