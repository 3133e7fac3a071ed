"""What a benchmark measures: backend specs (``NAME[=ONNX_FILE][@PYTHON]``) and the run's configuration."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

__all__ = ["BackendSpec", "BenchConfig", "parse_backend_spec", "known_backends", "default_backends",
           "calibrated_backends", "set_net_size", "OPENCV4_PYTHON_ENV", "THREAD_ENV_VARS"]

#: the environment variable that names a Python with OpenCV 4.x for ``opencv-darknet`` (used when the current
#: OpenCV has no readNetFromDarknet)
OPENCV4_PYTHON_ENV = "DARKCSP_OPENCV4_PYTHON"
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
                   "NUMEXPR_NUM_THREADS")


@dataclass
class BackendSpec:
    """One thing to time: a backend name, optionally an ONNX file to run instead of darkcsp's export, and
    optionally the interpreter to run it in."""
    name: str
    onnx_file: Optional[str] = None
    python: Optional[str] = None
    label: str = ""
    options: Dict[str, Any] = field(default_factory=dict)
    #: timed runs for this backend when fewer than the bench's (a slow backend joins fewer, evenly spread blocks)
    runs: Optional[int] = None

    def __post_init__(self):
        if not self.label:
            label = self.name
            if self.onnx_file:
                label += f"={Path(self.onnx_file).stem}"
            if self.python:
                label += f"@{_python_tag(self.python)}"
            self.label = label


def _python_tag(python: str) -> str:
    """A short name for an interpreter: the venv folder name for .../venv-x/bin/python."""
    p = Path(python)
    if p.parent.name == "bin" and p.parent.parent.name:
        return p.parent.parent.name
    return p.name


def parse_backend_spec(text: str) -> BackendSpec:
    """``NAME[=ONNX_FILE][@PYTHON]`` -> BackendSpec. ``NAME=FILE`` needs a backend that runs ONNX
    (``darkcsp.backends.file_runtimes()``)."""
    from ..backends import file_runtimes
    from ..errors import UnsupportedError
    text = text.strip()
    python = None
    if "@" in text:
        text, python = text.split("@", 1)
    onnx_file = None
    if "=" in text:
        text, onnx_file = text.split("=", 1)
        runtimes = file_runtimes()
        if text not in runtimes:
            raise UnsupportedError(f"backend '{text}={onnx_file}': only {', '.join(n + '=FILE.onnx' for n in runtimes)} "
                                   "run an external ONNX file")
    if not text:
        raise UnsupportedError("empty backend name in --backends")
    return BackendSpec(text, onnx_file=onnx_file, python=python)


def known_backends() -> List[str]:
    """Every registered backend (``darkcsp.backends.BACKENDS``): a newly registered one is benchmarked too."""
    from ..backends import BACKENDS
    return list(BACKENDS)


def calibrated_backends() -> List[str]:
    """The backends that need calibration images (``--calib``): the INT8 ones."""
    from ..backends import CALIBRATED_BACKENDS
    return list(CALIBRATED_BACKENDS)


def default_backends() -> List[str]:
    """Every registered backend that runs without calibration images, OpenCV's Darknet importer (the
    baseline) among them."""
    return [n for n in known_backends() if n not in calibrated_backends()]


@dataclass
class BenchConfig:
    cfg: str
    weights: Optional[str] = None
    width: Optional[int] = None
    height: Optional[int] = None
    dialect: str = "alexeyab"
    backends: Sequence[BackendSpec] = ()
    threads: int = 0                 # 0: every usable core
    batch: int = 1
    warmup: int = 5
    runs: int = 30
    block: int = 5                   # runs per interleaved block
    input: Optional[str] = None      # .npy (N,C,H,W); default a seeded uniform [0,1) tensor
    end_to_end: bool = False
    images: Sequence[str] = ()       # end-to-end inputs (decoded every run)
    agreement: Sequence[str] = ()    # folders with input.npy + detections.json (Darknet's detections)
    calib: Sequence[str] = ()        # calibration images or .npy tensors for the INT8 backends
    baseline: Optional[str] = None   # label of the ratio baseline; default opencv-darknet when present
    timeout: float = 1800.0          # seconds one worker command may take
    nice: int = 0                    # added to the workers' scheduling priority (negative: higher; needs root)


def set_net_size(text: str, width: int, height: int) -> str:
    """Rewrite width/height (and batch/subdivisions = 1) in the first ([net]) section of cfg text."""
    lines = text.split("\n")
    out: List[str] = []
    in_net, seen_net, done = False, False, set()
    values = {"width": width, "height": height, "batch": 1, "subdivisions": 1}
    for line in lines:
        stripped = line.strip().replace(" ", "")
        if stripped.startswith("["):
            if in_net:
                out.extend(f"{k}={v}" for k, v in values.items() if k not in done)
            in_net = not seen_net
            seen_net = True
            out.append(line)
            continue
        key = stripped.split("=", 1)[0] if "=" in stripped else None
        if in_net and key in values:
            if key not in done:
                out.append(f"{key}={values[key]}")
                done.add(key)
            continue
        out.append(line)
    return "\n".join(out)
