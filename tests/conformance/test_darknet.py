"""The Darknet conformance suite: parametrised over ../shared/conformance (shape tables and cases).

* shapes/*.json: Darknet's parser output per cfg; our graph must give the same shapes, params and BFLOPs.
* cases/<case>: weights load exactly and round-trip byte-identically; the NumPy executor reproduces
  Darknet's outputs within the case tolerance and every layer's fingerprint; zoo cases with all_layers.npz
  are also checked layer-locally (each layer fed Darknet's own inputs), which pins a fault to one layer.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import darkcsp
from darkcsp.fingerprints import FingerprintTolerance, compare_fingerprints, first_divergence
from darkcsp.weights import parse_weights, read_weights_bytes, weights_bytes

from tests.conftest import case_meta, case_names, case_weights, case_subdirs, conformance_model, \
    conformance_root, corpus_pytestmark, dialect_of

ROOT = conformance_root()
SHAPE_TABLES = sorted((ROOT / "shapes").glob("*.json")) if (ROOT / "shapes").is_dir() else []
CASES = case_names()
ZOO_ALL_LAYERS = [c for c in CASES if (ROOT / "cases" / c / "all_layers.npz").exists()]
#: DECISIONS.md #1: layer 1 of this case uses relu6, which Darknet's CPU build zeroes and darkcsp computes
RELU6_CASE = "zoo-activation-cpu-quirks"

pytestmark = corpus_pytestmark()  # CI (DARKCSP_REQUIRE_CONFORMANCE=1) fails loudly, a fresh clone skips


# --------------------------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("table", SHAPE_TABLES, ids=[p.stem for p in SHAPE_TABLES])
def test_shape_table(table: Path):
    expected = json.loads(table.read_text())
    graph = darkcsp.load_graph(table.with_suffix(".cfg"), dialect=dialect_of(expected))
    assert len(graph.layers) == len(expected["layers"])
    for layer, exp in zip(graph.layers, expected["layers"]):
        where = f"layer {exp['index']} {exp['type']}"
        assert layer.type == exp["type"], where
        if exp.get("out_shape_note") or min(exp["out_shape"]) <= 0:
            # Darknet leaves out_c/out_h/out_w = 0 for softmax/cost/detection; its `outputs` is what counts
            assert layer.outputs == exp["outputs"], where
        else:
            assert list(layer.out_shape) == exp["out_shape"], where
        if exp["type"] not in ("route", "dropout", "detection", "cost", "contrastive", "softmax") and \
                min(exp["in_shape"]) > 0:
            assert list(layer.in_shape) == exp["in_shape"], where
        assert layer.params == exp["params"], where
        if "bflops_printed" in exp:
            assert f"{layer.bflops:5.3f}".strip() == exp["bflops_printed"].strip(), (where, layer.bflops, exp["bflops"])
    assert graph.params_total == expected["params_total"]
    if "bflops_total_printed" in expected:
        assert f"{graph.bflops_total:5.3f}".strip() == expected["bflops_total_printed"].strip()


# --------------------------------------------------------------------------------------------- cases


@pytest.mark.parametrize("case", CASES)
def test_weights_load_exactly_and_round_trip(case: str):
    meta = case_meta(case)
    graph = darkcsp.load_graph(ROOT / "cases" / case / "model.cfg", dialect=dialect_of(meta))
    path = case_weights(case)
    if not path.exists():
        pytest.fail(f"{path} missing: run {ROOT / 'fetch_trained.py'} (done by .ci/run)")
    data = read_weights_bytes(path)
    wf = parse_weights(data, graph, file=str(path))  # raises on leftover or missing floats
    assert graph.params_total == meta["params_total"]
    assert weights_bytes(wf, graph) == data


def _check_outputs(got: dict, expected_npz: Path, tol: dict, case: str):
    exp = np.load(expected_npz)
    for key in exp.files:
        i = int(key.split("_")[1])
        e = exp[key]
        assert i in got, f"{case}: no output for {key}"
        g = np.asarray(got[i]).reshape(e.shape)
        err = np.abs(g - e).max()
        assert np.allclose(g, e, rtol=tol["rtol"], atol=tol["atol"]), \
            f"{case} {key}: max abs error {err:.3g} (atol {tol['atol']}, rtol {tol['rtol']})"


@pytest.mark.parametrize("case", [c for c in CASES if c != RELU6_CASE])
def test_numpy_outputs_and_fingerprints(case: str):
    meta = case_meta(case)
    model = conformance_model(case)
    tol = meta["tolerance"]["recommended"]
    ftol = FingerprintTolerance.for_case(meta)
    for sub in case_subdirs(case):
        x = np.load(sub / "input.npy")
        got = model.forward(x, all_layers=True)
        _check_outputs(got, sub / "expected.npz", tol, f"{case}/{sub.name}")
        fps = json.loads((sub / "fingerprints.json").read_text())["layers"]
        diffs = compare_fingerprints({i: a[0] for i, a in got.items()}, fps, ftol)
        bad = first_divergence(diffs)
        assert bad is None, (f"{case}/{sub.name}: first layer departing from Darknet's fingerprints: {bad}")
        assert len(diffs) >= len([f for f in fps if f.get("type") != "cost"])


def _layer_local(case: str):
    """Run each layer on Darknet's own inputs (all_layers.npz); return {index: (ours, darknet)}."""
    model = conformance_model(case)
    d = ROOT / "cases" / case
    ref = np.load(d / "all_layers.npz")
    x = np.load(d / "input.npy")
    out = {}
    for layer in model.graph.layers:
        key = f"layer_{layer.index}"
        if key not in ref.files:
            continue
        xs = []
        for i in layer.inputs:
            if i < 0:
                xs.append(x)
            else:
                src = model.graph.layers[i]
                xs.append(ref[f"layer_{i}"].reshape((1,) + tuple(src.out_shape)) if not src.is_head
                          else ref[f"layer_{i}"])
        got = layer.forward(xs, model.weights[layer.index])
        out[layer.index] = (np.asarray(got), ref[key])
    return out


@pytest.mark.parametrize("case", ZOO_ALL_LAYERS)
def test_layer_local(case: str):
    tol = case_meta(case)["tolerance"]["recommended"]
    results = _layer_local(case)
    assert results, "no layers compared"
    for i, (got, exp) in results.items():
        if case == RELU6_CASE and i == 1:
            continue  # checked in test_relu6_follows_gpu_build
        got = got.reshape(exp.shape)
        assert np.allclose(got, exp, rtol=tol["rtol"], atol=tol["atol"]), \
            f"{case} layer {i}: max abs error {np.abs(got - exp).max():.3g}"


def test_relu6_follows_gpu_build():
    """DECISIONS.md #1: Darknet's CPU build zeroes relu6; darkcsp computes min(max(x,0),6) like the GPU build.

    Expected value computed independently here: conv (float64 einsum over explicit windows) + batch norm
    from Darknet's own layer-0 output, then relu6."""
    if RELU6_CASE not in ZOO_ALL_LAYERS:
        pytest.skip("case not in corpus")
    model = conformance_model(RELU6_CASE)
    layer = model.graph.layers[1]
    assert layer.type == "convolutional" and layer.activation == "relu6"
    d = ROOT / "cases" / RELU6_CASE
    ref = np.load(d / "all_layers.npz")
    x = ref["layer_0"].reshape((1,) + tuple(model.graph.layers[0].out_shape)).astype(np.float64)
    w = model.weights[1]
    k, s, p = layer.size, layer.stride_x, layer.padding
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    oc, oh, ow = layer.out_shape
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::s, ::s][:, :, :oh, :ow]
    conv = np.einsum("nchwij,ocij->nohw", win, w["weights"].astype(np.float64))
    bn = (conv - w["rolling_mean"][None, :, None, None]) / np.sqrt(w["rolling_variance"][None, :, None, None] + 1e-5)
    expected = np.clip(bn * w["scales"][None, :, None, None] + w["biases"][None, :, None, None], 0, 6)
    assert np.abs(ref["layer_1"]).max() == 0, "the golden holds Darknet's CPU zeros"
    got = layer.forward([x.astype(np.float32)], w)
    assert np.allclose(got, expected, rtol=1e-3, atol=1e-4)
    assert np.abs(got).max() > 0.1
