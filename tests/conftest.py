"""Shared fixtures: where the Darknet conformance corpus is, and small helpers to build cfgs in tests."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent


def conformance_root() -> Path:
    return Path(os.environ.get("DARKCSP_CONFORMANCE", REPO.parent / "shared" / "conformance"))


def trained_cache() -> Path:
    return Path(os.environ.get("DARKCSP_CONFORMANCE_CACHE", Path.home() / ".cache" / "darkcsp-conformance"))


def case_names():
    root = conformance_root() / "cases"
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def case_weights(case: str) -> Path:
    """model.weights.xz inside the case, or the fetched trained weights in the cache."""
    d = conformance_root() / "cases" / case
    if not d.is_dir():
        message = f"conformance case {case} not found under {conformance_root()} (set DARKCSP_CONFORMANCE)"
        if os.environ.get("DARKCSP_REQUIRE_CONFORMANCE"):
            pytest.fail(message)
        pytest.skip(message)
    if (d / "model.weights.xz").exists():
        return d / "model.weights.xz"
    return trained_cache() / case / "model.weights"


def case_meta(case: str) -> dict:
    return json.loads((conformance_root() / "cases" / case / "meta.json").read_text())


@pytest.fixture
def conformance_dir() -> Path:
    root = conformance_root()
    if not root.is_dir():
        pytest.skip(f"conformance corpus not found at {root} (set DARKCSP_CONFORMANCE)")
    return root


def write_cfg(tmp_path: Path, text: str, name: str = "net.cfg") -> Path:
    """Write a small cfg for a test; ``text`` is dedented."""
    import textwrap
    p = tmp_path / name
    p.write_text(textwrap.dedent(text).lstrip())
    return p


def random_input(shape, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32)
