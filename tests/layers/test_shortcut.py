"""[shortcut]: AlexeyAB (multi-input, weights, PRN channel mismatch) and pjreddie (resampling, alpha/beta)
semantics - hand-computed cases, a naive loop of pjreddie's shortcut_cpu, Darknet goldens and fingerprints,
the ONNX lowering."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from darkcsp.errors import CfgError

from tests.layers.harness import case_dir, check_golden_layer, check_lowering, graph_of, inputs_for

# 0: (4,4,4)  1: (2,4,4)  2: (6,4,4)  3: (6,2,2)  4: (4,4,4) = the shortcut's input
BASE = """
[net]
width=4
height=4
channels=4
[maxpool]
size=1
stride=1
[route]
layers=0
groups=2
[route]
layers=0,1
[maxpool]
size=2
stride=2
[route]
layers=0
[shortcut]
"""


def shortcut(body: str, dialect: str = "alexeyab", base: str = BASE):
    g = graph_of(base + body + "\n", dialect)
    return g, g.layers[-1]


def test_plain_add():
    g, layer = shortcut("from=0")
    assert layer.inputs == [4, 0] and layer.out_shape == (4, 4, 4)
    x, f = inputs_for(g, layer)
    np.testing.assert_array_equal(layer.forward([x, f], {}), x + f)
    assert layer.bflops == pytest.approx(4 * 4 * 4 / 1e9)


def test_prn_fewer_channels_adds_to_the_first_ones():
    g, layer = shortcut("from=1")  # 2 channels into 4
    x = np.ones((1, 4, 4, 4), np.float32)
    f = np.full((1, 2, 4, 4), 5, np.float32)
    y = layer.forward([x, f], {})
    np.testing.assert_array_equal(y[0, :2], np.full((2, 4, 4), 6, np.float32))
    np.testing.assert_array_equal(y[0, 2:], np.ones((2, 4, 4), np.float32))


def test_prn_more_channels_uses_the_first_ones():
    g, layer = shortcut("from=2")  # 6 channels into 4: flat indices < 4*16 only
    x = np.zeros((1, 4, 4, 4), np.float32)
    f = np.arange(6 * 16, dtype=np.float32).reshape(1, 6, 4, 4)
    np.testing.assert_array_equal(layer.forward([x, f], {}), f[:, :4])


def test_weighted_per_feature_relu_by_hand():
    g, layer = shortcut("from=0,1\nweights_type=per_feature\nweights_normalization=relu")
    assert layer.weight_arrays() == [("weights", (3,))]
    assert layer.bflops == pytest.approx(2 * 4 * 4 * 4 * 2 / 1e9)
    w = {"weights": np.array([2.0, -1.0, 3.0], np.float32)}  # relu -> 2, 0, 3; sum 5 + 1e-4
    x = np.full((1, 4, 4, 4), 1.0, np.float32)
    f0 = np.full((1, 4, 4, 4), 10.0, np.float32)
    f1 = np.full((1, 2, 4, 4), 100.0, np.float32)
    y = layer.forward([x, f0, f1], w)
    den = 5.0001
    np.testing.assert_allclose(y[0, :2], 2 / den * 1 + 0 * 10 + 3 / den * 100, rtol=1e-6)
    np.testing.assert_allclose(y[0, 2:], 2 / den * 1, rtol=1e-6)


def test_weighted_per_channel_softmax_by_hand():
    g, layer = shortcut("from=0\nweights_type=per_channel\nweights_normalization=softmax")
    assert layer.weight_arrays() == [("weights", (2, 4))]  # [n+1][C]
    raw = np.array([[0, 1, 2, 0.5], [math.log(3), 1, -2, 0.5]], np.float32)
    x = np.full((1, 4, 4, 4), 1.0, np.float32)
    f = np.full((1, 4, 4, 4), 2.0, np.float32)
    y = layer.forward([x, f], {"weights": raw})
    for c in range(4):
        a, b = float(raw[0, c]), float(raw[1, c])
        m = max(a, b)
        ea, eb = math.exp(a - m), math.exp(b - m)
        den = 1e-4 + ea + eb
        np.testing.assert_allclose(y[0, c], ea / den * 1 + eb / den * 2, rtol=1e-6)


def test_activation_applies_after_the_sum():
    g, layer = shortcut("from=0\nactivation=leaky")
    x = -np.ones((1, 4, 4, 4), np.float32)
    np.testing.assert_allclose(layer.forward([x, x], {}), np.full_like(x, -0.2), rtol=1e-6)
    g, layer = shortcut("from=0\nactivation=swish")  # computed in [shortcut]
    y = layer.forward([x, x], {})
    np.testing.assert_allclose(y, -2 / (1 + math.exp(2)), rtol=1e-6)


def test_init_weights_are_ones():
    g, layer = shortcut("from=0,1\nweights_type=per_channel\nweights_normalization=relu")
    w = layer.init_weights(np.random.default_rng(0))
    np.testing.assert_array_equal(w["weights"], np.ones((3, 4), np.float32))


def test_bflops_int_wrap():
    base = "[net]\nwidth=4096\nheight=4096\nchannels=64\n[maxpool]\nsize=1\nstride=1\n[shortcut]\n"
    # 4096*4096*64*2 = 2^31 wraps to -2^31 in Darknet's int product (then left out of the total)
    g, layer = shortcut("from=-1,-1", base=base)
    assert layer.bflops == pytest.approx(-2 ** 31 / 1e9)


@pytest.mark.parametrize("body,msg", [
    ("from=3", "pjreddie"),
    ("from=0\nweights_type=foo", "weights_type"),
    ("from=0\nweights_type=per_feature", "weights_normalization"),
    ("from=5", "itself"),
    ("activation=leaky", "from"),
])
def test_errors(body, msg):
    with pytest.raises(CfgError, match=msg):
        shortcut(body)


@pytest.mark.parametrize("body", [
    "from=0", "from=1", "from=2", "from=0,1,2\nactivation=leaky",
    "from=0,1\nweights_type=per_feature\nweights_normalization=relu",
    "from=2,1\nweights_type=per_channel\nweights_normalization=softmax\nactivation=mish",
])
def test_onnx_lowering(body):
    g, layer = shortcut(body)
    xs = inputs_for(g, layer, batch=2)
    w = {k: np.random.default_rng(3).uniform(-1, 2, s).astype(np.float32) for k, s in layer.weight_arrays()}
    check_lowering(layer, xs, w)


@pytest.mark.parametrize("index", [5, 6, 7, 8, 9, 10, 11, 13, 14])
def test_golden_zoo_shortcut_weighted(index):
    check_golden_layer("zoo-shortcut-weighted", index)


@pytest.mark.parametrize("index", [9, 13])
def test_golden_zoo_gaps(index):
    # 9: per_channel relu with weights ~0.005 (the 1e-4 epsilon matters); 13: per_channel softmax on 1x1
    check_golden_layer("zoo-gaps-a", index)


# ------------------------------------------------------------------------------------------- pjreddie
# 0: (4,8,8)  1: (4,4,4)  2: (2,4,4)  3: (8,4,4)
PJ_BASE = """
[net]
width=8
height=8
channels=4
[maxpool]
size=1
stride=1
[maxpool]
size=2
stride=2
[route]
layers=1
groups=2
"""


def naive_pj_shortcut(x, add, alpha=1.0, beta=1.0):
    """The corpus README's statement of pjreddie's shortcut_cpu, as loops."""
    out = x.copy()
    _, c2, h2, w2 = x.shape
    _, c1, h1, w1 = add.shape
    stride, sample = max(w1 // w2, 1), max(w2 // w1, 1)
    for k in range(min(c1, c2)):
        for j in range(min(h1, h2)):
            for i in range(min(w1, w2)):
                out[0, k, j * sample, i * sample] = (np.float32(alpha) * out[0, k, j * sample, i * sample]
                                                     + np.float32(beta) * add[0, k, j * stride, i * stride])
    return out


@pytest.mark.parametrize("tail,body", [
    ("[route]\nlayers=1,1\n", "from=0"),                 # downsample 8x8 -> 4x4, 4 of 8 channels
    ("[route]\nlayers=0\n", "from=1"),                   # upsample direction: every 2nd position only
    ("[route]\nlayers=1\n", "from=2"),                   # 2 channels into 4, same size
    ("[route]\nlayers=0\n", "from=2\nalpha=0.5\nbeta=2\nactivation=leaky"),
])
def test_pjreddie_resampling(tail, body):
    g = graph_of(PJ_BASE + tail + "[shortcut]\n" + body + "\n", "pjreddie")
    layer = g.layers[-1]
    assert layer.out_shape == g.layers[-2].out_shape
    x, add = inputs_for(g, layer)
    want = naive_pj_shortcut(x, add, layer.alpha, layer.beta)
    if layer.activation == "leaky":
        want = np.where(want > 0, want, np.float32(0.1) * want)
    np.testing.assert_allclose(layer.forward([x, add], {}), want, rtol=1e-6, atol=1e-6)
    check_lowering(layer, inputs_for(g, layer, batch=2))


def test_pjreddie_downsample_by_hand():
    g = graph_of(PJ_BASE + "[route]\nlayers=1\n[shortcut]\nfrom=0\n", "pjreddie")
    layer = g.layers[-1]
    x = np.zeros((1, 4, 4, 4), np.float32)
    add = np.arange(4 * 64, dtype=np.float32).reshape(1, 4, 8, 8)
    y = layer.forward([x, add], {})
    np.testing.assert_array_equal(y[0, 0, 0], [0, 2, 4, 6])      # top-left of each 2x2 block
    np.testing.assert_array_equal(y[0, 0, 1], [16, 18, 20, 22])
    assert layer.bflops == 0  # pjreddie counts BFLOPs for convolutions only


def test_pjreddie_refuses_several_from():
    with pytest.raises(CfgError, match="one layer"):
        graph_of(PJ_BASE + "[route]\nlayers=1\n[shortcut]\nfrom=0,1\n", "pjreddie")


def test_pjreddie_fingerprints_resnet10():
    """Every layer of pj-resnet10-256 (pjreddie's resampling shortcuts) against Darknet's fingerprints."""
    import darkcsp
    d = case_dir("pj-resnet10-256")
    model = darkcsp.load(d / "model.cfg", d / "model.weights.xz", dialect="pjreddie")
    fps = json.loads((d / "fingerprints.json").read_text())["layers"]
    tol = json.loads((d / "meta.json").read_text())["fingerprint_tolerance"]["recommended"]
    out = model.forward(np.load(d / "input.npy"), all_layers=True)
    checked = 0
    for layer in model.layers:
        if layer.type != "shortcut":
            continue
        fp = fps[layer.index]
        y = out[layer.index].ravel().astype(np.float64)
        assert y.size == fp["outputs"]
        idx = [int(math.floor(k * (y.size - 1) / 31 + 0.5)) for k in range(32)]
        np.testing.assert_allclose(y[idx], fp["samples"], rtol=1e-3, atol=tol["samples_atol"])
        assert abs(np.abs(y).sum() - fp["abs_sum"]) <= tol["abs_sum_rtol"] * fp["abs_sum"]
        checked += 1
    assert checked == 4
