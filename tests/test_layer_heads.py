"""Detection heads: [yolo], [Gaussian_yolo], [region], [detection].

Options and shape checks against Darknet's parser rules, the forward against Darknet's per-layer goldens
(zoo-yolo-heads: plain / scale_x_y / new_coords heads; zoo-gaps-a: [region] softmax=0) and against naive
loops written out here, the ONNX lowering against the NumPy forward, and the decoders against naive loops."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from darkcsp.cfg import Option, Section, read_cfg
from darkcsp.errors import CfgError, UnsupportedError
from darkcsp.graph import build_graph
from darkcsp.layers.yolo import DEFAULT_NMS, DIOU_NMS, GREEDY_NMS

from conftest import conformance_root
from layer_harness import last_layer


def _net(c: int, h: int, w: int) -> str:
    return f"[net]\nwidth={w}\nheight={h}\nchannels={c}\n"


def head(section_text: str, c: int, h: int, w: int, dialect: str = "alexeyab"):
    """A head layer reading a (c, h, w) network input directly."""
    return last_layer(_net(c, h, w) + section_text, dialect)


def sig(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def run_ort(layer, x):
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from darkcsp.onnx.builder import OnnxGraph
    g = OnnxGraph()
    y = layer.to_onnx(g, ["in0"], {})
    graph = helper.make_graph(list(g.nodes) + [helper.make_node("Identity", [y], ["out"])], "t",
                              [helper.make_tensor_value_info("in0", TensorProto.FLOAT, list(x.shape))],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
                              initializer=g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(["out"], {"in0": x})[0]


def run_ort_decode(layer, x, net_w, net_h):
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from darkcsp.onnx.builder import OnnxGraph
    g = OnnxGraph()
    y = layer.onnx_decode(g, "in0", net_w, net_h)
    graph = helper.make_graph(list(g.nodes) + [helper.make_node("Identity", [y], ["out"])], "t",
                              [helper.make_tensor_value_info("in0", TensorProto.FLOAT, list(x.shape))],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
                              initializer=g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(["out"], {"in0": x})[0]


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


def test_gaussian_shape_check():
    text = "[Gaussian_yolo]\nmask=0,1,2\nanchors=1,2, 3,4, 5,6\nclasses=10\nnum=3\n"
    layer = head(text, 57, 4, 4)
    assert layer.type == "Gaussian_yolo" and layer.is_head and layer.out_shape == (57, 4, 4)
    with pytest.raises(CfgError, match="must be 57"):
        head(text, 45, 4, 4)


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


def test_detection_options_and_errors():
    text = "[detection]\nclasses=3\ncoords=4\nnum=2\nside=2\nsoftmax=1\nsqrt=1\n"
    # side^2*((1+coords)*num+classes) = 4*(10+3) = 52 inputs
    layer = head(text, 52, 1, 1)
    assert layer.out_shape == (52, 1, 1) and layer.is_head and layer.sqrt == 1
    with pytest.raises(CfgError, match="side"):
        head(text, 50, 1, 1)


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


def head_from_section(section: Section, c: int, h: int, w: int, index: int = 0):
    net = Section("net", "test", 0, {"width": Option("width", str(w), 0), "height": Option("height", str(h), 0),
                                     "channels": Option("channels", str(c), 0)})
    layer = build_graph([net, section]).layers[0]
    layer.index = index
    return layer


# ----- forward vs Darknet's goldens ---------------------------------------------------------------------
def _zoo(case: str):
    d = conformance_root() / "cases" / case
    if not (d / "all_layers.npz").exists():
        pytest.skip(f"case {case} not in the corpus")
    return d, np.load(d / "all_layers.npz"), read_cfg(d / "model.cfg")[1:], \
        json.loads((d / "meta.json").read_text())["tolerance"]["recommended"]


@pytest.mark.parametrize("index", [4, 7, 10])
def test_yolo_forward_goldens(index):
    """zoo-yolo-heads: layer 4 plain, 7 scale_x_y=1.2, 10 scale_x_y=2.0 + new_coords=1."""
    d, npz, body, tol = _zoo("zoo-yolo-heads")
    x = npz[f"layer_{index - 1}"]
    layer = head_from_section(body[index], *x.shape[1:], index=index)
    got = layer.forward([x], {})
    want = npz[f"layer_{index}"]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=tol["rtol"], atol=tol["atol"])
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)  # in fact within float rounding


def test_region_forward_golden():
    """zoo-gaps-a layer 18: [region] softmax=0 -> (1, H, W, num*K), logistic on objectness only."""
    d, npz, body, tol = _zoo("zoo-gaps-a")
    x = npz["layer_17"]
    layer = head_from_section(body[18], *x.shape[1:], index=18)
    got = layer.forward([x], {})
    want = npz["layer_18"]
    assert got.shape == want.shape == (1, 16, 16, 27)
    np.testing.assert_allclose(got, want, rtol=tol["rtol"], atol=tol["atol"])
    assert layer.out_shape == (27, 16, 16)  # Darknet's (C, H, W) stays the graph shape


# ----- forward vs naive loops -----------------------------------------------------------------------------
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


def test_yolo_pjreddie_ignores_alexeyab_options(caplog):
    caplog.set_level(logging.WARNING, logger="darkcsp")
    layer = head(YOLO + "scale_x_y=1.2\n", 21, 3, 4, "pjreddie")
    assert layer.scale_x_y == 1.0 and "scale_x_y" in caplog.text  # reported unused, as pjreddie would
    x = np.random.default_rng(10).standard_normal((1, 21, 3, 4)).astype(np.float32)
    np.testing.assert_allclose(layer.forward([x], {}), _naive_yolo(x, 3, 7, 1.0, 0), rtol=1e-6, atol=1e-6)


def test_detection_forward_softmax():
    layer = head("[detection]\nclasses=3\ncoords=4\nnum=2\nside=2\nsoftmax=1\n", 52, 1, 1)
    x = np.random.default_rng(3).standard_normal((1, 52, 1, 1)).astype(np.float32)
    y = layer.forward([x], {}).reshape(-1)
    flat = x.reshape(-1).astype(np.float64)
    for cell in range(4):
        v = flat[cell * 3:cell * 3 + 3]
        np.testing.assert_allclose(y[cell * 3:cell * 3 + 3], np.exp(v) / np.exp(v).sum(), rtol=1e-6)
    np.testing.assert_array_equal(y[12:], x.reshape(-1)[12:])


# ----- ONNX lowering ----------------------------------------------------------------------------------
@pytest.mark.parametrize("text,shape", [
    (YOLO, (2, 21, 3, 5)),
    (YOLO + "scale_x_y=1.05\n", (1, 21, 3, 5)),
    (YOLO + "scale_x_y=2.0\nnew_coords=1\n", (1, 21, 3, 5)),
    ("[Gaussian_yolo]\nmask=0,1\nanchors=1,2, 3,4\nclasses=2\nnum=2\nscale_x_y=1.2\n", (1, 22, 3, 4)),
    ("[region]\nanchors=1,1, 2,2\nclasses=3\nnum=2\nsoftmax=0\n", (1, 16, 3, 4)),
    ("[region]\nanchors=1,1, 2,2\nclasses=3\nnum=2\nsoftmax=1\n", (2, 16, 3, 4)),
    ("[detection]\nclasses=3\ncoords=4\nnum=2\nside=2\nsoftmax=1\n", (1, 52, 1, 1)),
])
def test_onnx_lowering_matches_numpy(text, shape):
    layer = head(text, *shape[1:])
    x = np.random.default_rng(4).standard_normal(shape).astype(np.float32) * 3
    want = layer.forward([x], {})
    got = run_ort(layer, x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


# ----- decoding -------------------------------------------------------------------------------------
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


@pytest.mark.parametrize("text,c,h,w", [
    (YOLO + "scale_x_y=1.05\n", 21, 3, 4),
    (YOLO + "scale_x_y=2.0\nnew_coords=1\n", 21, 3, 4),
    ("[Gaussian_yolo]\nmask=0,1\nanchors=10,20, 30,40\nclasses=2\nnum=2\n", 22, 3, 4),
    ("[region]\nanchors=1,1.5, 2,2.5\nclasses=3\nnum=2\nsoftmax=1\n", 16, 3, 4),
])
def test_onnx_decode_matches_detections(text, c, h, w):
    """onnx_decode rows == detections() with thresh 0 and no image correction (image = network size)."""
    layer = head(text, c, h, w)
    x = np.random.default_rng(8).standard_normal((1, c, h, w)).astype(np.float32)
    y = layer.forward([x], {})
    got = run_ort_decode(layer, y, 96, 64)
    bs = layer.detections(y[0], 96, 64, 96, 64, -np.inf)
    assert got.shape == (1, len(bs), 4 + 1 + layer.classes)
    np.testing.assert_allclose(got[0, :, :4], bs.boxes, rtol=1e-5, atol=1e-6)
    if layer.type != "region":  # region detections carry objectness 1 (Darknet); decode gives p
        np.testing.assert_allclose(got[0, :, 4], bs.objectness, rtol=1e-6)
    np.testing.assert_allclose(got[0, :, 5:], bs.probs, rtol=1e-5, atol=1e-7)
