"""[normalization] (alias [lrn]): local response normalisation across channels.

Darknet (darknet-semantics.md §3.19): options ``alpha`` (1e-4), ``beta`` (0.75), ``kappa`` (1), ``size`` (5);
shape = input. Intended: ``N[k] = kappa + alpha * sum_{j=k-(size-1)//2}^{k+size//2} X[j]^2`` (j clipped to the
channels, alpha NOT divided by size) and ``Y = X * N^-beta``. Darknet's running window is started with
channels 0..size//2-1 only, so every ``N[k]`` misses ``alpha * X[size//2]^2``; we reproduce that. With
C <= size//2 Darknet's window start reads past the channels (out of bounds), so that is refused.
ONNX's LRN divides alpha by size and has no missing term, so the lowering is an explicit composition.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..cfg import Section
from .base import BuildContext, Layer, Weights

if TYPE_CHECKING:  # pragma: no cover
    from ..onnx.builder import OnnxGraph


class Normalization(Layer):
    type = "normalization"
    aliases = ('lrn',)

    def setup(self, section: Section, ctx: BuildContext) -> None:
        self.alpha = section.float("alpha", 1e-4)
        self.beta = section.float("beta", 0.75)
        self.kappa = section.float("kappa", 1.0)
        self.size = section.int("size", 5)
        c = self.in_shape[0]
        if self.size < 1:
            raise self.error(f"size={self.size} must be >= 1", "size")
        if c <= self.size // 2:
            raise self.error(f"size={self.size} needs more than {self.size // 2} input channels (got {c}): "
                             "Darknet's window start reads past the channels", "size")
        self.out_shape = self.in_shape

    def _band(self, c: int) -> np.ndarray:
        """(C, C) matrix M with N = kappa + M @ X^2 over channels, Darknet's missing term included."""
        k = np.arange(c)[:, None]
        j = np.arange(c)[None, :]
        m = ((j >= k - (self.size - 1) // 2) & (j <= k + self.size // 2)).astype(np.float64) * self.alpha
        m[:, self.size // 2] -= self.alpha
        return m

    def forward(self, xs: Sequence[np.ndarray], w: Weights) -> np.ndarray:
        x = np.asarray(xs[0], np.float32)
        c = x.shape[1]
        sq = (x * x).astype(np.float64)
        csum = np.concatenate([np.zeros_like(sq[:, :1]), np.cumsum(sq, axis=1)], axis=1)
        k = np.arange(c)
        lo = np.clip(k - (self.size - 1) // 2, 0, c)
        hi = np.clip(k + self.size // 2 + 1, 0, c)
        window = csum[:, hi] - csum[:, lo] - sq[:, self.size // 2:self.size // 2 + 1]
        norms = (np.float64(self.kappa) + np.float64(self.alpha) * window).astype(np.float32)
        return (x * np.power(norms, np.float32(-self.beta))).astype(np.float32)

    def to_onnx(self, g: "OnnxGraph", xs: Sequence[str], w: Weights) -> str:
        c = self.in_shape[0]
        sq = g.op("Mul", [xs[0], xs[0]])
        band = self._band(c).astype(np.float32).reshape(c, c, 1, 1)
        norms = g.op("Conv", [sq, g.const(band, "lrn_band"), g.const(np.full(c, self.kappa, np.float32), "lrn_kappa")],
                     kernel_shape=[1, 1])
        return g.op("Mul", [xs[0], g.op("Pow", [norms, g.scalar(-self.beta, "lrn_beta")])])

    def describe(self) -> str:
        return f"size {self.size}"
