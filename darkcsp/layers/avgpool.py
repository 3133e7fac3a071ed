"""[avgpool] (alias [avg]): global average pooling to (C, 1, 1) (darknet-semantics.md §3.5).

Darknet reads no options; each output is the float sum of the channel's H*W values divided by H*W.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..cfg import Section
from .base import BuildContext, Layer, Weights

if TYPE_CHECKING:  # pragma: no cover
    from ..onnx.builder import OnnxGraph


class AvgPool(Layer):
    """[avgpool]: Y[c] = mean of X[c] over the whole map."""

    type = "avgpool"
    size_agnostic = True
    aliases = ('avg',)

    def setup(self, section: Section, ctx: BuildContext) -> None:
        c, h, w = self.in_shape
        if min(c, h, w) <= 0:
            raise self.error(f"the input {self.in_shape} is not an image (C, H, W all > 0)")
        self.out_shape = (c, 1, 1)

    def forward(self, xs: Sequence[np.ndarray], w: Weights) -> np.ndarray:
        x = np.asarray(xs[0], np.float32)
        hw = x.shape[2] * x.shape[3]
        return (x.sum(axis=(2, 3), dtype=np.float32, keepdims=True) / np.float32(hw)).astype(np.float32)

    def to_onnx(self, g: "OnnxGraph", xs: Sequence[str], w: Weights) -> str:
        return g.op("GlobalAveragePool", [xs[0]])

    @property
    def cio_compute(self) -> bool:
        return True

    def describe(self) -> str:
        return "global"
