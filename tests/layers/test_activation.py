"""[activation]: a standalone activation; Darknet's zeros for swish/mish, relu6 computed, goldens, ONNX."""
from __future__ import annotations

import numpy as np
import pytest

import darkcsp

from tests.conftest import write_cfg
from tests.layers.harness import golden_layers, run_onnxruntime

CFG = """
    [net]
    width=4
    height=2
    channels=3

    [activation]
    {opt}
    """

X = np.linspace(-8, 8, 24, dtype=np.float32).reshape(1, 3, 2, 4)


@pytest.mark.parametrize("opt,expected", [
    ("", X),  # default linear
    ("activation=tanh", np.tanh(X.astype(np.float64))),
    ("activation=leaky", np.where(X > 0, X, 0.1 * X)),
    ("activation=relu6", np.clip(X, 0, 6)),  # DECISIONS.md #1: computed (GPU build)
    ("activation=mish", np.zeros_like(X)),  # DECISIONS.md #2: zeros, as Darknet
    ("activation=swish", np.zeros_like(X)),
    ("activation=hard_mish", np.zeros_like(X)),
])
def test_by_hand(tmp_path, opt, expected):
    model = darkcsp.load(write_cfg(tmp_path, CFG.format(opt=opt)))
    layer = model.graph.layers[0]
    assert layer.out_shape == (3, 2, 4) and layer.params == 0
    np.testing.assert_allclose(layer.forward([X], {}), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(run_onnxruntime(layer, [X], {}), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", ["zoo-classifier-connected", "zoo-activation-cpu-quirks"])
def test_darknet_goldens(case):
    assert golden_layers(case, "activation") >= 1
