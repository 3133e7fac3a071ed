"""[sam]: elementwise product then act() (swish -> zeros as in Darknet); goldens; ONNX."""
from __future__ import annotations

import numpy as np
import pytest

from darkcsp.errors import CfgError

from tests.layers.harness import check_golden_layer, check_lowering, graph_of, inputs_for

BASE = """
[net]
width=4
height=3
channels=2
[maxpool]
size=1
stride=1
[maxpool]
size=2
stride=1
[sam]
"""


def test_product_then_activation():
    g = graph_of(BASE + "from=0\nactivation=leaky\n")
    layer = g.layers[-1]
    assert layer.inputs == [1, 0] and layer.out_shape == (2, 3, 4)
    x = np.array([1, -2, 3, -4], np.float32).reshape(1, 1, 1, 4) * np.ones((1, 2, 3, 4), np.float32)
    f = np.full((1, 2, 3, 4), 2, np.float32)
    want = np.array([2, -0.4, 6, -0.8], np.float32).reshape(1, 1, 1, 4) * np.ones((1, 2, 3, 4), np.float32)
    np.testing.assert_allclose(layer.forward([x, f], {}), want, rtol=1e-6)


def test_swish_gives_zeros():
    g = graph_of(BASE + "from=0\nactivation=swish\n")
    layer = g.layers[-1]
    x, f = inputs_for(g, layer)
    np.testing.assert_array_equal(layer.forward([x, f], {}), np.zeros_like(x))


def test_shape_mismatch():
    text = BASE.replace("[maxpool]\nsize=2\nstride=1", "[maxpool]\nsize=2\nstride=2")
    with pytest.raises(CfgError, match="equal shapes"):
        graph_of(text + "from=0\n")


@pytest.mark.parametrize("act", ["linear", "logistic", "swish"])
def test_onnx_lowering(act):
    g = graph_of(BASE + f"from=0\nactivation={act}\n")
    layer = g.layers[-1]
    check_lowering(layer, inputs_for(g, layer, batch=2))


def test_golden():
    check_golden_layer("zoo-gaps-a", 6)
