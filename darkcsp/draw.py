"""Annotated images: one rectangle per detected box, labelled with its classes and probabilities."""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np

from .postprocess import Detection

# 20 colours chosen to be told apart (RGB); class j gets colour j % 20. Darknet's own ramp gives nearly the
# same magenta to person (0) and bus (5), which is hard to read.
_PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
            (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
            (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180),
            (0, 0, 128), (128, 128, 128)]


def class_color(class_id: int, classes: int = 0) -> Tuple[int, int, int]:
    """The colour of a class as an OpenCV BGR tuple."""
    r, g, b = _PALETTE[class_id % len(_PALETTE)]
    return b, g, r


def draw_detections(image_bgr: np.ndarray, detections: Sequence[Detection], classes: int) -> np.ndarray:
    """A copy of ``image_bgr`` (H, W, 3 uint8) with every box drawn and labelled (``name 87%, name2 42%``)."""
    import cv2
    out = np.ascontiguousarray(image_bgr.copy())
    h, w = out.shape[:2]
    boxes: Dict[int, List[Detection]] = {}
    for d in detections:
        boxes.setdefault(d.box_index, []).append(d)
    thickness = max(1, int(round(min(h, w) * 0.004)))
    font_scale = max(0.4, min(h, w) / 900.0)
    font_thick = max(1, int(round(font_scale * 1.5)))
    for dets in boxes.values():
        best = dets[0]
        color = class_color(best.class_id, classes)
        x1, y1, x2, y2 = best.box_pixels()
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thickness, cv2.LINE_AA)
        label = ", ".join(f"{d.class_name} {d.percent()}" for d in dets)
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, font_thick)
        pad = max(2, thickness)
        top = y1 - th - base - 2 * pad
        if top < 0:  # no room above the box: put the label inside it
            top = y1
        left = min(max(x1, 0), max(w - tw - 2 * pad, 0))
        cv2.rectangle(out, (left, top), (left + tw + 2 * pad, top + th + base + 2 * pad), color, -1)
        # black text on light colours, white on dark ones
        lum = 0.114 * color[0] + 0.587 * color[1] + 0.299 * color[2]
        text_color = (0, 0, 0) if lum > 110 else (255, 255, 255)
        cv2.putText(out, label, (left + pad, top + pad + th), cv2.FONT_HERSHEY_SIMPLEX, font_scale, text_color,
                    font_thick, cv2.LINE_AA)
    return out
