"""``darkcsp run``: run a network on an input tensor and write every output layer to an .npz."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..backends import BACKENDS, create_backend
from ..fileio import atomic_path
from ..graph import load_input
from ..model import load
from .common import add_model_arguments

log = logging.getLogger("darkcsp")

NAME = "run"
HELP = "run a network on an input .npy (N,C,H,W float32) and write outputs to .npz as layer_<i>"


def add_arguments(p) -> None:
    add_model_arguments(p)
    p.add_argument("--input", required=True, help="input tensor .npy, float32 (N,C,H,W) or (C,H,W), RGB in [0,1]")
    p.add_argument("--out", required=True, help="output .npz (keys layer_<i>, 0-based Darknet layer index)")
    p.add_argument("--backend", default="numpy", help=f"one of: {', '.join(BACKENDS)} (default numpy)")
    p.add_argument("--threads", type=int, help="intra-op threads for onnxruntime/opencv/openvino")
    p.add_argument("--calib", nargs="+", metavar="IMAGE",
                   help="calibration photos (or folders, .npy tensors) for the INT8 backends")
    p.add_argument("--all-layers", action="store_true", help="write every layer's output, not only the outputs")


def run(args) -> int:
    model = load(args.cfg, args.weights, width=args.width, height=args.height, dialect=args.dialect)
    x = load_input(args.input, model.graph)
    options = {"all_layers": args.all_layers}
    if args.threads:
        options["threads"] = args.threads
    if args.calib:
        options["calib"] = args.calib
    backend = create_backend(args.backend, model, **options)
    outputs = backend.run(x)
    with atomic_path(Path(args.out)) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **{f"layer_{i}": np.asarray(a, np.float32) for i, a in sorted(outputs.items())})
    shown = sorted(outputs) if len(outputs) <= 6 else sorted(outputs)[-6:]
    desc = ", ".join(f"layer_{i} {tuple(outputs[i].shape)}" for i in shown)
    print(f"{args.out}: {len(outputs)} arrays ({args.backend}): {desc}")
    return 0
