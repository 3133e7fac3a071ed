"""darkcsp.onnx.quantize: static INT8 (QDQ) export of a tiny detector; which layers stay float; the result runs
on onnxruntime with darkcsp's output names and stays close to the float model."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

import darkcsp
from darkcsp.errors import DarkcspError, ImageError, UnsupportedError
from darkcsp.onnx.quantize import calibration_inputs, float_layers, quantize_model

from tests.conftest import cfg_text, write_cfg

ort = pytest.importorskip("onnxruntime")

#: three BN convolutions and a [yolo] head: big enough that INT8 rounding shows, small enough to calibrate fast
CFG = cfg_text("quantize-net")


@pytest.fixture
def model(tmp_path):
    return darkcsp.load(write_cfg(tmp_path, CFG), seed=3)


@pytest.fixture
def calib(tmp_path):
    p = tmp_path / "calib.npy"
    np.save(p, np.random.default_rng(0).random((8, 3, 32, 32), dtype=np.float32))
    return [p]


def test_float_layers_are_the_heads(model):
    # layer 4 = [yolo], fed by the 1x1 conv 3; layer 0 = first conv (optional)
    assert float_layers(model) == [3, 4]
    assert float_layers(model, first_conv=True) == [0, 3, 4]
    assert float_layers(model, first_conv=True, heads=False) == [0]


def test_quantized_model_runs_and_keeps_float_layers(model, calib, tmp_path):
    out = tmp_path / "int8.onnx"
    info = quantize_model(model, calib, out)
    assert info["calibration_inputs"] == 8 and info["float_layers"] == [3, 4] and info["quantize_nodes"] > 0
    q = onnx.load(str(out))
    convs = {n.name: n for n in q.graph.node if n.op_type == "Conv"}
    # the middle convs read dequantised int8 weights; the float layers' convs read float initialisers directly
    inits = {t.name for t in q.graph.initializer}
    for name, n in convs.items():
        if name.startswith("l3_"):
            assert n.input[1] in inits, name
        else:
            assert n.input[1] not in inits, name
    meta = {p.key: p.value for p in q.metadata_props}
    assert "QDQ" in meta["darkcsp.int8"] and meta["darkcsp.int8_float_layers"] == "3,4"
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["layer_4"]
    x = np.load(calib[0])[:1]
    got = sess.run(None, {"input": x})[0]
    ref = model.forward(x)[4]
    assert got.shape == ref.shape
    # 8-bit activations: close to the float model, not equal (a bound of a few quantisation steps)
    assert np.max(np.abs(got - ref)) < 0.1 * max(1.0, np.max(np.abs(ref)))
    assert not np.array_equal(got, ref)


def test_all_float_means_no_quantisation(model, calib, tmp_path):
    info = quantize_model(model, calib, tmp_path / "f.onnx", keep_float=range(5))
    assert info["quantize_nodes"] == 0


def test_calibration_inputs_errors(model, tmp_path):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((1, 3, 16, 16), np.float32))
    with pytest.raises(ImageError, match="network takes"):
        calibration_inputs([bad], model)
    with pytest.raises(DarkcspError, match="at least one"):
        calibration_inputs([], model)
    with pytest.raises(ImageError):
        calibration_inputs([tmp_path / "missing.jpg"], model)


def test_calibration_from_a_photo(model, tmp_path):
    cv2 = pytest.importorskip("cv2")
    img = tmp_path / "p.png"
    cv2.imwrite(str(img), np.full((20, 30, 3), 128, np.uint8))
    (x,) = calibration_inputs([img], model)
    assert x.shape == (1, 3, 32, 32) and x.dtype == np.float32
    assert np.allclose(x, 128 / 255, atol=1e-6)


def test_calibration_uses_the_detector_preprocessing(tmp_path):
    """Photos, BGR arrays and Darknet images calibrate on exactly what Detector.input_tensor gives the network
    (here a letterboxed, non-square photo), tensors pass as they are."""
    cv2 = pytest.importorskip("cv2")
    model = darkcsp.load(write_cfg(tmp_path, CFG.replace("channels=3", "channels=3\nletter_box=1")), seed=3)
    bgr = (np.indices((24, 40)).sum(0)[..., None] * np.array([5, 9, 13]) % 256).astype(np.uint8)
    path = tmp_path / "p.png"
    cv2.imwrite(str(path), bgr)
    det = model.detector(backend="numpy")
    want = det.input_tensor([det.load_image(str(path))])
    assert det.letterbox and np.any(want[0, :, 0, :] == 0.5)  # the letterbox's grey bars
    xs = calibration_inputs([path, bgr, det.load_image(bgr), want], model)
    assert len(xs) == 4
    for x in xs:
        np.testing.assert_array_equal(x, want)
    (one,) = calibration_inputs(str(path), model)  # a single path, not a list
    np.testing.assert_array_equal(one, want)
    (tmp_path / "sub").mkdir()
    cv2.imwrite(str(tmp_path / "sub" / "a.png"), bgr)
    (tmp_path / "sub" / "notes.txt").write_text("not an image")
    (from_folder,) = calibration_inputs([tmp_path / "sub"], model)  # a folder: its images
    np.testing.assert_array_equal(from_folder, want)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageError, match="folder has no images"):
        calibration_inputs([tmp_path / "empty"], model)


def test_unknown_method(model, calib, tmp_path):
    with pytest.raises(UnsupportedError, match="calibration method"):
        quantize_model(model, calib, tmp_path / "x.onnx", method="magic")


def test_convert_int8_cli(tmp_path, calib, capsys):
    from darkcsp.cli import main
    cfg = write_cfg(tmp_path, CFG)
    out = tmp_path / "m-int8.onnx"
    assert main(["convert", "--cfg", str(cfg), "-o", str(out), "--int8", "--calib", str(calib[0])]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"{out}: INT8 (QDQ, per-channel), 8 calibration inputs (percentile)")
    assert "layers kept in float: 3,4" in text and "vs NumPy on calib.npy: max abs diff" in text
    assert "histogram" not in text  # onnxruntime's calibration chatter is not printed
    assert out.exists() and not list(tmp_path.glob(".*part*"))
    assert main(["convert", "--cfg", str(cfg), "-o", str(tmp_path / "x.onnx"), "--int8"]) != 0
    assert "--calib" in capsys.readouterr().err
    assert main(["convert", "--cfg", str(cfg), "-o", str(tmp_path / "x.onnx"), "--int8", "--nms", "--calib",
                 str(calib[0])]) != 0
    assert "does not combine with --nms" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()
