"""From head outputs to Darknet's printed detections: get_network_boxes, NMS, and draw_detections_v3's order.

Everything here follows Darknet's ``detector test`` (detector.c: test_detector) step by step:
1. every head's ``detections`` in layer order (network.c: get_network_boxes / fill_network_boxes);
2. NMS 0.45 of the kind the *last* [yolo]/[Gaussian_yolo]/[region] layer asks for (box.c: do_nms_sort,
   diounms_sort);
3. the print order (image.c: draw_detections_v3 / get_actual_detections): boxes with a class over thresh,
   sorted by left edge, best class first, then every other class over thresh in index order.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List, Mapping, Optional, Sequence

import numpy as np

from .layers.base import Layer
from .layers.yolo import DEFAULT_NMS, GREEDY_NMS, BoxSet

__all__ = ["Detection", "get_network_boxes", "nms_layer", "do_nms", "box_iou", "box_diou", "print_order",
           "detect", "heads_of"]


@dataclass
class Detection:
    """One printed line of Darknet: a (box, class) pair. x, y, w, h are relative to the image (centre)."""

    class_id: int
    class_name: str
    prob: float
    x: float
    y: float
    w: float
    h: float
    objectness: float
    image_w: int
    image_h: int
    #: True for the box's best class (the first line Darknet prints for a box)
    best: bool = True
    #: index of the box in the post-NMS array (lines of one box share it)
    box_index: int = field(default=-1, compare=False)

    def ext_box(self) -> tuple:
        """Darknet's -ext_output numbers: round((x-w/2)*W), round((y-h/2)*H), round(w*W), round(h*H)."""
        f32 = np.float32
        left = f32(f32(self.x) - f32(self.w) / f32(2)) * f32(self.image_w)
        top = f32(f32(self.y) - f32(self.h) / f32(2)) * f32(self.image_h)
        return (_c_round(left), _c_round(top), _c_round(f32(self.w) * f32(self.image_w)),
                _c_round(f32(self.h) * f32(self.image_h)))

    def box_pixels(self) -> List[int]:
        """The rectangle Darknet draws (draw_detections_v3): [left, top, right, bottom], truncated, clipped."""
        x, y, w, h = (float(np.float32(v)) for v in (self.x, self.y, self.w, self.h))
        left = int((x - w / 2.0) * self.image_w)
        right = int((x + w / 2.0) * self.image_w)
        top = int((y - h / 2.0) * self.image_h)
        bot = int((y + h / 2.0) * self.image_h)
        return [max(left, 0), max(top, 0), min(right, self.image_w - 1), min(bot, self.image_h - 1)]

    def percent(self) -> str:
        return f"{float(np.float32(self.prob) * np.float32(100)):.0f}%"

    def print_line(self, ext_output: bool = True) -> str:
        """Darknet's line: ``name: 87%`` and with -ext_output the pixel box."""
        text = f"{self.class_name}: {self.percent()}"
        if ext_output:
            l, t, w, h = self.ext_box()
            text += f"\t(left_x: {l:4.0f}   top_y: {t:4.0f}   width: {w:4.0f}   height: {h:4.0f})"
        return text

    def to_json(self) -> dict:
        return {"class_id": self.class_id, "class_name": self.class_name, "prob": round(float(self.prob), 6),
                "x": round(float(self.x), 6), "y": round(float(self.y), 6), "w": round(float(self.w), 6),
                "h": round(float(self.h), 6), "box": self.box_pixels()}


def _c_round(v) -> float:
    """C round(): half away from zero (keeps -0.0 as printf shows it)."""
    v = float(v)
    return math.copysign(math.floor(abs(v) + 0.5), v)


def heads_of(layers: Sequence[Layer]) -> List[Layer]:
    return [layer for layer in layers if layer.is_head]


def nms_layer(layers: Sequence[Layer]) -> Optional[Layer]:
    """The layer whose nms_kind/classes test_detector uses: the last [yolo]/[Gaussian_yolo]/[region],
    else the network's last layer."""
    chosen = None
    for layer in layers:
        if layer.type in ("yolo", "Gaussian_yolo", "region"):
            chosen = layer
    return chosen if chosen is not None else (layers[-1] if layers else None)


def get_network_boxes(layers: Sequence[Layer], outputs: Mapping[int, np.ndarray], net_w: int, net_h: int,
                      image_w: int, image_h: int, thresh: float = 0.25, hier: float = 0.5,
                      letter: bool = False) -> BoxSet:
    """All heads' detections in layer order; prob arrays sized to the first head's classes (Darknet)."""
    heads = heads_of(layers)
    if not heads:
        raise ValueError("the network has no detection head ([yolo], [Gaussian_yolo], [region], [detection])")
    classes = heads[0].classes
    parts = []
    for head in heads:
        out = outputs[head.index]
        out = out[0] if out.ndim == 4 and out.shape[0] == 1 and head.type != "region" else out
        bs = head.detections(out, net_w, net_h, image_w, image_h, thresh, hier, letter)
        probs = np.zeros((len(bs), classes), np.float32)
        c = min(classes, bs.probs.shape[1])
        probs[:, :c] = bs.probs[:, :c]
        parts.append(BoxSet(bs.boxes, bs.objectness, probs))
    return BoxSet(np.concatenate([p.boxes for p in parts]).astype(np.float32),
                  np.concatenate([p.objectness for p in parts]).astype(np.float32),
                  np.concatenate([p.probs for p in parts]).astype(np.float32))


# ----- box.c ----------------------------------------------------------------------------------------
def _edges(b: np.ndarray):
    two = np.float32(2)
    return b[..., 0] - b[..., 2] / two, b[..., 0] + b[..., 2] / two, b[..., 1] - b[..., 3] / two, \
        b[..., 1] + b[..., 3] / two


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """box.c: box_iou of box ``a`` (4,) against boxes ``b`` (n,4), in float32 like Darknet."""
    a = np.asarray(a, np.float32)
    b = np.asarray(b, np.float32)
    al, ar, at, ab = _edges(a)
    bl, br, bt, bb = _edges(b)
    ov_w = np.minimum(ar, br) - np.maximum(al, bl)
    ov_h = np.minimum(ab, bb) - np.maximum(at, bt)
    inter = np.where((ov_w < 0) | (ov_h < 0), np.float32(0), ov_w * ov_h).astype(np.float32)
    union = (a[2] * a[3] + b[:, 2] * b[:, 3] - inter).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((inter == 0) | (union == 0), np.float32(0), inter / union).astype(np.float32)


def box_diou(a: np.ndarray, b: np.ndarray, beta: float = 0.6) -> np.ndarray:
    """box.c: box_diou (beta 0.6) / box_diounms (beta_nms): IoU - (d^2/c^2)^beta; IoU alone if c == 0."""
    a = np.asarray(a, np.float32)
    b = np.asarray(b, np.float32)
    iou = box_iou(a, b)
    al, ar, at, ab = _edges(a)
    bl, br, bt, bb = _edges(b)
    cw = np.maximum(ar, br) - np.minimum(al, bl)
    ch = np.maximum(ab, bb) - np.minimum(at, bt)
    c = (cw * cw + ch * ch).astype(np.float32)
    d = ((a[0] - b[:, 0]) * (a[0] - b[:, 0]) + (a[1] - b[:, 1]) * (a[1] - b[:, 1])).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.power((d / c).astype(np.float64), beta)  # C pow() in double
        out = (iou.astype(np.float64) - u).astype(np.float32)
    return np.where(c == 0, iou, out).astype(np.float32)


def do_nms(dets: BoxSet, thresh: float = 0.45, kind: int = DEFAULT_NMS, beta_nms: float = 0.6) -> BoxSet:
    """do_nms_sort (kind default) or diounms_sort (greedynms: DIoU with exponent 0.6; diounms: beta_nms).

    Returns the array Darknet ends with: objectness-0 dets partitioned to the end (with Darknet's swap order)
    and the rest sorted by the last class; suppressed class probs set to 0. Dets are never removed."""
    boxes, obj, probs = dets.boxes.copy(), dets.objectness.copy(), dets.probs.copy()
    order = list(range(len(obj)))
    # (a) partition: a det with objectness 0 is swapped with the current last one and the array shrinks
    k = len(order) - 1
    i = 0
    while i <= k:
        if obj[order[i]] == 0:
            order[i], order[k] = order[k], order[i]
            k -= 1
        else:
            i += 1
    order = np.asarray(order, dtype=np.int64)
    total = k + 1
    head, tail = order[:total], order[total:]
    classes = probs.shape[1]
    thresh32 = np.float32(thresh)
    for c in range(classes):
        # qsort with nms_comparator: descending prob; glibc's qsort is a stable merge sort here
        head = head[np.argsort(-probs[head, c], kind="stable")]
        p = probs[:, c]
        for i in range(total):
            if p[head[i]] == 0:
                continue
            rest = head[i + 1:]
            if len(rest) == 0:
                break
            if kind == DEFAULT_NMS:
                score = box_iou(boxes[head[i]], boxes[rest])
            elif kind == GREEDY_NMS:
                score = box_diou(boxes[head[i]], boxes[rest], 0.6)
            else:  # DIOU_NMS
                score = box_diou(boxes[head[i]], boxes[rest], beta_nms)
            p[rest[score > thresh32]] = 0
    order = np.concatenate([head, tail])
    return BoxSet(boxes[order], obj[order], probs[order])


def print_order(dets: BoxSet, thresh: float, names: Sequence[str], image_w: int, image_h: int,
                dialect: str = "alexeyab") -> List[Detection]:
    """draw_detections_v3's printed (box, class) lines (AlexeyAB), or pjreddie's draw_detections order."""
    thresh32 = np.float32(thresh)
    out: List[Detection] = []

    def name(j: int) -> str:
        return names[j] if j < len(names) else str(j)

    def record(i: int, j: int, best: bool) -> Detection:
        x, y, w, h = (float(v) for v in dets.boxes[i])
        return Detection(j, name(j), float(dets.probs[i, j]), x, y, w, h, float(dets.objectness[i]), image_w,
                         image_h, best, i)

    if dialect == "pjreddie":
        for i in range(len(dets)):
            for j in np.nonzero(dets.probs[i] > thresh32)[0]:
                out.append(record(i, int(j), not out or out[-1].box_index != i))
        return out
    selected = []
    for i in range(len(dets)):
        best, best_prob = -1, thresh32
        for j in np.nonzero(dets.probs[i] > thresh32)[0]:
            if dets.probs[i, j] > best_prob and not name(int(j)).startswith("dont_show"):
                best, best_prob = int(j), dets.probs[i, j]
        if best >= 0:
            selected.append((i, best))
    lefts = np.array([dets.boxes[i, 0] - dets.boxes[i, 2] / np.float32(2) for i, _ in selected], np.float32)
    for s in np.argsort(lefts, kind="stable"):
        i, best = selected[s]
        out.append(record(i, best, True))
        for j in np.nonzero(dets.probs[i] > thresh32)[0]:
            if j != best:
                out.append(record(i, int(j), False))
    return out


def detect(layers: Sequence[Layer], outputs: Mapping[int, np.ndarray], net_w: int, net_h: int, image_w: int,
           image_h: int, names: Optional[Sequence[str]] = None, thresh: float = 0.25, hier: float = 0.5,
           nms: float = 0.45, letter: bool = False, dialect: str = "alexeyab") -> List[Detection]:
    """Darknet's detector test after network_predict: boxes, NMS, printed lines in Darknet's order."""
    dets = get_network_boxes(layers, outputs, net_w, net_h, image_w, image_h, thresh, hier, letter)
    last = nms_layer(layers)
    kind = getattr(last, "nms_kind", DEFAULT_NMS) if dialect != "pjreddie" else DEFAULT_NMS
    beta = getattr(last, "beta_nms", 0.6)
    if nms > 0:
        dets = do_nms(dets, nms, kind, beta)
    if names is None:
        names = [str(j) for j in range(dets.probs.shape[1])]
    return print_order(dets, thresh, names, image_w, image_h, dialect)


def class_names(path) -> List[str]:
    """A Darknet .names file, one class per line, read like get_labels/fgetl: the newline and a trailing CR
    are dropped, nothing else (a name "face " keeps its space, as Darknet prints it)."""
    from pathlib import Path
    from .errors import ResourceError
    limit = 16 << 20  # bounded read: /dev/zero or a video given as --names must not eat all memory
    try:
        with Path(path).open("rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise ResourceError(f"cannot read names file: {e.strerror or e}", file=str(path)) from None
    if len(data) > limit:
        raise ResourceError(f"more than {limit >> 20} MB: not a class names file", file=str(path))
    text = data.decode("utf-8", errors="replace")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]
