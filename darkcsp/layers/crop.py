"""[crop]: centre crop, mapped to 2x-1 unless ``noadjust=1`` (darknet-semantics.md §3.18; Surprises #17).

Options ``crop_height`` (1), ``crop_width`` (1), ``noadjust`` (0); ``flip``, ``angle``, ``saturation``,
``exposure``, ``shift`` are training augmentation. Output (C, crop_height, crop_width), offsets
((H - crop_h)//2, (W - crop_w)//2), ``Y = 2*X - 1`` (or X).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..cfg import Section
from .base import BuildContext, Layer, Weights

if TYPE_CHECKING:  # pragma: no cover
    from ..onnx.builder import OnnxGraph


class Crop(Layer):
    """[crop]: centre crop times 2 minus 1 (noadjust=1: plain crop)."""

    type = "crop"
    training_options = ("flip", "angle", "saturation", "exposure", "shift")

    def setup(self, section: Section, ctx: BuildContext) -> None:
        c, h, w = self.in_shape
        self.crop_height = section.int("crop_height", 1)
        self.crop_width = section.int("crop_width", 1)
        self.noadjust = section.int("noadjust", 0)
        if min(c, h, w) <= 0:
            raise self.error(f"the input {self.in_shape} is not an image (C, H, W all > 0)")
        if not (0 < self.crop_height <= h and 0 < self.crop_width <= w):
            raise self.error(f"crop {self.crop_width}x{self.crop_height} does not fit the {w}x{h} input",
                             "crop_height" if not 0 < self.crop_height <= h else "crop_width")
        self.dh = (h - self.crop_height) // 2
        self.dw = (w - self.crop_width) // 2
        self.out_shape = (c, self.crop_height, self.crop_width)

    def forward(self, xs: Sequence[np.ndarray], w: Weights) -> np.ndarray:
        x = np.asarray(xs[0], np.float32)
        y = x[:, :, self.dh:self.dh + self.crop_height, self.dw:self.dw + self.crop_width]
        if self.noadjust:
            return np.ascontiguousarray(y)
        return y * np.float32(2) - np.float32(1)

    def to_onnx(self, g: "OnnxGraph", xs: Sequence[str], w: Weights) -> str:
        y = g.slice(xs[0], [self.dh, self.dw], [self.dh + self.crop_height, self.dw + self.crop_width], [2, 3])
        if self.noadjust:
            return y
        return g.op("Sub", [g.op("Mul", [y, g.scalar(2.0, "two")]), g.scalar(1.0, "one")])

    def describe(self) -> str:
        return f"{self.crop_width}x{self.crop_height}" + (" noadjust" if self.noadjust else " 2x-1")
