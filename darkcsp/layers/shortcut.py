"""[shortcut]: add earlier layers' outputs to the previous layer's (residual connections).

AlexeyAB (default dialect; darknet-semantics.md §3.7, corpus README Surprises #8, #21, DECISIONS.md #4):
* ``from`` is a list; output shape = the previous layer's. Every from-layer must have the same W,H (Darknet
  asserts it); channel counts may differ: in the flat view (q = c*H*W + y*W + x) a from-layer adds to the
  positions q < its own output count, i.e. to the first min(C, C_from) channels (PRN).
* ``weights_type`` none | per_feature (= per_layer) | per_channel with ``weights_normalization`` relu
  (= avg_relu) | softmax: source s (0 = previous layer, k = k-th from-layer) is scaled by
  relu(w_s) / (1e-4 + sum_t relu(w_t)) or exp(w_s - max) / (1e-4 + sum_t exp(w_t - max)).
  The .weights file holds (n+1) or (n+1)*C floats, layout [n+1][C].
* then the activation (swish and mish computed; other activations through Darknet's act()).
* BFLOPs = out_w*out_h*out_c*n / 1e9 (32-bit int product), doubled when weighted.

pjreddie (``dialect.shortcut_resamples``; §3.8 and the corpus README "Exact pjreddie [shortcut] semantics"):
one ``from`` layer of any size, ``alpha``/``beta``:
``out[k, j*sample, i*sample] = alpha*out[...] + beta*add[k, j*stride, i*stride]`` for k < min(C), j < min(H),
i < min(W), with stride = max(W_from // W, 1), sample = max(W // W_from, 1); then the activation.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, List, Sequence, Tuple

import numpy as np

from ..activations import activate, lower_activation, read_activation
from ..cfg import Section
from .base import BuildContext, Layer, Weights
from .maxpool import int32_wrap
from .route import resolve_sources

if TYPE_CHECKING:  # pragma: no cover
    from ..onnx.builder import OnnxGraph

_WEIGHTS_TYPES = {"none": "none", "per_feature": "per_feature", "per_layer": "per_feature",
                  "per_channel": "per_channel"}
_NORMALIZATIONS = {"none": "none", "relu": "relu", "avg_relu": "relu", "softmax": "softmax"}


def normalized_weights(weights: np.ndarray, normalization: str) -> np.ndarray:
    """Darknet's per-source weight normalisation (float32, epsilon 1e-4), over axis 0 of [n+1] or [n+1][C]."""
    w = np.asarray(weights, np.float32)
    eps = np.float32(1e-4)
    if normalization == "relu":
        r = np.maximum(w, np.float32(0))
        return (r / (eps + r.sum(axis=0, dtype=np.float32))).astype(np.float32)
    if normalization == "softmax":
        e = np.exp(w - w.max(axis=0)).astype(np.float32)
        return (e / (eps + e.sum(axis=0, dtype=np.float32))).astype(np.float32)
    return w


class Shortcut(Layer):
    """[shortcut]: weighted or plain sum of the previous layer and the ``from`` layers, then activation."""

    type = "shortcut"
    #: AlexeyAB's sum has no literal size; pjreddie's resampling (set in setup) has literal strides
    size_agnostic = True

    def setup(self, section: Section, ctx: BuildContext) -> None:
        self.activation = read_activation(section, "shortcut", "linear")
        c, h, w = self.in_shape
        if self.dialect.shortcut_resamples:
            self.size_agnostic = False  # resamples between two sizes with literal strides
            self._setup_pjreddie(section, ctx)
            return
        wt = section.str("weights_type", "none")
        if wt not in _WEIGHTS_TYPES:
            raise self.error(f"weights_type={wt}: Darknet knows none, per_feature (per_layer), per_channel",
                             "weights_type")
        self.weights_type = _WEIGHTS_TYPES[wt]
        wn = section.str("weights_normalization", "none")
        if self.weights_type != "none":
            if _NORMALIZATIONS.get(wn, "none") == "none":
                raise self.error(f"weights_type={wt} needs weights_normalization=relu or softmax (got '{wn}')",
                                 "weights_normalization")
        elif wn not in _NORMALIZATIONS:
            section.warn(f"weights_normalization={wn} is unknown (Darknet ignores it without weights_type)",
                         "weights_normalization")
        self.weights_normalization = _NORMALIZATIONS.get(wn, "none") if self.weights_type != "none" else "none"
        self.inputs = [self.index - 1] + resolve_sources(self, section, ctx, "from", section.ints("from"))
        self.from_shapes: List[Tuple[int, int, int]] = [ctx.shape_of(i) for i in self.inputs[1:]]
        for ref, (fc, fh, fw) in zip(self.inputs[1:], self.from_shapes):
            if (fh, fw) != (h, w):
                raise self.error(
                    f"from layer {ref} is {fw}x{fh}x{fc} but the input (layer {self.index - 1}) is {w}x{h}x{c}: "
                    "AlexeyAB's Darknet asserts equal width and height (classic ResNet cfgs that shortcut across "
                    "a stride-2 conv need the pjreddie dialect, whose [shortcut] resamples: --dialect pjreddie)",
                    "from")
        self.n = len(self.from_shapes)
        self.bflops = int32_wrap(w * h * c * self.n) / 1e9
        if self.weights_type != "none":
            self.bflops *= 2

    def cio_reads(self, outputs_of) -> int:
        """The previous layer in full plus, from each ``from`` layer, the part that is added (Darknet adds a
        larger map's first ``outputs`` values only)."""
        prev, *froms = self.inputs
        return outputs_of(prev) + sum(min(outputs_of(i), self.outputs) for i in froms)

    def _setup_pjreddie(self, section: Section, ctx: BuildContext) -> None:
        refs = section.ints("from")
        if len(refs) != 1:
            raise self.error(f"from={section.str('from')}: pjreddie's [shortcut] takes one layer (its atoi reads "
                             "only the first item)", "from")
        self.alpha = section.float("alpha", 1.0)
        self.beta = section.float("beta", 1.0)
        self.weights_type = "none"
        self.weights_normalization = "none"
        self.inputs = [self.index - 1] + resolve_sources(self, section, ctx, "from", refs)
        c2, h2, w2 = self.in_shape
        c1, h1, w1 = ctx.shape_of(self.inputs[1])
        self.from_shapes = [(c1, h1, w1)]
        self.n = 1
        # pjreddie asserts stride == h1/h2 and sample == h2/h1 (before clamping to >= 1)
        if w1 // w2 != h1 // h2 or w2 // w1 != h2 // h1:
            raise self.error(f"from layer {self.inputs[1]} is {w1}x{h1} and the input {w2}x{h2}: pjreddie's "
                             "[shortcut] needs the same size ratio horizontally and vertically (it asserts it)",
                             "from")
        self.pj_stride = max(w1 // w2, 1)
        self.pj_sample = max(w2 // w1, 1)
        if self.dialect.non_conv_bflops:  # (pjreddie itself counts convolutions only)
            self.bflops = int32_wrap(w2 * h2 * c2) / 1e9

    # ---- weights
    def weight_arrays(self) -> List[Tuple[str, Tuple[int, ...]]]:
        if self.weights_type == "per_feature":
            return [("weights", (self.n + 1,))]
        if self.weights_type == "per_channel":
            return [("weights", (self.n + 1, self.in_shape[0]))]
        return []

    def init_weights(self, rng: np.random.Generator) -> Weights:
        return {name: np.ones(shape, np.float32) for name, shape in self.weight_arrays()}

    def _source_weights(self, w: Weights) -> List[np.ndarray]:
        """Normalised weight of each source as an array broadcastable to (N, C, H, W)."""
        nw = normalized_weights(w["weights"], self.weights_normalization)
        if self.weights_type == "per_channel":
            return [nw[s].reshape(1, -1, 1, 1) for s in range(self.n + 1)]
        return [nw[s] for s in range(self.n + 1)]

    # ---- NumPy
    def forward(self, xs: Sequence[np.ndarray], w: Weights) -> np.ndarray:
        if self.dialect.shortcut_resamples:
            return self._forward_pjreddie(xs)
        x, froms = xs[0], xs[1:]
        c = x.shape[1]
        weighted = self.weights_type != "none"
        sw = self._source_weights(w) if weighted else None
        y = (x * sw[0]).astype(np.float32) if weighted else x.astype(np.float32, copy=True)
        for s, f in enumerate(froms, start=1):
            m = min(c, f.shape[1])  # same H,W: the flat-index rule q < outputs_from covers m channels
            if weighted:
                ws = sw[s][:, :m] if self.weights_type == "per_channel" else sw[s]
                y[:, :m] += f[:, :m] * ws
            else:
                y[:, :m] += f[:, :m]
        return activate(y, self.activation, "shortcut")

    def _forward_pjreddie(self, xs: Sequence[np.ndarray]) -> np.ndarray:
        x, add = xs
        y = x.astype(np.float32, copy=True)
        c = min(x.shape[1], add.shape[1])
        h = min(x.shape[2], add.shape[2])
        wd = min(x.shape[3], add.shape[3])
        st, sa = self.pj_stride, self.pj_sample
        out = y[:, :c, :h * sa:sa, :wd * sa:sa]
        a = add[:, :c, :h * st:st, :wd * st:st]
        alpha, beta = np.float32(self.alpha), np.float32(self.beta)
        if alpha == 1 and beta == 1:
            out += a
        else:
            out[...] = alpha * out + beta * a
        return activate(y, self.activation, "shortcut")

    # ---- ONNX
    def _fit_channels(self, g: "OnnxGraph", f: str, fc: int, c: int) -> str:
        """A from-tensor with C channels: its first C channels, or zero channels appended (flat-index rule)."""
        if fc > c:
            return g.slice(f, [0], [c], [1])
        if fc < c:
            pads = g.ints([0, 0, 0, 0, 0, c - fc, 0, 0], "pads")
            return g.op("Pad", [f, pads], mode="constant")
        return f

    def to_onnx(self, g: "OnnxGraph", xs: Sequence[str], w: Weights) -> str:
        if self.dialect.shortcut_resamples:
            return self._to_onnx_pjreddie(g, xs)
        c = self.in_shape[0]
        weighted = self.weights_type != "none"
        sw = self._source_weights(w) if weighted else None
        y = g.op("Mul", [xs[0], g.const(np.asarray(sw[0], np.float32), "w0")]) if weighted else xs[0]
        for s, (f, (fc, _, _)) in enumerate(zip(xs[1:], self.from_shapes), start=1):
            f = self._fit_channels(g, f, fc, c)
            if weighted:
                f = g.op("Mul", [f, g.const(np.asarray(sw[s], np.float32), f"w{s}")])
            y = g.op("Add", [y, f])
        return lower_activation(g, y, self.activation, "shortcut")

    def _to_onnx_pjreddie(self, g: "OnnxGraph", xs: Sequence[str]) -> str:
        x, add = xs
        c2, h2, w2 = self.in_shape
        c1, h1, w1 = self.from_shapes[0]
        c, h, wd = min(c1, c2), min(h1, h2), min(w1, w2)
        st, sa = self.pj_stride, self.pj_sample
        a = g.slice(add, [0, 0, 0], [c, h * st, wd * st], [1, 2, 3], [1, st, st])
        if self.beta != 1:
            a = g.op("Mul", [a, g.scalar(self.beta, "beta")])
        if sa == 1 and (c, h, wd) == (c2, h2, w2):
            xin = x if self.alpha == 1 else g.op("Mul", [x, g.scalar(self.alpha, "alpha")])
            y = g.op("Add", [xin, a])
        elif sa == 1:
            # add into the first c channels / top-left h x wd block, keep the rest of the input
            inner = g.slice(x, [0, 0, 0], [c, h, wd], [1, 2, 3])
            if self.alpha != 1:
                inner = g.op("Mul", [inner, g.scalar(self.alpha, "alpha")])
            inner = g.op("Add", [inner, a])
            if wd < w2:
                inner = g.concat([inner, g.slice(x, [0, 0, wd], [c, h, w2], [1, 2, 3])], axis=3)
            if h < h2:
                inner = g.concat([inner, g.slice(x, [0, h], [c, h2], [1, 2])], axis=2)
            y = inner if c == c2 else g.concat([inner, g.slice(x, [c], [c2], [1])], axis=1)
        else:
            # upsampling direction: only positions that are multiples of `sample` get the add; build the
            # update as a zero-interleaved map (Resize nearest times a constant 0/1 mask) and blend
            mask = np.zeros((1, c2, h2, w2), np.float32)
            mask[:, :c, :h * sa:sa, :wd * sa:sa] = 1
            up = g.op("Resize", [a, "", g.const(np.array([1, 1, sa, sa], np.float32), "scales", dtype=np.float32)],
                      mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
            up = self._pad_to(g, up, (c, h * sa, wd * sa), (c2, h2, w2))
            m = g.const(mask, "mask")
            keep = g.op("Mul", [x, g.const(1 - mask + mask * np.float32(self.alpha), "keep")])
            y = g.op("Add", [keep, g.op("Mul", [up, m])])
        return lower_activation(g, y, self.activation, "shortcut")

    @staticmethod
    def _pad_to(g: "OnnxGraph", x: str, have: Tuple[int, int, int], want: Tuple[int, int, int]) -> str:
        pads = [0] * 4 + [0] + [max(wn - hv, 0) for hv, wn in zip(have, want)]
        x = g.op("Pad", [x, g.ints(pads, "pads")], mode="constant") if any(pads) else x
        if any(hv > wn for hv, wn in zip(have, want)):
            x = g.slice(x, [0, 0, 0], list(want), [1, 2, 3])
        return x

    def describe(self) -> str:
        text = " ".join(str(i) for i in self.inputs[1:])
        if self.weights_type != "none":
            text += f" {self.weights_type} {self.weights_normalization}"
        if self.dialect.shortcut_resamples and (self.alpha != 1 or self.beta != 1):
            text += f" a{self.alpha:g} b{self.beta:g}"
        return text
