"""[activation]: an activation function as a layer of its own (default ``linear``); shape = input.

Darknet applies it through the generic activate(), so swish/mish/hard_mish/normalize_channels* give zeros
here (CPU and GPU builds); relu6 is computed (DECISIONS.md). See darkcsp/activations.py.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..activations import activate, lower_activation, read_activation
from ..cfg import Section
from .base import BuildContext, Layer, Weights

if TYPE_CHECKING:  # pragma: no cover
    from ..onnx.builder import OnnxGraph


class Activation(Layer):
    type = "activation"
    size_agnostic = True

    def setup(self, section: Section, ctx: BuildContext) -> None:
        self.activation = read_activation(section, "activation", "linear")
        self.out_shape = self.in_shape

    def forward(self, xs: Sequence[np.ndarray], w: Weights) -> np.ndarray:
        return activate(np.asarray(xs[0], np.float32), self.activation, "activation")

    def to_onnx(self, g: "OnnxGraph", xs: Sequence[str], w: Weights) -> str:
        y = lower_activation(g, xs[0], self.activation, "activation")
        return y if y != xs[0] else g.op("Identity", [xs[0]])

    def describe(self) -> str:
        return self.activation
