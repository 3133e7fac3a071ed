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
from typing import Any, Iterable, List, Optional, Sequence, Tuple, Union

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
        first = next((l.index for l in layers if l.is_convolutional), None)
        if first is not None:
            keep.append(first)
    if heads:
        for l in layers:
            if not l.is_head:
                continue
            keep.append(l.index)
            for i in l.inputs:
                if i >= 0 and layers[i].is_convolutional:
                    keep.append(i)
    return sorted(set(keep))


def _nodes_of_layers(proto, indices: Iterable[int]) -> List[str]:
    """ONNX node names the exporter emitted for the given layers (it prefixes them ``l<index>_``)."""
    prefixes = tuple(f"l{i}_" for i in indices)
    return [n.name for n in proto.graph.node if n.name.startswith(prefixes)]


#: what ``calib=`` may hold: image paths (photos, or .npy input tensors), BGR uint8 arrays as cv2.imread gives,
#: Darknet images (3, H, W) float RGB, or network inputs (N, C, H, W)
CalibItem = Union[str, Path, np.ndarray]


def calibration_inputs(calib: Union[CalibItem, Sequence[CalibItem]], model) -> List[np.ndarray]:
    """(1, C, H, W) float32 network inputs for calibration.

    Photos and image arrays go through the detection API's preprocessing (``Detector.load_image`` +
    ``Detector.input_tensor``: Darknet's load, then its resize or letterbox as ``detector test`` does), so the
    INT8 ranges are taken on exactly what the model will see. Networks without a detection head use Darknet's
    plain load + resize (``[net] letter_box``). ``.npy`` files and 4-D arrays are network inputs as they are; a
    folder stands for the images in it."""
    if isinstance(calib, (str, Path)) or (isinstance(calib, np.ndarray) and calib.ndim in (2, 3, 4)):
        calib = [calib]
    c, h, w = model.graph.input_shape
    prepare = _image_preprocessor(model)
    out: List[np.ndarray] = []
    for item in _expand_folders(calib):
        if isinstance(item, (str, Path)) and Path(item).suffix.lower() == ".npy":
            try:
                x = np.load(item).astype(np.float32)
            except (OSError, ValueError) as e:
                raise ImageError(f"cannot read calibration tensor: {e}", file=str(item)) from None
            out.extend(_tensor_items(x, (c, h, w), str(item)))
        elif isinstance(item, np.ndarray) and item.ndim == 4:
            out.extend(_tensor_items(np.asarray(item, np.float32), (c, h, w), "calibration array"))
        else:
            out.append(prepare(item))
    if not out:
        raise DarkcspError("INT8 quantisation needs at least one calibration image (--calib / calib=)")
    return out


#: file types a calibration folder contributes (photos Darknet's stb_image reads; a .npy must be named itself)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tga", ".gif")


def _expand_folders(items) -> list:
    """A folder stands for its photos (sorted by name, not recursive)."""
    out = []
    for item in items:
        if isinstance(item, (str, Path)) and Path(item).is_dir():
            files = sorted(p for p in Path(item).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise ImageError(f"calibration folder has no images ({', '.join(IMAGE_SUFFIXES)})", file=str(item))
            out.extend(files)
        else:
            out.append(item)
    return out


def _tensor_items(x: np.ndarray, chw: tuple, source: str) -> List[np.ndarray]:
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(chw):
        raise ImageError(f"calibration tensor has shape {x.shape}, the network takes (N, {chw[0]}, {chw[1]}, "
                         f"{chw[2]})", file=source)
    return [np.ascontiguousarray(x[i:i + 1]) for i in range(x.shape[0])]


def _image_preprocessor(model):
    """image -> (1, C, H, W): the detector's own path, or Darknet's plain resize for networks without a head."""
    from ..backends import NumpyBackend
    from ..postprocess import heads_of
    if heads_of(model.graph.layers):
        from ..detector import Detector
        det = Detector(model, backend=NumpyBackend(model))
        return lambda item: det.input_tensor([det.load_image(item)]).astype(np.float32)
    from ..image import from_bgr, load_image, preprocess
    c, h, w = model.graph.input_shape

    def prepare(item):
        if isinstance(item, np.ndarray):
            im = from_bgr(item) if item.dtype == np.uint8 else np.asarray(item, np.float32)
        else:
            im = load_image(item)
        return preprocess(im, w, h, letter=bool(model.graph.net.letter_box)).astype(np.float32)
    return prepare


def quantize_export(model, inputs: Sequence[np.ndarray], options=None, *, keep_float: Optional[Sequence[int]] = None,
                    method: str = "percentile", per_channel: bool = True) -> Tuple[bytes, Any, dict]:
    """Export ``model`` to ONNX with ``options`` (darkcsp.onnx.export.ExportOptions; float32, no decode/NMS),
    calibrate on the network inputs ``inputs`` and return (serialized INT8 QDQ model, ExportInfo, summary)."""
    from .export import ExportOptions, export_model
    options = options or ExportOptions()
    clash = [flag for flag, on in (("fp16", options.fp16), ("decode", options.decode), ("nms", options.nms),
                                   ("dynamic_size", options.dynamic_size)) if on]
    if clash:
        raise UnsupportedError(f"INT8 quantisation does not combine with {', '.join(clash)}")
    if options.target == "onnxruntime":
        # Winograd subgraphs quantise badly (their transforms widen the value range); quantise plain Convs
        from dataclasses import replace
        options = replace(options, target="generic")
    proto, info = export_model(model, options)
    keep = float_layers(model) if keep_float is None else sorted(set(keep_float))
    exclude = _nodes_of_layers(proto, keep)
    q, summary = _quantize_proto(proto, inputs, exclude_nodes=exclude, method=method, per_channel=per_channel,
                                 metadata={"darkcsp.int8_float_layers": ",".join(map(str, keep))})
    summary.update(float_layers=keep, outputs=dict(info.outputs), method=method)
    return q.SerializeToString(), info, summary


def quantize_model(model, calib: Union[CalibItem, Sequence[CalibItem]], output: Union[str, Path], *,
                   keep_float: Optional[Sequence[int]] = None, method: str = "percentile", per_channel: bool = True,
                   opset: Optional[int] = None) -> dict:
    """Export ``model`` to ONNX, calibrate on ``calib`` (see calibration_inputs) and write the INT8 (QDQ) model
    to ``output`` atomically.

    ``keep_float``: Darknet layer indices left in float (default ``float_layers(model)``). Returns a summary
    dict (calibration count, float layers, quantised/float node counts)."""
    from ..fileio import atomic_write_bytes
    from .builder import DEFAULT_OPSET
    from .export import ExportOptions

    _check_method(method)
    inputs = calibration_inputs(calib, model)
    data, info, summary = quantize_export(model, inputs, ExportOptions(opset=opset or DEFAULT_OPSET, batch=1),
                                          keep_float=keep_float, method=method, per_channel=per_channel)
    atomic_write_bytes(output, data)
    return summary


def _check_method(method: str) -> None:
    if method not in CALIBRATION_METHODS:
        raise UnsupportedError(f"calibration method '{method}': choose {', '.join(CALIBRATION_METHODS)}")


def quantize_onnx(source, output: Union[str, Path], inputs: Sequence[np.ndarray], *,
                  exclude_nodes: Sequence[str] = (), method: str = "percentile", per_channel: bool = True,
                  metadata: Optional[dict] = None) -> dict:
    """Statically quantise an ONNX model (ModelProto or path) to QDQ INT8 with calibration tensors ``inputs``
    (fed to its first graph input); ``exclude_nodes`` stay in float. Written atomically to ``output``."""
    import onnx
    from ..fileio import atomic_write_bytes
    proto = source if isinstance(source, onnx.ModelProto) else onnx.load(str(source))
    q, summary = _quantize_proto(proto, inputs, exclude_nodes=exclude_nodes, method=method,
                                 per_channel=per_channel, metadata=metadata)
    atomic_write_bytes(output, q.SerializeToString())
    return summary


def _quantize_proto(proto, inputs: Sequence[np.ndarray], *, exclude_nodes: Sequence[str] = (),
                    method: str = "percentile", per_channel: bool = True, metadata: Optional[dict] = None):
    """(QDQ INT8 ModelProto, summary) of ``proto`` calibrated on ``inputs``; onnxruntime works in a temp dir."""
    try:
        import onnx
        from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                              quantize_static)
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as e:  # pragma: no cover - onnxruntime is a dependency
        raise UnsupportedError(f"INT8 quantisation needs onnxruntime.quantization: {e}") from None
    _check_method(method)
    if not inputs:
        raise DarkcspError("INT8 quantisation needs at least one calibration input")
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
        tmp_out = os.path.join(tmp, "int8.onnx")
        with contextlib.redirect_stdout(io.StringIO()) as chatter:
            # onnxruntime's calibrators print progress to stdout; keep it out of the CLI's output
            quantize_static(pre, tmp_out, Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            nodes_to_exclude=list(exclude_nodes), calibrate_method=cal, extra_options=extra)
        log.debug("onnxruntime.quantization: %s", chatter.getvalue().strip())
        q = onnx.load(tmp_out)
    meta = {p.key: p.value for p in proto.metadata_props}
    meta["darkcsp.int8"] = f"QDQ U8S8 per_channel={int(per_channel)} calib={method} n={len(inputs)}"
    meta.update(metadata or {})
    onnx.helper.set_model_props(q, meta)
    n_q = sum(1 for n in q.graph.node if n.op_type == "QuantizeLinear")
    return q, {"calibration_inputs": len(inputs), "excluded_nodes": len(exclude_nodes), "quantize_nodes": n_q,
               "nodes": len(q.graph.node)}


