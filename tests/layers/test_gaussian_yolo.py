"""[Gaussian_yolo]: shape check, the forward against a naive loop (logistic on all but the w/h means), the ONNX
lowering, and the decoder (objectness times (1 - mean uncertainty)) against a naive loop."""
from __future__ import annotations

import numpy as np
import pytest

from darkcsp.errors import CfgError

from tests.layers.harness import check_head_lowering, check_onnx_decode, head, sig


def test_gaussian_shape_check():
    text = "[Gaussian_yolo]\nmask=0,1,2\nanchors=1,2, 3,4, 5,6\nclasses=10\nnum=3\n"
    layer = head(text, 57, 4, 4)
    assert layer.type == "Gaussian_yolo" and layer.is_head and layer.out_shape == (57, 4, 4)
    with pytest.raises(CfgError, match="must be 57"):
        head(text, 45, 4, 4)


def test_gaussian_forward_naive():
    layer = head("[Gaussian_yolo]\nmask=0,1\nanchors=1,2, 3,4\nclasses=2\nnum=2\nscale_x_y=1.2\n", 22, 3, 4)
    x = np.random.default_rng(1).standard_normal((1, 22, 3, 4)).astype(np.float32)
    want = x.astype(np.float64).copy()
    for a in range(2):
        for e in range(11):
            p = a * 11 + e
            if e not in (4, 6):
                want[:, p] = sig(want[:, p])
            if e in (0, 2):
                want[:, p] = want[:, p] * 1.2 - 0.1
    np.testing.assert_allclose(layer.forward([x], {}), want, rtol=1e-6, atol=1e-6)


def test_onnx_lowering_matches_numpy():
    text = "[Gaussian_yolo]\nmask=0,1\nanchors=1,2, 3,4\nclasses=2\nnum=2\nscale_x_y=1.2\n"
    check_head_lowering(head(text, 22, 3, 4), (1, 22, 3, 4))


def test_gaussian_decode_naive():
    layer = head("[Gaussian_yolo]\nmask=0,1\nanchors=10,20, 30,40\nclasses=2\nnum=2\n", 22, 2, 3)
    x = np.random.default_rng(7).standard_normal((1, 22, 2, 3)).astype(np.float32)
    y = layer.forward([x], {})[0]
    bs = layer.detections(y, 64, 32, 64, 32, 0.1)
    want = []
    for i in range(6):
        r, c = divmod(i, 3)
        for a in range(2):
            t = y[a * 11:(a + 1) * 11, r, c].astype(np.float64)
            if t[8] > 0.1:
                uc = (t[1] + t[3] + t[5] + t[7]) / 4
                want.append(([(c + t[0]) / 3, (r + t[2]) / 2, np.exp(t[4]) * [10, 30][a] / 64,
                              np.exp(t[6]) * [20, 40][a] / 32],
                             [p if p > 0.1 else 0 for p in (t[8] * t[9:] * (1 - uc))]))
    assert len(bs) == len(want) > 0
    for i, (box, probs) in enumerate(want):
        np.testing.assert_allclose(bs.boxes[i], box, rtol=1e-5)
        np.testing.assert_allclose(bs.probs[i], probs, rtol=1e-5, atol=1e-7)


def test_onnx_decode_matches_detections():
    """onnx_decode rows == detections() with thresh 0 and no image correction (image = network size)."""
    check_onnx_decode(head("[Gaussian_yolo]\nmask=0,1\nanchors=10,20, 30,40\nclasses=2\nnum=2\n", 22, 3, 4))
