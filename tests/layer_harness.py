"""Shared helpers for the per-layer tests: build a layer from a tiny cfg, run its ONNX lowering alone in
onnxruntime / OpenCV DNN, and check a layer against Darknet's own per-layer goldens (all_layers.npz)."""
from __future__ import annotations

import json
import logging
import os
import textwrap
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import pytest

from darkcsp.cfg import parse_cfg_text
from darkcsp.graph import Graph, build_graph
from darkcsp.layers.base import Layer

from conftest import conformance_root


def graph_of(text: str, dialect: str = "alexeyab") -> Graph:
    """Build a graph from dedented cfg text."""
    return build_graph(parse_cfg_text(textwrap.dedent(text).lstrip(), "test.cfg"), dialect=dialect)


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
    import onnx
    from onnx import TensorProto, helper

    from darkcsp.onnx.builder import OnnxGraph

    g = OnnxGraph(opset=opset)
    names = [f"in{i}" for i in range(len(xs))]
    for n in names:
        g.reserve(n)
    y = layer.to_onnx(g, names, w or {})
    # an Identity gives the output its own name (also when the lowering returns an input unchanged)
    nodes = list(g.nodes) + [helper.make_node("Identity", [y], ["out"])]
    graph = helper.make_graph(
        nodes, "layer",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(x.shape)) for n, x in zip(names, xs)],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [len(xs[0])] + list(layer.out_shape))],
        initializer=g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
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
_MODELS: Dict[str, object] = {}


def case_dir(case: str) -> Path:
    """The conformance case folder; skip when the corpus is missing (fail if DARKCSP_REQUIRE_CONFORMANCE)."""
    d = conformance_root() / "cases" / case
    if not (d / "model.cfg").exists():
        message = f"conformance case {case} not found under {conformance_root()} (set DARKCSP_CONFORMANCE)"
        if os.environ.get("DARKCSP_REQUIRE_CONFORMANCE"):
            pytest.fail(message)
        pytest.skip(message)
    return d


def case_model(case: str, dialect: str = "alexeyab"):
    """darkcsp.load of a conformance case (cached)."""
    import darkcsp
    d = case_dir(case)
    if case not in _MODELS:
        logger = logging.getLogger("darkcsp")
        level = logger.level
        logger.setLevel(logging.ERROR)  # the zoo cfgs warn on purpose (Darknet quirks); keep the output quiet
        try:
            _MODELS[case] = darkcsp.load(d / "model.cfg", d / "model.weights.xz", dialect=dialect)
        finally:
            logger.setLevel(level)
    return _MODELS[case]


def check_golden_layer(case: str, index: int) -> float:
    """Run layer ``index`` of ``case`` on Darknet's own inputs; assert it matches Darknet's output within the
    case tolerance; return the max abs deviation."""
    model = case_model(case)
    d = case_dir(case)
    tol = json.loads((d / "meta.json").read_text())["tolerance"]["recommended"]
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
