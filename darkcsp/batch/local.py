"""The local engine: one process; reader threads load, decode and preprocess the next images while inference
streams run batches, each stream a Detector of its own on a few backend threads (OpenCV's decoder, NumPy's
resize and onnxruntime release the GIL, so the threads run in parallel).

Several single-thread streams rather than one backend on every core: a small network such as yolov4-tiny gains
little from a second intra-op thread (its layers are short, the threads wait for each other at every layer),
while two independent streams keep both cores busy; that is also what the Ray engine's actors do. Measured with
tools/bench_batch.py on 2 cores: see the README's Batch section."""
from __future__ import annotations

import collections
import os
import queue
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Deque, List, Optional, Sequence, Tuple

from .engine import DetectorSpec, Prepared, TestExitHook, infer, prepare
from .store import ResultsStore


def default_streams(streams: Optional[int] = None, backend_threads: Optional[int] = None) -> Tuple[int, int]:
    """(inference streams, backend threads per stream): by default up to 4 streams sharing the cores."""
    cpus = os.cpu_count() or 1
    streams = streams or max(1, min(4, cpus // (backend_threads or 1)))
    return streams, backend_threads or max(1, cpus // streams)


def default_readers() -> int:
    """Reader threads: a quarter of the cores, at least 2."""
    return max(2, (os.cpu_count() or 1) // 4)


def build_detectors(spec: DetectorSpec, streams: Optional[int] = None, backend_threads: Optional[int] = None):
    """One Detector per inference stream, from one loaded model."""
    streams, backend_threads = default_streams(streams, backend_threads)
    return spec.build_many(streams, threads=backend_threads)


def run_local(spec: DetectorSpec, keys: Sequence[str], store: ResultsStore, save_dir: Optional[Path] = None,
              threads: Optional[int] = None, streams: Optional[int] = None, backend_threads: Optional[int] = None,
              progress: bool = True, detectors=None) -> int:
    """Detect ``keys`` (the inputs not recorded yet) and append one record each to ``store``; returns how many
    records were written. ``threads`` readers (default_readers()), ``streams`` Detectors with ``backend_threads``
    each (default_streams()); ``detectors`` reuses Detectors already built (then ``spec`` is not used)."""
    from tqdm import tqdm
    if not keys:
        return 0
    threads = threads or default_readers()
    dets = list(detectors) if detectors else build_detectors(spec, streams, backend_threads)
    hook = TestExitHook.from_env()
    batch_size = dets[0].batch_size
    # prepared images in flight: enough that a batch is ready whenever a stream is free
    ahead = (len(dets) + 1) * batch_size + threads
    todo = iter(keys)
    prepared: Deque[Future] = collections.deque()
    batches: Deque[Future] = collections.deque()  # in submission order: records are written in input order
    idle: "queue.SimpleQueue" = queue.SimpleQueue()
    for det in dets:
        idle.put(det)
    readers = ThreadPoolExecutor(max(1, threads), thread_name_prefix="darkcsp-read")
    runners = ThreadPoolExecutor(len(dets), thread_name_prefix="darkcsp-infer")

    def fill() -> None:
        while len(prepared) < ahead:
            key = next(todo, None)
            if key is None:
                return
            prepared.append(readers.submit(prepare, dets[0], key))  # load_image/input_tensor hold no state

    def next_batch() -> List[Prepared]:
        batch = [prepared.popleft().result() for _ in range(min(batch_size, len(prepared)))]
        fill()
        return batch

    def run_batch(batch: List[Prepared]):
        det = idle.get()
        try:
            return infer(det, batch, save_dir)
        finally:
            idle.put(det)

    written = errors = 0
    bar = tqdm(total=len(keys), unit="img", desc="batch", disable=not progress, file=sys.stderr, smoothing=0.1)
    try:
        fill()
        while True:
            while len(batches) <= len(dets) and prepared:
                batches.append(runners.submit(run_batch, next_batch()))
            if not batches:
                break
            records = batches.popleft().result()
            for rec in records:
                written += store.append(rec)
                errors += "error" in rec
            if hook is not None:
                hook.processed(len(records))
            bar.update(len(records))
            if errors:
                bar.set_postfix(errors=errors, refresh=False)
    finally:
        for f in (*prepared, *batches):
            f.cancel()
        readers.shutdown(wait=True, cancel_futures=True)
        runners.shutdown(wait=True, cancel_futures=True)
        bar.close()
    return written
