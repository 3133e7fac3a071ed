"""``darkcsp bench``: the command's output structure (table, --json keys, skipped backends, plot, end-to-end,
agreement, user mistakes) on the shared tiny detector. No timing asserts."""
from __future__ import annotations

import json

import numpy as np
import pytest

from darkcsp import bench
from darkcsp.cli import main


@pytest.fixture
def tiny_cfg(tiny_detector_cfg):
    return tiny_detector_cfg


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
