"""darkcsp.backends: one interface over numpy / onnxruntime / opencv / opencv-darknet, same keys and shapes."""
from __future__ import annotations

import numpy as np
import pytest

import darkcsp
from darkcsp import backends
from darkcsp.backends import BACKENDS, available_backends, create_backend
from darkcsp.errors import DarkcspError, UnsupportedError

from conftest import random_input, write_cfg
from test_onnx_export import DETECTOR


@pytest.fixture
def model(tmp_path):
    return darkcsp.load(write_cfg(tmp_path, DETECTOR), seed=5)


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
    assert set(BACKENDS) == {"numpy", "onnxruntime", "opencv", "opencv-classic", "opencv-darknet"}
    assert backends.NumpyBackend.name == "numpy"


def test_target_override(model):
    x = random_input((1, 3, 32, 32))
    plain = create_backend("onnxruntime", model, target="generic")
    assert plain.target == "generic" and create_backend("onnxruntime", model).target == "onnxruntime"
    ref = model.forward(x)
    for i, r in plain.run(x).items():
        np.testing.assert_allclose(r, ref[i], rtol=1e-4, atol=1e-4)
    with pytest.raises(UnsupportedError, match="unknown ONNX target"):
        create_backend("onnxruntime", model, target="gpu")
