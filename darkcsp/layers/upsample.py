"""[upsample]: nearest-neighbour upsampling, or with a negative stride a SUM-pooling downsample.

Darknet's rules kept here (darknet-semantics.md §3.9; corpus README Surprises #11):
* ``stride`` s (2) > 0: out (C, H*s, W*s), ``Y[c, y, x] = scale * X[c, y//s, x//s]``.
* ``stride`` -s < 0: out (C, H//s, W//s), ``Y[c, y, x] = sum over the s x s block of scale*X`` - a sum, not a
  mean. Darknet reads the input with the pitch of the output, so only sizes divisible by s are meaningful:
  others are refused.
* ``scale`` (1) multiplies every term.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..cfg import Section
from .base import BuildContext, Layer, Weights

if TYPE_CHECKING:  # pragma: no cover
    from ..onnx.builder import OnnxGraph


class Upsample(Layer):
    """[upsample]: nearest repeat times ``scale`` (stride > 0) or block sums times ``scale`` (stride < 0)."""

    type = "upsample"
    size_agnostic = True

    def setup(self, section: Section, ctx: BuildContext) -> None:
        c, h, w = self.in_shape
        stride = section.int("stride", 2)
        self.scale = section.float("scale", 1.0)
        if stride == 0:
            raise self.error("stride=0 is not a valid upsampling factor", "stride")
        if min(c, h, w) <= 0:
            raise self.error(f"the input {self.in_shape} is not an image (C, H, W all > 0)")
        self.reverse = stride < 0
        self.stride = abs(stride)
        s = self.stride
        if self.reverse:
            if h % s or w % s:
                raise self.error(f"stride={stride} on a {w}x{h} input: Darknet's sum-pooling reads misaligned rows "
                                 f"unless {s} divides both width and height", "stride")
            self.out_shape = (c, h // s, w // s)
        else:
            self.out_shape = (c, h * s, w * s)

    def forward(self, xs: Sequence[np.ndarray], w: Weights) -> np.ndarray:
        x = np.asarray(xs[0], np.float32)
        s = self.stride
        scale = np.float32(self.scale)
        n, c, h, wd = x.shape
        if not self.reverse:
            y = np.broadcast_to(x[:, :, :, None, :, None], (n, c, h, s, wd, s)).reshape(n, c, h * s, wd * s)
            return y * scale if scale != 1 else np.ascontiguousarray(y)
        # Darknet adds scale*X cell by cell, rows then columns of each block
        blocks = x.reshape(n, c, h // s, s, wd // s, s)
        y = np.zeros((n, c, h // s, wd // s), np.float32)
        for dy in range(s):
            for dx in range(s):
                y += blocks[:, :, :, dy, :, dx] * scale if scale != 1 else blocks[:, :, :, dy, :, dx]
        return y

    def to_onnx(self, g: "OnnxGraph", xs: Sequence[str], w: Weights) -> str:
        s = self.stride
        if not self.reverse:
            y = g.op("Resize", [xs[0], "", g.const(np.array([1, 1, s, s], np.float32), "scales", dtype=np.float32)],
                     mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
            factor = self.scale
        else:
            # block mean times s*s = block sum (exact for power-of-two s; otherwise a rounding apart)
            y = g.op("AveragePool", [xs[0]], kernel_shape=[s, s], strides=[s, s])
            factor = self.scale * s * s
        if factor != 1:
            y = g.op("Mul", [y, g.scalar(factor, "scale")])
        return y

    def describe(self) -> str:
        text = f"sum /{self.stride}" if self.reverse else f"{self.stride}x"
        if self.scale != 1:
            text += f" *{self.scale:g}"
        return text
