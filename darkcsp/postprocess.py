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
from typing import List, Mapping, Optional, Sequence, Union

import numpy as np

from .dialect import Dialect, get_dialect
from .layers.base import Head, Layer
from .layers.yolo import DEFAULT_NMS, GREEDY_NMS, BoxSet

__all__ = ["Detection", "get_network_boxes", "nms_layer", "nms_settings", "do_nms", "box_iou", "box_diou",
           "print_order", "detect", "heads_of"]


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

    @property
    def box(self) -> List[int]:
        """The drawn rectangle in pixels: [left, top, right, bottom], clipped to the image."""
        return self.box_pixels()

    def to_dict(self) -> dict:
        """The entry of ``darkcsp detect --json``."""
        return {"class_id": self.class_id, "class_name": self.class_name, "prob": round(float(self.prob), 6),
                "x": round(float(self.x), 6), "y": round(float(self.y), 6), "w": round(float(self.w), 6),
                "h": round(float(self.h), 6), "box": self.box_pixels()}


def _c_round(v) -> float:
    """C round(): half away from zero (keeps -0.0 as printf shows it)."""
    v = float(v)
    return math.copysign(math.floor(abs(v) + 0.5), v)


def heads_of(layers: Sequence[Layer]) -> List[Head]:
    """The detection heads, in layer order."""
    return [layer for layer in layers if isinstance(layer, Head)]


def nms_layer(layers: Sequence[Layer]) -> Optional[Layer]:
    """The layer whose nms_kind/classes test_detector uses: the last head that sets them
    ([yolo]/[Gaussian_yolo]/[region], ``Head.sets_detector_nms``), else the network's last layer."""
    chosen = None
    for layer in heads_of(layers):
        if layer.sets_detector_nms:
            chosen = layer
    return chosen if chosen is not None else (layers[-1] if layers else None)


def nms_settings(layers: Sequence[Layer], dialect: Union[str, Dialect] = "alexeyab") -> tuple:
    """(nms_kind, beta_nms) of ``detector test``: the ``nms_layer``'s when it is a head and the dialect honours
    it; a last layer that is not a head has Darknet's zeroed struct (default NMS)."""
    last = nms_layer(layers)
    head = last if isinstance(last, Head) else None
    kind = head.nms_kind if head is not None and get_dialect(dialect).nms_kind_from_head else DEFAULT_NMS
    return kind, (head.beta_nms if head is not None else 0.6)


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
        out = outputs[head.index]  # (C, H, W) or (1, C, H, W): each head takes both
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


def _pair_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """box.c box_iou, element by element over broadcast (..., 4) boxes, in float32 like Darknet. Exactly
    symmetric: every operation commutes in IEEE arithmetic."""
    al, ar, at, ab = _edges(a)
    bl, br, bt, bb = _edges(b)
    ov_w = np.minimum(ar, br) - np.maximum(al, bl)
    ov_h = np.minimum(ab, bb) - np.maximum(at, bt)
    inter = np.where((ov_w < 0) | (ov_h < 0), np.float32(0), ov_w * ov_h).astype(np.float32)
    union = (a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.where((inter == 0) | (union == 0), np.float32(0), inter / union).astype(np.float32)


def _pair_diou(a: np.ndarray, b: np.ndarray, beta: float) -> np.ndarray:
    """box.c box_diou / box_diounms element by element: IoU - (d^2/c^2)^beta; IoU alone where c == 0."""
    iou = _pair_iou(a, b)
    al, ar, at, ab = _edges(a)
    bl, br, bt, bb = _edges(b)
    cw = np.maximum(ar, br) - np.minimum(al, bl)
    ch = np.maximum(ab, bb) - np.minimum(at, bt)
    c = (cw * cw + ch * ch).astype(np.float32)
    dx = a[..., 0] - b[..., 0]
    dy = a[..., 1] - b[..., 1]
    d = (dx * dx + dy * dy).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        u = np.power((d / c).astype(np.float64), beta)  # C pow() in double
        out = (iou.astype(np.float64) - u).astype(np.float32)
    return np.where(c == 0, iou, out).astype(np.float32)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """box.c: box_iou of box ``a`` (4,) against boxes ``b`` (n,4), in float32 like Darknet."""
    return _pair_iou(np.asarray(a, np.float32)[None], np.asarray(b, np.float32))


def box_diou(a: np.ndarray, b: np.ndarray, beta: float = 0.6) -> np.ndarray:
    """box.c: box_diou (beta 0.6) / box_diounms (beta_nms): IoU - (d^2/c^2)^beta; IoU alone if c == 0."""
    return _pair_diou(np.asarray(a, np.float32)[None], np.asarray(b, np.float32), beta)


#: pairs of boxes looked at at once by the sweep in _suppressing_pairs (bounds its memory, stays in cache)
_PAIR_CHUNK = 1 << 18


def _suppressing_pairs(boxes: np.ndarray, thresh: np.float32, score) -> tuple:
    """All pairs (i, j), i < j, of ``boxes`` whose NMS score (IoU or DIoU) is over ``thresh``.

    With thresh >= 0 a pair can only score over it when the boxes overlap (IoU > 0, and DIoU <= IoU), so a sweep
    over the boxes sorted by left edge lists just the x-overlapping pairs, in bounded chunks, and only those that
    also overlap in y are scored, with the same float32 expressions Darknet's box_iou/box_diou use: exact."""
    n = len(boxes)
    if thresh < 0:  # every pair can pass: score them all (never the case for Darknet's 0.45)
        i, j = np.triu_indices(n, 1)
        keep = score(boxes[i], boxes[j]) > thresh
        return i[keep], j[keep]
    left, right, top, bottom = _edges(boxes)
    by_left = np.argsort(left, kind="stable")
    lefts = left[by_left]
    tops, bottoms = top[by_left], bottom[by_left]
    # sorted position q > p overlaps p in x iff lefts[q] < right of p
    ends = np.searchsorted(lefts, right[by_left], side="left")
    counts = np.maximum(ends - np.arange(n) - 1, 0)
    firsts, seconds = [], []
    p0 = 0
    cum = np.cumsum(counts)
    while p0 < n:
        base = cum[p0 - 1] if p0 else 0
        p1 = max(int(np.searchsorted(cum, base + _PAIR_CHUNK, side="right")), p0 + 1)
        cnt = counts[p0:p1]
        total = int(cnt.sum())
        if total:
            p = np.repeat(np.arange(p0, p1, dtype=np.int32), cnt)
            q = np.arange(total, dtype=np.int32)
            q += np.repeat(np.arange(p0 + 1, p1 + 1, dtype=np.int32) - (np.cumsum(cnt) - cnt).astype(np.int32), cnt)
            # y overlap, min(bottoms) > max(tops): the sign test of _pair_iou's ov_h, comparison by comparison
            tp, tq, bp, bq = tops[p], tops[q], bottoms[p], bottoms[q]
            overlap_y = (bp > tq) & (bq > tp) & (bp > tp) & (bq > tq)
            i, j = by_left[p[overlap_y]], by_left[q[overlap_y]]
            keep = score(boxes[i], boxes[j]) > thresh
            firsts.append(np.minimum(i[keep], j[keep]))
            seconds.append(np.maximum(i[keep], j[keep]))
        p0 = p1
    if not firsts:
        empty = np.zeros(0, np.int64)
        return empty, empty
    return np.concatenate(firsts), np.concatenate(seconds)


def _greedy_suppressed(n: int, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Greedy NMS over boxes 0..n-1 taken in that order, given the pairs (first < second) that suppress each
    other: box k is suppressed iff some earlier box that was kept pairs with it. Returns the suppressed mask.

    Resolved in rounds over all pairs at once: an undecided box with a kept partner before it is suppressed,
    one with no undecided or kept partner before it is kept. Every round decides at least the first undecided
    box; long chains (rare) finish with a sequential walk."""
    UNDECIDED, KEPT, SUPPRESSED = 0, 1, 2
    state = np.zeros(n, np.int8)
    a, b = first, second
    for _ in range(64):
        if not len(a):
            break
        hit = np.zeros(n, bool)
        hit[b[state[a] == KEPT]] = True
        state[(state == UNDECIDED) & hit] = SUPPRESSED
        blocked = np.zeros(n, bool)
        blocked[b[state[a] == UNDECIDED]] = True
        state[(state == UNDECIDED) & ~blocked] = KEPT
        live = (state[a] != SUPPRESSED) & (state[b] == UNDECIDED)
        a, b = a[live], b[live]
    else:
        order = np.argsort(a, kind="stable")
        a, b = a[order], b[order]
        bounds = np.searchsorted(a, np.arange(n + 1))
        for k in np.unique(a):  # sequential, as box.c does, for what the rounds left undecided
            if state[k] == SUPPRESSED:
                continue
            state[k] = KEPT
            partners = b[bounds[k]:bounds[k + 1]]
            state[partners[state[partners] == UNDECIDED]] = SUPPRESSED
    return state == SUPPRESSED


def _zero_objectness_partition(obj: np.ndarray) -> tuple:
    """box.c do_nms_sort's first loop: a det with objectness 0 is swapped with the current last one and the
    array shrinks. Returns (order, total): the permuted indices and how many dets have objectness != 0."""
    n = len(obj)
    zero = obj == 0
    if not zero.any():
        return np.arange(n), n
    order = list(range(n))
    k, i = n - 1, 0
    while i <= k:  # Darknet's swaps, one by one: only when some objectness is exactly 0 (a [region] quirk)
        if zero[order[i]]:
            order[i], order[k] = order[k], order[i]
            k -= 1
        else:
            i += 1
    return np.asarray(order, np.int64), k + 1


def do_nms(dets: BoxSet, thresh: float = 0.45, kind: int = DEFAULT_NMS, beta_nms: float = 0.6) -> BoxSet:
    """do_nms_sort (kind default) or diounms_sort (greedynms: DIoU with exponent 0.6; diounms: beta_nms).

    Returns the array Darknet ends with: objectness-0 dets partitioned to the end (with Darknet's swap order)
    and the rest sorted by the last class; suppressed class probs set to 0. Dets are never removed."""
    boxes, obj, probs = dets.boxes.copy(), dets.objectness.copy(), dets.probs.copy()
    order, total = _zero_objectness_partition(obj)
    head, tail = order[:total], order[total:]
    thresh32 = np.float32(thresh)
    if kind == DEFAULT_NMS:
        score = _pair_iou
    else:  # GREEDY_NMS: box_diou with its fixed 0.6; DIOU_NMS: box_diounms with beta_nms
        beta = 0.6 if kind == GREEDY_NMS else beta_nms
        score = lambda a, b: _pair_diou(a, b, beta)  # noqa: E731
    # The pairs that suppress each other depend on the boxes alone: find them once among the dets that have a
    # non-zero prob of some class (only those suppress, and zeroing a zero changes nothing), then per class keep
    # the pairs of that class's candidates, oriented by its sort order.
    live = head[(probs[head] != 0).any(axis=1)]
    pair_a, pair_b = _suppressing_pairs(boxes[live], thresh32, score)
    pair_a, pair_b = live[pair_a], live[pair_b]
    rank = np.full(len(obj), -1, np.int64)
    for c in range(probs.shape[1]):
        # qsort with nms_comparator: descending prob; glibc's qsort is a stable merge sort here
        head = head[np.argsort(-probs[head, c], kind="stable")]
        cand = head[probs[head, c] != 0]
        if len(cand) < 2:
            continue
        rank[cand] = np.arange(len(cand))
        ra, rb = rank[pair_a], rank[pair_b]
        both = (ra >= 0) & (rb >= 0)
        ra, rb = ra[both], rb[both]
        suppressed = _greedy_suppressed(len(cand), np.minimum(ra, rb), np.maximum(ra, rb))
        probs[cand[suppressed], c] = 0
        rank[cand] = -1
    order = np.concatenate([head, tail])
    return BoxSet(boxes[order], obj[order], probs[order])


def print_order(dets: BoxSet, thresh: float, names: Sequence[str], image_w: int, image_h: int,
                dialect: Union[str, Dialect] = "alexeyab") -> List[Detection]:
    """draw_detections_v3's printed (box, class) lines (AlexeyAB), or pjreddie's draw_detections order."""
    dialect = get_dialect(dialect)
    thresh32 = np.float32(thresh)
    classes = dets.probs.shape[1]
    names = list(names) + [str(j) for j in range(len(names), classes)]
    over = dets.probs > thresh32                      # (n, classes): the lines that can be printed

    def line(i: int, j: int, best: bool) -> Detection:
        x, y, w, h = (float(v) for v in dets.boxes[i])
        return Detection(j, names[j], float(dets.probs[i, j]), x, y, w, h, float(dets.objectness[i]), image_w,
                         image_h, best, i)

    if not dialect.print_order_by_left_edge:
        rows, cols = np.nonzero(over)                 # box order, then class order
        first = np.ones(len(rows), bool)
        first[1:] = rows[1:] != rows[:-1]
        return [line(int(i), int(j), bool(f)) for i, j, f in zip(rows, cols, first)]
    # best class of each box: the first maximum among the classes over thresh whose name is not dont_show
    shown = np.array([not n.startswith("dont_show") for n in names[:classes]], bool)
    ranked = np.where(over & shown, dets.probs, -np.inf)
    best = np.argmax(ranked, axis=1) if classes else np.zeros(len(dets), np.int64)
    has_best = np.isfinite(ranked[np.arange(len(dets)), best]) if classes else np.zeros(len(dets), bool)
    selected = np.nonzero(has_best)[0]
    lefts = dets.boxes[selected, 0] - dets.boxes[selected, 2] / np.float32(2)
    out: List[Detection] = []
    for i in selected[np.argsort(lefts, kind="stable")]:
        b = int(best[i])
        out.append(line(int(i), b, True))
        out.extend(line(int(i), int(j), False) for j in np.nonzero(over[i])[0] if j != b)
    return out


def detect(layers: Sequence[Layer], outputs: Mapping[int, np.ndarray], net_w: int, net_h: int, image_w: int,
           image_h: int, names: Optional[Sequence[str]] = None, thresh: float = 0.25, hier: float = 0.5,
           nms: float = 0.45, letter: bool = False, dialect: Union[str, Dialect] = "alexeyab") -> List[Detection]:
    """Darknet's detector test after network_predict: boxes, NMS, printed lines in Darknet's order."""
    dialect = get_dialect(dialect)
    dets = get_network_boxes(layers, outputs, net_w, net_h, image_w, image_h, thresh, hier, letter)
    kind, beta = nms_settings(layers, dialect)
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
