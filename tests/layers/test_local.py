"""[local]: unshared weights per output location, checked against a naive loop; geometry refusals; ONNX."""
from __future__ import annotations

import numpy as np
import pytest

import darkcsp
from darkcsp.errors import CfgError
from darkcsp.graph import load_graph

from tests.conftest import random_input, write_cfg
from tests.layers.harness import run_onnxruntime, run_opencv


def naive_local(x, weights, biases, size, stride, pad, out_h, out_w):
    """y[f, oy, ox] = b[f, oy, ox] + sum_{c,i,j} W[l][f][c][i][j] * x[c, oy*s+i-pad, ox*s+j-pad], l = oy*out_w+ox."""
    c, h, w = x.shape
    n = biases.shape[0]
    y = np.array(biases, np.float64)
    for oy in range(out_h):
        for ox in range(out_w):
            loc = oy * out_w + ox
            for f in range(n):
                for ci in range(c):
                    for i in range(size):
                        for j in range(size):
                            yy, xx = oy * stride + i - pad, ox * stride + j - pad
                            if 0 <= yy < h and 0 <= xx < w:
                                y[f, oy, ox] += weights[loc, f, ci, i, j] * x[ci, yy, xx]
    return y


@pytest.mark.parametrize("opts,out_shape", [
    ("size=3\nstride=1\npad=1", (2, 7, 7)),
    ("size=3\nstride=2\npad=0", (2, 3, 3)),
    ("size=3\nstride=2\npad=1", (2, 4, 4)),
    ("size=1\nstride=1\npad=0", (2, 7, 7)),
    ("size=5\nstride=1\npad=2", (2, 7, 7)),
])
def test_forward_matches_naive(tmp_path, opts, out_shape):
    cfg = write_cfg(tmp_path, f"[net]\nwidth=7\nheight=7\nchannels=3\n\n[local]\nfilters=2\n{opts}\nactivation=leaky\n")
    model = darkcsp.load(cfg)
    layer = model.graph.layers[0]
    assert layer.out_shape == out_shape
    size, stride, pad = layer.size, layer.stride, layer.pad
    locs = out_shape[1] * out_shape[2]
    assert layer.params == 2 * locs + locs * 2 * 3 * size * size
    w = model.weights[0]
    w["biases"] = np.random.default_rng(0).uniform(-1, 1, w["biases"].shape).astype(np.float32)
    x = random_input((2, 3, 7, 7), seed=1) - 0.5
    y = layer.forward([x], w)
    got_onnx = run_onnxruntime(layer, [x], w)
    got_cv = np.asarray(run_opencv(layer, [x], w)).reshape(y.shape)
    for b in range(2):
        ref = naive_local(x[b], w["weights"], w["biases"], size, stride, pad, out_shape[1], out_shape[2])
        ref = np.where(ref > 0, ref, 0.1 * ref)
        np.testing.assert_allclose(y[b], ref, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got_onnx[b], ref, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got_cv[b], ref, rtol=1e-4, atol=1e-5)


def test_inconsistent_pad_refused(tmp_path):
    cfg = write_cfg(tmp_path, "[net]\nwidth=7\nheight=7\nchannels=3\n\n[local]\nfilters=2\nsize=5\npad=1\n")
    with pytest.raises(CfgError) as e:
        load_graph(cfg)
    assert e.value.option == "pad"


def test_defaults_and_yolov1_shape(tmp_path):
    layer = load_graph(write_cfg(tmp_path, "[net]\nwidth=7\nheight=7\nchannels=1024\n\n[local]\nfilters=256\n"
                                           "size=3\nstride=1\npad=1\nactivation=leaky\n")).layers[0]
    # Darknet's own numbers for yolov1 (shapes table AlexeyAB-darknet__yolov1-yolo2.json, layer 28)
    assert layer.out_shape == (256, 7, 7) and layer.params == 115618048 and layer.bflops == 0
    d = load_graph(write_cfg(tmp_path, "[net]\nwidth=4\nheight=4\nchannels=1\n\n[local]\n", "d.cfg")).layers[0]
    assert (d.filters, d.size, d.stride, d.pad, d.activation) == (1, 1, 1, 0, "logistic")


def test_kernel_larger_than_map(tmp_path):
    """out = (2 - 3)//2 + 1 = 1 with C truncation; Darknet's im2col reads zeros past the map."""
    cfg = write_cfg(tmp_path, "[net]\nwidth=2\nheight=2\nchannels=1\n\n[local]\nfilters=1\nsize=3\nstride=2\n"
                              "activation=linear\n")
    model = darkcsp.load(cfg)
    layer = model.graph.layers[0]
    assert layer.out_shape == (1, 1, 1)
    w = model.weights[0]
    x = random_input((1, 1, 2, 2), seed=2)
    ref = naive_local(x[0], w["weights"], w["biases"], 3, 2, 0, 1, 1)
    np.testing.assert_allclose(layer.forward([x], w)[0], ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(run_onnxruntime(layer, [x], w)[0], ref, rtol=1e-5, atol=1e-6)
