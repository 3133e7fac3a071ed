"""What both engines share: the detector recipe an actor rebuilds, per-image preparation, batched inference
through the Detector's own pieces, error records and annotated images."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, Dict, List, NamedTuple, Optional, Sequence

import numpy as np

from ..detector import Detector, record
from ..errors import DarkcspError, ResourceError
from ..fileio import atomic_path

log = logging.getLogger("darkcsp")

#: test hook (not a user option): an engine worker exits (os._exit(1), as a crash) after this many images...
TEST_EXIT_AFTER_ENV = "DARKCSP_BATCH_TEST_EXIT_AFTER"
#: ...once per job: the first worker to get there creates a marker file in this folder, and no worker exits when
#: it exists (so the restarted Ray actor carries on)
TEST_MARKER_DIR_ENV = "DARKCSP_BATCH_TEST_MARKER_DIR"


@dataclass
class DetectorSpec:
    """How to build the Detector: picklable, so every Ray actor builds its own from it (paths must be readable
    where the actor runs: on a cluster, a shared file system)."""
    cfg: str
    weights: Optional[str] = None
    names: Optional[str] = None
    width: Optional[int] = None
    height: Optional[int] = None
    dialect: str = "alexeyab"
    backend: Optional[str] = None
    thresh: float = 0.25
    hier: float = 0.5
    nms: float = 0.45
    letterbox: Optional[bool] = None
    batch_size: int = 2
    backend_options: Dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        """Fail here, on the driver, for a bad cfg/weights/threshold (a Ray actor would fail with it only after
        Ray's start-up, wrapped in Ray's errors)."""
        from ..detector import check_fraction
        from ..model import load
        for name in ("thresh", "hier", "nms"):
            check_fraction(name, getattr(self, name))
        if int(self.batch_size) < 1:
            raise DarkcspError(f"batch_size={self.batch_size} must be at least 1")
        load(self.cfg, self.weights, width=self.width, height=self.height, dialect=self.dialect)

    def build(self, **backend_options) -> Detector:
        """``darkcsp.load(...).detector(...)``; ``backend_options`` (e.g. threads) add to the spec's own."""
        return self.build_many(1, **backend_options)[0]

    def build_many(self, n: int, **backend_options) -> List[Detector]:
        """``n`` Detectors (each its own backend instance) of one loaded model."""
        from ..model import load
        model = load(self.cfg, self.weights, width=self.width, height=self.height, dialect=self.dialect)
        return [model.detector(backend=self.backend, thresh=self.thresh, hier=self.hier, nms=self.nms,
                               letterbox=self.letterbox, names=self.names, batch_size=self.batch_size,
                               **{**self.backend_options, **backend_options}) for _ in range(n)]


def error_record(key: str, error: DarkcspError) -> Dict[str, Any]:
    """The record of an input that could not be processed: the error's message, class and exit code."""
    return {"image": key, "error": {"message": str(error), "class": type(error).__name__,
                                    "exit_code": error.exit_code}}


class Prepared(NamedTuple):
    """One input after the CPU work before the network: its Darknet image and network input, or its error."""
    key: str
    image: Optional[np.ndarray]  # (3, H, W) float32 RGB, kept for the image size and --save-images
    tensor: Optional[np.ndarray]  # (1, 3, net_h, net_w)
    error: Optional[DarkcspError]


def prepare(det: Detector, key: str, path: Optional[str] = None) -> Prepared:
    """Load and preprocess one input with the Detector's own load_image/input_tensor; errors are kept. ``path``
    is where to read it when not ``key`` itself (a Ray actor reads by absolute path); errors name ``key``."""
    try:
        im = det.load_image(path or key)
        return Prepared(key, im, det.input_tensor([im]), None)
    except DarkcspError as e:
        if path and e.file == path:
            e.file = key
        return Prepared(key, None, None, e)
    except MemoryError:
        return Prepared(key, None, None, ResourceError("out of memory while loading the image", file=key))


def infer(det: Detector, batch: Sequence[Prepared], save_dir: Optional[Path] = None) -> List[Dict[str, Any]]:
    """Records for prepared inputs, in order: one backend run for the readable ones, error records for the rest.

    This is Detector.detect_images split after its input_tensor (so that preprocessing can run ahead, on other
    threads): ``Detector.detect_tensor`` on the prepared inputs."""
    ok = [p for p in batch if p.error is None]
    found = det.detect_tensor(np.concatenate([p.tensor for p in ok]), [(p.image.shape[2], p.image.shape[1])
                                                                        for p in ok]) if ok else []
    dets = {p.key: d for p, d in zip(ok, found)}
    records = []
    for p in batch:
        if p.error is not None:
            records.append(error_record(p.key, p.error))
            continue
        if save_dir is not None:
            save_annotated(det, save_dir, p.key, p.image, dets[p.key])
        records.append(record(p.key, p.image.shape[2], p.image.shape[1], dets[p.key]))
    return records


def annotated_path(save_dir: Path, key: str) -> Path:
    """Where ``--save-images`` puts the annotated copy of input ``key``: the input's path below ``save_dir``
    (absolute paths without their root, '..' as '__'), so that names never collide and every worker of a
    cluster computes the same target. Formats other than JPEG/PNG/BMP are written as .jpg, as ``detect`` does."""
    parts = [("__" if s == ".." else s) for s in PurePath(key).parts if s not in (PurePath(key).anchor, ".")]
    rel = PurePath(*parts) if parts else PurePath("image")
    if rel.suffix.lower() not in (".jpg", ".jpeg", ".png", ".bmp"):
        rel = rel.with_name(rel.name + ".jpg")
    return Path(save_dir) / rel


def check_save_dir(save_dir: Path) -> None:
    """Refuse a --save-images folder where an annotated copy would replace its input."""
    resolved = Path(save_dir).resolve()
    if resolved == Path.cwd().resolve() or resolved == Path(resolved.anchor):
        raise ResourceError("--save-images would overwrite the input images (annotated copies go to "
                            "DIR/<input path>); choose a new folder", file=str(save_dir))


def save_annotated(det: Detector, save_dir: Path, key: str, image: np.ndarray, dets) -> None:
    import cv2
    from ..image import to_bgr_uint8
    target = annotated_path(save_dir, key)
    with atomic_path(target) as tmp:
        if not cv2.imwrite(str(tmp), det.draw(to_bgr_uint8(image), dets)):
            raise ResourceError("OpenCV could not write the annotated image", file=str(target))


class TestExitHook:
    """The worker-crash test hook (see TEST_EXIT_AFTER_ENV): read on the driver, carried to the workers."""

    def __init__(self, exit_after: Optional[int], marker_dir: Optional[str]):
        self.exit_after = exit_after
        self.marker_dir = marker_dir
        self.count = 0

    @classmethod
    def from_env(cls) -> Optional["TestExitHook"]:
        value = os.environ.get(TEST_EXIT_AFTER_ENV)
        if not value:
            return None
        marker_dir = os.environ.get(TEST_MARKER_DIR_ENV)
        if not marker_dir:
            raise ResourceError(f"{TEST_EXIT_AFTER_ENV} needs {TEST_MARKER_DIR_ENV} (a folder for the marker file)")
        return cls(int(value), marker_dir)

    def processed(self, n: int) -> None:
        """Count ``n`` images; exit the process the first time the job gets past ``exit_after`` images here."""
        self.count += n
        if self.count < self.exit_after:
            return
        try:
            fd = os.open(os.path.join(self.marker_dir, "darkcsp-batch-test-exit"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        log.warning("test hook %s: worker %d exits after %d images", TEST_EXIT_AFTER_ENV, os.getpid(), self.count)
        os._exit(1)
