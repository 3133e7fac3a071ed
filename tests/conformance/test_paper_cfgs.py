"""cfg/ holds the CSPNet paper's architectures, written for darkcsp: each must reproduce its paper row's params
and BFLOPs (Darknet's counting, at the paper's input size) within 5%, parse cleanly, run in NumPy and
onnxruntime with random weights, and export to ONNX."""
from __future__ import annotations

import logging
import textwrap

import numpy as np
import pytest

import darkcsp
from darkcsp.backends import create_backend

from tests.conftest import REPO, net_cfg, random_input, write_cfg

CFG = REPO / "cfg"

#: (cfg, paper row, input size, paper params, paper BFLOPs). Numbers from the CSPNet paper (Wang et al., CVPR-W
#: 2020) ImageNet and COCO tables; the ResNet/ResNeXt rows are Darknet's counts at 256x256, the PeleeNet
#: family's at 224x224, the detectors' at the size in the row.
PAPER = [
    ("peleenet.cfg", "PeleeNet", 224, 2.79e6, 1.017),
    ("csppeleenet.cfg", "CSPPeleeNet", 224, 2.83e6, 0.888),
    ("resnet10.cfg", "ResNet-10", 256, 5.24e6, 2.273),
    ("cspresnet10.cfg", "CSPResNet-10", 256, 2.73e6, 1.905),
    ("resnext50.cfg", "ResNeXt-50", 256, 22.19e6, 10.11),
    ("cspresnext50.cfg", "CSPResNeXt-50", 256, 20.50e6, 7.93),
    ("csppeleenet-efm.cfg", "EFM (SAM) CSPPeleeNet 416", 416, 4.31e6, 5.07),
    ("csppeleenet-efm.cfg", "EFM (SAM) CSPPeleeNet 512", 512, None, 7.68),
    ("csppeleenet-ref-prn.cfg", "PRN CSPPeleeNet Ref. 320", 320, 4.59e6, 2.56),
    ("cspdensenet-ref-prn.cfg", "PRN CSPDenseNet Ref. 320", 320, 3.97e6, 2.01),
    ("cspdensenetb-ref-prn.cfg", "PRN CSPDenseNetb Ref. 320", 320, 1.87e6, 1.59),
]
PAPER_CFGS = sorted({row[0] for row in PAPER})
DETECTORS = [c for c in PAPER_CFGS if "prn" in c or "efm" in c]
TOLERANCE = 0.05


@pytest.mark.parametrize("cfg, row, size, params, bflops", PAPER, ids=[r[1] for r in PAPER])
def test_paper_targets(cfg, row, size, params, bflops):
    g = darkcsp.load_graph(CFG / cfg, width=size, height=size)
    if params is not None:
        assert g.params_total == pytest.approx(params, rel=TOLERANCE), f"{row}: params"
    assert g.bflops_total == pytest.approx(bflops, rel=TOLERANCE), f"{row}: BFLOPs"


@pytest.mark.parametrize("cfg", PAPER_CFGS)
def test_cfg_header_and_clean_parse(cfg, caplog):
    text = (CFG / cfg).read_text()
    header = text.split("[net]")[0]
    assert header.startswith("# ") and "paper" in header and "Design decisions" in header
    sizes = {row[2] for row in PAPER if row[0] == cfg}
    assert any(f"{s}x{s}" in header for s in sizes), "the header names the paper's input size"
    with caplog.at_level(logging.WARNING, logger="darkcsp"):
        g = darkcsp.load_graph(CFG / cfg)
    assert not [r for r in caplog.records if "Unused" in r.getMessage()], caplog.text
    assert g.input_shape[1] == g.input_shape[2] == min(sizes)


def _small(cfg: str) -> int:
    return 128 if cfg in DETECTORS else 64


@pytest.mark.parametrize("cfg", PAPER_CFGS)
def test_numpy_matches_onnxruntime(cfg):
    pytest.importorskip("onnxruntime")
    s = _small(cfg)
    model = darkcsp.load(CFG / cfg, width=s, height=s, seed=3)
    g = model.graph
    # the heads, plus the last conv (a classifier's pre-softmax logits) and a layer in the middle
    convs = [l.index for l in g.layers if l.type == "convolutional"]
    outputs = sorted(set(g.output_indices()) | {convs[-1], convs[len(convs) // 2]})
    x = random_input((1, 3, s, s), seed=11)
    ref = create_backend("numpy", model, outputs=outputs).run(x)
    got = create_backend("onnxruntime", model, outputs=outputs).run(x)
    assert sorted(ref) == sorted(got) == outputs
    for i in outputs:
        assert np.isfinite(ref[i]).all()
        scale = float(np.abs(ref[i]).max()) or 1.0
        np.testing.assert_allclose(got[i].reshape(ref[i].shape), ref[i], rtol=1e-4, atol=1e-5 * scale,
                                   err_msg=f"{cfg} layer {i}")


@pytest.mark.parametrize("cfg", PAPER_CFGS)
def test_onnx_export(cfg):
    onnx = pytest.importorskip("onnx")
    from darkcsp.onnx.export import export_model
    s = _small(cfg)
    model = darkcsp.load(CFG / cfg, width=s, height=s)
    proto, _ = export_model(model)
    onnx.checker.check_model(proto)
    assert len(proto.graph.output) == len(model.graph.output_indices())


def test_csppeleenet_runs_at_paper_size():
    model = darkcsp.load(CFG / "csppeleenet.cfg", seed=1)
    out = create_backend("numpy", model).run(random_input((1, 3, 224, 224), seed=2))
    (probs,) = out.values()
    assert probs.size == 1000 and abs(float(probs.sum()) - 1.0) < 1e-4


@pytest.mark.parametrize("cfg", ["resnet10.cfg", "resnext50.cfg"])
def test_baselines_parse_in_both_dialects(cfg):
    a = darkcsp.load_graph(CFG / cfg)
    b = darkcsp.load_graph(CFG / cfg, dialect="pjreddie")
    assert a.params_total == b.params_total
    assert [l.out_shape for l in a.layers] == [l.out_shape for l in b.layers]


def test_option_a_shortcut_equals_pjreddie_resampling(tmp_path):
    """Our stride-2 identity (1x1/2 max pool + channel-padding [shortcut], used by resnet10/resnext50) computes
    what pjreddie's resampling [shortcut] computes when it adds the full-resolution map directly."""
    common = net_cfg(16, 16, 3, """
        [convolutional]
        batch_normalize=1
        filters=4
        size=3
        stride=1
        pad=1
        activation=leaky
        """)
    # the same stride-2 convolution, then a [shortcut] back to the stride-1 map (ours: through a 1x1/2 max pool)
    conv = """
        [convolutional]
        batch_normalize=1
        filters=8
        size=3
        stride=2
        pad=1
        activation=linear
        """
    ours = common + textwrap.dedent("""
        [maxpool]
        size=1
        stride=2

        [route]
        layers=-2
        """ + conv + """
        [shortcut]
        from=-3
        activation=leaky
        """)
    pj = common + textwrap.dedent(conv + """
        [shortcut]
        from=-2
        activation=leaky
        """)
    m_ours = darkcsp.load(write_cfg(tmp_path, ours, "ours.cfg"), dialect="pjreddie", seed=4)
    m_pj = darkcsp.load(write_cfg(tmp_path, pj, "pj.cfg"), dialect="pjreddie", seed=4)
    # same weights in both (the two convs come in the same order), with non-trivial batch-norm statistics
    convs_ours = [w for l, w in zip(m_ours.layers, m_ours.weights) if l.type == "convolutional"]
    convs_pj = [w for l, w in zip(m_pj.layers, m_pj.weights) if l.type == "convolutional"]
    assert len(convs_ours) == len(convs_pj) == 2
    rng = np.random.default_rng(6)
    for a, b in zip(convs_ours, convs_pj):
        for k in ("biases", "scales", "rolling_mean"):
            a[k][...] = rng.normal(size=a[k].shape)
        a["rolling_variance"][...] = rng.uniform(0.5, 2.0, size=a["rolling_variance"].shape)
        for k in a:
            b[k][...] = a[k]
    x = random_input((1, 3, 16, 16), seed=9)
    y_ours = m_ours.forward(x)[4]
    y_pj = m_pj.forward(x)[2]
    assert y_ours.shape == y_pj.shape == (1, 8, 8, 8)
    np.testing.assert_allclose(y_ours, y_pj, rtol=1e-6, atol=1e-6)
    # and the default dialect runs our form (it refuses the direct one)
    darkcsp.load_graph(tmp_path / "ours.cfg")
    with pytest.raises(darkcsp.CfgError):
        darkcsp.load_graph(tmp_path / "pj.cfg")


@pytest.mark.parametrize("ours, theirs", [("cspresnext50.cfg", "csresnext50"), ("resnext50.cfg", "resnext50"),
                                          ("resnet10.cfg", "resnet10")])
def test_convs_match_darknets_parse_of_the_authors_cfgs(conformance_dir, ours, theirs):
    """Our cfgs are written independently; Darknet's parse of the CSPNet authors' own cfgs (conformance corpus)
    must show the same convolutions (output shapes and weight counts, in order)."""
    import json
    path = conformance_dir / "shapes" / f"WongKinYiu-CrossStagePartialNetworks__{theirs}.json"
    if not path.exists():
        pytest.skip(f"{path.name} not in the corpus")
    ref = json.loads(path.read_text())
    want = [(tuple(l["out_shape"]), l["params"]) for l in ref["layers"] if l["type"] == "convolutional"]
    g = darkcsp.load_graph(CFG / ours)
    got = [(tuple(l.out_shape), l.params) for l in g.layers if l.type == "convolutional"]
    assert got == want
    if theirs == "csresnext50":  # same layer sequence too, and Darknet's totals
        assert [l.type for l in g.layers] == [l["type"] for l in ref["layers"]]
        assert g.params_total == ref["params_total"]
        assert g.bflops_total == pytest.approx(ref["bflops_total"], rel=1e-6)
