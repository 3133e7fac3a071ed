"""``darkcsp summary``: Darknet's layer printout (shapes, BFLOPs) and totals, or JSON."""
from __future__ import annotations

import json

from ..graph import load_graph
from .common import add_json_arguments, add_model_arguments, json_on_stdout, write_json

NAME = "summary"
HELP = "per-layer table of a cfg: type, filters/size/stride, input -> output shape, BFLOPs; totals"


def add_arguments(p) -> None:
    add_model_arguments(p, weights=False)
    add_json_arguments(p, "every layer and the totals")


def summary_dict(graph) -> dict:
    return {
        "layers": [{"index": l.index, "type": l.type, "in_shape": list(l.in_shape), "out_shape": list(l.out_shape),
                    "bflops": l.bflops, "params": l.params} for l in graph.layers],
        "bflops_total": graph.bflops_total,
        "params_total": graph.params_total,
    }


def format_table(graph) -> str:
    lines = [f"{graph.file}: input {graph.input_shape[2]} x {graph.input_shape[1]} x {graph.input_shape[0]}",
             "   layer   type             filters/size/stride       input                 output          BFLOPs      params"]
    for l in graph.layers:
        ci, hi, wi = l.in_shape
        co, ho, wo = l.out_shape
        lines.append(f"{l.index:5d}  {l.type:<16s} {l.describe():<24s} {wi:4d} x{hi:4d} x{ci:5d} -> {wo:4d} x{ho:4d} x{co:5d}"
                     f"  {l.bflops:7.3f} BF {l.params:10d}")
    lines.append(f"Total BFLOPS {graph.bflops_total:5.3f}   params {graph.params_total} "
                 f"({graph.params_total / 1e6:.2f}M)   layers {len(graph.layers)}")
    return "\n".join(lines)


def run(args) -> int:
    graph = load_graph(args.cfg, dialect=args.dialect, width=args.width, height=args.height)
    if args.json or args.json_file:
        write_json(args, json.dumps(summary_dict(graph)))
    if not json_on_stdout(args):
        print(format_table(graph))
    return 0
