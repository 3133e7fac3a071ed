"""The ONNX graph optimiser the exporter runs on its nodes: Identity elimination, constant folding (one pass
in topological order), Reshape-chain merging, dead-node and unused-initializer removal. Graph outputs keep
their names."""
from __future__ import annotations

import logging
from typing import Dict, List, Sequence, Set, Tuple

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .builder import DEFAULT_OPSET

log = logging.getLogger("darkcsp")

__all__ = ["optimize", "apply_rename"]


def apply_rename(nodes: Sequence[onnx.NodeProto], rename: Dict[str, str]) -> List[onnx.NodeProto]:
    if not rename:
        return list(nodes)
    for n in nodes:
        for k, v in enumerate(n.input):
            if v in rename:
                n.input[k] = rename[v]
        for k, v in enumerate(n.output):
            if v in rename:
                n.output[k] = rename[v]
    return list(nodes)


#: ops never folded (non-deterministic or with side-effect-free but huge results)
_NO_FOLD = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
            "NonMaxSuppression", "ConstantOfShape", "Expand", "Tile"}


def optimize(nodes: List[onnx.NodeProto], inits: List[onnx.TensorProto], outputs: Sequence[str],
             opset: int = DEFAULT_OPSET) -> Tuple[List[onnx.NodeProto], List[onnx.TensorProto]]:
    """Remove Identity nodes, fold nodes whose inputs are all constants, merge Reshape chains, drop dead
    nodes and unused initializers. Graph outputs keep their names."""
    keep = set(outputs)
    init_map = {t.name: t for t in inits}

    # 1. Identity elimination (an Identity producing a graph output from another node's output renames it).
    produced = {o for n in nodes for o in n.output}
    for n in [n for n in nodes if n.op_type == "Identity"]:
        src, dst = n.input[0], n.output[0]
        if dst not in keep:
            nodes.remove(n)
            apply_rename(nodes, {dst: src})
        elif src not in keep and src in produced:
            nodes.remove(n)
            apply_rename(nodes, {src: dst})
            produced.add(dst)

    # 2. Constant folding, one pass: the nodes are in topological order (each layer emits its nodes after its
    #    inputs'), so a node's constant inputs have all been folded by the time it is visited.
    remaining: List[onnx.NodeProto] = []
    for n in nodes:
        if n.op_type in _NO_FOLD or n.domain not in ("", "ai.onnx") or any(o in keep for o in n.output) \
                or not all((i == "" or i in init_map) for i in n.input):
            remaining.append(n)
            continue
        results = _evaluate(n, init_map, opset)
        in_size = sum(int(np.prod(init_map[i].dims)) for i in n.input if i)
        if results is None or sum(r.size for r in results) > in_size + 4096:
            remaining.append(n)
            continue
        for name, value in zip(n.output, results):
            init_map[name] = numpy_helper.from_array(np.asarray(value), name)
    nodes = remaining

    # 3. Reshape(Reshape(x)) -> Reshape(x) when the inner result has no other use.
    uses: Dict[str, int] = {}
    for n in nodes:
        for i in n.input:
            uses[i] = uses.get(i, 0) + 1
    producers = {o: n for n in nodes for o in n.output}
    for n in list(nodes):
        if n.op_type != "Reshape" or n.input[0] not in producers:
            continue
        inner = producers[n.input[0]]
        if inner.op_type == "Reshape" and uses.get(inner.output[0], 0) == 1 and inner.output[0] not in keep \
                and n.input[1] in init_map and 0 not in numpy_helper.to_array(init_map[n.input[1]]).tolist():
            n.input[0] = inner.input[0]
            nodes.remove(inner)
            producers = {o: m for m in nodes for o in m.output}

    # 4. Dead code: walk back from the outputs.
    producers = {o: n for n in nodes for o in n.output}
    live_nodes: Set[int] = set()
    live_tensors: Set[str] = set()
    stack = list(keep)
    while stack:
        t = stack.pop()
        if t in live_tensors:
            continue
        live_tensors.add(t)
        n = producers.get(t)
        if n is not None and id(n) not in live_nodes:
            live_nodes.add(id(n))
            stack.extend(i for i in n.input if i)
    nodes = [n for n in nodes if id(n) in live_nodes]
    used_inits = [init_map[name] for name in _ordered_inputs(nodes) if name in init_map]
    return nodes, used_inits


def _ordered_inputs(nodes: Sequence[onnx.NodeProto]) -> List[str]:
    seen: Dict[str, None] = {}
    for n in nodes:
        for i in n.input:
            if i:
                seen.setdefault(i, None)
    return list(seen)


def _evaluate(node: onnx.NodeProto, init_map: Dict[str, onnx.TensorProto], opset: int):
    try:
        from onnx.reference import ReferenceEvaluator
        inputs = [i for i in node.input if i]
        feeds = {i: numpy_helper.to_array(init_map[i]) for i in inputs}
        vi_in = [helper.make_tensor_value_info(i, init_map[i].data_type, list(init_map[i].dims)) for i in inputs]
        vi_out = [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in node.output]
        m = helper.make_model(helper.make_graph([node], "fold", vi_in, vi_out),
                              opset_imports=[helper.make_opsetid("", opset)])
        res = ReferenceEvaluator(m).run(None, feeds)
        return [np.asarray(r) for r in res]
    except Exception as e:  # pragma: no cover - folding is an optimisation only
        log.debug("constant folding skipped %s: %s", node.name, e)
        return None
