"""Speed measurement: latency, fps, effective GFLOP/s and peak RSS of each backend on one network.

Every backend runs in its own worker process (``python -m darkcsp.bench.worker``), driven over a pipe with one
JSON line per command. That gives each backend its own peak RSS, its own thread pools and allocator, lets a
backend crash without taking the others down, and lets one backend run under another interpreter (OpenCV 4's
``readNetFromDarknet`` was removed in OpenCV 5, so ``opencv-darknet`` usually lives in a second venv). The
parent interleaves the backends in blocks (A,B,C,A,B,C,...) so that drift in machine load hits them alike, and
ratios are computed block by block.

A backend spec is ``NAME[=ONNX_FILE][@PYTHON]``:

* ``NAME``: any registered backend (``darkcsp.backends.BACKENDS``: numpy, onnxruntime, opencv, opencv-darknet,
  openvino, ...), built with ``create_backend(NAME, model, threads=N)``; the INT8 ones get ``--calib``;
* ``NAME=FILE.onnx``: an ONNX file made elsewhere (e.g. by a peer converter) on that ONNX runtime
  (``darkcsp.backends.OnnxFileBackend``);
* ``@PYTHON``: run that worker with another interpreter (its environment needs numpy and the backend's
  library, onnx for ONNX files; the parent puts this package on its PYTHONPATH).

Modules: ``specs`` (what to measure), ``runner`` (the parent side), ``worker`` (the worker process),
``machine`` (machine and process information), ``fidelity`` (detections recovered), ``report`` (table,
JSON, plot).
"""
from __future__ import annotations

from .fidelity import centre_box_iou, detection_agreement
from .machine import machine_info, rss_mib
from .report import format_agreement, format_header, format_table, plot, to_json
from .runner import block_ratios, run_bench, summarise
from .specs import (OPENCV4_PYTHON_ENV, BackendSpec, BenchConfig, calibrated_backends, default_backends,
                    known_backends, parse_backend_spec, set_net_size)
from .worker import WorkerError

__all__ = ["BackendSpec", "BenchConfig", "OPENCV4_PYTHON_ENV", "WorkerError", "block_ratios", "calibrated_backends",
           "centre_box_iou", "default_backends", "detection_agreement", "format_agreement", "format_header",
           "format_table", "known_backends", "machine_info", "parse_backend_spec", "plot", "rss_mib", "run_bench",
           "set_net_size", "summarise", "to_json"]
