"""Options shared by several subcommands."""
from __future__ import annotations

import argparse


def add_model_arguments(p: argparse.ArgumentParser, cfg_required: bool = True, weights: bool = True) -> None:
    p.add_argument("--cfg", required=cfg_required, help="Darknet .cfg file")
    if weights:
        p.add_argument("--weights", help="Darknet .weights file (.xz/.gz accepted); random weights if omitted")
    p.add_argument("--width", type=int, help="override [net] width")
    p.add_argument("--height", type=int, help="override [net] height")
    p.add_argument("--dialect", choices=["alexeyab", "pjreddie"], default="alexeyab",
                   help="Darknet lineage whose semantics to follow (default: alexeyab)")
