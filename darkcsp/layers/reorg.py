"""[reorg3d] (Darknet's REORG) and [reorg] (Darknet's REORG_OLD): space-to-depth with DIFFERENT channel orders.

Darknet's rules kept here (darknet-semantics.md §3.10, §3.11, §9; corpus README Surprises #15):
* Both: ``stride`` s (1), ``reverse`` (0); reverse=0 gives (C*s*s, H/s, W/s).
* [reorg3d] reverse=0: ``Y[(dy*s + dx)*C + c, y, x] = X[c, y*s + dy, x*s + dx]`` (offset-major).
* [reorg] reverse=0 (YOLOv2's passthrough): the input buffer is re-read as (C/s^2, H*s, W*s) and gathered
  with Darknet's reorg_cpu, then the result re-read as (C*s^2, H/s, W/s): a different permutation.
* [reorg] reverse=1 is a proper depth-to-space; [reorg3d] reverse=1 divides by zero or scrambles in
  Darknet and is refused.
* Sizes not divisible by s (and for [reorg] C not divisible by s^2) make Darknet read with the wrong pitch:
  refused.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..cfg import Section
from ..errors import UnsupportedError
from .base import BuildContext, Layer, Weights

if TYPE_CHECKING:  # pragma: no cover
    from ..onnx.builder import OnnxGraph


def reorg3d(x: np.ndarray, s: int) -> np.ndarray:
    """[reorg3d] reverse=0 on (N, C, H, W): out channel (dy*s + dx)*C + c."""
    n, c, h, w = x.shape
    return (x.reshape(n, c, h // s, s, w // s, s).transpose(0, 3, 5, 1, 2, 4)
            .reshape(n, s * s * c, h // s, w // s))


def reorg_old(x: np.ndarray, s: int) -> np.ndarray:
    """[reorg] reverse=0 on (N, C, H, W), as Darknet's reorg_cpu(forward=0) on the reinterpreted buffer."""
    n, c, h, w = x.shape
    c2 = c // (s * s)
    v = x.reshape(n, c2, h, s, w, s)  # the buffer as (C2, H*s, W*s), rows split into (H, s), cols (W, s)
    z = v.transpose(0, 3, 5, 1, 2, 4).reshape(n, c, h, w)  # Z[(dy*s+dx)*C2 + c2] = V[c2, dy::s, dx::s]
    return z.reshape(n, c * s * s, h // s, w // s)


def reorg_old_reverse(x: np.ndarray, s: int) -> np.ndarray:
    """[reorg] reverse=1 (depth-to-space): Y[c2, y*s+dy, x*s+dx] = X[(dy*s+dx)*C2 + c2, y, x]."""
    n, c, h, w = x.shape
    c2 = c // (s * s)
    return x.reshape(n, s, s, c2, h, w).transpose(0, 3, 4, 1, 5, 2).reshape(n, c2, h * s, w * s)


class _Reorg(Layer):
    old = False

    def setup(self, section: Section, ctx: BuildContext) -> None:
        c, h, w = self.in_shape
        self.stride = section.int("stride", 1)
        self.reverse = section.int("reverse", 0)
        s = self.stride
        if s <= 0:
            raise self.error(f"stride={s} must be positive", "stride")
        if min(c, h, w) <= 0:
            raise self.error(f"the input {self.in_shape} is not an image (C, H, W all > 0)")
        if self.dialect.reorg_flatten_extra and self.old:
            for key in ("flatten", "extra"):
                if section.int(key, 0):
                    raise UnsupportedError(f"layer {self.index}: pjreddie [reorg] {key}= is not supported by darkcsp",
                                           file=section.file, line=section.options[key].line,
                                           section=section.name, option=key)
        if self.reverse:
            if not self.old:
                raise UnsupportedError(
                    f"layer {self.index}: [reorg3d] reverse=1 is broken in Darknet (reorg_cpu gets C/stride^4 "
                    "channels: a division by zero or a scrambled permutation); use [reorg] reverse=1 for "
                    "depth-to-space", file=section.file, line=section.options["reverse"].line,
                    section=section.name, option="reverse")
            if c % (s * s):
                raise self.error(f"reverse=1 needs channels divisible by stride^2 = {s * s}, the input has {c}",
                                 "reverse")
            self.out_shape = (c // (s * s), h * s, w * s)
            return
        if h % s or w % s:
            raise self.error(f"stride={s} on a {w}x{h} input: Darknet reads misaligned rows unless {s} divides "
                             "both width and height", "stride")
        if self.old and c % (s * s):
            raise self.error(f"[reorg] needs channels divisible by stride^2 = {s * s}, the input has {c}", "stride")
        self.out_shape = (c * s * s, h // s, w // s)

    def describe(self) -> str:
        return f"/{self.stride}" + (" reverse" if self.reverse else "")


class Reorg3d(_Reorg):
    """[reorg3d] (Darknet REORG): space-to-depth, channel (dy*s + dx)*C + c."""

    type = "reorg3d"

    def forward(self, xs: Sequence[np.ndarray], w: Weights) -> np.ndarray:
        return reorg3d(np.asarray(xs[0], np.float32), self.stride)

    def to_onnx(self, g: "OnnxGraph", xs: Sequence[str], w: Weights) -> str:
        c, h, wd = self.in_shape
        s = self.stride
        y = g.reshape(xs[0], [0, c, h // s, s, wd // s, s])
        y = g.op("Transpose", [y], perm=[0, 3, 5, 1, 2, 4])
        return g.reshape(y, [0, s * s * c, h // s, wd // s])


class ReorgOld(_Reorg):
    """[reorg] (Darknet REORG_OLD): YOLOv2's passthrough permutation, or depth-to-space with reverse=1."""

    type = "reorg"
    old = True

    def forward(self, xs: Sequence[np.ndarray], w: Weights) -> np.ndarray:
        x = np.asarray(xs[0], np.float32)
        return reorg_old_reverse(x, self.stride) if self.reverse else reorg_old(x, self.stride)

    def to_onnx(self, g: "OnnxGraph", xs: Sequence[str], w: Weights) -> str:
        c, h, wd = self.in_shape
        s = self.stride
        c2 = c // (s * s)
        if self.reverse:
            y = g.reshape(xs[0], [0, s, s, c2, h, wd])
            y = g.op("Transpose", [y], perm=[0, 3, 4, 1, 5, 2])
            return g.reshape(y, [0, c2, h * s, wd * s])
        y = g.reshape(xs[0], [0, c2, h, s, wd, s])
        y = g.op("Transpose", [y], perm=[0, 3, 5, 1, 2, 4])
        return g.reshape(y, [0, c * s * s, h // s, wd // s])
