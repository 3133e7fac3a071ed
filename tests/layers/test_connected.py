"""[connected]: hand-computed forward, BN formula, the transposed (old) weights layout, ONNX, Darknet goldens."""
from __future__ import annotations

import numpy as np
import pytest

import darkcsp
from darkcsp.graph import load_graph
from darkcsp.weights import parse_weights, weights_bytes

from tests.conftest import random_input, write_cfg
from tests.layers.harness import golden_layers, run_onnxruntime, run_opencv

CFG = """
    [net]
    width=2
    height=2
    channels=2

    [connected]
    output=3
    activation={act}
    batch_normalize={bn}
    """


def test_shape_params(tmp_path):
    g = load_graph(write_cfg(tmp_path, CFG.format(act="linear", bn=1)))
    layer = g.layers[0]
    assert layer.in_shape == (8, 1, 1) and layer.out_shape == (3, 1, 1)
    assert layer.params == 3 + 3 * 8 + 3 * 3
    assert [n for n, _ in layer.weight_arrays()] == ["biases", "weights", "scales", "rolling_mean", "rolling_variance"]
    assert layer.bflops == 0


def test_default_activation_is_logistic(tmp_path):
    layer = load_graph(write_cfg(tmp_path, "[net]\ninputs=4\n\n[connected]\noutput=2\n")).layers[0]
    assert layer.activation == "logistic"


@pytest.mark.parametrize("bn", [0, 1])
def test_forward_by_hand(tmp_path, bn):
    model = darkcsp.load(write_cfg(tmp_path, CFG.format(act="leaky", bn=bn)))
    layer = model.graph.layers[0]
    rng = np.random.default_rng(0)
    w = model.weights[0]
    w["weights"] = rng.uniform(-1, 1, (3, 8)).astype(np.float32)
    w["biases"] = np.array([0.1, -0.2, 0.3], np.float32)
    if bn:
        w["scales"] = np.array([1.5, 0.5, 1.0], np.float32)
        w["rolling_mean"] = np.array([0.2, -0.1, 0.0], np.float32)
        w["rolling_variance"] = np.array([0.5, 2.0, 0.01], np.float32)
    x = random_input((2, 2, 2, 2), seed=1) - 0.5
    ref = x.reshape(2, 8).astype(np.float64) @ w["weights"].T.astype(np.float64)
    if bn:
        ref = (ref - w["rolling_mean"]) / np.sqrt(w["rolling_variance"] + 1e-5) * w["scales"]
    ref = ref + w["biases"]
    ref = np.where(ref > 0, ref, 0.1 * ref)
    y = layer.forward([x], w)
    assert y.shape == (2, 3, 1, 1)
    np.testing.assert_allclose(y.reshape(2, 3), ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(run_onnxruntime(layer, [x], w).reshape(2, 3), ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(run_opencv(layer, [x], w)).reshape(2, 3), ref, rtol=1e-4, atol=1e-6)


def test_transposed_weights_file(tmp_path):
    """Headers with major or minor > 1000 store [connected] weights as [in][out]."""
    graph = load_graph(write_cfg(tmp_path, CFG.format(act="linear", bn=0)))
    biases = np.array([1.0, 2.0, 3.0], np.float32)
    stored = np.arange(24, dtype=np.float32).reshape(8, 3)  # [in][out]
    blob = (np.asarray([0, 1001, 0], "<i4").tobytes() + np.asarray([0], "<u8").tobytes()
            + biases.tobytes() + stored.tobytes())
    wf = parse_weights(blob, graph)
    assert wf.header.transpose
    np.testing.assert_array_equal(wf.layers[0]["weights"], stored.T)
    x = np.ones((1, 2, 2, 2), np.float32)
    y = graph.layers[0].forward([x], wf.layers[0]).ravel()
    np.testing.assert_allclose(y, stored.sum(axis=0) + biases)  # y_o = sum_i W[o][i] + b_o
    assert weights_bytes(wf, graph) == blob  # written back transposed, as read


def test_swish_gives_zeros(tmp_path):
    model = darkcsp.load(write_cfg(tmp_path, CFG.format(act="swish", bn=0)))
    y = model.graph.layers[0].forward([random_input((1, 2, 2, 2))], model.weights[0])
    assert not y.any()


@pytest.mark.parametrize("case", ["zoo-classifier-connected", "zoo-activation-cpu-quirks"])
def test_darknet_goldens(case):
    assert golden_layers(case, "connected") >= 2
