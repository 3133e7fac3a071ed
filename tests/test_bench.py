"""darkcsp bench: the command's output structure (table, --json keys, skipped backends, plot) on a tiny model,
and the harness's pure helpers (statistics, ratios, cfg rewriting, detection agreement). No timing asserts."""
from __future__ import annotations

import json

import numpy as np
import pytest

from darkcsp import bench
from darkcsp.cli import main

from conftest import write_cfg

TINY = """
[net]
width=32
height=32
channels=3

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
filters=21
size=1
stride=1
pad=1
activation=linear

[yolo]
mask = 0,1,2
anchors = 10,14,  23,27,  37,58
classes=2
num=3
"""


@pytest.fixture
def tiny_cfg(tmp_path):
    return write_cfg(tmp_path, TINY)


def run_cli(capsys, *argv):
    code = main(["bench", *map(str, argv), "--no-progress"])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_structure(tiny_cfg, capsys):
    code, out, err = run_cli(capsys, "--cfg", tiny_cfg, "--backends", "numpy,onnxruntime", "--runs", 4,
                             "--warmup", 1, "--block", 2, "--threads", 1, "--json")
    assert code == 0, err
    res = json.loads(out)
    assert {"date", "model", "settings", "machine", "backends", "baseline"} <= set(res)
    assert res["model"]["width"] == res["model"]["height"] == 32
    assert res["model"]["bflops"] > 0 and res["model"]["random_weights"] is True
    assert {"cpu", "cores", "versions", "os"} <= set(res["machine"])
    assert {"python", "numpy", "darkcsp"} <= set(res["machine"]["versions"])
    assert res["settings"]["threads"] == 1 and res["settings"]["runs"] == 4
    assert [b["label"] for b in res["backends"]] == ["numpy", "onnxruntime"]
    for b in res["backends"]:
        assert b["status"] == "ok", b
        assert b["runs"] == 4
        lat = b["latency_ms"]
        assert set(lat) >= {"median", "p10", "p90"} and lat["p10"] <= lat["median"] <= lat["p90"]
        assert b["fps"] == pytest.approx(1000.0 / lat["median"])
        assert b["gflops"] == pytest.approx(res["model"]["bflops"] / (lat["median"] / 1000.0))
        assert b["peak_rss_mib"] > 0
        assert "times" not in b  # only with --json-times


def test_table_baseline_and_skipped_backend(tiny_cfg, capsys, monkeypatch):
    monkeypatch.delenv(bench.OPENCV4_PYTHON_ENV, raising=False)
    code, out, err = run_cli(capsys, "--cfg", tiny_cfg, "--backends", "numpy,onnxruntime,no-such-backend",
                             "--runs", 2, "--warmup", 0, "--threads", 1, "--baseline", "numpy")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("darkcsp bench ") and "BFLOPs" in lines[0]
    assert any("machine:" in line for line in lines[:5])
    header = next(line for line in lines if line.startswith("backend"))
    for col in ("median ms", "p10", "p90", "fps", "GFLOP/s", "peak RSS MiB", "x numpy"):
        assert col in header
    rows = {line.split()[0]: line for line in lines[lines.index(header) + 2:] if line and not line.startswith("(")}
    assert set(rows) == {"numpy", "onnxruntime", "no-such-backend"}
    assert "skipped" in rows["no-such-backend"] and "unknown backend" in rows["no-such-backend"]
    assert "1.00 [1.00-1.00]" in rows["numpy"]
    assert "no-such-backend skipped" in err


def test_opencv_darknet_without_opencv4_is_skipped_with_a_reason(tiny_cfg, capsys, monkeypatch):
    cv2 = pytest.importorskip("cv2")
    if hasattr(cv2.dnn, "readNetFromDarknet"):
        pytest.skip("this OpenCV still has readNetFromDarknet")
    monkeypatch.delenv(bench.OPENCV4_PYTHON_ENV, raising=False)
    code, out, err = run_cli(capsys, "--cfg", tiny_cfg, "--backends", "numpy,opencv-darknet", "--runs", 1,
                             "--warmup", 0, "--threads", 1, "--json")
    res = json.loads(out)
    skipped = res["backends"][1]
    assert skipped["status"] == "skipped" and "readNetFromDarknet" in skipped["message"]
    assert "opencv-darknet@" in skipped["message"]  # says how to run it


def test_missing_interpreter_is_skipped(tiny_cfg, capsys):
    code, out, err = run_cli(capsys, "--cfg", tiny_cfg, "--backends", "numpy@/nonexistent/bin/python", "--runs", 1,
                             "--json")
    assert code == 1  # nothing ran
    b = json.loads(out)["backends"][0]
    assert b["status"] == "skipped" and "not found" in b["message"]


def test_plot_and_json_times(tiny_cfg, tmp_path, capsys):
    png = tmp_path / "out" / "bench.png"
    code, out, err = run_cli(capsys, "--cfg", tiny_cfg, "--backends", "numpy", "--runs", 3, "--warmup", 0,
                             "--threads", 1, "--batch", 2, "--json", "--json-times", "--plot", png)
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(png.parent.glob(".*part*"))  # written atomically
    b = json.loads(out)["backends"][0]
    assert len(b["times"]) == 3 and json.loads(out)["settings"]["batch"] == 2
    assert b["fps"] == pytest.approx(2000.0 / b["latency_ms"]["median"])


def test_end_to_end_and_agreement(tiny_cfg, tmp_path, capsys):
    cv2 = pytest.importorskip("cv2")
    img = tmp_path / "photo.png"
    cv2.imwrite(str(img), (np.random.default_rng(0).random((40, 50, 3)) * 255).astype(np.uint8))
    # A folder in the conformance layout whose expected detections are empty: agreement is vacuous (1.0).
    d = tmp_path / "case"
    d.mkdir()
    np.save(d / "input.npy", np.random.default_rng(1).random((1, 3, 32, 32), dtype=np.float32))
    (d / "detections.json").write_text(json.dumps({"image_w": 50, "image_h": 40, "letter_box": 0,
                                                   "detections": []}))
    code, out, err = run_cli(capsys, "--cfg", tiny_cfg, "--backends", "numpy", "--runs", 2, "--warmup", 0,
                             "--threads", 1, "--end-to-end", "--images", img, "--agreement", d, "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["settings"]["end_to_end"] is True
    a = res["backends"][0]["agreement"]
    assert a["expected"] == 0 and a["recall"] == 1.0 and "case" in a["images"]


def test_end_to_end_needs_images(tiny_cfg, capsys):
    code, out, err = run_cli(capsys, "--cfg", tiny_cfg, "--backends", "numpy", "--end-to-end")
    assert code != 0 and "--images" in err


# ----- pure helpers --------------------------------------------------------------------------------------
def test_summarise_by_hand():
    s = bench.summarise([0.010, 0.020, 0.030, 0.040, 0.050], batch=2, bflops=1.0)
    assert s["latency_ms"]["median"] == pytest.approx(30.0)
    assert s["latency_ms"]["p10"] == pytest.approx(14.0)  # linear interpolation: 10 + 0.4 * 10
    assert s["latency_ms"]["p90"] == pytest.approx(46.0)
    assert s["fps"] == pytest.approx(2 / 0.030)
    assert s["gflops"] == pytest.approx(2 * 1.0 / 0.030)


def test_block_ratios_by_hand():
    a = [(0, [0.01, 0.01]), (1, [0.02, 0.02])]  # twice as fast as b in block 0, as fast in block 1
    b = [(0, [0.02, 0.02]), (1, [0.02, 0.02]), (2, [0.5])]  # block 2: b alone, not paired
    r = bench.block_ratios(a, b)
    assert r["blocks"] == 2 and r["median"] == pytest.approx(1.5)
    assert r["p10"] == pytest.approx(1.1) and r["p90"] == pytest.approx(1.9)


def test_parse_backend_spec():
    s = bench.parse_backend_spec("opencv-darknet@/opt/venv-cv4/bin/python")
    assert (s.name, s.python, s.onnx_file, s.label) == ("opencv-darknet", "/opt/venv-cv4/bin/python", None,
                                                        "opencv-darknet@venv-cv4")
    s = bench.parse_backend_spec("onnxruntime=/tmp/peer.onnx")
    assert (s.name, s.onnx_file, s.label) == ("onnxruntime", "/tmp/peer.onnx", "onnxruntime=peer")
    with pytest.raises(Exception, match="only onnxruntime=FILE.onnx"):
        bench.parse_backend_spec("numpy=x.onnx")


def test_set_net_size_rewrites_only_net():
    text = "[net]\nbatch=64\nwidth=416\n height = 416\nchannels=3\n\n[convolutional]\nwidth=7\nsize=3\n"
    out = bench._set_net_size(text, 512, 320)
    net, rest = out.split("[convolutional]")
    assert "width=512" in net and "height=320" in net and "batch=1" in net and "subdivisions=1" in net
    assert "416" not in net and "64" not in net
    assert rest == "\nwidth=7\nsize=3\n"


def test_box_iou_by_hand():
    assert bench.box_iou((0.5, 0.5, 0.2, 0.2), (0.5, 0.5, 0.2, 0.2)) == pytest.approx(1.0)
    # half-overlapping boxes of equal size: inter = 0.5 * A, union = 1.5 * A
    assert bench.box_iou((0.5, 0.5, 0.2, 0.2), (0.6, 0.5, 0.2, 0.2)) == pytest.approx(1 / 3)
    assert bench.box_iou((0.1, 0.1, 0.1, 0.1), (0.9, 0.9, 0.1, 0.1)) == 0.0


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


def test_api_per_backend_runs_and_ratio_pairs_blocks(tiny_cfg):
    cfg = bench.BenchConfig(cfg=str(tiny_cfg), backends=[bench.BackendSpec("numpy", label="a"),
                                                         bench.BackendSpec("numpy", label="b", runs=2)],
                            threads=1, warmup=0, runs=6, block=2, baseline="a")
    res = bench.run_bench(cfg)
    a, b = res["backends"]
    assert (a["runs"], b["runs"]) == (6, 2)
    assert [i for i, _ in a["blocks"]] == [0, 1, 2] and [i for i, _ in b["blocks"]] == [0]
    assert b["vs_baseline"]["blocks"] == 1 and res["baseline"] == "a"


def test_user_mistakes_are_reported_once(tiny_cfg, tmp_path, capsys):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((1, 3, 8, 8), np.float32))
    code, out, err = run_cli(capsys, "--cfg", tiny_cfg, "--backends", "numpy", "--input", bad)
    assert code == 1 and "expects (N, 3, 32, 32)" in err and out == ""
    junk = tmp_path / "junk.weights"
    junk.write_bytes(b"not weights at all, clearly")
    code, out, err = run_cli(capsys, "--cfg", tiny_cfg, "--backends", "numpy", "--weights", junk)
    assert code == 3 and "junk.weights" in err  # WeightsError's exit code, before any backend starts
    code, out, err = run_cli(capsys, "--cfg", tmp_path / "missing.cfg")
    assert code == 2
