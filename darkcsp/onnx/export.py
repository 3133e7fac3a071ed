"""Lowering of a Model (graph + weights) to an ONNX ModelProto: the driver.

Every layer emits its own nodes (``Layer.to_onnx``); this module wires them together, names the graph
outputs ``layer_<i>`` (0-based Darknet index, the same arrays ``Model.forward`` returns), adds the optional
box decoding (``Head.onnx_decode``) / NMS outputs, hands the graph to the optimiser (``darkcsp.onnx.optimize``:
no Identity chains, constants folded, dead nodes removed), then runs ONNX's checker (``full_check``) and
shape inference.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Set, Tuple

import numpy as np
import onnx
from onnx import TensorProto, helper

from ..errors import DarkcspError, UnsupportedError
from ..layers.base import NETWORK_INPUT
from ..layers import LAYER_CLASSES
from .builder import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET, OnnxGraph
from .conv import TARGETS
from .optimize import apply_rename, optimize

__all__ = ["ExportOptions", "ExportInfo", "export_model", "model_bytes", "optimize", "DYNAMIC_SIZE_TYPES",
           "INPUT_NAME", "BOXES_NAME", "SELECTED_NAME"]

log = logging.getLogger("darkcsp")

INPUT_NAME = "input"
BOXES_NAME = "boxes"
SELECTED_NAME = "selected_indices"

#: section types whose lowering is independent of the spatial size (``Layer.size_agnostic``: no literal H/W
#: in a Reshape, Resize by scales, ...), for documentation; pjreddie's [shortcut] is the exception (it
#: resamples with literal strides). A network with any other layer type ([region], [reorg], [softmax],
#: [connected], ...: their lowerings reshape with literal sizes) keeps its cfg size even when a dynamic size
#: is asked for, and so does any network exported with box decoding (the grid is built for the cfg size).
DYNAMIC_SIZE_TYPES = frozenset(cls.type for cls in LAYER_CLASSES if cls.size_agnostic)


def _size_agnostic(layer, decode: bool = False) -> bool:
    # a head's box decoding builds its cell grid for the cfg size
    return layer.size_agnostic and not (decode and layer.is_head)


@dataclass(frozen=True)
class ExportOptions:
    """How to lower a model. Hashable: backends cache exported models per (model, options)."""
    opset: int = DEFAULT_OPSET
    #: add ``boxes`` (N, boxes, 4+1+classes): Darknet's box decoding, relative to the network input
    decode: bool = False
    #: add ONNX NonMaxSuppression on the decoded boxes (implies decode); output ``selected_indices`` (M, 3)
    nms: bool = False
    nms_iou: float = 0.45
    nms_score: float = 0.25
    nms_max_per_class: int = 100
    #: symbolic batch axis "N" (otherwise ``batch``)
    dynamic_batch: bool = False
    #: symbolic H/W where every layer allows it (see DYNAMIC_SIZE_TYPES); fixed (with a warning) otherwise
    dynamic_size: bool = False
    batch: int = 1
    #: weights and computation in float16; the graph input and outputs stay float32 (Cast at the edges)
    fp16: bool = False
    #: explicit output layers (default: the model's output layers, the heads)
    outputs: Optional[Tuple[int, ...]] = None
    #: expose every layer's output as ``layer_<i>`` (debugging: compare layer by layer)
    all_layers: bool = False
    #: run onnx.checker (full_check) on the result
    check: bool = True
    #: the runtime the graph is tuned for: "generic" (one Conv per convolution), "onnxruntime" (large 3x3
    #: convolutions as Winograd F(4x4, 3x3)) or "opencv" (1x1 convolutions as MatMul); see darkcsp.onnx.conv
    target: str = "generic"

    def __post_init__(self):
        if self.outputs is not None and not isinstance(self.outputs, tuple):
            object.__setattr__(self, "outputs", tuple(int(i) for i in self.outputs))
        if not MIN_OPSET <= self.opset <= MAX_OPSET:
            raise UnsupportedError(f"opset {self.opset} is not supported: choose {MIN_OPSET}..{MAX_OPSET} "
                                   f"(default {DEFAULT_OPSET})")
        if self.batch < 1:
            raise DarkcspError(f"batch must be >= 1, got {self.batch}")
        if self.target not in TARGETS:
            raise UnsupportedError(f"unknown ONNX target '{self.target}': choose from {', '.join(TARGETS)}")


@dataclass
class ExportInfo:
    """What an export produced (for the CLI summary and the backends)."""
    outputs: Dict[int, str] = field(default_factory=dict)  # layer index -> graph output name
    output_shapes: Dict[str, Tuple] = field(default_factory=dict)
    extra_outputs: List[str] = field(default_factory=list)  # boxes / selected_indices
    dynamic_size: bool = False
    nodes: int = 0
    initializers: int = 0
    params: int = 0


def _dim(value, symbolic: Optional[str]):
    return symbolic if symbolic is not None else int(value)


def export_model(model, options: Optional[ExportOptions] = None, **kwargs) -> Tuple[onnx.ModelProto, ExportInfo]:
    """Lower ``model`` (darkcsp.Model) to ONNX; return (ModelProto, ExportInfo)."""
    options = replace(options or ExportOptions(), **kwargs) if kwargs else (options or ExportOptions())
    if options.nms and not options.decode:
        options = replace(options, decode=True)
    graph = model.graph
    layers = graph.layers
    info = ExportInfo()

    static_types = sorted({l.type for l in layers if not _size_agnostic(l, options.decode)})
    dynamic_size = options.dynamic_size and not static_types
    if options.dynamic_size and static_types:
        log.warning("dynamic input size not possible with [%s]: the ONNX model keeps %dx%d",
                    "], [".join(static_types), graph.net.width, graph.net.height)
    info.dynamic_size = dynamic_size

    g = OnnxGraph(options.opset, np.float16 if options.fp16 else np.float32,
                  dynamic_batch=options.dynamic_batch, dynamic_size=dynamic_size, batch=options.batch,
                  target=options.target)
    g.reserve(INPUT_NAME)
    g.reserve(BOXES_NAME)
    g.reserve(SELECTED_NAME)

    if options.all_layers:
        wanted = [l.index for l in layers]  # same keys as Model.forward(all_layers=True)
    elif options.outputs is not None:
        wanted = list(options.outputs)
    else:
        wanted = list(graph.output_indices())
    for i in wanted:
        if not 0 <= i < len(layers):
            raise DarkcspError(f"output layer {i} does not exist (the network has layers 0..{len(layers) - 1})")
    for i in wanted:
        g.reserve(f"layer_{i}")

    c, h, w = graph.input_shape
    batch_sym = "N" if options.dynamic_batch else None
    in_dims = [_dim(options.batch, batch_sym), c, _dim(h, "H" if dynamic_size else None),
               _dim(w, "W" if dynamic_size else None)]
    graph_input = helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, in_dims)

    names: Dict[int, str] = {}
    if options.fp16:
        g.prefix = "in_"
        names[NETWORK_INPUT] = g.op("Cast", [INPUT_NAME], to=TensorProto.FLOAT16)
    else:
        names[NETWORK_INPUT] = INPUT_NAME

    # Lower only what the wanted outputs need.
    needed: Set[int] = set()
    stack = list(wanted) + ([l.index for l in layers if l.is_head] if options.decode else [])
    while stack:
        i = stack.pop()
        if i in needed or i < 0:
            continue
        needed.add(i)
        stack.extend(layers[i].inputs)

    for layer in layers:
        if layer.index not in needed:
            continue
        g.prefix = f"l{layer.index}_"
        xs = [names[i] for i in layer.inputs]
        try:
            out = layer.to_onnx(g, xs, model.weights[layer.index])
        except NotImplementedError as e:
            raise UnsupportedError(f"layer {layer.index} [{layer.type}]: {e}",
                                   file=layer.section.file, line=layer.section.line) from None
        if not isinstance(out, str):
            raise TypeError(f"layer {layer.index} [{layer.type}].to_onnx returned {out!r}, not a tensor name")
        names[layer.index] = out

    outputs: List[onnx.ValueInfoProto] = []
    node_outputs = {o for n in g.nodes for o in n.output}
    rename: Dict[str, str] = {}
    g.prefix = "out_"
    for i in wanted:
        t = names[i]
        out_name = f"layer_{i}"
        if options.fp16:
            g.op("Cast", [t], outputs=[out_name], to=TensorProto.FLOAT)
        elif t in node_outputs and t not in rename:
            rename[t] = out_name
        else:  # network input, an initializer, or a tensor already output under another layer's name
            g.op("Identity", [rename.get(t, t)], outputs=[out_name])
        info.outputs[i] = out_name
        outputs.append(helper.make_tensor_value_info(out_name, TensorProto.FLOAT, None))

    if options.decode:
        heads = [l for l in layers if l.is_head]
        if not heads:
            raise UnsupportedError("--decode needs a detection head ([yolo], [Gaussian_yolo], [region], "
                                   "[detection]); this network has none")
        parts = []
        for head in heads:
            g.prefix = f"l{head.index}_decode_"
            parts.append(head.onnx_decode(g, names[head.index], graph.net.width, graph.net.height))
        g.prefix = "decode_"
        boxes = g.concat(parts, axis=1)
        if options.fp16:
            boxes = g.op("Cast", [boxes], to=TensorProto.FLOAT)
        g.op("Identity", [boxes], outputs=[BOXES_NAME])
        outputs.append(helper.make_tensor_value_info(BOXES_NAME, TensorProto.FLOAT, None))
        info.extra_outputs.append(BOXES_NAME)
        if options.nms:
            _add_nms(g, BOXES_NAME, options)
            outputs.append(helper.make_tensor_value_info(SELECTED_NAME, TensorProto.INT64, [None, 3]))
            info.extra_outputs.append(SELECTED_NAME)

    nodes = apply_rename(g.nodes, rename)
    out_names = [o.name for o in outputs]
    nodes, inits = optimize(nodes, g.initializers, out_names, opset=options.opset)

    total_bytes = sum(len(t.raw_data) for t in inits)
    if total_bytes > 2 ** 31 - 2 ** 24:
        raise UnsupportedError(f"the ONNX model would hold {total_bytes / 2 ** 30:.2f} GiB of weights, above "
                               f"protobuf's 2 GiB limit (ONNX external data is not supported yet; try --fp16)")
    onnx_graph = helper.make_graph(nodes, "darkcsp", [graph_input], outputs, inits)
    opset_ids = [helper.make_opsetid("", options.opset)]
    proto = helper.make_model(onnx_graph, opset_imports=opset_ids, producer_name="darkcsp",
                              producer_version=_version())
    proto.ir_version = helper.find_min_ir_version_for(opset_ids)
    proto.doc_string = f"darkcsp export of {graph.file}"
    meta = {"darkcsp.cfg": str(graph.file), "darkcsp.layers": str(len(layers)),
            "darkcsp.outputs": ",".join(f"{i}:{layers[i].type}" for i in wanted),
            "darkcsp.input": f"{INPUT_NAME} float32 NCHW RGB [0,1]",
            "darkcsp.net_size": f"{graph.net.width}x{graph.net.height}"}
    if options.decode:
        meta["darkcsp.boxes"] = "(N, boxes, 4+1+classes): x, y, w, h (centre, relative to the network input), " \
                                "objectness, per-class probability = objectness * class probability"
    helper.set_model_props(proto, meta)

    proto = _infer_output_shapes(proto)
    if options.dynamic_batch:  # inference loses the symbol through Reshape(-1, ...): every output is per image
        for o in proto.graph.output:
            dims = o.type.tensor_type.shape.dim
            if o.name != SELECTED_NAME and len(dims):
                dims[0].Clear()
                dims[0].dim_param = "N"
    for o in proto.graph.output:
        dims = tuple(d.dim_param if d.HasField("dim_param") else (d.dim_value if d.HasField("dim_value") else None)
                     for d in o.type.tensor_type.shape.dim)
        info.output_shapes[o.name] = dims
    if options.check:
        try:
            onnx.checker.check_model(proto, full_check=True)
        except onnx.checker.ValidationError as e:
            raise DarkcspError(f"the exported ONNX model fails onnx.checker: {e}") from e
    info.nodes = len(proto.graph.node)
    info.initializers = len(proto.graph.initializer)
    info.params = int(sum(np.prod(t.dims) for t in proto.graph.initializer))
    return proto, info


def _version() -> str:
    from .. import __version__
    return __version__


def _add_nms(g: OnnxGraph, boxes: str, options: ExportOptions) -> None:
    """ONNX NonMaxSuppression per (image, class) on the decoded class probabilities (objectness * class
    probability, Darknet's ``dets[i].prob``), boxes in centre format."""
    g.prefix = "nms_"
    coords = g.slice(boxes, [0], [4], [2])
    probs = g.slice(boxes, [5], [2 ** 62], [2])
    scores = g.op("Transpose", [probs], perm=[0, 2, 1])
    f32 = lambda v, hint: g.const(np.asarray([v], np.float32), hint, dtype=np.float32)  # noqa: E731
    g.op("NonMaxSuppression", [coords, scores, g.ints([options.nms_max_per_class], "max_per_class"),
                               f32(options.nms_iou, "iou_threshold"), f32(options.nms_score, "score_threshold")],
         outputs=[SELECTED_NAME], center_point_box=1)


def _infer_output_shapes(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Run ONNX shape inference (strict); copy the inferred output shapes into the graph outputs.

    Inference runs on a skeleton of the model whose large initializers (weights) are graph inputs of the
    same type and shape: the result is the same (only small constants such as Reshape shapes feed data
    propagation) without serialising the weights once more."""
    skeleton = onnx.ModelProto()
    skeleton.CopyFrom(proto) if len(proto.graph.initializer) == 0 else _copy_without_weights(proto, skeleton)
    try:
        inferred = onnx.shape_inference.infer_shapes(skeleton, check_type=True, strict_mode=True, data_prop=True)
    except Exception as e:
        raise DarkcspError(f"ONNX shape inference failed on the exported model: {e}") from e
    known = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    for o in proto.graph.output:
        v = known.get(o.name)
        if v is not None and v.type.tensor_type.HasField("shape"):
            o.type.tensor_type.shape.CopyFrom(v.type.tensor_type.shape)
    return proto


def _copy_without_weights(proto: onnx.ModelProto, out: onnx.ModelProto, limit: int = 1024) -> None:
    graph = proto.graph
    big = [t for t in graph.initializer if int(np.prod(t.dims)) > limit]
    small = [t for t in graph.initializer if int(np.prod(t.dims)) <= limit]
    inputs = list(graph.input) + [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in big]
    g = helper.make_graph(list(graph.node), graph.name, inputs, list(graph.output), small)
    out.CopyFrom(helper.make_model(g, opset_imports=list(proto.opset_import)))
    out.ir_version = proto.ir_version


def model_bytes(proto: onnx.ModelProto) -> bytes:
    return proto.SerializeToString()
