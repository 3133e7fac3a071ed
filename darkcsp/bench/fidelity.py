"""Detection fidelity: how many of Darknet's detections a backend recovers (same class, IoU >= 0.8)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict, Sequence, Tuple

import numpy as np

__all__ = ["detection_agreement", "centre_box_iou"]


def detection_agreement(run: Callable[..., Sequence[Any]], dirs: Sequence[str], iou: float = 0.8
                        ) -> Dict[str, Any]:
    """For each folder (input.npy + detections.json): how many of Darknet's detections the backend recovers with
    the same class and IoU >= ``iou``, the largest probability difference over those, and the extras."""
    matched = expected = extra = 0
    max_diff = 0.0
    per_image = {}
    for d in dirs:
        d = Path(d)
        golden = json.loads((d / "detections.json").read_text())
        x = np.load(d / "input.npy").astype(np.float32)
        got = run(x, golden["image_w"], golden["image_h"], golden.get("letter_box", 0))
        got = [_det_tuple(g) for g in got]
        used = set()
        m_here = 0
        for gd in golden["detections"]:
            gbox = (gd["x"], gd["y"], gd["w"], gd["h"])
            best, best_j = 0.0, None
            for j, (cls, prob, box) in enumerate(got):
                if j in used or cls != gd["class_id"]:
                    continue
                v = centre_box_iou(gbox, box)
                if v > best:
                    best, best_j = v, j
            if best_j is not None and best >= iou:
                used.add(best_j)
                m_here += 1
                max_diff = max(max_diff, abs(got[best_j][1] - gd["prob"]))
        matched += m_here
        expected += len(golden["detections"])
        extra += len(got) - len(used)
        per_image[d.name] = {"matched": m_here, "expected": len(golden["detections"]), "got": len(got)}
    return {"matched": matched, "expected": expected, "recall": matched / expected if expected else 1.0,
            "iou": iou, "max_prob_diff": max_diff, "extra": extra, "images": per_image}


def _det_tuple(d) -> Tuple[int, float, Tuple[float, float, float, float]]:
    """(class_id, prob, (x, y, w, h) relative centre box) from a detection: a ``darkcsp.Detection`` or its
    ``to_dict()`` form."""
    if isinstance(d, dict):
        return int(d["class_id"]), float(d["prob"]), (float(d["x"]), float(d["y"]), float(d["w"]), float(d["h"]))
    return int(d.class_id), float(d.prob), (float(d.x), float(d.y), float(d.w), float(d.h))


def centre_box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two (centre x, centre y, w, h) boxes in double precision, for matching detections (not Darknet's
    float32 ``box_iou`` of ``darkcsp.postprocess``, which NMS uses)."""
    ax0, ay0, ax1, ay1 = a[0] - a[2] / 2, a[1] - a[3] / 2, a[0] + a[2] / 2, a[1] + a[3] / 2
    bx0, by0, bx1, by1 = b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2, b[1] + b[3] / 2
    iw = max(0.0, min(ax1, bx1) - max(ax0, bx0))
    ih = max(0.0, min(ay1, by1) - max(ay0, by0))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0
