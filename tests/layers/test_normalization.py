"""[normalization]/[lrn]: Darknet's running-window recurrence (with its missing term), written out naively."""
from __future__ import annotations

import numpy as np
import pytest

import darkcsp
from darkcsp.errors import CfgError
from darkcsp.graph import load_graph

from tests.conftest import random_input, write_cfg
from tests.layers.harness import run_onnxruntime, run_opencv


def darknet_lrn(x, size, alpha, beta, kappa):
    """Darknet's forward as described in darknet-semantics.md §3.19: the window starts with channels
    0..size//2-1, then slides (drop k-(size-1)//2-1, add k+size//2)."""
    c = x.shape[0]
    sq = x.astype(np.float64) ** 2
    norms = np.zeros_like(sq)
    norms[0] = kappa
    for k in range(size // 2):
        norms[0] += alpha * sq[k]
    for k in range(1, c):
        norms[k] = norms[k - 1]
        prev = k - (size - 1) // 2 - 1
        nxt = k + size // 2
        if prev >= 0:
            norms[k] -= alpha * sq[prev]
        if nxt < c:
            norms[k] += alpha * sq[nxt]
    return x * norms ** (-beta)


@pytest.mark.parametrize("size,channels", [(5, 7), (3, 4), (4, 6), (1, 3), (5, 3)])
def test_forward_matches_darknet_recurrence(tmp_path, size, channels):
    cfg = write_cfg(tmp_path, f"[net]\nwidth=3\nheight=2\nchannels={channels}\n\n[lrn]\nsize={size}\nalpha=0.5\n"
                              "beta=0.75\nkappa=2\n")
    model = darkcsp.load(cfg)
    layer = model.graph.layers[0]
    assert layer.type == "normalization" and layer.out_shape == (channels, 2, 3) and layer.params == 0
    x = (random_input((2, channels, 2, 3), seed=size) - 0.5) * 4
    y = layer.forward([x], {})
    for b in range(2):
        np.testing.assert_allclose(y[b], darknet_lrn(x[b], size, 0.5, 0.75, 2.0), rtol=1e-5, atol=1e-6)
    got = run_onnxruntime(layer, [x], {})
    got_cv = np.asarray(run_opencv(layer, [x], {})).reshape(got.shape)
    for b in range(2):
        np.testing.assert_allclose(got[b], darknet_lrn(x[b], size, 0.5, 0.75, 2.0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got_cv[b], darknet_lrn(x[b], size, 0.5, 0.75, 2.0), rtol=1e-4, atol=1e-6)


def test_missing_term_is_really_missing(tmp_path):
    """The intended window sum minus alpha*X[size//2]^2 (here: a single non-zero channel, 2 = size//2)."""
    cfg = write_cfg(tmp_path, "[net]\nwidth=1\nheight=1\nchannels=5\n\n[normalization]\nsize=5\nalpha=1\nbeta=1\n")
    layer = load_graph(cfg).layers[0]
    x = np.array([1.0, 1.0, 3.0, 1.0, 1.0], np.float32).reshape(1, 5, 1, 1)
    # intended N[0] = kappa + (1 + 1 + 9); Darknet: 1 + (1 + 1) -> y0 = 1/3; N[4] = 1 + (9 + 1 + 1) - 9 = 3
    y = layer.forward([x], {}).ravel()
    assert y[0] == pytest.approx(1 / 3) and y[4] == pytest.approx(1 / 3)
    assert y[2] == pytest.approx(3 / (1 + 13 - 9))


def test_defaults(tmp_path):
    layer = load_graph(write_cfg(tmp_path, "[net]\nwidth=1\nheight=1\nchannels=8\n\n[lrn]\n")).layers[0]
    assert (layer.size, layer.alpha, layer.beta, layer.kappa) == (5, 1e-4, 0.75, 1.0)


def test_too_few_channels_refused(tmp_path):
    with pytest.raises(CfgError) as e:
        load_graph(write_cfg(tmp_path, "[net]\nwidth=1\nheight=1\nchannels=2\n\n[lrn]\nsize=5\n"))
    assert e.value.option == "size"
