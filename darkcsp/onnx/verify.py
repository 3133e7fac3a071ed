"""Checking an exported model against the NumPy executor (``darkcsp convert`` for ONNX and OpenVINO IR).

The check runs the exported model and ``Model.forward`` on the same synthetic input and bounds
``max |exported - numpy| / max(1, max |numpy|)`` per output: far above float32 rounding in deep nets, far below
what a wrong lowering gives.
"""
from __future__ import annotations

from typing import Callable, Dict, Mapping, Sequence, Tuple

import numpy as np

from ..errors import DarkcspError

#: default verification limits (relative to max(1, max |numpy|)): float32, float16 weights/compute
TOLERANCE = 1e-2
TOLERANCE_FP16 = 5e-2


def verification_input(shape) -> np.ndarray:
    """A smooth synthetic image in [0, 1] (gradients and low-frequency waves per channel, a different phase
    per batch item). Uniform noise is a poor probe: it drives calibrated networks far outside the range
    they were trained for, where float32 rounding differences blow up (enet-coco's SE blocks, for one)."""
    n, c, h, w = shape
    yy, xx = np.meshgrid(np.linspace(0, 1, h, dtype=np.float64), np.linspace(0, 1, w, dtype=np.float64),
                         indexing="ij")
    out = np.empty(shape, np.float32)
    for b in range(n):
        for ch in range(c):
            ph = 0.7 * b + 1.3 * ch
            out[b, ch] = 0.5 + 0.25 * np.sin(2 * np.pi * (1.5 * xx + ph)) * np.cos(2 * np.pi * (yy - ph)) \
                + 0.2 * (xx - 0.5) * (1 if ch % 2 else -1)
    return np.clip(out, 0, 1)


def verify_outputs(checks: Sequence[Tuple[object, int]], outputs: Mapping[int, str],
                   run: Callable[[np.ndarray], Dict[str, np.ndarray]], tol: float, what: str) -> Dict[str, float]:
    """For each (model, batch) in ``checks``: run ``run`` (input -> {output name: array}) and the NumPy executor
    on ``verification_input``; raise DarkcspError if an output differs by more than ``tol * max(1, max
    |numpy|)``. ``outputs`` maps layer index -> output name. Returns {output name: max abs diff}."""
    diffs: Dict[str, float] = {}
    for model, batch in checks:
        x = verification_input((batch,) + tuple(model.graph.input_shape))
        ref = model.forward(x, outputs=list(outputs))
        got = run(x)
        for i, name in outputs.items():
            a, r = np.asarray(got[name]), ref[i]
            if a.shape != r.shape:
                raise DarkcspError(f"verification failed: {name} has shape {a.shape} in {what}, {r.shape} in NumPy")
            d = float(np.max(np.abs(a.astype(np.float64) - r))) if r.size else 0.0
            scale = max(1.0, float(np.max(np.abs(r))) if r.size else 0.0)
            if not np.isfinite(d) or d > tol * scale:
                raise DarkcspError(f"verification failed: {name} differs from the NumPy executor by {d:.3g} in "
                                   f"{what} (limit {tol * scale:.3g}); no file written (use --no-verify to write "
                                   f"anyway)")
            diffs[name] = max(diffs.get(name, 0.0), d)
    return diffs


def max_difference(model, outputs: Mapping[int, str], run: Callable[[np.ndarray], Dict[str, np.ndarray]],
                   x: np.ndarray) -> float:
    """Largest |run(x) - numpy| over ``outputs`` (informative, for reduced-precision models)."""
    ref = model.forward(x, outputs=list(outputs))
    got = run(x)
    return max(float(np.max(np.abs(np.asarray(got[name], np.float64) - ref[i]))) for i, name in outputs.items())
