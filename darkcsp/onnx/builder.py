"""A small helper around onnx.helper that layers use to emit nodes (see Layer.to_onnx)."""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import onnx
from onnx import helper, numpy_helper

DEFAULT_OPSET = 17


class OnnxGraph:
    """Collects nodes and initializers with unique names; ``op`` returns the output tensor name(s)."""

    def __init__(self, opset: int = DEFAULT_OPSET, float_dtype=np.float32):
        self.opset = opset
        self.float_dtype = float_dtype
        self.nodes: List[onnx.NodeProto] = []
        self.initializers: List[onnx.TensorProto] = []
        self._names: Dict[str, int] = {}
        self.prefix = ""  # set by the exporter to e.g. "l12_" while lowering layer 12

    def name(self, hint: str) -> str:
        base = f"{self.prefix}{hint}"
        n = self._names.get(base, 0)
        self._names[base] = n + 1
        return base if n == 0 else f"{base}_{n}"

    def op(self, op_type: str, inputs: Sequence[str], *, outputs: Optional[Sequence[str]] = None,
           n_out: int = 1, **attrs) -> Union[str, List[str]]:
        """Add a node; return its output name (or list of names if n_out > 1 or outputs given)."""
        if outputs is None:
            outputs = [self.name(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, list(inputs), list(outputs),
                                           name=self.name(f"{op_type}_node"), **attrs))
        return outputs[0] if len(outputs) == 1 else list(outputs)

    def const(self, array, hint: str = "const", dtype=None) -> str:
        """Add an initializer. Float arrays take the graph's float dtype (float16 export) unless dtype is given."""
        arr = np.asarray(array)
        if dtype is not None:
            arr = arr.astype(dtype)
        elif arr.dtype.kind == "f":
            arr = arr.astype(self.float_dtype)
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(arr, name))
        return name

    def ints(self, values: Sequence[int], hint: str = "ints") -> str:
        return self.const(np.asarray(values, dtype=np.int64), hint, dtype=np.int64)

    def scalar(self, value: float, hint: str = "scalar") -> str:
        return self.const(np.asarray(value, dtype=np.float32), hint)
