"""[region] (YOLOv2 head).

AlexeyAB's CPU forward copies its input and ``flatten``s it from planar ``[a*K + e][y][x]`` to cell-major
``[y][x][a][e]`` (K = coords + 1 + classes), so the layer's output buffer — and the goldens — are
(N, H, W, num*K), while the graph keeps Darknet's shape (C, H, W). Then objectness (entry 4) gets logistic and
the classes get softmax only with ``softmax=1`` (the default 0 leaves them raw); x, y, w, h stay raw and are
decoded later (logistic on x, y at decode time). pjreddie's CPU forward keeps the planar layout and applies
logistic to x, y, objectness and, without softmax, to the classes.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

from ..cfg import Section
from ..errors import UnsupportedError
from .base import DEFAULT_NMS, BuildContext, Head, Weights
from .yolo import BoxSet, cell_grid, correct_yolo_boxes, mark_used, read_anchors, sigmoid, \
    softmax_last, threshold_probs

if TYPE_CHECKING:  # pragma: no cover
    from ..onnx.builder import OnnxGraph

_REGION_TRAINING_OPTIONS = (
    "log", "sqrt", "max", "jitter", "resize", "rescore", "thresh", "random", "bias_match", "object_scale",
    "noobject_scale", "class_scale", "coord_scale", "mask_scale", "absolute", "focal_loss", "background")


class Region(Head):
    type = "region"

    def setup(self, section: Section, ctx: BuildContext) -> None:
        self.coords = section.int("coords", 4)
        self.classes = section.int("classes", 20)
        self.num = section.int("num", 1)
        if self.num <= 0:
            raise self.error(f"num={self.num} must be positive", "num")
        self.softmax = section.int("softmax", 0)
        self.classfix = section.int("classfix", 0)
        self.background = section.int("background", 0) if self.dialect.region_planar else 0
        mark_used(section, _REGION_TRAINING_OPTIONS)
        # YOLO9000's softmax tree / class map: the graph (shapes, summary) is built, running it is refused
        self.unsupported = None
        for key, what in (("tree", "tree= (hierarchical softmax, YOLO9000)"), ("map", "map= (class remapping)")):
            if section.has(key):
                section.str(key)
                self.unsupported = section.error(f"[region] {what} is not supported by darkcsp: the graph can "
                                                 "be inspected but not run", key, cls=UnsupportedError)
                section.warn(f"{what} is not supported: darkcsp cannot run this layer", key)
        if self.coords != 4 and self.unsupported is None:
            self.unsupported = section.error(
                f"[region] coords={self.coords}: Darknet's region code hard-codes the objectness at entry 4 and "
                "the classes at 5; darkcsp runs only coords=4", "coords", cls=UnsupportedError)
        self.anchors = read_anchors(self, section, self.num)
        self.nms_kind, self.beta_nms = DEFAULT_NMS, 0.0  # parse_region reads no nms_kind
        c, h, w = self.in_shape
        need = self.num * (self.coords + 1 + self.classes)
        if c != need:
            raise self.error(
                f"filters of the conv before [region] must be {need} = num={self.num} * (coords={self.coords} + 1 + "
                f"classes={self.classes}), but layer {self.inputs[0]} gives {c} channels; fix filters= or "
                "classes=/num=", "classes")
        self.out_shape = (c, h, w)

    @property
    def entries(self) -> int:
        return self.coords + 1 + self.classes

    def describe(self) -> str:
        return f"{self.num} anchors, {self.classes} classes"

    def prior_layout(self) -> Optional[np.ndarray]:
        # per anchor: coords box values, objectness, classes
        return np.tile(np.arange(self.entries) >= self.coords, self.num)

    def _check_supported(self) -> None:
        if self.unsupported is not None:
            raise self.unsupported

    def forward(self, xs: Sequence[np.ndarray], w: Weights) -> np.ndarray:
        self._check_supported()
        x = np.asarray(xs[0], np.float32)
        n, c, h, wd = x.shape
        k = self.entries
        if self.dialect.region_planar:
            y = x.reshape(n, self.num, k, h, wd).copy()
            y[:, :, 0:2] = sigmoid(y[:, :, 0:2])
            if not self.background:
                y[:, :, 4] = sigmoid(y[:, :, 4])
            if self.softmax:
                y[:, :, 5:] = np.moveaxis(softmax_last(np.moveaxis(y[:, :, 5:], 2, -1)), -1, 2)
            else:
                y[:, :, 5:] = sigmoid(y[:, :, 5:])
            return y.reshape(n, c, h, wd)
        # flatten: [a*K+e][y][x] -> [y][x][a][e]
        y = x.reshape(n, self.num * k, h * wd).transpose(0, 2, 1).reshape(n, h, wd, self.num, k).copy()
        y[..., 4] = sigmoid(y[..., 4])
        if self.softmax:
            y[..., 5:] = softmax_last(y[..., 5:])
        return y.reshape(n, h, wd, self.num * k)

    def to_onnx(self, g: "OnnxGraph", xs: Sequence[str], w: Weights) -> str:
        self._check_supported()
        if self.dialect.region_planar:
            raise UnsupportedError("ONNX lowering of pjreddie's [region] is not implemented")
        c, h, wd = self.out_shape
        k = self.entries
        t = g.op("Reshape", [xs[0], g.ints([-1, self.num * k, h * wd])])
        t = g.op("Transpose", [t], perm=[0, 2, 1])
        t = g.op("Reshape", [t, g.ints([-1, h, wd, self.num, k])])
        box, obj, cls = g.op("Split", [t, g.ints([4, 1, self.classes])], axis=4, n_out=3)
        obj = g.op("Sigmoid", [obj])
        if self.softmax:
            cls = g.op("Softmax", [cls], axis=-1)
        t = g.op("Concat", [box, obj, cls], axis=4)
        return g.op("Reshape", [t, g.ints([-1, h, wd, self.num * k])])

    # ----- decoding ------------------------------------------------------------------------------
    def detections(self, output: np.ndarray, net_w: int, net_h: int, image_w: int, image_h: int,
                   thresh: float, hier: float = 0.5, letter: bool = False) -> BoxSet:
        """custom_get_region_detections: every (cell, anchor) in cell-major order, objectness 1, probs
        ``p*cls`` thresholded; hier_thresh is unused in AlexeyAB. pjreddie: anchor-major order, objectness
        p if p > thresh else 0, always letterbox-corrected."""
        self._check_supported()
        y = np.asarray(output, np.float32)
        if y.ndim == 4 and y.shape[0] == 1:
            y = y[0]
        _, h, w = self.out_shape
        k, m = self.entries, self.num
        pj = self.dialect.region_planar
        if pj:  # planar (m*K, H, W) -> anchor-major rows a*H*W + i
            t = y.reshape(m, k, h * w).transpose(0, 2, 1).reshape(m * h * w, k)
            cells = np.tile(np.arange(h * w), m)
            col, row = (cells % w).astype(np.float32), (cells // w).astype(np.float32)
            anchor = np.repeat(np.arange(m), h * w)
            tx, ty = t[:, 0], t[:, 1]  # already logistic in pj's forward
        else:
            t = y.reshape(h * w * m, k)
            col, row = cell_grid(h, w, m)
            anchor = np.tile(np.arange(m), h * w)
            tx, ty = sigmoid(t[:, 0]), sigmoid(t[:, 1])
        p = t[:, 4].copy()
        if self.classfix == -1:
            p[p < np.float32(0.5)] = 0
        boxes = np.empty((len(t), 4), np.float32)
        boxes[:, 0] = (col + tx) / np.float32(w)
        boxes[:, 1] = (row + ty) / np.float32(h)
        boxes[:, 2] = np.exp(t[:, 2].astype(np.float64)) * self.anchors[2 * anchor] / w
        boxes[:, 3] = np.exp(t[:, 3].astype(np.float64)) * self.anchors[2 * anchor + 1] / h
        if pj:
            objectness = np.where(p > np.float32(thresh), p, np.float32(0)).astype(np.float32)
            probs = threshold_probs(objectness[:, None] * t[:, 5:], thresh)
            probs[objectness == 0] = 0
            # pj's get_region_detections corrects boxes as letterboxed, whatever the detector did
            letter = letter or self.dialect.detector_always_letterbox
            return BoxSet(correct_yolo_boxes(boxes, image_w, image_h, net_w, net_h, letter), objectness, probs)
        probs = threshold_probs(p[:, None] * t[:, 5:], thresh)
        return BoxSet(correct_yolo_boxes(boxes, image_w, image_h, net_w, net_h, letter),
                      np.ones(len(t), np.float32), probs)

    def onnx_decode(self, g: "OnnxGraph", x: str, net_w: int, net_h: int) -> str:
        """(N, H*W*num, 4+1+classes): boxes relative to the network input, objectness p, p*class."""
        self._check_supported()
        _, h, w = self.out_shape
        k, m = self.entries, self.num
        t = g.op("Reshape", [x, g.ints([-1, h * w * m, k])])
        col, row = cell_grid(h, w, m)
        anchor = np.tile(np.arange(m), h * w)
        tx, ty, tw, th, obj, cls = g.op("Split", [t, g.ints([1, 1, 1, 1, 1, self.classes])], axis=2, n_out=6)
        bx = g.op("Div", [g.op("Add", [g.op("Sigmoid", [tx]), g.const(col[:, None], "col")]), g.scalar(float(w))])
        by = g.op("Div", [g.op("Add", [g.op("Sigmoid", [ty]), g.const(row[:, None], "row")]), g.scalar(float(h))])
        bw = g.op("Mul", [g.op("Exp", [tw]), g.const((self.anchors[2 * anchor] / w)[:, None], "anchor_w")])
        bh = g.op("Mul", [g.op("Exp", [th]), g.const((self.anchors[2 * anchor + 1] / h)[:, None], "anchor_h")])
        probs = g.op("Mul", [obj, cls])
        return g.op("Concat", [bx, by, bw, bh, obj, probs], axis=2)
