"""``darkcsp diff``: run a network layer by layer against Darknet's fingerprints and find the first divergence."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..backends import BACKENDS, create_backend
from ..errors import DarkcspError
from ..dialect import dialect_of_reference
from ..fingerprints import FingerprintTolerance, compare_fingerprints, first_divergence
from ..graph import load_input
from ..model import load
from .common import add_model_arguments

NAME = "diff"
HELP = "compare every layer with Darknet fingerprints (and outputs with expected.npz); report the first divergence"


def add_arguments(p) -> None:
    p.add_argument("--case", help="a conformance case folder (model.cfg, model.weights[.xz], input.npy, "
                                  "fingerprints.json, expected.npz, meta.json): fills the other options")
    add_model_arguments(p, cfg_required=False)
    p.add_argument("--input", help="input tensor .npy")
    p.add_argument("--fingerprints", help="Darknet per-layer fingerprints.json")
    p.add_argument("--expected", help="expected outputs .npz (layer_<i>)")
    p.add_argument("--atol", type=float, help="absolute tolerance (default: the case's meta.json, else 1e-4)")
    p.add_argument("--rtol", type=float, default=1e-3)
    p.add_argument("--backend", default="numpy", help=f"one of: {', '.join(BACKENDS)}")
    p.add_argument("--all", action="store_true", help="print every layer, not only up to the first divergence")


def _fill_from_case(args) -> dict:
    d = Path(args.case)
    if not d.is_dir():
        raise DarkcspError("not a conformance case folder", file=args.case)
    meta = json.loads((d / "meta.json").read_text()) if (d / "meta.json").exists() else {}
    args.cfg = args.cfg or str(d / "model.cfg")
    if not args.weights:
        for name in ("model.weights", "model.weights.xz"):
            if (d / name).exists():
                args.weights = str(d / name)
    args.input = args.input or str(d / "input.npy")
    args.fingerprints = args.fingerprints or str(d / "fingerprints.json")
    if not args.expected and (d / "expected.npz").exists():
        args.expected = str(d / "expected.npz")
    reference = dialect_of_reference(meta.get("reference", ""))
    if reference is not None:
        args.dialect = reference.name
    return meta


def run(args) -> int:
    meta = _fill_from_case(args) if args.case else {}
    for opt, value in (("cfg", args.cfg), ("input", args.input), ("fingerprints", args.fingerprints)):
        if not value:
            raise DarkcspError(f"--{opt} is required (or --case)")
    if args.atol is None:
        args.atol = meta.get("tolerance", {}).get("recommended", {}).get("atol", 1e-4)
    tol = FingerprintTolerance.for_case(meta) if meta else FingerprintTolerance(1e-4, args.atol, args.rtol)
    model = load(args.cfg, args.weights, width=args.width, height=args.height, dialect=args.dialect)
    x = load_input(args.input, model.graph)
    try:
        fps = json.loads(Path(args.fingerprints).read_text())["layers"]
    except (OSError, ValueError, KeyError) as e:
        raise DarkcspError(f"cannot read fingerprints ({e})", file=args.fingerprints) from None
    outs = create_backend(args.backend, model, all_layers=True).run(x[:1])
    diffs = compare_fingerprints({i: a[0] for i, a in outs.items()}, fps, tol)
    bad = first_divergence(diffs)
    print(f"{'layer':>5}  {'type':<16} {'abs_sum rel err':>15} {'samples max abs':>16}  status")
    for d in diffs:
        print(f"{d.index:5d}  {d.type:<16} {d.abs_sum_rel:15.3g} {d.samples_max_abs:16.3g}  "
              f"{'ok' if d.ok else 'DIVERGES ' + d.note}")
        if bad is not None and d.index == bad.index and not args.all:
            break
    status = 0
    if bad is not None:
        print(f"first divergence: layer {bad.index} [{bad.type}] "
              f"({model.graph.layers[bad.index].section.file}:{model.graph.layers[bad.index].section.line})")
        status = 1
    else:
        print(f"all {len(diffs)} layers match Darknet's fingerprints")
    if args.expected:
        exp = np.load(args.expected)
        for key in exp.files:
            i = int(key.split("_")[1])
            e = exp[key]
            g = np.asarray(outs[i][:1]).reshape(e.shape)
            err = float(np.abs(g - e).max())
            ok = bool(np.allclose(g, e, rtol=args.rtol, atol=args.atol))
            print(f"output {key}: max abs error {err:.3g} ({'ok' if ok else 'FAIL'}, atol {args.atol}, rtol {args.rtol})")
            status = status or (0 if ok else 1)
    return status
