"""darkcsp.bench.worker: backends come from darkcsp.backends; an ONNX file made elsewhere (other tensor names)
runs on a registered ONNX runtime and its outputs map back to Darknet layers."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

import darkcsp
from darkcsp.backends import OnnxFileBackend
from darkcsp.bench import WorkerError
from darkcsp.bench.worker import make_backend
from darkcsp.onnx.export import ExportOptions, export_model

from tests.conftest import random_input


def _foreign_file(model, path):
    """darkcsp's export with another converter's names: input ``images``, outputs ``yolo_<i>``, plus an output
    that names no layer."""
    proto, info = export_model(model, ExportOptions())
    rename = {"input": "images", **{name: f"yolo_{i}" for i, name in info.outputs.items()}}
    for node in proto.graph.node:
        node.input[:] = [rename.get(n, n) for n in node.input]
        node.output[:] = [rename.get(n, n) for n in node.output]
    for v in list(proto.graph.input) + list(proto.graph.output):
        v.name = rename.get(v.name, v.name)
    proto.graph.node.append(onnx.helper.make_node("Identity", ["images"], ["preview"]))
    proto.graph.output.append(onnx.helper.make_tensor_value_info("preview", onnx.TensorProto.FLOAT, None))
    onnx.save(proto, str(path))
    return info


@pytest.mark.parametrize("runtime", ["onnxruntime", "opencv"])
def test_onnx_file_matches_the_reference_executor(tiny_detector_cfg, tmp_path, runtime):
    model = darkcsp.load(tiny_detector_cfg, seed=4)
    info = _foreign_file(model, tmp_path / "peer.onnx")
    setup = {"backend": runtime, "onnx_file": str(tmp_path / "peer.onnx"), "threads": 1}
    backend = make_backend(setup, model)
    assert isinstance(backend, OnnxFileBackend)
    x = random_input((1, 3, 32, 32), seed=5)
    got = backend.run(x)
    n = len(model.graph.layers)
    assert set(got) == set(info.outputs) | {n}  # heads by their index, "preview" after the last layer
    ref = model.forward(x)
    for i in info.outputs:
        np.testing.assert_allclose(got[i], ref[i], rtol=1e-4, atol=1e-5, err_msg=f"layer {i}")
    np.testing.assert_array_equal(got[n], x)


def test_backends_come_from_the_registry(tiny_detector_cfg):
    model = darkcsp.load(tiny_detector_cfg)
    with pytest.raises(WorkerError, match="unknown backend 'nope'") as e:
        make_backend({"backend": "nope", "threads": 1}, model)
    assert e.value.skip
    with pytest.raises(WorkerError, match="calibration") as e:
        make_backend({"backend": "onnxruntime-int8", "threads": 1, "calib": []}, model)
    assert e.value.skip
    with pytest.raises(darkcsp.UnsupportedError, match="cannot run an ONNX file"):
        make_backend({"backend": "numpy", "onnx_file": "x.onnx", "threads": 1}, model)
