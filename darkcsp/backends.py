"""Backends behind one interface: each runs a Model on (N,C,H,W) float32 and returns {layer index: output}."""
from __future__ import annotations

from typing import Dict, Iterable, Optional

import numpy as np

from .errors import UnsupportedError
from .model import Model


class Backend:
    name = ""

    def __init__(self, model: Model, outputs: Optional[Iterable[int]] = None, all_layers: bool = False, **options):
        self.model = model
        self.outputs = list(model.graph.output_indices() if outputs is None else outputs)
        self.all_layers = all_layers

    def run(self, x: np.ndarray) -> Dict[int, np.ndarray]:
        raise NotImplementedError


class NumpyBackend(Backend):
    """The reference executor (darkcsp.model.Model.forward)."""
    name = "numpy"

    def run(self, x: np.ndarray) -> Dict[int, np.ndarray]:
        return self.model.forward(x, outputs=self.outputs, all_layers=self.all_layers)


#: backend name -> class; the ONNX-based ones are added below
BACKENDS = {"numpy": NumpyBackend}


def create_backend(name: str, model: Model, **options) -> Backend:
    try:
        cls = BACKENDS[name]
    except KeyError:
        raise UnsupportedError(f"unknown backend '{name}': choose from {', '.join(BACKENDS)}") from None
    return cls(model, **options)
