"""[route]: references, groups/group_id per input, shape errors, Darknet goldens and the ONNX lowering."""
from __future__ import annotations

import numpy as np
import pytest

from darkcsp.errors import CfgError

from tests.layers.harness import check_golden_layer, check_lowering, graph_of, inputs_for

# layer 0: 4 channels, layer 1: 8 channels (both 3x3), layer 2: 8 channels 2x2
BASE = """
[net]
width=3
height=3
channels=4
[dropout]
[route]
layers=-1,0
[maxpool]
size=2
stride=2
padding=0
"""


def test_groups_take_a_chunk_of_each_input():
    g = graph_of(BASE + "[route]\nlayers=0,1\ngroups=2\ngroup_id=1\n")
    layer = g.layers[-1]
    assert layer.inputs == [0, 1]
    assert layer.out_shape == (2 + 4, 3, 3)
    a = np.arange(4 * 9, dtype=np.float32).reshape(1, 4, 3, 3)
    b = 100 + np.arange(8 * 9, dtype=np.float32).reshape(1, 8, 3, 3)
    y = layer.forward([a, b], {})
    # channels [2, 4) of a, then [4, 8) of b
    np.testing.assert_array_equal(y[0, 0], a[0, 2])
    np.testing.assert_array_equal(y[0, 1], a[0, 3])
    np.testing.assert_array_equal(y[0, 2:], b[0, 4:8])


def test_absolute_and_relative():
    g = graph_of(BASE + "[route]\nlayers=-2,0\n")
    layer = g.layers[-1]
    assert layer.inputs == [1, 0]
    assert layer.out_shape == (12, 3, 3)
    a, b = inputs_for(g, layer)
    np.testing.assert_array_equal(layer.forward([a, b], {}), np.concatenate([a, b], axis=1))


@pytest.mark.parametrize("body,msg", [
    ("layers=0,2", "differ in width/height"),
    ("layers=3", "refers to itself"),
    ("layers=-5", "before layer 0"),
    ("layers=0\ngroups=3", "not divisible"),
    ("layers=0\ngroups=2\ngroup_id=2", "group_id"),
    ("layers=0\ngroups=0", "groups"),
    ("groups=2", "layers"),
])
def test_errors(body, msg):
    with pytest.raises(CfgError, match=msg):
        graph_of(BASE + "[route]\n" + body + "\n")


def test_describe_lists_inputs():
    g = graph_of(BASE + "[route]\nlayers=0,1\ngroups=2\ngroup_id=1\n")
    assert g.layers[-1].describe().startswith("0 1")


@pytest.mark.parametrize("body", ["layers=0", "layers=1,0", "layers=0,1\ngroups=2\ngroup_id=1", "layers=1\ngroups=2"])
def test_onnx_lowering(body):
    g = graph_of(BASE + "[route]\n" + body + "\n")
    layer = g.layers[-1]
    check_lowering(layer, inputs_for(g, layer, batch=2))


@pytest.mark.parametrize("case,index", [
    ("zoo-route-upsample-reorg", 2), ("zoo-route-upsample-reorg", 3), ("zoo-route-upsample-reorg", 4),
    ("zoo-route-upsample-reorg", 5), ("zoo-route-upsample-reorg", 18), ("zoo-gaps-a", 16), ("zoo-pooling", 4),
])
def test_golden(case, index):
    check_golden_layer(case, index)


@pytest.mark.parametrize("host", ["[maxpool]\nsize=2\nstride=2\nantialiasing=1",
                                  "[convolutional]\nfilters=4\nsize=3\nstride=2\npad=1\nantialiasing=1\nactivation=linear"])
def test_reference_to_antialiased_layer_refused(host):
    # Darknet's struct keeps the stride-1 shape while the buffer holds the blurred map: inconsistent
    text = "[net]\nwidth=8\nheight=8\nchannels=4\n" + host + "\n[route]\nlayers=-1\n"
    with pytest.raises(CfgError, match="antialiasing"):
        graph_of(text)
    ok = graph_of("[net]\nwidth=8\nheight=8\nchannels=4\n" + host + "\n[maxpool]\nsize=1\nstride=1\n")
    assert ok.layers[1].in_shape == (4, 4, 4)  # the next layer itself sees the blurred shape
