"""[connected] (alias [conn]): fully connected layer on the flattened input.

Darknet (darknet-semantics.md §2.2, §3.2): options ``output`` (1), ``activation`` (**logistic**),
``batch_normalize`` (0). ``y = W x`` (W is [out][in]); with BN ``y = (y - mean)/sqrt(var + 1e-5) * scales``;
then ``y += biases`` and the generic activation (so swish/mish/... give zeros, see activations.py).
File order: biases, weights, then scales/mean/variance. Old files (header major or minor > 1000) store the
weights transposed, [in][out]. Output shape (output, 1, 1); Darknet's struct reports the input as (inputs, 1, 1).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, List, Sequence, Tuple

import numpy as np

from ..activations import activate, lower_activation, read_activation
from ..cfg import Section
from .base import BuildContext, Layer, Weights
from .convolutional import batch_norm_bias, fold_batch_norm

if TYPE_CHECKING:  # pragma: no cover
    from ..onnx.builder import OnnxGraph


class Connected(Layer):
    type = "connected"
    aliases = ('conn',)

    def setup(self, section: Section, ctx: BuildContext) -> None:
        self.n_inputs = ctx.outputs_of(self.inputs[0])
        self.n_outputs = section.int("output", 1)
        if self.n_outputs < 1:
            raise self.error(f"output={self.n_outputs} must be >= 1", "output")
        self.activation = read_activation(section, "connected", "logistic")
        self.batch_normalize = section.int("batch_normalize", 0)
        self.in_shape = (self.n_inputs, 1, 1)
        self.out_shape = (self.n_outputs, 1, 1)
        self.bflops = 0.0  # Darknet does not count [connected]

    def weight_arrays(self) -> List[Tuple[str, Tuple[int, ...]]]:
        n, m = self.n_outputs, self.n_inputs
        arrays: List[Tuple[str, Tuple[int, ...]]] = [("biases", (n,)), ("weights", (n, m))]
        if self.batch_normalize:
            arrays += [("scales", (n,)), ("rolling_mean", (n,)), ("rolling_variance", (n,))]
        return arrays

    def init_weights(self, rng: np.random.Generator) -> Weights:
        """Darknet: weights sqrt(2/inputs)*U(-1,1), the rest as Layer._init_weighted."""
        return self._init_weighted(rng, self.n_inputs)

    def weights_from_file(self, arrays: Weights, header) -> Weights:
        """Old files (header.transpose) store [in][out]."""
        if header.transpose and "weights" in arrays:
            arrays = dict(arrays)
            arrays["weights"] = np.ascontiguousarray(
                arrays["weights"].reshape(self.n_inputs, self.n_outputs).T)
        return arrays

    def weights_to_file(self, arrays: Weights, header) -> Weights:
        if header.transpose and "weights" in arrays:
            arrays = dict(arrays)
            arrays["weights"] = np.ascontiguousarray(arrays["weights"].T).reshape(self.n_outputs, self.n_inputs)
        return arrays

    def forward(self, xs: Sequence[np.ndarray], w: Weights) -> np.ndarray:
        x = np.asarray(xs[0], np.float32)
        flat = x.reshape(x.shape[0], -1)
        y = np.matmul(flat, np.asarray(w["weights"], np.float32).T)  # (N, out)
        y = batch_norm_bias(self.dialect, y, w, bool(self.batch_normalize))
        y = activate(y, self.activation, "connected")
        return y.reshape(x.shape[0], self.n_outputs, 1, 1)

    def to_onnx(self, g: "OnnxGraph", xs: Sequence[str], w: Weights) -> str:
        weights = np.asarray(w["weights"], np.float32)
        if self.batch_normalize:
            wf, bf = fold_batch_norm(self.dialect, weights, w["biases"], w["scales"], w["rolling_mean"],
                                     w["rolling_variance"])
        else:
            wf, bf = weights, np.asarray(w["biases"], np.float32)
        flat = g.op("Flatten", [xs[0]], axis=1)
        y = g.op("Gemm", [flat, g.const(wf.astype(np.float32), "fc_w"), g.const(bf.astype(np.float32), "fc_b")],
                 transB=1)
        y = lower_activation(g, y, self.activation, "connected")
        return g.op("Reshape", [y, g.ints([-1, self.n_outputs, 1, 1], "fc_shape")])

    @property
    def cio_compute(self) -> bool:
        return True

    def describe(self) -> str:
        return f"{self.n_inputs} -> {self.n_outputs}"
