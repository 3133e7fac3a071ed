"""[yolo] (YOLOv3/v4 head), plus the helpers every detection head shares.

Darknet's [yolo] output keeps the input's planar layout: per anchor ``a`` a block of ``5 + classes`` planes
``[x, y, w, h, objectness, class_0 ...]``. The CPU forward applies logistic in place to x, y, objectness and
the classes (w, h stay raw), or nothing at all with ``new_coords=1`` (the conv before is then expected to be
logistic); then x, y get ``v*scale_x_y - 0.5*(scale_x_y - 1)``. Decoding (``detections``) follows
yolo_layer.c: get_yolo_detections / get_yolo_box / correct_yolo_boxes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple

import numpy as np

from ..cfg import Section
from ..image import letterbox_size  # the same integer formula as letterbox_image
from .base import DEFAULT_NMS, DIOU_NMS, GREEDY_NMS, BuildContext, Head, Layer, Weights

if TYPE_CHECKING:  # pragma: no cover
    from ..onnx.builder import OnnxGraph

#: nms_kind= values (Darknet's NMS_KIND enum, darknet.h)
NMS_KINDS = {"default": DEFAULT_NMS, "greedynms": GREEDY_NMS, "diounms": DIOU_NMS}

# Options parse_yolo reads that only matter for training: read so that they are not reported as unused.
_YOLO_TRAINING_OPTIONS = (
    "max", "jitter", "resize", "focal_loss", "ignore_thresh", "truth_thresh", "iou_thresh", "random",
    "track_history_size", "sim_thresh", "dets_for_track", "dets_for_show", "track_ciou_norm", "embedding_layer",
    "map", "counters_per_class", "label_smooth_eps", "objectness_smooth", "iou_normalizer", "obj_normalizer",
    "cls_normalizer", "delta_normalizer", "iou_loss", "iou_thresh_kind", "max_delta", "show_details")
_PJ_YOLO_TRAINING_OPTIONS = ("max", "jitter", "ignore_thresh", "truth_thresh", "random", "map")


@dataclass
class BoxSet:
    """Darknet ``detection`` structs of one head as arrays: boxes (n,4) x,y,w,h relative to the image
    (centre), objectness (n,), probs (n, classes) already zeroed where ``<= thresh``."""

    boxes: np.ndarray
    objectness: np.ndarray
    probs: np.ndarray

    @staticmethod
    def empty(classes: int) -> "BoxSet":
        return BoxSet(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, classes), np.float32))

    def __len__(self) -> int:
        return len(self.objectness)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Darknet's logistic_activate in float32: 1.f/(1.f + expf(-x))."""
    x = np.asarray(x, np.float32)
    with np.errstate(over="ignore"):
        return (np.float32(1) / (np.float32(1) + np.exp(-x))).astype(np.float32)


def softmax_last(x: np.ndarray) -> np.ndarray:
    """Darknet's softmax (blas.c) over the last axis: max-subtracted expf, float32 sum, divide."""
    x = np.asarray(x, np.float32)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True, dtype=np.float32)).astype(np.float32)


def correct_yolo_boxes(boxes: np.ndarray, image_w: int, image_h: int, net_w: int, net_h: int,
                       letter: bool) -> np.ndarray:
    """Network-relative boxes -> image-relative boxes (yolo_layer.c: correct_yolo_boxes, relative=1).

    Quirk kept: the offset is ``(net_w - new_w) / 2.0`` in floating point while letterbox_image pastes the
    image at the integer ``(net_w - new_w) // 2``; for an odd difference boxes shift by half a network pixel."""
    if len(boxes) == 0:
        return boxes
    new_w, new_h = letterbox_size(image_w, image_h, net_w, net_h) if letter else (net_w, net_h)
    deltaw, deltah = np.float32(net_w - new_w), np.float32(net_h - new_h)
    ratiow = np.float32(np.float32(new_w) / np.float32(net_w))
    ratioh = np.float32(np.float32(new_h) / np.float32(net_h))
    b = boxes.astype(np.float64)
    out = np.empty_like(boxes, dtype=np.float32)
    # C: b.x = (b.x - deltaw/2./netw) / ratiow  (double arithmetic, stored as float)
    out[:, 0] = ((b[:, 0] - float(deltaw) / 2.0 / net_w) / float(ratiow)).astype(np.float32)
    out[:, 1] = ((b[:, 1] - float(deltah) / 2.0 / net_h) / float(ratioh)).astype(np.float32)
    # C: b.w *= 1 / ratiow  (float)
    out[:, 2] = boxes[:, 2] * (np.float32(1) / ratiow)
    out[:, 3] = boxes[:, 3] * (np.float32(1) / ratioh)
    return out


def threshold_probs(probs: np.ndarray, thresh: float) -> np.ndarray:
    """``(prob > thresh) ? prob : 0`` with Darknet's float comparison."""
    probs = probs.astype(np.float32)
    return np.where(probs > np.float32(thresh), probs, np.float32(0)).astype(np.float32)


def mark_used(section: Section, keys: Sequence[str]) -> None:
    """Record options Darknet's parser reads but inference ignores, so they are not reported as unused."""
    for key in keys:
        if section.has(key):
            section.options[key].used = True


#: more anchors than this (num=) is a typo, not a network; refused before allocating 2*num floats
MAX_ANCHORS = 1 << 16


def _check_num(layer: Layer, total: int) -> None:
    if total > MAX_ANCHORS:
        raise layer.error(f"num={total} anchors is not a plausible network (at most {MAX_ANCHORS}); Darknet "
                          "would allocate 2*num anchor values", "num")


def read_anchors(layer: Layer, section: Section, total: int, default: float = 0.5) -> np.ndarray:
    """``anchors`` as Darknet fills l.biases[2*total]: values not given keep ``default`` (0.5 yolo, .5 region)."""
    _check_num(layer, total)
    biases = np.full(2 * total, default, np.float32)
    if section.has("anchors"):
        values = section.floats("anchors")
        if len(values) > 2 * total:
            # parse_yolo reads at most 2*num values (loop bound i < total*2); the rest are ignored.
            section.warn(f"anchors has {len(values)} values but num={total} uses only the first {2 * total}; "
                         "Darknet ignores the rest", "anchors")
            values = values[:2 * total]
        if len(values) < 2 * total:
            section.warn(f"anchors has {len(values)} values for num={total} anchors ({2 * total} expected); "
                         f"Darknet keeps {default} for the missing ones", "anchors")
        biases[:len(values)] = values
    return biases


def read_mask(layer: Layer, section: Section, total: int) -> List[int]:
    """``mask`` (default 0..num-1).

    An index past the ``num`` anchors makes Darknet's decoding read past its anchor array. When the cfg does
    not list that anchor at all it is a CfgError. When it does but ``num`` is too small to read it (upstream
    cspx-p7-mish.cfg: 20 anchors listed, num=16, mask=16..19), Darknet's parser accepts the cfg: the graph
    builds here too, with a warning, and decoding that head is refused (``Yolo._anchor_wh``)."""
    _check_num(layer, total)
    mask = section.ints("mask") if section.has("mask") else list(range(total))
    bad = [m for m in mask if m < 0 or m >= total]
    if bad:
        listed = len(section.floats("anchors")) // 2 if section.has("anchors") else 0
        if any(m < 0 or m >= listed for m in bad):
            raise layer.error(f"mask index {bad[0]} is outside the {total} anchors (num={total}); mask values "
                              f"must be 0..{total - 1}", "mask")
        section.warn(f"mask index {bad[0]} is outside num={total} anchors although anchors= lists {listed}: "
                     f"Darknet reads only the first num and decodes these boxes with garbage anchors (num={listed} "
                     "was probably meant); darkcsp builds the graph but refuses to decode this head", "mask")
    return mask


def read_nms(layer: Layer, section: Section) -> Tuple[int, float]:
    kind_name = section.str("nms_kind", "default")
    kind = NMS_KINDS.get(kind_name)
    if kind is None:
        section.warn(f"unknown nms_kind={kind_name}; Darknet uses the default NMS "
                     f"(known: {', '.join(NMS_KINDS)})", "nms_kind")
        kind = DEFAULT_NMS
    return kind, section.float("beta_nms", 0.6)


def cell_grid(h: int, w: int, m: int) -> Tuple[np.ndarray, np.ndarray]:
    """(col, row) for every (cell, anchor) in Darknet's detection order: cell i = row*W + col outer, anchor inner."""
    cells = np.repeat(np.arange(h * w), m)
    return (cells % w).astype(np.float32), (cells // w).astype(np.float32)


def cell_major(y: np.ndarray, m: int, k: int) -> np.ndarray:
    """(m*k, H, W) planar output -> (H*W*m, k): rows in Darknet's (cell, anchor) loop order."""
    _, h, w = y.shape
    return y.reshape(m, k, h * w).transpose(2, 0, 1).reshape(h * w * m, k)


class Yolo(Head):
    type = "yolo"
    #: values per anchor besides the classes (x, y, w, h, objectness)
    box_entries = 5
    #: the lowering is per-channel constants (no literal size); the box decoding builds the grid for the cfg size
    size_agnostic = True

    def setup(self, section: Section, ctx: BuildContext) -> None:
        self.classes = section.int("classes", 20)
        self.total = section.int("num", 1)
        if self.total <= 0:
            raise self.error(f"num={self.total} must be positive", "num")
        if self.classes < 0:
            raise self.error(f"classes={self.classes} must not be negative", "classes")
        self.mask = read_mask(self, section, self.total)
        self.anchors = read_anchors(self, section, self.total)
        if not self.dialect.yolo_extended_options:
            self.scale_x_y, self.new_coords, self.nms_kind, self.beta_nms = 1.0, 0, DEFAULT_NMS, 0.6
            mark_used(section, _PJ_YOLO_TRAINING_OPTIONS)
        else:
            self.scale_x_y = section.float("scale_x_y", 1.0)
            self.new_coords = section.int("new_coords", 0)
            self.nms_kind, self.beta_nms = read_nms(self, section)
            mark_used(section, _YOLO_TRAINING_OPTIONS)
        self._read_extra(section)
        c, h, w = self.in_shape
        m = len(self.mask)
        need = m * (self.box_entries + self.classes)
        if c != need:
            src = f"layer {self.inputs[0]}" if self.inputs[0] >= 0 else "the network input"
            raise self.error(
                f"filters of the conv before [{self.type}] must be {need} = {m} masks * ({self.box_entries} + "
                f"classes={self.classes}), but {src} gives {c} channels (Darknet: 'filters= in the "
                f"[convolutional]-layer doesn't correspond to classes= or mask='); fix filters= or classes=/mask=",
                "classes")
        self.out_shape = (c, h, w)

    def _read_extra(self, section: Section) -> None:
        """Hook for [Gaussian_yolo]'s extra options."""

    def describe(self) -> str:
        return f"{len(self.mask)} anchors, {self.classes} classes"

    def prior_layout(self) -> Optional[np.ndarray]:
        # per mask entry: box_entries - 1 box values (and uncertainties), objectness, classes
        k = self.box_entries + self.classes
        return np.tile(np.arange(k) >= self.box_entries - 1, len(self.mask))

    # ----- forward -------------------------------------------------------------------------------
    def _planes(self) -> Tuple[np.ndarray, np.ndarray]:
        """(logistic planes, scale_x_y planes) within one anchor block."""
        k = self.box_entries + self.classes
        if self.new_coords:
            return np.zeros(k, bool), np.isin(np.arange(k), (0, 1))
        logistic = np.ones(k, bool)
        logistic[2:4] = False
        return logistic, np.isin(np.arange(k), (0, 1))

    def forward(self, xs: Sequence[np.ndarray], w: Weights) -> np.ndarray:
        x = np.asarray(xs[0], np.float32)
        n, c, h, wd = x.shape
        m, k = len(self.mask), self.box_entries + self.classes
        y = x.reshape(n, m, k, h, wd).copy()
        logistic, scaled = self._planes()
        y[:, :, logistic] = sigmoid(y[:, :, logistic])
        if self.scale_x_y != 1.0:
            alpha = np.float32(self.scale_x_y)
            beta = np.float32(-0.5 * (self.scale_x_y - 1))
            y[:, :, scaled] = y[:, :, scaled] * alpha + beta
        return y.reshape(n, c, h, wd)

    def to_onnx(self, g: "OnnxGraph", xs: Sequence[str], w: Weights) -> str:
        # Per-channel constants instead of a reshape by (m, k, H, W): the lowering holds no literal size, so
        # it also serves a dynamic spatial size, and shape inference stays exact at every opset.
        #   y = x*A + sigmoid(x)*B + C   with, per plane: logistic -> A=0, B=s; raw -> A=s, B=0;
        #   s = scale_x_y on the x/y planes (C = -0.5*(s-1) there), else 1 (C = 0).
        # Multiplying by exactly 0/1 and adding 0 keep the values bit-identical to the NumPy forward.
        m = len(self.mask)
        logistic, scaled = self._planes()
        s = np.where(scaled, np.float32(self.scale_x_y), np.float32(1)).astype(np.float32)
        offset = np.where(scaled, np.float32(-0.5 * (self.scale_x_y - 1)), np.float32(0)).astype(np.float32)
        a = np.tile(np.where(logistic, np.float32(0), s), m).reshape(1, -1, 1, 1)
        b = np.tile(np.where(logistic, s, np.float32(0)), m).reshape(1, -1, 1, 1)
        c = np.tile(offset, m).reshape(1, -1, 1, 1)
        y = g.op("Mul", [g.op("Sigmoid", [xs[0]]), g.const(b, "logistic_scale")]) if logistic.any() else None
        if not logistic.all():
            raw = g.op("Mul", [xs[0], g.const(a, "raw_scale")])
            y = raw if y is None else g.op("Add", [raw, y])
        if self.scale_x_y != 1.0:
            y = g.op("Add", [y, g.const(c, "xy_offset")])
        return y

    # ----- decoding ------------------------------------------------------------------------------
    def _anchor_wh(self) -> Tuple[np.ndarray, np.ndarray]:
        bad = [m for m in self.mask if m < 0 or m >= self.total]
        if bad:
            raise self.error(f"mask index {bad[0]} is outside the {self.total} anchors (num={self.total}): "
                             f"Darknet decodes such boxes with garbage anchors; fix mask= (0..{self.total - 1}) "
                             "or num=/anchors=", "mask")
        idx = np.asarray(self.mask)
        return self.anchors[2 * idx], self.anchors[2 * idx + 1]

    def _cells_over_thresh(self, output: np.ndarray, obj_plane: int, thresh: float):
        """The (cell, anchor) pairs, cell-major as Darknet loops, whose objectness plane is > thresh:
        (entries, col, row, anchor_w, anchor_h, objectness, H, W)."""
        y = np.asarray(output, np.float32)
        if y.ndim == 4:
            y = y[0]
        _, h, w = y.shape
        t = cell_major(y, len(self.mask), self.box_entries + self.classes)
        col, row = cell_grid(h, w, len(self.mask))
        aw, ah = (np.tile(a, h * w) for a in self._anchor_wh())
        keep = t[:, obj_plane] > np.float32(thresh)
        return t[keep], col[keep], row[keep], aw[keep], ah[keep], t[keep, obj_plane], h, w

    def detections(self, output: np.ndarray, net_w: int, net_h: int, image_w: int, image_h: int,
                   thresh: float, hier: float = 0.5, letter: bool = False) -> BoxSet:
        """Darknet's get_yolo_detections for one image's output (C,H,W) (or (1,C,H,W)): the (cell, anchor)
        pairs with objectness > thresh, in cell-major order, boxes corrected to the image."""
        t, col, row, aw, ah, obj, h, w = self._cells_over_thresh(output, 4, thresh)
        boxes = np.empty((len(t), 4), np.float32)
        boxes[:, 0] = (col + t[:, 0]) / np.float32(w)
        boxes[:, 1] = (row + t[:, 1]) / np.float32(h)
        if self.new_coords:
            boxes[:, 2] = t[:, 2] * t[:, 2] * np.float32(4) * aw / np.float32(net_w)
            boxes[:, 3] = t[:, 3] * t[:, 3] * np.float32(4) * ah / np.float32(net_h)
        else:  # C: exp(x) * biases / w in double
            boxes[:, 2] = np.exp(t[:, 2].astype(np.float64)) * aw / net_w
            boxes[:, 3] = np.exp(t[:, 3].astype(np.float64)) * ah / net_h
        probs = threshold_probs(obj[:, None] * t[:, 5:], thresh)
        letter = letter or self.dialect.detector_always_letterbox  # pj's correct_yolo_boxes always letterboxes
        return BoxSet(correct_yolo_boxes(boxes, image_w, image_h, net_w, net_h, letter), obj.copy(), probs)

    def onnx_decode(self, g: "OnnxGraph", x: str, net_w: int, net_h: int) -> str:
        """(N, H*W*m, 4+1+classes): x, y, w, h relative to the network input (centre), objectness, and
        objectness*class (Darknet's prob before thresholding), rows in Darknet's (cell, anchor) order."""
        _, h, w = self.out_shape
        m, k = len(self.mask), self.box_entries + self.classes
        t = _onnx_cell_major(g, x, m, k, h, w)
        col, row = cell_grid(h, w, m)
        aw, ah = (np.tile(a, h * w) for a in self._anchor_wh())
        tx, ty, tw, th, obj, cls = g.op("Split", [t, g.ints([1, 1, 1, 1, 1, self.classes])], axis=2, n_out=6)
        bx = g.op("Div", [g.op("Add", [tx, g.const(col[:, None], "col")]), g.scalar(float(w))])
        by = g.op("Div", [g.op("Add", [ty, g.const(row[:, None], "row")]), g.scalar(float(h))])
        if self.new_coords:
            bw = g.op("Mul", [g.op("Mul", [tw, tw]), g.const((4 * aw / net_w)[:, None], "anchor_w")])
            bh = g.op("Mul", [g.op("Mul", [th, th]), g.const((4 * ah / net_h)[:, None], "anchor_h")])
        else:
            bw = g.op("Mul", [g.op("Exp", [tw]), g.const((aw / net_w)[:, None], "anchor_w")])
            bh = g.op("Mul", [g.op("Exp", [th]), g.const((ah / net_h)[:, None], "anchor_h")])
        probs = g.op("Mul", [obj, cls])
        return g.op("Concat", [bx, by, bw, bh, obj, probs], axis=2)


def _onnx_cell_major(g: "OnnxGraph", x: str, m: int, k: int, h: int, w: int) -> str:
    """(N, m*k, H, W) -> (N, H*W*m, k) in Darknet's (cell, anchor) order."""
    t = g.op("Reshape", [x, g.ints([-1, m, k, h * w])])
    t = g.op("Transpose", [t], perm=[0, 3, 1, 2])
    return g.op("Reshape", [t, g.ints([-1, h * w * m, k])])
