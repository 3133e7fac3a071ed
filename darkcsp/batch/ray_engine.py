"""The Ray engine: Ray Data over the input list, one Detector per actor, results streamed to the driver.

    ray.data.from_items([{image, path}...]) -> map_batches(DetectActor, ActorPoolStrategy(size=workers), batch_size=B)

The driver is the only writer of the results file: actors return each record as a JSON line, the driver appends
it unless its input is recorded already (a task retried after an actor crash can return a batch a second time).
Ray restarts a crashed actor (``max_restarts``) and resubmits its unfinished task (``max_task_retries``): the
images of that task are done again, nothing is lost. Actors read inputs by absolute path (a cluster needs the
inputs, the cfg/weights and ``--save-images`` on a shared file system).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import numpy as np

from ..errors import DarkcspError, ResourceError, UnsupportedError
from .engine import DetectorSpec, TestExitHook, infer, prepare
from .store import ResultsStore

log = logging.getLogger("darkcsp")

INSTALL_HINT = "pip install 'darkcsp[ray]' (ray[data]>=2.9)"
#: a crashed actor is restarted this many times (an image that crashes the decoder every time ends the job
#: after this many restarts instead of looping; the records written so far stay)
MAX_RESTARTS = 4
#: images per Ray Data block, in batches: a block is the unit of work an actor takes (and redoes after a crash)
BATCHES_PER_BLOCK = 4


def require_ray():
    """``ray`` with Ray Data, or UnsupportedError saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise UnsupportedError(f"--engine ray needs Ray Data, which is not installed ({e}): {INSTALL_HINT}; "
                               "or use --engine local") from None
    return ray


class DetectActor:
    """A Ray Data map_batches callable class: builds one Detector, then turns batches of inputs into records."""

    def __init__(self, spec: DetectorSpec, save_dir: Optional[str], threads: Optional[int],
                 hook: Optional[TestExitHook]):
        options = {"threads": threads} if threads else {}
        self.det = spec.build(**options)
        self.save_dir = Path(save_dir) if save_dir else None
        self.hook = hook

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, Any]:
        keys = [str(k) for k in batch["image"]]
        prepared = [prepare(self.det, k, str(p)) for k, p in zip(keys, batch["path"])]
        records = infer(self.det, prepared, self.save_dir)
        if self.hook is not None:
            self.hook.processed(len(records))  # may exit here: this batch is lost and redone by the retry
        return {"image": np.array(keys, dtype=object),
                "record": np.array([json.dumps(r) for r in records], dtype=object),
                "error": np.array(["error" in r for r in records], dtype=bool)}


def run_ray(spec: DetectorSpec, keys: Sequence[str], store: ResultsStore, save_dir: Optional[Path] = None,
            address: Optional[str] = None, workers: Optional[int] = None, cpus_per_worker: float = 1.0,
            progress: bool = True) -> int:
    """Detect ``keys`` on Ray and append one record each to ``store``; returns how many records were written.

    Uses the Ray instance already initialised in this process, else connects to ``address`` ("auto" or
    host:port of a cluster started with ``ray start --head``), else starts a local one with this machine's
    cores (shut down at the end). ``workers`` actors (default: the cluster's CPUs / ``cpus_per_worker``), each
    reserving ``cpus_per_worker`` CPUs and running its backend with that many threads."""
    from tqdm import tqdm
    if not keys:
        return 0
    ray = require_ray()
    import ray.data
    spec.check()
    started = False
    if not ray.is_initialized():
        try:
            if address:
                ray.init(address=address, logging_level=logging.WARNING)
            else:
                # address="local": a new instance even when `ray start` runs here (--address auto joins that);
                # the instance is ours, so no usage statistics leave the machine unless the user asks for them
                os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
                ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False,
                         logging_level=logging.WARNING)
                started = True
        except ConnectionError as e:
            raise ResourceError(f"cannot connect to the Ray cluster at --address {address}: {e}") from None
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # ours is on the driver, in images/s
        if not log.isEnabledFor(logging.DEBUG):
            logging.getLogger("ray.data").setLevel(logging.WARNING)
        if workers is None:
            cpus = ray.cluster_resources().get("CPU", 1.0)
            workers = max(1, int(cpus // cpus_per_worker))
        spec = _absolute(spec)
        batch_size = spec.batch_size
        per_block = batch_size * BATCHES_PER_BLOCK
        items = [{"image": k, "path": os.path.abspath(k)} for k in keys]
        # at least one block per actor (else some sit idle), at most BATCHES_PER_BLOCK batches per block
        blocks = min(len(items), max(int(workers), math.ceil(len(items) / per_block)))
        ds = ray.data.from_items(items, override_num_blocks=blocks)
        with warnings.catch_warnings():
            # Ray 2.5x+ deprecates the free-form remote args but has no named parameter for actor fault
            # tolerance; its default (restart forever) would loop on an image that crashes every actor
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*")
            ds = ds.map_batches(
                DetectActor, batch_size=batch_size, batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=int(workers)), num_cpus=cpus_per_worker,
                fn_constructor_kwargs={"spec": spec,
                                       "save_dir": str(Path(save_dir).resolve()) if save_dir else None,
                                       "threads": max(1, math.ceil(cpus_per_worker)),
                                       "hook": TestExitHook.from_env()},
                max_restarts=MAX_RESTARTS, max_task_retries=-1)
        written = errors = 0
        with tqdm(total=len(keys), unit="img", desc=f"batch (ray, {workers} workers)", disable=not progress,
                  file=sys.stderr, smoothing=0.1) as bar:
            try:
                for out in ds.iter_batches(batch_size=None, batch_format="numpy"):
                    n = 0
                    for key, text, is_error in zip(out["image"], out["record"], out["error"]):
                        if store.append_line(str(key), str(text), bool(is_error)):
                            n += 1
                            errors += bool(is_error)
                    written += n
                    bar.update(n)
                    if errors:
                        bar.set_postfix(errors=errors, refresh=False)
            except ray.exceptions.RayError as e:
                cause = _darkcsp_cause(e)
                if cause is not None:  # e.g. an actor could not build the Detector: the user's error, not Ray's
                    raise cause from None
                raise
        return written
    finally:
        if started:
            ray.shutdown()


def _absolute(spec: DetectorSpec) -> DetectorSpec:
    """The spec with absolute file paths (an actor's working directory is not the driver's)."""
    def ab(p):
        return os.path.abspath(p) if p and os.path.exists(p) else p
    options = dict(spec.backend_options)
    if options.get("calib"):
        options["calib"] = [ab(p) for p in options["calib"]]
    return dataclasses.replace(spec, cfg=ab(spec.cfg), weights=ab(spec.weights), names=ab(spec.names),
                               backend_options=options)


def _darkcsp_cause(error: BaseException) -> Optional[DarkcspError]:
    """The DarkcspError inside a Ray error (task or actor-creation failures wrap the worker's exception)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, DarkcspError):
            return error
        error = getattr(error, "cause", None) or error.__cause__ or error.__context__
    return None
