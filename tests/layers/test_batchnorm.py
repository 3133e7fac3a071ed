"""[batchnorm]: the formula by hand for both dialects, file layouts, ONNX, Darknet golden."""
from __future__ import annotations

import numpy as np

import darkcsp
from darkcsp.graph import load_graph

from tests.conftest import random_input, write_cfg
from tests.layers.harness import golden_layers, run_onnxruntime, run_opencv

CFG = """
    [net]
    width=3
    height=2
    channels=2

    [batchnorm]
    """


def _set(w):
    w["scales"] = np.array([2.0, 0.5], np.float32)
    w["rolling_mean"] = np.array([0.25, -1.0], np.float32)
    w["rolling_variance"] = np.array([4.0, 0.0001], np.float32)
    if "biases" in w:
        w["biases"] = np.array([0.5, -0.5], np.float32)
    return w


def test_alexeyab(tmp_path):
    model = darkcsp.load(write_cfg(tmp_path, CFG))
    layer = model.graph.layers[0]
    assert [n for n, _ in layer.weight_arrays()] == ["biases", "scales", "rolling_mean", "rolling_variance"]
    assert layer.out_shape == (2, 2, 3)
    w = _set(model.weights[0])
    x = random_input((1, 2, 2, 3), seed=2)
    ref = np.empty_like(x, dtype=np.float64)
    ref[0, 0] = (x[0, 0] - 0.25) / np.sqrt(4.0 + 1e-5) * 2.0 + 0.5
    ref[0, 1] = (x[0, 1] + 1.0) / np.sqrt(0.0001 + 1e-5) * 0.5 - 0.5
    np.testing.assert_allclose(layer.forward([x], w), ref, rtol=1e-5)
    np.testing.assert_allclose(run_onnxruntime(layer, [x], w), ref, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(run_opencv(layer, [x], w)).reshape(ref.shape), ref, rtol=1e-4)


def test_pjreddie(tmp_path):
    model = darkcsp.load(write_cfg(tmp_path, CFG), dialect="pjreddie")
    layer = model.graph.layers[0]
    assert [n for n, _ in layer.weight_arrays()] == ["scales", "rolling_mean", "rolling_variance"]
    assert layer.params == 6
    w = _set(model.weights[0])
    x = random_input((1, 2, 2, 3), seed=2)
    ref = np.empty_like(x, dtype=np.float64)
    ref[0, 0] = (x[0, 0] - 0.25) / (np.sqrt(4.0) + 1e-6) * 2.0
    ref[0, 1] = (x[0, 1] + 1.0) / (np.sqrt(0.0001) + 1e-6) * 0.5
    np.testing.assert_allclose(layer.forward([x], w), ref, rtol=1e-5)
    np.testing.assert_allclose(run_onnxruntime(layer, [x], w), ref, rtol=1e-5)


def test_on_flat_input(tmp_path):
    g = load_graph(write_cfg(tmp_path, "[net]\ninputs=5\n\n[connected]\noutput=4\n\n[batchnorm]\n"))
    assert g.layers[1].out_shape == (4, 1, 1) and g.layers[1].params == 16


def test_darknet_golden():
    assert golden_layers("zoo-classifier-connected", "batchnorm") == 1
