"""[softmax] (alias [soft]): softmax over the flattened input, in ``groups`` contiguous chunks.

Darknet's rules kept here (darknet-semantics.md §3.20; corpus README Surprises #18):
* The input is flattened (C*H*W values); each of ``groups`` (1) contiguous chunks gets
  ``exp(x/T - max/T) / sum`` with ``temperature`` T (1); exp in double, the sum in float.
* Darknet leaves out_c/out_h/out_w at 0 (only ``outputs`` is set); darkcsp reports (outputs, 1, 1) so that
  flat consumers ([cost], [connected], [route]) work.
* ``tree=<file>`` (hierarchical softmax, e.g. data/9k.tree): Darknet's read_tree groups the file's lines into
  runs of equal parent id; the softmax (with T) is applied to each run's contiguous slice of the input, in
  file order; outputs past the tree's node count stay 0. The path is opened relative to the working
  directory, as Darknet does (darkcsp also tries the cfg's directory).
* ``spatial=1`` (a GPU-only per-pixel softmax the CPU build ignores) is refused.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, List, Sequence

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


def read_tree_groups(path: Path) -> List[int]:
    """Sizes of Darknet's softmax-tree groups: runs of consecutive lines with the same parent id
    (tree.c: read_tree; each line ``<name> <parent>``, a missing or unreadable parent counts as -1)."""
    lines = path.read_text(encoding="latin-1").split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # fgetl returns nothing after the final newline
    sizes: List[int] = []
    last_parent = None
    for line in lines:
        fields = line.split()
        m = re.match(r"[+-]?\d+", fields[1]) if len(fields) > 1 else None
        parent = int(m.group(0)) if m else -1
        if parent != last_parent:
            sizes.append(0)
            last_parent = parent
        sizes[-1] += 1
    return sizes


def _tree_index(sizes: Sequence[int]) -> np.ndarray:
    """(G, M) flat input positions of each non-empty group, padded with -1."""
    sizes = [k for k in sizes if k > 0]
    index = np.full((len(sizes), max(sizes)), -1, np.int64)
    offset = 0
    for g, k in enumerate(sizes):
        index[g, :k] = np.arange(offset, offset + k)
        offset += k
    return index


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
        self.tree_groups: List[int] = []
        if section.has("tree"):
            self.tree_groups = self._read_tree(section, inputs)
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

    def _read_tree(self, section: Section, inputs: int) -> List[int]:
        name = section.str("tree")
        path = Path(name)
        if not path.is_file() and not path.is_absolute():
            path = Path(section.file).parent / name
        if not path.is_file():
            raise self.error(f"tree file '{name}' not found (Darknet opens it relative to the working directory)",
                             "tree")
        try:
            sizes = read_tree_groups(path)
        except OSError as e:
            raise self.error(f"cannot read tree file '{path}': {e.strerror}", "tree") from None
        if not sizes or sum(sizes) > inputs:
            raise self.error(f"tree file '{path}' has {sum(sizes)} nodes but the layer has {inputs} inputs "
                             "(Darknet would read past its input)", "tree")
        return sizes

    def forward(self, xs: Sequence[np.ndarray], w: Weights) -> np.ndarray:
        x = np.asarray(xs[0], np.float32)
        n = x.shape[0]
        if self.tree_groups:
            return self._forward_tree(x.reshape(n, -1)).reshape(n, self.inputs_count, 1, 1)
        y = darknet_softmax(x.reshape(n, self.groups, -1), self.temperature)
        return y.reshape(n, self.inputs_count, 1, 1)

    def _forward_tree(self, x: np.ndarray) -> np.ndarray:
        # every group at once: gather into (N, G, M) padded with -inf (exp -> 0), softmax, scatter back
        index = _tree_index(self.tree_groups)
        valid = index >= 0
        z = np.where(valid, x[:, np.maximum(index, 0)], np.float32(-np.inf))
        with np.errstate(invalid="ignore"):
            p = darknet_softmax(z, self.temperature)
        y = np.zeros_like(x)
        y[:, index[valid]] = p[:, valid]
        return y

    def to_onnx(self, g: "OnnxGraph", xs: Sequence[str], w: Weights) -> str:
        if self.tree_groups:
            return self._tree_onnx(g, xs[0])
        y = g.reshape(xs[0], [0, self.groups, self.inputs_count // self.groups])
        if self.temperature != 1:
            y = g.op("Div", [y, g.scalar(self.temperature, "temperature")])
        y = g.op("Softmax", [y], axis=2)
        return g.reshape(y, [0, self.inputs_count, 1, 1])

    def _tree_onnx(self, g: "OnnxGraph", x: str) -> str:
        index = _tree_index(self.tree_groups)
        valid = index >= 0
        n_groups, width = index.shape
        flat = g.reshape(x, [0, self.inputs_count])
        if self.temperature != 1:
            flat = g.op("Div", [flat, g.scalar(self.temperature, "temperature")])
        z = g.op("Gather", [flat, g.ints(np.maximum(index, 0).ravel(), "tree_index")], axis=1)
        z = g.reshape(z, [0, n_groups, width])
        z = g.op("Where", [g.const(valid, "tree_valid", dtype=np.bool_), z, g.scalar(-np.inf, "neg_inf")])
        p = g.reshape(g.op("Softmax", [z], axis=2), [0, n_groups * width])
        # back to file order: output position index[g, j] reads slot g*width + j
        total = int(valid.sum())
        slots = np.flatnonzero(valid.ravel())[np.argsort(index[valid])]
        y = g.op("Gather", [p, g.ints(slots, "tree_slots")], axis=1)
        if total < self.inputs_count:
            y = g.op("Pad", [y, g.ints([0, 0, 0, self.inputs_count - total], "pads")], mode="constant")
        return g.reshape(y, [0, self.inputs_count, 1, 1])

    def describe(self) -> str:
        parts = []
        if self.groups > 1:
            parts.append(f"groups {self.groups}")
        if self.temperature != 1:
            parts.append(f"T {self.temperature:g}")
        if self.tree_groups:
            parts.append(f"tree {len(self.tree_groups)} groups")
        return " ".join(parts)
