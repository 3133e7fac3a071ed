"""[maxpool] (incl. Maxout) and [local_avgpool]: hand-computed cases, a naive loop reference, Darknet goldens,
shape/BFLOPs rules and the ONNX lowering (onnxruntime and OpenCV DNN)."""
from __future__ import annotations

import numpy as np
import pytest

from darkcsp.errors import CfgError

from tests.layers.harness import check_golden_layer, check_lowering, graph_of, inputs_for, last_layer, layer_cfg

FLT_MAX = np.finfo(np.float32).max


def pool_cfg(c: int, h: int, w: int, body: str, kind: str = "maxpool") -> str:
    return layer_cfg(kind, body, c, h, w)


def naive_pool(x, size, sy, sx, padding, average=False):
    """Darknet's forward_maxpool_layer / forward_local_avgpool_layer, written as plain loops."""
    n, c, h, w = x.shape
    oh = (h + padding - size) // sy + 1
    ow = (w + padding - size) // sx + 1
    o = padding // 2
    y = np.zeros((n, c, oh, ow), np.float32)
    for b in range(n):
        for k in range(c):
            for i in range(oh):
                for j in range(ow):
                    best, total, count = -FLT_MAX, 0.0, 0
                    for m in range(size):
                        for l in range(size):
                            r, q = i * sy + m - o, j * sx + l - o
                            if 0 <= r < h and 0 <= q < w:
                                v = x[b, k, r, q]
                                best = max(best, v)
                                total += v
                                count += 1
                    y[b, k, i, j] = total / count if average else best
    return y


@pytest.mark.parametrize("body, x, want", [
    # size=2 stride=1: padding = size-1 = 1, offset 0, so the size is kept and each window looks right and down
    pytest.param("size=2\nstride=1", [[1, 5, 2], [7, 3, 0], [4, 8, 6]], [[7, 5, 2], [8, 8, 6], [8, 8, 6]],
                 id="size2-stride1-looks-right-and-down"),
    # an odd width at stride 2 rounds up: the last window holds one column
    pytest.param("size=2\nstride=2", np.arange(25).reshape(5, 5), [[6, 8, 9], [16, 18, 19], [21, 23, 24]],
                 id="odd-width-stride2-rounds-up"),
])
def test_hand_computed(body, x, want):
    x = np.asarray(x, np.float32)[None, None]
    layer = last_layer(pool_cfg(1, *x.shape[2:], body))
    assert layer.out_shape == (1, 3, 3)
    np.testing.assert_array_equal(layer.forward([x], {}), np.asarray(want, np.float32)[None, None])


def test_negative_values_ignore_padding():
    # the padding never wins a max: an all-negative map keeps its own values
    layer = last_layer(pool_cfg(1, 2, 2, "size=3\nstride=1"))
    x = -np.array([[1, 2], [3, 4]], np.float32)[None, None]
    np.testing.assert_array_equal(layer.forward([x], {}), np.full((1, 1, 2, 2), -1, np.float32))


def test_defaults_size_from_stride_and_padding():
    layer = last_layer(pool_cfg(2, 9, 9, "stride=3"))
    assert (layer.size, layer.padding, layer.stride_x, layer.stride_y) == (3, 2, 3, 3)
    assert layer.out_shape == (2, 3, 3)
    layer = last_layer(pool_cfg(2, 9, 10, "size=2\nstride_x=2\nstride_y=1"))
    assert layer.out_shape == (2, 9, 5)


@pytest.mark.parametrize("body,kind", [
    ("size=2\nstride=2", "maxpool"), ("size=3\nstride=1", "maxpool"), ("size=3\nstride=2\npadding=0", "maxpool"),
    ("size=3\nstride=2\npadding=2", "maxpool"), ("size=2\nstride_x=2\nstride_y=1", "maxpool"),
    ("size=5\nstride=1", "maxpool"), ("size=4\nstride=3\npadding=5", "maxpool"),
    ("size=2\nstride=2", "local_avgpool"), ("size=3\nstride=1", "local_avgpool"),
    ("size=3\nstride=2\npadding=0", "local_avgpool"), ("size=4\nstride=3", "local_avgpool"),
])
def test_matches_naive_loops(body, kind):
    g = graph_of(pool_cfg(3, 7, 6, body, kind))
    layer = g.layers[-1]
    x = inputs_for(g, layer)[0]
    want = naive_pool(x, layer.size, layer.stride_y, layer.stride_x, layer.padding, kind == "local_avgpool")
    assert layer.out_shape == want.shape[1:]
    np.testing.assert_allclose(layer.forward([x], {}), want, rtol=1e-6, atol=1e-6)


def test_local_avgpool_divides_by_in_image_count():
    layer = last_layer(pool_cfg(1, 3, 3, "size=2\nstride=2", "local_avgpool"))
    assert layer.out_shape == (1, 2, 2)
    x = np.array([[1, 2, 3],
                  [4, 5, 6],
                  [7, 8, 9]], np.float32)[None, None]
    want = np.array([[(1 + 2 + 4 + 5) / 4, (3 + 6) / 2],
                     [(7 + 8) / 2, 9]], np.float32)[None, None]
    np.testing.assert_allclose(layer.forward([x], {}), want, rtol=1e-7)


def test_maxout_strided_channel_groups():
    layer = last_layer(pool_cfg(6, 1, 2, "maxpool_depth=1\nout_channels=2\nsize=1\nstride=1"))
    assert layer.out_shape == (2, 1, 2)
    x = np.array([[1, 9], [2, 0], [5, 3], [7, 1], [4, 8], [3, 6]], np.float32).reshape(1, 6, 1, 2)
    # channel 0 = max(X0, X2, X4), channel 1 = max(X1, X3, X5) - not contiguous blocks
    want = np.array([[5, 9], [7, 6]], np.float32).reshape(1, 2, 1, 2)
    np.testing.assert_array_equal(layer.forward([x], {}), want)


def test_maxout_channels_not_multiple():
    layer = last_layer(pool_cfg(7, 2, 2, "maxpool_depth=1\nout_channels=3"))
    x = np.random.default_rng(1).standard_normal((1, 7, 2, 2)).astype(np.float32)
    want = np.stack([x[0, g::3].max(axis=0) for g in range(3)])[None]
    np.testing.assert_array_equal(layer.forward([x], {}), want)


def test_bflops_and_int_wrap():
    layer = last_layer(pool_cfg(16, 32, 32, "size=2\nstride=2"))
    assert layer.bflops == pytest.approx(2 * 2 * 16 * 16 * 16 / 1e9)
    depth = last_layer(pool_cfg(16, 32, 32, "maxpool_depth=1\nout_channels=4\nsize=1"))
    assert depth.bflops == pytest.approx(16 * 32 * 32 / 1e9)  # input C, output H x W
    # 9 * 64 * 4096 * 4096 = 9 * 2^30 overflows Darknet's 32-bit int to 2^30
    big = last_layer(pool_cfg(64, 4096, 4096, "size=3\nstride=1"))
    assert big.bflops == pytest.approx(2 ** 30 / 1e9)


def test_antialiasing_blurs_the_stride1_pool():
    g = graph_of(pool_cfg(2, 8, 8, "size=2\nstride=2\nantialiasing=1"))
    layer = g.layers[-1]
    assert layer.host_shape == (2, 8, 8) and layer.out_shape == (2, 4, 4)
    assert layer.bflops == pytest.approx(4 * 2 * 8 * 8 / 1e9)  # host at stride 1
    x = inputs_for(g, layer)[0]
    host = naive_pool(x, 2, 1, 1, 1)
    k = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], np.float32) / 16
    hp = np.pad(host, ((0, 0), (0, 0), (1, 1), (1, 1)))
    want = np.zeros((1, 2, 4, 4), np.float32)
    for c in range(2):
        for i in range(4):
            for j in range(4):
                want[0, c, i, j] = (hp[0, c, 2 * i:2 * i + 3, 2 * j:2 * j + 3] * k).sum()
    np.testing.assert_allclose(layer.forward([x], {}), want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("body,msg", [("size=0", "size"), ("stride=0", "stride"), ("size=2\npadding=-1", "padding"),
                                      ("maxpool_depth=1\nout_channels=0", "out_channels"),
                                      ("size=9\nstride=1\npadding=0", "does not fit"),
                                      ("antialiasing=3", "antialiasing")])
def test_bad_options_are_cfg_errors(body, msg):
    with pytest.raises(CfgError, match=msg):
        last_layer(pool_cfg(2, 4, 4, body))


@pytest.mark.parametrize("body,kind,opencv", [
    ("size=2\nstride=2", "maxpool", True), ("size=2\nstride=1", "maxpool", True),
    ("size=3\nstride=2\npadding=2", "maxpool", True), ("size=2\nstride_x=2\nstride_y=1", "maxpool", True),
    ("size=3\nstride=2\npadding=0", "maxpool", True), ("size=2\nstride=2\npadding=5", "maxpool", True),
    ("maxpool_depth=1\nout_channels=2", "maxpool", True), ("maxpool_depth=1\nout_channels=4", "maxpool", True),
    ("size=2\nstride=2\nantialiasing=1", "maxpool", True), ("size=3\nstride=2\nantialiasing=2", "maxpool", True),
    ("size=2\nstride=2", "local_avgpool", True), ("size=3\nstride=1", "local_avgpool", True),
    ("size=3\nstride=2\npadding=0", "local_avgpool", True),
])
def test_onnx_lowering(body, kind, opencv):
    g = graph_of(pool_cfg(6, 7, 9, body, kind))
    layer = g.layers[-1]
    check_lowering(layer, inputs_for(g, layer, batch=2), opencv=opencv)


@pytest.mark.parametrize("index", [1, 2, 3, 6, 7, 9, 10, 12, 13, 14, 16])
def test_golden_zoo_pooling(index):
    check_golden_layer("zoo-pooling", index)


@pytest.mark.parametrize("index", [1, 5])
def test_golden_zoo_classifier(index):
    check_golden_layer("zoo-classifier-connected", index)
