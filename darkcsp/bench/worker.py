"""The worker side of a benchmark: one backend in its own process, driven over stdin/stdout, one JSON line per
command (``python -m darkcsp.bench.worker``; the parent may start it under another interpreter).

Commands: ``setup`` (the first line: model, backend, input, warm-up), ``time`` (``n`` timed runs -> their
seconds), ``agree`` (Darknet's detections recovered on conformance folders), ``exit`` (-> peak RSS). Replies are
``{"ok": true, ...}`` or ``{"ok": false, "message": ..., "skip": bool}``.

Every backend comes from ``darkcsp.backends``: a registered name (``create_backend``), or an ONNX file made
elsewhere on a registered ONNX runtime (``OnnxFileBackend``). The end-to-end step and the detection-fidelity
count go through the detection API (``darkcsp.Detector``): Darknet's image loading and resize, the network on
the backend, get_network_boxes, NMS.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from .fidelity import detection_agreement
from .machine import reset_peak_rss, rss_mib

log = logging.getLogger("darkcsp")

__all__ = ["WorkerError", "WorkerSession", "main"]


class WorkerError(Exception):
    """A worker command failed; ``skip`` marks a backend that cannot run here (reported as skipped)."""

    def __init__(self, message: str, skip: bool = False):
        super().__init__(message)
        self.skip = skip


def _worker_versions() -> Dict[str, str]:
    out = {"python": platform.python_version(), "numpy": np.__version__}
    for mod, key in (("onnxruntime", "onnxruntime"), ("cv2", "opencv"), ("openvino", "openvino")):
        if mod in sys.modules:
            out[key] = sys.modules[mod].__version__
    return out


def make_backend(setup: Dict[str, Any], model):
    """The backend a ``setup`` command names: ``backend`` (+ ``onnx_file``), ``threads``, ``options``, and
    ``calib`` for the backends that need calibration images."""
    from ..backends import BACKENDS, CALIBRATED_BACKENDS, OnnxFileBackend, create_backend
    name = setup["backend"]
    options = dict(setup.get("options") or {})
    options.setdefault("threads", int(setup["threads"]))
    if setup.get("onnx_file"):
        return OnnxFileBackend(model, onnx_file=setup["onnx_file"], runtime=name, **options)
    if name not in BACKENDS:
        raise WorkerError(f"unknown backend '{name}': this installation has {', '.join(BACKENDS)}", skip=True)
    if name in CALIBRATED_BACKENDS:
        if not setup.get("calib"):
            raise WorkerError(f"{name} needs calibration inputs (--calib IMAGES or .npy tensors)", skip=True)
        options.setdefault("calib", list(setup["calib"]))
    return create_backend(name, model, **options)


class WorkerSession:
    """One backend on one model, warmed up; ``time`` runs the step ``n`` times."""

    def __init__(self, setup: Dict[str, Any]):
        self.setup = setup
        if setup.get("nice"):
            try:
                os.nice(int(setup["nice"]))
            except (OSError, AttributeError) as e:
                raise WorkerError(f"cannot change the scheduling priority by {setup['nice']}: {e}")
        self.name = setup["backend"]
        self.threads = int(setup["threads"])
        self.batch = int(setup["batch"])
        t0 = time.perf_counter()
        from ..model import load
        # the cfg written with the benchmarked [net] size (OpenCV's Darknet importer reads the file)
        self.model = load(setup["cfg"], setup["weights"], width=setup["width"], height=setup["height"],
                          dialect=setup["dialect"])
        self.backend = make_backend(setup, self.model)
        self.backend.warmup(self.batch)  # export + session creation now, not in the first timed run
        self.x = np.ascontiguousarray(np.load(setup["input"]).astype(np.float32, copy=False))
        self.step = self._make_step()
        self.setup_s = time.perf_counter() - t0
        # Peak RSS is reported for running the network (warm-up + timed runs), not for building it (an export
        # or an INT8 calibration can take far more memory than inference).
        self.setup_peak_mib = rss_mib()[1]
        self.peak_reset = reset_peak_rss()
        for _ in range(int(setup.get("warmup", 0))):
            self.step()

    def details(self) -> Dict[str, Any]:
        onnx_file = self.setup.get("onnx_file")
        return {"onnx_file": onnx_file, "engine": self.name} if onnx_file else {}

    def detector(self, letterbox: Optional[bool] = None):
        """The detection API on this session's backend (Darknet's thresholds: 0.25, hier 0.5, NMS 0.45)."""
        missing = [h.index for h in self._heads() if h.index not in self.backend.outputs]
        if missing:
            raise WorkerError(f"the backend's outputs do not include head layer(s) {missing}: nothing to decode")
        return self.model.detector(backend=self.backend, letterbox=letterbox, batch_size=self.batch)

    def _heads(self):
        from ..postprocess import heads_of
        return heads_of(self.model.graph.layers)

    def _make_step(self) -> Callable[[], Any]:
        if not self.setup.get("end_to_end"):
            x = self.x
            if x.shape[0] != self.batch:
                x = np.repeat(x[:1], self.batch, axis=0)
                self.x = x
            return lambda: self.backend.run(x)
        return self._end_to_end_step()

    def _end_to_end_step(self) -> Callable[[], Any]:
        """Read + decode + resize each photo, run, decode boxes + NMS: ``Detector.detect_images``."""
        images = list(self.setup["images"])
        paths = [images[i % len(images)] for i in range(self.batch)]
        det = self.detector()
        return lambda: det.detect_images([det.load_image(p) for p in paths])

    def time(self, n: int) -> List[float]:
        out = []
        step = self.step
        for _ in range(n):
            t = time.perf_counter()
            step()
            out.append(time.perf_counter() - t)
        return out

    def agree(self, dirs: Sequence[str]) -> Dict[str, Any]:
        """Darknet's detections (detections.json) recovered by this backend on each folder's input.npy."""
        detectors: Dict[bool, Any] = {}

        def run(x: np.ndarray, image_w: int, image_h: int, letter_box: int):
            det = detectors.get(bool(letter_box))
            if det is None:
                det = detectors[bool(letter_box)] = self.detector(letterbox=bool(letter_box))
            if x.shape[0] != self.batch:  # a backend built for a fixed batch gets the image repeated
                x = np.repeat(x[:1], self.batch, axis=0)
            out = self.backend.run(x)
            return det.postprocess({k: v[:1] for k, v in out.items()}, image_w, image_h)
        return detection_agreement(run, dirs)


def main() -> int:
    """Serve JSON commands on stdin; replies go to the original stdout, anything printed goes to stderr."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    logging.basicConfig(level=logging.WARNING, format="darkcsp worker: %(levelname)s: %(message)s")

    def reply(**kw):
        proto.write(json.dumps(dict(kw), default=float) + "\n")
        proto.flush()

    session: Optional[WorkerSession] = None
    for line in sys.stdin:
        msg = json.loads(line)
        cmd = msg.get("cmd", "setup")
        try:
            if cmd == "setup":
                session = WorkerSession(msg)
                cur, peak = rss_mib()
                reply(ok=True, setup_s=session.setup_s, rss_after_warmup_mib=cur, versions=_worker_versions(),
                      details=session.details(), threads=session.threads,
                      setup_peak_rss_mib=session.setup_peak_mib, peak_rss_excludes_setup=session.peak_reset)
            elif cmd == "time":
                assert session is not None
                reply(ok=True, times=session.time(int(msg["n"])))
            elif cmd == "agree":
                assert session is not None
                reply(ok=True, agreement=session.agree(msg["dirs"]))
            elif cmd == "exit":
                cur, peak = rss_mib()
                reply(ok=True, peak_rss_mib=peak)
                return 0
            else:
                reply(ok=False, message=f"unknown command {cmd}")
        except WorkerError as e:
            reply(ok=False, message=str(e), skip=e.skip)
        except ImportError as e:
            reply(ok=False, message=f"{e}", skip=True)
        except Exception as e:  # reported to the parent, which shows it next to the backend's name
            log.debug("worker failure", exc_info=True)
            from ..errors import DarkcspError, UnsupportedError
            text = str(e) or type(e).__name__
            reply(ok=False, message=text if isinstance(e, DarkcspError) else f"{type(e).__name__}: {text}",
                  skip=isinstance(e, (UnsupportedError, NotImplementedError)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
