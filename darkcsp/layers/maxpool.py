"""[maxpool] (alias [max]), including Maxout (``maxpool_depth=1``), and [local_avgpool] (alias [local_avg]).

Darknet's rules kept here (darknet-semantics.md §3.3, §3.4, §7; corpus README Surprises #5, #6):
* ``size`` defaults to ``stride`` and ``padding`` to ``size-1`` (not size/2). The window of output (y, x)
  starts at ``(y*stride_y - padding//2, x*stride_x - padding//2)`` and
  ``out = (W + padding - size) // stride + 1``, so size=2 stride=1 keeps the size and looks right/down, and
  size=2 stride=2 rounds odd sizes up.
* Only in-image cells count: the max ignores the padding (-FLT_MAX start value), the local average divides
  by the number of in-image cells (a window without one gives 0/0 = NaN).
* ``maxpool_depth=1`` is a maxout over channels: output channel g is the max over input channels
  g, g+K, g+2K, ... (K = ``out_channels``; strided groups, not contiguous blocks); the spatial size is kept.
* ``antialiasing=1|2``: the pool runs at stride 1, then a fixed depthwise blur (3x3 [1 2 1]^2/16 padded by 1,
  or 2x2 of 1/4 unpadded) with the configured strides replaces its output; BFLOPs count the pool at stride 1.
* BFLOPs = size*size*C*out_h*out_w / 1e9 with the product in 32-bit int (it wraps for huge maps).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..cfg import Section
from .base import BuildContext, Layer, Weights
from .convolutional import conv2d

if TYPE_CHECKING:  # pragma: no cover
    from ..onnx.builder import OnnxGraph

FLT_MAX = np.float32(np.finfo(np.float32).max)


def int32_wrap(value: int) -> int:
    """A C ``int`` product: wrap to 32-bit two's complement, as Darknet's BFLOPs arithmetic does."""
    return (value + 2 ** 31) % 2 ** 32 - 2 ** 31


def pool_out_size(size_in: int, padding: int, size: int, stride: int) -> int:
    """Darknet's (W + padding - size) / stride + 1 with C integer division (truncates toward zero)."""
    num = size_in + padding - size
    return int(num / stride) + 1 if num >= 0 else -((-num) // stride) + 1


def _padded(x: np.ndarray, fill: float, top: int, left: int, hp: int, wp: int) -> np.ndarray:
    """x placed at (top, left) in an (hp, wp) canvas filled with ``fill`` (x cropped if it sticks out)."""
    n, c, h, w = x.shape
    out = np.full((n, c, hp, wp), fill, dtype=np.float32)
    ys, xs = max(0, -top), max(0, -left)
    ye, xe = min(h, hp - top), min(w, wp - left)
    if ye > ys and xe > xs:
        out[:, :, top + ys:top + ye, left + xs:left + xe] = x[:, :, ys:ye, xs:xe]
    return out


def _window_reduce(x: np.ndarray, size: int, sy: int, sx: int, offset: int, oh: int, ow: int,
                   average: bool) -> np.ndarray:
    """Max (valid cells only) or in-image average over Darknet's pooling windows.

    Loops over window offsets only. The max is separable (columns, then rows: 2*size steps); the sum runs
    over the size*size offsets in Darknet's row-major order, so its float rounding is Darknet's."""
    hp, wp = (oh - 1) * sy + size, (ow - 1) * sx + size
    h, w = x.shape[2:]
    # Offsets whose windows miss the image contribute nothing (-FLT_MAX to the max; 0 to the sum and count):
    # skipped, so that a huge size= (size=900 on an 8x8 map) costs O(H + W) (max) or O(H*W) (sum) steps.
    m_range = range(max(0, offset - (oh - 1) * sy), min(size, offset + h))
    n_range = range(max(0, offset - (ow - 1) * sx), min(size, offset + w))
    if not average:
        xp = _padded(x, -FLT_MAX, offset, offset, hp, wp)
        # fmax: Darknet's `val > max` never picks a NaN
        cols = np.full(x.shape[:2] + (hp, ow), -FLT_MAX, np.float32)
        for n in n_range:
            np.fmax(cols, xp[:, :, :, n:n + (ow - 1) * sx + 1:sx], out=cols)
        acc = np.full(x.shape[:2] + (oh, ow), -FLT_MAX, np.float32)
        for m in m_range:
            np.fmax(acc, cols[:, :, m:m + (oh - 1) * sy + 1:sy], out=acc)
        return acc
    xp = _padded(x, 0.0, offset, offset, hp, wp)
    ones = _padded(np.ones((1, 1) + x.shape[2:], np.float32), 0.0, offset, offset, hp, wp)
    acc = np.zeros(x.shape[:2] + (oh, ow), np.float32)
    count = np.zeros((1, 1, oh, ow), np.float32)
    for m in m_range:  # same float summation order as Darknet's loop (skipped terms are exact zeros)
        for n in n_range:
            rows = slice(m, m + (oh - 1) * sy + 1, sy)
            cols_ = slice(n, n + (ow - 1) * sx + 1, sx)
            acc += xp[:, :, rows, cols_]
            count += ones[:, :, rows, cols_]
    with np.errstate(invalid="ignore", divide="ignore"):
        acc /= count
    return acc


def maxout(x: np.ndarray, k: int) -> np.ndarray:
    """Darknet's maxpool_depth: Y[g] = max(X[g], X[g+k], X[g+2k], ...) for g < k (strided channel groups).

    Missing members (C not a multiple of k, or k > C) count as -FLT_MAX, Darknet's start value."""
    n, c, h, w = x.shape
    groups = -(-c // k)
    if groups * k != c:
        pad = np.full((n, groups * k - c, h, w), -FLT_MAX, np.float32)
        x = np.concatenate([x, pad], axis=1)
    return np.fmax.reduce(x.reshape(n, groups, k, h, w), axis=1)


def _blur_kernel(size: int, channels: int) -> np.ndarray:
    if size == 3:
        k = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], np.float32) / np.float32(16)
    else:
        k = np.full((2, 2), 0.25, np.float32)
    return np.broadcast_to(k, (channels, 1) + k.shape).copy()


def _lowest(g: "OnnxGraph") -> str:
    """Darknet's -FLT_MAX start value in the graph's float type (float16: its own lowest finite value)."""
    return g.scalar(-float(np.finfo(g.float_dtype).max), "lowest")


class _Pool(Layer):
    """Geometry shared by [maxpool] and [local_avgpool] (Darknet builds both with make_maxpool_layer)."""

    average = False
    allow_depth = True
    size_agnostic = True

    @property
    def cio_compute(self) -> bool:
        # a 1x1 window is a strided copy (data movement), not a computation over windows
        return bool(self.maxpool_depth) or self.size > 1

    def cio_reads(self, outputs_of) -> int:
        """Windows that leave pixels out (size < stride) read only the covered pixels."""
        if self.maxpool_depth or not self.size:
            return super().cio_reads(outputs_of)
        return min(outputs_of(self.inputs[0]), self.size * self.size * self.outputs)

    def setup(self, section: Section, ctx: BuildContext) -> None:
        c, h, w = self.in_shape
        stride = section.int("stride", 1)
        self.stride_x = section.int("stride_x", stride)
        self.stride_y = section.int("stride_y", stride)
        self.size = section.int("size", stride)
        self.padding = section.int("padding", self.size - 1)
        self.maxpool_depth = section.int("maxpool_depth", 0) if self.allow_depth else 0
        self.out_channels = section.int("out_channels", 1) if self.allow_depth else 1
        self.antialiasing = section.int("antialiasing", 0) if self.allow_depth else 0
        for key, value in (("size", self.size), ("stride_x", self.stride_x), ("stride_y", self.stride_y)):
            if value <= 0:
                opt = key if section.has(key) else "stride"
                raise self.error(f"{key}={value} must be positive", opt)
        if self.padding < 0:
            raise self.error(f"padding={self.padding} must not be negative", "padding")
        if self.antialiasing not in (0, 1, 2):
            raise self.error(f"antialiasing={self.antialiasing}: Darknet knows 0, 1 (3x3 blur) and 2 (2x2 blur)",
                             "antialiasing")
        if min(c, h, w) <= 0:
            raise self.error(f"the input {self.in_shape} is not an image (C, H, W all > 0)")
        # antialiasing: the host pools at stride 1, the blur applies the configured strides
        sx, sy = (1, 1) if self.antialiasing else (self.stride_x, self.stride_y)
        oh = pool_out_size(h, self.padding, self.size, sy)
        ow = pool_out_size(w, self.padding, self.size, sx)
        oc = c
        if self.maxpool_depth:
            if self.out_channels <= 0:
                raise self.error(f"out_channels={self.out_channels} must be positive with maxpool_depth=1",
                                 "out_channels")
            oc, oh, ow = self.out_channels, h, w
        if oh <= 0 or ow <= 0:
            raise self.error(f"a {self.size}x{self.size} window with padding {self.padding} does not fit the "
                             f"{w}x{h} input (output {ow}x{oh})", "size")
        self.host_shape = (oc, oh, ow)
        self.out_shape = self.host_shape
        # the NumPy forward pools on a padded canvas covering every window
        self.workspace = 0 if self.maxpool_depth else c * ((oh - 1) * sy + self.size) * ((ow - 1) * sx + self.size)
        if self.antialiasing:
            self.blur_size = 3 if self.antialiasing == 1 else 2
            self.blur_pad = 1 if self.antialiasing == 1 else 0
            bh = pool_out_size(oh, 2 * self.blur_pad, self.blur_size, self.stride_y)
            bw = pool_out_size(ow, 2 * self.blur_pad, self.blur_size, self.stride_x)
            self.out_shape = (oc, bh, bw)
        if self.dialect.non_conv_bflops:
            self.bflops = int32_wrap(self.size * self.size * c * oh * ow) / 1e9

    # ---- NumPy
    def forward(self, xs: Sequence[np.ndarray], w: Weights) -> np.ndarray:
        x = np.asarray(xs[0], np.float32)
        oc, oh, ow = self.host_shape
        if self.maxpool_depth:
            y = maxout(x, self.out_channels)
        else:
            sx, sy = (1, 1) if self.antialiasing else (self.stride_x, self.stride_y)
            y = _window_reduce(x, self.size, sy, sx, self.padding // 2, oh, ow, self.average)
        if self.antialiasing:
            y = conv2d(y, _blur_kernel(self.blur_size, oc), stride=(self.stride_y, self.stride_x),
                       pad=self.blur_pad, groups=oc, out_hw=self.out_shape[1:])
        return y

    # ---- ONNX
    def _pool_onnx(self, g: "OnnxGraph", x: str) -> str:
        """MaxPool/AveragePool with Darknet's asymmetric padding (begin padding//2, end the rest).

        With pads (b, e), b + e = padding, ONNX's floor((W + padding - size)/s) + 1 equals Darknet's out size
        for every W, and ONNX's MaxPool ignores padded cells as Darknet does (AveragePool with
        count_include_pad=0 divides by the in-image count, as local_avgpool does)."""
        k = self.size
        sx, sy = (1, 1) if self.antialiasing else (self.stride_x, self.stride_y)
        b = self.padding // 2
        e = self.padding - b
        op = "AveragePool" if self.average else "MaxPool"
        attrs = dict(kernel_shape=[k, k], strides=[sy, sx])
        if self.average:
            attrs["count_include_pad"] = 0
        if b < k and e < k:
            return g.op(op, [x], pads=[b, b, e, e], **attrs)
        # Pads of a kernel's size or more (windows with no in-image cell): pad explicitly instead
        if self.average:
            raise NotImplementedError(f"[local_avgpool] padding={self.padding} >= 2*size has empty windows "
                                      "(Darknet: NaN); no ONNX lowering")
        pads = g.ints([0, 0, b, b, 0, 0, e, e], "pads")
        xp = g.op("Pad", [x, pads, _lowest(g)], mode="constant")
        return g.op(op, [xp], **attrs)

    def _maxout_onnx(self, g: "OnnxGraph", x: str) -> str:
        """Y[g] = max_j X[j*K + g]: split the channels into blocks of K and take the elementwise Max."""
        c = self.in_shape[0]
        k = self.out_channels
        groups = -(-c // k)
        if groups * k != c:
            pads = g.ints([0, 0, 0, 0, 0, groups * k - c, 0, 0], "pads")
            x = g.op("Pad", [x, pads, _lowest(g)], mode="constant")
        if groups == 1:
            return x
        return g.op("Max", g.split(x, [k] * groups, axis=1))

    def to_onnx(self, g: "OnnxGraph", xs: Sequence[str], w: Weights) -> str:
        y = self._maxout_onnx(g, xs[0]) if self.maxpool_depth else self._pool_onnx(g, xs[0])
        if self.antialiasing:
            bp, bk = self.blur_pad, self.blur_size
            oc = self.host_shape[0]
            y = g.op("Conv", [y, g.const(_blur_kernel(bk, oc), "blur_w")], kernel_shape=[bk, bk],
                     strides=[self.stride_y, self.stride_x], pads=[bp, bp, bp, bp], group=oc)
        return y

    def describe(self) -> str:
        if self.maxpool_depth:
            return f"depth -> {self.out_channels}"
        if self.stride_x == self.stride_y:
            geo = f"{self.size}x{self.size}/{self.stride_x}"
        else:
            geo = f"{self.size}x{self.size}/{self.stride_x}x{self.stride_y}"
        if self.padding != self.size - 1:
            geo += f" p{self.padding}"
        if self.antialiasing:
            geo += f" AA{self.antialiasing}"
        return geo


class MaxPool(_Pool):
    """[maxpool]: max over Darknet's windows, or Maxout over strided channel groups (maxpool_depth=1)."""

    type = "maxpool"
    aliases = ('max',)
    # GPU training only
    training_options = ("maxpool_zero_nonmax",)


class LocalAvgPool(_Pool):
    """[local_avgpool]: average over the in-image cells of maxpool's windows (no depth, no antialiasing)."""

    type = "local_avgpool"
    aliases = ('local_avg',)
    average = True
    allow_depth = False
