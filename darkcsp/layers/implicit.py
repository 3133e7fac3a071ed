"""[implicit]: a learned constant tensor (YOLOR's implicit knowledge); the input is ignored.

Darknet (darknet-semantics.md §3.14): options ``filters`` (128), ``atoms`` (1), ``mean`` (0), ``std`` (0.2; the
last two only for the random init). Output (filters, atoms, 1) = the filters*atoms weights read from the file.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, List, Sequence, Tuple

import numpy as np

from ..cfg import Section
from .base import BuildContext, Layer, Weights

if TYPE_CHECKING:  # pragma: no cover
    from ..onnx.builder import OnnxGraph


class Implicit(Layer):
    type = "implicit"

    def setup(self, section: Section, ctx: BuildContext) -> None:
        self.filters = section.int("filters", 128)
        self.atoms = section.int("atoms", 1)
        self.mean = section.float("mean", 0.0)
        self.std = section.float("std", 0.2)
        for key, value in (("filters", self.filters), ("atoms", self.atoms)):
            if value < 1:
                raise self.error(f"{key}={value} must be >= 1", key)
        self.out_shape = (self.filters, self.atoms, 1)

    def weight_arrays(self) -> List[Tuple[str, Tuple[int, ...]]]:
        return [("weights", (self.filters, self.atoms, 1))]

    def init_weights(self, rng: np.random.Generator) -> Weights:
        """Darknet: mean + U(-std, std)."""
        shape = (self.filters, self.atoms, 1)
        return {"weights": (self.mean + self.std * rng.uniform(-1, 1, shape)).astype(np.float32)}

    def forward(self, xs: Sequence[np.ndarray], w: Weights) -> np.ndarray:
        n = xs[0].shape[0] if xs else 1
        wt = np.asarray(w["weights"], np.float32).reshape(1, *self.out_shape)
        return np.repeat(wt, n, axis=0)

    def to_onnx(self, g: "OnnxGraph", xs: Sequence[str], w: Weights) -> str:
        """The constant, expanded to the batch size of the (ignored) input."""
        wt = g.const(np.asarray(w["weights"], np.float32).reshape(1, *self.out_shape), "implicit")
        batch = g.op("Slice", [g.op("Shape", [xs[0]]), g.ints([0], "start"), g.ints([1], "end")])
        shape = g.op("Concat", [batch, g.ints(list(self.out_shape), "implicit_shape")], axis=0)
        return g.op("Expand", [wt, shape])

    def describe(self) -> str:
        return f"{self.filters} x {self.atoms}"
