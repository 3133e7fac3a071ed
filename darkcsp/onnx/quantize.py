"""INT8 export: onnxruntime static quantisation (QDQ, per-channel weights) of darkcsp's ONNX model.

Activations are uint8 and weights int8 (onnxruntime's fast "U8S8" path on x86, VNNI where the CPU has it).
Calibration runs the float model on real photos, preprocessed exactly as Darknet's detector does, and takes
each activation's range at the 99.999th percentile. Each detection head stays in float: the convolution that
feeds a [yolo]/[region] layer (its logits become box coordinates and confidences directly) and the head's own
decoding nodes. The first convolution is quantised by default: keeping it in float cost ~4% speed on
yolov4-tiny and did not help accuracy (measured on the conformance photos: 11/12 of Darknet's detections
recovered with it in float, 12/12 without, for three different calibration sets; see docs/bench.md).
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Union

import numpy as np

from ..errors import DarkcspError, ImageError, UnsupportedError

log = logging.getLogger("darkcsp")

#: calibration methods offered (onnxruntime.quantization.CalibrationMethod names)
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")


def float_layers(model, first_conv: bool = False, heads: bool = True) -> List[int]:
    """Darknet layer indices to keep in float: for every detection head, the head and the [convolutional]
    layer(s) that feed it; with ``first_conv`` also the first [convolutional] layer."""
    layers = model.graph.layers
    keep: List[int] = []
    if first_conv:
        first = next((l.index for l in layers if l.type == "convolutional"), None)
        if first is not None:
            keep.append(first)
    if heads:
        for l in layers:
            if not l.is_head:
                continue
            keep.append(l.index)
            for i in l.inputs:
                if i >= 0 and layers[i].type == "convolutional":
                    keep.append(i)
    return sorted(set(keep))


def _nodes_of_layers(proto, indices: Iterable[int]) -> List[str]:
    """ONNX node names the exporter emitted for the given layers (it prefixes them ``l<index>_``)."""
    prefixes = tuple(f"l{i}_" for i in indices)
    return [n.name for n in proto.graph.node if n.name.startswith(prefixes)]


def calibration_inputs(paths: Sequence[Union[str, Path]], model) -> List[np.ndarray]:
    """(1, C, H, W) float32 network inputs from photos (Darknet's load + resize/letterbox) or .npy tensors."""
    from ..image import load_image, preprocess
    net = model.graph.net
    c, h, w = model.graph.input_shape
    out: List[np.ndarray] = []
    for p in paths:
        p = Path(p)
        if p.suffix.lower() == ".npy":
            try:
                x = np.load(p).astype(np.float32)
            except (OSError, ValueError) as e:
                raise ImageError(f"cannot read calibration tensor: {e}", file=str(p)) from None
            if x.ndim == 3:
                x = x[None]
            if x.ndim != 4 or tuple(x.shape[1:]) != (c, h, w):
                raise ImageError(f"calibration tensor has shape {x.shape}, the network takes (N, {c}, {h}, {w})",
                                 file=str(p))
            out.extend(x[i:i + 1] for i in range(x.shape[0]))
        else:
            out.append(preprocess(load_image(p), w, h, letter=bool(net.letter_box)).astype(np.float32))
    if not out:
        raise DarkcspError("INT8 quantisation needs at least one calibration image (--calib)")
    return out


def quantize_model(model, calib: Sequence[Union[str, Path]], output: Union[str, Path], *,
                   keep_float: Optional[Sequence[int]] = None, method: str = "percentile", per_channel: bool = True,
                   opset: Optional[int] = None) -> dict:
    """Export ``model`` to ONNX, calibrate on ``calib`` and write the INT8 (QDQ) model to ``output``.

    ``keep_float``: Darknet layer indices left in float (default ``float_layers(model)``). Returns a summary
    dict (calibration count, float layers, quantised/float node counts)."""
    from .builder import DEFAULT_OPSET
    from .export import ExportOptions, export_model

    inputs = calibration_inputs(calib, model)
    proto, info = export_model(model, ExportOptions(opset=opset or DEFAULT_OPSET, batch=1))
    keep = float_layers(model) if keep_float is None else sorted(set(keep_float))
    exclude = _nodes_of_layers(proto, keep)
    summary = quantize_onnx(proto, output, inputs, exclude_nodes=exclude, method=method, per_channel=per_channel,
                            metadata={"darkcsp.int8_float_layers": ",".join(map(str, keep))})
    summary.update(float_layers=keep, outputs=dict(info.outputs))
    return summary


def quantize_onnx(source, output: Union[str, Path], inputs: Sequence[np.ndarray], *,
                  exclude_nodes: Sequence[str] = (), method: str = "percentile", per_channel: bool = True,
                  metadata: Optional[dict] = None) -> dict:
    """Statically quantise an ONNX model (ModelProto or path) to QDQ INT8 with calibration tensors ``inputs``
    (fed to its first graph input); ``exclude_nodes`` stay in float. Written atomically to ``output``."""
    try:
        import onnx
        from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                              quantize_static)
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as e:  # pragma: no cover - onnxruntime is a dependency
        raise UnsupportedError(f"INT8 quantisation needs onnxruntime.quantization: {e}") from None
    from ..fileio import atomic_path

    if method not in CALIBRATION_METHODS:
        raise UnsupportedError(f"calibration method '{method}': choose {', '.join(CALIBRATION_METHODS)}")
    if not inputs:
        raise DarkcspError("INT8 quantisation needs at least one calibration input")
    proto = source if isinstance(source, onnx.ModelProto) else onnx.load(str(source))
    input_name = proto.graph.input[0].name
    batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    fixed_batch = batch_dim.dim_value if batch_dim.HasField("dim_value") else 0

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(inputs)

        def get_next(self):
            x = next(self._it, None)
            if x is not None and fixed_batch and x.shape[0] != fixed_batch:
                x = np.repeat(x[:1], fixed_batch, axis=0)
            return None if x is None else {input_name: x}

    cal = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
           "entropy": CalibrationMethod.Entropy}[method]
    extra = {"ActivationSymmetric": False, "WeightSymmetric": True}
    if method == "percentile":
        extra["CalibPercentile"] = 99.999
    with tempfile.TemporaryDirectory(prefix="darkcsp-int8-") as tmp:
        f32 = os.path.join(tmp, "fp32.onnx")
        pre = os.path.join(tmp, "fp32-pre.onnx")
        onnx.save(proto, f32)
        try:
            # onnxruntime's recommended pre-processing: its basic graph optimisations + shape inference.
            quant_pre_process(f32, pre, skip_symbolic_shape=True)
        except Exception as e:  # pre-processing only helps; quantise the plain export if it fails
            log.warning("quantisation pre-processing skipped: %s", e)
            pre = f32
        with atomic_path(output) as tmp_out, contextlib.redirect_stdout(io.StringIO()) as chatter:
            # onnxruntime's calibrators print progress to stdout; keep it out of the CLI's output
            quantize_static(pre, str(tmp_out), Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            nodes_to_exclude=list(exclude_nodes), calibrate_method=cal, extra_options=extra)
            log.debug("onnxruntime.quantization: %s", chatter.getvalue().strip())
            q = onnx.load(str(tmp_out))
            meta = {p.key: p.value for p in proto.metadata_props}
            meta["darkcsp.int8"] = f"QDQ U8S8 per_channel={int(per_channel)} calib={method} n={len(inputs)}"
            meta.update(metadata or {})
            onnx.helper.set_model_props(q, meta)
            onnx.save(q, str(tmp_out))
    n_q = sum(1 for n in q.graph.node if n.op_type == "QuantizeLinear")
    return {"calibration_inputs": len(inputs), "excluded_nodes": len(exclude_nodes), "quantize_nodes": n_q,
            "nodes": len(q.graph.node)}


def convert_int8(model, args) -> str:
    """``darkcsp convert --int8``: write the INT8 model to ``args.output``; return the summary line to print.

    The float export options that change the graph (fp16, decode, nms, dynamic axes, all layers) do not combine
    with --int8. Unless --no-verify, the INT8 outputs are compared with the NumPy executor on the first
    calibration input and the largest difference is reported (informative: 8-bit results are not exact)."""
    import time
    t0 = time.perf_counter()
    clash = [flag for flag, on in (("--fp16", args.fp16), ("--decode", args.decode), ("--nms", args.nms),
                                   ("--dynamic-batch", args.dynamic_batch), ("--dynamic-size", args.dynamic_size),
                                   ("--all-layers", args.all_layers)) if on]
    if clash:
        raise UnsupportedError(f"--int8 does not combine with {', '.join(clash)}")
    if not args.calib:
        raise DarkcspError("--int8 needs calibration photos: --calib IMAGE [IMAGE ...] (or .npy input tensors), "
                           "ideally a few dozen images like the ones the model will see")
    info = quantize_model(model, args.calib, args.output, method=args.calib_method, opset=args.opset)
    text = (f"{args.output}: INT8 (QDQ, per-channel), {info['calibration_inputs']} calibration inputs "
            f"({args.calib_method}), layers kept in float: {','.join(map(str, info['float_layers'])) or 'none'}; "
            f"{info['quantize_nodes']} quantised tensors")
    if not args.no_verify:
        import onnxruntime as ort
        x = calibration_inputs(args.calib[:1], model)[0]
        sess = ort.InferenceSession(str(args.output), providers=["CPUExecutionProvider"])
        got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"input": x})))
        ref = model.forward(x, outputs=list(info["outputs"]))
        worst = max(float(np.max(np.abs(got[name] - ref[i]))) for i, name in info["outputs"].items())
        text += f"; vs NumPy on {Path(args.calib[0]).name}: max abs diff {worst:.3g}"
    return text + f" ({time.perf_counter() - t0:.1f} s)"
