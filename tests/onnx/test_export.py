"""darkcsp.onnx.export: wiring, output naming, clean-up passes, options (decode, nms, dynamic axes, fp16)."""
from __future__ import annotations

import logging

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import darkcsp
from darkcsp.errors import DarkcspError, UnsupportedError
from darkcsp.onnx.builder import DEFAULT_OPSET, OnnxGraph
from darkcsp.onnx.export import ExportOptions, export_model, optimize

from tests.conftest import cfg_text, random_input, write_cfg

#: 24x20: two conv+BN layers (leaky, swish) and a [dropout]: no head, a single output
CONV_ONLY = cfg_text("conv-only")


def _session(proto: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.fixture
def detector(tiny_detector_cfg):
    return darkcsp.load(tiny_detector_cfg, seed=3)


def test_outputs_named_after_layers_and_match_numpy(detector):
    proto, info = export_model(detector)
    assert [o.name for o in proto.graph.output] == ["layer_4", "layer_7"]
    assert proto.opset_import[0].version == DEFAULT_OPSET
    onnx.checker.check_model(proto, full_check=True)
    x = random_input((1, 3, 32, 32))
    ref = detector.forward(x)
    got = _session(proto).run(None, {"input": x})
    for (i, name), a in zip(info.outputs.items(), got):
        assert name == f"layer_{i}"
        assert a.shape == ref[i].shape == info.output_shapes[name]
        np.testing.assert_allclose(a, ref[i], rtol=1e-4, atol=1e-5)


def test_graph_is_clean(detector):
    """BN folded (no BatchNormalization), no Identity, node names carry the layer prefix."""
    proto, _ = export_model(detector)
    ops = [n.op_type for n in proto.graph.node]
    assert "BatchNormalization" not in ops and "Identity" not in ops
    assert ops.count("Conv") == 4
    assert all(n.name.split("_")[0] in {f"l{i}" for i in range(8)} for n in proto.graph.node), \
        [n.name for n in proto.graph.node]
    # every initializer is used, and no two small constants are duplicates
    used = {i for n in proto.graph.node for i in n.input}
    assert all(t.name in used for t in proto.graph.initializer)


def test_all_layers_and_explicit_outputs(detector):
    x = random_input((1, 3, 32, 32), seed=1)
    ref = detector.forward(x, all_layers=True)
    proto, info = export_model(detector, ExportOptions(all_layers=True))
    assert sorted(info.outputs) == list(range(8))
    got = dict(zip(info.outputs, _session(proto).run(None, {"input": x})))
    for i in range(8):
        np.testing.assert_allclose(got[i], ref[i], rtol=1e-4, atol=1e-5, err_msg=f"layer {i}")
    # a middle layer only: the graph stops there (dead layers removed)
    proto, info = export_model(detector, ExportOptions(outputs=(2,)))
    assert [o.name for o in proto.graph.output] == ["layer_2"]
    assert [n.op_type for n in proto.graph.node].count("Conv") == 2
    with pytest.raises(DarkcspError, match="does not exist"):
        export_model(detector, ExportOptions(outputs=(99,)))


def test_passthrough_output_gets_identity(tmp_path):
    """[dropout] is the network output and aliases its input: both names can be outputs."""
    model = darkcsp.load(write_cfg(tmp_path, CONV_ONLY))
    proto, info = export_model(model, ExportOptions(outputs=(1, 2)))
    x = random_input((1, 3, 20, 24))
    ref = model.forward(x, outputs=[1, 2])
    got = dict(zip(info.outputs, _session(proto).run(None, {"input": x})))
    np.testing.assert_allclose(got[2], ref[2], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got[1], got[2])


def test_decode_and_nms(detector):
    """boxes = Darknet's decoding, checked against the heads' NumPy detections; NMS picks per class."""
    proto, info = export_model(detector, ExportOptions(nms=True, nms_score=0.0))
    assert info.extra_outputs == ["boxes", "selected_indices"]
    x = random_input((1, 3, 32, 32), seed=2)
    outs = dict(zip([o.name for o in proto.graph.output], _session(proto).run(None, {"input": x})))
    boxes = outs["boxes"]
    # 3 anchors x 16x16 + 3 anchors x 16x16 cells, 4 + 1 + 2 columns
    assert boxes.shape == (1, 2 * 3 * 16 * 16, 7)
    ref = detector.forward(x)
    # hand-decode the first cell of head layer_4 (anchor mask 3 -> (81, 82)), Darknet's formulas
    y = ref[4][0].reshape(3, 7, 16, 16)
    bx = (0 + y[0, 0, 0, 0]) / 16
    bw = np.exp(y[0, 2, 0, 0]) * 81 / 32
    np.testing.assert_allclose(boxes[0, 0, [0, 2, 4]], [bx, bw, y[0, 4, 0, 0]], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(boxes[0, 0, 5:], y[0, 4, 0, 0] * y[0, 5:, 0, 0], rtol=1e-4, atol=1e-6)
    sel = outs["selected_indices"]
    assert sel.ndim == 2 and sel.shape[1] == 3 and len(sel) > 0
    assert set(sel[:, 1]) <= {0, 1}


def test_dynamic_batch(detector):
    proto, info = export_model(detector, ExportOptions(dynamic_batch=True))
    dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert dim.dim_param == "N"
    x = random_input((3, 3, 32, 32), seed=4)
    ref = detector.forward(x)
    got = _session(proto).run(None, {"input": x})
    for i, a in zip(info.outputs, got):
        np.testing.assert_allclose(a, ref[i], rtol=1e-4, atol=1e-5)


def test_dynamic_size_where_possible(tmp_path):
    cfg = write_cfg(tmp_path, CONV_ONLY.replace("[dropout]\nprobability=0.5\n", ""))
    model = darkcsp.load(cfg, seed=1)
    proto, info = export_model(model, ExportOptions(dynamic_size=True))
    assert info.dynamic_size
    bigger = darkcsp.load(cfg, width=40, height=36, seed=1)
    x = random_input((1, 3, 36, 40))
    got = _session(proto).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, bigger.forward(x)[1], rtol=1e-4, atol=1e-5)


#: one layer of every type in DYNAMIC_SIZE_TYPES, output layer 12
SIZE_AGNOSTIC = cfg_text("size-agnostic")


def test_dynamic_size_for_size_agnostic_layers(tmp_path):
    """Every type in DYNAMIC_SIZE_TYPES, run at a second size against the NumPy executor at that size."""
    cfg = write_cfg(tmp_path, SIZE_AGNOSTIC)
    model = darkcsp.load(cfg, seed=2)
    proto, info = export_model(model, ExportOptions(dynamic_size=True, dynamic_batch=True))
    assert info.dynamic_size
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["N", "", "H", "W"]
    sess = _session(proto)
    for h, w in ((32, 32), (48, 64), (24, 40)):
        other = darkcsp.load(cfg, width=w, height=h, seed=2)
        x = random_input((2, 3, h, w), seed=h)
        ref = other.forward(x)[12]
        got = sess.run(None, {"input": x})[0]
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5, err_msg=f"{w}x{h}")


def test_dynamic_size_detector_without_decode(tiny_detector_cfg):
    """[yolo]'s lowering has no literal size: a detector exports with a symbolic H, W and runs at other sizes."""
    cfg = tiny_detector_cfg
    model = darkcsp.load(cfg, seed=3)
    proto, info = export_model(model, ExportOptions(dynamic_size=True))
    assert info.dynamic_size
    sess = _session(proto)
    for h, w in ((32, 32), (64, 48)):
        other = darkcsp.load(cfg, width=w, height=h, seed=3)
        x = random_input((1, 3, h, w), seed=w)
        ref = other.forward(x)
        for i, a in zip(info.outputs, sess.run(None, {"input": x})):
            np.testing.assert_allclose(a, ref[i], rtol=1e-4, atol=1e-5, err_msg=f"{w}x{h} layer {i}")


def test_dynamic_size_refused_with_static_layers(detector, caplog):
    # the box decoding builds its grid for the cfg size, so --decode keeps it
    caplog.set_level(logging.WARNING, logger="darkcsp")
    proto, info = export_model(detector, ExportOptions(dynamic_size=True, decode=True))
    assert not info.dynamic_size
    assert "keeps 32x32" in caplog.text
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 32, 32]


def test_fp16_keeps_float32_edges(detector):
    proto, info = export_model(detector, ExportOptions(fp16=True))
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert all(o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for o in proto.graph.output)
    conv_w = [t for t in proto.graph.initializer if t.dims and len(t.dims) == 4]
    assert conv_w and all(t.data_type == onnx.TensorProto.FLOAT16 for t in conv_w)
    x = random_input((1, 3, 32, 32))
    ref = detector.forward(x)
    got = _session(proto).run(None, {"input": x})
    for i, a in zip(info.outputs, got):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, ref[i], rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("opset", [13, 17, 18, 21])
def test_opsets(detector, opset):
    proto, info = export_model(detector, ExportOptions(opset=opset))
    assert proto.opset_import[0].version == opset
    x = random_input((1, 3, 32, 32))
    ref = detector.forward(x)
    for i, a in zip(info.outputs, _session(proto).run(None, {"input": x})):
        np.testing.assert_allclose(a, ref[i], rtol=1e-4, atol=1e-5)


def test_bad_opset():
    with pytest.raises(UnsupportedError, match="opset 9"):
        ExportOptions(opset=9)


def test_optimize_folds_constants_and_identities():
    g = OnnxGraph()
    a = g.const(np.arange(6, dtype=np.float32).reshape(2, 3), "a")
    t = g.op("Transpose", [a], perm=[1, 0])  # constant: folded
    i = g.op("Identity", ["input"])
    r = g.op("Reshape", [i, g.ints([0, -1])])
    r2 = g.op("Reshape", [r, g.ints([3, 2])])  # chained reshapes merge
    y = g.op("MatMul", [r2, t], outputs=["y"])
    g.op("Relu", ["input"], outputs=["dead"])  # not an output: removed
    nodes, inits = optimize(g.nodes, g.initializers, [y])
    assert [n.op_type for n in nodes] == ["Reshape", "MatMul"]
    assert nodes[0].input[0] == "input"
    folded = [t for t in inits if t.name == nodes[1].input[1]][0]
    np.testing.assert_array_equal(onnx.numpy_helper.to_array(folded), np.arange(6).reshape(2, 3).T)


def test_small_constants_shared():
    g = OnnxGraph()
    assert g.ints([1, 2]) == g.ints([1, 2])
    assert g.scalar(0.5) == g.scalar(0.5)
    assert g.ints([1, 2]) != g.ints([2, 1])


def _activation_names():
    from darkcsp.activations import ONNX
    return sorted(ONNX)


@pytest.mark.parametrize("opset", [13, 21])
def test_every_activation_at_lowest_and_highest_opset(tmp_path, opset):
    """Each activation lowering (conv + [activation] layer) passes the checker and matches NumPy at both ends
    of the opset range (reductions changed signature in 18)."""
    text = "[net]\nwidth=8\nheight=8\nchannels=3\n"
    for name in _activation_names():
        text += f"\n[convolutional]\nfilters=4\nsize=3\nstride=1\npad=1\nactivation={name}\n"
        text += f"\n[activation]\nactivation={name}\n\n[route]\nlayers=0\n"
    model = darkcsp.load(write_cfg(tmp_path, text), seed=4)
    proto, info = export_model(model, ExportOptions(opset=opset, all_layers=True))
    x = random_input((1, 3, 8, 8), seed=9) * 4 - 2
    ref = model.forward(x, all_layers=True)
    got = dict(zip(info.outputs, _session(proto).run(None, {"input": x})))
    for i in ref:
        layer = model.graph.layers[i]
        np.testing.assert_allclose(got[i], ref[i], rtol=1e-4, atol=1e-5,
                                   err_msg=f"layer {i} [{layer.type}] {getattr(layer, 'activation', '')}")
