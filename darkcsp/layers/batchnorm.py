"""[batchnorm]: per-channel batch normalisation with rolling statistics, as a layer of its own.

Darknet (darknet-semantics.md §2.2, §3.15): ``Y = (X - mean[c]) / sqrt(var[c] + 1e-5) * scales[c] + biases[c]``
(divide, not multiply by the inverse). File order biases, scales, rolling_mean, rolling_variance; pjreddie
stores only scales, mean, variance (its biases stay 0) and divides by ``sqrt(var) + 1e-6``. Shape = input.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, List, Sequence, Tuple

import numpy as np

from ..cfg import Section
from .base import BuildContext, Layer, Weights
from .convolutional import batch_norm_bias

if TYPE_CHECKING:  # pragma: no cover
    from ..onnx.builder import OnnxGraph


class BatchNorm(Layer):
    type = "batchnorm"
    size_agnostic = True

    def setup(self, section: Section, ctx: BuildContext) -> None:
        self.out_shape = self.in_shape

    def weight_arrays(self) -> List[Tuple[str, Tuple[int, ...]]]:
        c = self.in_shape[0]
        names = ["scales", "rolling_mean", "rolling_variance"]
        if self.dialect.batchnorm_layer_has_biases:
            names.insert(0, "biases")
        return [(name, (c,)) for name in names]

    def init_weights(self, rng: np.random.Generator) -> Weights:
        """Scales 1, biases and mean 0; variance 1 (Darknet: 0, which would amplify by 1/sqrt(1e-5))."""
        return {name: (np.ones if name in ("scales", "rolling_variance") else np.zeros)(shape, np.float32)
                for name, shape in self.weight_arrays()}

    def forward(self, xs: Sequence[np.ndarray], w: Weights) -> np.ndarray:
        y = np.array(xs[0], dtype=np.float32, copy=True)
        return batch_norm_bias(self.dialect, y, w, True)

    def to_onnx(self, g: "OnnxGraph", xs: Sequence[str], w: Weights) -> str:
        """Mul + Add with per-channel constants computed in float64."""
        c = self.in_shape[0]
        den = self.dialect.bn_denominator(w["rolling_variance"], np.float64)
        scale = np.asarray(w["scales"], np.float64) / den
        shift = np.asarray(w.get("biases", np.zeros(c)), np.float64) - scale * np.asarray(w["rolling_mean"], np.float64)
        y = g.op("Mul", [xs[0], g.const(scale.astype(np.float32).reshape(1, c, 1, 1), "bn_scale")])
        return g.op("Add", [y, g.const(shift.astype(np.float32).reshape(1, c, 1, 1), "bn_shift")])

    def describe(self) -> str:
        return f"{self.in_shape[0]}"
