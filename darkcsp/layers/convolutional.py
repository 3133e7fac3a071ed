"""[convolutional] (alias [conv]): grouped/dilated/strided 2-D convolution, batch norm, activation.

Darknet's rules kept here (darknet-semantics.md §2.2, §3.1, §7):
* ``pad=1`` means padding = size//2 and overrides ``padding``; ``size=1`` forces ``dilation=1``;
  ``stride_x``/``stride_y`` default to ``stride``; default activation is **logistic**.
* Output size ``(W + 2p - k) // s + 1`` ignores dilation, while im2col pads by ``p*d`` with a dilated kernel.
  Where the two grids disagree Darknet's GEMM reads a mis-pitched buffer, so such layers are refused, as are
  1x1 convolutions that take Darknet's fast path (input fed straight to the GEMM) while asking for padding or
  a vertical stride it ignores (pjreddie: any stride).
* ``antialiasing=1|2``: the host convolution runs at stride 1, then a fixed depthwise blur with the original
  strides replaces its output; BFLOPs count only the host.
* ``share_index=k`` reads nothing from .weights and uses layer k's arrays (bound by the Model).
* ``xnor=1`` is parsed (shapes, params, BFLOPs/32) but refused at run time; ``binary=1`` follows the GPU build
  (weights binarised to sign(w)*mean|w| per filter; the CPU build ignores it).
* ``flipped=1`` stores the weights as a [(c/groups)*size*size][n] matrix.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, List, Optional, Sequence, Tuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..activations import activate, lower_activation, read_activation
from ..cfg import Section
from ..errors import UnsupportedError
from ..onnx.conv import lower_conv
from .base import BuildContext, Layer, Weights, conv_out_size

if TYPE_CHECKING:  # pragma: no cover
    from ..dialect import Dialect
    from ..onnx.builder import OnnxGraph

#: options Darknet parses for [convolutional] that only matter for training or the GPU (read so that they are
#: not reported as unused)
_TRAINING_ONLY = ("sway", "rotate", "stretch", "stretch_sway", "assisted_excitation", "coordconv", "stream",
                  "wait_stream", "dot", "angle", "grad_centr", "reverse", "deform", "bin_output")

# ----------------------------------------------------------------------------------------- kernels


def end_pad(size_in: int, pad: int, k: int, stride: int, dilation: int, size_out: int) -> int:
    """Zero padding needed after the input so that ``size_out`` windows fit.

    Equals ``pad`` except where Darknet's C-truncating size formula gives an output whose window runs past the
    padded input (kernel larger than the padded map): Darknet's im2col reads zeros there."""
    return max(pad, (size_out - 1) * stride + dilation * (k - 1) + 1 - size_in - pad)


def pad_hw(x: np.ndarray, pad_y: int, pad_x: int, end_y: Optional[int] = None,
           end_x: Optional[int] = None) -> np.ndarray:
    """Zero-pad the two last axes: ``pad_*`` before, ``end_*`` (default ``pad_*``) after."""
    end_y = pad_y if end_y is None else end_y
    end_x = pad_x if end_x is None else end_x
    if pad_y == end_y == 0 and pad_x == end_x == 0:
        return x
    n, c, h, w = x.shape
    xp = np.zeros((n, c, h + pad_y + end_y, w + pad_x + end_x), dtype=x.dtype)
    xp[:, :, pad_y:pad_y + h, pad_x:pad_x + w] = x
    return xp


#: bytes of im2col columns built at once: larger maps are convolved in bands of output rows, so that the
#: column buffer stays in cache between its copy and the GEMM (grouped convs, whose small per-group GEMMs are
#: memory-bound, gain most; dense convs keep larger bands so that each GEMM stays big)
IM2COL_BUDGET_GROUPED = 2 << 20
IM2COL_BUDGET_DENSE = 16 << 20


def im2col(xp: np.ndarray, k: int, sy: int, sx: int, d: int, oh: int, ow: int, groups: int = 1,
           row0: int = 0) -> np.ndarray:
    """Columns (N, G, Cg*k*k, oh*ow) of an already padded input, rows ordered [c][ky][kx] as Darknet's im2col.

    ``row0``/``oh`` select the band of output rows [row0, row0+oh)."""
    n, c, hp, wp = xp.shape
    if (row0 + oh - 1) * sy + d * (k - 1) >= hp or (ow - 1) * sx + d * (k - 1) >= wp:
        raise ValueError("im2col window runs past the padded input")  # guarded by the layer's geometry check
    s_n, s_c, s_h, s_w = xp.strides
    cg = c // groups
    view = as_strided(xp[:, :, row0 * sy:], shape=(n, groups, cg, k, k, oh, ow),
                      strides=(s_n, cg * s_c, s_c, d * s_h, d * s_w, sy * s_h, sx * s_w), writeable=False)
    return view.reshape(n, groups, cg * k * k, oh * ow)  # one copy, C order


#: output bytes per band of a 1x1 convolution (the epilogue then runs on cache-resident data)
OUT_BAND_BYTES = 1 << 20
#: ... but never fewer output pixels per GEMM than this
OUT_BAND_MIN = 2048


def conv2d(x: np.ndarray, w: np.ndarray, *, stride: Tuple[int, int] = (1, 1), pad: int = 0, dilation: int = 1,
           groups: int = 1, out_hw: Optional[Tuple[int, int]] = None,
           epilogue: Optional[Callable[[np.ndarray], np.ndarray]] = None) -> np.ndarray:
    """Cross-correlation of x (N,C,H,W) with w (n, C/groups, k, k) as (batched) sgemm.

    ``pad`` is the zero padding actually applied on every side (Darknet's im2col pads ``padding*dilation``).
    ``epilogue`` (bias, BN, activation) is applied to each band of output pixels, shaped (N, n, pixels), right
    after its GEMM while it is still in cache; it may work in place and must return the band.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    n_img, c, h, wd = x.shape
    n, cg, k, _ = w.shape
    sy, sx = stride
    d = dilation
    if out_hw is None:
        out_hw = ((h + 2 * pad - d * (k - 1) - 1) // sy + 1, (wd + 2 * pad - d * (k - 1) - 1) // sx + 1)
    oh, ow = out_hw
    pixels = oh * ow
    m = n // groups
    end_y = end_pad(h, pad, k, sy, d, oh)
    end_x = end_pad(wd, pad, k, sx, d, ow)
    if k == 1 and pad == 0 and end_y == end_x == 0:
        # 1x1: no im2col, just a (strided) view of the input as the column matrix
        xs = x if sy == 1 and sx == 1 else x[:, :, :(oh - 1) * sy + 1:sy, :(ow - 1) * sx + 1:sx]
        cols = xs.reshape(n_img, groups, cg, pixels)
        wg = w.reshape(groups, m, cg)
        step = max(OUT_BAND_MIN, OUT_BAND_BYTES // (4 * n_img * n)) if epilogue is not None else pixels

        def gemm(p0: int, p1: int) -> np.ndarray:
            return np.matmul(wg, cols[..., p0:p1])
    else:
        xp = pad_hw(x, pad, pad, end_y, end_x)
        kk = cg * k * k
        wg = w.reshape(groups, m, kk)
        budget = IM2COL_BUDGET_GROUPED if groups > 1 else IM2COL_BUDGET_DENSE
        step = max(1, budget // (4 * n_img * groups * kk * ow)) * ow

        def gemm(p0: int, p1: int) -> np.ndarray:
            return np.matmul(wg, im2col(xp, k, sy, sx, d, (p1 - p0) // ow, ow, groups, row0=p0 // ow))
    if step >= pixels:
        y = gemm(0, pixels).reshape(n_img, n, pixels)
        if epilogue is not None:
            y = epilogue(y)
        return y.reshape(n_img, n, oh, ow)
    y = np.empty((n_img, n, pixels), np.float32)
    for p0 in range(0, pixels, step):
        p1 = min(pixels, p0 + step)
        band = gemm(p0, p1).reshape(n_img, n, p1 - p0)
        y[..., p0:p1] = band if epilogue is None else epilogue(band)
    return y.reshape(n_img, n, oh, ow)


def _activate_inplace(y: np.ndarray, name: str, layer_type: str) -> np.ndarray:
    """``activate`` with in-place fast paths for the common piecewise-linear cases (same float results)."""
    if name == "linear":
        return y
    if name in ("leaky", "revleaky"):
        return np.maximum(y, y * np.float32(0.1), out=y)
    if name == "relu":
        return np.maximum(y, np.float32(0), out=y)  # = Darknet's x*(x>0) for every finite x (up to -0.0)
    return activate(y, name, layer_type)


def binarize_weights(w: np.ndarray) -> np.ndarray:
    """Darknet's binarize_weights: per filter, sign(w) * mean(|w|) (w > 0 -> +mean, else -mean)."""
    flat = w.reshape(w.shape[0], -1)
    mean = np.abs(flat).mean(axis=1, dtype=np.float32, keepdims=True)
    return np.where(flat > 0, mean, -mean).astype(np.float32).reshape(w.shape)


def fold_batch_norm(dialect: "Dialect", weights: np.ndarray, biases: np.ndarray, scales: np.ndarray,
                    mean: np.ndarray, variance: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Darknet's fuse_conv_batchnorm, in float64: w' = w*s/den, b' = b - s*mean/den; returns float64 arrays."""
    den = dialect.bn_denominator(variance, np.float64)
    f = np.asarray(scales, np.float64) / den
    shape = (-1,) + (1,) * (weights.ndim - 1)
    w = np.asarray(weights, np.float64) * f.reshape(shape)
    b = np.asarray(biases, np.float64) - f * np.asarray(mean, np.float64)
    return w, b


def batch_norm_bias(dialect: "Dialect", y: np.ndarray, w: Weights, batch_normalize: bool) -> np.ndarray:
    """Darknet's unfused BN (``dialect.batch_norm``: divide by the denominator), then scales and biases."""
    shape = (1, -1) + (1,) * (y.ndim - 2)
    if batch_normalize:
        n = y.shape[1]
        y = dialect.batch_norm(y, w.get("rolling_mean", np.zeros(n, np.float32)),
                               w.get("rolling_variance", np.zeros(n, np.float32)), axis=1)
        y *= np.asarray(w.get("scales", np.ones(n, np.float32)), np.float32).reshape(shape)
    if "biases" in w:  # pjreddie's [batchnorm] has none
        y += np.asarray(w["biases"], np.float32).reshape(shape)
    return y


# ----------------------------------------------------------------------------------------- layer
class Convolutional(Layer):
    type = "convolutional"
    size_agnostic = True
    is_convolutional = True
    aliases = ('conv',)

    #: fold BN into the weights (in float64, as Darknet's detector path does) in the NumPy forward. Measured
    #: against the unfused goldens: max deviation 4e-6 per layer on the zoo cases, every case within its
    #: tolerance; it saves the BN passes over the output. False = Darknet's unfused (divide) path.
    fold_bn = True
    #: (key, bound arrays, weights, bias) of the last ``_prepared`` call
    _cache: Optional[tuple] = None

    def setup(self, section: Section, ctx: BuildContext) -> None:
        ext = ctx.dialect.conv_extended_options
        c, h, w = self.in_shape
        self.filters = section.int("filters", 1)
        self.size = section.int("size", 1)
        groups = section.int("groups", 1)
        if ext:
            self.stride_x = section.int("stride_x", -1)
            self.stride_y = section.int("stride_y", -1)
            if self.stride_x < 1 or self.stride_y < 1:
                stride = section.int("stride", 1)
                self.stride_x = stride if self.stride_x < 1 else self.stride_x
                self.stride_y = stride if self.stride_y < 1 else self.stride_y
            self.dilation = section.int("dilation", 1)
            self.antialiasing = section.int("antialiasing", 0)
        else:
            self.stride_x = self.stride_y = section.int("stride", 1)
            self.dilation = 1
            self.antialiasing = 0
        if self.size == 1:
            self.dilation = 1
        pad = section.int("pad", 0)
        self.padding = section.int("padding", 0)
        if pad:
            self.padding = self.size // 2
        self.activation = read_activation(section, "convolutional", "logistic")
        self.batch_normalize = section.int("batch_normalize", 0)
        if ext and section.int("cbn", 0):
            self.batch_normalize = 2
        self.binary = section.int("binary", 0)
        self.xnor = section.int("xnor", 0)
        self.flipped = section.int("flipped", 0)
        self.dontloadscales = section.int("dontloadscales", 0)
        if ext:
            for key in _TRAINING_ONLY:
                if section.has(key):
                    section.str(key)
        self.groups = 1 if (self.xnor or groups < 1) else groups
        self.share_index: Optional[int] = None
        if ext and section.has("share_index"):
            self.share_index = ctx.resolve(section, "share_index", section.int("share_index"), self.index)

        # ---- checks
        if self.filters < 1:
            raise self.error(f"filters={self.filters} must be >= 1", "filters")
        if self.size < 1:
            raise self.error(f"size={self.size} must be >= 1", "size")
        if self.stride_x < 1 or self.stride_y < 1:  # stride_x/stride_y < 1 fall back to stride
            raise self.error(f"stride={min(self.stride_x, self.stride_y)} must be >= 1 (Darknet divides by it)",
                             "stride")
        if self.dilation < 1:
            raise self.error(f"dilation={self.dilation} must be >= 1", "dilation")
        if self.padding < 0:
            raise self.error(f"padding={self.padding} must be >= 0", "padding")
        if self.antialiasing not in (0, 1, 2):
            raise self.error(f"antialiasing={self.antialiasing}: Darknet knows 0, 1 (3x3 blur) and 2 (2x2 blur)",
                             "antialiasing")
        if c % self.groups or self.filters % self.groups:
            raise self.error(f"groups={self.groups} must divide both the input channels ({c}) and filters "
                             f"({self.filters}); Darknet's per-group GEMMs assume both split evenly", "groups")
        sx, sy = (1, 1) if self.antialiasing else (self.stride_x, self.stride_y)
        k, p, d = self.size, self.padding, self.dilation
        host_h = conv_out_size(h, p, k, sy)
        host_w = conv_out_size(w, p, k, sx)
        # Darknet's im2col grid (dilated kernel, padding p*d); its GEMM assumes the layer's grid.
        grid_h = conv_out_size(h, p * d, d * (k - 1) + 1, sy)
        grid_w = conv_out_size(w, p * d, d * (k - 1) + 1, sx)
        if d > 1 and (grid_h, grid_w) != (host_h, host_w):
            raise self.error(
                f"dilation={d} with size={k} and padding={p}: Darknet's output size ({host_h}x{host_w}) ignores "
                f"dilation but its im2col produces a {grid_h}x{grid_w} grid, so Darknet computes garbage; use "
                f"padding={(k - 1) // 2} (pad=1) with dilation", "dilation")
        if k == 1 and d == 1:
            if ctx.dialect.conv_1x1_fast_path_any_stride:
                if sx != 1 or sy != 1 or p:
                    raise self.error(
                        f"1x1 convolution with stride={self.stride_x} padding={p}: pjreddie's Darknet feeds the "
                        f"input straight to the GEMM for every 1x1 conv, ignoring stride and padding, so this "
                        f"layer computes garbage there", "stride" if sx != 1 else "padding")
            elif sx == 1 and (p or sy != 1):
                raise self.error(
                    f"1x1 convolution with stride_x=1 and {'padding=' + str(p) if p else 'stride_y=' + str(sy)}: "
                    f"Darknet's 1x1 fast path ignores padding and stride_y, so this layer computes garbage; "
                    f"use padding=0 (pad=0) and stride_y=stride_x", "padding" if p else "stride_y")
        self.host_shape = (self.filters, host_h, host_w)
        self.out_shape = self.host_shape
        # the NumPy forward zero-pads a copy of the input by padding*dilation (Darknet's im2col pads on the fly)
        # and builds im2col columns in bands of at most IM2COL_BUDGET_* bytes
        cols = (c * k * k) * host_h * host_w if k > 1 or p else 0
        self.workspace = c * (h + 2 * p * d) * (w + 2 * p * d) + min(cols, IM2COL_BUDGET_DENSE // 4)
        if self.antialiasing:
            self.blur_size = 3 if self.antialiasing == 1 else 2
            self.blur_pad = 1 if self.antialiasing == 1 else 0
            self.out_shape = (self.filters,
                              conv_out_size(host_h, self.blur_pad, self.blur_size, self.stride_y),
                              conv_out_size(host_w, self.blur_pad, self.blur_size, self.stride_x))
        ops = 2.0 * (c // self.groups) * self.filters * k * k * host_h * host_w / 1e9
        self.bflops = ops / 32.0 if self.xnor else ops
        if self.binary and not self.xnor:
            section.warn("binary=1: Darknet's CPU build ignores it, its GPU build binarises the weights "
                         "(sign(w)*mean|w| per filter); darkcsp follows the GPU build", "binary")
        if self.share_index is not None:
            self._check_share(ctx.layers[self.share_index], section)

    def _check_share(self, other: Layer, section: Section) -> None:
        if not isinstance(other, Convolutional):
            raise self.error(f"share_index refers to layer {other.index} [{other.type}], not a convolutional "
                             "layer", "share_index")
        if other.share_index is not None:
            raise self.error(f"share_index refers to layer {other.index}, which itself shares weights", "share_index")
        mine = [(n, s) for n, s in self._own_arrays()]
        theirs = other.weight_arrays()
        if mine != theirs:
            raise self.error(f"share_index={other.index}: that layer's weights {theirs} do not fit this layer "
                             f"({mine})", "share_index")

    # ---- weights
    @property
    def shares_weights_of(self) -> Optional[int]:
        """Index of the layer whose arrays this one uses (share_index), else None."""
        return self.share_index

    def _own_arrays(self) -> List[Tuple[str, Tuple[int, ...]]]:
        c = self.in_shape[0]
        n = self.filters
        arrays: List[Tuple[str, Tuple[int, ...]]] = [("biases", (n,))]
        if self.batch_normalize and not self.dontloadscales:
            arrays += [("scales", (n,)), ("rolling_mean", (n,)), ("rolling_variance", (n,))]
        arrays.append(("weights", (n, c // self.groups, self.size, self.size)))
        return arrays

    def weight_arrays(self) -> List[Tuple[str, Tuple[int, ...]]]:
        return [] if self.share_index is not None else self._own_arrays()

    def init_weights(self, rng: np.random.Generator) -> Weights:
        """Darknet: weights sqrt(2/(k*k*c/groups))*U(-1,1), the rest as Layer._init_weighted."""
        return self._init_weighted(rng, self.size * self.size * self.in_shape[0] / self.groups)

    def weights_from_file(self, arrays: Weights, header) -> Weights:
        if self.flipped and "weights" in arrays:
            n, cg, k, _ = arrays["weights"].shape
            arrays = dict(arrays)
            arrays["weights"] = np.ascontiguousarray(arrays["weights"].reshape(cg * k * k, n).T).reshape(n, cg, k, k)
        return arrays

    def weights_to_file(self, arrays: Weights, header) -> Weights:
        if self.flipped and "weights" in arrays:
            n, cg, k, _ = arrays["weights"].shape
            arrays = dict(arrays)
            arrays["weights"] = np.ascontiguousarray(arrays["weights"].reshape(n, cg * k * k).T).reshape(n, cg, k, k)
        return arrays

    def _effective(self, w: Weights) -> np.ndarray:
        """The filter weights as used by the forward (binarised if binary=1)."""
        if "weights" not in w:
            raise UnsupportedError(f"layer {self.index} [convolutional] has no weights bound "
                                   f"(share_index={self.share_index} not resolved by the model?)",
                                   file=self.section.file, line=self.section.line, section=self.section.name)
        weights = np.asarray(w["weights"], np.float32)
        if self.binary:
            weights = binarize_weights(weights)
        return weights

    def _check_runnable(self) -> None:
        if self.xnor:
            raise UnsupportedError(
                f"layer {self.index}: xnor=1 convolutions (binarised inputs and bit-packed GEMM) are not supported "
                "by darkcsp", file=self.section.file, line=self.section.options["xnor"].line,
                section=self.section.name, option="xnor")

    # ---- forward
    def _prepared(self, w: Weights) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """(weights, bias) for the forward: binarised if binary=1, BN folded in float64 when ``fold_bn``
        (bias None: the unfused BN path applies BN and biases itself).

        Cached per layer, keyed on the identity of the bound arrays (bound weights are treated as
        immutable: bind new arrays to change them)."""
        names = ("weights", "biases", "scales", "rolling_mean", "rolling_variance")
        arrays = tuple(w.get(name) for name in names)
        key = (self.fold_bn,) + tuple(id(a) for a in arrays)
        cached = self._cache
        if cached is not None and cached[0] == key:
            return cached[2], cached[3]
        weights = self._effective(w)
        bias: Optional[np.ndarray] = None
        if self.batch_normalize and self.fold_bn:
            n = self.filters
            wf, bf = fold_batch_norm(self.dialect, weights, w["biases"], w.get("scales", np.ones(n, np.float32)),
                                     w.get("rolling_mean", np.zeros(n, np.float32)),
                                     w.get("rolling_variance", np.zeros(n, np.float32)))
            weights, bias = wf.astype(np.float32), bf.astype(np.float32)
        elif not self.batch_normalize:
            bias = np.asarray(w["biases"], np.float32)
        self._cache = (key, arrays, np.ascontiguousarray(weights), bias)  # arrays kept alive: ids stay unique
        return self._cache[2], bias

    def forward(self, xs: Sequence[np.ndarray], w: Weights) -> np.ndarray:
        self._check_runnable()
        weights, bias = self._prepared(w)
        _, oh, ow = self.host_shape
        sy, sx = (1, 1) if self.antialiasing else (self.stride_y, self.stride_x)

        def epilogue(y: np.ndarray) -> np.ndarray:  # (N, n, pixels)
            if bias is not None:
                y += bias.reshape(1, -1, 1)
            else:  # Darknet's unfused path: (y - mean) / sqrt(var + eps) * scales + biases
                y = batch_norm_bias(self.dialect, y, w, True)
            return _activate_inplace(y, self.activation, "convolutional")

        y = conv2d(xs[0], weights, stride=(sy, sx), pad=self.padding * self.dilation, dilation=self.dilation,
                   groups=self.groups, out_hw=(oh, ow), epilogue=epilogue)
        if self.antialiasing:
            y = conv2d(y, self._blur_kernel(), stride=(self.stride_y, self.stride_x), pad=self.blur_pad,
                       groups=self.filters, out_hw=self.out_shape[1:])
        return y

    def _blur_kernel(self) -> np.ndarray:
        if self.blur_size == 3:
            k = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], np.float32) / np.float32(16)
        else:
            k = np.full((2, 2), 0.25, np.float32)
        return np.broadcast_to(k, (self.filters, 1) + k.shape).copy()

    # ---- ONNX
    def to_onnx(self, g: "OnnxGraph", xs: Sequence[str], w: Weights) -> str:
        self._check_runnable()
        weights = self._effective(w)
        n = self.filters
        if self.batch_normalize:
            wf, bf = fold_batch_norm(self.dialect, weights, w["biases"], w.get("scales", np.ones(n, np.float32)),
                                     w.get("rolling_mean", np.zeros(n, np.float32)),
                                     w.get("rolling_variance", np.zeros(n, np.float32)))
        else:
            wf, bf = weights, np.asarray(w["biases"], np.float32)
        sy, sx = (1, 1) if self.antialiasing else (self.stride_y, self.stride_x)
        p = self.padding * self.dilation
        k = self.size
        _, h, wd = self.in_shape
        _, oh, ow = self.host_shape
        pads = [p, p, end_pad(h, p, k, sy, self.dilation, oh), end_pad(wd, p, k, sx, self.dilation, ow)]
        y = lower_conv(g, xs[0], wf, bf, in_hw=(h, wd), strides=(sy, sx), pads=pads, dilation=self.dilation,
                       groups=self.groups)
        y = lower_activation(g, y, self.activation, "convolutional")
        if self.antialiasing:
            bp, bk = self.blur_pad, self.blur_size
            y = g.op("Conv", [y, g.const(self._blur_kernel(), "blur_w")], kernel_shape=[bk, bk],
                     strides=[self.stride_y, self.stride_x], pads=[bp, bp, bp, bp], group=n)
        return y

    @property
    def cio_compute(self) -> bool:
        return True

    def describe(self) -> str:
        n = f"{self.filters}/{self.groups}" if self.groups > 1 else f"{self.filters}"
        k = self.size
        if self.stride_x != self.stride_y:
            geo = f"{k}x{k}/{self.stride_x}x{self.stride_y}"
        else:
            geo = f"{k} x {k}/ {self.stride_x}"
        if self.dilation > 1:
            geo += f" (d{self.dilation})"
        extra = []
        if self.antialiasing:
            extra.append(f"AA{self.antialiasing}")
        if self.xnor:
            extra.append("xnor")
        if self.share_index is not None:
            extra.append(f"shares {self.share_index}")
        return " ".join([n, geo] + extra)
