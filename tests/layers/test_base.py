"""The layer contract (darkcsp.layers.base): what the rest of darkcsp asks a layer instead of its type name,
and the detection heads' random-weight prior (``Head.prior_bias``)."""
from __future__ import annotations

import math

import numpy as np
import pytest

import darkcsp
from darkcsp.layers import LAYER_CLASSES
from darkcsp.layers.base import Head
from darkcsp.onnx.export import DYNAMIC_SIZE_TYPES

from tests.conftest import net_cfg, write_cfg

LOGIT_001 = np.float32(math.log(0.01 / 0.99))


def head_of(tmp_path, body: str, channels: int = 3, size: int = 8, dialect: str = "alexeyab"):
    graph = darkcsp.load_graph(write_cfg(tmp_path, net_cfg(size, size, channels, body)), dialect=dialect)
    return graph.layers[-1]


def test_yolo_prior_bias_by_hand(tmp_path):
    # 2 masks * (4 box + objectness + 3 classes) = 16 channels
    head = head_of(tmp_path, """
        [convolutional]
        filters=16
        size=1
        [yolo]
        mask=0,1
        anchors=1,1, 2,2, 3,3
        num=3
        classes=3
        """)
    bias = head.prior_bias(16)
    block = [0, 0, 0, 0] + [LOGIT_001] * 4
    np.testing.assert_array_equal(bias, np.array(block * 2, np.float32))
    assert bias.dtype == np.float32
    # the initial probability the prior gives: logistic(log(0.01/0.99)) = 0.01
    assert 1 / (1 + math.exp(-float(LOGIT_001))) == pytest.approx(0.01)
    assert head.prior_bias(15) is None  # not this head's layout


def test_gaussian_yolo_prior_bias_by_hand(tmp_path):
    # 1 mask * (8 box/uncertainty + objectness + 2 classes) = 11 channels
    head = head_of(tmp_path, """
        [convolutional]
        filters=11
        size=1
        [Gaussian_yolo]
        mask=0
        anchors=1,1
        num=1
        classes=2
        """)
    np.testing.assert_array_equal(head.prior_bias(11), np.array([0] * 8 + [LOGIT_001] * 3, np.float32))


def test_region_prior_bias_by_hand(tmp_path):
    # num=2 anchors * (4 coords + objectness + 1 class) = 12 channels
    head = head_of(tmp_path, """
        [convolutional]
        filters=12
        size=1
        [region]
        anchors=1,1, 2,2
        num=2
        classes=1
        """)
    np.testing.assert_array_equal(head.prior_bias(12), np.array(([0] * 4 + [LOGIT_001] * 2) * 2, np.float32))


def test_detection_has_no_logit_prior(tmp_path):
    # YOLOv1 reads its input's raw values as probabilities: no logit to bias
    head = head_of(tmp_path, """
        [connected]
        output=12
        [detection]
        side=1
        num=2
        classes=2
        coords=4
        """)
    assert isinstance(head, Head) and head.prior_bias(12) is None


def test_random_detector_starts_near_the_prior(tmp_path):
    """The convolution feeding a [yolo] head gets the prior: a random detector's objectness is ~0.01, not 0.5."""
    cfg = write_cfg(tmp_path, net_cfg(16, 16, 3, """
        [convolutional]
        filters=14
        size=1
        activation=linear
        [yolo]
        mask=0,1
        anchors=1,1, 2,2
        num=2
        classes=2
        """))
    model = darkcsp.load(cfg)
    # a zero input leaves the convolution's bias: objectness and classes at logistic(prior) = 0.01, x, y at 0.5
    out = model.forward(np.zeros((1, 3, 16, 16), np.float32))[1].reshape(2, 7, 16, 16)
    np.testing.assert_allclose(out[:, 4:], 0.01, rtol=1e-5)
    np.testing.assert_array_equal(out[:, :2], 0.5)


def test_detector_nms_layer_flags():
    by_type = {cls.type: cls for cls in LAYER_CLASSES}
    # test_detector's loop picks yolo/Gaussian_yolo/region layers, never [detection]
    assert [t for t, cls in by_type.items() if issubclass(cls, Head) and cls.sets_detector_nms] == \
        ["yolo", "Gaussian_yolo", "region"]
    assert {t for t, cls in by_type.items() if issubclass(cls, Head)} == {"yolo", "Gaussian_yolo", "region",
                                                                          "detection"}
    assert all(cls.is_head == issubclass(cls, Head) for cls in LAYER_CLASSES)


def test_size_agnostic_types():
    # [yolo]'s lowering holds no literal size (its box decoding does: tests/onnx/test_export.py)
    assert "yolo" in DYNAMIC_SIZE_TYPES and "upsample" in DYNAMIC_SIZE_TYPES and "shortcut" in DYNAMIC_SIZE_TYPES
    assert not {"region", "reorg3d", "reorg", "connected", "softmax", "Gaussian_yolo"} & DYNAMIC_SIZE_TYPES


def test_pjreddie_shortcut_is_not_size_agnostic(tmp_path):
    body = """
        [convolutional]
        filters=4
        size=3
        pad=1
        [convolutional]
        filters=4
        size=3
        pad=1
        [shortcut]
        from=-2
        """
    ab = head_of(tmp_path, body, channels=4, dialect="alexeyab")
    pj = head_of(tmp_path, body, channels=4, dialect="pjreddie")
    assert ab.size_agnostic and not pj.size_agnostic  # pj's resamples with literal strides
