"""[upsample]: nearest repeat times scale, negative stride = block SUM times scale; goldens; ONNX."""
from __future__ import annotations

import numpy as np
import pytest

from darkcsp.errors import CfgError

from tests.layers.harness import check_golden_layer, check_lowering, graph_of, inputs_for, last_layer, layer_cfg


def cfg(c, h, w, body):
    return layer_cfg("upsample", body, c, h, w)


def test_default_stride2_nearest():
    layer = last_layer(cfg(1, 2, 2, ""))
    assert layer.out_shape == (1, 4, 4)
    x = np.array([[1, 2], [3, 4]], np.float32)[None, None]
    want = np.array([[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]], np.float32)[None, None]
    np.testing.assert_array_equal(layer.forward([x], {}), want)


def test_scale_multiplies():
    layer = last_layer(cfg(1, 1, 2, "stride=3\nscale=0.5"))
    assert layer.out_shape == (1, 3, 6)
    x = np.array([[2, 4]], np.float32)[None, None]
    np.testing.assert_array_equal(layer.forward([x], {}), np.array([[1, 1, 1, 2, 2, 2]] * 3, np.float32)[None, None])


def test_negative_stride_sums_blocks():
    layer = last_layer(cfg(1, 4, 4, "stride=-2"))
    assert layer.out_shape == (1, 2, 2)
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    want = np.array([[0 + 1 + 4 + 5, 2 + 3 + 6 + 7],
                     [8 + 9 + 12 + 13, 10 + 11 + 14 + 15]], np.float32)[None, None]  # a sum, not a mean
    np.testing.assert_array_equal(layer.forward([x], {}), want)
    layer = last_layer(cfg(1, 4, 4, "stride=-2\nscale=0.25"))
    np.testing.assert_array_equal(layer.forward([x], {}), want / 4)


@pytest.mark.parametrize("body,msg", [("stride=0", "stride"), ("stride=-3", "divides")])
def test_errors(body, msg):
    with pytest.raises(CfgError, match=msg):
        last_layer(cfg(2, 4, 4, body))


@pytest.mark.parametrize("body", ["", "stride=4", "stride=2\nscale=0.5", "stride=-2", "stride=-3\nscale=2"])
def test_onnx_lowering(body):
    g = graph_of(cfg(3, 6, 6, body))
    layer = g.layers[-1]
    check_lowering(layer, inputs_for(g, layer, batch=2))


@pytest.mark.parametrize("index", [7, 9, 11, 13])
def test_golden(index):
    check_golden_layer("zoo-route-upsample-reorg", index)
