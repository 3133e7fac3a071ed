"""[softmax] (alias [soft]): softmax over the flattened input, in ``groups`` contiguous chunks.

Darknet's rules kept here (darknet-semantics.md §3.20; corpus README Surprises #18):
* The input is flattened (C*H*W values); each of ``groups`` (1) contiguous chunks gets
  ``exp(x/T - max/T) / sum`` with ``temperature`` T (1); exp in double, the sum in float.
* Darknet leaves out_c/out_h/out_w at 0 (only ``outputs`` is set); darkcsp reports (outputs, 1, 1) so that
  flat consumers ([cost], [connected], [route]) work.
* ``tree=`` (hierarchical softmax over a tree file) and ``spatial=1`` (a GPU-only per-pixel softmax the CPU
  build ignores) are refused.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..cfg import Section
from ..errors import UnsupportedError
from .base import BuildContext, Layer, Weights

if TYPE_CHECKING:  # pragma: no cover
    from ..onnx.builder import OnnxGraph


def darknet_softmax(x: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Softmax over the last axis as Darknet's softmax(): float x/T - max/T, double exp, float sum."""
    x = np.asarray(x, np.float32)
    t = np.float32(temperature)
    largest = x.max(axis=-1, keepdims=True)
    z = x / t - largest / t
    e = np.exp(z.astype(np.float64)).astype(np.float32)
    return e / e.sum(axis=-1, dtype=np.float32, keepdims=True)


class Softmax(Layer):
    """[softmax]: grouped softmax over the flattened input; output (inputs, 1, 1)."""

    type = "softmax"
    aliases = ('soft',)
    # training only
    training_options = ("noloss",)

    def setup(self, section: Section, ctx: BuildContext) -> None:
        self.groups = section.int("groups", 1)
        self.temperature = section.float("temperature", 1.0)
        inputs = ctx.outputs_of(self.inputs[0])
        if section.has("tree"):
            raise UnsupportedError(f"layer {self.index}: [softmax] tree= (hierarchical softmax) is not supported by "
                                   "darkcsp", file=section.file, line=section.options["tree"].line,
                                   section=section.name, option="tree")
        if section.float("spatial", 0.0):
            raise UnsupportedError(f"layer {self.index}: [softmax] spatial=1 is a GPU-only per-pixel softmax that "
                                   "Darknet's CPU build ignores; darkcsp does not guess which one you want",
                                   file=section.file, line=section.options["spatial"].line,
                                   section=section.name, option="spatial")
        if self.groups <= 0 or inputs % self.groups:
            raise self.error(f"groups={self.groups} must divide the {inputs} inputs (Darknet asserts it)", "groups")
        if self.temperature == 0:
            raise self.error("temperature=0 divides by zero", "temperature")
        self.inputs_count = inputs
        self.out_shape = (inputs, 1, 1)

    def forward(self, xs: Sequence[np.ndarray], w: Weights) -> np.ndarray:
        x = np.asarray(xs[0], np.float32)
        n = x.shape[0]
        y = darknet_softmax(x.reshape(n, self.groups, -1), self.temperature)
        return y.reshape(n, self.inputs_count, 1, 1)

    def to_onnx(self, g: "OnnxGraph", xs: Sequence[str], w: Weights) -> str:
        y = g.reshape(xs[0], [0, self.groups, self.inputs_count // self.groups])
        if self.temperature != 1:
            y = g.op("Div", [y, g.scalar(self.temperature, "temperature")])
        y = g.op("Softmax", [y], axis=2)
        return g.reshape(y, [0, self.inputs_count, 1, 1])

    def describe(self) -> str:
        parts = []
        if self.groups > 1:
            parts.append(f"groups {self.groups}")
        if self.temperature != 1:
            parts.append(f"T {self.temperature:g}")
        return " ".join(parts)
