"""[sam]: spatial attention, the elementwise product of the previous layer and the ``from`` layer.

Darknet's rules kept here (darknet-semantics.md §3.12): ``from`` (one layer), ``activation`` (linear); the
two shapes must be equal (Darknet asserts); ``Y = act(X * F)`` through Darknet's generic act(), so swish,
mish and hard_mish give zeros (reproduced, with a warning; DECISIONS.md #2).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..activations import activate, lower_activation, read_activation
from ..cfg import Section
from .base import BuildContext, Layer, Weights
from .route import resolve_sources

if TYPE_CHECKING:  # pragma: no cover
    from ..onnx.builder import OnnxGraph


class Sam(Layer):
    """[sam]: Y = act(X * F)."""

    type = "sam"
    size_agnostic = True

    def setup(self, section: Section, ctx: BuildContext) -> None:
        src = resolve_sources(self, section, ctx, "from", [section.int("from")])[0]
        self.inputs = [self.index - 1, src]
        self.activation = read_activation(section, "sam", "linear")
        fshape = ctx.shape_of(src)
        if tuple(fshape) != tuple(self.in_shape):
            c, h, w = self.in_shape
            fc, fh, fw = fshape
            raise self.error(f"from layer {src} is {fw}x{fh}x{fc} but the input (layer {self.index - 1}) is "
                             f"{w}x{h}x{c}: [sam] multiplies elementwise and Darknet asserts equal shapes", "from")
        self.out_shape = self.in_shape

    def forward(self, xs: Sequence[np.ndarray], w: Weights) -> np.ndarray:
        return activate((xs[0] * xs[1]).astype(np.float32, copy=False), self.activation, "sam")

    def to_onnx(self, g: "OnnxGraph", xs: Sequence[str], w: Weights) -> str:
        return lower_activation(g, g.op("Mul", [xs[0], xs[1]]), self.activation, "sam")

    def describe(self) -> str:
        return f"* {self.inputs[1]}"
