"""[detection] (YOLOv1 head).

The input (usually a [connected] layer) is read as a flat buffer: ``side^2 * classes`` class probabilities
(cell-major), then ``side^2 * num`` box confidences, then ``side^2 * num * 4`` boxes. The forward only applies
a softmax over each cell's classes when ``softmax=1``. Darknet leaves out_c/out_h/out_w at 0 for this layer;
darkcsp reports (outputs, 1, 1).

Decoding quirk kept (detection_layer.c: get_detection_detections): boxes come out in image *pixels*
(multiplied by the image size), not relative, and are not corrected; Darknet's print path multiplies by the
image size again, so ``detector test`` prints wrong boxes for YOLOv1 nets — darkcsp reproduces that.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..cfg import Section
from ..errors import UnsupportedError
from .base import DEFAULT_NMS, BuildContext, Head, Weights
from .yolo import BoxSet, mark_used, softmax_last, threshold_probs

if TYPE_CHECKING:  # pragma: no cover
    from ..onnx.builder import OnnxGraph

log = logging.getLogger("darkcsp")

_DETECTION_TRAINING_OPTIONS = ("rescore", "max", "coord_scale", "forced", "object_scale", "noobject_scale",
                               "class_scale", "jitter", "random", "reorg")


class Detection(Head):
    type = "detection"
    #: test_detector's loop looks for yolo/Gaussian_yolo/region layers only
    sets_detector_nms = False

    def setup(self, section: Section, ctx: BuildContext) -> None:
        self.coords = section.int("coords", 1)
        self.classes = section.int("classes", 1)
        self.num = section.int("num", 1)
        self.side = section.int("side", 7)
        self.softmax = section.int("softmax", 0)
        self.sqrt = section.int("sqrt", 0)
        mark_used(section, _DETECTION_TRAINING_OPTIONS)
        self.nms_kind, self.beta_nms = DEFAULT_NMS, 0.0
        inputs = ctx.outputs_of(self.inputs[0])
        need = self.side * self.side * ((1 + self.coords) * self.num + self.classes)
        if need != inputs:
            raise self.error(
                f"side^2*((1+coords)*num+classes) = {self.side}^2*((1+{self.coords})*{self.num}+{self.classes}) = "
                f"{need} must equal the {inputs} outputs of layer {self.inputs[0]} (Darknet asserts this); fix "
                "output= of the layer before, or side=/num=/classes=/coords=", "side")
        # Darknet's decoding reads 4 box values per box whatever coords says: the graph builds, decoding refuses
        self.unsupported = None if self.coords == 4 else section.error(
            f"[detection] coords={self.coords}: Darknet's decoding reads 4 box values per box; darkcsp decodes only "
            "coords=4", "coords", cls=UnsupportedError)
        self.out_shape = (inputs, 1, 1)

    def describe(self) -> str:
        return f"side {self.side}, {self.num} boxes, {self.classes} classes"

    def prior_layout(self):
        # YOLOv1 reads its input's raw values as probabilities (no logistic): a logit prior means nothing here
        return None

    def forward(self, xs: Sequence[np.ndarray], w: Weights) -> np.ndarray:
        x = np.asarray(xs[0], np.float32)
        n = x.shape[0]
        y = x.reshape(n, -1).copy()
        if self.softmax:
            loc = self.side * self.side
            cls = y[:, :loc * self.classes].reshape(n, loc, self.classes)
            y[:, :loc * self.classes] = softmax_last(cls).reshape(n, -1)
        return y.reshape(n, -1, 1, 1)

    def to_onnx(self, g: "OnnxGraph", xs: Sequence[str], w: Weights) -> str:
        outputs = self.out_shape[0]
        t = g.op("Reshape", [xs[0], g.ints([-1, outputs])])
        if self.softmax:
            loc = self.side * self.side
            cls, rest = g.op("Split", [t, g.ints([loc * self.classes, outputs - loc * self.classes])], axis=1,
                             n_out=2)
            cls = g.op("Softmax", [g.op("Reshape", [cls, g.ints([-1, loc, self.classes])])], axis=-1)
            t = g.op("Concat", [g.op("Reshape", [cls, g.ints([-1, loc * self.classes])]), rest], axis=1)
        return g.op("Reshape", [t, g.ints([-1, outputs, 1, 1])])

    def detections(self, output: np.ndarray, net_w: int, net_h: int, image_w: int, image_h: int,
                   thresh: float, hier: float = 0.5, letter: bool = False) -> BoxSet:
        """get_detection_detections: side^2*num boxes (cell-major), in image pixels (Darknet's quirk)."""
        if self.unsupported is not None:
            raise self.unsupported
        y = np.asarray(output, np.float32).reshape(-1)
        s, m, c = self.side, self.num, self.classes
        loc = s * s
        cls = y[:loc * c].reshape(loc, c)
        conf = y[loc * c:loc * (c + m)]
        box = y[loc * (c + m):loc * (c + m) + loc * m * 4].reshape(loc * m, 4)
        cells = np.repeat(np.arange(loc), m)
        col, row = (cells % s).astype(np.float32), (cells // s).astype(np.float32)
        boxes = np.empty((loc * m, 4), np.float32)
        boxes[:, 0] = (box[:, 0] + col) / np.float32(s) * np.float32(image_w)
        boxes[:, 1] = (box[:, 1] + row) / np.float32(s) * np.float32(image_h)
        power = 2.0 if self.sqrt else 1.0
        boxes[:, 2] = np.power(box[:, 2].astype(np.float64), power) * image_w
        boxes[:, 3] = np.power(box[:, 3].astype(np.float64), power) * image_h
        probs = threshold_probs(conf[:, None] * cls[cells], thresh)
        return BoxSet(boxes, conf.astype(np.float32), probs)

    def onnx_decode(self, g: "OnnxGraph", x: str, net_w: int, net_h: int) -> str:
        raise UnsupportedError("[detection] (YOLOv1) heads have no ONNX box decoding: their boxes are in "
                               "image pixels, which the exported graph does not know")
