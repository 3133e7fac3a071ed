"""[implicit]: a constant tensor read from the weights file; the input is ignored."""
from __future__ import annotations

import numpy as np

import darkcsp
from darkcsp.graph import load_graph
from darkcsp.weights import parse_weights

from tests.conftest import random_input, write_cfg
from tests.layers.harness import run_onnxruntime

CFG = "[net]\nwidth=4\nheight=4\nchannels=3\n\n[implicit]\nfilters=3\natoms=2\n"


def test_defaults(tmp_path):
    layer = load_graph(write_cfg(tmp_path, "[net]\nwidth=4\nheight=4\nchannels=3\n\n[implicit]\n")).layers[0]
    assert layer.out_shape == (128, 1, 1) and layer.params == 128


def test_output_is_the_weights(tmp_path):
    graph = load_graph(write_cfg(tmp_path, CFG))
    layer = graph.layers[0]
    assert layer.out_shape == (3, 2, 1) and layer.params == 6
    values = np.arange(6, dtype=np.float32) / 4
    blob = np.asarray([0, 2, 5], "<i4").tobytes() + np.asarray([0], "<u8").tobytes() + values.tobytes()
    w = parse_weights(blob, graph).layers[0]
    x = random_input((2, 3, 4, 4))
    expected = np.stack([values.reshape(3, 2, 1)] * 2)
    np.testing.assert_array_equal(layer.forward([x], w), expected)
    np.testing.assert_array_equal(run_onnxruntime(layer, [x], w), expected)


def test_random_init_range(tmp_path):
    cfg = write_cfg(tmp_path, "[net]\nwidth=4\nheight=4\nchannels=3\n\n[implicit]\nfilters=64\nmean=1\nstd=0.1\n")
    w = darkcsp.load(cfg).weights[0]["weights"]
    assert w.min() >= 0.9 and w.max() <= 1.1 and abs(w.mean() - 1) < 0.05
