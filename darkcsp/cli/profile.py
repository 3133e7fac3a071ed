"""``darkcsp profile``: per-layer BFLOPs, CIO, params and live-set memory of a cfg (the paper's Fig. 7 view)."""
from __future__ import annotations

import json
import sys

from .. import analysis
from ..graph import load_graph
from .common import add_json_arguments, add_model_arguments, json_on_stdout, write_json

NAME = "profile"
HELP = ("per-layer cost of a cfg from its shapes: BFLOPs (and the computational bottleneck), CIO memory traffic, "
        "params, peak live-set memory; optional bar-chart PNG")


def add_arguments(p) -> None:
    add_model_arguments(p, weights=False)
    p.add_argument("--plot", metavar="PNG", help="write a bar chart of BFLOPs and CIO per layer")
    p.add_argument("--top", type=int, metavar="N", help="list only the N layers with the most BFLOPs")
    add_json_arguments(p, "the totals and every layer")


def run(args) -> int:
    graph = load_graph(args.cfg, dialect=args.dialect, width=args.width, height=args.height)
    prof = analysis.profile(graph)
    if args.plot:
        analysis.plot_profile(prof, args.plot)
    if args.json or args.json_file:
        write_json(args, json.dumps(prof.to_dict()))
    if not json_on_stdout(args):
        print(analysis.format_profile(prof, top=args.top))
    if args.plot and not args.quiet:
        print(f"plot written to {args.plot}", file=sys.stderr)
    return 0
