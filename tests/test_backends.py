"""darkcsp.backends: one interface over numpy / onnxruntime / opencv / opencv-darknet / openvino (f32, bf16) and
the INT8 backends, same keys and shapes."""
from __future__ import annotations

import numpy as np
import pytest

import darkcsp
from darkcsp import backends
from darkcsp.backends import BACKENDS, available_backends, create_backend
from darkcsp.errors import DarkcspError, UnsupportedError

from tests.conftest import random_input


@pytest.fixture
def model(tiny_detector_cfg):
    return darkcsp.load(tiny_detector_cfg, seed=5)


def _has_openvino() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


needs_openvino = pytest.mark.skipif(not _has_openvino(), reason="OpenVINO not installed: pip install "
                                                                 "'darkcsp[openvino]'")


@pytest.mark.parametrize("name", ["onnxruntime", "opencv", "opencv-classic"])
def test_onnx_backends_match_numpy(model, name):
    x = random_input((1, 3, 32, 32), seed=7)
    ref = create_backend("numpy", model).run(x)
    got = create_backend(name, model, threads=1).run(x)
    assert sorted(got) == sorted(ref) == [4, 7]
    for i in ref:
        assert got[i].shape == ref[i].shape
        np.testing.assert_allclose(got[i], ref[i], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["onnxruntime", "opencv", "opencv-classic"])
def test_all_layers_and_batches(model, name):
    x = random_input((2, 3, 32, 32), seed=8)
    ref = create_backend("numpy", model, all_layers=True).run(x)
    be = create_backend(name, model, all_layers=True)
    got = be.run(x)
    assert sorted(got) == sorted(ref)
    for i in ref:
        np.testing.assert_allclose(got[i].reshape(ref[i].shape), ref[i], rtol=1e-4, atol=1e-5, err_msg=f"layer {i}")
    # a different batch size re-exports (static shapes) and still matches
    x1 = x[:1]
    np.testing.assert_allclose(be.run(x1)[7], ref[7][:1], rtol=1e-4, atol=1e-5)


def test_export_cached_per_model_and_options(model, monkeypatch):
    calls = []
    from darkcsp.onnx import export as export_mod
    real = export_mod.export_model

    def counting(m, options=None, **kw):
        calls.append(options)
        return real(m, options, **kw)

    monkeypatch.setattr(export_mod, "export_model", counting)
    x = random_input((1, 3, 32, 32))
    create_backend("onnxruntime", model).run(x)
    create_backend("onnxruntime", model, threads=2).run(x)
    assert len(calls) == 1
    create_backend("onnxruntime", model, outputs=[2]).run(x)
    assert len(calls) == 2
    # OpenCV gets the export tuned for its engine (darkcsp.onnx.conv): 1x1 convolutions as MatMul on OpenCV 4
    # and OpenCV 5's classic engine, the generic graph on OpenCV 5's new engine
    targets = set()
    for name in ("opencv", "opencv-classic", "opencv"):
        backend = create_backend(name, model)
        backend.run(x)
        targets.add(backend.target)
    assert create_backend("opencv-classic", model).target == "opencv"
    assert len(calls) == 2 + len(targets) and {c.target for c in calls[2:]} == targets


def test_explicit_outputs(model):
    x = random_input((1, 3, 32, 32))
    got = create_backend("onnxruntime", model, outputs=[1, 3]).run(x)
    ref = model.forward(x, outputs=[1, 3])
    assert sorted(got) == [1, 3]
    for i in ref:
        np.testing.assert_allclose(got[i], ref[i], rtol=1e-4, atol=1e-5)


def test_errors(model):
    with pytest.raises(UnsupportedError, match="unknown backend 'tvm'"):
        create_backend("tvm", model)
    with pytest.raises(DarkcspError, match="does not take"):
        create_backend("onnxruntime", model, colour="red")
    with pytest.raises(DarkcspError, match="expects"):
        create_backend("onnxruntime", model).run(np.zeros((1, 3, 16, 16), np.float32))


def test_opencv_darknet_availability(model):
    import cv2
    if hasattr(cv2.dnn, "readNetFromDarknet"):
        assert "opencv-darknet" in available_backends()
        x = random_input((1, 3, 32, 32))
        out = create_backend("opencv-darknet", model).run(x)
        assert sorted(out) == [4, 7]
    else:
        assert "opencv-darknet" not in available_backends()
        with pytest.raises(UnsupportedError, match="removed in OpenCV 5"):
            create_backend("opencv-darknet", model)


def test_registry_lists_all():
    assert set(BACKENDS) >= {"numpy", "onnxruntime", "opencv", "opencv-classic", "opencv-darknet", "openvino",
                             "openvino-bf16", "onnxruntime-int8", "openvino-int8"}
    assert backends.NumpyBackend.name == "numpy"
    for name, cls in BACKENDS.items():
        assert cls.name == name
    assert set(backends.CALIBRATED_BACKENDS) <= set(BACKENDS)
    assert set(available_backends()) <= set(BACKENDS)


# ----- OpenVINO -------------------------------------------------------------------------------------

@needs_openvino
def test_openvino_matches_numpy(model):
    x = random_input((2, 3, 32, 32), seed=11)
    ref = model.forward(x)
    be = create_backend("openvino", model, threads=1)
    assert be.target == "generic" and be.static_batch
    got = be.run(x)
    assert sorted(got) == sorted(ref) == [4, 7]
    for i in ref:
        np.testing.assert_allclose(got[i], ref[i], rtol=1e-4, atol=1e-5)
    # all layers, another batch size (a second compiled model)
    every = create_backend("openvino", model, all_layers=True).run(x[:1])
    full = model.forward(x[:1], all_layers=True)
    assert sorted(every) == sorted(full)
    for i in full:
        np.testing.assert_allclose(every[i].reshape(full[i].shape), full[i], rtol=1e-4, atol=1e-5, err_msg=f"{i}")


@needs_openvino
def test_openvino_bf16_runs_at_bf16_or_refuses(model, monkeypatch):
    from darkcsp import openvino as dov
    x = random_input((1, 3, 32, 32), seed=12)
    ref = model.forward(x)
    if "BF16" in dov.cpu_capabilities():
        be = create_backend("openvino-bf16", model)
        got = be.run(x)
        runner, _ = be._session(1)
        assert str(runner.compiled.get_property("INFERENCE_PRECISION_HINT")) in ("bf16", "<Type: 'bfloat16'>")
        # bfloat16 keeps 8 mantissa bits: close to float32, and not bit-identical to it
        worst = max(float(np.max(np.abs(got[i] - ref[i]))) for i in ref)
        assert 0 < worst < 0.1
        assert "openvino-bf16" in available_backends()
    # a CPU without bf16 (as OpenVINO reports it): a clear refusal naming the instruction set, no fp32 run
    monkeypatch.setattr(dov, "cpu_capabilities", lambda: ["FP32", "INT8", "BIN", "EXPORT_IMPORT"])
    with pytest.raises(UnsupportedError, match="AVX512_BF16"):
        create_backend("openvino-bf16", model)
    assert "openvino-bf16" not in available_backends() and "openvino" in available_backends()


def test_openvino_missing(model, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` raises ImportError
    for name in ("openvino", "openvino-bf16", "openvino-int8"):
        with pytest.raises(UnsupportedError, match=r"pip install 'darkcsp\[openvino\]'"):
            create_backend(name, model, **({"calib": random_input((1, 3, 32, 32))} if "int8" in name else {}))
    assert not any(n.startswith("openvino") for n in available_backends())
    assert create_backend("onnxruntime", model).run(random_input((1, 3, 32, 32)))


@needs_openvino
def test_openvino_unknown_precision():
    from darkcsp import openvino as dov
    with pytest.raises(UnsupportedError, match="unknown OpenVINO precision 'fp8'"):
        dov.check_precision("fp8")


# ----- INT8 ----------------------------------------------------------------------------------------

def _calib():
    # smooth images in [0, 1] (uniform noise would calibrate ranges no photo reaches)
    from darkcsp.onnx.verify import verification_input
    return verification_input((6, 3, 32, 32))


@pytest.mark.parametrize("name", ["onnxruntime-int8", pytest.param("openvino-int8", marks=needs_openvino)])
def test_int8_backends(model, name, monkeypatch):
    from darkcsp.onnx import quantize
    calls = []
    real = quantize.quantize_export
    monkeypatch.setattr(quantize, "quantize_export", lambda *a, **k: calls.append(1) or real(*a, **k))
    calib = _calib()
    x = calib[2:3]
    ref = model.forward(x)
    be = create_backend(name, model, threads=1, calib=calib)
    got = be.run(x)
    assert sorted(got) == [4, 7] and be.int8_summary["quantize_nodes"] > 0
    assert be.int8_summary["float_layers"] == [3, 4, 6, 7]  # the heads and the convolutions feeding them
    for i in ref:
        assert got[i].shape == ref[i].shape
        err = float(np.max(np.abs(got[i] - ref[i])))
        # 8-bit activations: a few quantisation steps of the output's range, never exact
        assert 0 < err < 0.1 * max(1.0, float(np.max(np.abs(ref[i])))), (i, err)
    # the same calibration on the same model quantises once
    again = create_backend(name, model, calib=calib)
    again.run(x)
    assert len(calls) == 1 and again.int8_summary == be.int8_summary
    create_backend(name, model, calib=calib[:3]).run(x)
    assert len(calls) == 2


@pytest.mark.parametrize("name", ["onnxruntime-int8", pytest.param("openvino-int8", marks=needs_openvino)])
def test_int8_needs_calibration(model, name):
    for calib in (None, []):
        with pytest.raises(DarkcspError, match="needs calibration images: calib="):
            create_backend(name, model, calib=calib)
    with pytest.raises(UnsupportedError, match="calibration method 'magic'"):
        create_backend(name, model, calib=_calib(), calib_method="magic")
    with pytest.raises(UnsupportedError, match="all_layers"):
        create_backend(name, model, calib=_calib(), all_layers=True)
    with pytest.raises(DarkcspError, match="does not take"):
        create_backend("onnxruntime", model, calib=_calib())


def test_int8_detector_api(model, tmp_path):
    """The INT8 backends through the detection API, calibrated on photos (paths) with its preprocessing."""
    cv2 = pytest.importorskip("cv2")
    paths = []
    for k in range(3):
        img = (np.indices((40, 56)).sum(0)[..., None] * (k + 1) * np.array([3, 5, 7]) % 256).astype(np.uint8)
        cv2.imwrite(str(tmp_path / f"{k}.png"), img)
        paths.append(str(tmp_path / f"{k}.png"))
    det = model.detector(backend="onnxruntime-int8", calib=paths, thresh=0.01)
    assert det.backend_name == "onnxruntime-int8" and det.backend.int8_summary["calibration_inputs"] == 3
    assert isinstance(det(paths[0]), list)


def test_target_override(model):
    x = random_input((1, 3, 32, 32))
    plain = create_backend("onnxruntime", model, target="generic")
    assert plain.target == "generic" and create_backend("onnxruntime", model).target == "onnxruntime"
    ref = model.forward(x)
    for i, r in plain.run(x).items():
        np.testing.assert_allclose(r, ref[i], rtol=1e-4, atol=1e-4)
    with pytest.raises(UnsupportedError, match="unknown ONNX target"):
        create_backend("onnxruntime", model, target="gpu")
