"""The contract every Darknet layer module fulfils.

A layer class owns, for one Darknet section type: option parsing with Darknet's defaults (``setup``), the
shape rule (``out_shape``), the .weights layout (``weight_arrays``), Darknet's parameter and BFLOPs counts,
the NumPy forward (``forward``) and the ONNX lowering (``to_onnx``). Nothing else in darkcsp knows about a
particular layer type, except the detection post-processing that head layers expose (``detections``).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..cfg import Section
from ..errors import CfgError

if TYPE_CHECKING:  # pragma: no cover
    from ..dialect import Dialect
    from ..onnx.builder import OnnxGraph

Shape = Tuple[int, int, int]  # (C, H, W) per image, as Darknet's out_c, out_h, out_w
Weights = Dict[str, np.ndarray]

#: index used in ``Layer.inputs`` for the network input (the [net] image)
NETWORK_INPUT = -1

#: options parse_network_cfg_custom reads for every layer (training/GPU scheduling; dontload handled apart)
COMMON_OPTIONS = ("dontloadscales", "stopbackward", "train_only_bn", "onlyforward", "clip", "dont_update",
                  "burnin_update", "learning_rate", "stream", "wait_stream")


class BuildContext:
    """What a layer may look at while it is built: [net], the dialect and the layers before it."""

    def __init__(self, net: "NetConfig", dialect: "Dialect", file: str):
        self.net = net
        self.dialect = dialect
        self.file = file
        self.layers: List["Layer"] = []

    def shape_of(self, index: int) -> Shape:
        return self.net.input_shape if index == NETWORK_INPUT else self.layers[index].out_shape

    def outputs_of(self, index: int) -> int:
        return self.net.inputs if index == NETWORK_INPUT else self.layers[index].outputs

    def resolve(self, section: Section, key: str, ref: int, index: int) -> int:
        """Darknet's layer reference rule: negative = relative to the current layer, else absolute."""
        target = index + ref if ref < 0 else ref
        if target < 0 or target >= index:
            where = "itself" if target == index else ("a later layer" if target > index else "before layer 0")
            raise section.error(
                f"{key}={ref} in layer {index} refers to {where} (resolved index {target}); "
                + (f"only layers 0..{index - 1} can be referenced" if index else "layer 0 has no earlier layer"),
                key)
        return target


class NetConfig:
    """The [net] section's options that matter at inference."""

    def __init__(self, section: Section, width: Optional[int] = None, height: Optional[int] = None):
        self.section = section
        for flag, value in (("width", width), ("height", height)):
            if value is not None and value <= 0:  # an override (--width/--height), not the cfg's value
                raise CfgError(f"--{flag} {value}: the network size must be positive")
        self.width = width if width is not None else section.int("width", 0)
        self.height = height if height is not None else section.int("height", 0)
        self.channels = section.int("channels", 0)
        default_inputs = self.width * self.height * self.channels
        self.inputs = section.int("inputs", default_inputs) if section.has("inputs") else default_inputs
        self.letter_box = section.int("letter_box", 0)
        # Everything else in [net] is training/augmentation; Darknet never reports it as unused.
        for opt in section.options.values():
            opt.used = True
        if self.inputs <= 0 and not (self.width and self.height and self.channels):
            raise section.error("No input parameters supplied: set width, height and channels (or inputs) in [net]")
        for key, value in (("width", self.width), ("height", self.height), ("channels", self.channels)):
            if value < 0:
                raise section.error(f"{key}={value} must be positive", key)
        if self.width and self.height and self.channels:
            self.input_shape: Shape = (self.channels, self.height, self.width)
        else:  # non-image network (connected layers only)
            self.input_shape = (self.inputs, 1, 1)


class Layer:
    """Base class; see the module docstring. Subclasses set ``type`` and implement ``setup``."""

    #: Darknet's canonical section name (``convolutional``, ``maxpool``, ...)
    type: ClassVar[str] = ""
    #: other section names Darknet maps to the same layer type (``conv``, ``max``, ...)
    aliases: ClassVar[Tuple[str, ...]] = ()
    #: True for detection heads ([yolo], [Gaussian_yolo], [region], [detection]): network outputs
    is_head: ClassVar[bool] = False
    #: True for layers Darknet never runs at inference output ([cost]); skipped when picking the output
    is_training_only: ClassVar[bool] = False
    #: options Darknet reads for this layer that only matter for training: accepted silently (Darknet never
    #: reports them as "Unused field"), ignored at inference
    training_options: ClassVar[Tuple[str, ...]] = ()
    #: floats of scratch memory per image the NumPy forward allocates besides its output (a padded copy of the
    #: input, ...); set in ``setup`` when large, so that the graph's memory check refuses absurd sizes up front
    workspace: int = 0

    def __init__(self, section: Section, index: int, ctx: BuildContext):
        self.section = section
        self.index = index
        self.dialect = ctx.dialect
        self.inputs: List[int] = [index - 1 if index > 0 else NETWORK_INPUT]
        self.in_shape: Shape = ctx.shape_of(self.inputs[0])
        self.out_shape: Shape = self.in_shape
        self.bflops: float = 0.0
        # Options Darknet's parser reads for every layer; only dontload matters at inference (the layer
        # then reads nothing from .weights and keeps its initial values).
        self.dontload = bool(section.int("dontload", 0))
        for key in COMMON_OPTIONS + self.training_options:
            if key in section.options:
                section.options[key].used = True
        self.setup(section, ctx)

    # ----- to implement ------------------------------------------------------------------------
    def setup(self, section: Section, ctx: BuildContext) -> None:
        """Read options (recording them), set ``inputs``, ``out_shape`` and ``bflops``."""

    def weight_arrays(self) -> List[Tuple[str, Tuple[int, ...]]]:
        """(name, shape) of each float32 array this layer reads from .weights, in file order."""
        return []

    def init_weights(self, rng: np.random.Generator) -> Weights:
        """Darknet-like initial values for a network run without a weights file."""
        return {name: np.zeros(shape, np.float32) for name, shape in self.weight_arrays()}

    def forward(self, xs: Sequence[np.ndarray], w: Weights) -> np.ndarray:
        """NumPy forward for a batch: ``xs`` holds the outputs of ``self.inputs`` as (N, C, H, W)."""
        raise NotImplementedError(f"[{self.type}] has no NumPy forward yet")

    def to_onnx(self, g: "OnnxGraph", xs: Sequence[str], w: Weights) -> str:
        """Emit ONNX nodes computing this layer from tensors ``xs``; return the output tensor name."""
        raise NotImplementedError(f"[{self.type}] has no ONNX lowering yet")

    # ----- derived -----------------------------------------------------------------------------
    @property
    def outputs(self) -> int:
        c, h, w = self.out_shape
        return c * h * w

    @property
    def params(self) -> int:
        # math.prod on Python ints: np.prod would wrap around in int64 for absurd cfg sizes
        return sum(math.prod(int(n) for n in shape) for _, shape in self.weight_arrays())

    def describe(self) -> str:
        """Short text for the summary table's 'filters / size' column."""
        return ""

    def error(self, message: str, key: Optional[str] = None) -> CfgError:
        return self.section.error(f"layer {self.index}: {message}", key)

    def __repr__(self) -> str:
        return f"<{self.type} #{self.index} {self.in_shape}->{self.out_shape}>"


def conv_out_size(size_in: int, pad: int, kernel: int, stride: int) -> int:
    """Darknet's (W + 2p - k) / s + 1 with C integer division (truncates toward zero)."""
    num = size_in + 2 * pad - kernel
    return int(num / stride) + 1 if num >= 0 else -((-num) // stride) + 1
