"""[detection] (YOLOv1): options and refusals, the per-cell class softmax, the ONNX lowering, and boxes in image
pixels (get_detection_detections)."""
from __future__ import annotations

import numpy as np
import pytest

from darkcsp.errors import CfgError

from tests.layers.harness import check_head_lowering, head


def test_detection_options_and_errors():
    text = "[detection]\nclasses=3\ncoords=4\nnum=2\nside=2\nsoftmax=1\nsqrt=1\n"
    # side^2*((1+coords)*num+classes) = 4*(10+3) = 52 inputs
    layer = head(text, 52, 1, 1)
    assert layer.out_shape == (52, 1, 1) and layer.is_head and layer.sqrt == 1
    with pytest.raises(CfgError, match="side"):
        head(text, 50, 1, 1)


def test_detection_forward_softmax():
    layer = head("[detection]\nclasses=3\ncoords=4\nnum=2\nside=2\nsoftmax=1\n", 52, 1, 1)
    x = np.random.default_rng(3).standard_normal((1, 52, 1, 1)).astype(np.float32)
    y = layer.forward([x], {}).reshape(-1)
    flat = x.reshape(-1).astype(np.float64)
    for cell in range(4):
        v = flat[cell * 3:cell * 3 + 3]
        np.testing.assert_allclose(y[cell * 3:cell * 3 + 3], np.exp(v) / np.exp(v).sum(), rtol=1e-6)
    np.testing.assert_array_equal(y[12:], x.reshape(-1)[12:])


def test_onnx_lowering_matches_numpy():
    check_head_lowering(head("[detection]\nclasses=3\ncoords=4\nnum=2\nside=2\nsoftmax=1\n", 52, 1, 1), (1, 52, 1, 1))


def test_detection_decode_pixels():
    """YOLOv1 boxes come out in image pixels (Darknet's get_detection_detections), sqrt=1 squares w, h."""
    layer = head("[detection]\nclasses=3\ncoords=4\nnum=2\nside=2\nsqrt=1\n", 52, 1, 1)
    y = np.zeros(52, np.float32)
    y[0:3] = [0.2, 0.7, 0.1]          # cell 0 class probs
    y[12] = 0.9                        # cell 0 box 0 confidence
    y[20:24] = [0.5, 0.25, 0.5, 0.4]   # cell 0 box 0: x, y, sqrt(w), sqrt(h)
    bs = layer.detections(y, 448, 448, 200, 100, 0.2)
    assert len(bs) == 8
    np.testing.assert_allclose(bs.boxes[0], [0.5 / 2 * 200, 0.25 / 2 * 100, 0.25 * 200, 0.16 * 100], rtol=1e-6)
    np.testing.assert_allclose(bs.probs[0], [0, 0.63, 0], rtol=1e-6)
