"""The contract every Darknet layer module fulfils.

A layer class owns, for one Darknet section type: option parsing with Darknet's defaults (``setup``), the
shape rule (``out_shape``), the .weights layout (``weight_arrays``), Darknet's parameter and BFLOPs counts,
the NumPy forward (``forward``) and the ONNX lowering (``to_onnx``), and the properties the rest of darkcsp
asks instead of looking at the type name: the cost analysis (``cio_compute``, ``cio_reads``, ``is_alias``), the
ONNX export (``size_agnostic``), the .weights conversion hooks (``weights_from_file`` / ``weights_to_file``,
``shares_weights_of``), INT8 export (``is_convolutional``). Detection heads derive from ``Head``, which declares
the decoding interface (``detections``, ``onnx_decode``, ``classes``, ``nms_kind``, ``prior_bias``). Nothing
outside ``darkcsp/layers`` switches on a layer's type name.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, ClassVar, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..cfg import Section
from ..errors import CfgError, UnsupportedError

if TYPE_CHECKING:  # pragma: no cover
    from ..dialect import Dialect
    from ..onnx.builder import OnnxGraph
    from .yolo import BoxSet

Shape = Tuple[int, int, int]  # (C, H, W) per image, as Darknet's out_c, out_h, out_w
Weights = Dict[str, np.ndarray]

#: index used in ``Layer.inputs`` for the network input (the [net] image)
NETWORK_INPUT = -1

#: Darknet's NMS_KIND enum values (darknet.h)
DEFAULT_NMS, GREEDY_NMS, DIOU_NMS = 0, 1, 2

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
    #: the ONNX lowering holds no literal spatial size (Resize by scales, per-channel constants, ...), so the
    #: export can leave H and W symbolic; checked at a second size by tests/onnx/test_export.py
    size_agnostic: bool = False
    #: the output is the input's buffer (no memory, no traffic of its own: [dropout], [empty])
    is_alias: ClassVar[bool] = False
    #: a [convolutional] layer (INT8 export keeps the ones feeding a head in float)
    is_convolutional: ClassVar[bool] = False
    #: Darknet's antialiasing= blur after the layer ([convolutional], [maxpool]): its buffer then holds the
    #: blurred map while the layer reports its stride-1 shape (layers referencing it refuse it)
    antialiasing: int = 0

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

    def prior_bias(self, channels: int) -> Optional[np.ndarray]:
        """Heads: initial biases for the ``channels`` outputs of the convolution feeding this head (random
        weights), or None to keep Darknet's zeros."""
        return None

    def weights_from_file(self, arrays: Weights, header) -> Weights:
        """Arrays as read from .weights (``weight_arrays`` order) -> the arrays the forward uses."""
        return arrays

    def weights_to_file(self, arrays: Weights, header) -> Weights:
        """The inverse of ``weights_from_file``, for writing a .weights file with ``header``."""
        return arrays

    @property
    def shares_weights_of(self) -> Optional[int]:
        """Index of the layer whose arrays this one uses instead of its own ([convolutional] share_index)."""
        return None

    def init_weights(self, rng: np.random.Generator) -> Weights:
        """Darknet-like initial values for a network run without a weights file."""
        return {name: np.zeros(shape, np.float32) for name, shape in self.weight_arrays()}

    def _init_weighted(self, rng: np.random.Generator, fan_in: float) -> Weights:
        """Darknet's init of a weighted layer: weights sqrt(2/fan_in)*U(-1,1), biases 0, BN scales 1, mean 0.

        Darknet initialises rolling_variance to 0 (its BN then divides by sqrt(1e-5)); we use 1 so that a
        random network stays usable (activations do not blow up layer after layer)."""
        out: Weights = {}
        for name, shape in self.weight_arrays():
            if name == "weights":
                out[name] = (math.sqrt(2.0 / fan_in) * rng.uniform(-1, 1, shape)).astype(np.float32)
            elif name in ("scales", "rolling_variance"):
                out[name] = np.ones(shape, np.float32)
            else:
                out[name] = np.zeros(shape, np.float32)
        return out

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

    @property
    def cio_compute(self) -> bool:
        """Counted by the paper's CIO (``darkcsp.analysis``): convolutions and poolings over windows."""
        return False

    def cio_reads(self, outputs_of: Callable[[int], int]) -> int:
        """Elements this layer reads from earlier feature maps (``darkcsp.analysis``); ``outputs_of(i)`` is the
        size of layer ``i``'s output (``NETWORK_INPUT``: the network input). Default: every input in full."""
        return 0 if self.is_alias else sum(outputs_of(i) for i in self.inputs)

    def describe(self) -> str:
        """Short text for the summary table's 'filters / size' column."""
        return ""

    def error(self, message: str, key: Optional[str] = None) -> CfgError:
        return self.section.error(f"layer {self.index}: {message}", key)

    def __repr__(self) -> str:
        return f"<{self.type} #{self.index} {self.in_shape}->{self.out_shape}>"


class Head(Layer):
    """A detection head ([yolo], [Gaussian_yolo], [region], [detection]): a network output decoded into boxes.

    Subclasses implement ``detections`` (Darknet's get_*_detections for one image) and, where the export can
    decode boxes, ``onnx_decode``."""

    is_head = True
    #: Darknet's detector takes nms_kind (and the class count of the names) from the last head of a kind that
    #: sets this ([yolo], [Gaussian_yolo], [region]; test_detector's loop), else from the network's last layer
    sets_detector_nms: ClassVar[bool] = True
    #: number of classes the head scores
    classes: int = 0
    #: NMS kind (DEFAULT_NMS, GREEDY_NMS, DIOU_NMS) and DIoU exponent of ``detector test``
    nms_kind: int = DEFAULT_NMS
    beta_nms: float = 0.6

    def detections(self, output: np.ndarray, net_w: int, net_h: int, image_w: int, image_h: int,
                   thresh: float, hier: float = 0.5, letter: bool = False) -> "BoxSet":
        """One image's output ((C, H, W) or (1, C, H, W)) -> Darknet's detection array for this head."""
        raise NotImplementedError(f"[{self.type}] has no decoding")

    def onnx_decode(self, g: "OnnxGraph", x: str, net_w: int, net_h: int) -> str:
        """Emit Darknet's box decoding: (N, boxes, 4+1+classes), boxes relative to the network input."""
        raise UnsupportedError(f"layer {self.index} [{self.type}] has no ONNX box decoding")

    def prior_bias(self, channels: int) -> Optional[np.ndarray]:
        """Initial biases for the convolution feeding this head: objectness and class logits at
        log(0.01/0.99) (probability ~0.01, the usual YOLO prior), box entries 0. None when ``channels`` does not
        match the head's layout (the head does not read a convolution's channels that way)."""
        layout = self.prior_layout()
        if layout is None or layout.size != channels:
            return None
        return np.where(layout, np.float32(math.log(0.01 / 0.99)), np.float32(0)).astype(np.float32)

    def prior_layout(self) -> Optional[np.ndarray]:
        """Per input channel: True on objectness/class entries, False on box entries (None: no prior)."""
        return None


def conv_out_size(size_in: int, pad: int, kernel: int, stride: int) -> int:
    """Darknet's (W + 2p - k) / s + 1 with C integer division (truncates toward zero)."""
    num = size_in + 2 * pad - kernel
    return int(num / stride) + 1 if num >= 0 else -((-num) // stride) + 1
