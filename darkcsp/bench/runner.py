"""The parent side of a benchmark: one worker process per backend (``darkcsp.bench.worker``), set up one at a
time, then timed in interleaved blocks; statistics and block-by-block ratios."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .machine import load_average, machine_info, usable_cores
from .specs import OPENCV4_PYTHON_ENV, THREAD_ENV_VARS, BackendSpec, BenchConfig, default_backends, set_net_size
from .worker import WorkerError

__all__ = ["run_bench", "summarise", "block_ratios"]


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
        package_root = str(Path(__file__).resolve().parent.parent.parent)
        env["PYTHONPATH"] = package_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["PYTHONUNBUFFERED"] = "1"
        self.stderr_path = tmpdir / f"worker{index}.stderr"
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen([python, "-m", "darkcsp.bench.worker"], stdin=subprocess.PIPE,
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


def _materialise_files(config: BenchConfig, graph, tmpdir: Path) -> Tuple[str, Optional[str]]:
    """(cfg, weights) for the workers: a cfg with the benchmarked [net] size (OpenCV's Darknet importer reads
    the size from the file) and, for a run without weights, darkcsp's random initial values written out once so
    that every backend runs the same network."""
    cfg_path = config.cfg
    c, h, w = graph.input_shape
    if config.width or config.height:
        text = Path(config.cfg).read_text(errors="replace")
        cfg_path = str(tmpdir / "model.cfg")
        Path(cfg_path).write_text(set_net_size(text, w, h))
    weights = config.weights
    if weights is None:
        from ..model import load
        from ..weights import WeightsFile, write_weights
        model = load(config.cfg, None, width=config.width, height=config.height, dialect=config.dialect)
        weights = str(tmpdir / "model.weights")
        write_weights(weights, WeightsFile(model.header, model.weights), model.graph)
    return cfg_path, weights


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
    from ..errors import UnsupportedError
    from ..graph import load_graph, load_input

    graph = load_graph(config.cfg, dialect=config.dialect, width=config.width, height=config.height)
    bflops = graph.bflops_total
    c, h, w = graph.input_shape
    threads = config.threads or usable_cores()
    if config.end_to_end and not config.images:
        raise UnsupportedError("--end-to-end needs --images (photos decoded, resized and detected every run)")
    if config.input:
        load_input(config.input, graph)  # a tensor that does not fit is the user's mistake: say so once
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
        cfg_path, weights_path = _materialise_files(config, graph, tmpdir)
        if config.weights and weights_path == config.weights:
            # A weights file that does not fit the cfg is the user's mistake: say so once, not per backend.
            from ..weights import read_weights
            read_weights(config.weights, graph)
        if config.input:
            x_path = str(Path(config.input).resolve())
        else:
            x = np.random.default_rng(0).random((config.batch, c, h, w), dtype=np.float32)
            x_path = str(tmpdir / "input.npy")
            np.save(x_path, x)
        setup = {"cfg": str(Path(cfg_path).resolve()),
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
