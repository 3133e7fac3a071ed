"""Graph building, summary output and the run/diff commands on small cfgs written here."""
from __future__ import annotations

import json

import numpy as np
import pytest

import darkcsp
from darkcsp.cli import main
from darkcsp.errors import CfgError, UnsupportedError

from conftest import conformance_root, write_cfg

TINY = """
[net]
width=16
height=16
channels=3

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
filters=4
size=1
stride=1
activation=linear

[route]
layers=-1,-2
groups=2
group_id=1
"""


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


def test_summary_json_format(tmp_path, capsys):
    assert main(["summary", "--cfg", str(write_cfg(tmp_path, TINY)), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert set(d) == {"layers", "bflops_total", "params_total"}
    assert set(d["layers"][0]) == {"index", "type", "in_shape", "out_shape", "bflops", "params"}
    assert d["layers"][3]["type"] == "route" and d["layers"][3]["out_shape"] == [6, 8, 8]
    assert d["params_total"] == 284


def test_summary_table(tmp_path, capsys):
    assert main(["summary", "--cfg", str(write_cfg(tmp_path, TINY))]) == 0
    out = capsys.readouterr().out
    assert "Total BFLOPS" in out and "route" in out and "maxpool" in out


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


def test_run_and_diff_commands(tmp_path, capsys):
    cfg = write_cfg(tmp_path, TINY)
    x = np.random.default_rng(0).random((1, 3, 16, 16), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "out.npz"
    assert main(["run", "--cfg", str(cfg), "--input", str(tmp_path / "x.npy"), "--out", str(out), "--all-layers"]) == 0
    z = np.load(out)
    assert sorted(z.files) == ["layer_0", "layer_1", "layer_2", "layer_3"]
    assert z["layer_3"].shape == (1, 6, 8, 8)
    # route groups=2 group_id=1 of [conv2 (4 ch), maxpool (8 ch)] = conv2[2:4] ++ maxpool[4:8]
    assert np.array_equal(z["layer_3"][0], np.concatenate([z["layer_2"][0, 2:], z["layer_1"][0, 4:]]))
    assert not list(tmp_path.glob("*.part*"))


def test_run_bad_input_shape(tmp_path, capsys):
    cfg = write_cfg(tmp_path, TINY)
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 8, 8), np.float32))
    rc = main(["run", "--cfg", str(cfg), "--input", str(tmp_path / "x.npy"), "--out", str(tmp_path / "o.npz")])
    assert rc != 0 and not (tmp_path / "o.npz").exists()
    assert "expects (N, 3, 16, 16)" in capsys.readouterr().err


def test_diff_on_conformance_case(capsys):
    case = conformance_root() / "cases" / "zoo-pooling"
    if not case.is_dir():
        pytest.skip("conformance corpus not present")
    assert main(["diff", "--case", str(case)]) == 0
    out = capsys.readouterr().out
    assert "all" in out and "match Darknet's fingerprints" in out and "output layer_18" in out


def test_diff_finds_first_diverging_layer(tmp_path, capsys):
    """Perturb one conv's weights of a conformance case: diff must name exactly that layer."""
    case = conformance_root() / "cases" / "zoo-conv-geometry"
    if not case.is_dir():
        pytest.skip("conformance corpus not present")
    from darkcsp.weights import read_weights, write_weights
    graph = darkcsp.load_graph(case / "model.cfg")
    wf = read_weights(case / "model.weights.xz", graph)
    target = [l.index for l in graph.layers if l.type == "convolutional"][3]
    wf.layers[target]["biases"] = wf.layers[target]["biases"] + 0.5
    write_weights(tmp_path / "bad.weights", wf, graph)
    rc = main(["diff", "--case", str(case), "--weights", str(tmp_path / "bad.weights")])
    out = capsys.readouterr().out
    assert rc == 1
    assert f"first divergence: layer {target} [convolutional]" in out


def test_pjreddie_dialect_refuses_alexeyab_only_layers(tmp_path):
    cfg = write_cfg(tmp_path, TINY + "\n[sam]\nfrom=-2\n")
    with pytest.raises(UnsupportedError, match=r"\[sam\] does not exist in pjreddie's Darknet"):
        darkcsp.load_graph(cfg, dialect="pjreddie")
