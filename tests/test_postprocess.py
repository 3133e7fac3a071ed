"""get_network_boxes + NMS + Darknet's print order, from Darknet's own head outputs (expected.npz) to the
detections Darknet printed (detections.json / darknet_cli_check.json), plus hand-computed NMS cases."""
from __future__ import annotations

import json

import numpy as np
import pytest

from darkcsp.cfg import Option, Section, read_cfg
from darkcsp.graph import build_graph
from darkcsp.layers.yolo import DEFAULT_NMS, DIOU_NMS, GREEDY_NMS, BoxSet
from darkcsp.postprocess import Detection, box_diou, box_iou, class_names, detect, do_nms, print_order

from tests.conftest import assert_same_detections, conformance_root, trained_images



def head_layers(cfg, expected):
    """The case's head layers, each built on its own with the input shape Darknet gave it."""
    sections = read_cfg(cfg)
    net_w, net_h = sections[0].int("width"), sections[0].int("height")
    heads = []
    for i, s in enumerate(sections[1:]):
        if s.name in ("yolo", "Gaussian_yolo", "region", "detection"):
            a = expected[f"layer_{i}"]
            c, h, w = (a.shape[3], a.shape[1], a.shape[2]) if s.name == "region" else a.shape[1:]
            net = Section("net", "t", 0, {"width": Option("width", str(w), 0),
                                          "height": Option("height", str(h), 0),
                                          "channels": Option("channels", str(c), 0)})
            layer = build_graph([net, s]).layers[0]
            layer.index = i
            heads.append(layer)
    return heads, net_w, net_h


@pytest.mark.parametrize("case,image", trained_images())
def test_decode_nms_order_from_darknet_heads(case, image):
    """(a) Darknet's head outputs -> our decode + NMS + order == Darknet's printed detections."""
    d = conformance_root() / "cases" / case
    img = d / "images" / image
    expected = np.load(img / "expected.npz")
    dj = json.loads((img / "detections.json").read_text())
    heads, net_w, net_h = head_layers(d / "model.cfg", expected)
    names_file = next(d.glob("*.names"))
    names = class_names(names_file)
    outputs = {h.index: expected[f"layer_{h.index}"] for h in heads}
    got = detect(heads, outputs, net_w, net_h, dj["image_w"], dj["image_h"], names, dj["thresh"],
                 dj["hier_thresh"], dj["nms"], bool(dj["letter_box"]))
    assert_same_detections(got, dj["detections"])
    printed = json.loads((d / "darknet_cli_check.json").read_text())["images"][image]["darknet_printed"]
    assert [g.print_line() for g in got] == printed


# ----- box.c --------------------------------------------------------------------------------------
def test_box_iou_hand_computed():
    a = np.array([0.5, 0.5, 0.4, 0.4], np.float32)      # [0.3, 0.7]^2
    b = np.array([[0.6, 0.5, 0.4, 0.4],                 # overlap 0.3 x 0.4 = 0.12; union 0.32 - 0.12
                  [0.9, 0.9, 0.1, 0.1],                 # disjoint
                  [0.5, 0.5, 0.4, 0.4]], np.float32)    # identical
    iou = box_iou(a, b)
    assert iou[0] == pytest.approx(0.12 / (0.16 + 0.16 - 0.12), rel=1e-5)
    assert iou[1] == 0 and iou[2] == pytest.approx(1.0)


def test_box_diou_hand_computed():
    a = np.array([0.5, 0.5, 0.4, 0.4], np.float32)
    b = np.array([[0.6, 0.5, 0.4, 0.4]], np.float32)
    # enclosing box x 0.3..0.8, y 0.3..0.7 -> c2 = 0.25 + 0.16 = 0.41; d2 = 0.01
    iou = 0.12 / 0.2
    assert box_diou(a, b, 0.6)[0] == pytest.approx(iou - (0.01 / 0.41) ** 0.6, rel=1e-5)
    assert box_diou(a, b, 1.0)[0] == pytest.approx(iou - 0.01 / 0.41, rel=1e-5)


def _set(boxes, obj, probs):
    return BoxSet(np.asarray(boxes, np.float32), np.asarray(obj, np.float32), np.asarray(probs, np.float32))


def test_nms_partition_order():
    """do_nms_sort's partition swaps objectness-0 dets with the current last one (order is permuted)."""
    boxes = [[0.1 * (i + 1), 0.5, 0.05, 0.05] for i in range(4)]
    dets = _set(boxes, [0.5, 0, 0.7, 0], [[0.5], [0], [0.7], [0]])
    out = do_nms(dets, 0.45)
    # partition: [0, 1, 2, 3] -> i=1 swaps with 3 -> [0, 3, 2, 1]; i=1 again swaps with 2 -> [0, 2, 3, 1]
    # then the first two are sorted by class 0 prob descending -> [2, 0], tail [3, 1]
    np.testing.assert_allclose(out.boxes[:, 0], [0.3, 0.1, 0.4, 0.2])


def test_nms_suppresses_per_class():
    boxes = [[0.5, 0.5, 0.4, 0.4], [0.52, 0.5, 0.4, 0.4], [0.9, 0.9, 0.1, 0.1]]
    probs = [[0.6, 0.0], [0.8, 0.3], [0.7, 0.0]]
    out = do_nms(_set(boxes, [0.9, 0.9, 0.9], probs), 0.45)
    by_x = {round(float(b[0]), 2): p for b, p in zip(out.boxes, out.probs)}
    assert by_x[0.5][0] == 0                      # lower-prob overlapping box suppressed for class 0
    assert by_x[0.52][0] == pytest.approx(0.8) and by_x[0.52][1] == pytest.approx(0.3)
    assert by_x[0.9][0] == pytest.approx(0.7)     # far box kept


def test_greedy_nms_uses_diou():
    """greedynms suppresses when IoU - (d2/c2)^0.6 > nms: it keeps overlapping boxes whose centres are far
    enough apart that default NMS (plain IoU) would suppress."""
    a = [0.5, 0.5, 0.4, 0.4]
    b = [0.6, 0.5, 0.4, 0.4]  # IoU 0.6, DIoU term (0.01/0.41)^0.6 = 0.108 -> 0.492 > 0.45: still suppressed
    c = [0.62, 0.5, 0.4, 0.4]  # IoU 0.538, term (0.0144/0.4304)^0.6 = 0.130 -> 0.408 < 0.45: kept by greedy
    for other, default_kept, greedy_kept in ((b, False, False), (c, False, True)):
        dets = _set([a, other], [0.9, 0.9], [[0.9], [0.8]])
        assert (do_nms(dets, 0.45, DEFAULT_NMS).probs.min() > 0) == default_kept
        assert (do_nms(dets, 0.45, GREEDY_NMS).probs.min() > 0) == greedy_kept
        # diounms with beta_nms=0.6 is the same test
        assert (do_nms(dets, 0.45, DIOU_NMS, 0.6).probs.min() > 0) == greedy_kept


def test_print_order():
    """Best class over thresh first, boxes sorted by left edge, other classes > thresh in index order."""
    boxes = [[0.7, 0.5, 0.2, 0.2], [0.3, 0.5, 0.2, 0.2], [0.5, 0.5, 0.1, 0.1]]
    probs = [[0.3, 0.9, 0.0], [0.5, 0.0, 0.6], [0.2, 0.0, 0.0]]
    out = print_order(_set(boxes, [1, 1, 1], probs), 0.25, ["a", "b", "c"], 100, 100)
    assert [(d.class_name, round(d.prob, 2), d.best) for d in out] == [
        ("c", 0.6, True), ("a", 0.5, False), ("b", 0.9, True), ("a", 0.3, False)]
    assert out[0].print_line() == "c: 60%\t(left_x:   20   top_y:   40   width:   20   height:   20)"


def test_print_order_pjreddie():
    """pjreddie's draw_detections: post-NMS array order, every class over thresh in index order."""
    boxes = [[0.7, 0.5, 0.2, 0.2], [0.3, 0.5, 0.2, 0.2]]
    probs = [[0.3, 0.9], [0.5, 0.0]]
    out = print_order(_set(boxes, [1, 1], probs), 0.25, ["a", "b"], 100, 100, dialect="pjreddie")
    assert [(d.class_name, d.box_index) for d in out] == [("a", 0), ("b", 0), ("a", 1)]


def test_print_order_dont_show():
    out = print_order(_set([[0.5, 0.5, 0.2, 0.2]], [1], [[0.9, 0.4]]), 0.25, ["dont_show", "b"], 10, 10)
    assert [d.class_name for d in out] == ["b", "dont_show"]


def test_ext_box_rounding():
    d = Detection(0, "x", 0.5, 0.5, 0.5, 0.25, 0.5, 1.0, 10, 10)
    assert d.ext_box() == (4.0, 3.0, 3.0, 5.0)  # round(3.75)=4, round(2.5)=3 (half away from zero)
    assert d.box_pixels() == [3, 2, 6, 7]


def test_class_names_crlf(tmp_path):
    p = tmp_path / "x.names"
    p.write_bytes(b"face \r\nShirt\r\nBoot")
    assert class_names(p) == ["face ", "Shirt", "Boot"]  # Darknet's fgetl drops CR, keeps the space


# ----- vectorised NMS == box.c, one det at a time -------------------------------------------------------
def reference_do_nms(dets: BoxSet, thresh: float, kind: int, beta_nms: float = 0.6) -> BoxSet:
    """box.c do_nms_sort / diounms_sort transcribed loop for loop (darkcsp's implementation before it was
    vectorised): the oracle for the vectorised do_nms."""
    boxes, obj, probs = dets.boxes.copy(), dets.objectness.copy(), dets.probs.copy()
    order = list(range(len(obj)))
    k = len(order) - 1
    i = 0
    while i <= k:
        if obj[order[i]] == 0:
            order[i], order[k] = order[k], order[i]
            k -= 1
        else:
            i += 1
    order = np.asarray(order, dtype=np.int64)
    total = k + 1
    head, tail = order[:total], order[total:]
    for c in range(probs.shape[1]):
        head = head[np.argsort(-probs[head, c], kind="stable")]
        p = probs[:, c]
        for i in range(total):
            if p[head[i]] == 0:
                continue
            rest = head[i + 1:]
            if kind == DEFAULT_NMS:
                score = box_iou(boxes[head[i]], boxes[rest])
            else:
                score = box_diou(boxes[head[i]], boxes[rest], 0.6 if kind == GREEDY_NMS else beta_nms)
            p[rest[score > np.float32(thresh)]] = 0
    order = np.concatenate([head, tail])
    return BoxSet(boxes[order], obj[order], probs[order])


def random_candidates(n: int, classes: int, seed: int, crowd: float = 0.5) -> BoxSet:
    """n candidate boxes like a detector's before NMS: clusters of overlapping boxes (a fraction ``crowd`` of
    them around a few dozen objects) plus scattered ones, sparse class probs zeroed below 0.25, some exact
    ties, some objectness exactly 0."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0.05, 0.95, (max(n // 200, 1), 2))
    in_crowd = rng.random(n) < crowd
    xy = np.where(in_crowd[:, None], centres[rng.integers(0, len(centres), n)] + rng.normal(0, 0.02, (n, 2)),
                  rng.uniform(0, 1, (n, 2)))
    wh = rng.uniform(0.01, 0.25, (n, 2))
    boxes = np.concatenate([xy, wh], axis=1).astype(np.float32)
    obj = rng.uniform(0.25, 1, n).astype(np.float32)
    obj[rng.random(n) < 0.02] = 0
    probs = (rng.uniform(0, 1, (n, classes)) * (rng.random((n, classes)) < 2.0 / classes)).astype(np.float32)
    probs[probs <= 0.25] = 0
    probs[rng.random(n) < 0.05] = np.float32(0.5)  # exact ties: the stable sort must keep Darknet's order
    boxes[rng.random(n) < 0.01] = boxes[0]          # identical boxes
    return BoxSet(boxes, obj, probs)


def assert_same_boxset(got: BoxSet, want: BoxSet) -> None:
    np.testing.assert_array_equal(got.boxes, want.boxes)
    np.testing.assert_array_equal(got.objectness, want.objectness)
    np.testing.assert_array_equal(got.probs, want.probs)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("kind", [DEFAULT_NMS, GREEDY_NMS, DIOU_NMS])
def test_vectorised_nms_equals_box_c_small(kind, seed):
    dets = random_candidates(300 + 40 * seed, classes=1 + seed % 4, seed=seed, crowd=0.2 + 0.06 * seed)
    assert_same_boxset(do_nms(dets, 0.45, kind, 0.8), reference_do_nms(dets, 0.45, kind, 0.8))


@pytest.mark.parametrize("n,kind,classes", [(10_000, DEFAULT_NMS, 2), (15_000, GREEDY_NMS, 1),
                                            (20_000, DIOU_NMS, 1)])
def test_vectorised_nms_equals_box_c_large(n, kind, classes):
    """10-20k candidates (random-weight detectors give that many): same kept boxes, same order."""
    dets = random_candidates(n, classes, seed=n, crowd=0.7)
    got = do_nms(dets, 0.45, kind, 0.6)
    want = reference_do_nms(dets, 0.45, kind, 0.6)
    assert_same_boxset(got, want)
    suppressed = (dets.probs > 0).sum() - (got.probs > 0).sum()
    assert suppressed > n // 10  # the sets are crowded enough that NMS has real work to do


def test_vectorised_nms_long_chain():
    """Boxes each overlapping the next one, in score order: the round-based resolution hands over to the
    sequential walk, and the alternate keep/suppress pattern of box.c comes out."""
    n = 400
    x = np.arange(n, dtype=np.float32) * np.float32(0.001) + np.float32(0.2)
    boxes = np.stack([x, np.full(n, 0.5, np.float32), np.full(n, 0.0012, np.float32),
                      np.full(n, 0.1, np.float32)], axis=1)
    probs = np.linspace(0.9, 0.3, n, dtype=np.float32)[:, None]
    dets = BoxSet(boxes, np.ones(n, np.float32), probs)
    got = do_nms(dets, 0.05, DEFAULT_NMS)  # neighbours: IoU 0.0002/0.0022 = 0.09; next but one: 0
    assert_same_boxset(got, reference_do_nms(dets, 0.05, DEFAULT_NMS))
    np.testing.assert_array_equal(got.probs[:, 0] > 0, np.arange(n) % 2 == 0)
