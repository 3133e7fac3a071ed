"""Sections -> a graph of layers with Darknet's shapes, parameter counts and BFLOPs."""
from __future__ import annotations

import difflib
import logging
import os
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np

from .cfg import Section, read_cfg
from .dialect import Dialect, get_dialect
from .errors import CfgError, DarkcspError, ResourceError, UnsupportedError
from .layers import REGISTRY, UNSUPPORTED
from .layers.base import BuildContext, Layer, NetConfig, Shape

log = logging.getLogger("darkcsp")

#: refuse networks whose forward pass would need more than this many bytes of activations (DARKCSP_MAX_MEMORY_GB)
DEFAULT_MAX_MEMORY_GB = 16.0


class Graph:
    """A parsed network: ``net`` ([net] options) and ``layers`` in Darknet order (index = Darknet's)."""

    def __init__(self, file: str, net: NetConfig, layers: List[Layer], dialect: Dialect):
        self.file = file
        self.net = net
        self.layers = layers
        self.dialect = dialect

    @property
    def input_shape(self) -> Shape:
        return self.net.input_shape

    @property
    def params_total(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def bflops_total(self) -> float:
        # Darknet sums l.bflops > 0 (a wrapped-around negative int product is left out).
        return sum(layer.bflops for layer in self.layers if layer.bflops > 0)

    def output_indices(self) -> List[int]:
        """Every detection head, else the last layer that is not training-only ([cost])."""
        heads = [layer.index for layer in self.layers if layer.is_head]
        if heads:
            return heads
        for layer in reversed(self.layers):
            if not layer.is_training_only:
                return [layer.index]
        return [self.layers[-1].index]

    def consumers(self) -> List[List[int]]:
        """For each layer, the indices of the layers that read its output."""
        out: List[List[int]] = [[] for _ in self.layers]
        for layer in self.layers:
            for i in layer.inputs:
                if i >= 0:
                    out[i].append(layer.index)
        return out

    def check_input(self, x: np.ndarray, file: Optional[str] = None, hint: str = "") -> np.ndarray:
        """``x`` as (N, C, H, W) (a (C, H, W) array gets a batch axis) once its shape fits the network input;
        neither copied nor converted (a memory-mapped .npy stays unread). DarkcspError naming ``file`` else."""
        if x.ndim == 3:
            x = x[None]
        want = tuple(self.input_shape)
        if x.ndim != 4 or tuple(x.shape[1:]) != want:
            raise DarkcspError(f"input has shape {tuple(x.shape)}, the network expects (N, {want[0]}, {want[1]}, "
                               f"{want[2]}){hint}", file=file)
        return x

    def activation_bytes(self, batch: int = 1) -> int:
        return 4 * batch * (sum(layer.outputs for layer in self.layers) + self.net.inputs)

    def __len__(self) -> int:
        return len(self.layers)

    def __repr__(self) -> str:
        return f"<Graph {self.file}: {len(self.layers)} layers, {self.params_total} params, {self.bflops_total:.3f} BFLOPs>"


def build_graph(sections: Sequence[Section], *, dialect: Union[str, Dialect] = "alexeyab",
                width: Optional[int] = None, height: Optional[int] = None, file: str = "<cfg>",
                max_memory_gb: Optional[float] = None) -> Graph:
    """Build the layer graph; every layer checks its options and shapes as it is created."""
    dialect = get_dialect(dialect)
    if not sections:
        raise CfgError("no sections: a Darknet cfg starts with [net]", file=file)
    first = sections[0]
    if first.name not in ("net", "network"):
        raise CfgError(f"the first section must be [net] (or [network]), found [{first.name}]",
                       file=first.file, line=first.line)
    net = NetConfig(first, width=width, height=height)
    if len(sections) == 1:
        raise CfgError("no layers after [net]", file=first.file, line=first.line)
    ctx = BuildContext(net, dialect, file)
    limit = max_memory_gb if max_memory_gb is not None else float(
        os.environ.get("DARKCSP_MAX_MEMORY_GB", DEFAULT_MAX_MEMORY_GB))
    total_bytes = 4 * net.inputs
    for index, section in enumerate(sections[1:]):
        if section.name in ("net", "network"):
            raise CfgError("[net] may appear only once, as the first section", file=section.file, line=section.line)
        if section.name in dialect.missing_sections:
            raise UnsupportedError(f"[{section.name}] does not exist in {dialect.name}'s Darknet; this cfg needs "
                                   "--dialect alexeyab", file=section.file, line=section.line, section=section.name)
        if section.name in UNSUPPORTED:
            raise UnsupportedError(UNSUPPORTED[section.name], file=section.file, line=section.line,
                                   section=section.name)
        cls = REGISTRY.get(section.name)
        if cls is None:
            known = ", ".join(sorted(REGISTRY))
            shown = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in section.name)
            close = difflib.get_close_matches(section.name, list(REGISTRY) + list(UNSUPPORTED), 1, 0.75)
            hint = f"did you mean [{close[0]}]? " if close else ""
            raise CfgError(f"unknown layer type [{shown}] (layer {index}); {hint}Darknet knows: {known}",
                           file=section.file, line=section.line)
        layer = cls(section, index, ctx)
        c, h, w = layer.out_shape
        if min(c, h, w) <= 0 and not layer.is_training_only:
            raise CfgError(f"layer {index} [{section.name}] has an empty output {layer.in_shape} -> "
                           f"{layer.out_shape}", file=section.file, line=section.line, section=section.name)
        # activations and weights (a [connected] with a huge output allocates its weights, not activations)
        total_bytes += 4 * layer.outputs + 4 * layer.params
        if total_bytes + 4 * layer.workspace > limit * 2 ** 30:
            raise ResourceError(
                f"the network needs more than {limit:g} GiB of activations, weights and scratch memory by layer "
                f"{index} (output {layer.out_shape}, {layer.params} params, {layer.workspace} scratch floats); set "
                "DARKCSP_MAX_MEMORY_GB to allow it", file=section.file,
                line=section.line, section=section.name)
        for opt in section.unused():
            log.warning("%s:%d [%s]: Unused field: '%s = %s'", section.file, opt.line, section.name, opt.key,
                        opt.value)
        ctx.layers.append(layer)
    return Graph(file, net, ctx.layers, dialect)


def load_graph(cfg: Union[str, Path], *, dialect: Union[str, Dialect] = "alexeyab", width: Optional[int] = None,
               height: Optional[int] = None, max_memory_gb: Optional[float] = None) -> Graph:
    """Read a .cfg file and build its graph."""
    return build_graph(read_cfg(cfg), dialect=dialect, width=width, height=height, file=str(cfg),
                       max_memory_gb=max_memory_gb)


def load_input(path: Union[str, Path], graph: Graph) -> np.ndarray:
    """An input tensor from a .npy file: (N, C, H, W) (or (C, H, W)) numbers fitting ``graph``'s input, as
    contiguous float32. The shape is checked before the data is read (memory-mapped)."""
    path = str(path)
    try:
        x = np.load(path, allow_pickle=False, mmap_mode="r")
    except FileNotFoundError:
        raise DarkcspError("input file not found", file=path) from None
    except (ValueError, OSError, EOFError) as e:  # EOFError: an empty file
        raise DarkcspError(f"not a .npy array file ({e})", file=path) from None
    if not isinstance(x, np.ndarray):  # np.load returns an NpzFile for .npz archives
        raise DarkcspError("an .npz archive, not a .npy array file", file=path)
    if x.dtype.kind not in "fiub":
        raise DarkcspError(f"array of {x.dtype}, not numbers", file=path)
    x = graph.check_input(x, file=path, hint=" (use --width/--height to change the network size)")
    return np.ascontiguousarray(x, dtype=np.float32)
