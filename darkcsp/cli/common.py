"""Options shared by several subcommands."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import assets
from ..backends import BACKENDS
from ..dialect import DIALECTS


def add_model_arguments(p: argparse.ArgumentParser, cfg_required: bool = True, weights: bool = True) -> None:
    p.add_argument("--cfg", required=cfg_required, help="Darknet .cfg file")
    if weights:
        p.add_argument("--weights", help="Darknet .weights file (.xz/.gz accepted); random weights if omitted")
    p.add_argument("--width", type=int, help="override [net] width")
    p.add_argument("--height", type=int, help="override [net] height")
    p.add_argument("--dialect", choices=list(DIALECTS), default="alexeyab",
                   help="Darknet lineage whose semantics to follow (default: alexeyab)")


def add_detector_arguments(p: argparse.ArgumentParser) -> None:
    """The model and ``detector test`` options of ``detect``, ``serve`` and ``batch``."""
    add_model_arguments(p, cfg_required=False)
    p.add_argument("--names", help="class names file, one per line (default: COCO names for 80-class nets)")
    p.add_argument("--model", default=None, choices=sorted(assets.MODELS),
                   help=f"pretrained model to use when --cfg is not given (default: {assets.DEFAULT_MODEL})")
    p.add_argument("--backend", choices=list(BACKENDS), default=None,
                   help="executor (default: onnxruntime when available, else numpy)")
    p.add_argument("--calib", nargs="+", metavar="IMAGE",
                   help="calibration photos (or folders) for the INT8 backends (onnxruntime-int8, openvino-int8)")
    p.add_argument("--thresh", type=float, default=0.25, help="probability threshold (Darknet -thresh, 0.25)")
    p.add_argument("--hier", type=float, default=0.5, help="hierarchy threshold (Darknet -hier, 0.5)")
    p.add_argument("--nms", type=float, default=0.45, help="NMS threshold (Darknet's fixed 0.45; 0 disables)")
    p.add_argument("--letterbox", action="store_true",
                   help="letterbox the input like Darknet's -letter_box (also on when [net] letter_box=1)")


def model_files(args):
    """(cfg, weights or None, names or None) of the model options: ``--cfg``/``--weights``/``--names``, or a
    pretrained ``--model`` (default yolov4-tiny) fetched once. Warns loudly about random weights."""
    if args.cfg is None:
        model_name = args.model or assets.DEFAULT_MODEL
        cfg = assets.model_cfg(model_name, progress=not args.quiet)
        pretrained = assets.get_model(model_name)
        weights = Path(args.weights) if args.weights else assets.ensure(pretrained.weights, progress=not args.quiet)
        names = args.names or assets.names_path(pretrained.names)
    else:
        cfg = Path(args.cfg)
        weights = Path(args.weights) if args.weights else None
        names = args.names
    if weights is None:
        print("darkcsp: WARNING: no --weights given: the network runs with RANDOM weights, its detections are "
              "meaningless (use this only to test a cfg)", file=sys.stderr)
    return cfg, weights, names


def backend_options(args) -> dict:
    return {"calib": args.calib} if args.calib else {}


def make_detector(args):
    """The Detector for the model options of ``detect`` and ``serve``: (detector, cfg path, weights or None)."""
    import darkcsp
    cfg, weights, names = model_files(args)
    model = darkcsp.load(cfg, weights, width=args.width, height=args.height, dialect=args.dialect)
    detector = model.detector(backend=args.backend, thresh=args.thresh, hier=args.hier, nms=args.nms,
                              letterbox=True if args.letterbox else None, names=names, **backend_options(args))
    return detector, cfg, weights


# ----- JSON output, the same for every command -----------------------------------------------------------
def add_json_arguments(p: argparse.ArgumentParser, what: str = "the result") -> None:
    """``--json``: the JSON document on stdout and nothing else there; ``--json-file FILE``: written to FILE
    (atomically) besides the usual report; ``--json-file -`` is ``--json``."""
    p.add_argument("--json", action="store_true",
                   help=f"print {what} as JSON on stdout instead of the report (stdout then carries only JSON)")
    p.add_argument("--json-file", metavar="FILE", help=f"also write {what} as JSON to FILE ('-': stdout, as --json)")


def json_on_stdout(args) -> bool:
    return bool(args.json or args.json_file == "-")


def report_stream(args):
    """Where the human-readable lines go: stdout, unless stdout carries the JSON (then stderr)."""
    return sys.stderr if json_on_stdout(args) else sys.stdout


def write_json(args, text: str) -> None:
    """Emit the JSON document where ``--json``/``--json-file`` ask for it."""
    from ..fileio import atomic_write_bytes
    if not text.endswith("\n"):
        text += "\n"
    if json_on_stdout(args):
        sys.stdout.write(text)
    if args.json_file and args.json_file != "-":
        atomic_write_bytes(Path(args.json_file), text.encode())
        if not args.quiet:
            print(f"saved {args.json_file}", file=sys.stderr)
