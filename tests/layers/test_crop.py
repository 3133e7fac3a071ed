"""[crop]: centre crop, 2x-1 unless noadjust; ONNX."""
from __future__ import annotations

import functools

import numpy as np
import pytest

from darkcsp.errors import CfgError

from tests.layers.harness import check_lowering, graph_of, inputs_for, last_layer, layer_cfg

#: cfg text of one [crop] layer with the given options, on a (1, 5, 6) input unless c/h/w say otherwise
cfg = functools.partial(layer_cfg, "crop", c=1, h=5, w=6)


def test_centre_crop_times_two_minus_one():
    layer = last_layer(cfg("crop_height=2\ncrop_width=3\nflip=1\nangle=7"))
    assert layer.out_shape == (1, 2, 3)
    x = np.arange(30, dtype=np.float32).reshape(1, 1, 5, 6)
    # dh = (5-2)//2 = 1, dw = (6-3)//2 = 1
    want = np.array([[7, 8, 9], [13, 14, 15]], np.float32) * 2 - 1
    np.testing.assert_array_equal(layer.forward([x], {}), want[None, None])


def test_noadjust_and_defaults():
    layer = last_layer(cfg("noadjust=1"))
    assert layer.out_shape == (1, 1, 1)  # crop_height/crop_width default 1
    x = np.arange(30, dtype=np.float32).reshape(1, 1, 5, 6)
    np.testing.assert_array_equal(layer.forward([x], {}), np.array([[[[14]]]], np.float32))  # (2, 2)


def test_too_large():
    with pytest.raises(CfgError, match="does not fit"):
        last_layer(cfg("crop_height=6\ncrop_width=2"))


@pytest.mark.parametrize("body", ["crop_height=3\ncrop_width=4", "crop_height=2\ncrop_width=2\nnoadjust=1"])
def test_onnx_lowering(body):
    g = graph_of(cfg(body, c=3))
    layer = g.layers[-1]
    check_lowering(layer, inputs_for(g, layer, batch=2))
