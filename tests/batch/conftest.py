"""Fixtures of the batch tests: a folder of corpus photo copies with an unreadable file, the `darkcsp detect
--json` records of those photos (the expected output), a tiny detector cfg, and one local Ray instance for the
whole session (Ray takes seconds to start)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from darkcsp.cli import main
from tests.conftest import case_weights, cfg_text, conformance_root, write_cfg

CASE = "yolov4-tiny-coco"

#: a tiny detector (random weights): for what does not need trained weights
TINY = cfg_text("one-head-96")


def corpus_photos():
    """The distinct photos of the conformance corpus (by content)."""
    seen, out = set(), []
    for f in sorted((conformance_root() / "cases").glob("*/images/*/*")):
        if f.suffix.lower() in (".jpg", ".jpeg", ".png") and f.read_bytes() not in seen:
            seen.add(f.read_bytes())
            out.append(f)
    return out


@pytest.fixture(scope="session")
def model_args():
    """--cfg/--weights/--names of the trained COCO yolov4-tiny of the corpus."""
    d = conformance_root() / "cases" / CASE
    if not (d / "model.cfg").exists():
        pytest.skip(f"conformance corpus not found at {conformance_root()} (set DARKCSP_CONFORMANCE)")
    w = case_weights(CASE)
    if not w.exists():
        pytest.skip(f"trained weights for {CASE} not fetched ({w}); run fetch_trained.py")
    return ["--cfg", str(d / "model.cfg"), "--weights", str(w), "--names", str(d / "coco.names")]


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory, model_args):
    """photos/ with every corpus photo, copies of them in photos/more/copies/, and an unreadable broken.jpg."""
    root = tmp_path_factory.mktemp("batch") / "photos"
    (root / "more" / "copies").mkdir(parents=True)
    photos = corpus_photos()
    assert len(photos) >= 5
    for i, f in enumerate(photos):
        shutil.copy(f, root / f"{i}-{f.name}")
        shutil.copy(f, root / "more" / "copies" / f"{i}-{f.name}")
    (root / "broken.jpg").write_bytes(np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes())
    return root


@pytest.fixture(scope="session")
def detect_records(photo_dir, model_args, tmp_path_factory):
    """{image: record} of `darkcsp detect --json` on every photo of photo_dir (the readable ones)."""
    from darkcsp.batch import list_inputs
    files = list_inputs([str(photo_dir)])
    out = tmp_path_factory.mktemp("detect") / "detections.json"
    rc = main(["detect", "-q", *model_args, "--no-save", "--json-file", str(out), *files])
    assert rc == 4  # broken.jpg: ImageError's exit code, the others detected
    records = {r["image"]: r for r in json.loads(out.read_text())}
    assert set(records) == set(files) - {str(photo_dir / "broken.jpg")}
    return records


def read_records(path: Path):
    """The records of a results file, in file order (every line must be complete JSON)."""
    text = path.read_text()
    assert text == "" or text.endswith("\n"), "torn last line"
    return [json.loads(line) for line in text.splitlines()]


def assert_matches_detect(records, detect_records, photo_dir):
    """One record per input, each readable one equal to `detect --json`'s, broken.jpg an ImageError record."""
    keys = [r["image"] for r in records]
    assert len(keys) == len(set(keys)), "duplicate records"
    broken = str(photo_dir / "broken.jpg")
    assert set(keys) == set(detect_records) | {broken}
    for r in records:
        if r["image"] == broken:
            assert r["error"]["class"] == "ImageError" and r["error"]["exit_code"] == 4
            assert r["error"]["message"].startswith(broken + ": cannot decode image")
            assert set(r) == {"image", "error"}
        else:
            assert r == detect_records[r["image"]]


@pytest.fixture
def tiny_cfg(tmp_path):
    return write_cfg(tmp_path, TINY, "tiny.cfg")


def write_photos(folder: Path, n: int, size=(120, 160), seed: int = 0):
    """n random JPEG photos in folder: p000.jpg, ..."""
    import cv2
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        p = folder / f"p{i:03d}.jpg"
        cv2.imwrite(str(p), rng.integers(0, 256, (*size, 3), dtype=np.uint8))
        paths.append(p)
    return paths


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance with 2 CPUs for the session (the Ray engine uses an initialised Ray as it is)."""
    import ray
    import ray.data  # noqa: F401  (the `test` extra pulls ray[data])
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # tests talk to nothing beyond this machine
    ray.init(num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()
