"""Speed measurement: latency, fps, effective GFLOP/s and peak RSS of each backend on one network.

Every backend runs in its own worker process (``python -m darkcsp.bench --worker``), driven over a pipe with
one JSON line per command. That gives each backend its own peak RSS, its own thread pools and allocator, lets a
backend crash without taking the others down, and lets one backend run under another interpreter (OpenCV 4's
``readNetFromDarknet`` was removed in OpenCV 5, so ``opencv-darknet`` usually lives in a second venv). The
parent interleaves the backends in blocks (A,B,C,A,B,C,...) so that drift in machine load hits them alike, and
ratios are computed block by block.

A backend spec is ``NAME[=ONNX_FILE][@PYTHON]``:

* ``numpy``, ``onnxruntime``, ``opencv`` ...: ``darkcsp.backends.create_backend(NAME, model, threads=N)``;
* ``opencv-darknet``: OpenCV's own Darknet importer on the same cfg and weights (the usual baseline);
* ``onnxruntime-int8``: the network exported to ONNX and statically quantised (needs calibration inputs);
* ``onnxruntime=FILE.onnx`` / ``opencv=FILE.onnx``: time an ONNX file made elsewhere (e.g. by a peer converter);
* ``@PYTHON``: run that worker with another interpreter (its environment needs numpy and the backend's library,
  plus darkcsp itself for the darkcsp backends; the parent puts this package on its PYTHONPATH).
"""
from __future__ import annotations

import json
import logging
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

log = logging.getLogger("darkcsp")

#: backends whose worker is not a darkcsp.backends backend
SPECIAL_BACKENDS = ("opencv-darknet", "onnxruntime-int8")
#: the environment variable that names a Python with OpenCV 4.x for ``opencv-darknet`` (used when the current
#: OpenCV has no readNetFromDarknet)
OPENCV4_PYTHON_ENV = "DARKCSP_OPENCV4_PYTHON"
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
                   "NUMEXPR_NUM_THREADS")


# ----------------------------------------------------------------------------------------------------------
# machine and process information
# ----------------------------------------------------------------------------------------------------------
def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux, ``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> List[str]:
    """The SIMD features that decide which kernels the libraries pick."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "avx_vnni")
                    return [w for w in wanted if w in have]
    except OSError:
        pass
    return []


def memory_total_gib() -> Optional[float]:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2 ** 20, 1)
    except OSError:
        pass
    return None


def numpy_blas() -> str:
    """Name and version of the BLAS numpy was built with (numpy >= 1.25 reports it as a dict)."""
    try:
        cfg = np.show_config(mode="dicts")  # type: ignore[call-arg]
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        name = blas.get("name", "?")
        version = blas.get("version", "")
        return f"{name} {version}".strip()
    except Exception:  # older numpy: show_config prints and has no mode
        return "?"


def library_versions() -> Dict[str, str]:
    """Versions of the libraries this interpreter can import (absent ones are left out)."""
    from . import __version__
    out = {"python": platform.python_version(), "darkcsp": __version__, "numpy": np.__version__,
           "blas": numpy_blas()}
    for mod, key in (("onnxruntime", "onnxruntime"), ("cv2", "opencv"), ("onnx", "onnx")):
        try:
            out[key] = __import__(mod).__version__
        except Exception:
            pass
    return out


def load_average() -> Optional[Tuple[float, float, float]]:
    try:
        return tuple(round(v, 2) for v in os.getloadavg())  # type: ignore[return-value]
    except (AttributeError, OSError):
        return None


def machine_info() -> Dict[str, Any]:
    """What the header of a benchmark names: CPU, cores, memory, OS and library versions."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count() or 1
    return {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cores": os.cpu_count() or 1,
        "cores_usable": affinity,
        "memory_gib": memory_total_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "versions": library_versions(),
        "load_average": load_average(),
    }


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (Linux >= 4.0: write 5 to /proc/self/clear_refs); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def rss_mib() -> Tuple[Optional[float], Optional[float]]:
    """(current, peak) resident set size of this process in MiB (peak: VmHWM, else ru_maxrss)."""
    cur = peak = None
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    cur = int(line.split()[1]) / 1024
                elif line.startswith("VmHWM:"):
                    peak = int(line.split()[1]) / 1024
    except OSError:
        pass
    if peak is None:
        try:
            import resource
            ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            peak = ru / 1024 if sys.platform != "darwin" else ru / 2 ** 20
        except Exception:
            pass
    return cur, peak


# ----------------------------------------------------------------------------------------------------------
# specs and configuration
# ----------------------------------------------------------------------------------------------------------
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
    """``NAME[=ONNX_FILE][@PYTHON]`` -> BackendSpec."""
    from .errors import UnsupportedError
    text = text.strip()
    python = None
    if "@" in text:
        text, python = text.split("@", 1)
    onnx_file = None
    if "=" in text:
        text, onnx_file = text.split("=", 1)
        if text not in ("onnxruntime", "opencv"):
            raise UnsupportedError(f"backend '{text}={onnx_file}': only onnxruntime=FILE.onnx and opencv=FILE.onnx "
                                   "run an external ONNX file")
    if not text:
        raise UnsupportedError("empty backend name in --backends")
    return BackendSpec(text, onnx_file=onnx_file, python=python)


def known_backends() -> List[str]:
    from .backends import BACKENDS
    names = list(BACKENDS)
    for extra in SPECIAL_BACKENDS:
        if extra not in names:
            names.append(extra)
    return names


def default_backends() -> List[str]:
    """Every darkcsp backend, then OpenCV's Darknet importer (the baseline)."""
    names = [n for n in known_backends() if n != "onnxruntime-int8"]
    return names


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
    calib: Sequence[str] = ()        # calibration images or .npy tensors for onnxruntime-int8
    baseline: Optional[str] = None   # label of the ratio baseline; default opencv-darknet when present
    timeout: float = 1800.0          # seconds one worker command may take
    nice: int = 0                    # added to the workers' scheduling priority (negative: higher; needs root)


# ----------------------------------------------------------------------------------------------------------
# the parent side
# ----------------------------------------------------------------------------------------------------------
class WorkerError(Exception):
    def __init__(self, message: str, skip: bool = False):
        super().__init__(message)
        self.skip = skip


class _Worker:
    """A backend in its own process; ``call`` sends one JSON command and waits for the JSON reply."""

    def __init__(self, spec: BackendSpec, setup: Dict[str, Any], threads: int, tmpdir: Path, index: int,
                 timeout: float = 1800.0):
        self.spec = spec
        self.timeout = timeout
        python = spec.python or sys.executable
        if spec.python and not Path(spec.python).exists() and not shutil.which(spec.python):
            raise WorkerError(f"interpreter {spec.python} not found", skip=True)
        env = dict(os.environ)
        for var in THREAD_ENV_VARS:
            env[var] = str(threads)
        package_root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = package_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["PYTHONUNBUFFERED"] = "1"
        self.stderr_path = tmpdir / f"worker{index}.stderr"
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen([python, "-m", "darkcsp.bench", "--worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._stderr, env=env, cwd=str(tmpdir))
        self.info: Dict[str, Any] = {}
        try:
            self.info = self.call(dict(setup, backend=spec.name, onnx_file=spec.onnx_file, options=spec.options))
        except WorkerError:
            self.close()
            raise

    def call(self, message: Dict[str, Any]) -> Dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write((json.dumps(message) + "\n").encode())
            self.proc.stdin.flush()
            if not self._wait_readable():
                self.proc.kill()
                raise WorkerError(f"no answer within {self.timeout:g} s (worker killed)")
            line = self.proc.stdout.readline()
        except (BrokenPipeError, OSError):
            line = b""
        if not line:
            self.proc.wait(timeout=10)
            raise WorkerError(f"worker exited (code {self.proc.returncode}): {self.stderr_tail()}")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise WorkerError(reply.get("message", "failed"), skip=reply.get("skip", False))
        return reply

    def _wait_readable(self) -> bool:
        """False if the worker has not answered within the timeout (POSIX; elsewhere wait forever)."""
        try:
            import select
            ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout)
            return bool(ready)
        except (ImportError, OSError, ValueError):
            return True

    def stderr_tail(self, n: int = 600) -> str:
        try:
            self._stderr.flush()
            text = self.stderr_path.read_text(errors="replace").strip()
        except OSError:
            return ""
        return text[-n:]

    def close(self) -> Dict[str, Any]:
        reply: Dict[str, Any] = {}
        try:
            if self.proc.poll() is None:
                reply = self.call({"cmd": "exit"})
        except WorkerError:
            pass
        finally:
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self._stderr.close()
        return reply


def _resolve_opencv_darknet_python(spec: BackendSpec) -> BackendSpec:
    """``opencv-darknet`` without @PYTHON: here if this OpenCV still has readNetFromDarknet, else the
    interpreter named by $DARKCSP_OPENCV4_PYTHON."""
    if spec.name != "opencv-darknet" or spec.python:
        return spec
    try:
        import cv2
        if hasattr(cv2, "dnn") and hasattr(cv2.dnn, "readNetFromDarknet"):
            return spec
        here = f"OpenCV {cv2.__version__} has no readNetFromDarknet (removed in OpenCV 5)"
    except ImportError:
        here = "OpenCV is not installed"
    other = os.environ.get(OPENCV4_PYTHON_ENV)
    if other:
        return BackendSpec(spec.name, spec.onnx_file, other, label="", options=spec.options)
    raise WorkerError(f"{here}; install opencv-python<5 in another venv and pass "
                      f"--backends opencv-darknet@/path/to/venv/bin/python (or set ${OPENCV4_PYTHON_ENV})",
                      skip=True)


def _materialise_files(config: BenchConfig, graph, tmpdir: Path, need_plain: bool) -> Tuple[str, Optional[str]]:
    """(cfg, weights) for the workers: a cfg with the benchmarked [net] size and, when OpenCV's importer needs
    them, plain weights (decompressed, or the random initial values written out so every backend shares them)."""
    cfg_path = config.cfg
    c, h, w = graph.input_shape
    if need_plain and (config.width or config.height):
        text = Path(config.cfg).read_text(errors="replace")
        cfg_path = str(tmpdir / "model.cfg")
        Path(cfg_path).write_text(_set_net_size(text, w, h))
    weights = config.weights
    if weights is None or (need_plain and _is_compressed(weights)):
        from .model import load
        from .weights import WeightsFile, write_weights
        model = load(config.cfg, config.weights, width=config.width, height=config.height, dialect=config.dialect)
        weights = str(tmpdir / "model.weights")
        write_weights(weights, WeightsFile(model.header, model.weights), model.graph)
    return cfg_path, weights


def _is_compressed(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except OSError:
        return False
    return magic.startswith(b"\xfd7zXZ") or magic.startswith(b"\x1f\x8b")


def _set_net_size(text: str, width: int, height: int) -> str:
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


def _percentile(a: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(a, dtype=np.float64), q))


def summarise(times: Sequence[float], batch: int, bflops: float) -> Dict[str, Any]:
    """Latency statistics (ms) of a list of per-iteration seconds, with fps and effective GFLOP/s."""
    ms = np.asarray(times, dtype=np.float64) * 1000.0
    med = float(np.median(ms))
    return {
        "latency_ms": {"median": med, "p10": _percentile(ms, 10), "p90": _percentile(ms, 90),
                       "mean": float(ms.mean()), "min": float(ms.min()), "max": float(ms.max())},
        "runs": int(ms.size),
        "fps": batch * 1000.0 / med if med > 0 else float("inf"),
        "gflops": bflops * batch / (med / 1000.0) if med > 0 else float("inf"),
    }


def block_ratios(blocks_a: Sequence[Tuple[int, Sequence[float]]], blocks_b: Sequence[Tuple[int, Sequence[float]]]
                 ) -> Dict[str, Any]:
    """fps(a) / fps(b) per interleaved block (median of each block; ``(block index, times)`` pairs, only blocks
    both ran), summarised as median and p10..p90."""
    b_by = {i: t for i, t in blocks_b}
    r = [float(np.median(b_by[i])) / float(np.median(a)) for i, a in blocks_a if i in b_by and len(a) and len(b_by[i])]
    if not r:
        return {}
    return {"median": float(np.median(r)), "p10": _percentile(r, 10), "p90": _percentile(r, 90), "blocks": len(r)}


def run_bench(config: BenchConfig, progress: Optional[Callable[[int, int, str], None]] = None) -> Dict[str, Any]:
    """Measure every backend of ``config``; return the result dict (see ``format_table`` / ``--json``).

    ``progress(done, total, label)`` is called after each timed block."""
    from .errors import UnsupportedError
    from .graph import load_graph

    graph = load_graph(config.cfg, dialect=config.dialect, width=config.width, height=config.height)
    bflops = graph.bflops_total
    c, h, w = graph.input_shape
    threads = config.threads or _usable_cores()
    if config.end_to_end and not config.images:
        raise UnsupportedError("--end-to-end needs --images (photos decoded, resized and detected every run)")
    if config.input:
        _check_input_file(config.input, graph.input_shape)
    specs = list(config.backends) or [BackendSpec(n) for n in default_backends()]
    result: Dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "model": {"cfg": str(config.cfg), "weights": str(config.weights) if config.weights else None,
                  "random_weights": config.weights is None, "width": w, "height": h, "channels": c,
                  "bflops": bflops, "layers": len(graph.layers), "params": graph.params_total},
        "settings": {"threads": threads, "batch": config.batch, "warmup": config.warmup, "runs": config.runs,
                     "nice": config.nice,
                     "block": config.block, "end_to_end": config.end_to_end,
                     "images": [str(p) for p in config.images], "dialect": config.dialect},
        "machine": machine_info(),
        "backends": [],
    }
    with tempfile.TemporaryDirectory(prefix="darkcsp-bench-") as tmp:
        tmpdir = Path(tmp)
        resolved: List[Tuple[BackendSpec, Optional[str]]] = []
        for spec in specs:
            try:
                resolved.append((_resolve_opencv_darknet_python(spec), None))
            except WorkerError as e:
                resolved.append((spec, str(e)))
        need_plain = any(s.name == "opencv-darknet" and not why for s, why in resolved)
        cfg_path, weights_path = _materialise_files(config, graph, tmpdir, need_plain)
        if config.weights and weights_path == config.weights:
            # A weights file that does not fit the cfg is the user's mistake: say so once, not per backend.
            from .weights import read_weights
            read_weights(config.weights, graph)
        if config.input:
            x_path = str(Path(config.input).resolve())
        else:
            x = np.random.default_rng(0).random((config.batch, c, h, w), dtype=np.float32)
            x_path = str(tmpdir / "input.npy")
            np.save(x_path, x)
        setup = {"cfg": str(Path(cfg_path).resolve()), "orig_cfg": str(Path(config.cfg).resolve()),
                 "weights": str(Path(weights_path).resolve()) if weights_path else None,
                 "width": w, "height": h, "dialect": config.dialect, "threads": threads,
                 "batch": config.batch, "input": x_path, "end_to_end": config.end_to_end,
                 "images": [str(Path(p).resolve()) for p in config.images],
                 "calib": [str(Path(p).resolve()) for p in config.calib], "warmup": config.warmup,
                 "nice": config.nice}
        entries: List[Dict[str, Any]] = []
        workers: List[Tuple[Dict[str, Any], _Worker]] = []
        try:
            # Set-up and warm-up one backend at a time, so that no set-up competes with another's timing.
            for i, (spec, why) in enumerate(resolved):
                entry: Dict[str, Any] = {"backend": spec.name, "label": spec.label, "python": spec.python,
                                         "onnx_file": spec.onnx_file, "status": "ok"}
                entries.append(entry)
                if why:
                    entry.update(status="skipped", message=why)
                    continue
                try:
                    worker = _Worker(spec, setup, threads, tmpdir, i, timeout=config.timeout)
                    entry["info"] = {k: v for k, v in worker.info.items() if k not in ("ok",)}
                    workers.append((entry, worker))
                except WorkerError as e:
                    entry.update(status="skipped" if e.skip else "failed", message=str(e))
            _timed_rounds(config, workers, progress)
            if config.agreement:
                dirs = [str(Path(d).resolve()) for d in config.agreement]
                for entry, worker in workers:
                    if entry["status"] != "ok":
                        continue
                    try:
                        entry["agreement"] = worker.call({"cmd": "agree", "dirs": dirs})["agreement"]
                    except WorkerError as e:
                        entry["agreement"] = {"error": str(e)}
        finally:
            for entry, worker in workers:
                reply = worker.close()
                if "peak_rss_mib" in reply:
                    entry["peak_rss_mib"] = reply["peak_rss_mib"]
    for entry in entries:
        if entry["status"] == "ok" and entry.get("times"):
            entry.update(summarise(entry["times"], config.batch, bflops))
    _add_ratios(result, entries, config.baseline)
    result["backends"] = entries
    result["machine"]["load_average_end"] = load_average()
    return result


def _check_input_file(path: str, shape: Tuple[int, int, int]) -> None:
    from .errors import DarkcspError
    try:
        x = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as e:
        raise DarkcspError(f"cannot read input tensor: {e}", file=str(path)) from None
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(shape):
        raise DarkcspError(f"input has shape {tuple(x.shape)}, the network expects (N, {shape[0]}, {shape[1]}, "
                           f"{shape[2]})", file=str(path))


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _timed_rounds(config: BenchConfig, workers: List[Tuple[Dict[str, Any], "_Worker"]],
                  progress: Optional[Callable[[int, int, str], None]]) -> None:
    """Interleave the timed runs in blocks; rotate the order each round so no backend always follows another.
    A backend with fewer runs (``BackendSpec.runs``) joins evenly spread blocks only."""
    live = [(e, w) for e, w in workers]
    block = max(1, config.block)
    runs = max(1, config.runs)
    n_blocks = math.ceil(runs / block)
    plan: Dict[int, set] = {}
    total = 0
    for e, w in live:
        e["times"], e["blocks"] = [], []
        own = min(runs, w.spec.runs) if w.spec.runs else runs
        k = max(1, math.ceil(own / block))
        plan[id(e)] = set(np.linspace(0, n_blocks - 1, k).round().astype(int).tolist())
        e["_left"] = own
        total += own
    done = 0
    for b in range(n_blocks):
        k = b % max(1, len(live))
        for entry, worker in live[k:] + live[:k]:
            if entry["status"] != "ok" or b not in plan[id(entry)] or entry["_left"] <= 0:
                continue
            n = min(block, entry["_left"])
            try:
                times = worker.call({"cmd": "time", "n": n})["times"]
            except WorkerError as e:
                entry.update(status="failed", message=str(e))
                continue
            entry["_left"] -= n
            entry["times"].extend(times)
            entry["blocks"].append((b, times))
            done += n
            if progress:
                progress(done, total, entry["label"])
    for e, _ in live:
        e.pop("_left", None)


def _add_ratios(result: Dict[str, Any], entries: List[Dict[str, Any]], baseline: Optional[str]) -> None:
    ok = [e for e in entries if e["status"] == "ok" and e.get("times")]
    base = None
    if baseline:
        base = next((e for e in ok if e["label"] == baseline or e["backend"] == baseline), None)
    else:
        base = next((e for e in ok if e["backend"] == "opencv-darknet"), None)
    result["baseline"] = base["label"] if base else None
    if not base:
        return
    for e in ok:
        e["vs_baseline"] = block_ratios(e["blocks"], base["blocks"])
        e["vs_baseline"]["overall"] = e["fps"] / base["fps"]


# ----------------------------------------------------------------------------------------------------------
# presentation
# ----------------------------------------------------------------------------------------------------------
def format_header(result: Dict[str, Any]) -> str:
    m, s, md = result["machine"], result["settings"], result["model"]
    v = m["versions"]
    libs = ", ".join(f"{k} {v[k]}" for k in ("numpy", "onnxruntime", "opencv") if k in v)
    blas = f" ({v['blas']})" if v.get("blas") and v["blas"] != "?" else ""
    what = "end-to-end (decode+resize+network+boxes+NMS)" if s["end_to_end"] else "network only"
    prio = f", priority {s['nice']:+d}" if s.get("nice") else ""
    lines = [
        f"darkcsp bench {result['date']}: {md['cfg']} {md['width']}x{md['height']}, "
        f"{md['bflops']:.3f} BFLOPs, {'random weights' if md['random_weights'] else md['weights']}",
        f"  {what}; batch {s['batch']}, threads {s['threads']}, {s['warmup']} warm-up + {s['runs']} timed runs "
        f"each, interleaved in blocks of {s['block']}{prio}",
        f"  machine: {m['cpu']} ({m['cores']} cores, {m['cores_usable']} usable"
        f"{', ' + ' '.join(m['cpu_flags']) if m['cpu_flags'] else ''}), {m['memory_gib']} GiB, {m['os']}",
        f"  python {v.get('python')}, darkcsp {v.get('darkcsp')}, {libs}{blas}; load average "
        f"{_fmt_load(m.get('load_average'))} -> {_fmt_load(m.get('load_average_end'))}",
    ]
    return "\n".join(lines)


def _fmt_load(load) -> str:
    return "/".join(f"{x:.2f}" for x in load) if load else "?"


def format_table(result: Dict[str, Any]) -> str:
    """The human-readable report: header, then one row per backend (skipped ones say why)."""
    base = result.get("baseline")
    entries = result["backends"]
    agree = any("agreement" in e for e in entries)
    width = max([len(e["label"]) for e in entries] + [7])
    head = (f"{'backend':<{width}}  {'median ms':>9}  {'p10':>7}  {'p90':>7}  {'fps':>7}  {'GFLOP/s':>7}  "
            f"{'peak RSS MiB':>12}")
    if base:
        head += f"  {'x ' + base:>{max(18, len(base) + 2)}}"
    if agree:
        head += "  agreement"
    lines = [format_header(result), "", head, "-" * len(head)]
    for e in entries:
        if e["status"] != "ok" or not e.get("times"):
            lines.append(f"{e['label']:<{width}}  {e['status']}: {e.get('message', 'no runs')}")
            continue
        lat = e["latency_ms"]
        rss = e.get("peak_rss_mib")
        row = (f"{e['label']:<{width}}  {lat['median']:9.2f}  {lat['p10']:7.2f}  {lat['p90']:7.2f}  "
               f"{e['fps']:7.2f}  {e['gflops']:7.1f}  {(f'{rss:.0f}' if rss else '?'):>12}")
        if base:
            r = e.get("vs_baseline") or {}
            cell = f"{r['median']:.2f} [{r['p10']:.2f}-{r['p90']:.2f}]" if r.get("median") else "-"
            row += f"  {cell:>{max(18, len(base) + 2)}}"
        if agree:
            row += "  " + format_agreement(e.get("agreement"))
        lines.append(row)
    if base:
        lines.append(f"(x {base}: fps ratio, median [p10-p90] over interleaved blocks)")
    return "\n".join(lines)


def format_agreement(a: Optional[Dict[str, Any]]) -> str:
    if not a:
        return "-"
    if "error" in a:
        return f"n/a ({a['error']})"
    return (f"{a['matched']}/{a['expected']} ({100 * a['recall']:.0f}%) same class IoU>={a['iou']:g}, "
            f"max |dprob| {a['max_prob_diff']:.3f}, {a['extra']} extra")


def to_json(result: Dict[str, Any], keep_times: bool = False) -> str:
    """JSON text of a result; per-run times are dropped unless ``keep_times``."""
    def strip(e):
        e = {k: v for k, v in e.items() if keep_times or k not in ("times", "blocks")}
        if "blocks" in e:
            e["blocks"] = [{"block": i, "times": t} for i, t in e["blocks"]]
        return e
    out = dict(result, backends=[strip(e) for e in result["backends"]])
    return json.dumps(out, indent=1, default=float)


def plot(result: Dict[str, Any], path) -> None:
    """Bar chart of fps per backend with p10..p90 whiskers, written atomically (matplotlib, Agg)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from .fileio import atomic_path

    ok = [e for e in result["backends"] if e["status"] == "ok" and e.get("times")]
    labels = [e["label"] for e in ok]
    fps = [e["fps"] for e in ok]
    batch = result["settings"]["batch"]
    lo = [f - batch * 1000.0 / e["latency_ms"]["p90"] for f, e in zip(fps, ok)]
    hi = [batch * 1000.0 / e["latency_ms"]["p10"] - f for f, e in zip(fps, ok)]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(ok) + 2), 4))
    bars = ax.bar(range(len(ok)), fps, yerr=[lo, hi], capsize=4, color="#4C72B0")
    for bar, f, up in zip(bars, fps, hi):
        ax.annotate(f"{f:.1f}", (bar.get_x() + bar.get_width() / 2, bar.get_height() + up), ha="center",
                    va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(range(len(ok)))
    ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=8)
    md, s, m = result["model"], result["settings"], result["machine"]
    ax.set_ylabel("frames per second (median; whiskers p10..p90)")
    ax.set_title(f"{Path(md['cfg']).name} {md['width']}x{md['height']}, batch {s['batch']}, "
                 f"{s['threads']} threads\n{m['cpu']}, {result['date']}", fontsize=9)
    fig.tight_layout()
    suffix = Path(path).suffix.lstrip(".") or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=suffix, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------------------
# the worker side (runs in the backend's own process; may be another interpreter)
# ----------------------------------------------------------------------------------------------------------
class _Runner:
    """Runs the network on a prepared input; ``outputs_by_layer`` maps outputs to Darknet layer indices."""

    def infer(self, x: np.ndarray):
        raise NotImplementedError

    def outputs_by_layer(self, out) -> Dict[int, np.ndarray]:
        raise NotImplementedError

    def details(self) -> Dict[str, Any]:
        return {}


class _DarkcspRunner(_Runner):
    def __init__(self, setup: Dict[str, Any], name: str, model):
        from .backends import create_backend
        options = dict(setup.get("options") or {})
        options.setdefault("threads", setup["threads"])
        try:
            self.backend = create_backend(name, model, **options)
        except TypeError as e:
            if "threads" not in str(e):
                raise
            options.pop("threads")  # a backend without a thread option (numpy: BLAS threads come from the env)
            self.backend = create_backend(name, model, **options)
        if hasattr(self.backend, "warmup"):  # export + session creation now, not in the first timed run
            self.backend.warmup(int(setup["batch"]))

    def infer(self, x):
        return self.backend.run(x)

    def outputs_by_layer(self, out):
        return out


class _OnnxFileRunner(_Runner):
    """An ONNX file made elsewhere (a peer converter, ``darkcsp convert``) on onnxruntime or OpenCV DNN."""

    def __init__(self, path: str, engine: str, threads: int, options: Optional[Dict[str, Any]] = None):
        self.path, self.engine = path, engine
        options = options or {}
        if engine == "onnxruntime":
            import onnxruntime as ort
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            for key, value in (options.get("session_config") or {}).items():  # e.g. session.intra_op.allow_spinning
                so.add_session_config_entry(key, str(value))
            self.sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
            self.input_name = self.sess.get_inputs()[0].name
            self.output_names = [o.name for o in self.sess.get_outputs()]
        else:
            import cv2
            cv2.setNumThreads(threads)
            engine_name = options.get("opencv_engine")  # OpenCV 5: ENGINE_AUTO / ENGINE_CLASSIC / ENGINE_NEW
            self.net = (cv2.dnn.readNetFromONNX(path, getattr(cv2.dnn, engine_name)) if engine_name
                        else cv2.dnn.readNetFromONNX(path))
            self.output_names = list(self.net.getUnconnectedOutLayersNames())

    def infer(self, x):
        if self.engine == "onnxruntime":
            return self.sess.run(None, {self.input_name: x})
        self.net.setInput(x)
        return self.net.forward(self.output_names)

    def outputs_by_layer(self, out):
        """Outputs named after a Darknet layer index (``layer_30``, ``l30_...``, ``yolo_30``) map back to it."""
        mapped = {}
        for name, arr in zip(self.output_names, out):
            m = re.search(r"(\d+)", name)
            if not m:
                raise WorkerError(f"cannot tell which Darknet layer ONNX output '{name}' is")
            mapped[int(m.group(1))] = np.asarray(arr)
        return mapped

    def details(self):
        return {"onnx_file": self.path, "engine": self.engine}


class _OpenCvDarknetRunner(_Runner):
    """OpenCV's own Darknet importer (cv2.dnn.readNetFromDarknet, OpenCV <= 4.x)."""

    def __init__(self, cfg: str, weights: str, threads: int):
        import cv2
        if not hasattr(cv2.dnn, "readNetFromDarknet"):
            raise WorkerError(f"OpenCV {cv2.__version__} has no readNetFromDarknet (removed in OpenCV 5): run "
                              "opencv-darknet with a Python that has OpenCV 4.x (NAME@PYTHON)", skip=True)
        cv2.setNumThreads(threads)
        self.net = cv2.dnn.readNetFromDarknet(cfg, weights)
        self.net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        self.net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        self.names = list(self.net.getUnconnectedOutLayersNames())

    def infer(self, x):
        self.net.setInput(x)
        return self.net.forward(self.names)

    def outputs_by_layer(self, out):
        raise WorkerError("OpenCV's Darknet importer returns decoded boxes, not Darknet's layer outputs")


def _worker_versions() -> Dict[str, str]:
    out = {"python": platform.python_version(), "numpy": np.__version__}
    for mod, key in (("onnxruntime", "onnxruntime"), ("cv2", "opencv")):
        if mod in sys.modules:
            out[key] = sys.modules[mod].__version__
    return out


class _WorkerSession:
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
        self.model = None
        t0 = time.perf_counter()
        self.runner = self._make_runner()
        self.x = np.ascontiguousarray(np.load(setup["input"]).astype(np.float32, copy=False))
        self.step = self._make_step()
        self.setup_s = time.perf_counter() - t0
        # Peak RSS is reported for running the network (warm-up + timed runs), not for building it (an export
        # or an INT8 calibration can take far more memory than inference).
        self.setup_peak_mib = rss_mib()[1]
        self.peak_reset = reset_peak_rss()
        for _ in range(int(setup.get("warmup", 0))):
            self.step()

    def _load_model(self):
        if self.model is None:
            from .model import load
            s = self.setup
            self.model = load(s["orig_cfg"], s["weights"], width=s["width"], height=s["height"],
                              dialect=s["dialect"])
        return self.model

    def _make_runner(self) -> _Runner:
        s = self.setup
        if s.get("onnx_file"):
            return _OnnxFileRunner(s["onnx_file"], self.name, self.threads, s.get("options"))
        if self.name == "opencv-darknet":
            return _OpenCvDarknetRunner(s["cfg"], s["weights"], self.threads)
        if self.name == "opencv":
            import cv2
            cv2.setNumThreads(self.threads)
        if self.name == "onnxruntime-int8":
            return self._make_int8_runner()
        from .backends import BACKENDS
        if self.name not in BACKENDS:
            raise WorkerError(f"unknown backend '{self.name}': this installation has "
                              f"{', '.join(list(BACKENDS) + list(SPECIAL_BACKENDS))}", skip=True)
        return _DarkcspRunner(s, self.name, self._load_model())

    def _make_int8_runner(self) -> _Runner:
        s = self.setup
        if not s.get("calib"):
            raise WorkerError("onnxruntime-int8 needs calibration inputs (--calib IMAGES or .npy tensors)", skip=True)
        from .onnx.quantize import quantize_model
        path = str(Path.cwd() / "int8.onnx")
        quantize_model(self._load_model(), s["calib"], path)
        return _OnnxFileRunner(path, "onnxruntime", self.threads)

    def _make_step(self) -> Callable[[], Any]:
        if not self.setup.get("end_to_end"):
            x = self.x
            if x.shape[0] != self.batch:
                x = np.repeat(x[:1], self.batch, axis=0)
                self.x = x
            return lambda: self.runner.infer(x)
        return self._end_to_end_step()

    def _end_to_end_step(self) -> Callable[[], Any]:
        """Read + decode + resize each photo, run, decode boxes + NMS: what a caller of the backend does."""
        images = list(self.setup["images"])
        batch = self.batch
        paths = [images[i % len(images)] for i in range(batch)]
        if self.name == "opencv-darknet":
            return self._opencv_end_to_end(paths)
        try:
            from . import image as dimage
            from .postprocess import detect
        except ImportError as e:
            raise WorkerError(f"--end-to-end needs darkcsp's image and postprocess modules ({e})", skip=True)
        model = self._load_model()
        net = model.graph.net
        w, h = self.setup["width"], self.setup["height"]
        layers, dialect = model.graph.layers, self.setup["dialect"]

        def step():
            xs, sizes = [], []
            for p in paths:
                img = dimage.load_image(p)
                sizes.append((img.shape[2], img.shape[1]))
                xs.append(dimage.preprocess(img, w, h, letter=bool(net.letter_box))[0])
            out = self.runner.outputs_by_layer(self.runner.infer(np.stack(xs)))
            return [detect(layers, {k: v[i:i + 1] for k, v in out.items()}, w, h, iw, ih,
                           letter=bool(net.letter_box), dialect=dialect) for i, (iw, ih) in enumerate(sizes)]
        return step

    def _opencv_end_to_end(self, paths: List[str]) -> Callable[[], Any]:
        """OpenCV's own pipeline: imread, blobFromImage (its resize), forward, NMSBoxes."""
        import cv2
        w, h = self.setup["width"], self.setup["height"]
        net = self.runner.net  # type: ignore[attr-defined]
        names = self.runner.names  # type: ignore[attr-defined]

        def step():
            imgs = [cv2.imread(p) for p in paths]
            blob = cv2.dnn.blobFromImages(imgs, 1 / 255.0, (w, h), swapRB=True, crop=False)
            net.setInput(blob)
            outs = net.forward(names)
            res = []
            for i in range(len(imgs)):
                rows = np.concatenate([o.reshape(-1, o.shape[-1]) if o.ndim == 2 else o[i] for o in outs])
                scores = rows[:, 5:]
                cls = scores.argmax(1)
                conf = scores[np.arange(len(rows)), cls]
                keep = conf > 0.25
                boxes = rows[keep, :4]
                xywh = np.stack([boxes[:, 0] - boxes[:, 2] / 2, boxes[:, 1] - boxes[:, 3] / 2, boxes[:, 2],
                                 boxes[:, 3]], 1) if len(boxes) else np.zeros((0, 4))
                idx = cv2.dnn.NMSBoxes(xywh.tolist(), conf[keep].tolist(), 0.25, 0.45)
                res.append((xywh, cls[keep], conf[keep], idx))
            return res
        return step

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
        from .postprocess import detect
        model = self._load_model()
        layers, w, h = model.graph.layers, self.setup["width"], self.setup["height"]

        def run(x: np.ndarray, image_w: int, image_h: int, letter_box: int):
            if x.shape[0] != self.batch:  # a backend built for a fixed batch gets the image repeated
                x = np.repeat(x[:1], self.batch, axis=0)
            out = self.runner.outputs_by_layer(self.runner.infer(x))
            return detect(layers, {k: v[:1] for k, v in out.items()}, w, h, image_w, image_h,
                          letter=bool(letter_box), dialect=self.setup["dialect"])
        return detection_agreement(run, dirs)


def detection_agreement(run: Callable[..., Sequence[Any]], dirs: Sequence[str], iou: float = 0.8
                        ) -> Dict[str, Any]:
    """For each folder (input.npy + detections.json): how many of Darknet's detections the backend recovers with
    the same class and IoU >= ``iou``, the largest probability difference over those, and the extras."""
    matched = expected = extra = 0
    max_diff = 0.0
    per_image = {}
    for d in dirs:
        d = Path(d)
        golden = json.loads((d / "detections.json").read_text())
        x = np.load(d / "input.npy").astype(np.float32)
        got = run(x, golden["image_w"], golden["image_h"], golden.get("letter_box", 0))
        got = [_det_tuple(g) for g in got]
        used = set()
        m_here = 0
        for gd in golden["detections"]:
            gbox = (gd["x"], gd["y"], gd["w"], gd["h"])
            best, best_j = 0.0, None
            for j, (cls, prob, box) in enumerate(got):
                if j in used or cls != gd["class_id"]:
                    continue
                v = box_iou(gbox, box)
                if v > best:
                    best, best_j = v, j
            if best_j is not None and best >= iou:
                used.add(best_j)
                m_here += 1
                max_diff = max(max_diff, abs(got[best_j][1] - gd["prob"]))
        matched += m_here
        expected += len(golden["detections"])
        extra += len(got) - len(used)
        per_image[d.name] = {"matched": m_here, "expected": len(golden["detections"]), "got": len(got)}
    return {"matched": matched, "expected": expected, "recall": matched / expected if expected else 1.0,
            "iou": iou, "max_prob_diff": max_diff, "extra": extra, "images": per_image}


def _det_tuple(d) -> Tuple[int, float, Tuple[float, float, float, float]]:
    """(class_id, prob, (x, y, w, h) relative centre box) from a postprocess detection (dict or object)."""
    get = d.get if isinstance(d, dict) else (lambda k, default=None: getattr(d, k, default))
    return int(get("class_id")), float(get("prob")), (float(get("x")), float(get("y")), float(get("w")),
                                                      float(get("h")))


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two (centre x, centre y, w, h) boxes."""
    ax0, ay0, ax1, ay1 = a[0] - a[2] / 2, a[1] - a[3] / 2, a[0] + a[2] / 2, a[1] + a[3] / 2
    bx0, by0, bx1, by1 = b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2, b[1] + b[3] / 2
    iw = max(0.0, min(ax1, bx1) - max(ax0, bx0))
    ih = max(0.0, min(ay1, by1) - max(ay0, by0))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _worker_main() -> int:
    """Serve JSON commands on stdin; replies go to the original stdout, anything printed goes to stderr."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    logging.basicConfig(level=logging.WARNING, format="darkcsp worker: %(levelname)s: %(message)s")

    def reply(**kw):
        proto.write(json.dumps(dict(kw), default=float) + "\n")
        proto.flush()

    session: Optional[_WorkerSession] = None
    for line in sys.stdin:
        msg = json.loads(line)
        cmd = msg.get("cmd", "setup")
        try:
            if cmd == "setup":
                session = _WorkerSession(msg)
                cur, peak = rss_mib()
                reply(ok=True, setup_s=session.setup_s, rss_after_warmup_mib=cur, versions=_worker_versions(),
                      details=session.runner.details(), threads=session.threads,
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
            from .errors import DarkcspError, UnsupportedError
            text = str(e) or type(e).__name__
            reply(ok=False, message=text if isinstance(e, DarkcspError) else f"{type(e).__name__}: {text}",
                  skip=isinstance(e, (UnsupportedError, NotImplementedError)))
    return 0


if __name__ == "__main__":
    if "--worker" in sys.argv[1:]:
        sys.exit(_worker_main())
    print("usage: darkcsp bench (this module's --worker mode is started by the bench itself)", file=sys.stderr)
    sys.exit(2)
