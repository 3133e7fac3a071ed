"""[scale_channels]: scale the ``from`` layer's channels (SE blocks) or pixels (``scale_wh=1``) by the input.

Darknet's rules kept here (darknet-semantics.md §3.13; corpus README Surprises #16):
* output shape = the from-layer's (C2, H2, W2).
* ``scale_wh=0``: the input must be (C2, 1, 1); ``Y[c, y, x] = X[c] * F[c, y, x]``.
* ``scale_wh=1``: the input must have the from-layer's W,H; ``Y[c, y, x] = X[0, y, x] * F[c, y, x]`` - only the
  input's first plane is used whatever its C (Darknet asserts C == 1 in debug builds; release builds, which
  the corpus reference used, read plane 0).
* then ``activation`` (linear) through Darknet's act(): swish/mish/hard_mish give zeros (DECISIONS.md #2).
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


class ScaleChannels(Layer):
    """[scale_channels]: Y = act(X[c] * F[c]) per channel, or act(X[0] * F[c]) per pixel with scale_wh=1."""

    type = "scale_channels"
    size_agnostic = True

    def setup(self, section: Section, ctx: BuildContext) -> None:
        src = resolve_sources(self, section, ctx, "from", [section.int("from")])[0]
        self.inputs = [self.index - 1, src]
        self.scale_wh = section.int("scale_wh", 0)
        self.activation = read_activation(section, "scale_channels", "linear")
        c, h, w = self.in_shape
        fc, fh, fw = ctx.shape_of(src)
        if self.scale_wh:
            if (h, w) != (fh, fw):
                raise self.error(f"scale_wh=1: the input (layer {self.index - 1}) is {w}x{h} but from layer {src} "
                                 f"is {fw}x{fh}; Darknet asserts equal width and height", "scale_wh")
            if c != 1:
                section.warn(f"scale_wh=1 with a {c}-channel input: Darknet uses only its first plane (debug "
                             "builds abort on this)", "scale_wh")
        else:
            if (h, w) != (1, 1) or c != fc:
                raise self.error(f"the input (layer {self.index - 1}) is {w}x{h}x{c} but [scale_channels] needs "
                                 f"1x1x{fc} (one scale per channel of from layer {src}); Darknet asserts it", "from")
        self.out_shape = (fc, fh, fw)

    def forward(self, xs: Sequence[np.ndarray], w: Weights) -> np.ndarray:
        x, f = xs
        scale = x[:, :1] if self.scale_wh else x
        return activate((scale * f).astype(np.float32, copy=False), self.activation, "scale_channels")

    def to_onnx(self, g: "OnnxGraph", xs: Sequence[str], w: Weights) -> str:
        x, f = xs
        if self.scale_wh and self.in_shape[0] != 1:
            x = g.slice(x, [0], [1], [1])
        return lower_activation(g, g.op("Mul", [f, x]), self.activation, "scale_channels")

    def describe(self) -> str:
        return f"* {self.inputs[1]}" + (" wh" if self.scale_wh else "")
