"""[route]: concatenate the outputs of listed layers along channels, optionally one channel group of each.

Darknet's rules kept here (darknet-semantics.md §1.3, §3.6; corpus README Surprises #7):
* ``layers`` items < 0 are relative to this layer, >= 0 absolute; every item must name an earlier layer.
* ``groups=G, group_id=j`` takes from EACH listed layer the chunk j of G of its flattened output, i.e. its
  channels [j*C/G, (j+1)*C/G), and concatenates those chunks.
* Darknet only warns when the listed layers differ in W,H (and then builds a 0x0x0 layer); darkcsp refuses.
  A channel count not divisible by G makes Darknet's chunks cut through channels while its shape says
  otherwise; refused too.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, List, Sequence

import numpy as np

from ..cfg import Section
from .base import BuildContext, Layer, Weights

if TYPE_CHECKING:  # pragma: no cover
    from ..onnx.builder import OnnxGraph


def resolve_sources(layer: Layer, section: Section, ctx: BuildContext, key: str, refs: Sequence[int]) -> List[int]:
    """Resolve Darknet layer references (range-checked) and refuse antialiased sources, whose Darknet buffer
    (blurred, small) disagrees with the shape a referencing layer sees (the host's stride-1 shape)."""
    out = []
    for ref in refs:
        target = ctx.resolve(section, key, ref, layer.index)
        src = ctx.layers[target]
        if src.antialiasing:
            raise layer.error(f"{key}={ref} refers to layer {target} [{src.type}] with antialiasing: Darknet's "
                              "buffer for it holds the blurred map while the layer reports its stride-1 shape; "
                              "darkcsp does not imitate that", key)
        out.append(target)
    return out


class Route(Layer):
    """[route]: channel concatenation of earlier layers (with groups/group_id: a channel slice of each)."""

    type = "route"
    size_agnostic = True

    def setup(self, section: Section, ctx: BuildContext) -> None:
        refs = section.ints("layers")
        self.groups = section.int("groups", 1)
        self.group_id = section.int("group_id", 0)
        if self.groups <= 0:
            raise self.error(f"groups={self.groups} must be positive", "groups")
        if not 0 <= self.group_id < self.groups:
            raise self.error(f"group_id={self.group_id} must be in 0..{self.groups - 1} (groups={self.groups})",
                             "group_id")
        self.inputs = resolve_sources(self, section, ctx, "layers", refs)
        shapes = [ctx.shape_of(i) for i in self.inputs]
        self.in_shape = shapes[0]
        c0, h0, w0 = shapes[0]
        for i, (c, h, w) in zip(self.inputs, shapes):
            if (h, w) != (h0, w0):
                listing = ", ".join(f"layer {j}: {ww}x{hh}x{cc}" for j, (cc, hh, ww) in zip(self.inputs, shapes))
                raise self.error(f"the input layers differ in width/height ({listing}); Darknet warns \"The width "
                                 "and height of the input layers are different\" and builds an empty layer", "layers")
            if c % self.groups:
                raise self.error(f"layer {i} has {c} channels, not divisible by groups={self.groups} (Darknet's "
                                 "chunks would cut through channels)", "groups")
        self.chunks = [c // self.groups for c, _, _ in shapes]
        self.out_shape = (sum(self.chunks), h0, w0)

    def cio_reads(self, outputs_of) -> int:
        """Only this layer's ``group_id`` slice of each input: C_k/groups * H * W."""
        return sum(k * self.out_shape[1] * self.out_shape[2] for k in self.chunks)

    def forward(self, xs: Sequence[np.ndarray], w: Weights) -> np.ndarray:
        parts = [x[:, self.group_id * k:(self.group_id + 1) * k] for x, k in zip(xs, self.chunks)]
        if len(parts) == 1:
            return np.ascontiguousarray(parts[0]) if self.groups > 1 else parts[0]
        return np.concatenate(parts, axis=1)

    def to_onnx(self, g: "OnnxGraph", xs: Sequence[str], w: Weights) -> str:
        parts = []
        for x, k in zip(xs, self.chunks):
            if self.groups > 1:
                x = g.slice(x, [self.group_id * k], [(self.group_id + 1) * k], [1])
            parts.append(x)
        if len(parts) == 1 and self.groups == 1:
            return g.op("Identity", parts)  # a distinct tensor name for this layer's output
        return g.concat(parts, axis=1)

    def describe(self) -> str:
        text = " ".join(str(i) for i in self.inputs)
        if self.groups > 1:
            text += f" g{self.group_id}/{self.groups}"
        return text
