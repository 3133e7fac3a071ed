"""[softmax]: grouped, with temperature, over the flattened input; output (inputs, 1, 1); goldens; ONNX."""
from __future__ import annotations

import math

import numpy as np
import pytest

from darkcsp.errors import CfgError, UnsupportedError

from layer_harness import check_golden_layer, check_lowering, graph_of, inputs_for, last_layer


def cfg(body, c=2, h=2, w=3):
    return f"[net]\nwidth={w}\nheight={h}\nchannels={c}\n[softmax]\n{body}\n"


def test_groups_and_temperature_by_hand():
    layer = last_layer(cfg("groups=2\ntemperature=2"))
    assert layer.out_shape == (12, 1, 1)
    x = np.arange(12, dtype=np.float32).reshape(1, 2, 2, 3)
    y = layer.forward([x], {}).ravel()
    for g in range(2):
        vals = [math.exp(v / 2) for v in range(6 * g, 6 * g + 6)]
        np.testing.assert_allclose(y[6 * g:6 * g + 6], np.array(vals) / sum(vals), rtol=1e-6)


def test_flat_consumers_work():
    g = graph_of(cfg("") + "[cost]\n")
    assert g.layers[0].outputs == 12 and g.layers[1].out_shape == (12, 1, 1)
    assert g.output_indices() == [0]


@pytest.mark.parametrize("body,exc,msg", [("groups=5", CfgError, "divide"), ("tree=data/9k.tree", UnsupportedError, "tree"),
                                          ("spatial=1", UnsupportedError, "spatial")])
def test_refused(body, exc, msg):
    with pytest.raises(exc, match=msg):
        last_layer(cfg(body))


@pytest.mark.parametrize("body", ["", "groups=3", "temperature=0.5"])
def test_onnx_lowering(body):
    g = graph_of(cfg(body))
    layer = g.layers[-1]
    check_lowering(layer, inputs_for(g, layer, batch=2))


@pytest.mark.parametrize("case,index", [("zoo-pooling", 18), ("zoo-classifier-connected", 10)])
def test_golden(case, index):
    check_golden_layer(case, index)
