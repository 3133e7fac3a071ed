"""The detection API (darkcsp.Detector) against Darknet's ``detector test`` on the corpus's trained cases:
from paths, from cv2.imread arrays, from Darknet float images and from lists (batched), on every backend."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

import darkcsp
from darkcsp import assets
from darkcsp.backends import available_backends
from darkcsp.detector import record
from darkcsp.errors import DarkcspError, ImageError, UnsupportedError

from tests.conftest import (TRAINED, assert_same_detections, case_weights, conformance_model, conformance_root,
                            photo_of, trained_images, write_cfg)

BACKENDS = [b for b in ("numpy", "onnxruntime", "opencv") if b in available_backends()]
_DETECTORS = {}


def detector(case: str, backend: str, **options) -> darkcsp.Detector:
    key = (case, backend, tuple(sorted(options.items())))
    if key not in _DETECTORS:
        if not case_weights(case).exists():
            pytest.skip(f"trained weights for {case} not fetched; run fetch_trained.py")
        names = next((conformance_root() / "cases" / case).glob("*.names"))
        _DETECTORS[key] = conformance_model(case).detector(backend=backend, names=names, **options)
    return _DETECTORS[key]


def image_case(case: str, image: str):
    photo = photo_of(case, image)
    return photo, json.loads((photo.parent / "detections.json").read_text())


def assert_darknets(got, photo, dj):
    """PNG decodes exactly as Darknet's stb_image: the same printed lines. JPEG decoders differ by a few 1/255
    per pixel (tests/test_detect.py has the measured deviation): same detections, probs within 0.02."""
    if photo.suffix.lower() == ".png":
        assert_same_detections(got, dj["detections"])
    else:
        assert_same_detections(got, dj["detections"], prob_tol=0.02, min_iou=0.98, lines=False)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case,image", trained_images())
def test_path_gives_darknets_detections(case, image, backend):
    photo, dj = image_case(case, image)
    det = detector(case, backend)
    assert det.letterbox == bool(dj["letter_box"])
    assert_darknets(det(photo), photo, dj)
    assert_darknets(det(str(photo)), photo, dj)


@pytest.mark.parametrize("case,image", trained_images())
def test_bgr_array_and_float_image_equal_the_path(case, image):
    import cv2
    photo, dj = image_case(case, image)
    det = detector(case, "onnxruntime")
    from_path = det(photo)
    assert det(cv2.imread(str(photo))) == from_path
    assert det(det.load_image(photo)) == from_path
    assert_darknets(from_path, photo, dj)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", TRAINED)
def test_list_runs_in_batches_equal_to_single_calls(case, backend):
    import cv2
    photos = [image_case(case, p.name)[0] for p in sorted((conformance_root() / "cases" / case / "images").iterdir())]
    single = detector(case, backend)
    batched = detector(case, backend, batch_size=2)
    mixed = [photos[0], cv2.imread(str(photos[-1]))] + photos[1:]  # paths and arrays in one list, odd count
    want = [single(p) for p in mixed]
    got = batched(mixed)
    assert len(got) == len(mixed)
    for g, w in zip(got, want):
        assert [(d.class_id, d.box_index, d.print_line()) for d in g] == [(d.class_id, d.box_index, d.print_line())
                                                                          for d in w]
        np.testing.assert_allclose([d.prob for d in g], [d.prob for d in w], atol=1e-5)
    for g, p in zip(got[2:], photos[1:]):
        assert_darknets(g, p, image_case(case, p.parent.name)[1])


def test_detection_fields_and_record(tmp_path, capsys):
    """Detection's public fields, to_dict() == the entry of `darkcsp detect --json`, record() == its record."""
    from darkcsp.cli import main
    case = "yolov3-tiny-coco"
    photo, dj = image_case(case, "dog")
    det = detector(case, "onnxruntime")
    got = det(photo)
    d = got[0]
    assert (d.class_id, d.class_name) == (dj["detections"][0]["class_id"], dj["detections"][0]["class_name"])
    assert d.box == d.to_dict()["box"] and len(d.box) == 4
    assert set(d.to_dict()) == {"class_id", "class_name", "prob", "x", "y", "w", "h", "box"}
    d_case = conformance_root() / "cases" / case
    rc = main(["detect", "--cfg", str(d_case / "model.cfg"), "--weights", str(case_weights(case)), "--names",
               str(next(d_case.glob("*.names"))), "--no-save", "--json-file", "-", str(photo)])
    assert rc == 0
    cli = json.loads(capsys.readouterr().out)
    assert cli == [record(str(photo), dj["image_w"], dj["image_h"], got)]


def test_with_options_shares_the_backend():
    photo, dj = image_case("yolov4-tiny-coco", "bus")
    det = detector("yolov4-tiny-coco", "onnxruntime")
    strict = det.with_options(thresh=0.5)
    assert strict.backend is det.backend and (strict.thresh, strict.nms, det.thresh) == (0.5, det.nms, 0.25)
    want = [d["class_name"] for d in dj["detections"] if d["prob"] > 0.5]
    assert [d.class_name for d in strict(photo)] == want and len(want) < len(dj["detections"])
    with pytest.raises(DarkcspError, match="nms"):
        det.with_options(nms=2)


def test_draw_marks_each_box():
    import cv2
    photo, dj = image_case("yolov4-tiny-coco", "bus")
    det = detector("yolov4-tiny-coco", "onnxruntime")
    image = cv2.imread(str(photo))
    dets = det(image)
    drawn = det.draw(image, dets)
    assert drawn.shape == image.shape and drawn.dtype == np.uint8
    assert not np.shares_memory(drawn, image)
    for d in dets:  # each box's outline changed pixels along its top-left corner area
        x1, y1, x2, y2 = d.box
        assert np.any(drawn[y1:y2 + 1, x1:x1 + 3] != image[y1:y2 + 1, x1:x1 + 3])


def test_load_pretrained_name_offline(tmp_path, monkeypatch):
    """darkcsp.load("yolov4-tiny") once fetched: read from the cache, no pip (the cache is pre-filled from
    the corpus: same file, same sha256)."""
    w = case_weights("yolov4-tiny-coco")
    photo, dj = image_case("yolov4-tiny-coco", "bus")
    if not w.exists():
        pytest.skip("yolov4-tiny-coco weights not fetched")
    cache = tmp_path / "cache"
    cache.mkdir()
    os.symlink(w, cache / "yolov4-tiny.weights")
    monkeypatch.setenv("DARKCSP_CACHE", str(cache))

    def no_network(*args, **kwargs):
        raise AssertionError("darkcsp.load fetched although the weights were cached")

    monkeypatch.setattr(assets, "_fetch_package", no_network)
    model = darkcsp.load("yolov4-tiny")
    assert model.weights_file == cache / "yolov4-tiny.weights"
    got = model.detector()(photo)
    assert [d.class_name for d in got] == [d["class_name"] for d in dj["detections"]]  # COCO names by default
    assert_darknets(got, photo, dj)


def test_unknown_model_name_is_a_clear_error():
    with pytest.raises(DarkcspError, match="not-a-model"):
        darkcsp.load("not-a-model")


@pytest.fixture
def tiny_detector(tiny_detector_cfg):
    return darkcsp.load(tiny_detector_cfg).detector(backend="numpy")


@pytest.mark.parametrize("bad,match", [
    ("missing.jpg", "not found"),
    (np.zeros((10, 10, 3), np.int32), "dtype int32"),
    (np.zeros((3, 10, 10), np.uint8), "shape"),
    (np.zeros((10, 10), np.float32), "shape"),
    (np.zeros((0, 10, 3), np.uint8), "no pixels"),
    (np.full((3, 4, 4), np.nan, np.float32), "NaN"),
    (12, "not int"),
    ([], "empty list"),
])
def test_bad_images_raise_image_error(tiny_detector, tmp_path, bad, match):
    if isinstance(bad, str):
        bad = tmp_path / bad
    with pytest.raises(ImageError, match=match):
        tiny_detector(bad)


def test_unreadable_file_in_a_list_names_it(tiny_detector, tmp_path):
    good = tmp_path / "good.png"
    import cv2
    cv2.imwrite(str(good), np.zeros((8, 8, 3), np.uint8))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(ImageError, match="bad.jpg"):
        tiny_detector([good, bad])


@pytest.mark.parametrize("option,value", [("thresh", 1.5), ("nms", -0.1), ("hier", "x"), ("batch_size", 0)])
def test_bad_options_raise(tiny_detector_cfg, option, value):
    model = darkcsp.load(tiny_detector_cfg)
    with pytest.raises(DarkcspError, match=option):
        model.detector(backend="numpy", **{option: value})


def test_not_a_detector(tmp_path, tiny_detector_cfg):
    cfg = write_cfg(tmp_path, tiny_detector_cfg.read_text().split("[yolo]")[0])
    with pytest.raises(UnsupportedError, match="no detection head"):
        darkcsp.load(cfg).detector(backend="numpy")


def test_random_weights_start_from_the_yolo_prior(tiny_detector_cfg):
    """Random weights: the heads' objectness/class biases start at logit(0.01), so a random detector reports
    a few boxes at most (with Darknet's zero biases the same four images give 154 printed detections)."""
    model = darkcsp.load(tiny_detector_cfg)
    heads = [layer for layer in model.graph.layers if layer.is_head]
    assert len(heads) == 2
    for head in heads:
        biases = model.weights[head.inputs[0]]["biases"].reshape(3, 7)
        np.testing.assert_allclose(biases[:, 4:], np.log(0.01 / 0.99), rtol=1e-6)
        np.testing.assert_array_equal(biases[:, :4], 0)
    rng = np.random.default_rng(0)
    dets = model.detector(backend="numpy")([rng.random((3, 32, 32), dtype=np.float32) for _ in range(4)])
    assert sum(len(d) for d in dets) <= 4
