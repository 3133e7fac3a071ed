"""darkcsp.onnx.optimize: constant chains fold in one pass, graph outputs keep their names, dead code goes."""
from __future__ import annotations

import numpy as np
from onnx import helper, numpy_helper

from darkcsp.onnx.optimize import optimize


def _const(name, value):
    return numpy_helper.from_array(np.asarray(value, np.float32), name)


def test_constant_chain_folds_in_one_pass():
    # c1 = a + b; c2 = c1 * c; y = x + c2: everything but the last Add depends on constants only
    nodes = [helper.make_node("Add", ["a", "b"], ["c1"], name="n1"),
             helper.make_node("Mul", ["c1", "c"], ["c2"], name="n2"),
             helper.make_node("Add", ["x", "c2"], ["y"], name="n3"),
             helper.make_node("Neg", ["a"], ["dead"], name="n4")]
    inits = [_const("a", [1.0, 2.0]), _const("b", [3.0, 4.0]), _const("c", [10.0, 100.0])]
    out_nodes, out_inits = optimize(nodes, inits, ["y"])
    assert [n.name for n in out_nodes] == ["n3"]
    (folded,) = out_inits
    assert folded.name == "c2"
    np.testing.assert_array_equal(numpy_helper.to_array(folded), [40.0, 600.0])


def test_graph_output_is_not_folded_away():
    nodes = [helper.make_node("Add", ["a", "b"], ["out"], name="n1")]
    out_nodes, out_inits = optimize(nodes, [_const("a", [1.0]), _const("b", [2.0])], ["out"])
    assert [n.output[0] for n in out_nodes] == ["out"] and {t.name for t in out_inits} == {"a", "b"}
