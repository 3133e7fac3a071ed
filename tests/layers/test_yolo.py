"""[yolo]: options and shape checks against Darknet's parser rules (and the heads of Darknet's parser shape
tables), the forward against Darknet's per-layer goldens (zoo-yolo-heads: plain / scale_x_y / new_coords heads)
and a naive loop, the ONNX lowering against the NumPy forward, the decoder against get_yolo_detections as a loop."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from darkcsp.cfg import read_cfg
from darkcsp.errors import CfgError
from darkcsp.layers.yolo import DEFAULT_NMS, DIOU_NMS, GREEDY_NMS

from tests.layers.harness import check_head_lowering, check_onnx_decode, head, head_from_section, sig, zoo_layers


YOLO = """
[yolo]
mask=3,4,5
anchors=10,14, 23,27, 37,58, 81,82, 135,169, 344,319
classes=2
num=6
"""


# ----- options and shape checks ---------------------------------------------------------------------------
def test_yolo_defaults():
    layer = head("[yolo]\n", 25, 4, 4)  # num=1, classes=20, mask 0 -> 1*(5+20) channels
    assert layer.is_head and layer.classes == 20 and layer.mask == [0] and layer.total == 1
    assert layer.anchors.tolist() == [0.5, 0.5]
    assert layer.scale_x_y == 1.0 and layer.new_coords == 0
    assert layer.nms_kind == DEFAULT_NMS and layer.beta_nms == pytest.approx(0.6)
    assert layer.out_shape == (25, 4, 4) and layer.params == 0 and layer.bflops == 0


def test_yolo_options():
    layer = head(YOLO + "scale_x_y=1.05\nnms_kind=greedynms\nbeta_nms=0.5\nnew_coords=1\n", 21, 4, 4)
    assert layer.mask == [3, 4, 5] and layer.total == 6
    assert layer.anchors[6:8].tolist() == [81, 82]
    assert layer.scale_x_y == pytest.approx(1.05) and layer.new_coords == 1
    assert layer.nms_kind == GREEDY_NMS and layer.beta_nms == pytest.approx(0.5)
    assert head(YOLO + "nms_kind=diounms\n", 21, 4, 4).nms_kind == DIOU_NMS
    assert head(YOLO + "nms_kind=bogus\n", 21, 4, 4).nms_kind == DEFAULT_NMS  # Darknet: unknown -> default


def test_yolo_training_options_are_not_reported_unused(caplog):
    caplog.set_level(logging.WARNING, logger="darkcsp")
    head(YOLO + "jitter=.3\nignore_thresh=.7\ntruth_thresh=1\nrandom=1\niou_loss=ciou\niou_normalizer=0.07\n"
         "cls_normalizer=1.0\nresize=1.5\nmax=200\n", 21, 4, 4)
    assert "Unused field" not in caplog.text
    head(YOLO + "bogus_option=1\n", 21, 4, 4)
    assert "bogus_option" in caplog.text


def test_yolo_filters_mismatch_names_the_fix():
    with pytest.raises(CfgError) as e:
        head(YOLO.replace("classes=2", "classes=80"), 21, 4, 4)
    msg = str(e.value)
    assert "filters of the conv before [yolo] must be 255" in msg and "21" in msg


def test_yolo_mask_beyond_anchors(caplog):
    with pytest.raises(CfgError, match="mask index 6"):  # no 7th anchor anywhere
        head(YOLO.replace("mask=3,4,5", "mask=4,5,6"), 21, 4, 4)


def test_yolo_mask_beyond_num_but_listed(caplog):
    """cspx-p7-mish.cfg: the anchor is listed but num is too small; Darknet parses it, decoding is refused."""
    caplog.set_level(logging.WARNING, logger="darkcsp")
    layer = head(YOLO.replace("num=6", "num=5").replace("mask=3,4,5", "mask=3,4,5"), 21, 4, 4)
    assert "mask index 5" in caplog.text
    y = layer.forward([np.zeros((1, 21, 4, 4), np.float32)], {})
    with pytest.raises(CfgError, match="mask index 5"):
        layer.detections(y[0], 64, 64, 64, 64, 0.25)


def test_yolo_anchor_count(caplog):
    """parse_yolo reads at most 2*num anchor values; missing ones keep 0.5."""
    caplog.set_level(logging.WARNING, logger="darkcsp")
    layer = head(YOLO.replace("num=6", "num=5").replace("mask=3,4,5", "mask=2,3,4"), 21, 4, 4)
    assert layer.anchors.tolist() == [10, 14, 23, 27, 37, 58, 81, 82, 135, 169]
    assert "anchors" in caplog.text
    layer = head(YOLO.replace("num=6", "num=7").replace("mask=3,4,5", "mask=4,5,6"), 21, 4, 4)
    assert layer.anchors[12:].tolist() == [0.5, 0.5]


def test_shapes_tables_heads(conformance_dir):
    """Head layers in Darknet's parser shape tables: same type, in/out shape, classes and anchors count."""
    checked = 0
    for name in ("AlexeyAB-darknet__yolov3-tiny", "AlexeyAB-darknet__Gaussian_yolov3_BDD",
                 "AlexeyAB-darknet__yolov2", "AlexeyAB-darknet__yolov4-tiny-custom"):
        table = json.loads((conformance_dir / "shapes" / f"{name}.json").read_text())
        sections = read_cfg(conformance_dir / "shapes" / f"{name}.cfg")
        body = sections[1:]
        for entry in table["layers"]:
            if entry["type"] not in ("yolo", "Gaussian_yolo", "region"):
                continue
            c, h, w = entry["in_shape"]
            layer = head_from_section(body[entry["index"]], c, h, w)
            assert list(layer.out_shape) == entry["out_shape"]
            assert layer.classes == entry["classes"]
            assert (len(layer.mask) if hasattr(layer, "mask") else layer.num) == entry["n"]
            checked += 1
    assert checked == 8


# ----- forward vs Darknet's goldens and naive loops ------------------------------------------------------
@pytest.mark.parametrize("index", [4, 7, 10])
def test_yolo_forward_goldens(index):
    """zoo-yolo-heads: layer 4 plain, 7 scale_x_y=1.2, 10 scale_x_y=2.0 + new_coords=1."""
    d, npz, body, tol = zoo_layers("zoo-yolo-heads")
    x = npz[f"layer_{index - 1}"]
    layer = head_from_section(body[index], *x.shape[1:], index=index)
    got = layer.forward([x], {})
    want = npz[f"layer_{index}"]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=tol["rtol"], atol=tol["atol"])
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)  # in fact within float rounding


def _naive_yolo(x, m, k, scale, new_coords):
    y = x.astype(np.float64).copy()
    for a in range(m):
        for e in range(k):
            p = a * k + e
            if not new_coords and e not in (2, 3):
                y[:, p] = sig(y[:, p])
            if e in (0, 1):
                y[:, p] = y[:, p] * scale - 0.5 * (scale - 1)
    return y


@pytest.mark.parametrize("extra,scale,nc", [("", 1.0, 0), ("scale_x_y=1.1\n", 1.1, 0),
                                            ("scale_x_y=2.0\nnew_coords=1\n", 2.0, 1)])
def test_yolo_forward_naive(extra, scale, nc):
    layer = head(YOLO + extra, 21, 3, 5)
    x = np.random.default_rng(0).standard_normal((2, 21, 3, 5)).astype(np.float32)
    np.testing.assert_allclose(layer.forward([x], {}), _naive_yolo(x, 3, 7, scale, nc), rtol=1e-6, atol=1e-6)


def test_yolo_pjreddie_ignores_alexeyab_options(caplog):
    caplog.set_level(logging.WARNING, logger="darkcsp")
    layer = head(YOLO + "scale_x_y=1.2\n", 21, 3, 4, "pjreddie")
    assert layer.scale_x_y == 1.0 and "scale_x_y" in caplog.text  # reported unused, as pjreddie would
    x = np.random.default_rng(10).standard_normal((1, 21, 3, 4)).astype(np.float32)
    np.testing.assert_allclose(layer.forward([x], {}), _naive_yolo(x, 3, 7, 1.0, 0), rtol=1e-6, atol=1e-6)


# ----- ONNX lowering and decoding ------------------------------------------------------------------------
@pytest.mark.parametrize("text,shape", [
    (YOLO, (2, 21, 3, 5)),
    (YOLO + "scale_x_y=1.05\n", (1, 21, 3, 5)),
    (YOLO + "scale_x_y=2.0\nnew_coords=1\n", (1, 21, 3, 5)),
])
def test_onnx_lowering_matches_numpy(text, shape):
    check_head_lowering(head(text, *shape[1:]), shape)


def _naive_yolo_boxes(y, mask, anchors, classes, net_w, net_h, thresh, new_coords=False):
    """get_yolo_detections as written in Darknet, loop by loop (no letterbox correction)."""
    k = 5 + classes
    _, h, w = y.shape
    out = []
    for i in range(h * w):
        row, col = divmod(i, w)
        for n, m in enumerate(mask):
            t = y[n * k:(n + 1) * k, row, col].astype(np.float64)
            if not t[4] > thresh:
                continue
            if new_coords:
                bw, bh = t[2] ** 2 * 4 * anchors[2 * m] / net_w, t[3] ** 2 * 4 * anchors[2 * m + 1] / net_h
            else:
                bw, bh = np.exp(t[2]) * anchors[2 * m] / net_w, np.exp(t[3]) * anchors[2 * m + 1] / net_h
            probs = [t[4] * t[5 + j] if t[4] * t[5 + j] > thresh else 0 for j in range(classes)]
            out.append(([(col + t[0]) / w, (row + t[1]) / h, bw, bh], t[4], probs))
    return out


@pytest.mark.parametrize("extra,nc", [("scale_x_y=1.05\n", False), ("scale_x_y=2.0\nnew_coords=1\n", True)])
def test_yolo_decode_naive(extra, nc):
    layer = head(YOLO + extra, 21, 4, 6)
    x = np.random.default_rng(5).standard_normal((1, 21, 4, 6)).astype(np.float32)
    if nc:
        x = sig(x).astype(np.float32)
    y = layer.forward([x], {})[0]
    bs = layer.detections(y, 96, 64, 640, 480, 0.3)
    want = _naive_yolo_boxes(y, layer.mask, layer.anchors, 2, 96, 64, 0.3, nc)
    assert len(bs) == len(want) > 0
    for i, (box, obj, probs) in enumerate(want):
        np.testing.assert_allclose(bs.boxes[i], box, rtol=1e-5)
        assert bs.objectness[i] == pytest.approx(obj, rel=1e-6)
        np.testing.assert_allclose(bs.probs[i], probs, rtol=1e-5)


def test_yolo_decode_letterbox_half_pixel_offset():
    """correct_yolo_boxes: the float offset (net_w - new_w)/2.0 vs letterbox's integer paste."""
    layer = head(YOLO, 21, 1, 1)
    y = np.zeros((21, 1, 1), np.float32)
    y[4] = 0.9  # anchor 3 (81x82) at the centre cell, x = y = 0 -> box centre (0, 0)
    # 100x41 image into 64x64: new_w = 64, new_h = 41*64//100 = 26; delta_h = 38
    bs = layer.detections(y, 64, 64, 100, 41, 0.5, letter=True)
    assert len(bs) == 1
    x_rel, y_rel, w_rel, h_rel = bs.boxes[0]
    assert x_rel == pytest.approx(0.0, abs=1e-7)
    assert y_rel == pytest.approx((0 - 38 / 2.0 / 64) / (26 / 64), rel=1e-6)
    assert w_rel == pytest.approx(81 / 64, rel=1e-6) and h_rel == pytest.approx(82 / 64 * 64 / 26, rel=1e-6)
    # odd difference: 100x39 -> new_h = 24, delta 40 (even); 100x37 -> 23, delta 41 (odd: half-pixel offset)
    bs = layer.detections(y, 64, 64, 100, 37, 0.5, letter=True)
    assert bs.boxes[0][1] == pytest.approx((0 - 41 / 2.0 / 64) / (23 / 64), rel=1e-6)


@pytest.mark.parametrize("text,c,h,w", [
    (YOLO + "scale_x_y=1.05\n", 21, 3, 4),
    (YOLO + "scale_x_y=2.0\nnew_coords=1\n", 21, 3, 4),
])
def test_onnx_decode_matches_detections(text, c, h, w):
    """onnx_decode rows == detections() with thresh 0 and no image correction (image = network size)."""
    check_onnx_decode(head(text, c, h, w))
