"""[reorg3d] (REORG) and [reorg] (REORG_OLD): the two channel orders against explicit loops of Darknet's
reorg_cpu, reverse handling, goldens and ONNX."""
from __future__ import annotations

import numpy as np
import pytest

from darkcsp.errors import CfgError, UnsupportedError

from tests.layers.harness import check_golden_layer, check_lowering, graph_of, inputs_for, last_layer, layer_cfg


def cfg(kind, c, h, w, body):
    return layer_cfg(kind, body, c, h, w)


def reorg_cpu(x, w, h, c, stride, forward):
    """Darknet's blas.c reorg_cpu for one image, as loops over a flat buffer."""
    out = np.zeros(x.size, np.float32)
    out_c = c // (stride * stride)
    for k in range(c):
        for j in range(h):
            for i in range(w):
                in_index = i + w * (j + h * k)
                c2 = k % out_c
                offset = k // out_c
                w2 = i * stride + offset % stride
                h2 = j * stride + offset // stride
                out_index = w2 + w * stride * (h2 + h * stride * c2)
                if forward:
                    out[out_index] = x[in_index]
                else:
                    out[in_index] = x[out_index]
    return out


def test_reorg3d_channel_order():
    layer = last_layer(cfg("reorg3d", 2, 4, 6, "stride=2"))
    assert layer.out_shape == (8, 2, 3)
    x = np.arange(48, dtype=np.float32).reshape(1, 2, 4, 6)
    # forward_reorg_layer: reorg_cpu(input, out_w, out_h, out_c, stride, 0)
    want = reorg_cpu(x.ravel(), 3, 2, 8, 2, False).reshape(1, 8, 2, 3)
    y = layer.forward([x], {})
    np.testing.assert_array_equal(y, want)
    # channel (dy*s + dx)*C + c holds X[c, dy::s, dx::s]
    np.testing.assert_array_equal(y[0, 1 * 2 + 0], x[0, 0, 0::2, 1::2])
    np.testing.assert_array_equal(y[0, 3 * 2 + 1], x[0, 1, 1::2, 1::2])


def test_reorg_old_channel_order_differs():
    layer = last_layer(cfg("reorg", 4, 4, 6, "stride=2"))
    assert layer.out_shape == (16, 2, 3)
    x = np.arange(96, dtype=np.float32).reshape(1, 4, 4, 6)
    # forward_reorg_old_layer: reorg_cpu(input, w, h, c, stride, 0), output re-read as (C*s*s, H/s, W/s)
    want = reorg_cpu(x.ravel(), 6, 4, 4, 2, False).reshape(1, 16, 2, 3)
    y = layer.forward([x], {})
    np.testing.assert_array_equal(y, want)
    r3 = last_layer(cfg("reorg3d", 4, 4, 6, "stride=2")).forward([x], {})
    assert not np.array_equal(y, r3)


def test_reorg_old_reverse_is_depth_to_space():
    layer = last_layer(cfg("reorg", 8, 2, 3, "stride=2\nreverse=1"))
    assert layer.out_shape == (2, 4, 6)
    x = np.arange(48, dtype=np.float32).reshape(1, 8, 2, 3)
    want = reorg_cpu(x.ravel(), 3, 2, 8, 2, True).reshape(1, 2, 4, 6)
    np.testing.assert_array_equal(layer.forward([x], {}), want)


def test_reorg3d_reverse_refused():
    with pytest.raises(UnsupportedError, match="reverse=1"):
        last_layer(cfg("reorg3d", 8, 2, 2, "stride=2\nreverse=1"))


@pytest.mark.parametrize("kind,c,h,w,body,msg", [
    ("reorg3d", 2, 5, 4, "stride=2", "divides"), ("reorg", 2, 4, 4, "stride=2", "divisible"),
    ("reorg", 6, 4, 4, "stride=2\nreverse=1", "divisible"), ("reorg3d", 2, 4, 4, "stride=0", "stride"),
])
def test_errors(kind, c, h, w, body, msg):
    with pytest.raises(CfgError, match=msg):
        last_layer(cfg(kind, c, h, w, body))


@pytest.mark.parametrize("kind,c,body", [("reorg3d", 3, "stride=2"), ("reorg", 4, "stride=2"),
                                         ("reorg", 8, "stride=2\nreverse=1"), ("reorg3d", 2, "stride=3"),
                                         ("reorg", 9, "stride=3")])
def test_onnx_lowering(kind, c, body):
    g = graph_of(cfg(kind, c, 6, 6, body))
    layer = g.layers[-1]
    check_lowering(layer, inputs_for(g, layer, batch=2))


@pytest.mark.parametrize("index", [15, 17])
def test_golden(index):
    check_golden_layer("zoo-route-upsample-reorg", index)
