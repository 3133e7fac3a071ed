"""The two Darknet lineages whose inference semantics differ: AlexeyAB's (default) and pjreddie's.

Layers ask the dialect instead of branching on its name, so the differences live in one place.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .errors import DarkcspError


@dataclass(frozen=True)
class Dialect:
    """One lineage's behaviour: every flag says what that lineage's Darknet does, so that layers and the
    detection path ask a flag, never the name."""

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
    #: Darknet's batch-norm denominator is ``sqrt(var + bn_eps_in_sqrt) + bn_eps_after_sqrt``:
    #: AlexeyAB sqrt(var + .00001f), pjreddie sqrt(var) + .000001f (see ``bn_denominator``)
    bn_eps_in_sqrt: float = 1e-5
    bn_eps_after_sqrt: float = 0.0
    #: AlexeyAB's [yolo] options scale_x_y, new_coords, nms_kind, beta_nms (pjreddie's parse_yolo reads none)
    yolo_extended_options: bool = True
    #: pjreddie's [region]: the CPU forward keeps the planar layout (logistic on x, y, objectness and, without
    #: softmax, the classes; ``background=`` honoured), decoding is anchor-major; AlexeyAB flattens cell-major
    region_planar: bool = False
    #: pjreddie's [reorg] (REORG_OLD) reads flatten=/extra= (darkcsp refuses them); AlexeyAB's ignores them
    reorg_flatten_extra: bool = False
    #: pjreddie reads ``seen`` as 64 bits only when major and minor are also below 1000
    seen_64bit_needs_version_below_1000: bool = False
    #: pjreddie's ``detector test`` always letterboxes, and its correct_yolo_boxes / get_region_detections
    #: always correct boxes as letterboxed; AlexeyAB's only with -letter_box or [net] letter_box=1
    detector_always_letterbox: bool = False
    #: AlexeyAB's detector honours the last head's nms_kind (greedynms = DIoU); pjreddie's always do_nms_sort
    nms_kind_from_head: bool = True
    #: AlexeyAB prints detections as draw_detections_v3 does (boxes by left edge, best class first);
    #: pjreddie's draw_detections prints every (box, class) over thresh in array order
    print_order_by_left_edge: bool = True

    def detector_letterbox(self, net) -> bool:
        """Whether ``detector test`` letterboxes the input for a network with this [net] section."""
        return self.detector_always_letterbox or bool(net.letter_box)

    def seen_is_64bit(self, major: int, minor: int) -> bool:
        """Whether a .weights header with this version stores ``seen`` as uint64 (else uint32)."""
        wide = major * 10 + minor >= 2
        if self.seen_64bit_needs_version_below_1000:
            wide = wide and major < 1000 and minor < 1000
        return wide

    def bn_denominator(self, variance: np.ndarray, dtype=np.float32) -> np.ndarray:
        """Darknet's batch-norm denominator per channel, the one formula every BN in darkcsp uses.

        float32 (the NumPy forward, like Darknet's normalize_cpu): the epsilon added in float32, the square
        root correctly rounded to float32. float64 (BN folded into weights, the ONNX constants): all in double,
        as fuse_conv_batchnorm does."""
        t = np.dtype(dtype).type
        v = np.asarray(variance, dtype) + t(self.bn_eps_in_sqrt)
        return (np.sqrt(v.astype(np.float64)).astype(dtype) + t(self.bn_eps_after_sqrt)).astype(dtype)

    def batch_norm(self, x: np.ndarray, mean: np.ndarray, variance: np.ndarray, axis: int = 1) -> np.ndarray:
        """Normalise x (N,C,...) with rolling statistics, computed as Darknet does (divide, not multiply)."""
        shape = [1] * x.ndim
        shape[axis] = -1
        den = self.bn_denominator(variance, np.float32)
        return (x - np.asarray(mean, np.float32).reshape(shape)) / den.reshape(shape)


ALEXEYAB = Dialect("alexeyab", batchnorm_layer_has_biases=True, shortcut_resamples=False)
PJREDDIE = Dialect("pjreddie", batchnorm_layer_has_biases=False, shortcut_resamples=True,
                   conv_extended_options=False, conv_1x1_fast_path_any_stride=True,
                   missing_sections=frozenset({"scale_channels", "sam", "implicit", "local_avgpool", "local_avg",
                                               "reorg3d", "Gaussian_yolo", "empty", "silence", "contrastive"}),
                   non_conv_bflops=False, bn_eps_in_sqrt=0.0, bn_eps_after_sqrt=1e-6, yolo_extended_options=False,
                   region_planar=True, reorg_flatten_extra=True, seen_64bit_needs_version_below_1000=True,
                   detector_always_letterbox=True, nms_kind_from_head=False, print_order_by_left_edge=False)
DIALECTS = {d.name: d for d in (ALEXEYAB, PJREDDIE)}


def dialect_of_reference(reference: str) -> Optional[Dialect]:
    """The dialect of the Darknet build a conformance case's meta.json names as its reference
    (``pjreddie/darknet <commit>``), or None when the name is not a dialect's."""
    for d in DIALECTS.values():
        if str(reference).lower().startswith(d.name):
            return d
    return None


def get_dialect(name) -> Dialect:
    if isinstance(name, Dialect):
        return name
    try:
        return DIALECTS[str(name).lower()]
    except KeyError:
        raise DarkcspError(f"unknown dialect '{name}': expected one of {', '.join(DIALECTS)}") from None
