"""[region]: options and refusals, the forward against Darknet's golden (zoo-gaps-a: softmax=0) and naive loops
(AlexeyAB's cell-major and pjreddie's planar layouts), the ONNX lowering, and the decoder against a loop."""
from __future__ import annotations

import numpy as np
import pytest

from darkcsp.errors import CfgError, UnsupportedError

from tests.layers.harness import check_head_lowering, check_onnx_decode, head, head_from_section, sig, zoo_layers


def test_region_options_and_errors():
    text = "[region]\nanchors=1,1, 2,2\nclasses=3\nnum=2\n"
    layer = head(text, 16, 5, 5)
    assert layer.softmax == 0 and layer.coords == 4 and layer.is_head and layer.out_shape == (16, 5, 5)
    with pytest.raises(CfgError, match="must be 16"):
        head(text, 18, 5, 5)
    # YOLO9000's softmax tree: the graph builds (summary works), running it is refused
    tree = head(text + "tree=data/9k.tree\n", 16, 5, 5)
    with pytest.raises(UnsupportedError, match="tree"):
        tree.forward([np.zeros((1, 16, 5, 5), np.float32)], {})


def test_region_forward_golden():
    """zoo-gaps-a layer 18: [region] softmax=0 -> (1, H, W, num*K), logistic on objectness only."""
    d, npz, body, tol = zoo_layers("zoo-gaps-a")
    x = npz["layer_17"]
    layer = head_from_section(body[18], *x.shape[1:], index=18)
    got = layer.forward([x], {})
    want = npz["layer_18"]
    assert got.shape == want.shape == (1, 16, 16, 27)
    np.testing.assert_allclose(got, want, rtol=tol["rtol"], atol=tol["atol"])
    assert layer.out_shape == (27, 16, 16)  # Darknet's (C, H, W) stays the graph shape


@pytest.mark.parametrize("softmax", [0, 1])
def test_region_forward_naive(softmax):
    layer = head(f"[region]\nanchors=1,1, 2,2\nclasses=3\nnum=2\nsoftmax={softmax}\n", 16, 3, 4)
    x = np.random.default_rng(2).standard_normal((1, 16, 3, 4)).astype(np.float32)
    want = np.zeros((1, 3, 4, 16))
    for r in range(3):
        for c in range(4):
            for a in range(2):
                v = x[0, a * 8:(a + 1) * 8, r, c].astype(np.float64)
                v[4] = sig(v[4])
                if softmax:
                    e = np.exp(v[5:] - v[5:].max())
                    v[5:] = e / e.sum()
                want[0, r, c, a * 8:(a + 1) * 8] = v
    np.testing.assert_allclose(layer.forward([x], {}), want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("softmax", [0, 1])
def test_region_forward_pjreddie(softmax):
    """pjreddie's CPU forward keeps the planar layout: logistic on x, y, objectness, and on the classes
    unless softmax=1."""
    layer = head(f"[region]\nanchors=1,1, 2,2\nclasses=3\nnum=2\nsoftmax={softmax}\n", 16, 3, 4, "pjreddie")
    x = np.random.default_rng(9).standard_normal((1, 16, 3, 4)).astype(np.float32)
    want = x.astype(np.float64).copy()
    for a in range(2):
        for e in (0, 1, 4):
            want[0, a * 8 + e] = sig(want[0, a * 8 + e])
        cls = want[0, a * 8 + 5:a * 8 + 8]
        want[0, a * 8 + 5:a * 8 + 8] = np.exp(cls) / np.exp(cls).sum(axis=0) if softmax else sig(cls)
    np.testing.assert_allclose(layer.forward([x], {}), want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("text,shape", [
    ("[region]\nanchors=1,1, 2,2\nclasses=3\nnum=2\nsoftmax=0\n", (1, 16, 3, 4)),
    ("[region]\nanchors=1,1, 2,2\nclasses=3\nnum=2\nsoftmax=1\n", (2, 16, 3, 4)),
])
def test_onnx_lowering_matches_numpy(text, shape):
    check_head_lowering(head(text, *shape[1:]), shape)


def test_region_decode_naive():
    layer = head("[region]\nanchors=1,1.5, 2,2.5\nclasses=3\nnum=2\nsoftmax=1\n", 16, 3, 4)
    x = np.random.default_rng(6).standard_normal((1, 16, 3, 4)).astype(np.float32)
    y = layer.forward([x], {})[0]
    bs = layer.detections(y, 128, 96, 128, 96, 0.2)
    assert len(bs) == 3 * 4 * 2
    t = y.reshape(3, 4, 2, 8)
    idx = 0
    for r in range(3):
        for c in range(4):
            for a in range(2):
                v = t[r, c, a].astype(np.float64)
                box = [(c + sig(v[0])) / 4, (r + sig(v[1])) / 3, np.exp(v[2]) * [1, 2][a] / 4,
                       np.exp(v[3]) * [1.5, 2.5][a] / 3]
                np.testing.assert_allclose(bs.boxes[idx], box, rtol=1e-5)
                assert bs.objectness[idx] == 1
                probs = [v[4] * v[5 + j] if v[4] * v[5 + j] > 0.2 else 0 for j in range(3)]
                np.testing.assert_allclose(bs.probs[idx], probs, rtol=1e-5)
                idx += 1


def test_onnx_decode_matches_detections():
    """onnx_decode rows == detections() with thresh 0 and no image correction (image = network size)."""
    check_onnx_decode(head("[region]\nanchors=1,1.5, 2,2.5\nclasses=3\nnum=2\nsoftmax=1\n", 16, 3, 4))
