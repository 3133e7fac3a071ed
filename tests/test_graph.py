"""darkcsp.graph: building a graph from a cfg (shapes, params, BFLOPs, overrides, refusals)."""
from __future__ import annotations

import pytest

import darkcsp
from darkcsp.cli import main
from darkcsp.errors import CfgError, UnsupportedError

from tests.conftest import cfg_text, write_cfg

#: conv+BN (8) -> maxpool -> 1x1 conv (4) -> route of both, groups=2 group_id=1: shapes and counts by hand below
TINY = cfg_text("tiny-route")


def test_graph_shapes_params_bflops(tmp_path):
    g = darkcsp.load_graph(write_cfg(tmp_path, TINY))
    assert [l.type for l in g.layers] == ["convolutional", "maxpool", "convolutional", "route"]
    assert [l.out_shape for l in g.layers] == [(8, 16, 16), (8, 8, 8), (4, 8, 8), (6, 8, 8)]
    # conv0: biases 8 + BN 3*8 + weights 8*3*3*3; conv2: biases 4 + weights 4*8
    assert g.params_total == 8 + 24 + 216 + 4 + 32
    # Darknet: conv 2*C*n*k*k*oh*ow, maxpool k*k*C*oh*ow
    expected = (2 * 3 * 8 * 9 * 256 + 4 * 8 * 64 + 2 * 8 * 4 * 64) / 1e9
    assert g.bflops_total == pytest.approx(expected)
    assert g.output_indices() == [3]
    assert g.layers[3].inputs == [2, 1]


def test_width_height_override(tmp_path):
    g = darkcsp.load_graph(write_cfg(tmp_path, TINY), width=32, height=24)
    assert g.input_shape == (3, 24, 32)
    assert g.layers[1].out_shape == (8, 12, 16)


def test_unknown_layer_names_file_line(tmp_path, capsys):
    cfg = write_cfg(tmp_path, TINY + "\n[bogus]\nx=1\n")
    with pytest.raises(CfgError) as e:
        darkcsp.load_graph(cfg)
    assert "bogus" in str(e.value) and f"{cfg}:" in str(e.value)
    assert main(["summary", "--cfg", str(cfg)]) == CfgError.exit_code
    err = capsys.readouterr().err
    assert "unknown layer type [bogus]" in err and "Traceback" not in err


def test_recurrent_layer_unsupported(tmp_path):
    with pytest.raises(UnsupportedError, match=r"recurrent layer \[lstm\]"):
        darkcsp.load_graph(write_cfg(tmp_path, TINY + "\n[lstm]\noutput=4\n"))


def test_pjreddie_dialect_refuses_alexeyab_only_layers(tmp_path):
    cfg = write_cfg(tmp_path, TINY + "\n[sam]\nfrom=-2\n")
    with pytest.raises(UnsupportedError, match=r"\[sam\] does not exist in pjreddie's Darknet"):
        darkcsp.load_graph(cfg, dialect="pjreddie")
