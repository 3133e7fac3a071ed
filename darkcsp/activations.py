"""Darknet's activation functions: NumPy forward, ONNX lowering, and which layers really compute them.

Darknet quirk (darknet-semantics.md §4-§5, DECISIONS.md #1-#2): the generic ``activate()`` has no case for
swish, mish, hard_mish and the normalize_channels family and returns 0. Only ``[convolutional]`` computes
all of them with dedicated array functions, and ``[shortcut]`` computes swish and mish. Everywhere else
([activation], [connected], [scale_channels], [sam], [local], hard_mish in [shortcut], ...) Darknet - CPU
and GPU alike - outputs zeros, and a model trained there was trained with those zeros, so we reproduce them
and warn. relu6 is the one activation the GPU computes where the CPU gives 0: we compute it.
Unknown names become ReLU, as in Darknet ("Couldn't find activation function").
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable, Dict

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .cfg import Section
    from .onnx.builder import OnnxGraph

log = logging.getLogger("darkcsp")

_F = np.float32


def _sigmoid(x):
    return _F(1) / (_F(1) + np.exp(-x))


def _tanh(x):  # Darknet's tanh_activate: 2/(1+expf(-2x)) - 1
    with np.errstate(over="ignore"):
        return _F(2) / (_F(1) + np.exp(_F(-2) * x)) - _F(1)


def _softplus(x, threshold=_F(20)):
    with np.errstate(over="ignore"):
        return np.where(x > threshold, x, np.where(x < -threshold, np.exp(x), np.log(np.exp(x) + _F(1))))


def _stair(x):
    n = np.floor(x)
    half = np.floor(x / _F(2))
    return np.where(np.mod(n, 2) == 0, half, (x - n) + half)


def _normalize_channels(x, softmax: bool, maxval: bool):
    # per pixel, over the channel axis (axis 1 of N,C,H,W); epsilon 1e-4 added to the sum as in Darknet
    if softmax:
        v = np.exp(x - x.max(axis=1, keepdims=True)) if maxval else np.exp(x)
        return v / (_F(1e-4) + v.sum(axis=1, keepdims=True))
    v = np.maximum(x, _F(0))
    return np.where(x > 0, v / (_F(1e-4) + v.sum(axis=1, keepdims=True)), _F(0))


#: name -> NumPy function on float32 arrays (formulas of darknet-semantics.md §5)
NUMPY: Dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "linear": lambda x: x,
    "logistic": _sigmoid,
    "loggy": lambda x: _F(2) * _sigmoid(x) - _F(1),
    "relu": lambda x: x * (x > 0),
    "relu6": lambda x: np.clip(x, _F(0), _F(6)),
    "leaky": lambda x: np.where(x > 0, x, _F(0.1) * x),
    "revleaky": lambda x: np.where(x > 0, x, _F(0.1) * x),
    "relie": lambda x: np.where(x > 0, x, _F(0.01) * x),
    "ramp": lambda x: x * (x > 0) + _F(0.1) * x,
    "elu": lambda x: np.where(x >= 0, x, np.exp(np.minimum(x, 0)) - _F(1)),
    "selu": lambda x: np.where(x >= 0, _F(1.0507) * x, _F(1.0507) * _F(1.6732) * (np.exp(np.minimum(x, 0)) - _F(1))),
    "gelu": lambda x: _F(0.5) * x * (_F(1) + np.tanh(_F(0.797885) * x + _F(0.035677) * x * x * x)),
    "tanh": _tanh,
    "plse": lambda x: np.where(x < -4, _F(0.01) * (x + _F(4)),
                               np.where(x > 4, _F(0.01) * (x - _F(4)) + _F(1), _F(0.125) * x + _F(0.5))),
    "hardtan": lambda x: np.clip(x, _F(-1), _F(1)),
    "lhtan": lambda x: np.where(x < 0, _F(0.001) * x, np.where(x > 1, _F(0.001) * (x - _F(1)) + _F(1), x)),
    "stair": _stair,
    "swish": lambda x: x * _sigmoid(x),
    "mish": lambda x: x * _tanh(_softplus(x)),
    "hard_mish": lambda x: np.where(x > 0, x, np.where(x > -2, x * x / _F(2) + x, _F(0))),
    "normalize_channels": lambda x: _normalize_channels(x, False, False),
    "normalize_channels_softmax": lambda x: _normalize_channels(x, True, False),
    "normalize_channels_softmax_maxval": lambda x: _normalize_channels(x, True, True),
}

#: activations the generic act() lacks, and the layer types whose own code computes them anyway
_SPECIAL_CASED = {
    "swish": {"convolutional", "shortcut"},
    "mish": {"convolutional", "shortcut"},
    "hard_mish": {"convolutional"},
    "normalize_channels": {"convolutional"},
    "normalize_channels_softmax": {"convolutional"},
    "normalize_channels_softmax_maxval": {"convolutional"},
}


def is_zeroed(name: str, layer_type: str) -> bool:
    """True where Darknet (CPU and GPU) outputs zeros for this activation in this layer type."""
    return name in _SPECIAL_CASED and layer_type not in _SPECIAL_CASED[name]


def read_activation(section: "Section", layer_type: str, default: str) -> str:
    """Read ``activation=`` with Darknet's default for the layer; warn about Darknet's quirks."""
    name = section.str("activation", default)
    if name not in NUMPY:
        section.warn(f"unknown activation '{name}': Darknet uses relu instead (\"Couldn't find activation "
                     "function\")", "activation")
        return "relu"
    if is_zeroed(name, layer_type):
        section.warn(f"Darknet outputs zeros for activation={name} in [{layer_type}] (CPU and GPU builds); "
                     "darkcsp reproduces the zeros", "activation")
    return name


def activate(x: np.ndarray, name: str, layer_type: str) -> np.ndarray:
    """Apply activation ``name`` as Darknet's ``layer_type`` layer does (float32 in, float32 out)."""
    if name == "linear":
        return x
    if is_zeroed(name, layer_type):
        return np.zeros_like(x)
    with np.errstate(over="ignore", under="ignore"):
        return NUMPY[name](x).astype(np.float32, copy=False)


# ---------------------------------------------------------------------------------------------- ONNX
def _mul_const(g, x, c):
    return g.op("Mul", [x, g.scalar(c)])


def _add_const(g, x, c):
    return g.op("Add", [x, g.scalar(c)])


def _clip(g, x, lo, hi):
    return g.op("Clip", [x, g.scalar(lo, "clip_min"), g.scalar(hi, "clip_max")])


def _sigmoid_onnx(g, x):
    return g.op("Sigmoid", [x])


def _normalize_channels_onnx(g, x, softmax: bool, maxval: bool):
    axes = g.ints([1], "axes_c")
    if softmax:
        v = g.op("Exp", [g.op("Sub", [x, g.reduce("ReduceMax", x, [1])]) if maxval else x])
    else:
        v = g.op("Relu", [x])
    s = _add_const(g, g.op("ReduceSum", [v, axes], keepdims=1), 1e-4)
    return g.op("Div", [v, s])


def _plse_onnx(g, x):
    c = _clip(g, x, -4.0, 4.0)
    inner = _add_const(g, _mul_const(g, c, 0.125), 0.5)
    return g.op("Add", [inner, _mul_const(g, g.op("Sub", [x, c]), 0.01)])


def _lhtan_onnx(g, x):
    c = _clip(g, x, 0.0, 1.0)
    return g.op("Add", [c, _mul_const(g, g.op("Sub", [x, c]), 0.001)])


def _stair_onnx(g, x):
    n = g.op("Floor", [x])
    half = g.op("Floor", [_mul_const(g, x, 0.5)])
    parity = g.op("Sub", [n, _mul_const(g, g.op("Floor", [_mul_const(g, n, 0.5)]), 2.0)])
    return g.op("Add", [half, g.op("Mul", [parity, g.op("Sub", [x, n])])])


def _gelu_onnx(g, x):
    x3 = g.op("Mul", [g.op("Mul", [x, x]), x])
    t = g.op("Tanh", [g.op("Add", [_mul_const(g, x, 0.797885), _mul_const(g, x3, 0.035677)])])
    return g.op("Mul", [_mul_const(g, x, 0.5), _add_const(g, t, 1.0)])


#: name -> ONNX lowering (g, x) -> output name; exact compositions where ONNX has no matching op
ONNX: Dict[str, Callable] = {
    "logistic": _sigmoid_onnx,
    "loggy": lambda g, x: _add_const(g, _mul_const(g, _sigmoid_onnx(g, x), 2.0), -1.0),
    "relu": lambda g, x: g.op("Relu", [x]),
    "relu6": lambda g, x: _clip(g, x, 0.0, 6.0),
    "leaky": lambda g, x: g.op("LeakyRelu", [x], alpha=0.1),
    "revleaky": lambda g, x: g.op("LeakyRelu", [x], alpha=0.1),
    "relie": lambda g, x: g.op("LeakyRelu", [x], alpha=0.01),
    "ramp": lambda g, x: g.op("Add", [g.op("Relu", [x]), _mul_const(g, x, 0.1)]),
    "elu": lambda g, x: g.op("Elu", [x], alpha=1.0),
    "selu": lambda g, x: g.op("Selu", [x], alpha=1.6732, gamma=1.0507),
    "gelu": _gelu_onnx,
    "tanh": lambda g, x: g.op("Tanh", [x]),
    "plse": _plse_onnx,
    "hardtan": lambda g, x: _clip(g, x, -1.0, 1.0),
    "lhtan": _lhtan_onnx,
    "stair": _stair_onnx,
    "swish": lambda g, x: g.op("Mul", [x, _sigmoid_onnx(g, x)]),
    # softplus as log(exp(x) + 1), not ONNX Softplus: onnxruntime's Softplus kernel is scalar (measured 6x slower
    # for the whole mish, half the run time of a mish net); OpenCV fuses both forms into its Mish layer. Large
    # x: exp -> inf, log -> inf, tanh -> 1, mish = x (Darknet's threshold 20 gives the same float32 result).
    "mish": lambda g, x: g.op("Mul", [x, g.op("Tanh", [g.op("Log", [_add_const(g, g.op("Exp", [x]), 1.0)])])]),
    # x>0: x; -2<x<=0: x^2/2 + x = x*(x/2+1); else 0  ==  x * clip(x/2 + 1, 0, 1)
    "hard_mish": lambda g, x: g.op("Mul", [x, _clip(g, _add_const(g, _mul_const(g, x, 0.5), 1.0), 0.0, 1.0)]),
    "normalize_channels": lambda g, x: _normalize_channels_onnx(g, x, False, False),
    "normalize_channels_softmax": lambda g, x: _normalize_channels_onnx(g, x, True, False),
    "normalize_channels_softmax_maxval": lambda g, x: _normalize_channels_onnx(g, x, True, True),
}


def lower_activation(g: "OnnxGraph", x: str, name: str, layer_type: str) -> str:
    """Emit ONNX for activation ``name`` applied by a ``layer_type`` layer; return the output name."""
    if name == "linear":
        return x
    if is_zeroed(name, layer_type):
        # exact zeros (Mul by 0 would keep NaN/inf); the explicit value gives the graph's float type (fp16
        # export) and is required by OpenCV 5's ConstantOfShape
        from onnx import helper
        return g.op("ConstantOfShape", [g.op("Shape", [x])], value=helper.make_tensor("value", g.float_type, [1], [0]))
    return ONNX[name](g, x)
