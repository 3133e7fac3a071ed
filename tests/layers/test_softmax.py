"""[softmax]: grouped, with temperature, over the flattened input; output (inputs, 1, 1); goldens; ONNX."""
from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from darkcsp.errors import CfgError, UnsupportedError

from tests.layers.harness import check_golden_layer, check_lowering, graph_of, inputs_for, last_layer, layer_cfg

#: cfg text of one [softmax] layer with the given options, on a (2, 2, 3) input unless c/h/w say otherwise
cfg = functools.partial(layer_cfg, "softmax", c=2, h=2, w=3)


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


@pytest.mark.parametrize("body,exc,msg", [("groups=5", CfgError, "divide"), ("tree=no/such.tree", CfgError, "not found"),
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


TREE = "a -1\nb -1\nc 0\nd 0\ne 0\nf 1\n"  # runs of equal parent: groups of 2, 3, 1 nodes


def tree_layer(tmp_path, text=TREE, body=""):
    (tmp_path / "t.tree").write_text(text)
    g = graph_of(cfg(f"tree={tmp_path / 't.tree'}\n{body}", c=2, h=2, w=2))
    return g, g.layers[-1]


def test_tree_softmax_by_hand(tmp_path):
    g, layer = tree_layer(tmp_path, body="temperature=2")
    assert layer.tree_groups == [2, 3, 1] and layer.out_shape == (8, 1, 1)
    x = np.array([1, 2, 0, 1, 3, 7, 5, 6], np.float32).reshape(1, 2, 2, 2)
    y = layer.forward([x], {}).ravel()
    flat = x.ravel()
    want = np.zeros(8)
    for start, size in [(0, 2), (2, 3), (5, 1)]:
        e = [math.exp(float(v) / 2) for v in flat[start:start + size]]
        want[start:start + size] = np.array(e) / sum(e)
    np.testing.assert_allclose(y, want, rtol=1e-6)  # nodes past the tree (6, 7) stay 0


def test_tree_first_parent_not_root(tmp_path):
    g, layer = tree_layer(tmp_path, text="a 3\nb 3\nc\n")  # no parent field -> -1
    assert layer.tree_groups == [2, 1]


def test_tree_too_many_nodes(tmp_path):
    with pytest.raises(CfgError, match="9 nodes"):
        tree_layer(tmp_path, text="n -1\n" * 9)


def test_tree_onnx_lowering(tmp_path):
    g, layer = tree_layer(tmp_path, body="temperature=0.5")
    check_lowering(layer, inputs_for(g, layer, batch=2))
