"""Shared helpers for the per-layer tests (tests/layers/test_<module>.py): build a layer from a tiny cfg, run its
ONNX lowering alone in onnxruntime / OpenCV DNN, and check a layer against Darknet's own per-layer goldens
(all_layers.npz of a conformance case)."""
from __future__ import annotations

import textwrap
from typing import Dict, List, Optional, Sequence

import numpy as np

from darkcsp.cfg import Option, Section, parse_cfg_text, read_cfg
from darkcsp.graph import Graph, build_graph
from darkcsp.layers.base import Layer

from tests.conftest import case_dir, case_meta, conformance_model, net_cfg


def graph_of(text: str, dialect: str = "alexeyab") -> Graph:
    """Build a graph from dedented cfg text."""
    return build_graph(parse_cfg_text(textwrap.dedent(text).lstrip(), "test.cfg"), dialect=dialect)


def layer_cfg(kind: str, body: str, c: int, h: int, w: int) -> str:
    """cfg text of one ``[kind]`` layer (options ``body``) reading a (c, h, w) network input."""
    return net_cfg(w, h, c, f"[{kind}]\n{body}\n")


def last_layer(text: str, dialect: str = "alexeyab") -> Layer:
    return graph_of(text, dialect).layers[-1]


def inputs_for(graph: Graph, layer: Layer, seed: int = 0, batch: int = 1) -> List[np.ndarray]:
    """Random float32 tensors shaped like the layer's inputs (standard normal)."""
    rng = np.random.default_rng(seed)
    shapes = [graph.net.input_shape if i < 0 else graph.layers[i].out_shape for i in layer.inputs]
    return [rng.standard_normal((batch,) + tuple(s)).astype(np.float32) for s in shapes]


def onnx_model(layer: Layer, xs: Sequence[np.ndarray], w: Optional[Dict[str, np.ndarray]] = None,
               opset: int = 17):
    """A ModelProto holding only ``layer``'s lowering, with inputs in0, in1, ... and output ``out``."""
    from darkcsp.onnx.builder import OnnxGraph

    g = OnnxGraph(opset=opset)
    names = [f"in{i}" for i in range(len(xs))]
    for n in names:
        g.reserve(n)
    y = layer.to_onnx(g, names, w or {})
    return _model_of(g, y, xs, [len(xs[0])] + list(layer.out_shape), opset)


def _model_of(g, y: str, xs: Sequence[np.ndarray], out_shape: Optional[List[int]], opset: int = 17):
    """The nodes of OnnxGraph ``g`` as a ModelProto (checked when ``out_shape`` is known): inputs in0, in1, ...
    shaped like ``xs``, output ``out`` = ``y`` (an Identity gives it its own name, also when the lowering returns
    an input unchanged)."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        list(g.nodes) + [helper.make_node("Identity", [y], ["out"])], "layer",
        [helper.make_tensor_value_info(f"in{i}", TensorProto.FLOAT, list(x.shape)) for i, x in enumerate(xs)],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, out_shape)],
        initializer=g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    if out_shape is not None:  # the checker wants a shape on every output
        onnx.checker.check_model(model)
    return model


def run_onnxruntime(layer: Layer, xs: Sequence[np.ndarray], w=None) -> np.ndarray:
    import onnxruntime as ort
    model = onnx_model(layer, xs, w)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(["out"], {f"in{i}": x for i, x in enumerate(xs)})[0]


def run_opencv(layer: Layer, xs: Sequence[np.ndarray], w=None) -> np.ndarray:
    """Run the lowering in OpenCV DNN (readNetFromONNX); raises cv2.error where OpenCV refuses an op."""
    import cv2
    model = onnx_model(layer, xs, w)
    net = cv2.dnn.readNetFromONNX(np.frombuffer(model.SerializeToString(), np.uint8))
    for i, x in enumerate(xs):
        net.setInput(x, f"in{i}")
    return net.forward("out") if "out" in net.getUnconnectedOutLayersNames() else net.forward()


def check_lowering(layer: Layer, xs: Sequence[np.ndarray], w=None, *, opencv: bool = True,
                   atol: float = 1e-5, rtol: float = 1e-5) -> None:
    """NumPy forward == onnxruntime (and OpenCV DNN, when asked) on the same inputs."""
    want = layer.forward(xs, w or {})
    got = run_onnxruntime(layer, xs, w)
    assert got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
    if opencv:
        cv = run_opencv(layer, xs, w)
        np.testing.assert_allclose(np.asarray(cv).reshape(want.shape), want, rtol=rtol, atol=atol)


# ------------------------------------------------------------------------------------------ goldens
def check_golden_layer(case: str, index: int) -> float:
    """Run layer ``index`` of ``case`` on Darknet's own inputs; assert it matches Darknet's output within the
    case tolerance; return the max abs deviation."""
    model = conformance_model(case)
    d = case_dir(case)
    tol = case_meta(case)["tolerance"]["recommended"]
    npz = np.load(d / "all_layers.npz")
    layer = model.layers[index]
    xs = []
    for i in layer.inputs:
        if i < 0:
            xs.append(np.load(d / "input.npy"))
        else:
            xs.append(npz[f"layer_{i}"].reshape((1,) + tuple(model.layers[i].out_shape)))
    got = layer.forward(xs, model.weights[index])
    want = npz[f"layer_{index}"]
    got = got.reshape(want.shape)
    np.testing.assert_allclose(got, want, rtol=tol["rtol"], atol=tol["atol"])
    return float(np.abs(got - want).max())


def golden_layers(case: str, layer_type: str, skip=()) -> int:
    """Every ``layer_type`` layer of ``case``, fed Darknet's own inputs, against Darknet's output; returns how
    many were checked."""
    model = conformance_model(case)
    indices = [layer.index for layer in model.layers if layer.type == layer_type and layer.index not in skip]
    for index in indices:
        check_golden_layer(case, index)
    return len(indices)


# ------------------------------------------------------------------------------------------ detection heads
def head(section_text: str, c: int, h: int, w: int, dialect: str = "alexeyab") -> Layer:
    """A head layer reading a (c, h, w) network input directly."""
    return last_layer(net_cfg(w, h, c, section_text), dialect)


def head_from_section(section: Section, c: int, h: int, w: int, index: int = 0) -> Layer:
    """A head built from a parsed section (of a Darknet cfg) on a (c, h, w) input, numbered ``index``."""
    net = Section("net", "test", 0, {"width": Option("width", str(w), 0), "height": Option("height", str(h), 0),
                                     "channels": Option("channels", str(c), 0)})
    layer = build_graph([net, section]).layers[0]
    layer.index = index
    return layer


def sig(x) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def zoo_layers(case: str):
    """(folder, all_layers.npz, its sections after [net], recommended tolerance) of a conformance case."""
    d = case_dir(case)
    return d, np.load(d / "all_layers.npz"), read_cfg(d / "model.cfg")[1:], case_meta(case)["tolerance"]["recommended"]


def _run_head_graph(lower, x: np.ndarray) -> np.ndarray:
    """Run the ONNX nodes ``lower(g)`` adds to an OnnxGraph reading input ``in0`` (output shape left open: a
    head's lowering and its decoding give their own layouts)."""
    import onnxruntime as ort

    from darkcsp.onnx.builder import OnnxGraph
    g = OnnxGraph()
    model = _model_of(g, lower(g), [x], None)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(["out"], {"in0": x})[0]


def check_head_lowering(layer: Layer, shape: Sequence[int]) -> None:
    """A head's ONNX lowering == its NumPy forward (same layout) on a random input of ``shape``."""
    x = np.random.default_rng(4).standard_normal(shape).astype(np.float32) * 3
    want = layer.forward([x], {})
    got = _run_head_graph(lambda g: layer.to_onnx(g, ["in0"], {}), x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def check_onnx_decode(layer: Layer) -> None:
    """The rows of ``onnx_decode`` == ``detections()`` with thresh 0 and no image correction (image = network
    size 96x64), on the head's forward of a random input."""
    x = np.random.default_rng(8).standard_normal((1,) + tuple(layer.in_shape)).astype(np.float32)
    y = layer.forward([x], {})
    got = _run_head_graph(lambda g: layer.onnx_decode(g, "in0", 96, 64), y)
    bs = layer.detections(y[0], 96, 64, 96, 64, -np.inf)
    assert got.shape == (1, len(bs), 4 + 1 + layer.classes)
    np.testing.assert_allclose(got[0, :, :4], bs.boxes, rtol=1e-5, atol=1e-6)
    if layer.type != "region":  # region detections carry objectness 1 (Darknet); decode gives p
        np.testing.assert_allclose(got[0, :, 4], bs.objectness, rtol=1e-6)
    np.testing.assert_allclose(got[0, :, 5:], bs.probs, rtol=1e-5, atol=1e-7)
