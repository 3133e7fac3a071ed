"""[convolutional]: geometry, weights layout, refusals, NumPy forward and ONNX lowering.

Expectations come from a deliberately naive loop convolution written here (not darkcsp's im2col/GEMM),
hand-written BN formulas, and Darknet's own per-layer outputs (all_layers.npz of the zoo cases).
"""
from __future__ import annotations

import numpy as np
import pytest

import darkcsp
from darkcsp.errors import CfgError, UnsupportedError
from darkcsp.graph import load_graph
from darkcsp.weights import parse_weights, weights_bytes

from tests.conftest import conformance_model, conformance_root, net_cfg, random_input, write_cfg
from tests.layers.harness import golden_layers, run_onnxruntime, run_opencv


# ------------------------------------------------------------------------------------------ helpers
def naive_conv(x, w, stride_y, stride_x, pad, dilation, groups, out_h, out_w):
    """Loop-by-loop cross-correlation in float64: x (C,H,W), w (n, C/groups, k, k); zero padding ``pad``."""
    c, h, wd = x.shape
    n, cg, k, _ = w.shape
    m = n // groups
    y = np.zeros((n, out_h, out_w))
    for f in range(n):
        g = f // m
        for oy in range(out_h):
            for ox in range(out_w):
                acc = 0.0
                for ci in range(cg):
                    for i in range(k):
                        for j in range(k):
                            yy = oy * stride_y + i * dilation - pad
                            xx = ox * stride_x + j * dilation - pad
                            if 0 <= yy < h and 0 <= xx < wd:
                                acc += float(x[g * cg + ci, yy, xx]) * float(w[f, ci, i, j])
                y[f, oy, ox] = acc
    return y


def offset_conv(x, w, stride, pad, dilation=1):
    """Same maths for bigger maps: a loop over the k*k kernel offsets with an einsum over channels (groups=1)."""
    c, h, wd = x.shape
    n, _, k, _ = w.shape
    sy, sx = stride
    oh = (h + 2 * pad - dilation * (k - 1) - 1) // sy + 1
    ow = (wd + 2 * pad - dilation * (k - 1) - 1) // sx + 1
    xp = np.zeros((c, h + 2 * pad, wd + 2 * pad))
    xp[:, pad:pad + h, pad:pad + wd] = x
    y = np.zeros((n, oh, ow))
    for i in range(k):
        for j in range(k):
            patch = xp[:, i * dilation:i * dilation + sy * (oh - 1) + 1:sy, j * dilation:j * dilation + sx * (ow - 1) + 1:sx]
            y += np.einsum("nc,chw->nhw", w[:, :, i, j].astype(np.float64), patch)
    return y


def bn_alexeyab(y, w):
    """Darknet's unfused BN, hand-written: (y - mean) / sqrt(var + 1e-5) * scales + biases."""
    s = lambda a: np.asarray(a, np.float64)[:, None, None]  # noqa: E731
    return (y - s(w["rolling_mean"])) / np.sqrt(s(w["rolling_variance"]) + 1e-5) * s(w["scales"]) + s(w["biases"])


def leaky(y):
    return np.where(y > 0, y, 0.1 * y)


def set_random_bn(w, rng):
    n = w["biases"].shape[0]
    w["biases"] = rng.uniform(-0.5, 0.5, n).astype(np.float32)
    if "scales" in w:
        w["scales"] = rng.uniform(0.5, 1.5, n).astype(np.float32)
        w["rolling_mean"] = rng.uniform(-0.3, 0.3, n).astype(np.float32)
        w["rolling_variance"] = rng.uniform(0.05, 2.0, n).astype(np.float32)
    return w


def conv_cfg(tmp_path, options: str, channels: int = 2, size_hw=(5, 5), extra: str = ""):
    text = f"[net]\nwidth={size_hw[1]}\nheight={size_hw[0]}\nchannels={channels}\n\n{extra}[convolutional]\n{options}\n"
    return write_cfg(tmp_path, text)


# ------------------------------------------------------------------------------------------ geometry
GEOMETRIES = [
    # (options, channels, expected out (C,H,W), naive args: stride_y, stride_x, im2col pad, dilation, groups)
    ("filters=3\nsize=3\nstride=1\npad=1", 2, (3, 5, 5), (1, 1, 1, 1, 1)),
    ("filters=3\nsize=3\nstride=2\npad=1", 2, (3, 3, 3), (2, 2, 1, 1, 1)),
    ("filters=3\nsize=3\nstride=1\npad=0", 2, (3, 3, 3), (1, 1, 0, 1, 1)),
    ("filters=2\nsize=3\nstride=1\npadding=2", 2, (2, 7, 7), (1, 1, 2, 1, 1)),
    ("filters=2\nsize=3\nstride=1\npad=1\npadding=2", 2, (2, 5, 5), (1, 1, 1, 1, 1)),  # pad overrides padding
    ("filters=2\nsize=3\nstride_x=2\nstride_y=1\npad=1", 2, (2, 5, 3), (1, 2, 1, 1, 1)),
    ("filters=2\nsize=3\nstride=2\nstride_y=1\npad=1", 2, (2, 5, 3), (1, 2, 1, 1, 1)),  # stride fills stride_x
    ("filters=2\nsize=3\nstride=1\npad=1\ndilation=2", 2, (2, 5, 5), (1, 1, 2, 2, 1)),  # im2col pads p*d
    ("filters=2\nsize=3\nstride=2\npad=1\ndilation=2", 2, (2, 3, 3), (2, 2, 2, 2, 1)),
    ("filters=4\nsize=3\nstride=1\npad=1\ngroups=2", 2, (4, 5, 5), (1, 1, 1, 1, 2)),
    ("filters=4\nsize=3\nstride=2\npad=1\ngroups=4", 4, (4, 3, 3), (2, 2, 1, 1, 4)),  # depthwise
    ("filters=8\nsize=3\nstride=1\npad=1\ngroups=4", 4, (8, 5, 5), (1, 1, 1, 1, 4)),  # depthwise multiplier 2
    ("filters=6\nsize=1\nstride=1", 2, (6, 5, 5), (1, 1, 0, 1, 1)),
    ("filters=6\nsize=1\nstride=2\npad=1", 2, (6, 3, 3), (2, 2, 0, 1, 1)),
    ("filters=4\nsize=1\nstride=1\ngroups=2", 2, (4, 5, 5), (1, 1, 0, 1, 2)),
    ("filters=2\nsize=1\nstride=2\npadding=1", 2, (2, 4, 4), (2, 2, 1, 1, 1)),  # 1x1 off the fast path
    ("filters=2\nsize=5\nstride=2\npad=1", 2, (2, 3, 3), (2, 2, 2, 1, 1)),
    ("filters=2\nsize=2\nstride=1\npad=0", 2, (2, 4, 4), (1, 1, 0, 1, 1)),
    ("filters=2\nsize=4\nstride=3\npadding=1", 2, (2, 2, 2), (3, 3, 1, 1, 1)),
]


@pytest.mark.parametrize("options,channels,out_shape,naive_args", GEOMETRIES)
@pytest.mark.parametrize("batch_normalize", [0, 1])
def test_forward_matches_naive_loop(tmp_path, options, channels, out_shape, naive_args, batch_normalize):
    cfg = conv_cfg(tmp_path, f"{options}\nbatch_normalize={batch_normalize}\nactivation=leaky", channels)
    model = darkcsp.load(cfg)
    layer = model.graph.layers[0]
    assert layer.out_shape == out_shape
    rng = np.random.default_rng(1)
    w = set_random_bn(model.weights[0], rng)
    x = (random_input((2, channels, 5, 5), seed=3) - 0.5) * 2
    y = layer.forward([x], w)
    sy, sx, pad, d, groups = naive_args
    for b in range(2):
        ref = naive_conv(x[b], w["weights"], sy, sx, pad, d, groups, out_shape[1], out_shape[2])
        ref = bn_alexeyab(ref, w) if batch_normalize else ref + w["biases"][:, None, None]
        np.testing.assert_allclose(y[b], leaky(ref), rtol=1e-5, atol=1e-5)
    # the ONNX lowering (BN folded into Conv) against the same naive expectation, in onnxruntime and OpenCV
    got = run_onnxruntime(layer, [x], w)
    got_cv = np.asarray(run_opencv(layer, [x], w)).reshape(got.shape)
    for b in range(2):
        ref = naive_conv(x[b], w["weights"], sy, sx, pad, d, groups, out_shape[1], out_shape[2])
        ref = leaky(bn_alexeyab(ref, w) if batch_normalize else ref + w["biases"][:, None, None])
        np.testing.assert_allclose(got[b], ref, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got_cv[b], ref, rtol=1e-4, atol=1e-5)


def test_unfused_path_matches_naive(tmp_path, monkeypatch):
    """The unfused (divide) BN path, as Darknet's network_predict runs it."""
    from darkcsp.layers.convolutional import Convolutional
    monkeypatch.setattr(Convolutional, "fold_bn", False)
    cfg = conv_cfg(tmp_path, "filters=3\nsize=3\nstride=1\npad=1\nbatch_normalize=1\nactivation=linear")
    model = darkcsp.load(cfg)
    w = set_random_bn(model.weights[0], np.random.default_rng(5))
    x = random_input((1, 2, 5, 5), seed=4)
    y = model.graph.layers[0].forward([x], w)
    ref = bn_alexeyab(naive_conv(x[0], w["weights"], 1, 1, 1, 1, 1, 5, 5), w)
    np.testing.assert_allclose(y[0], ref, rtol=1e-5, atol=1e-6)


def test_pjreddie_batch_norm_formula(tmp_path):
    cfg = conv_cfg(tmp_path, "filters=2\nsize=1\nstride=1\nbatch_normalize=1\nactivation=linear")
    model = darkcsp.load(cfg, dialect="pjreddie")
    w = model.weights[0]
    w.update(weights=np.array([[[[1.0]], [[0.0]]], [[[0.0]], [[2.0]]]], np.float32),
             biases=np.array([0.5, -1.0], np.float32), scales=np.array([2.0, 1.0], np.float32),
             rolling_mean=np.array([1.0, 0.0], np.float32), rolling_variance=np.array([4.0, 0.01], np.float32))
    x = np.zeros((1, 2, 5, 5), np.float32)
    x[0, 0] = 3.0
    x[0, 1] = 0.5
    y = model.graph.layers[0].forward([x], w)
    # pjreddie: (x - mean) / (sqrt(var) + 1e-6) * scale + bias
    np.testing.assert_allclose(y[0, 0], (3.0 - 1.0) / (2.0 + 1e-6) * 2.0 + 0.5, rtol=1e-6)
    np.testing.assert_allclose(y[0, 1], (1.0 - 0.0) / (0.1 + 1e-6) * 1.0 - 1.0, rtol=1e-5)


def test_default_activation_is_logistic(tmp_path):
    cfg = conv_cfg(tmp_path, "filters=1\nsize=1\nstride=1")
    model = darkcsp.load(cfg)
    w = model.weights[0]
    w["weights"][:] = 1.0
    x = np.zeros((1, 2, 5, 5), np.float32)
    x[0, 0, 0, 0] = 2.0
    y = model.graph.layers[0].forward([x], w)
    assert y[0, 0, 0, 0] == pytest.approx(1 / (1 + np.exp(-2.0)), rel=1e-6)
    assert y[0, 0, 1, 1] == pytest.approx(0.5)


def test_shapes_params_bflops_and_describe(tmp_path):
    cfg = write_cfg(tmp_path, net_cfg(416, 416, 3, """
        [convolutional]
        batch_normalize=1
        filters=32
        size=3
        stride=2
        pad=1
        activation=leaky

        [convolutional]
        filters=64
        size=3
        stride=1
        pad=1
        groups=32
        activation=linear

        [convolutional]
        filters=16
        size=1
        stride_x=2
        stride_y=1
        activation=linear
        """))
    g = load_graph(cfg)
    l0, l1, l2 = g.layers
    assert l0.out_shape == (32, 208, 208)
    assert l0.params == 32 * 4 + 32 * 3 * 9  # biases, scales, mean, var, weights
    assert l0.bflops == pytest.approx(2 * 3 * 32 * 9 * 208 * 208 / 1e9)
    assert l1.params == 64 + 64 * 1 * 9
    assert l1.bflops == pytest.approx(2 * 1 * 64 * 9 * 208 * 208 / 1e9)
    assert l2.out_shape == (16, 208, 104)
    assert l0.describe() == "32 3 x 3/ 2"
    assert l1.describe() == "64/32 3 x 3/ 1"
    assert l2.describe() == "16 1x1/2x1"


# ------------------------------------------------------------------------------------------ refusals
@pytest.mark.parametrize("options,key", [
    ("filters=2\nsize=3\nstride=1\npadding=0\ndilation=2", "dilation"),  # grid mismatch
    ("filters=2\nsize=5\nstride=1\npadding=1\ndilation=2", "dilation"),  # 2p != k-1
    ("filters=2\nsize=1\nstride=1\npadding=1", "padding"),  # 1x1 fast path ignores padding
    ("filters=2\nsize=1\nstride_x=1\nstride_y=2", "stride_y"),  # ... and stride_y
    ("filters=3\nsize=3\nstride=1\ngroups=2", "groups"),  # 2 channels, 3 filters
])
def test_inconsistent_geometry_is_refused(tmp_path, options, key):
    cfg = conv_cfg(tmp_path, options)
    with pytest.raises(CfgError) as e:
        load_graph(cfg)
    assert e.value.option == key
    assert e.value.line is not None


def test_consistent_dilation_with_stride_is_accepted(tmp_path):
    # size 5, padding 2, dilation 2: 2p == k-1, the grids agree
    g = load_graph(conv_cfg(tmp_path, "filters=2\nsize=5\nstride=1\npad=1\ndilation=2", size_hw=(9, 9)))
    assert g.layers[0].out_shape == (2, 9, 9)


def test_pjreddie_refuses_strided_1x1(tmp_path):
    cfg = conv_cfg(tmp_path, "filters=2\nsize=1\nstride=2")
    assert load_graph(cfg).layers[0].out_shape == (2, 3, 3)  # fine for AlexeyAB
    with pytest.raises(CfgError, match="pjreddie"):
        load_graph(cfg, dialect="pjreddie")


def test_xnor_parses_but_does_not_run(tmp_path):
    cfg = conv_cfg(tmp_path, "xnor=1\nbatch_normalize=1\nfilters=4\nsize=3\nstride=1\npad=1\ngroups=2\nactivation=leaky")
    model = darkcsp.load(cfg)
    layer = model.graph.layers[0]
    assert layer.params == 4 * 4 + 4 * 2 * 9  # xnor forces groups=1
    assert layer.bflops == pytest.approx(2 * 2 * 4 * 9 * 25 / 1e9 / 32)
    with pytest.raises(UnsupportedError, match="xnor"):
        model.forward(random_input((1, 2, 5, 5)))


# ------------------------------------------------------------------------------------------ options
def test_binary_follows_gpu_build(tmp_path):
    cfg = conv_cfg(tmp_path, "binary=1\nfilters=2\nsize=3\nstride=1\npad=1\nactivation=linear")
    model = darkcsp.load(cfg)
    w = model.weights[0]
    x = random_input((1, 2, 5, 5), seed=2)
    y = model.graph.layers[0].forward([x], w)
    wt = w["weights"].astype(np.float64)
    mean = np.abs(wt).reshape(2, -1).mean(axis=1)[:, None, None, None]
    wb = np.where(wt > 0, mean, -mean)
    ref = naive_conv(x[0], wb, 1, 1, 1, 1, 1, 5, 5) + w["biases"][:, None, None]
    np.testing.assert_allclose(y[0], ref, rtol=1e-5, atol=1e-6)


def test_antialiasing(tmp_path):
    cfg = conv_cfg(tmp_path, "antialiasing=1\nfilters=2\nsize=3\nstride=2\npad=1\nactivation=linear",
                   size_hw=(6, 6))
    model = darkcsp.load(cfg)
    layer = model.graph.layers[0]
    assert layer.out_shape == (2, 3, 3)
    assert layer.bflops == pytest.approx(2 * 2 * 2 * 9 * 36 / 1e9)  # host at stride 1
    w = model.weights[0]
    x = random_input((1, 2, 6, 6), seed=7)
    host = naive_conv(x[0], w["weights"], 1, 1, 1, 1, 1, 6, 6) + w["biases"][:, None, None]
    blur = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16.0
    ref = naive_conv(host, np.stack([blur[None], blur[None]]), 2, 2, 1, 1, 2, 3, 3)
    np.testing.assert_allclose(layer.forward([x], w)[0], ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(run_onnxruntime(layer, [x], w)[0], ref, rtol=1e-5, atol=1e-6)
    # antialiasing=2: 2x2 box blur without padding
    cfg2 = conv_cfg(tmp_path, "antialiasing=2\nfilters=2\nsize=3\nstride=2\npad=1\nactivation=linear",
                    size_hw=(6, 6))
    layer2 = load_graph(cfg2).layers[0]
    assert layer2.out_shape == (2, 3, 3)
    ref2 = naive_conv(host, np.full((2, 1, 2, 2), 0.25), 2, 2, 0, 1, 2, 3, 3)
    np.testing.assert_allclose(layer2.forward([x], w)[0], ref2, rtol=1e-5, atol=1e-6)


def test_share_index(tmp_path):
    cfg = write_cfg(tmp_path, net_cfg(5, 5, 2, """
        [convolutional]
        batch_normalize=1
        filters=2
        size=3
        stride=1
        pad=1
        activation=linear

        [convolutional]
        share_index=0
        batch_normalize=1
        filters=2
        size=3
        stride=1
        pad=1
        dilation=2
        activation=linear
        """))
    model = darkcsp.load(cfg)
    l0, l1 = model.graph.layers
    assert l1.params == 0 and l1.weight_arrays() == []
    w0 = set_random_bn(model.weights[0], np.random.default_rng(0))
    x = random_input((1, 2, 5, 5), seed=1)
    y0 = l0.forward([x], w0)
    y1 = l1.forward([y0], model.weights[1])
    ref = bn_alexeyab(naive_conv(y0[0], w0["weights"], 1, 1, 2, 2, 1, 5, 5), w0)
    np.testing.assert_allclose(y1[0], ref, rtol=1e-5, atol=1e-5)


def test_share_index_must_fit(tmp_path):
    cfg = write_cfg(tmp_path, net_cfg(5, 5, 2, """
        [convolutional]
        filters=2
        size=3
        pad=1

        [convolutional]
        share_index=-1
        filters=3
        size=3
        pad=1
        """))
    with pytest.raises(CfgError) as e:
        load_graph(cfg)
    assert e.value.option == "share_index"


def _weights_blob(header, *arrays):
    parts = [np.asarray(header[:3], "<i4").tobytes(), np.asarray([0], "<u8").tobytes()]
    parts += [np.asarray(a, "<f4").ravel().tobytes() for a in arrays]
    return b"".join(parts)


def test_flipped_weights_layout(tmp_path):
    cfg = conv_cfg(tmp_path, "flipped=1\nfilters=3\nsize=1\nstride=1\nactivation=linear")
    graph = load_graph(cfg)
    biases = np.array([0.1, 0.2, 0.3], np.float32)
    stored = np.arange(6, dtype=np.float32).reshape(2, 3)  # [(c/groups)*size*size][n]
    blob = _weights_blob((0, 2, 5), biases, stored)
    wf = parse_weights(blob, graph)
    np.testing.assert_array_equal(wf.layers[0]["weights"].reshape(3, 2), stored.T)
    assert weights_bytes(wf, graph) == blob  # written back in the file's layout


# ------------------------------------------------------------------------------------------ Darknet goldens
ZOO_CASES = ["zoo-activations-a", "zoo-conv-geometry", "zoo-classifier-connected", "zoo-activation-cpu-quirks",
             "zoo-gaps-a"]


@pytest.mark.parametrize("case", ZOO_CASES)
def test_darknet_goldens(case):
    skip = (1,) if case == "zoo-activation-cpu-quirks" else ()  # relu6: see test_relu6_follows_gpu_build
    assert golden_layers(case, "convolutional", skip) > 0


def test_relu6_follows_gpu_build():
    """DECISIONS.md #1: Darknet's CPU build outputs zeros for relu6 (the golden), we compute relu6 of the
    conv + BN output, here computed independently from Darknet's layer-0 output."""
    model = conformance_model("zoo-activation-cpu-quirks")
    golden = np.load(conformance_root() / "cases" / "zoo-activation-cpu-quirks" / "all_layers.npz")
    layer = model.graph.layers[1]
    assert layer.activation == "relu6"
    assert not golden["layer_1"].any()  # what Darknet's CPU build gave
    x = golden["layer_0"]
    w = model.weights[1]
    ref = np.clip(bn_alexeyab(offset_conv(x[0].astype(np.float64), w["weights"], (1, 1), 1), w), 0, 6)
    y = layer.forward([x], w)
    np.testing.assert_allclose(y[0], ref, rtol=1e-3, atol=1e-4)
    assert (ref > 0).mean() > 0.2  # a real, non-trivial output


@pytest.mark.parametrize("options,channels,out_shape,naive_args", [GEOMETRIES[i] for i in (1, 5, 8, 9, 12, 16)])
@pytest.mark.parametrize("activation", ["leaky", "normalize_channels"])
def test_banded(tmp_path, monkeypatch, options, channels, out_shape, naive_args, activation):
    """Large maps are convolved in bands of output pixels, BN/activation applied per band: force tiny bands."""
    import darkcsp.layers.convolutional as conv
    for name in ("IM2COL_BUDGET_DENSE", "IM2COL_BUDGET_GROUPED", "OUT_BAND_BYTES", "OUT_BAND_MIN"):
        monkeypatch.setattr(conv, name, 1)
    model = darkcsp.load(conv_cfg(tmp_path, f"{options}\nbatch_normalize=1\nactivation={activation}", channels))
    w = set_random_bn(model.weights[0], np.random.default_rng(3))
    x = random_input((2, channels, 5, 5), seed=9) - 0.5
    y = model.graph.layers[0].forward([x], w)
    sy, sx, pad, d, groups = naive_args
    for b in range(2):
        ref = bn_alexeyab(naive_conv(x[b], w["weights"], sy, sx, pad, d, groups, out_shape[1], out_shape[2]), w)
        if activation == "leaky":
            ref = leaky(ref)
        else:  # per pixel over channels: v = max(x, 0); v / (1e-4 + sum v)
            v = np.maximum(ref, 0)
            ref = v / (1e-4 + v.sum(axis=0, keepdims=True))
        np.testing.assert_allclose(y[b], ref, rtol=1e-4, atol=1e-5)


def test_kernel_larger_than_padded_map(tmp_path):
    """Darknet's C-truncating size formula gives 1 output for a 5x5 kernel, stride 3, on a 3x3 map; its im2col
    reads zeros past the map."""
    cfg = conv_cfg(tmp_path, "filters=2\nsize=5\nstride=3\npad=0\nactivation=linear", size_hw=(3, 3))
    model = darkcsp.load(cfg)
    layer = model.graph.layers[0]
    assert layer.out_shape == (2, 1, 1)
    w = model.weights[0]
    x = random_input((1, 2, 3, 3), seed=5)
    ref = naive_conv(x[0], w["weights"], 3, 3, 0, 1, 1, 1, 1) + w["biases"][:, None, None]
    np.testing.assert_allclose(layer.forward([x], w)[0], ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(run_onnxruntime(layer, [x], w)[0], ref, rtol=1e-5, atol=1e-6)

