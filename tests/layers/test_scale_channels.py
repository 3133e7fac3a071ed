"""[scale_channels]: per-channel (SE) and per-pixel (scale_wh=1, plane 0 only) scaling; goldens; ONNX."""
from __future__ import annotations

import numpy as np
import pytest

from darkcsp.errors import CfgError

from tests.layers.harness import check_golden_layer, check_lowering, graph_of, inputs_for

# 0: (3,4,4) the scaled map   1: (3,1,1) per-channel scales   2: (3,4,4) per-pixel scales (3 planes)
BASE = """
[net]
width=4
height=4
channels=3
[maxpool]
size=1
stride=1
[avgpool]
[route]
layers=0
"""


def test_per_channel():
    g = graph_of(BASE + "[route]\nlayers=1\n[scale_channels]\nfrom=0\n")
    layer = g.layers[-1]
    assert layer.inputs == [3, 0] and layer.out_shape == (3, 4, 4)
    s = np.array([1, 2, -3], np.float32).reshape(1, 3, 1, 1)
    f = np.arange(48, dtype=np.float32).reshape(1, 3, 4, 4)
    np.testing.assert_array_equal(layer.forward([s, f], {}), f * s)


def test_scale_wh_uses_plane_zero_only():
    g = graph_of(BASE + "[scale_channels]\nfrom=0\nscale_wh=1\n")
    layer = g.layers[-1]
    x = np.zeros((1, 3, 4, 4), np.float32)
    x[0, 0] = np.arange(16).reshape(4, 4)
    x[0, 1:] = 1000  # ignored by Darknet
    f = np.ones((1, 3, 4, 4), np.float32) * np.array([1, 2, 3], np.float32).reshape(1, 3, 1, 1)
    y = layer.forward([x, f], {})
    for c in range(3):
        np.testing.assert_array_equal(y[0, c], (c + 1) * np.arange(16, dtype=np.float32).reshape(4, 4))


def test_mish_gives_zeros():
    g = graph_of(BASE + "[route]\nlayers=1\n[scale_channels]\nfrom=0\nactivation=mish\n")
    layer = g.layers[-1]
    xs = inputs_for(g, layer)
    np.testing.assert_array_equal(layer.forward(xs, {}), np.zeros((1, 3, 4, 4), np.float32))


@pytest.mark.parametrize("tail,msg", [
    ("[scale_channels]\nfrom=0\n", "1x1x3"),                       # input is 4x4, needs 1x1
    ("[route]\nlayers=1\n[scale_channels]\nfrom=0\nscale_wh=1\n", "width and height"),
])
def test_errors(tail, msg):
    with pytest.raises(CfgError, match=msg):
        graph_of(BASE + tail)


@pytest.mark.parametrize("tail", ["[route]\nlayers=1\n[scale_channels]\nfrom=0\n",
                                  "[route]\nlayers=1\n[scale_channels]\nfrom=0\nactivation=logistic\n",
                                  "[scale_channels]\nfrom=0\nscale_wh=1\n"])
def test_onnx_lowering(tail):
    g = graph_of(BASE + tail)
    layer = g.layers[-1]
    check_lowering(layer, inputs_for(g, layer, batch=2))


@pytest.mark.parametrize("index", [3, 15])
def test_golden(index):
    check_golden_layer("zoo-gaps-a", index)  # 3: scale_wh=1 with a 16-plane input (plane 0 only)
