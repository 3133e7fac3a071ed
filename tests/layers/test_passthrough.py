"""[dropout], [empty]/[silence] (identity) and the training-only [cost], [contrastive]."""
from __future__ import annotations

import numpy as np
import pytest

from tests.layers.harness import check_golden_layer, check_lowering, graph_of, inputs_for

NET = "[net]\nwidth=3\nheight=2\nchannels=2\n"


@pytest.mark.parametrize("section", ["[dropout]\nprobability=.5\ndropblock=1", "[empty]", "[silence]"])
def test_identity(section, caplog):
    g = graph_of(NET + section + "\n")
    layer = g.layers[-1]
    assert layer.out_shape == (2, 2, 3) and layer.params == 0
    x = inputs_for(g, layer)[0]
    np.testing.assert_array_equal(layer.forward([x], {}), x)
    check_lowering(layer, inputs_for(g, layer, batch=2))
    assert "Unused field" not in caplog.text


@pytest.mark.parametrize("section", ["[cost]\ntype=sse", "[contrastive]\nclasses=1\ntemperature=1.0\nyolo_layer=-2"])
def test_training_only(section, caplog):
    g = graph_of(NET + "[maxpool]\nsize=1\nstride=1\n" + section + "\n")
    layer = g.layers[-1]
    assert layer.is_training_only
    assert layer.outputs == 12 and layer.out_shape == (12, 1, 1)
    assert g.output_indices() == [0]
    x = inputs_for(g, layer, batch=2)
    np.testing.assert_array_equal(layer.forward(x, {}), np.zeros((2, 12, 1, 1), np.float32))
    check_lowering(layer, x)
    assert "Unused field" not in caplog.text


def test_golden_dropout():
    check_golden_layer("zoo-classifier-connected", 7)
