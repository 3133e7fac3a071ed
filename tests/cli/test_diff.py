"""`darkcsp diff`: a conformance case against Darknet's fingerprints, naming the first diverging layer."""
from __future__ import annotations

import pytest

import darkcsp
from darkcsp.cli import main

from tests.conftest import conformance_root


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
