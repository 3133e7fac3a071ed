"""darkcsp.analysis (behind the profile / compare commands): per-layer CIO, live-set memory, bottleneck, comparisons.
Expectations are hand-computed for tiny cfgs, or the CSPNet paper's published figures."""
from __future__ import annotations

import pytest

import darkcsp
from darkcsp import analysis

from tests.conftest import REPO, is_png, net_cfg, write_cfg


# (cio_in, cio_out, live) per layer, by hand (elements, batch 1). Live: the input (192) dies after layer 0;
# layer 0 (256) lives to the end (read by layer 7); every other map dies after its one consumer.
EXPECTED = [
    (192, 256, 192 + 256),
    (256, 64, 256 + 64),
    (128, 128, 256 + 128),
    (128, 256, 256 + 128 + 256),
    (256 + 256, 256, 256 + 256 + 256),
    (256 + 256, 512, 256 + 256 + 512),
    (512, 128, 256 + 512 + 128),
    (128 + 128, 128, 256 + 128 + 128),
]


@pytest.fixture
def small(live_set_cfg):
    """A route, shortcuts and a dead end (tests/data/cfg/live-set.cfg numbers its layers): EXPECTED by hand."""
    return live_set_cfg


def test_profile_by_hand(small):
    p = analysis.profile(darkcsp.load_graph(small))
    assert [(l.cio_in, l.cio_out, l.live) for l in p.layers] == EXPECTED
    assert p.cio == sum(i + o for i, o, _ in EXPECTED) == 4224
    # conv + pool layers only: 0, 1, 3, 6
    assert p.cio_compute == 448 + 320 + 384 + 640
    assert p.peak_live_bytes == 4 * 1024 and p.peak_live_layer.index == 5
    # BFLOPs: conv0 2*3*4*9*64, maxpool 2*2*4*16, conv3 2*2*4*64, shortcut 256, conv6 2*8*2*64, shortcut 128
    want = [13824, 256, 0, 1024, 256, 0, 2048, 128]
    assert [round(l.bflops * 1e9) for l in p.layers] == want
    assert p.bflops == pytest.approx(sum(want) / 1e9)
    assert p.peak_layer.index == 0
    assert p.params == (4 + 4 * 3 * 9) + (4 + 4 * 2) + (2 + 2 * 8)
    t = p.totals()
    assert t["peak_layer"]["share"] == pytest.approx(13824 / sum(want))
    assert t["peak_layer"]["depth"] == pytest.approx(1 / 8)


def test_aliasing_layer_has_no_buffer(tmp_path):
    cfg = write_cfg(tmp_path, net_cfg(4, 4, 1, """
        [convolutional]
        filters=2
        size=1
        stride=1
        activation=linear

        [dropout]
        probability=.5

        [convolutional]
        filters=3
        size=1
        stride=1
        activation=linear
        """))
    p = analysis.profile(darkcsp.load_graph(cfg))
    # dropout: no traffic, no memory; layer 0's buffer (32) is what layer 2 reads through it
    assert [(l.cio_in, l.cio_out, l.live) for l in p.layers] == [(16, 32, 48), (0, 0, 32), (32, 48, 80)]


def test_compare_relative_change(small, tmp_path):
    g = darkcsp.load_graph(small)
    a = analysis.profile(g)
    b = analysis.profile(darkcsp.load_graph(small, width=16, height=16))
    r = analysis.compare([a, b], fps=[10.0, 5.0])
    base, other = r["models"]
    assert base["change"]["bflops"] == 0.0
    assert other["change"]["bflops"] == pytest.approx(3.0)  # 4x the pixels
    assert other["change"]["params"] == 0.0
    assert other["change"]["cio"] == pytest.approx(3.0)
    assert other["change"]["fps"] == pytest.approx(-0.5)
    text = analysis.format_compare(r)
    assert "+300.0%" in text and "fps" in text and "live-set.cfg" in text
    assert analysis.relative_change(1.0, 0.0) is None


def test_format_profile(small):
    p = analysis.profile(darkcsp.load_graph(small))
    text = analysis.format_profile(p)
    assert "<- peak" in text and "computational bottleneck: layer 0" in text
    assert len(analysis.format_profile(p, top=2).splitlines()) == 2 + 2 + 3
    assert analysis.human(34_410_000) == "34.41M" and analysis.human(950) == "950"


def test_plots_are_written_atomically(small, tmp_path):
    p = analysis.profile(darkcsp.load_graph(small))
    out = tmp_path / "plots" / "profile.png"
    analysis.plot_profile(p, out)
    assert is_png(out)
    out2 = tmp_path / "plots" / "compare.png"
    analysis.plot_compare([p, p], analysis.compare([p, p]), out2)
    assert is_png(out2)
    assert sorted(x.name for x in out.parent.iterdir()) == ["compare.png", "profile.png"]  # no temp files left


def test_paper_cio_of_resnext50():
    """The paper quotes CIO 34.4M (ResNeXt-50) and 32.6M (CSPResNeXt-50); conv+pool layers at 256x256."""
    a = analysis.profile(darkcsp.load_graph(REPO / "cfg" / "resnext50.cfg"))
    b = analysis.profile(darkcsp.load_graph(REPO / "cfg" / "cspresnext50.cfg"))
    assert a.cio_compute == pytest.approx(34.4e6, rel=0.005)
    assert b.cio_compute == pytest.approx(32.6e6, rel=0.005)


def test_paper_claim_csppeleenet_cuts_computation():
    """"CSPPeleeNet cuts 13% of PeleeNet's computation" and moves the bottleneck down (the paper's Fig. 7)."""
    a = analysis.profile(darkcsp.load_graph(REPO / "cfg" / "peleenet.cfg"))
    b = analysis.profile(darkcsp.load_graph(REPO / "cfg" / "csppeleenet.cfg"))
    r = analysis.compare([a, b])["models"][1]["change"]
    assert r["bflops"] == pytest.approx(-0.13, abs=0.02)
    assert r["peak_bflops"] < -0.1


def test_plot_refuses_unknown_format(small, tmp_path):
    p = analysis.profile(darkcsp.load_graph(small))
    with pytest.raises(darkcsp.DarkcspError, match="cannot draw a plot as .txt"):
        analysis.plot_profile(p, tmp_path / "x.txt")
    assert not list(tmp_path.iterdir())  # no partial output
