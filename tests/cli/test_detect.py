"""`darkcsp detect` end to end against Darknet's `detector test` on the trained cases.

(b) Darknet's own input tensor (input.npy) through our full model -> the detections Darknet printed, exactly
    (same lines), on every backend.
(c) the image files themselves are tests/test_detector.py's (PNG: the same printed lines; JPEG, OpenCV's
    libjpeg-turbo vs Darknet's stb_image decoder, a few 1/255 per pixel: same classes in the same order, probs
    within 0.02 and boxes IoU >= 0.98. Measured on the 7 corpus JPEGs: max prob difference 0.0074
    (yolov4-tiny-coco dog.jpg), the printed percentage differs by 1 on some lines (bus 74% vs 73%)).
Plus the CLI itself: default model, JSON, annotated outputs, video, errors, and the cfgs we ship.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from darkcsp.backends import available_backends
from darkcsp.cli import main
from darkcsp.graph import load_graph

from tests.conftest import (REPO, TRAINED, assert_same_detections, case_weights, conformance_model,
                            conformance_root, trained_images, write_cfg)

_DETECTORS = {}


def trained_detector(case, backend="numpy"):
    w = case_weights(case)
    if not w.exists():
        pytest.skip(f"trained weights for {case} not fetched ({w}); run fetch_trained.py")
    if (case, backend) not in _DETECTORS:
        names = next((conformance_root() / "cases" / case).glob("*.names"))
        _DETECTORS[case, backend] = conformance_model(case).detector(backend=backend, names=names)
    return _DETECTORS[case, backend]


def _image_case(case, image):
    d = conformance_root() / "cases" / case / "images" / image
    dj = json.loads((d / "detections.json").read_text())
    f = next(p for p in d.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    return d, dj, f


def _detect_darknet_input(det, x, dj):
    """Darknet's own input tensor through the detector's backend and decoding."""
    return det.postprocess(det.backend.run(x), dj["image_w"], dj["image_h"])


@pytest.mark.parametrize("case,image", trained_images())
def test_full_model_from_darknet_input(case, image):
    """(b) input.npy -> our model -> same detections and printed lines as Darknet. (c), the image files,
    is tests/test_detector.py."""
    d = conformance_root() / "cases" / case / "images" / image
    dj = json.loads((d / "detections.json").read_text())
    got = _detect_darknet_input(trained_detector(case), np.load(d / "input.npy"), dj)
    assert_same_detections(got, dj["detections"])


@pytest.mark.parametrize("case", TRAINED)
def test_backends_give_identical_detections(case):
    """numpy, onnxruntime and OpenCV DNN: the same printed detections for every image of the case."""
    backends = [b for b in ("numpy", "onnxruntime", "opencv") if b in available_backends()]
    images = sorted((conformance_root() / "cases" / case / "images").iterdir())
    detectors = {b: trained_detector(case, b) for b in backends}
    for sub in images:
        dj = json.loads((sub / "detections.json").read_text())
        x = np.load(sub / "input.npy")
        lines, probs = {}, {}
        for b, det in detectors.items():
            dets = _detect_darknet_input(det, x, dj)
            lines[b] = [(d.class_id, d.print_line()) for d in dets]
            probs[b] = np.array([d.prob for d in dets])
        for b in backends[1:]:
            assert lines[b] == lines["numpy"], (sub.name, b)
            np.testing.assert_allclose(probs[b], probs["numpy"], atol=1e-4)


# ----- our cfgs -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ours,case", [("yolov4-tiny.cfg", "yolov4-tiny-coco"),
                                       ("yolov3-tiny.cfg", "yolov3-tiny-coco")])
def test_shipped_cfg_has_darknets_graph(ours, case, conformance_dir):
    a = load_graph(REPO / "cfg" / ours)
    b = load_graph(conformance_dir / "cases" / case / "model.cfg")
    assert len(a.layers) == len(b.layers)
    for la, lb in zip(a.layers, b.layers):
        assert (la.type, la.inputs, la.out_shape, la.params) == (lb.type, lb.inputs, lb.out_shape, lb.params), la
        assert la.bflops == pytest.approx(lb.bflops)
        if la.is_head:
            assert la.mask == lb.mask and la.classes == lb.classes
            np.testing.assert_array_equal(la.anchors, lb.anchors)
            assert (la.scale_x_y, la.new_coords, la.nms_kind, la.beta_nms) == \
                (lb.scale_x_y, lb.new_coords, lb.nms_kind, lb.beta_nms)
    assert a.params_total == b.params_total
    assert a.net.input_shape == b.net.input_shape


# ----- CLI ----------------------------------------------------------------------------------------------
def _case_args(case):
    d = conformance_root() / "cases" / case
    w = case_weights(case)
    if not w.exists():
        pytest.skip(f"trained weights for {case} not fetched")
    return ["--cfg", str(d / "model.cfg"), "--weights", str(w), "--names", str(next(d.glob("*.names")))]


def test_cli_prints_darknets_lines_and_json(tmp_path, capsys):
    case, image = "yolov3-tiny-coco", "coffee"
    args = _case_args(case)  # skips without the corpus or the trained weights
    d, dj, src = _image_case(case, image)
    f = tmp_path / src.name  # never let a CLI test write next to the read-only corpus
    shutil.copy(src, f)
    out = tmp_path / "out"
    rc = main(["detect", *args, "--backend", "numpy", "--out", str(out), "--json-file", str(out / "d.json"), str(f)])
    assert rc == 0
    stdout = capsys.readouterr().out.splitlines()
    printed = json.loads((d.parent.parent / "darknet_cli_check.json").read_text())["images"][image]["darknet_printed"]
    assert stdout[1:] == printed and stdout[0].startswith(str(f))
    assert (out / f.name).is_file()
    records = json.loads((out / "d.json").read_text())
    assert len(records) == 1 and records[0]["width"] == dj["image_w"] and records[0]["height"] == dj["image_h"]
    for got, want in zip(records[0]["detections"], dj["detections"]):
        assert got["class_id"] == want["class_id"] and got["class_name"] == want["class_name"]
        assert got["prob"] == pytest.approx(want["prob"], abs=1e-5)
        for k in "xywh":
            assert got[k] == pytest.approx(want[k], abs=1e-5)
        x1, y1, x2, y2 = got["box"]
        assert 0 <= x1 < x2 < dj["image_w"] and 0 <= y1 < y2 < dj["image_h"]
    assert not list(out.glob("*.part*"))


def test_cli_default_model_and_sample(tmp_path, capsys, monkeypatch):
    """No --cfg, no INPUT: cfg/yolov4-tiny.cfg + the yolov4-tiny weights + COCO names on bus.jpg (the asset
    cache is pre-filled from the conformance corpus: same files, same sha256)."""
    w = case_weights("yolov4-tiny-coco")
    bus = conformance_root() / "cases" / "yolov4-tiny-coco" / "images" / "bus" / "bus.jpg"
    if not w.exists() or not bus.exists():
        pytest.skip("yolov4-tiny-coco weights or bus.jpg not available")
    cache = tmp_path / "cache"
    cache.mkdir()
    os.symlink(w, cache / "yolov4-tiny.weights")
    shutil.copy(bus, cache / "bus.jpg")
    monkeypatch.setenv("DARKCSP_CACHE", str(cache))
    rc = main(["detect", "--backend", "numpy", "--out", str(tmp_path / "o"), "--json"])
    assert rc == 0
    captured = capsys.readouterr()
    # with --json, stdout is the JSON alone and Darknet's lines go to stderr
    records = json.loads(captured.out)
    assert records[0]["image"].endswith("bus.jpg") and len(records[0]["detections"]) == 6
    lines = [ln for ln in captured.err.splitlines() if "%\t(left_x:" in ln]
    # Darknet (stb JPEG decoding) prints bus 73% / truck 42% / person 99% / 95% / skateboard 37% / person 86%
    assert [ln.split(":")[0] for ln in lines] == ["bus", "truck", "person", "person", "skateboard", "person"]
    assert [d["class_name"] for d in records[0]["detections"]] == [ln.split(":")[0] for ln in lines]
    assert (tmp_path / "o" / "bus.jpg").is_file()


def test_cli_random_weights_warns(tiny_detector_cfg, tmp_path, capsys):
    import cv2
    cfg = tiny_detector_cfg
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8))
    rc = main(["detect", "--cfg", str(cfg), "--backend", "numpy", "--thresh", "0.01", "--out", str(tmp_path / "o"),
               str(img)])
    assert rc == 0
    err = capsys.readouterr().err
    assert "RANDOM weights" in err and "meaningless" in err
    assert (tmp_path / "o" / "a.png").is_file()


def test_cli_folder_glob_and_video(tiny_detector_cfg, tmp_path, capsys):
    import cv2
    cfg = tiny_detector_cfg
    rng = np.random.default_rng(1)
    (tmp_path / "imgs").mkdir()
    for name in ("b.jpg", "a.png"):
        cv2.imwrite(str(tmp_path / "imgs" / name), rng.integers(0, 255, (30, 40, 3), dtype=np.uint8))
    video = tmp_path / "clip.avi"
    vw = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (48, 32))
    for _ in range(3):
        vw.write(rng.integers(0, 255, (32, 48, 3), dtype=np.uint8))
    vw.release()
    out = tmp_path / "o"
    rc = main(["detect", "-q", "--cfg", str(cfg), "--backend", "numpy", "--out", str(out), "--json",
               str(tmp_path / "imgs"), str(tmp_path / "imgs" / "*.png"), str(video)])
    assert rc == 0
    records = json.loads(capsys.readouterr().out)  # stdout is the JSON alone, videos included
    assert [Path(r["image"]).name for r in records] == ["a.png", "b.jpg", "a.png", "clip.avi#frame=0",
                                                        "clip.avi#frame=1", "clip.avi#frame=2"]
    assert (out / "a.png").is_file() and (out / "a_1.png").is_file() and (out / "b.jpg").is_file()
    cap = cv2.VideoCapture(str(out / "clip.mp4"))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    cap.release()


@pytest.mark.parametrize("arg", ["missing.jpg", "nothing/*.png"])
def test_cli_bad_input_exit_code(tiny_detector_cfg, tmp_path, capsys, arg):
    cfg = tiny_detector_cfg
    rc = main(["detect", "--cfg", str(cfg), "--out", str(tmp_path / "o"), str(tmp_path / arg)])
    assert rc == 4
    assert "error" in capsys.readouterr().err


def test_cli_batch_goes_on_after_a_bad_image(tiny_detector_cfg, tmp_path, capsys):
    import cv2
    cfg = tiny_detector_cfg
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.jpg").write_bytes(b"not a jpeg")
    cv2.imwrite(str(tmp_path / "imgs" / "b.png"), np.zeros((20, 20, 3), np.uint8))
    rc = main(["detect", "--cfg", str(cfg), "--out", str(tmp_path / "o"), "--json-file", str(tmp_path / "d.json"),
               str(tmp_path / "imgs")])
    assert rc == 4
    err = capsys.readouterr().err
    assert "a.jpg" in err and "1 of 2 inputs" in err
    records = json.loads((tmp_path / "d.json").read_text())
    assert [Path(r["image"]).name for r in records] == ["b.png"]


def test_cli_never_overwrites_inputs(tiny_detector_cfg, tmp_path, capsys):
    import cv2
    cfg = tiny_detector_cfg
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), np.zeros((20, 20, 3), np.uint8))
    before = img.read_bytes()
    assert main(["detect", "--cfg", str(cfg), "--out", str(tmp_path), str(img)]) == 6
    assert main(["detect", "--cfg", str(cfg), "--no-save", "--json-file", str(img), str(img)]) == 6
    assert img.read_bytes() == before
    assert "refusing to overwrite" in capsys.readouterr().err


def test_cli_not_a_detector(tmp_path, capsys):
    cfg = write_cfg(tmp_path, "[net]\nwidth=8\nheight=8\nchannels=3\n\n[convolutional]\nfilters=2\nsize=1\n")
    img = tmp_path / "a.png"
    import cv2
    cv2.imwrite(str(img), np.zeros((8, 8, 3), np.uint8))
    rc = main(["detect", "--cfg", str(cfg), "--out", str(tmp_path / "o"), str(img)])
    assert rc == 5 and "no detection head" in capsys.readouterr().err
