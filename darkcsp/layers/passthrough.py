"""Layers that do nothing at inference: [dropout], [empty]/[silence], and the training-only [cost] and
[contrastive] (darknet-semantics.md §3.17, §3.21).

* [dropout] and [empty] alias the previous layer's buffer: identity, shape = input.
* [cost] and [contrastive] write nothing at inference (their buffer stays 0) and are never a network output.
  Darknet leaves their out_c/out_h/out_w at 0 with ``outputs`` = inputs; darkcsp reports (inputs, 1, 1).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..cfg import Section
from .base import BuildContext, Layer, Weights

if TYPE_CHECKING:  # pragma: no cover
    from ..onnx.builder import OnnxGraph


class _Identity(Layer):
    is_alias = True
    size_agnostic = True

    def forward(self, xs: Sequence[np.ndarray], w: Weights) -> np.ndarray:
        return xs[0]

    def to_onnx(self, g: "OnnxGraph", xs: Sequence[str], w: Weights) -> str:
        return xs[0]


class Dropout(_Identity):
    """[dropout]: identity at inference."""

    type = "dropout"
    training_options = ("probability", "dropblock", "dropblock_size_rel", "dropblock_size_abs")

    def describe(self) -> str:
        p = self.section.options.get("probability")
        return f"p = {p.value}" if p else "p = .2"


class Empty(_Identity):
    """[empty] / [silence]: identity."""

    type = "empty"
    aliases = ('silence',)


class _TrainingOnly(Layer):
    is_training_only = True
    size_agnostic = True

    def setup(self, section: Section, ctx: BuildContext) -> None:
        # Darknet's parser reads a handful of loss options here; none matters at inference
        for opt in section.options.values():
            opt.used = True
        self.out_shape = (ctx.outputs_of(self.inputs[0]), 1, 1)

    def forward(self, xs: Sequence[np.ndarray], w: Weights) -> np.ndarray:
        return np.zeros((xs[0].shape[0],) + tuple(self.out_shape), np.float32)

    def to_onnx(self, g: "OnnxGraph", xs: Sequence[str], w: Weights) -> str:
        from onnx import helper
        flat = g.reshape(xs[0], [0, -1, 1, 1])
        return g.op("ConstantOfShape", [g.op("Shape", [flat])], value=helper.make_tensor("zero", g.float_type, [1], [0]))


class Cost(_TrainingOnly):
    """[cost]: the training loss; outputs zeros at inference."""

    type = "cost"


class Contrastive(_TrainingOnly):
    """[contrastive]: a training-only embedding loss; outputs zeros at inference."""

    type = "contrastive"
    size_agnostic = False  # not checked at a second size
