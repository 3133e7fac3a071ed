"""How a 2-D convolution is lowered, per target runtime (``ExportOptions.target``).

The ``generic`` target emits one ONNX ``Conv`` per convolution: the portable graph every runtime reads and the
default of ``darkcsp convert``. The two other targets rewrite some convolutions into an equivalent subgraph that
the named runtime executes faster on a CPU; the backends pick theirs (``onnxruntime`` -> ``onnxruntime``;
``opencv-classic``, and ``opencv`` on OpenCV 4.x -> ``opencv``; ``opencv`` on OpenCV 5's new engine ->
``generic``). Each rewrite computes the same convolution; only float rounding differs (Winograd: about 1e-5 of
the output's range, see tests/onnx/test_conv.py).

* ``onnxruntime``: onnxruntime's CPU convolution (MLAS, NCHWc) is a direct convolution running at about the
  machine's sgemm speed, with no Winograd, whereas OpenCV owes most of its 3x3 speed to Winograd kernels.
  Large 3x3 stride-1 convolutions are therefore written as Winograd F(4x4, 3x3) in plain ONNX operators
  (``winograd_f4x4_3x3``): 36 multiplies per 4x4 output tile instead of 144.
* ``opencv`` (OpenCV 4.x, and OpenCV 5's classic engine, which keeps OpenCV 4's layers): their 1x1 ``Conv``
  runs at a third of their ``MatMul`` speed (72 vs ~150 GFLOP/s on a 64->64 1x1 convolution at 104x104), so
  1x1 convolutions become a ``MatMul``. They already run 3x3 convolutions with Winograd; nothing else changes.
  OpenCV 5's new engine has a fast 1x1 ``Conv``: there the rewrite costs 20-40% (csdarknet53-omega 224:
  67.9 -> 95.4 ms), so it gets the generic graph.

Measured on the 2-core AMD EPYC of docs/bench.md (median network latency, 2 threads, ``darkcsp bench`` with the
generic graph as ``onnxruntime=FILE`` or in tools, generic -> target graph):

=============================  ===========================  ==================
model                          runtime                      generic -> target
=============================  ===========================  ==================
yolov4-tiny 416                onnxruntime 1.32             33.5 -> 30.2 ms
yolov3-tiny 416                onnxruntime 1.32             28.1 -> 27.5 ms
csresnext50-panet-spp 512      onnxruntime 1.32             370 -> 298 ms
yolov4-tiny 416                OpenCV 5.0 classic engine    32.2 -> 30.2 ms
yolov3-tiny 416                OpenCV 5.0 classic engine    29.0 -> 27.5 ms
csresnext50-panet-spp 512      OpenCV 5.0 classic engine    580 -> 377 ms
csdarknet53-omega 224          OpenCV 5.0 classic engine    98.8 -> 83.9 ms
yolov4-csp-swish 256           OpenCV 5.0 classic engine    182 -> 164 ms
=============================  ===========================  ==================

The other direction does not pay: Winograd subgraphs on OpenCV bypass its own Winograd (yolov4-tiny on the new
engine: 49 -> 58 ms), and onnxruntime's NCHWc 1x1 ``Conv`` is faster than its ``MatMul``
(csresnext50-panet-spp 512: 353 vs 376 ms).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .builder import OnnxGraph

TARGETS = ("generic", "onnxruntime", "opencv")

# Winograd F(4x4, 3x3) (Lavin & Gray 2016, interpolation points 0, +-1, +-2 and infinity): for a 6x6 input
# tile d and a 3x3 kernel g, the 4x4 output tile of the correlation is AT [(G g GT) * (BT d B)] A.
_BT = np.array([[4, 0, -5, 0, 1, 0],
                [0, -4, -4, 1, 1, 0],
                [0, 4, -4, -1, 1, 0],
                [0, -2, -1, 2, 1, 0],
                [0, 2, -1, -2, 1, 0],
                [0, 4, 0, -5, 0, 1]], np.float64)
_G = np.array([[1 / 4, 0, 0],
               [-1 / 6, -1 / 6, -1 / 6],
               [-1 / 6, 1 / 6, -1 / 6],
               [1 / 24, 1 / 12, 1 / 6],
               [1 / 24, -1 / 12, 1 / 6],
               [0, 0, 1]], np.float64)
_AT = np.array([[1, 1, 1, 1, 1, 0],
                [0, 1, -1, 2, -2, 0],
                [0, 1, 1, 4, 4, 0],
                [0, 1, -1, 8, -8, 1]], np.float64)
TILE = 4  # output tile side m
ALPHA = TILE + 2  # input tile side m + r - 1

#: Winograd only where it measured faster (tools/bench_conv.py for single layers, ``darkcsp bench`` for whole
#: networks; onnxruntime 1.32, 2 threads). Single layers: 128->128 at 52x52 1.4-1.6x, 256->256 at 26x26 1.3-1.5x,
#: 384->256 at 26x26 1.2-1.5x, 256->256 at 64x64 1.6-2.0x; but 64->64 at 104x104 0.9-1.1x (the transforms cost
#: as much as the saved multiplies when the channel counts are small) and 256->512 at 13x13 0.8-0.9x (13x13 pads
#: to 16x16 tiles: +51% work). Inside a network each rewritten layer also pays fixed costs (eight nodes, layout
#: reorders around them), which small layers do not recover: yolov4-tiny gains 1.072x with its 128->128 26x26
#: convolutions (0.2 GFLOP each) left direct, 1.067x with them rewritten (within noise, and left direct the model
#: is 3.5 MB smaller). Hence three conditions.
WINOGRAD_MIN_CHANNELS = 128
WINOGRAD_MAX_TILE_WASTE = 1.25
WINOGRAD_MIN_GFLOP = 0.3  # of the direct convolution: 2 * 9 * cin * cout * h * w


def tile_waste(h: int, w: int) -> float:
    """Work of the padded 4x4 tiling relative to the h x w output."""
    return (-(-h // TILE) * TILE) * (-(-w // TILE) * TILE) / float(h * w)


def winograd_pays(cin: int, cout: int, h: int, w: int) -> bool:
    """Whether onnxruntime runs this 3x3 stride-1 convolution faster as Winograd F(4x4, 3x3) (measured rule)."""
    return (min(cin, cout) >= WINOGRAD_MIN_CHANNELS and tile_waste(h, w) <= WINOGRAD_MAX_TILE_WASTE
            and 18.0 * cin * cout * h * w >= WINOGRAD_MIN_GFLOP * 1e9)


def lower_conv(g: "OnnxGraph", x: str, weights: np.ndarray, bias: np.ndarray, *, in_hw: Sequence[int],
               strides: Sequence[int], pads: Sequence[int], dilation: int, groups: int) -> str:
    """Emit the convolution ``x * weights + bias`` (weights (out, in/groups, k, k), pads [top, left, bottom,
    right]) the way ``g.target`` runs fastest; return the output name. ``in_hw`` is the static input size."""
    cout, cin_g, k, _ = weights.shape
    h, w = int(in_hw[0]), int(in_hw[1])
    static = not g.dynamic_size and g.float_dtype == np.float32  # no rewrite in a float16 graph
    plain = groups == 1 and tuple(strides) == (1, 1)
    if static and plain and g.target == "opencv" and k == 1 and not any(pads):
        return conv1x1_matmul(g, x, weights, bias, h, w)
    if (static and plain and g.target == "onnxruntime" and k == 3 and dilation == 1 and list(pads) == [1, 1, 1, 1]
            and winograd_pays(cin_g, cout, h, w)):
        return winograd_f4x4_3x3(g, x, weights, bias, h, w)
    return g.op("Conv", [x, g.const(np.asarray(weights, np.float32), "conv_w"),
                         g.const(np.asarray(bias, np.float32), "conv_b")],
                kernel_shape=[k, k], strides=list(strides), pads=list(pads), dilations=[dilation] * 2, group=groups)


def conv1x1_matmul(g: "OnnxGraph", x: str, weights: np.ndarray, bias: np.ndarray, h: int, w: int) -> str:
    """A 1x1, stride 1 convolution (weights (out, in, 1, 1)) as Reshape -> MatMul -> Add -> Reshape."""
    cout, cin = weights.shape[:2]
    flat = g.reshape(x, [0, cin, h * w], "flat")
    y = g.op("MatMul", [g.const(np.asarray(weights, np.float32).reshape(cout, cin), "conv_w"), flat])
    y = g.op("Add", [y, g.const(np.asarray(bias, np.float32).reshape(cout, 1), "conv_b")])
    return g.reshape(y, [0, cout, h, w], "conv")


def winograd_f4x4_3x3(g: "OnnxGraph", x: str, weights: np.ndarray, bias: np.ndarray, h: int, w: int) -> str:
    """A 3x3, stride 1, pad 1 convolution as Winograd F(4x4, 3x3) in ONNX operators.

    1. input transform BT d B of every 6x6 tile (stride 4): a depthwise ``Conv`` with 36 fixed 6x6 kernels per
       channel -> (N, cin*36, th, tw), channel-major;
    2. ``Transpose`` to transform-point-major (onnxruntime fuses it into the next MatMul) and one batched
       ``MatMul`` with the transformed weights U = G g GT, (36, cout, cin) -> (N, 36, cout, tiles);
    3. output transform AT m A as one ``MatMul`` (16, 36) over the 36 points, whose result is already in
       ``DepthToSpace`` (DCR) channel order -> (N, cout, 4 th, 4 tw); a ``Slice`` drops the padded tiles.
    U is 36/9 = 4x the size of the kernel: the model grows by 3x these layers' weights (yolov4-tiny 24 -> 48 MB,
    csresnext50-panet-spp 228 -> 614 MB)."""
    cout, cin = weights.shape[:2]
    th, tw = -(-h // TILE), -(-w // TILE)
    tiles = th * tw
    # tile t reads padded rows 4t .. 4t+5 (pad 1 on top); the bottom/right padding completes the last tile
    pad_b, pad_r = (th - 1) * TILE + ALPHA - h - 1, (tw - 1) * TILE + ALPHA - w - 1
    k_in = np.einsum("pi,qj->pqij", _BT, _BT).reshape(ALPHA * ALPHA, 1, ALPHA, ALPHA)
    u = np.einsum("ai,ocij,bj->aboc", _G, np.asarray(weights, np.float64), _G).reshape(ALPHA * ALPHA, cout, cin)
    a_out = np.einsum("pa,qb->pqab", _AT, _AT).reshape(TILE * TILE, ALPHA * ALPHA)

    v = g.op("Conv", [x, g.const(np.tile(k_in, (cin, 1, 1, 1)), "winograd_bt")], kernel_shape=[ALPHA, ALPHA],
             strides=[TILE, TILE], pads=[1, 1, pad_b, pad_r], group=cin)
    v = g.reshape(v, [0, cin, ALPHA * ALPHA, tiles], "winograd_v")
    v = g.op("Transpose", [v], perm=[0, 2, 1, 3])
    m = g.op("MatMul", [g.const(u, "winograd_u"), v])
    m = g.reshape(m, [0, ALPHA * ALPHA, cout * tiles], "winograd_m")
    y = g.op("MatMul", [g.const(a_out, "winograd_at"), m])
    y = g.reshape(y, [0, TILE * TILE * cout, th, tw], "winograd_y")
    y = g.op("DepthToSpace", [y], blocksize=TILE, mode="DCR")
    if (th * TILE, tw * TILE) != (h, w):
        y = g.slice(y, [0, 0], [h, w], [2, 3])
    return g.op("Add", [y, g.const(np.asarray(bias, np.float32).reshape(1, cout, 1, 1), "conv_b")])
