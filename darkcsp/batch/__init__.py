"""``darkcsp batch``: resumable, loss-free detection over large image sets.

The pieces: :func:`list_inputs` (folders, globs, ``@list.txt``), :class:`ResultsStore` (the JSON Lines output:
append per record, resume, torn-line repair, one record per input), and two engines over one
:class:`DetectorSpec`: :func:`run_local` (one process, threads decode/preprocess while the backend runs) and
:func:`run_ray` (Ray Data ``map_batches`` with one Detector per actor, on this machine or a Ray cluster)::

    from darkcsp.batch import DetectorSpec, ResultsStore, list_inputs, run_local
    keys = list_inputs(["photos/"])
    with ResultsStore("results.jsonl") as store:
        run_local(DetectorSpec("yolov4-tiny.cfg", "yolov4-tiny.weights"), store.missing(keys), store)
"""
from __future__ import annotations

from .engine import DetectorSpec, error_record
from .inputs import IMAGE_EXTS, list_inputs, read_list_file
from .local import run_local
from .ray_engine import run_ray
from .store import ResultsStore

__all__ = ["DetectorSpec", "ResultsStore", "list_inputs", "read_list_file", "run_local", "run_ray",
           "error_record", "IMAGE_EXTS"]
