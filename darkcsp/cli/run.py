"""``darkcsp run``: run a network on an input tensor and write every output layer to an .npz."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..backends import BACKENDS, create_backend
from ..errors import DarkcspError
from ..fileio import atomic_path
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
    p.add_argument("--threads", type=int, help="intra-op threads for onnxruntime/opencv")
    p.add_argument("--all-layers", action="store_true", help="write every layer's output, not only the outputs")


def load_input(path: str, model) -> np.ndarray:
    try:
        x = np.load(path, allow_pickle=False, mmap_mode="r")  # mmap: the shape is checked before reading
    except FileNotFoundError:
        raise DarkcspError("input file not found", file=path) from None
    except (ValueError, OSError, EOFError) as e:  # EOFError: an empty file
        raise DarkcspError(f"not a .npy array file ({e})", file=path) from None
    if not isinstance(x, np.ndarray):  # np.load returns an NpzFile for .npz archives
        raise DarkcspError("an .npz archive, not a .npy array file", file=path)
    if x.dtype.kind not in "fiub":
        raise DarkcspError(f"array of {x.dtype}, not numbers", file=path)
    if x.ndim == 3:
        x = x[None]
    want = tuple(model.graph.input_shape)
    if x.ndim != 4 or tuple(x.shape[1:]) != want:
        raise DarkcspError(f"input has shape {tuple(x.shape)}, the network expects (N, {want[0]}, {want[1]}, "
                           f"{want[2]}) (use --width/--height to change the network size)", file=path)
    return np.ascontiguousarray(x, dtype=np.float32)


def run(args) -> int:
    model = load(args.cfg, args.weights, width=args.width, height=args.height, dialect=args.dialect)
    x = load_input(args.input, model)
    options = {"all_layers": args.all_layers}
    if args.threads:
        options["threads"] = args.threads
    backend = create_backend(args.backend, model, **options)
    outputs = backend.run(x)
    with atomic_path(Path(args.out)) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **{f"layer_{i}": np.asarray(a, np.float32) for i, a in sorted(outputs.items())})
    shown = sorted(outputs) if len(outputs) <= 6 else sorted(outputs)[-6:]
    desc = ", ".join(f"layer_{i} {tuple(outputs[i].shape)}" for i in shown)
    print(f"{args.out}: {len(outputs)} arrays ({args.backend}): {desc}")
    return 0
