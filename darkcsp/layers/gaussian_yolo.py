"""[Gaussian_yolo] (Gaussian YOLOv3): a [yolo] head that also predicts the uncertainty of each box coordinate.

Planes per anchor: ``[x, sigma_x, y, sigma_y, w, sigma_w, h, sigma_h, objectness, classes...]``. The CPU
forward (gaussian_yolo_layer.c) applies logistic to x, sigma_x, y, sigma_y, sigma_w, sigma_h, objectness and
the classes, and ``scale_x_y`` to x and y only; w and h stay raw. Decoding multiplies each class prob by
``1 - mean(sigma_x, sigma_y, sigma_w, sigma_h)``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Tuple

import numpy as np

from ..cfg import Section
from .yolo import BoxSet, Yolo, _onnx_cell_major, cell_grid, correct_yolo_boxes, mark_used, \
    threshold_probs

if TYPE_CHECKING:  # pragma: no cover
    from ..onnx.builder import OnnxGraph

_GAUSSIAN_TRAINING_OPTIONS = ("uc_normalizer", "label_smooth_eps")
YOLO_POINTS = ("center", "left_top", "right_bottom")


class GaussianYolo(Yolo):
    type = "Gaussian_yolo"
    box_entries = 9
    #: the lowering is [yolo]'s (no literal size), but it has not been checked at a second size yet
    size_agnostic = False

    def _read_extra(self, section: Section) -> None:
        mark_used(section, _GAUSSIAN_TRAINING_OPTIONS)
        self.yolo_point = section.str("yolo_point", "center")
        if self.yolo_point not in YOLO_POINTS:
            # Darknet: strcmp chain, anything else is YOLO_CENTER
            section.warn(f"unknown yolo_point={self.yolo_point}; Darknet uses center", "yolo_point")
            self.yolo_point = "center"

    def _planes(self) -> Tuple[np.ndarray, np.ndarray]:
        k = self.box_entries + self.classes
        logistic = np.ones(k, bool)
        logistic[[4, 6]] = False  # w, h raw
        return logistic, np.isin(np.arange(k), (0, 2))

    def detections(self, output: np.ndarray, net_w: int, net_h: int, image_w: int, image_h: int,
                   thresh: float, hier: float = 0.5, letter: bool = False) -> BoxSet:
        """get_gaussian_yolo_detections: like [yolo], objectness on plane 8, probs scaled by 1 - mean(uc)."""
        t, col, row, aw, ah, obj, h, w = self._cells_over_thresh(output, 8, thresh)
        boxes = np.empty((len(t), 4), np.float32)
        boxes[:, 0] = (col + t[:, 0]) / np.float32(w)
        boxes[:, 1] = (row + t[:, 2]) / np.float32(h)
        boxes[:, 2] = np.exp(t[:, 4].astype(np.float64)) * aw / net_w
        boxes[:, 3] = np.exp(t[:, 6].astype(np.float64)) * ah / net_h
        if self.yolo_point == "left_top":
            boxes[:, 0] += boxes[:, 2] / 2
            boxes[:, 1] += boxes[:, 3] / 2
        elif self.yolo_point == "right_bottom":
            boxes[:, 0] -= boxes[:, 2] / 2
            boxes[:, 1] -= boxes[:, 3] / 2
        # C: float uc_aver = (sx + sy + sw + sh) / 4.0; prob = objectness*cls*(1.0 - uc_aver) (double)
        uc = ((t[:, 1] + t[:, 3] + t[:, 5] + t[:, 7]).astype(np.float32) / np.float32(4.0))
        probs = (obj[:, None] * t[:, 9:]).astype(np.float64) * (1.0 - uc[:, None].astype(np.float64))
        probs = threshold_probs(probs.astype(np.float32), thresh)
        return BoxSet(correct_yolo_boxes(boxes, image_w, image_h, net_w, net_h, letter), obj.copy(), probs)

    def onnx_decode(self, g: "OnnxGraph", x: str, net_w: int, net_h: int) -> str:
        """(N, H*W*m, 4+1+classes) like [yolo]; class probs include Darknet's (1 - mean uncertainty) factor."""
        _, h, w = self.out_shape
        m, k = len(self.mask), self.box_entries + self.classes
        t = _onnx_cell_major(g, x, m, k, h, w)
        col, row = cell_grid(h, w, m)
        aw, ah = (np.tile(a, h * w) for a in self._anchor_wh())
        tx, sx, ty, sy, tw, sw, th, sh, obj, cls = g.op(
            "Split", [t, g.ints([1] * 9 + [self.classes])], axis=2, n_out=10)
        bx = g.op("Div", [g.op("Add", [tx, g.const(col[:, None], "col")]), g.scalar(float(w))])
        by = g.op("Div", [g.op("Add", [ty, g.const(row[:, None], "row")]), g.scalar(float(h))])
        bw = g.op("Mul", [g.op("Exp", [tw]), g.const((aw / net_w)[:, None], "anchor_w")])
        bh = g.op("Mul", [g.op("Exp", [th]), g.const((ah / net_h)[:, None], "anchor_h")])
        if self.yolo_point != "center":
            op = "Add" if self.yolo_point == "left_top" else "Sub"
            half = g.scalar(0.5)
            bx = g.op(op, [bx, g.op("Mul", [bw, half])])
            by = g.op(op, [by, g.op("Mul", [bh, half])])
        uc = g.op("Div", [g.op("Add", [g.op("Add", [sx, sy]), g.op("Add", [sw, sh])]), g.scalar(4.0)])
        probs = g.op("Mul", [g.op("Mul", [obj, cls]), g.op("Sub", [g.scalar(1.0), uc])])
        return g.op("Concat", [bx, by, bw, bh, obj, probs], axis=2)
