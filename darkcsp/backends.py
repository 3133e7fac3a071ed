"""Backends behind one interface: each runs a Model on (N,C,H,W) float32 and returns {layer index: output}.

* ``numpy``: the reference executor (``Model.forward``).
* ``onnxruntime``: the exported ONNX model on onnxruntime's CPUExecutionProvider (all graph optimisations).
* ``opencv``: the exported ONNX model on OpenCV DNN (``readNetFromONNX``, DNN_BACKEND_OPENCV, DNN_TARGET_CPU).
* ``opencv-darknet``: OpenCV's own Darknet importer (``readNetFromDarknet``); OpenCV 5 removed it.

The ONNX backends return the same keys and shapes as ``numpy``. Exported models are cached per
(model, export options), so creating several backends for one model converts it once.
"""
from __future__ import annotations

import logging
import os
import tempfile
import weakref
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np

from .errors import DarkcspError, UnsupportedError
from .model import Model

log = logging.getLogger("darkcsp")


class Backend:
    name = ""

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

    def _check_input(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 3:
            x = x[None]
        want = tuple(self.model.graph.input_shape)
        if x.ndim != 4 or tuple(x.shape[1:]) != want:
            raise DarkcspError(f"input has shape {tuple(x.shape)}, the network expects (N, {want[0]}, {want[1]}, "
                               f"{want[2]})")
        return np.ascontiguousarray(x)


class NumpyBackend(Backend):
    """The reference executor (darkcsp.model.Model.forward)."""
    name = "numpy"

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
            data, info = exported(self.model, self.export_options(batch))
            self._sessions[batch] = (self._open(data, info), info)
        return self._sessions[batch]

    def _open(self, data: bytes, info):  # pragma: no cover - abstract
        raise NotImplementedError

    def warmup(self, batch: int = 1) -> None:
        """Export and load the model now (so that timing a later ``run`` excludes it)."""
        self._session(batch)


class OnnxRuntimeBackend(_OnnxBackend):
    """onnxruntime, CPUExecutionProvider, graph optimisation level ORT_ENABLE_ALL, on the export tuned for it
    (large 3x3 convolutions as Winograd, darkcsp.onnx.conv)."""
    name = "onnxruntime"
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
        net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        if int(cv2.__version__.split(".")[0]) < 5:
            # OpenCV 5's new graph engine runs on the CPU only and warns about any target
            net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        return net

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
        net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        if int(cv2.__version__.split(".")[0]) < 5:
            # OpenCV 5's new graph engine runs on the CPU only and warns about any target
            net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        return net

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


#: backend name -> class
BACKENDS = {"numpy": NumpyBackend, "onnxruntime": OnnxRuntimeBackend, "opencv": OpenCVBackend,
            "opencv-classic": OpenCVClassicBackend, "opencv-darknet": OpenCVDarknetBackend}


def create_backend(name: str, model: Model, **options) -> Backend:
    """Build backend ``name`` for ``model``; options: outputs, all_layers, threads (onnxruntime/opencv),
    opset, fp16, target (ONNX backends: the darkcsp.onnx.conv target, default the backend's own)."""
    try:
        cls = BACKENDS[name]
    except KeyError:
        raise UnsupportedError(f"unknown backend '{name}': choose from {', '.join(BACKENDS)}") from None
    return cls(model, **options)


def available_backends() -> List[str]:
    """Backends that can run here (opencv-darknet only with an OpenCV that still has the Darknet importer)."""
    names = ["numpy", "onnxruntime"]
    try:
        import cv2
        names.append("opencv")
        if hasattr(cv2.dnn, "ENGINE_CLASSIC"):
            names.append("opencv-classic")
        if hasattr(cv2.dnn, "readNetFromDarknet"):
            names.append("opencv-darknet")
    except ImportError:  # pragma: no cover
        pass
    return names
