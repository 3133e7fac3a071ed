"""[local]: locally connected layer (a convolution whose weights differ at every output location).

Darknet (darknet-semantics.md §2.2, §3.21): options ``filters`` (1), ``size`` (1), ``stride`` (1), ``pad`` (0),
``activation`` (logistic). ``out = (H - size)//stride + 1`` if pad==0 else ``(H - 1)//stride + 1``, while
im2col pads by ``pad`` itself (not size//2); layers where the two grids disagree (pad with size != 2*pad+1)
make Darknet read a mis-pitched buffer and are refused. Per output location l (row-major):
``Y[:, l] = W_l @ col_l + b[:, l]`` then the generic activation. File: biases[n*out_h*out_w] (as n, out_h,
out_w), weights[out_h*out_w][n][c][size][size]. BFLOPs: Darknet counts 0.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, List, Sequence, Tuple

import numpy as np

from ..activations import activate, lower_activation, read_activation
from ..cfg import Section
from .base import BuildContext, Layer, Weights, conv_out_size
from .convolutional import end_pad, im2col, pad_hw

if TYPE_CHECKING:  # pragma: no cover
    from ..onnx.builder import OnnxGraph


class Local(Layer):
    type = "local"

    def setup(self, section: Section, ctx: BuildContext) -> None:
        self.filters = section.int("filters", 1)
        self.size = section.int("size", 1)
        self.stride = section.int("stride", 1)
        self.pad = section.int("pad", 0)
        self.activation = read_activation(section, "local", "logistic")
        c, h, w = self.in_shape
        for key, value in (("filters", self.filters), ("size", self.size), ("stride", self.stride)):
            if value < 1:
                raise self.error(f"{key}={value} must be >= 1", key)
        if self.pad < 0:
            raise self.error(f"pad={self.pad} must be >= 0", "pad")
        k, s = self.size, self.stride
        oh = conv_out_size(h, 0, k, s) if not self.pad else conv_out_size(h, 0, 1, s)
        ow = conv_out_size(w, 0, k, s) if not self.pad else conv_out_size(w, 0, 1, s)
        grid = (conv_out_size(h, self.pad, k, s), conv_out_size(w, self.pad, k, s))
        if grid != (oh, ow):
            raise self.error(f"pad={self.pad} with size={k}: Darknet's output size ({oh}x{ow}) and its im2col grid "
                             f"({grid[0]}x{grid[1]}, padding by pad itself) disagree, so Darknet computes garbage; "
                             f"use pad=0, or size={2 * self.pad + 1}", "pad")
        self.out_shape = (self.filters, oh, ow)

    @property
    def locations(self) -> int:
        return self.out_shape[1] * self.out_shape[2]

    def weight_arrays(self) -> List[Tuple[str, Tuple[int, ...]]]:
        c = self.in_shape[0]
        n, k = self.filters, self.size
        return [("biases", self.out_shape), ("weights", (self.locations, n, c, k, k))]

    def init_weights(self, rng: np.random.Generator) -> Weights:
        """Darknet: weights sqrt(2/(size*size*c)) * U(-1,1), biases 0."""
        c = self.in_shape[0]
        shape = (self.locations, self.filters, c, self.size, self.size)
        scale = math.sqrt(2.0 / (self.size * self.size * c))
        return {"biases": np.zeros(self.out_shape, np.float32),
                "weights": (scale * rng.uniform(-1, 1, shape)).astype(np.float32)}

    def forward(self, xs: Sequence[np.ndarray], w: Weights) -> np.ndarray:
        x = np.ascontiguousarray(xs[0], np.float32)
        n_img = x.shape[0]
        n, oh, ow = self.out_shape
        k, s = self.size, self.stride
        _, h, wd = self.in_shape
        xp = pad_hw(x, self.pad, self.pad, end_pad(h, self.pad, k, s, 1, oh), end_pad(wd, self.pad, k, s, 1, ow))
        cols = im2col(xp, k, s, s, 1, oh, ow)[:, 0]  # (N, K, L)
        wt = np.asarray(w["weights"], np.float32).reshape(self.locations, n, -1)  # (L, n, K)
        y = np.matmul(wt, cols.transpose(2, 1, 0))  # (L, n, N)
        y = np.ascontiguousarray(y.transpose(2, 1, 0)).reshape(n_img, n, oh, ow)
        y += np.asarray(w["biases"], np.float32).reshape(1, n, oh, ow)
        return activate(y, self.activation, "local")

    def to_onnx(self, g: "OnnxGraph", xs: Sequence[str], w: Weights) -> str:
        """Exact composition: Pad, k*k strided Slices stacked into columns, a per-location batched MatMul."""
        c = self.in_shape[0]
        n, oh, ow = self.out_shape
        k, s, p = self.size, self.stride, self.pad
        x = xs[0]
        _, h, wd = self.in_shape
        end_y, end_x = end_pad(h, p, k, s, 1, oh), end_pad(wd, p, k, s, 1, ow)
        if p or end_y or end_x:
            x = g.op("Pad", [x, g.ints([0, 0, p, p, 0, 0, end_y, end_x], "pads")])
        axes = g.ints([2, 3], "axes_hw")
        steps = g.ints([s, s], "steps")
        pieces = []
        for i in range(k):
            for j in range(k):
                sl = g.op("Slice", [x, g.ints([i, j], "starts"), g.ints([i + (oh - 1) * s + 1, j + (ow - 1) * s + 1],
                                                                          "ends"), axes, steps])
                pieces.append(g.op("Unsqueeze", [sl, g.ints([2], "axis2")]))
        cols = pieces[0] if len(pieces) == 1 else g.op("Concat", pieces, axis=2)  # (N, C, k*k, oh, ow)
        cols = g.op("Reshape", [cols, g.ints([0, c * k * k, oh * ow], "cols_shape")])  # (N, K, L)
        cols = g.op("Transpose", [cols], perm=[2, 0, 1])  # (L, N, K)
        wt = np.asarray(w["weights"], np.float32).reshape(self.locations, n, c * k * k).transpose(0, 2, 1)
        y = g.op("MatMul", [cols, g.const(np.ascontiguousarray(wt), "local_w")])  # (L, N, n)
        y = g.op("Transpose", [y], perm=[1, 2, 0])  # (N, n, L)
        y = g.op("Reshape", [y, g.ints([0, n, oh, ow], "local_shape")])
        y = g.op("Add", [y, g.const(np.asarray(w["biases"], np.float32).reshape(1, n, oh, ow), "local_b")])
        return lower_activation(g, y, self.activation, "local")

    @property
    def cio_compute(self) -> bool:
        return True

    def describe(self) -> str:
        return f"{self.filters} {self.size} x {self.size}/ {self.stride}"
