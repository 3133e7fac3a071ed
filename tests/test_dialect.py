"""darkcsp.dialect: the two lineages' batch-norm denominator, weights-header rule and reference names."""
from __future__ import annotations

import math

import numpy as np

from darkcsp.dialect import ALEXEYAB, PJREDDIE, dialect_of_reference, get_dialect


def test_bn_denominator_float32_by_hand():
    var = np.array([0.0, 1.0, 4.0], np.float32)
    # AlexeyAB: sqrt(var + .00001f), the sum in float32, the root rounded to float32
    want_ab = [np.float32(math.sqrt(float(np.float32(v) + np.float32(1e-5)))) for v in var]
    np.testing.assert_array_equal(ALEXEYAB.bn_denominator(var), np.array(want_ab, np.float32))
    # pjreddie: sqrt(var) + .000001f
    want_pj = np.array([np.float32(1e-6), np.float32(1) + np.float32(1e-6), np.float32(2) + np.float32(1e-6)])
    np.testing.assert_array_equal(PJREDDIE.bn_denominator(var), want_pj)
    assert PJREDDIE.bn_denominator(var).dtype == np.float32


def test_bn_denominator_float64_by_hand():
    var = np.array([0.0, 4.0])
    np.testing.assert_array_equal(ALEXEYAB.bn_denominator(var, np.float64), [math.sqrt(1e-5), math.sqrt(4.00001)])
    np.testing.assert_array_equal(PJREDDIE.bn_denominator(var, np.float64), [1e-6, 2.000001])


def test_batch_norm_divides():
    x = np.array([[[[3.0]], [[5.0]]]], np.float32)  # (1, 2, 1, 1)
    y = PJREDDIE.batch_norm(x, np.array([1.0, 1.0]), np.array([4.0, 16.0]))
    np.testing.assert_array_equal(y.ravel(), [np.float32(2) / np.float32(2.000001),
                                              np.float32(4) / np.float32(4.000001)])


def test_seen_width_rule():
    # AlexeyAB: 64-bit seen when major*10+minor >= 2; pjreddie also needs major, minor < 1000
    assert ALEXEYAB.seen_is_64bit(0, 2) and PJREDDIE.seen_is_64bit(0, 2)
    assert not ALEXEYAB.seen_is_64bit(0, 1) and not PJREDDIE.seen_is_64bit(0, 1)
    assert ALEXEYAB.seen_is_64bit(1000, 2) and not PJREDDIE.seen_is_64bit(1000, 2)


def test_dialect_of_reference():
    assert dialect_of_reference("pjreddie/darknet f6afaabcdf85f77e7aff2ec55c020c0e297c77f9") is PJREDDIE
    assert dialect_of_reference("AlexeyAB/darknet 2023") is ALEXEYAB
    assert dialect_of_reference("") is None and dialect_of_reference("hank-ai/darknet") is None
    assert get_dialect("PJREDDIE") is PJREDDIE
