"""The two Darknet lineages whose inference semantics differ: AlexeyAB's (default) and pjreddie's.

Layers ask the dialect instead of branching on its name, so the differences live in one place.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import DarkcspError


@dataclass(frozen=True)
class Dialect:
    name: str
    #: pjreddie's [batchnorm] layer stores scales, mean, var (3 arrays); AlexeyAB adds biases first (4).
    batchnorm_layer_has_biases: bool
    #: pjreddie's [shortcut] resamples between sizes (alpha/beta); AlexeyAB's asserts equal W,H.
    shortcut_resamples: bool
    #: AlexeyAB's extra [convolutional] options (stride_x/stride_y, dilation, antialiasing, share_index, cbn).
    conv_extended_options: bool = True
    #: pjreddie's 1x1 fast path is taken for any stride (and padding), which computes garbage for stride > 1.
    conv_1x1_fast_path_any_stride: bool = False
    #: AlexeyAB also counts BFLOPs for [maxpool]/[local_avgpool]/[shortcut]; pjreddie for convolutions only.
    non_conv_bflops: bool = True
    #: section names this lineage's parser does not know ("Type not recognized")
    missing_sections: frozenset = frozenset()

    def bn_inv_std(self, variance: np.ndarray) -> np.ndarray:
        """1 / Darknet's batch-norm denominator, per channel, as float32.

        AlexeyAB: (x - mean) / sqrt(var + 1e-5);  pjreddie: (x - mean) / (sqrt(var) + 1e-6).
        """
        v = np.asarray(variance, dtype=np.float32)
        if self.name == "pjreddie":
            den = np.sqrt(v.astype(np.float64)).astype(np.float32) + np.float32(1e-6)
        else:
            den = np.sqrt((v + np.float32(1e-5)).astype(np.float64)).astype(np.float32)
        return (np.float32(1.0) / den).astype(np.float32)

    def batch_norm(self, x: np.ndarray, mean: np.ndarray, variance: np.ndarray, axis: int = 1) -> np.ndarray:
        """Normalise x (N,C,...) with rolling statistics, computed as Darknet does (divide, not multiply)."""
        shape = [1] * x.ndim
        shape[axis] = -1
        v = np.asarray(variance, dtype=np.float32)
        if self.name == "pjreddie":
            den = np.sqrt(v.astype(np.float64)).astype(np.float32) + np.float32(1e-6)
        else:
            den = np.sqrt((v + np.float32(1e-5)).astype(np.float64)).astype(np.float32)
        return (x - np.asarray(mean, np.float32).reshape(shape)) / den.reshape(shape)


ALEXEYAB = Dialect("alexeyab", batchnorm_layer_has_biases=True, shortcut_resamples=False)
PJREDDIE = Dialect("pjreddie", batchnorm_layer_has_biases=False, shortcut_resamples=True,
                   conv_extended_options=False, conv_1x1_fast_path_any_stride=True,
                   missing_sections=frozenset({"scale_channels", "sam", "implicit", "local_avgpool", "local_avg",
                                               "reorg3d", "Gaussian_yolo", "empty", "silence", "contrastive"}),
                   non_conv_bflops=False)
DIALECTS = {d.name: d for d in (ALEXEYAB, PJREDDIE)}


def get_dialect(name) -> Dialect:
    if isinstance(name, Dialect):
        return name
    try:
        return DIALECTS[str(name).lower()]
    except KeyError:
        raise DarkcspError(f"unknown dialect '{name}': expected one of {', '.join(DIALECTS)}") from None
