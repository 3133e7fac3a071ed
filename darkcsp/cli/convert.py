"""``darkcsp convert``: lower a Darknet cfg + weights to ONNX or OpenVINO IR, verified against the NumPy executor."""
from __future__ import annotations

import logging
import time
from pathlib import Path

from ..errors import DarkcspError, UnsupportedError
from ..fileio import atomic_path
from ..model import load
from ..onnx.builder import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET
from ..onnx.conv import TARGETS
from ..onnx.verify import TOLERANCE, TOLERANCE_FP16, verify_outputs
from .common import add_model_arguments

log = logging.getLogger("darkcsp")

NAME = "convert"
HELP = ("convert a Darknet cfg + weights to ONNX or OpenVINO IR (outputs layer_<i> = darkcsp run's outputs), "
        "verified against the NumPy executor")

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
allows it (darkcsp.onnx.export.DYNAMIC_SIZE_TYPES: convolutions, pooling, route, shortcut, upsample, yolo, ...)
and --decode is not given; networks with [connected], [region], [reorg], [softmax], ... keep the cfg size (a
warning says so).

--fp16 stores weights and computes in float16; the input and outputs stay float32 (a Cast at each edge),
so callers feed the same arrays. Verification then uses a looser tolerance.

Default opset {DEFAULT_OPSET} (allowed {MIN_OPSET}..{MAX_OPSET}; all run on onnxruntime, OpenCV 4.x and OpenCV 5):
the last opset with reduction axes as attributes, which older importers read; nothing we emit needs newer.

--format openvino writes OpenVINO IR: -o NAME.xml and NAME.bin beside it (both written together or not at all;
an existing file is an error unless --force). Input `input` f32 [1, C, H, W] RGB in [0, 1], outputs layer_<i> as
above; plain OpenVINO reads it (openvino.Core().read_model("NAME.xml")). --fp16 stores the weights as float16
(OpenVINO decompresses them at load); --int8 --calib writes the calibrated INT8 model (FakeQuantize). The IR is
read back, run at f32 and compared with the NumPy executor. OpenVINO's CPU plugin runs an IR at bf16 by default
on CPUs with bf16 instructions: pass INFERENCE_PRECISION_HINT=f32 to compile_model for float32 results.
--decode/--nms/--dynamic-*/--all-layers are ONNX-only. Needs `pip install 'darkcsp[openvino]'`."""


def add_arguments(p) -> None:
    import argparse
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG
    add_model_arguments(p)
    p.add_argument("-o", "--output", required=True,
                   help="output .onnx file, or .xml for --format openvino (written atomically)")
    p.add_argument("--format", choices=["onnx", "openvino"], default="onnx",
                   help="onnx (default) or openvino (OpenVINO IR: .xml + .bin)")
    p.add_argument("--force", action="store_true", help="--format openvino: overwrite an existing .xml/.bin")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                   help=f"ONNX opset ({MIN_OPSET}..{MAX_OPSET}, default {DEFAULT_OPSET})")
    p.add_argument("--decode", action="store_true", help="add a `boxes` output with Darknet's box decoding")
    p.add_argument("--nms", action="store_true", help="add ONNX NonMaxSuppression (implies --decode)")
    p.add_argument("--nms-iou", type=float, default=0.45, help="NMS IoU threshold (default 0.45)")
    p.add_argument("--nms-score", type=float, default=0.25, help="NMS probability threshold (default 0.25)")
    p.add_argument("--nms-max", type=int, default=100, help="NMS: at most this many boxes per class (default 100)")
    p.add_argument("--dynamic-batch", action="store_true", help="symbolic batch axis")
    p.add_argument("--dynamic-size", action="store_true", help="symbolic H/W where the network allows it")
    p.add_argument("--fp16", action="store_true",
                   help="ONNX: float16 weights and compute (float32 input/outputs); OpenVINO: float16 weights")
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
                   help="static INT8 quantisation (QDQ, per-channel weights; the detection heads stay float); "
                        "needs --calib")
    p.add_argument("--calib", nargs="+", metavar="IMAGE",
                   help="calibration photos (or .npy input tensors) for --int8, preprocessed like darkcsp detect")
    p.add_argument("--calib-method", choices=["percentile", "minmax", "entropy"], default="percentile",
                   help="activation range calibration for --int8 (default percentile 99.999)")


def run(args) -> int:
    t0 = time.perf_counter()
    _check_options(args)
    model = load(args.cfg, args.weights, width=args.width, height=args.height, dialect=args.dialect)
    if args.format == "openvino":
        return _run_openvino(args, model, t0)
    if args.int8:
        return _run_int8(args, model, t0)
    from ..onnx.export import ExportOptions, export_model
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
            tol = args.tolerance if args.tolerance is not None else (TOLERANCE_FP16 if args.fp16 else TOLERANCE)
            checks = [(model, 2 if args.dynamic_batch else 1)]
            if info.dynamic_size:
                # once more at another size (64 more each way: keeps stride-64 grids whole) with the same weights
                c, h, w = model.graph.input_shape
                checks.append((load(args.cfg, args.weights, width=w + 64, height=h + 64, dialect=args.dialect), 1))
            diffs = verify(data, info, checks, tol)
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


def _check_options(args) -> None:
    """Refuse option combinations before anything is loaded or written."""
    graph_flags = (("--decode", args.decode), ("--nms", args.nms), ("--dynamic-batch", args.dynamic_batch),
                   ("--dynamic-size", args.dynamic_size), ("--all-layers", args.all_layers))
    if args.int8:
        clash = [flag for flag, on in (("--fp16", args.fp16),) + graph_flags if on]
        if clash:
            raise UnsupportedError(f"--int8 does not combine with {', '.join(clash)}")
        if not args.calib:
            raise DarkcspError("--int8 needs calibration photos: --calib IMAGE [IMAGE ...] (or .npy input tensors), "
                               "ideally a few dozen images like the ones the model will see")
    elif args.calib:
        raise DarkcspError("--calib is for --int8")
    if args.format == "openvino":
        clash = [flag for flag, on in graph_flags if on]
        if clash:
            raise UnsupportedError(f"--format openvino does not take {', '.join(clash)} (ONNX-only options)")
        from ..openvino import ir_paths, require_openvino
        ir_paths(args.output)
        require_openvino()
    elif args.force:
        raise DarkcspError("--force is for --format openvino (an ONNX output is replaced atomically)")


def _run_int8(args, model, t0: float) -> int:
    from ..onnx.quantize import calibration_inputs, quantize_model
    from ..onnx.verify import max_difference
    info = quantize_model(model, args.calib, args.output, method=args.calib_method, opset=args.opset)
    text = (f"{args.output}: INT8 (QDQ, per-channel), {info['calibration_inputs']} calibration inputs "
            f"({args.calib_method}), layers kept in float: {','.join(map(str, info['float_layers'])) or 'none'}; "
            f"{info['quantize_nodes']} quantised tensors")
    if not args.no_verify:
        # informative: 8-bit results are not exact
        import onnxruntime as ort
        x = calibration_inputs(args.calib[:1], model)[0]
        sess = ort.InferenceSession(str(args.output), providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        worst = max_difference(model, info["outputs"], lambda v: dict(zip(names, sess.run(None, {"input": v}))), x)
        text += f"; vs NumPy on {Path(args.calib[0]).name}: max abs diff {worst:.3g}"
    print(text + f" ({time.perf_counter() - t0:.1f} s)")
    return 0


def _run_openvino(args, model, t0: float) -> int:
    from ..openvino import export_ir
    info = export_ir(model, args.output, fp16=args.fp16, int8=args.int8, calib=args.calib,
                     calib_method=args.calib_method, opset=args.opset, target=args.target,
                     verify=not args.no_verify, tolerance=args.tolerance, force=args.force)
    kind = "INT8 (FakeQuantize)" if args.int8 else ("float16 weights" if args.fp16 else "float32")
    outs = ", ".join(f"{name} {_shape_text(info['output_shapes'].get(name))}"
                     for name in list(info["outputs"].values())[:6])
    text = (f"{info['xml']} + {Path(info['bin']).name}: OpenVINO {info['openvino'].split('-')[0]} IR, {kind}, "
            f"{info['bin_bytes'] / 1e6:.1f} MB, outputs {outs}")
    if args.int8:
        text += (f"; {info['calibration_inputs']} calibration inputs ({args.calib_method}), layers kept in float: "
                 f"{','.join(map(str, info['float_layers'])) or 'none'}")
    if "max_abs_diff" in info:
        text += f"; OpenVINO (f32) vs numpy: max abs diff {info['max_abs_diff']:.2g}"
    print(text + f" ({time.perf_counter() - t0:.2f} s)")
    return 0


def _shape_text(shape) -> str:
    if shape is None:
        return "(?)"
    return "(" + ",".join("?" if d is None or str(d).startswith("unk__") else str(d) for d in shape) + ")"


def verify(data: bytes, info, checks, tol: float) -> dict:
    """Run the exported ONNX model in onnxruntime and the NumPy executor on the same input for each (model,
    batch) in ``checks``; raise DarkcspError beyond ``tol * max(1, max |numpy|)``. Returns {output: max abs diff}."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    try:
        sess = ort.InferenceSession(data, sess_options=so, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise DarkcspError(f"onnxruntime cannot load the exported model: {e}") from None
    names = list(info.outputs.values())
    return verify_outputs(checks, info.outputs, lambda x: dict(zip(names, sess.run(names, {"input": x}))), tol,
                          "ONNX")
