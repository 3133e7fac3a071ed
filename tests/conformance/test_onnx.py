"""The ONNX lowering against Darknet's goldens: every conformance case through onnxruntime, OpenCV DNN and
OpenVINO (float32).

* cases/<case>: the exported model (outputs layer_<i>) run by each ONNX backend must match expected.npz
  within the case's meta.json ``tolerance.recommended``. On a mismatch the message names the first layer
  whose ONNX output departs from the NumPy executor (every layer exported as an output).
* shapes/*.cfg: every cfg darkcsp accepts exports (random weights) to a model that passes onnx.checker
  (full_check) and shape inference, with outputs of the NumPy executor's shapes.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import pytest

import darkcsp
from darkcsp.backends import create_backend
from darkcsp.errors import CfgError, UnsupportedError
from darkcsp.onnx.export import ExportOptions, export_model

from tests.conftest import case_meta, case_names, case_subdirs, conformance_model, \
    conformance_root, corpus_pytestmark, dialect_of

ROOT = conformance_root()
CASES = case_names()
SHAPE_CFGS = sorted((ROOT / "shapes").glob("*.cfg")) if (ROOT / "shapes").is_dir() else []
#: DECISIONS.md #1: darkcsp computes relu6 (GPU build) where Darknet's CPU golden holds zeros
RELU6_CASE = "zoo-activation-cpu-quirks"

#: (case, OpenCV major version) -> the operator that OpenCV DNN lacks (xfail, strict). Goal: empty.
OPENCV_GAPS: Dict[tuple, str] = {}

#: (case, OpenCV major version) -> why OpenCV's float rounding, grown through a deep random-weight net, ends
#: above the case tolerance although no layer departs (xfail, strict: the entry must go when it passes).
#: Not checked by CI, which has OpenCV 5; measured with opencv-python 4.14.0.94.
OPENCV_ROUNDING: Dict[tuple, str] = {
    ("yolov4-csp-swish-256", 4): (
        "OpenCV 4.14's relative error grows evenly from ~5e-6 (layers 0-19) to 2e-3 (layers 160-175) with the "
        "generic graph and the opencv graph alike (no layer departs by more than 5e-5 before layer 80); at "
        "layer_175 the generic graph ends at 0.0027 and the opencv graph (1x1 as MatMul) at 0.0035 against "
        "Darknet, over the case's atol 0.003 (NumPy 0.0006, onnxruntime 0.0006, OpenCV 5 classic engine 0.0018)"),
}

pytestmark = corpus_pytestmark()  # CI (DARKCSP_REQUIRE_CONFORMANCE=1) fails loudly, a fresh clone skips


def _cv_major() -> int:
    try:
        import cv2
        return int(cv2.__version__.split(".")[0])
    except ImportError:  # pragma: no cover
        return 0


def first_divergence(model, x: np.ndarray, backend: str, tol: dict) -> Optional[str]:
    """Export every layer as an output, run it on ``backend`` and the NumPy executor; describe the first
    layer (in Darknet order) whose outputs differ beyond ``tol``."""
    try:
        got = create_backend(backend, model, all_layers=True).run(x)
    except Exception as e:  # the all-layers model itself may not load
        return f"(all-layers export failed on {backend}: {e})"
    ref = model.forward(x, all_layers=True)
    for i in sorted(ref):
        if i not in got:
            continue
        g, r = np.asarray(got[i]), np.asarray(ref[i])
        if g.size != r.size:
            return f"layer {i} [{model.graph.layers[i].type}]: shape {g.shape} vs NumPy {r.shape}"
        g = g.reshape(r.shape)
        if not np.allclose(g, r, rtol=tol["rtol"], atol=tol["atol"]):
            err = np.abs(g - r)
            k = np.unravel_index(int(np.nanargmax(err)), r.shape)
            return (f"layer {i} [{model.graph.layers[i].type}]: max abs diff {np.nanmax(err):.3g} at {k} "
                    f"({g[k]:.6g} vs NumPy {r[k]:.6g})")
    return None


def _downstream_of(model, start: int) -> set:
    out = {start}
    for layer in model.graph.layers:
        if any(i in out for i in layer.inputs):
            out.add(layer.index)
    return out


def _run_backend(case: str, backend: str, model, x: np.ndarray) -> dict:
    key = (case, _cv_major())
    try:
        return create_backend(backend, model).run(x)
    except UnsupportedError as e:
        if backend == "opencv" and key in OPENCV_GAPS:
            pytest.xfail(f"OpenCV {_cv_major()}.x lacks {OPENCV_GAPS[key]}: {e}")
        raise


def _openvino_param():
    """OpenVINO (float32) when the `openvino` extra (pulled by `test`) is installed."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return pytest.param("openvino", marks=pytest.mark.skip(reason="OpenVINO not installed: "
                                                                       "pip install 'darkcsp[openvino]'"))
    return "openvino"


@pytest.mark.parametrize("backend", ["onnxruntime", "opencv", "opencv-classic", _openvino_param()])
@pytest.mark.parametrize("case", CASES)
def test_case_outputs(case: str, backend: str):
    meta = case_meta(case)
    tol = meta["tolerance"]["recommended"]
    model = conformance_model(case)
    for sub in case_subdirs(case):
        x = np.load(sub / "input.npy")
        got = _run_backend(case, backend, model, x)
        exp = np.load(sub / "expected.npz")
        if case == RELU6_CASE:
            # The goldens hold Darknet-CPU zeros for relu6 (layer 1) and what follows from them; compare the
            # outputs with the NumPy executor (itself checked against the goldens layer by layer) instead.
            ref = model.forward(x)
            exp = {f"layer_{i}": a for i, a in ref.items()}
        for key in exp:
            i = int(key.split("_")[1])
            e = np.asarray(exp[key])
            assert i in got, f"{case}: {backend} gives no output for {key}"
            g = np.asarray(got[i])
            assert g.size == e.size, f"{case} {key}: {backend} shape {g.shape}, expected {e.shape}"
            g = g.reshape(e.shape)
            if not np.allclose(g, e, rtol=tol["rtol"], atol=tol["atol"]):
                if backend.startswith("opencv") and (case, _cv_major()) in OPENCV_ROUNDING:
                    pytest.xfail(f"max abs error {np.abs(g - e).max():.3g}: "
                                 f"{OPENCV_ROUNDING[(case, _cv_major())]}")
                where = first_divergence(model, x, backend, tol)
                pytest.fail(f"{case}/{sub.name} {key} on {backend}: max abs error {np.abs(g - e).max():.3g} "
                            f"(atol {tol['atol']}, rtol {tol['rtol']}); first layer departing from the NumPy "
                            f"executor: {where}")
    if (case, _cv_major()) in OPENCV_GAPS and backend == "opencv":
        pytest.fail(f"OPENCV_GAPS lists {case} for OpenCV {_cv_major()}.x but it passes now: remove the entry")
    if (case, _cv_major()) in OPENCV_ROUNDING and backend.startswith("opencv"):
        pytest.fail(f"OPENCV_ROUNDING lists {case} for OpenCV {_cv_major()}.x but it passes now: remove the entry")


@pytest.mark.parametrize("case", [c for c in CASES if (ROOT / "cases" / c / "all_layers.npz").exists()])
def test_zoo_all_layers_onnxruntime(case: str):
    """Zoo cases: every layer of the ONNX model (all layers exported) against Darknet's all_layers.npz."""
    tol = case_meta(case)["tolerance"]["recommended"]
    model = conformance_model(case)
    x = np.load(ROOT / "cases" / case / "input.npy")
    got = create_backend("onnxruntime", model, all_layers=True).run(x)
    ref = np.load(ROOT / "cases" / case / "all_layers.npz")
    skip = _downstream_of(model, 1) if case == RELU6_CASE else set()
    compared = 0
    for key in ref.files:
        i = int(key.split("_")[1])
        if i in skip or i not in got:
            continue
        e = ref[key]
        g = np.asarray(got[i])
        assert g.size == e.size, f"{case} {key}: shape {g.shape} vs {e.shape}"
        g = g.reshape(e.shape)
        assert np.allclose(g, e, rtol=tol["rtol"], atol=tol["atol"]), \
            f"{case} {key} [{model.graph.layers[i].type}]: max abs error {np.abs(g - e).max():.3g}"
        compared += 1
    assert compared > 0


# --------------------------------------------------------------------------------------------- shapes
def _numpy_output_shape(model, i: int) -> tuple:
    """The shape Model.forward gives layer ``i`` (batch 1), from that layer's forward on zero inputs."""
    layer = model.graph.layers[i]
    xs = [np.zeros((1,) + tuple(model.graph.input_shape if j < 0 else _shape_of(model, j)), np.float32)
          for j in layer.inputs]
    return tuple(np.asarray(layer.forward(xs, model.weights[i])).shape)


def _shape_of(model, j: int) -> tuple:
    layer = model.graph.layers[j]
    if layer.is_head:  # heads' outputs are consumed with their own shape (e.g. region's cell-major buffer)
        return _numpy_output_shape(model, j)[1:]
    return tuple(layer.out_shape)


def _shape_params(cfg: Path):
    """pytest params; cfgs with more than 50M parameters (seconds to initialise and serialise) are marked slow."""
    table = json.loads(cfg.with_suffix(".json").read_text())
    marks = [pytest.mark.slow] if table.get("params_total", 0) > 50_000_000 else []
    return pytest.param(cfg, id=cfg.stem, marks=marks)


@pytest.mark.parametrize("cfg", [_shape_params(p) for p in SHAPE_CFGS])
def test_shape_cfg_exports(cfg: Path):
    table = json.loads(cfg.with_suffix(".json").read_text())
    try:
        model = darkcsp.load(cfg, dialect=dialect_of(table))
    except (UnsupportedError, CfgError) as e:
        # the parser's refusals are checked against Darknet in test_darknet.py / the layer tests
        pytest.skip(f"refused by the parser: {e}")
    if any(getattr(l, "xnor", 0) for l in model.graph.layers):
        pytest.skip("xnor convolutions are refused at run time by design")
    try:
        proto, info = export_model(model, ExportOptions())  # runs onnx.checker(full_check) + shape inference
    except UnsupportedError as e:
        # options darkcsp parses but deliberately does not run ([region] map=, ...) are refusals by design;
        # a missing lowering is a failure
        if "lowering" in str(e) or "forward" in str(e):
            raise
        pytest.skip(f"refused at run time by design: {e}")
    assert info.outputs
    for i, name in info.outputs.items():
        want = _numpy_output_shape(model, i)
        assert info.output_shapes[name] == want, f"{cfg.stem} {name}: ONNX {info.output_shapes[name]} vs {want}"


# --------------------------------------------------------------------------------------------- decode + NMS
NMS_CASE = "yolov3-tiny-coco"  # nms_kind=default (plain-IoU do_nms_sort), letter_box=0


@pytest.mark.skipif(NMS_CASE not in CASES, reason=f"{NMS_CASE} not in the corpus")
@pytest.mark.parametrize("image", ["dog", "person", "astronaut", "chelsea", "coffee"])
def test_decode_nms_reproduce_darknet_detections(image: str):
    """--decode --nms on a plain-IoU NMS net: the (class, box, prob) triples ONNX NonMaxSuppression keeps
    are exactly Darknet's `detector test` detections (detections.json), boxes relative to the image."""
    sub = ROOT / "cases" / NMS_CASE / "images" / image
    if not sub.is_dir():
        pytest.skip(f"no image {image}")
    expected = json.loads((sub / "detections.json").read_text())
    assert expected["letter_box"] == 0 and expected["nms_kind"] == 0
    model = conformance_model(NMS_CASE)
    proto, info = export_model(model, ExportOptions(nms=True, nms_iou=expected["nms"],
                                                    nms_score=expected["thresh"], nms_max_per_class=1000))
    import onnxruntime as ort
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    boxes, sel = sess.run(["boxes", "selected_indices"], {"input": np.load(sub / "input.npy")})
    got = sorted((int(c), *np.round(boxes[b, k, :4], 4).tolist(), round(float(boxes[b, k, 5 + c]), 4))
                 for b, c, k in sel)
    want = sorted((d["class_id"], *np.round([d["x"], d["y"], d["w"], d["h"]], 4).tolist(), round(d["prob"], 4))
                  for d in expected["detections"])
    assert len(got) == len(want), (got, want)
    for g, w in zip(got, want):
        assert g[0] == w[0] and np.allclose(g[1:], w[1:], atol=2e-3), (g, w)
