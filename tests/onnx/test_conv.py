"""darkcsp.onnx.conv: the per-runtime convolution lowerings compute the same convolution as the NumPy layer."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import darkcsp
from darkcsp.errors import UnsupportedError
from darkcsp.onnx.builder import OnnxGraph
from darkcsp.onnx.conv import tile_waste, winograd_f4x4_3x3, winograd_pays
from darkcsp.onnx.export import ExportOptions, export_model

from tests.conftest import random_input, write_cfg


def correlate(x, w, b, pad):
    """Independent reference: direct cross-correlation in float64 (stride 1)."""
    n, c, h, wd = x.shape
    k = w.shape[2]
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = h + 2 * pad - k + 1, wd + 2 * pad - k + 1
    y = np.zeros((n, w.shape[0], oh, ow))
    for i in range(k):
        for j in range(k):
            y += np.einsum("nchw,oc->nohw", xp[:, :, i:i + oh, j:j + ow], w[:, :, i, j].astype(np.float64))
    return y + b.reshape(1, -1, 1, 1)


def run_onnx(g: OnnxGraph, y: str, x: np.ndarray, cout: int, dynamic_batch: bool = False) -> np.ndarray:
    dims = ["N" if dynamic_batch else x.shape[0]] + list(x.shape[1:])
    out_dims = dims[:1] + [cout] + dims[2:]
    graph = helper.make_graph(g.nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info(y, TensorProto.FLOAT, out_dims)], g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", g.opset)])
    onnx.checker.check_model(model, full_check=True)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


@pytest.mark.parametrize("h,w", [(8, 8), (13, 13), (10, 7), (5, 9), (1, 1), (4, 6)])
@pytest.mark.parametrize("batch", [1, 2])
def test_winograd_matches_direct_convolution(h, w, batch):
    rng = np.random.default_rng(h * 100 + w)
    cin, cout = 5, 7
    x = rng.standard_normal((batch, cin, h, w)).astype(np.float32)
    wt = rng.standard_normal((cout, cin, 3, 3)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    g = OnnxGraph(dynamic_batch=batch == 2)
    y = winograd_f4x4_3x3(g, "x", wt, b, h, w)
    got = run_onnx(g, y, x, cout, dynamic_batch=batch == 2)
    ref = correlate(x, wt, b, 1)
    assert got.shape == ref.shape
    # F(4x4, 3x3) in float32: a few 1e-6 of the output's range (the direct float32 conv: ~1e-7)
    assert np.max(np.abs(got - ref)) <= 2e-5 * np.max(np.abs(ref))


def test_winograd_rule():
    assert winograd_pays(128, 128, 52, 52)  # 1.63x measured
    assert winograd_pays(384, 256, 26, 26)  # 1.46x
    assert not winograd_pays(64, 64, 104, 104)  # 1.07x alone, nothing left inside a network
    assert not winograd_pays(256, 512, 13, 13)  # 13x13 pads to 16x16: 0.89x
    assert not winograd_pays(128, 128, 26, 26)  # 0.2 GFLOP: fixed costs eat the gain inside a network
    assert winograd_pays(128, 128, 32, 32)
    assert tile_waste(52, 52) == 1.0 and tile_waste(13, 13) == pytest.approx(256 / 169)


CONV_NET = """
[net]
width=32
height=32
channels=128

[convolutional]
batch_normalize=1
filters=128
size=3
stride=1
pad=1
activation=leaky

[convolutional]
filters=64
size=1
stride=1
pad=1
activation=linear

[convolutional]
batch_normalize=1
filters=128
size=3
stride=2
pad=1
activation=mish
"""


@pytest.fixture(scope="module")
def conv_model(tmp_path_factory):
    cfg = write_cfg(tmp_path_factory.mktemp("conv"), CONV_NET)
    return darkcsp.load(cfg, seed=3)


def op_counts(proto):
    counts = {}
    for n in proto.graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return counts


@pytest.mark.parametrize("target,expected", [
    ("generic", {"Conv": 3}),
    ("onnxruntime", {"Conv": 3, "DepthToSpace": 1, "MatMul": 2}),  # layer 0 -> Winograd (its transform is a Conv)
    ("opencv", {"Conv": 2, "MatMul": 1}),  # layer 1 (1x1) -> MatMul
])
@pytest.mark.parametrize("batch", [1, 3])
def test_targets_lower_as_documented_and_agree_with_numpy(conv_model, target, expected, batch):
    proto, info = export_model(conv_model, ExportOptions(target=target, batch=batch, all_layers=True))
    counts = op_counts(proto)
    for op, n in expected.items():
        assert counts.get(op, 0) == n, (op, counts)
    if target == "generic":
        assert "MatMul" not in counts
    x = random_input((batch, 128, 32, 32), seed=batch)
    ref = conv_model.forward(x, all_layers=True)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = dict(zip(info.outputs, sess.run(list(info.outputs.values()), {"input": x})))
    for i, r in ref.items():
        assert got[i].shape == r.shape
        assert np.max(np.abs(got[i] - r)) <= 1e-4 * max(1.0, np.max(np.abs(r))), i


def test_opencv_runs_its_target(conv_model):
    cv2 = pytest.importorskip("cv2")
    proto, info = export_model(conv_model, ExportOptions(target="opencv"))
    net = cv2.dnn.readNetFromONNX(np.frombuffer(proto.SerializeToString(), np.uint8))
    x = random_input((1, 128, 32, 32), seed=5)
    net.setInput(x, "input")
    got = np.asarray(net.forward("layer_2"))
    ref = conv_model.forward(x)[2]
    assert np.max(np.abs(got.reshape(ref.shape) - ref)) <= 1e-4 * max(1.0, np.max(np.abs(ref)))


@pytest.mark.parametrize("options", [dict(fp16=True), dict(dynamic_size=True)])
def test_no_rewrite_where_it_cannot_apply(conv_model, options):
    """float16 (Winograd's transforms lose too much) and a symbolic size (the tiling needs literal sizes)."""
    for target in ("onnxruntime", "opencv"):
        counts = op_counts(export_model(conv_model, ExportOptions(target=target, **options))[0])
        assert counts.get("Conv") == 3 and "MatMul" not in counts, (target, counts)


def test_unknown_target_is_refused():
    with pytest.raises(UnsupportedError, match="unknown ONNX target 'tensorrt'"):
        ExportOptions(target="tensorrt")


def test_convert_target_option(tmp_path, capsys):
    from darkcsp.cli import main
    cfg = write_cfg(tmp_path, CONV_NET)
    out = tmp_path / "net.onnx"
    assert main(["convert", "--cfg", str(cfg), "-o", str(out), "--target", "onnxruntime"]) == 0
    assert "target onnxruntime" in capsys.readouterr().out  # and it passed the verification against NumPy
    assert op_counts(onnx.load(str(out))).get("DepthToSpace") == 1
