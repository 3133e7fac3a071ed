"""Backends behind one interface: each runs a Model on (N,C,H,W) float32 and returns {layer index: output}.

* ``numpy``: the reference executor (``Model.forward``).
* ``onnxruntime``: the exported ONNX model on onnxruntime's CPUExecutionProvider (all graph optimisations).
* ``opencv``: the exported ONNX model on OpenCV DNN (``readNetFromONNX``, DNN_BACKEND_OPENCV, DNN_TARGET_CPU).
* ``opencv-darknet``: OpenCV's own Darknet importer (``readNetFromDarknet``); OpenCV 5 removed it.
* ``openvino`` / ``openvino-bf16``: the exported ONNX model on OpenVINO's CPU plugin at float32 / bfloat16
  (bf16 needs AVX512_BF16 or AMX; refused elsewhere). Optional: ``pip install 'darkcsp[openvino]'``.
* ``onnxruntime-int8`` / ``openvino-int8``: darkcsp's static INT8 model (QDQ, per-channel weights, detection
  heads in float; darkcsp.onnx.quantize) calibrated on ``calib=`` images, on onnxruntime / OpenVINO.

The ONNX backends return the same keys and shapes as ``numpy``. Exported models are cached per
(model, export options), so creating several backends for one model converts it once.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import weakref
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np

from .errors import DarkcspError, UnsupportedError
from .model import Model

log = logging.getLogger("darkcsp")


class Backend:
    name = ""
    #: True when ``run`` may be called from several threads at once (callers serialise the others)
    thread_safe = False
    #: True when the backend compiles one model per batch size (callers pad a short last batch instead)
    static_batch = False

    def __init__(self, model: Model, outputs: Optional[Iterable[int]] = None, all_layers: bool = False,
                 threads: Optional[int] = None, **options):
        self.model = model
        self.outputs = list(model.graph.output_indices() if outputs is None else outputs)
        self.all_layers = all_layers
        #: intra-op threads (onnxruntime/opencv); the NumPy executor uses NumPy's BLAS threads
        self.threads = threads
        if options:
            raise DarkcspError(f"backend '{self.name}' does not take option(s) {', '.join(sorted(options))}")

    def run(self, x: np.ndarray) -> Dict[int, np.ndarray]:
        raise NotImplementedError

    def warmup(self, batch: int = 1) -> None:
        """Prepare everything a first ``run`` at this batch size would (export, compile); nothing by default."""

    def _check_input(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(self.model.graph.check_input(np.asarray(x, dtype=np.float32)))


class NumpyBackend(Backend):
    """The reference executor (darkcsp.model.Model.forward)."""
    name = "numpy"
    thread_safe = True

    def run(self, x: np.ndarray) -> Dict[int, np.ndarray]:
        return self.model.forward(x, outputs=self.outputs, all_layers=self.all_layers)


# ----- exported-model cache ----------------------------------------------------------------------

#: model -> {ExportOptions: (serialized model, ExportInfo)}; entries die with their model
_EXPORT_CACHE: "weakref.WeakKeyDictionary[Model, Dict[object, Tuple[bytes, object]]]" = weakref.WeakKeyDictionary()


def exported(model: Model, options) -> Tuple[bytes, object]:
    """The serialized ONNX model and its ExportInfo for (model, options), exported once and cached."""
    from .onnx.export import export_model
    per_model = _EXPORT_CACHE.setdefault(model, {})
    if options not in per_model:
        proto, info = export_model(model, options)
        per_model[options] = (proto.SerializeToString(), info)
    return per_model[options]


class _OnnxBackend(Backend):
    """Common part of the backends that run the exported ONNX model (static shapes, one export per batch)."""
    static_batch = True

    def __init__(self, model: Model, outputs: Optional[Iterable[int]] = None, all_layers: bool = False,
                 threads: Optional[int] = None, opset: Optional[int] = None, fp16: bool = False,
                 target: Optional[str] = None, **options):
        super().__init__(model, outputs, all_layers, threads, **options)
        from .onnx.builder import DEFAULT_OPSET
        from .onnx.conv import TARGETS
        if target is not None and target not in TARGETS:
            raise UnsupportedError(f"unknown ONNX target '{target}': choose from {', '.join(TARGETS)}")
        self.opset = opset or DEFAULT_OPSET
        self.fp16 = fp16
        self._target = target
        self._sessions: Dict[int, object] = {}

    #: the ONNX target the backend's export is tuned for unless ``target=`` says otherwise (darkcsp.onnx.conv;
    #: e.g. target="generic" on onnxruntime trades the Winograd speed-up for a graph half the size)
    default_target = "generic"

    @property
    def target(self) -> str:
        return self._target or self.default_target

    def export_options(self, batch: int):
        from .onnx.export import ExportOptions
        if self.all_layers:
            return ExportOptions(opset=self.opset, fp16=self.fp16, batch=batch, all_layers=True, target=self.target)
        return ExportOptions(opset=self.opset, fp16=self.fp16, batch=batch, outputs=tuple(self.outputs),
                             target=self.target)

    def _session(self, batch: int):
        if batch not in self._sessions:
            data, info = self._exported(batch)
            self._sessions[batch] = (self._open(data, info), info)
        return self._sessions[batch]

    def _exported(self, batch: int) -> Tuple[bytes, object]:
        return exported(self.model, self.export_options(batch))

    def _open(self, data: bytes, info):  # pragma: no cover - abstract
        raise NotImplementedError

    def warmup(self, batch: int = 1) -> None:
        """Export and load the model now (so that timing a later ``run`` excludes it)."""
        self._session(batch)


class OnnxRuntimeBackend(_OnnxBackend):
    """onnxruntime, CPUExecutionProvider, graph optimisation level ORT_ENABLE_ALL, on the export tuned for it
    (large 3x3 convolutions as Winograd, darkcsp.onnx.conv)."""
    name = "onnxruntime"
    thread_safe = True  # InferenceSession.run is
    default_target = "onnxruntime"


    def _open(self, data: bytes, info):
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.threads:
            so.intra_op_num_threads = int(self.threads)
            so.inter_op_num_threads = 1
        so.log_severity_level = 3
        try:
            return ort.InferenceSession(data, sess_options=so, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise UnsupportedError(f"onnxruntime cannot load the exported model: {e}") from e

    def run(self, x: np.ndarray) -> Dict[int, np.ndarray]:
        x = self._check_input(x)
        sess, info = self._session(x.shape[0])
        names = list(info.outputs.values())
        res = sess.run(names, {"input": x})
        return {i: r for i, r in zip(info.outputs, res)}


def _cv2():
    try:
        import cv2
    except ImportError as e:  # pragma: no cover
        raise UnsupportedError(f"OpenCV (opencv-python) is not installed: {e}") from None
    return cv2


class OpenCVBackend(_OnnxBackend):
    """OpenCV DNN running the exported ONNX model (DNN_BACKEND_OPENCV, DNN_TARGET_CPU)."""
    name = "opencv"
    #: OpenCV 5 import engine (cv2.dnn.ENGINE_*) or None for the default
    engine: Optional[str] = None

    @property
    def default_target(self) -> str:
        # 1x1 convolutions as MatMul pay on OpenCV 4.x and OpenCV 5's classic engine, but not on OpenCV 5's new
        # engine, whose 1x1 Conv is fast (darkcsp.onnx.conv has the figures)
        if self.engine == "ENGINE_CLASSIC" or int(_cv2().__version__.split(".")[0]) < 5:
            return "opencv"
        return "generic"

    def _open(self, data: bytes, info):
        cv2 = _cv2()
        if self.threads:
            cv2.setNumThreads(int(self.threads))
        engine = getattr(cv2.dnn, self.engine, None) if self.engine else None
        try:
            if engine is not None:
                raise cv2.error("the engine argument is honoured only when reading from a file")
            net = cv2.dnn.readNetFromONNX(np.frombuffer(data, np.uint8))
        except cv2.error:
            # Some builds only read from a file; OpenCV 5 ignores the engine for an in-memory model.
            fd, path = tempfile.mkstemp(suffix=".onnx")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                net = cv2.dnn.readNetFromONNX(path, engine) if engine is not None else cv2.dnn.readNetFromONNX(path)
            except cv2.error as e:
                raise UnsupportedError(f"OpenCV {cv2.__version__} cannot import the exported model: "
                                       f"{_cv_message(e)}") from None
            finally:
                os.unlink(path)
        return _on_cpu(cv2, net)

    def run(self, x: np.ndarray) -> Dict[int, np.ndarray]:
        cv2 = _cv2()
        x = self._check_input(x)
        net, info = self._session(x.shape[0])
        names = list(info.outputs.values())
        net.setInput(x, "input")
        try:
            res = net.forward(names)
        except cv2.error as e:
            raise UnsupportedError(f"OpenCV {cv2.__version__} failed to run the exported model: "
                                   f"{_cv_message(e)}") from None
        out = {}
        for (i, name), r in zip(info.outputs.items(), res):
            out[i] = _fit_shape(np.asarray(r), info.output_shapes.get(name), x.shape[0])
        return out


class OpenCVClassicBackend(OpenCVBackend):
    """OpenCV 5's classic DNN engine on the exported ONNX (on OpenCV 4 the same as ``opencv``). Measured
    (docs/bench.md): ~13% faster than the new default engine on leaky-ReLU YOLOs such as yolov4-tiny, slower on
    mish/swish and deep nets."""
    name = "opencv-classic"
    engine = "ENGINE_CLASSIC"


def _fit_shape(arr: np.ndarray, shape, batch: int) -> np.ndarray:
    """OpenCV sometimes drops/merges axes of 1; restore the ONNX output shape when the sizes agree."""
    if shape is None:
        return arr
    dims = [batch if (d is None or isinstance(d, str)) else int(d) for d in shape]
    if tuple(arr.shape) != tuple(dims) and arr.size == int(np.prod(dims)):
        return arr.reshape(dims)
    return arr


def _on_cpu(cv2, net):
    """``net`` set to OpenCV's own CPU implementation."""
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    if int(cv2.__version__.split(".")[0]) < 5:
        # OpenCV 5's new graph engine runs on the CPU only and warns about any target
        net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    return net


def _cv_message(e) -> str:
    text = str(e).strip().splitlines()
    return text[-1] if text else repr(e)


class OpenCVDarknetBackend(Backend):
    """OpenCV's own Darknet importer (cv2.dnn.readNetFromDarknet); it was removed in OpenCV 5.

    Only the network's output layers are available (OpenCV names its layers its own way). OpenCV replaces
    [yolo] and [region] by a layer whose output is already decoded into (cells*anchors, 4+1+classes) rows;
    to return Darknet's arrays, the head's input is read from OpenCV (its ``permute_<i>`` layer, the NHWC
    view of the head's input) and the head's own activations (element-wise) are applied by the NumPy layer."""
    name = "opencv-darknet"

    def __init__(self, model: Model, outputs: Optional[Iterable[int]] = None, all_layers: bool = False,
                 threads: Optional[int] = None, **options):
        super().__init__(model, outputs, all_layers, threads, **options)
        cv2 = _cv2()
        if not hasattr(cv2.dnn, "readNetFromDarknet"):
            raise UnsupportedError(f"backend 'opencv-darknet' needs cv2.dnn.readNetFromDarknet, which OpenCV "
                                   f"{cv2.__version__} no longer has (removed in OpenCV 5); use 'opencv' (our ONNX "
                                   f"export on OpenCV DNN) or install opencv-python 4.x")
        if all_layers or sorted(self.outputs) != sorted(model.graph.output_indices()):
            raise UnsupportedError("backend 'opencv-darknet' only gives the network's output layers "
                                   "(OpenCV's Darknet importer names its layers its own way)")
        if threads:
            cv2.setNumThreads(int(threads))
        self.net = self._load(cv2)
        names = set(self.net.getLayerNames())
        unconnected = list(self.net.getUnconnectedOutLayersNames())
        #: layer index -> (OpenCV layer name, head applied in NumPy?)
        self.fetch: Dict[int, Tuple[str, bool]] = {}
        others = iter(unconnected)
        for i in sorted(self.outputs):
            layer = model.graph.layers[i]
            if layer.is_head:
                if f"permute_{i}" not in names or layer.inputs != [i - 1]:
                    raise UnsupportedError(f"OpenCV's Darknet importer has no usable input for layer {i} "
                                           f"[{layer.type}]")
                self.fetch[i] = (f"permute_{i}", True)
            else:
                try:
                    self.fetch[i] = (next(n for n in others if not n.startswith(("yolo_", "region_"))), False)
                except StopIteration:
                    raise UnsupportedError(f"OpenCV's Darknet importer gives no output for layer {i}") from None

    def _load(self, cv2):
        from .weights import WeightsFile, weights_bytes
        graph = self.model.graph
        if not os.path.isfile(str(graph.file)):
            raise UnsupportedError(f"backend 'opencv-darknet' needs the cfg file on disk, not {graph.file}")
        data = weights_bytes(WeightsFile(self.model.header, self.model.weights), graph)
        fd, wpath = tempfile.mkstemp(suffix=".weights")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            net = cv2.dnn.readNetFromDarknet(str(graph.file), wpath)
        except cv2.error as e:
            raise UnsupportedError(f"OpenCV {cv2.__version__} cannot import {graph.file}: {_cv_message(e)}") from None
        finally:
            os.unlink(wpath)
        return _on_cpu(cv2, net)

    def run(self, x: np.ndarray) -> Dict[int, np.ndarray]:
        x = self._check_input(x)
        cv2 = _cv2()
        order = list(self.fetch)
        try:
            self.net.setInput(x)
            res = self.net.forward([self.fetch[i][0] for i in order])
        except cv2.error as e:
            raise UnsupportedError(f"OpenCV {cv2.__version__}'s Darknet importer failed to run "
                                   f"{self.model.graph.file}: {_cv_message(e)}") from None
        out = {}
        for i, r in zip(order, res):
            r = np.asarray(r, np.float32)
            layer = self.model.graph.layers[i]
            if self.fetch[i][1]:
                src = self.model.graph.layers[i - 1]
                nchw = np.ascontiguousarray(r.reshape((x.shape[0], src.out_shape[1], src.out_shape[2],
                                                       src.out_shape[0])).transpose(0, 3, 1, 2))
                r = layer.forward([nchw], self.model.weights[i])
            elif r.size == x.shape[0] * layer.outputs:
                r = r.reshape((x.shape[0],) + tuple(layer.out_shape))
            out[i] = r
        return out


# ----- OpenVINO ------------------------------------------------------------------------------------

class OpenVINOBackend(_OnnxBackend):
    """OpenVINO's CPU plugin on the exported ONNX model at float32 (INFERENCE_PRECISION_HINT=f32, which must be
    explicit: OpenVINO defaults to bf16 on CPUs that have it), latency-oriented.

    Target: the generic graph (yolov4-tiny 416, 2 threads, median ms, generic / onnxruntime (Winograd) / opencv
    (1x1 as MatMul) graphs: f32 74.8 / 68.6 / 89.4, bf16 32.9 / 40.0 / 33.6 on a loaded machine). The Winograd
    graph helps f32 a little and costs bf16 a lot; OpenVINO runs its own Winograd where it pays, so one graph."""
    name = "openvino"
    thread_safe = True  # run() serialises its one infer request
    default_target = "generic"
    #: OpenVINO inference precision (darkcsp.openvino.PRECISIONS)
    precision = "f32"

    def __init__(self, model: Model, outputs: Optional[Iterable[int]] = None, all_layers: bool = False,
                 threads: Optional[int] = None, **options):
        super().__init__(model, outputs, all_layers, threads, **options)
        from . import openvino as dov
        dov.check_precision(self.precision)  # OpenVINO installed, and bf16 only where the CPU has it
        self._lock = threading.Lock()

    def _open(self, data: bytes, info):
        from . import openvino as dov
        return dov.Runner(dov.compile_model(dov.read_onnx(data), self.precision, self.threads))

    def run(self, x: np.ndarray) -> Dict[int, np.ndarray]:
        x = self._check_input(x)
        runner, info = self._session(x.shape[0])
        with self._lock:  # one infer request per compiled model
            res = runner(x)
        return {i: res[name] for i, name in info.outputs.items()}


class OpenVINOBF16Backend(OpenVINOBackend):
    """OpenVINO at bfloat16 (INFERENCE_PRECISION_HINT=bf16): 8-bit mantissas in the convolutions, accumulation
    in float32. Needs AVX512_BF16 or AMX-BF16; on other CPUs creating it raises UnsupportedError (OpenVINO
    would silently run float32). Compare its detections with Darknet's before relying on it (docs/bench.md)."""
    name = "openvino-bf16"
    precision = "bf16"


# ----- INT8 ----------------------------------------------------------------------------------------

class _Int8Mixin:
    """INT8 backends: darkcsp's QDQ model (darkcsp.onnx.quantize.quantize_export) calibrated on ``calib``
    (photos, image arrays or input tensors, preprocessed like the detector), quantised once per (model, export
    options, calibration inputs, method) and cached like the float exports."""
    name: str

    def _init_int8(self, model: Model, calib, calib_method: str, all_layers: bool) -> None:
        from .onnx.quantize import CALIBRATION_METHODS, calibration_inputs
        if calib is None or (not isinstance(calib, np.ndarray) and not isinstance(calib, (str, os.PathLike))
                             and len(calib) == 0):
            raise DarkcspError(f"backend '{self.name}' needs calibration images: calib=[IMAGE, ...] in Python, "
                               f"--calib IMAGE [IMAGE ...] on the command line (photos like the ones the model will "
                               f"see; a few dozen is plenty)")
        if calib_method not in CALIBRATION_METHODS:
            raise UnsupportedError(f"calibration method '{calib_method}': choose {', '.join(CALIBRATION_METHODS)}")
        if all_layers:
            raise UnsupportedError(f"backend '{self.name}' gives the network's outputs only (all_layers would "
                                   f"quantise a different graph)")
        self.calib_method = calib_method
        self.calib_inputs = calibration_inputs(calib, model)
        digest = hashlib.sha1()
        for x in self.calib_inputs:
            digest.update(np.ascontiguousarray(x).tobytes())
        self._calib_key = (digest.hexdigest(), len(self.calib_inputs), calib_method)
        #: quantisation summary of the last export (float layers, quantised tensors, ...)
        self.int8_summary: Optional[dict] = None

    def _exported(self, batch: int) -> Tuple[bytes, object]:
        from .onnx.quantize import quantize_export
        options = self.export_options(batch)  # type: ignore[attr-defined]
        per_model = _EXPORT_CACHE.setdefault(self.model, {})  # type: ignore[attr-defined]
        key = ("int8", options, self._calib_key)
        if key not in per_model:
            data, info, summary = quantize_export(self.model, self.calib_inputs, options,  # type: ignore
                                                  method=self.calib_method)
            per_model[key] = (data, info)
            per_model[("int8-summary",) + key[1:]] = summary
        self.int8_summary = per_model[("int8-summary",) + key[1:]]
        return per_model[key]


class OnnxRuntimeInt8Backend(_Int8Mixin, OnnxRuntimeBackend):
    """onnxruntime on darkcsp's INT8 QDQ model (U8S8, VNNI where the CPU has it); needs ``calib=``."""
    name = "onnxruntime-int8"
    default_target = "generic"  # Winograd subgraphs do not quantise well

    def __init__(self, model: Model, outputs: Optional[Iterable[int]] = None, all_layers: bool = False,
                 threads: Optional[int] = None, calib=None, calib_method: str = "percentile", **options):
        super().__init__(model, outputs, all_layers, threads, **options)
        self._init_int8(model, calib, calib_method, all_layers)


class OpenVINOInt8Backend(_Int8Mixin, OpenVINOBackend):
    """OpenVINO on darkcsp's INT8 QDQ model (its low-precision transformations run the quantised convolutions
    in INT8, VNNI/AMX where the CPU has them; the float parts, among them the detection heads, at f32); needs
    ``calib=``."""
    name = "openvino-int8"
    precision = "f32"

    def __init__(self, model: Model, outputs: Optional[Iterable[int]] = None, all_layers: bool = False,
                 threads: Optional[int] = None, calib=None, calib_method: str = "percentile", **options):
        super().__init__(model, outputs, all_layers, threads, **options)
        self._init_int8(model, calib, calib_method, all_layers)


# ----- an ONNX file made elsewhere ----------------------------------------------------------------

class OnnxFileBackend(Backend):
    """An ONNX file made elsewhere (another converter, ``darkcsp convert``) on one of the registered ONNX
    backends (``runtime``: onnxruntime, opencv, openvino, ...), instead of darkcsp's own export. Not in
    ``BACKENDS`` (it needs the file): ``OnnxFileBackend(model, onnx_file="peer.onnx", runtime="opencv")``.

    The file's first input is fed the network input (renamed ``input``); an output whose name holds a Darknet
    layer index (``layer_30``, ``yolo_30``, ``l30_...``) is returned under that index, any other output under
    ``len(layers)``, ``len(layers) + 1``, ... in file order (time it, but nothing decodes it)."""
    name = "onnx-file"
    static_batch = True

    def __init__(self, model: Model, outputs: Optional[Iterable[int]] = None, all_layers: bool = False,
                 threads: Optional[int] = None, onnx_file: Optional[str] = None, runtime: str = "onnxruntime",
                 **options):
        if outputs is not None or all_layers:
            raise UnsupportedError("backend 'onnx-file' gives the file's outputs only")
        super().__init__(model, None, False, threads)
        if not onnx_file:
            raise DarkcspError("backend 'onnx-file' needs onnx_file=PATH")
        if runtime not in file_runtimes():
            raise UnsupportedError(f"'{runtime}' cannot run an ONNX file: choose from {', '.join(file_runtimes())}")
        cls = BACKENDS[runtime]
        self.onnx_file, self.runtime = str(onnx_file), runtime
        data, info = _read_onnx_file(self.onnx_file, len(model.graph.layers))
        self.outputs = list(info.outputs)
        self.inner = cls(model, outputs=self.outputs, threads=threads, **options)
        # the runtime's export hook returns the file (whatever the batch: the file's own batch must fit)
        self.inner._exported = lambda batch: (data, info)  # type: ignore[method-assign]

    def warmup(self, batch: int = 1) -> None:
        self.inner.warmup(batch)

    def run(self, x: np.ndarray) -> Dict[int, np.ndarray]:
        return self.inner.run(x)


def file_runtimes() -> List[str]:
    """Registered backends that can run an ONNX file made elsewhere (``OnnxFileBackend``'s ``runtime``)."""
    return [n for n, c in BACKENDS.items() if issubclass(c, _OnnxBackend) and n not in CALIBRATED_BACKENDS]


def _read_onnx_file(path: str, n_layers: int) -> Tuple[bytes, object]:
    """(serialized model with its first input named ``input``, ExportInfo mapping outputs to layer indices)."""
    import re
    import onnx
    from .onnx.export import INPUT_NAME, ExportInfo
    try:
        proto = onnx.load(path)
    except Exception as e:
        raise DarkcspError(f"not a readable ONNX model ({e})", file=path) from None
    init_names = {t.name for t in proto.graph.initializer}
    real_inputs = [i for i in proto.graph.input if i.name not in init_names]
    if not real_inputs:
        raise UnsupportedError("the ONNX model has no input", file=path)
    old = real_inputs[0].name
    if old != INPUT_NAME:
        for node in proto.graph.node:
            for k, name in enumerate(node.input):
                if name == old:
                    node.input[k] = INPUT_NAME
        real_inputs[0].name = INPUT_NAME
    info = ExportInfo()
    extra = n_layers
    for o in proto.graph.output:
        m = re.search(r"(\d+)", o.name)
        if m and int(m.group(1)) < n_layers and int(m.group(1)) not in info.outputs:
            key = int(m.group(1))
        else:
            key, extra = extra, extra + 1
        info.outputs[key] = o.name
        info.output_shapes[o.name] = tuple(d.dim_value if d.HasField("dim_value") else None
                                           for d in o.type.tensor_type.shape.dim) or None
    return proto.SerializeToString(), info


#: backend name -> class
BACKENDS = {"numpy": NumpyBackend, "onnxruntime": OnnxRuntimeBackend, "opencv": OpenCVBackend,
            "opencv-classic": OpenCVClassicBackend, "opencv-darknet": OpenCVDarknetBackend,
            "openvino": OpenVINOBackend, "openvino-bf16": OpenVINOBF16Backend,
            "onnxruntime-int8": OnnxRuntimeInt8Backend, "openvino-int8": OpenVINOInt8Backend}

#: backends that need calibration images (``calib=`` / ``--calib``)
CALIBRATED_BACKENDS = ("onnxruntime-int8", "openvino-int8")


def create_backend(name: str, model: Model, **options) -> Backend:
    """Build backend ``name`` for ``model``; options: outputs, all_layers, threads (onnxruntime/opencv/openvino),
    opset, fp16, target (ONNX backends: the darkcsp.onnx.conv target, default the backend's own), calib and
    calib_method (INT8 backends: calibration images, darkcsp.onnx.quantize.calibration_inputs)."""
    try:
        cls = BACKENDS[name]
    except KeyError:
        raise UnsupportedError(f"unknown backend '{name}': choose from {', '.join(BACKENDS)}") from None
    return cls(model, **options)


def available_backends() -> List[str]:
    """Backends that can run here (opencv-darknet only with an OpenCV that still has the Darknet importer,
    openvino* only with OpenVINO installed, openvino-bf16 only on a CPU with bf16 instructions)."""
    names = ["numpy", "onnxruntime", "onnxruntime-int8"]
    try:
        import cv2
        names.append("opencv")
        if hasattr(cv2.dnn, "ENGINE_CLASSIC"):
            names.append("opencv-classic")
        if hasattr(cv2.dnn, "readNetFromDarknet"):
            names.append("opencv-darknet")
    except ImportError:  # pragma: no cover
        pass
    from . import openvino as dov
    try:
        caps = dov.cpu_capabilities()
    except DarkcspError:
        return names
    names += ["openvino", "openvino-int8"] + (["openvino-bf16"] if "BF16" in caps else [])
    return names
