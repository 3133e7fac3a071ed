"""Per-layer fingerprints (the conformance corpus' format) and the comparison that finds the first diverging layer.

A fingerprint summarises one layer output of one image, flattened in Darknet's memory order: ``abs_sum``
(float64 accumulation), min/max/std and 32 samples at flat index floor(k*(n-1)/31 + 0.5). Comparing ours with
Darknet's layer by layer pins a fidelity bug to the first layer that departs (``darkcsp diff``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np


def sample_indices(n: int) -> np.ndarray:
    k = np.arange(32, dtype=np.float64)
    return np.floor(k * (n - 1) / 31 + 0.5).astype(np.int64)


def fingerprint(a: np.ndarray) -> dict:
    """Fingerprint of one image's layer output (any shape, flattened C-order)."""
    flat = np.asarray(a, dtype=np.float32).ravel()
    f64 = flat.astype(np.float64)
    finite = np.isfinite(flat)
    return {
        "outputs": int(flat.size),
        "sum": float(f64.sum()),
        "abs_sum": float(np.abs(f64).sum()),
        "min": float(flat.min()) if flat.size else 0.0,
        "max": float(flat.max()) if flat.size else 0.0,
        "std": float(f64.std()) if flat.size else 0.0,
        "nonfinite": int((~finite).sum()),
        "samples": flat[sample_indices(flat.size)].tolist() if flat.size else [],
    }


@dataclass
class FingerprintTolerance:
    abs_sum_rtol: float
    samples_atol: float
    samples_rtol: float = 0.0

    @classmethod
    def for_case(cls, meta: dict) -> "FingerprintTolerance":
        """The corpus' recommendation: meta.json fingerprint_tolerance if given (pjreddie cases), else
        abs_sum within 1e-4 relative (1e-3 for deep nets, whose output atol is >= 1e-3) and the samples
        within np.allclose(rtol=1e-3, atol=case atol)."""
        ft = meta.get("fingerprint_tolerance")
        if isinstance(ft, dict) and "recommended" in ft:
            rec = ft["recommended"]
            return cls(abs_sum_rtol=rec["abs_sum_rtol"], samples_atol=rec["samples_atol"])
        atol = meta["tolerance"]["recommended"]["atol"]
        return cls(abs_sum_rtol=1e-3 if atol >= 1e-3 else 1e-4, samples_atol=atol, samples_rtol=1e-3)


@dataclass
class LayerDiff:
    index: int
    type: str
    ok: bool
    abs_sum_rel: float
    samples_max_abs: float
    shape_ok: bool
    note: str = ""


def compare_fingerprints(ours: Dict[int, np.ndarray], expected: List[dict], tol: FingerprintTolerance,
                         types: Optional[Dict[int, str]] = None) -> List[LayerDiff]:
    """Compare our per-layer outputs (one image, any shape) with Darknet's fingerprints, layer by layer."""
    out: List[LayerDiff] = []
    for fp in expected:
        i = fp["index"]
        if i not in ours:
            continue
        if fp.get("type") == "cost":
            continue  # training-only: Darknet's buffer is left as it was
        got = fingerprint(ours[i])
        shape_ok = got["outputs"] == fp["outputs"]
        if not shape_ok:
            out.append(LayerDiff(i, fp.get("type", "?"), False, float("inf"), float("inf"), False,
                                 f"{got['outputs']} values, Darknet has {fp['outputs']}"))
            continue
        exp_abs = fp["abs_sum"]
        rel = abs(got["abs_sum"] - exp_abs) / max(abs(exp_abs), 1e-30) if exp_abs else abs(got["abs_sum"])
        gs = np.asarray(got["samples"], np.float64)
        es = np.asarray(fp["samples"], np.float64)
        diff = np.abs(gs - es)
        samples_ok = bool(np.all(diff <= tol.samples_atol + tol.samples_rtol * np.abs(es)))
        abs_ok = rel <= tol.abs_sum_rtol or abs(got["abs_sum"] - exp_abs) <= tol.samples_atol
        out.append(LayerDiff(i, fp.get("type", (types or {}).get(i, "?")), bool(abs_ok and samples_ok), float(rel),
                             float(diff.max()) if diff.size else 0.0, True))
    return out


def first_divergence(diffs: List[LayerDiff]) -> Optional[LayerDiff]:
    for d in diffs:
        if not d.ok:
            return d
    return None
