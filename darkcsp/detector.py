"""Detection as a library call: images in, Darknet's detections out.

``Detector`` is the one path from an image to detections for every caller (the CLI, ``bench --end-to-end``,
INT8 calibration, the service, batch jobs): Darknet's image loading, its ``resize_image``/``letterbox_image``,
the network on any backend, ``get_network_boxes``, the NMS of the last head and the print order::

    model = darkcsp.load("yolov4-tiny")
    detector = model.detector()
    for d in detector("bus.jpg"):
        print(d.class_name, d.prob, d.box)
"""
from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import DarkcspError, ImageError, UnsupportedError
from .postprocess import Detection, class_names, detect, heads_of, nms_layer

__all__ = ["Detector", "Detection", "record", "ImageInput"]

log = logging.getLogger("darkcsp")

#: what a Detector accepts as one image: a file path, an OpenCV BGR uint8 array (H, W, 3), or a Darknet image
#: (3, H, W) float RGB in [0, 1]
ImageInput = Union[str, Path, np.ndarray]


def record(name: str, width: int, height: int, detections: Sequence[Detection]) -> Dict[str, Any]:
    """One image's entry of ``darkcsp detect --json``: ``{"image", "width", "height", "detections": [...]}``."""
    return {"image": name, "width": int(width), "height": int(height),
            "detections": [d.to_dict() for d in detections]}


def check_fraction(name: str, value: float) -> float:
    """A threshold option (thresh, hier, nms) as a float in [0, 1], or a DarkcspError naming it."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise DarkcspError(f"{name}={value!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise DarkcspError(f"{name}={value} must be between 0 and 1")
    return value


class Detector:
    """A model on a backend with Darknet's ``detector test`` options; call it on images.

    ``backend`` is a backend name (``darkcsp.backends.available_backends()``), a Backend instance, or None for
    onnxruntime falling back to numpy when the model cannot be lowered to ONNX. ``letterbox`` None follows the
    cfg (``[net] letter_box=1``) and the dialect (pjreddie's detector always letterboxes). ``names`` is a
    .names path or a list; by default the model's own names, COCO's for 80 classes, else the class numbers.
    """

    def __init__(self, model, backend: Union[str, Any, None] = "onnxruntime", thresh: float = 0.25,
                 hier: float = 0.5, nms: float = 0.45, letterbox: Optional[bool] = None,
                 names: Union[str, Path, Sequence[str], None] = None, batch_size: int = 1, **backend_options):
        self.model = model
        self.thresh = check_fraction("thresh", thresh)
        self.hier = check_fraction("hier", hier)
        self.nms = check_fraction("nms", nms)
        if int(batch_size) < 1:
            raise DarkcspError(f"batch_size={batch_size} must be at least 1")
        self.batch_size = int(batch_size)
        graph = model.graph
        if not heads_of(graph.layers):
            raise UnsupportedError(f"{graph.file} has no detection head ([yolo], [Gaussian_yolo], [region], "
                                   "[detection]): a detector needs one (use model.forward for other networks)",
                                   file=str(graph.file))
        self.classes = nms_layer(graph.layers).classes
        self.names = self._resolve_names(names)
        self.letterbox = graph.dialect.detector_letterbox(graph.net) if letterbox is None else bool(letterbox)
        _, self.net_h, self.net_w = graph.input_shape
        self.backend, self.backend_name = self._make_backend(backend, backend_options)

    # ----- setup ------------------------------------------------------------------------------------
    def _resolve_names(self, names) -> List[str]:
        from . import assets
        if names is None:
            names = self.model.names_file
        if names is None:
            if self.classes != 80:
                return [str(j) for j in range(self.classes)]
            names = assets.PACKAGE_DATA / "coco.names"
        if isinstance(names, (str, Path)):
            source = str(names)
            names = class_names(names)
        else:
            source = "names"
            names = [str(n) for n in names]
        if len(names) != self.classes:
            # Darknet prints the same warning and goes on
            log.warning("%s has %d names but the last detection layer has classes=%d", source, len(names),
                        self.classes)
            names = names[:self.classes] + [str(j) for j in range(len(names), self.classes)]
        return names

    def _make_backend(self, backend, options):
        from .backends import Backend, create_backend
        if isinstance(backend, Backend):
            return backend, backend.name
        if backend is None:
            try:
                made = create_backend("onnxruntime", self.model, **options)
                made.warmup(self.batch_size)
                return made, "onnxruntime"
            except (DarkcspError, ImportError) as e:  # a lowering gap must not stop the default path
                log.warning("onnxruntime backend unavailable for this model (%s); using numpy", e)
                backend = "numpy"
        made = create_backend(backend, self.model, **options)
        made.warmup(self.batch_size)  # export/compile now, so that per-image times are inference only
        return made, backend

    # ----- the pipeline ------------------------------------------------------------------------------
    def load_image(self, image: ImageInput) -> np.ndarray:
        """Any accepted image -> Darknet's image: (3, H, W) float32 RGB in [0, 1]."""
        from .image import from_bgr, load_image
        if isinstance(image, (str, Path)):
            return load_image(image)
        if not isinstance(image, np.ndarray):
            raise ImageError(f"an image is a path, a (H, W, 3) uint8 BGR array or a (3, H, W) float RGB array, "
                             f"not {type(image).__name__}")
        if image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] in (1, 3, 4) or \
                image.dtype == np.uint8 and image.ndim == 2:
            if image.ndim == 3 and image.shape[2] == 4:
                image = image[:, :, :3]  # BGRA: alpha dropped, as stb_image does
            if min(image.shape[:2]) < 1:
                raise ImageError(f"image array has shape {image.shape}: no pixels")
            return from_bgr(image)
        if np.issubdtype(image.dtype, np.floating) and image.ndim == 3 and image.shape[0] == 3:
            if min(image.shape[1:]) < 1:
                raise ImageError(f"image array has shape {image.shape}: no pixels")
            if not np.all(np.isfinite(image)):
                raise ImageError("float image array has NaN or infinite values")
            return np.asarray(image, np.float32)
        raise ImageError(f"image array has shape {image.shape} and dtype {image.dtype}: expected (H, W, 3) uint8 BGR "
                         "as cv2.imread returns it, or (3, H, W) float RGB in [0, 1]")

    def input_tensor(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Darknet images -> the network input (N, 3, net_h, net_w) float32, as ``detector test`` builds it."""
        from .image import preprocess
        return np.concatenate([preprocess(im, self.net_w, self.net_h, self.letterbox) for im in images])

    def detect_images(self, images: Sequence[np.ndarray]) -> List[List[Detection]]:
        """Darknet images -> one detection list per image, run through the backend ``batch_size`` at a time."""
        return self.detect_tensor(self.input_tensor(images), [(im.shape[2], im.shape[1]) for im in images])

    def detect_tensor(self, x: np.ndarray, sizes: Sequence[Tuple[int, int]]) -> List[List[Detection]]:
        """Network input already built by ``input_tensor`` (N, 3, net_h, net_w) and each image's (width,
        height) -> one detection list per image, run ``batch_size`` images at a time."""
        results: List[List[Detection]] = []
        for start in range(0, len(x), self.batch_size):
            chunk = x[start:start + self.batch_size]
            n = len(chunk)
            if self.backend.static_batch and n < self.batch_size:
                # ONNX runtimes compile one graph per batch size: pad the last batch instead of compiling another
                chunk = np.concatenate([chunk, np.zeros((self.batch_size - n,) + chunk.shape[1:], np.float32)])
            outputs = self.backend.run(chunk)
            for i in range(n):
                one = {k: v[i:i + 1] for k, v in outputs.items()}
                results.append(self.postprocess(one, *sizes[start + i]))
        return results

    def postprocess(self, outputs: Dict[int, np.ndarray], image_w: int, image_h: int) -> List[Detection]:
        """One image's head outputs -> its detections (get_network_boxes, NMS, Darknet's print order)."""
        graph = self.model.graph
        return detect(graph.layers, outputs, self.net_w, self.net_h, image_w, image_h, self.names, self.thresh,
                      self.hier, self.nms, self.letterbox, graph.dialect)

    def with_options(self, thresh: Optional[float] = None, hier: Optional[float] = None,
                     nms: Optional[float] = None) -> "Detector":
        """This detector with other thresholds (None keeps the current one), sharing the model and the backend:
        the thresholds only enter the post-processing."""
        other = copy.copy(self)
        other.thresh = self.thresh if thresh is None else check_fraction("thresh", thresh)
        other.hier = self.hier if hier is None else check_fraction("hier", hier)
        other.nms = self.nms if nms is None else check_fraction("nms", nms)
        return other

    def __call__(self, images: Union[ImageInput, Sequence[ImageInput]]):
        """One image -> ``list[Detection]``; a list of images -> one such list per image (batched)."""
        if isinstance(images, (list, tuple)):
            if not images:
                raise ImageError("empty list of images")
            return self.detect_images([self.load_image(im) for im in images])
        return self.detect_images([self.load_image(images)])[0]

    def draw(self, image: ImageInput, detections: Sequence[Detection]) -> np.ndarray:
        """A BGR uint8 copy of ``image`` with the detections drawn and labelled."""
        from .draw import draw_detections
        from .image import to_bgr_uint8
        if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
            bgr = image
        else:
            bgr = to_bgr_uint8(self.load_image(image))
        return draw_detections(bgr, detections, self.classes)

    def __repr__(self) -> str:
        return (f"<Detector {Path(str(self.model.graph.file)).name} on {self.backend_name}, {self.net_w}x{self.net_h}"
                f"{' letterbox' if self.letterbox else ''}, thresh {self.thresh}>")
