"""A small helper around onnx.helper that layers use to emit nodes (see Layer.to_onnx).

Conventions for lowerings (``Layer.to_onnx(g, xs, w) -> output name``):

* Tensors are (N, C, H, W) like the NumPy forward. The batch may be symbolic (``g.dynamic_batch``), so a
  ``Reshape`` must say ``0`` (copy) or ``-1`` for the batch axis, never a literal N. With ``g.dynamic_size``
  the spatial size is symbolic too, but only for the layer types listed in
  ``Layer.size_agnostic`` (size-independent lowerings, ``darkcsp.onnx.export.DYNAMIC_SIZE_TYPES``); other types keep it fixed.
* Fold everything that depends only on weights in NumPy (float64 where Darknet's fused path does) and
  pass the result to ``g.const``; float constants take the graph's float type (float16 export).
  Use ``g.float_type`` for ``Cast(to=...)`` to the working float type.
* Node and tensor names get the per-layer prefix (``l12_``) automatically.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

#: Default opset 17 (``--opset`` allows 13..21). Measured with onnxruntime 1.32, opencv-python 5.0.0 (new DNN
#: engine) and 4.14.0: every operator the lowerings emit (Conv, MaxPool with asymmetric pads, Resize nearest,
#: Split/Slice, Reshape+ReduceMax, DepthToSpace, Softmax, LRN, the activations, ...) imports and matches at 13..21
#: on all three. 17 rather than newer because it is the last opset with reduction ``axes`` as an attribute, which
#: older OpenCV 4.x importers and onnxruntime >= 1.13 read, and because nothing we need is newer: the Mish-18
#: operator gains nothing (onnxruntime inlines its Softplus/Tanh/Mul function body, and its Softplus kernel is
#: slow; darkcsp.activations lowers mish as x * tanh(log(exp(x) + 1)), which OpenCV fuses into its Mish layer).
DEFAULT_OPSET = 17
MIN_OPSET = 13
MAX_OPSET = 21


class OnnxGraph:
    """Collects nodes and initializers with unique names; ``op`` returns the output tensor name(s)."""

    def __init__(self, opset: int = DEFAULT_OPSET, float_dtype=np.float32, *, dynamic_batch: bool = False,
                 dynamic_size: bool = False, batch: int = 1, target: str = "generic"):
        self.opset = opset
        #: the runtime the graph is tuned for (darkcsp.onnx.conv.TARGETS); lowerings may emit other nodes for it
        self.target = target
        self.float_dtype = np.dtype(float_dtype).type
        self.dynamic_batch = dynamic_batch
        self.dynamic_size = dynamic_size
        #: the static batch size (meaningless when ``dynamic_batch``)
        self.batch = batch
        self.nodes: List[onnx.NodeProto] = []
        self.initializers: List[onnx.TensorProto] = []
        self._names: Dict[str, int] = {}
        self._small_consts: Dict[Tuple[str, Tuple[int, ...], bytes], str] = {}
        self.prefix = ""  # set by the exporter to e.g. "l12_" while lowering layer 12

    # ----- names -------------------------------------------------------------------------------
    def name(self, hint: str) -> str:
        base = f"{self.prefix}{hint}"
        n = self._names.get(base, 0)
        self._names[base] = n + 1
        return base if n == 0 else f"{base}_{n}"

    def reserve(self, name: str) -> None:
        """Mark a global name (graph input/output) as taken."""
        self._names[name] = max(self._names.get(name, 0), 1)

    @property
    def float_type(self) -> int:
        """The TensorProto element type of the working float (FLOAT or FLOAT16)."""
        return TensorProto.FLOAT16 if self.float_dtype == np.float16 else TensorProto.FLOAT

    # ----- emitting ----------------------------------------------------------------------------
    def op(self, op_type: str, inputs: Sequence[str], *, outputs: Optional[Sequence[str]] = None,
           n_out: int = 1, **attrs) -> Union[str, List[str]]:
        """Add a node; return its output name (or list of names if n_out > 1 or outputs given)."""
        if outputs is None:
            outputs = [self.name(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, list(inputs), list(outputs),
                                           name=self.name(f"{op_type}_node"), **attrs))
        return outputs[0] if len(outputs) == 1 else list(outputs)

    def const(self, array, hint: str = "const", dtype=None) -> str:
        """Add an initializer. Float arrays take the graph's float dtype (float16 export) unless dtype is given.

        Small constants (shapes, axes, scalars) with equal contents are shared."""
        arr = np.asarray(array)
        if dtype is not None:
            arr = arr.astype(dtype)
        elif arr.dtype.kind == "f":
            arr = arr.astype(self.float_dtype)
        arr = np.ascontiguousarray(arr)
        key = None
        if arr.size <= 64:
            key = (arr.dtype.str, arr.shape, arr.tobytes())
            if key in self._small_consts:
                return self._small_consts[key]
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(arr, name))
        if key is not None:
            self._small_consts[key] = name
        return name

    def ints(self, values: Sequence[int], hint: str = "ints") -> str:
        return self.const(np.asarray(values, dtype=np.int64), hint, dtype=np.int64)

    def scalar(self, value: float, hint: str = "scalar") -> str:
        return self.const(np.asarray(value, dtype=np.float32), hint)

    # ----- small conveniences used by several lowerings -----------------------------------------
    def reshape(self, x: str, shape: Sequence[int], hint: str = "reshape") -> str:
        """Reshape; use 0 or -1 for the batch axis (it may be symbolic)."""
        return self.op("Reshape", [x, self.ints(shape, "shape")], outputs=[self.name(hint)])

    def concat(self, xs: Sequence[str], axis: int = 1) -> str:
        return xs[0] if len(xs) == 1 else self.op("Concat", list(xs), axis=axis)

    def slice(self, x: str, starts: Sequence[int], ends: Sequence[int], axes: Sequence[int],
              steps: Optional[Sequence[int]] = None) -> str:
        ins = [x, self.ints(starts, "starts"), self.ints(ends, "ends"), self.ints(axes, "axes")]
        if steps is not None:
            ins.append(self.ints(steps, "steps"))
        return self.op("Slice", ins)

    def reduce(self, op_type: str, x: str, axes: Sequence[int], keepdims: int = 1) -> str:
        """ReduceMax/ReduceSum/ReduceMean/... with ``axes`` as an attribute or input, as the opset wants."""
        as_input = self.opset >= 18 or (op_type == "ReduceSum" and self.opset >= 13)
        if as_input:
            return self.op(op_type, [x, self.ints(axes, "axes")], keepdims=keepdims)
        return self.op(op_type, [x], axes=list(axes), keepdims=keepdims)

    def split(self, x: str, sizes: Sequence[int], axis: int = 1) -> List[str]:
        """Split into parts of ``sizes`` along ``axis`` (opset >= 13: sizes as an input)."""
        outs = self.op("Split", [x, self.ints(sizes, "split")], n_out=len(sizes), axis=axis)
        return outs if isinstance(outs, list) else [outs]

