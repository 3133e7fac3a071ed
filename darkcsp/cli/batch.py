"""``darkcsp batch``: resumable detection over large image sets into JSON Lines, in one process or on Ray."""
from __future__ import annotations

import sys
from pathlib import Path

from ..errors import DarkcspError, ImageError
from .common import add_detector_arguments, backend_options, model_files

NAME = "batch"
HELP = "detect objects in many images into a resumable JSON Lines file (local threads or a Ray cluster)"


def add_arguments(p) -> None:
    add_detector_arguments(p)
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files, folders (recursive), globs ('photos/**/*.jpg') or @LIST (one path per line)")
    p.add_argument("--out", required=True, metavar="FILE",
                   help="results, one JSON record per line (the `detect --json` record; an unreadable input gets "
                        "an \"error\"); an existing file is resumed: inputs already in it are skipped")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local: this process, decoding on threads (default); ray: Ray Data actors")
    p.add_argument("--address", metavar="ADDR",
                   help="Ray cluster to join ('auto' or HOST:PORT of `ray start --head`); default: a local Ray "
                        "with this machine's cores")
    p.add_argument("--workers", type=int, metavar="N",
                   help="Ray actors, one Detector each (default: the cluster's CPUs / --cpus-per-worker)")
    p.add_argument("--cpus-per-worker", type=float, default=1.0, metavar="C",
                   help="CPUs each Ray actor reserves and its backend's threads (default: 1)")
    p.add_argument("--threads", type=int, metavar="T",
                   help="local engine: threads reading and preprocessing images ahead of the network (default: a "
                        "quarter of the cores, at least 2)")
    p.add_argument("--streams", type=int, metavar="S",
                   help="local engine: inference streams, one Detector each (default: the cores, at most 4)")
    p.add_argument("--backend-threads", type=int, metavar="T",
                   help="local engine: backend threads per stream (default: the cores / streams)")
    p.add_argument("--batch-size", type=int, default=2, metavar="B",
                   help="images per forward pass (default: 2; onnxruntime on a CPU gains nothing from more, see "
                        "the README's Batch section)")
    p.add_argument("--save-images", metavar="DIR",
                   help="also write annotated copies to DIR/<input path> (with Ray: a folder all nodes share)")


def _spec(args):
    """The DetectorSpec of the model options (resolved as ``detect`` resolves them)."""
    from ..batch import DetectorSpec
    cfg, weights, names = model_files(args)
    return DetectorSpec(cfg=str(cfg), weights=str(weights) if weights else None,
                        names=str(names) if names else None, width=args.width, height=args.height,
                        dialect=args.dialect, backend=args.backend, thresh=args.thresh, hier=args.hier,
                        nms=args.nms, letterbox=True if args.letterbox else None, batch_size=args.batch_size,
                        backend_options=backend_options(args))


def run(args) -> int:
    from ..batch import ResultsStore, list_inputs, run_local, run_ray
    from ..batch.engine import check_save_dir
    from ..batch.local import build_detectors
    for option, value in (("--batch-size", args.batch_size), ("--workers", args.workers),
                          ("--threads", args.threads), ("--streams", args.streams),
                          ("--backend-threads", args.backend_threads)):
        if value is not None and value < 1:
            raise DarkcspError(f"{option} {value} must be at least 1")
    if args.cpus_per_worker <= 0:
        raise DarkcspError(f"--cpus-per-worker {args.cpus_per_worker} must be positive")
    if args.address and args.engine != "ray":
        raise DarkcspError("--address needs --engine ray")
    if args.engine == "ray":
        from ..batch.ray_engine import require_ray
        require_ray()  # before any work: a missing extra is said at once
    keys = list_inputs(args.inputs)
    save_dir = Path(args.save_images) if args.save_images else None
    if save_dir is not None:
        check_save_dir(save_dir)
    spec = _spec(args)
    progress = not args.quiet
    # a bad cfg, weights or option fails before any work (run_ray checks the spec before starting Ray) and
    # leaves no results file (a new one without records is removed)
    detectors = None if args.engine == "ray" else build_detectors(spec, args.streams, args.backend_threads)
    with ResultsStore(args.out) as store:
        todo = store.missing(keys)
        if progress:
            print(f"darkcsp batch: {len(keys)} inputs, {len(keys) - len(todo)} already in {args.out}, "
                  f"{len(todo)} to do ({args.engine} engine)", file=sys.stderr)
        if args.engine == "ray":
            run_ray(spec, todo, store, save_dir, address=args.address, workers=args.workers,
                    cpus_per_worker=args.cpus_per_worker, progress=progress)
        else:
            run_local(spec, todo, store, save_dir, threads=args.threads, progress=progress, detectors=detectors)
        failed = store.errors(keys)
        missing = len(store.missing(keys))
    if missing:  # cannot happen unless an engine lost work: say so rather than exit 0
        raise DarkcspError(f"{missing} inputs have no record in {args.out}: run the same command again to resume")
    if failed:
        print(f"darkcsp: {len(failed)} of {len(keys)} inputs could not be read (records with \"error\" in "
              f"{args.out})", file=sys.stderr)
        return ImageError.exit_code
    return 0
