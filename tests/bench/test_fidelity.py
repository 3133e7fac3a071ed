"""darkcsp.bench.fidelity: detections recovered, by hand."""
from __future__ import annotations

import json

import numpy as np
import pytest

from darkcsp import bench


def test_centre_box_iou_by_hand():
    assert bench.centre_box_iou((0.5, 0.5, 0.2, 0.2), (0.5, 0.5, 0.2, 0.2)) == pytest.approx(1.0)
    # half-overlapping boxes of equal size: inter = 0.5 * A, union = 1.5 * A
    assert bench.centre_box_iou((0.5, 0.5, 0.2, 0.2), (0.6, 0.5, 0.2, 0.2)) == pytest.approx(1 / 3)
    assert bench.centre_box_iou((0.1, 0.1, 0.1, 0.1), (0.9, 0.9, 0.1, 0.1)) == 0.0


def test_detection_agreement_by_hand(tmp_path):
    d = tmp_path / "img"
    d.mkdir()
    np.save(d / "input.npy", np.zeros((1, 3, 4, 4), np.float32))
    golden = [{"class_id": 1, "prob": 0.9, "x": 0.5, "y": 0.5, "w": 0.2, "h": 0.2},
              {"class_id": 2, "prob": 0.6, "x": 0.2, "y": 0.2, "w": 0.1, "h": 0.1},
              {"class_id": 3, "prob": 0.5, "x": 0.8, "y": 0.8, "w": 0.1, "h": 0.1}]
    (d / "detections.json").write_text(json.dumps({"image_w": 100, "image_h": 100, "detections": golden}))
    got = [{"class_id": 1, "prob": 0.85, "x": 0.5, "y": 0.5, "w": 0.2, "h": 0.2},   # match, |dprob| 0.05
           {"class_id": 2, "prob": 0.6, "x": 0.2, "y": 0.2, "w": 0.2, "h": 0.2},    # IoU 0.25: no match
           {"class_id": 4, "prob": 0.5, "x": 0.8, "y": 0.8, "w": 0.1, "h": 0.1}]    # wrong class
    a = bench.detection_agreement(lambda x, w, h, lb: got, [d])
    assert (a["matched"], a["expected"], a["extra"]) == (1, 3, 2)
    assert a["recall"] == pytest.approx(1 / 3) and a["max_prob_diff"] == pytest.approx(0.05)
