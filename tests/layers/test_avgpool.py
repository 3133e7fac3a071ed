"""[avgpool]: global mean to (C, 1, 1); goldens; ONNX."""
from __future__ import annotations

import numpy as np
import pytest

from tests.layers.harness import check_golden_layer, check_lowering, graph_of, inputs_for, last_layer


def test_global_mean():
    layer = last_layer("[net]\nwidth=2\nheight=2\nchannels=2\n[avgpool]\n")
    assert layer.out_shape == (2, 1, 1) and layer.bflops == 0
    x = np.array([[[1, 2], [3, 6]], [[-1, -1], [-1, 3]]], np.float32)[None]
    np.testing.assert_array_equal(layer.forward([x], {}), np.array([3, 0], np.float32).reshape(1, 2, 1, 1))


def test_onnx_lowering():
    g = graph_of("[net]\nwidth=5\nheight=3\nchannels=4\n[avgpool]\n")
    layer = g.layers[-1]
    check_lowering(layer, inputs_for(g, layer, batch=2))


@pytest.mark.parametrize("case,index", [("zoo-pooling", 17), ("zoo-gaps-a", 11)])
def test_golden(case, index):
    check_golden_layer(case, index)
