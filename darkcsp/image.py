"""Darknet's image input path: load_image (stb_image, forced to 3 channels), resize_image, letterbox_image.

Images are decoded with OpenCV (``IMREAD_UNCHANGED``, so no EXIF rotation, no colour conversion) and then
converted the way stb_image's ``stbi_load(path, ..., 3)`` converts: gray -> replicated RGB, gray+alpha and
RGBA -> alpha dropped, 16-bit -> 8-bit by ``v >> 8``. Pixels become ``byte / 255.`` (double division, stored
as float32), planar CHW, RGB. PNG decoding is lossless and therefore identical to Darknet's; JPEG decoders
differ slightly (stb_image's IDCT vs libjpeg-turbo's), see tests/test_image.py for the measured deviation.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np

from .errors import ImageError, ImageTooLargeError
from .fileio import open_input

__all__ = ["load_image", "decode_image", "from_bgr", "resize_image", "letterbox_image", "letterbox_size",
           "preprocess", "to_bgr_uint8"]


#: file extensions of the image formats OpenCV decodes (what a folder given as input contributes)
IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pbm", ".pgm", ".ppm",
                        ".pnm", ".jp2", ".gif"})

#: image files larger than this are refused unread
MAX_IMAGE_BYTES = 1 << 30
#: images with more pixels are refused before decoding (DARKCSP_MAX_IMAGE_PIXELS); 2^27 ~ 11585 x 11585
DEFAULT_MAX_IMAGE_PIXELS = 1 << 27


def _header_size(data: bytes) -> Optional[Tuple[int, int]]:
    """(width, height) from a PNG, GIF, BMP or JPEG header without decoding; None if unknown."""
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
            return struct.unpack(">II", data[16:24])
        if data[:6] in (b"GIF87a", b"GIF89a"):
            return struct.unpack("<HH", data[6:10])
        if data[:2] == b"BM":
            w, h = struct.unpack("<ii", data[18:26])
            return abs(w), abs(h)
        if data[:2] == b"\xff\xd8":  # JPEG: walk the segments to the first SOFn
            i = 2
            while i + 9 < len(data):
                if data[i] != 0xFF:
                    return None
                marker = data[i + 1]
                if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                    i += 2
                    continue
                length = struct.unpack(">H", data[i + 2:i + 4])[0]
                if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                    h, w = struct.unpack(">HH", data[i + 5:i + 9])
                    return w, h
                i += 2 + length
    except struct.error:
        return None
    return None


def _png_chunk_overflow(data: bytes) -> Optional[str]:
    """A PNG chunk whose length runs past the end of the file: OpenCV's decoder would allocate that length
    (a 300-byte file claiming a 3.8 GB chunk costs 3.8 GB) before failing."""
    i = 8
    while i + 8 <= len(data):
        n, kind = struct.unpack(">I4s", data[i:i + 8])
        if i + 12 + n > len(data):
            return f"PNG chunk {kind.decode('latin-1')!r} at byte {i} claims {n} bytes, the file ends at {len(data)}"
        if kind == b"IEND":
            break
        i += 12 + n
    return None


def decode_image(data: bytes, name: str = "<image>") -> np.ndarray:
    """Encoded image bytes -> (3, H, W) float32 RGB in [0, 1], as Darknet's load_image_stb."""
    import cv2
    if not data:
        raise ImageError("empty file (0 bytes), not an image", file=name)
    limit = int(os.environ.get("DARKCSP_MAX_IMAGE_PIXELS", DEFAULT_MAX_IMAGE_PIXELS))
    size = _header_size(data)
    if size is not None and size[0] * size[1] > limit:
        raise ImageTooLargeError(f"image is {size[0]} x {size[1]} pixels, more than the {limit} allowed (decoding "
                                 "it would need several GB; set DARKCSP_MAX_IMAGE_PIXELS to allow it)", file=name)
    overflow = _png_chunk_overflow(data) if data[:8] == b"\x89PNG\r\n\x1a\n" else None
    if overflow:
        raise ImageError(f"corrupt or truncated image: {overflow}", file=name)
    try:
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as e:  # e.g. OpenCV's own pixel limit (CV_IO_MAX_IMAGE_PIXELS) in formats not checked above
        msg = str(e).strip().splitlines()[-1] if str(e).strip() else "decoder error"
        raise ImageError(f"cannot decode image ({msg})", file=name) from None
    if arr is None or arr.size == 0:
        raise ImageError("cannot decode image (not an image format OpenCV reads, or a corrupt/truncated file)",
                         file=name)
    if arr.dtype == np.uint16:
        arr = (arr >> 8).astype(np.uint8)  # stbi__convert_16_to_8
    elif arr.dtype != np.uint8:
        raise ImageError(f"unsupported pixel type {arr.dtype} (Darknet's stb_image reads 8/16-bit images)",
                         file=name)
    if arr.ndim == 2:
        rgb = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.shape[2] == 1:
        rgb = np.repeat(arr, 3, axis=2)
    elif arr.shape[2] == 2:  # gray + alpha
        rgb = np.repeat(arr[:, :, :1], 3, axis=2)
    else:  # BGR or BGRA -> RGB, alpha dropped
        rgb = arr[:, :, 2::-1]
    return _to_float(rgb)


#: Darknet: im.data[...] = (float)data[src]/255.  -> double division, stored as float; a table lookup gives the
#: same values without a float64 copy of the whole image
_BYTE_TO_FLOAT = (np.arange(256, dtype=np.float64) / 255.0).astype(np.float32)


def _to_float(rgb_hwc: np.ndarray) -> np.ndarray:
    chw = np.ascontiguousarray(rgb_hwc.transpose(2, 0, 1))
    if chw.dtype == np.uint8:
        return _BYTE_TO_FLOAT[chw]
    return (chw.astype(np.float64) / 255.0).astype(np.float32)


def from_bgr(frame: np.ndarray) -> np.ndarray:
    """An OpenCV BGR uint8 frame (e.g. from a video) -> (3, H, W) float32 RGB like load_image."""
    if frame.ndim == 2:
        frame = frame[:, :, None]
    if frame.shape[2] == 1:
        return _to_float(np.repeat(frame, 3, axis=2))
    return _to_float(frame[:, :, 2::-1])


def load_image(path: Union[str, Path]) -> np.ndarray:
    """Read an image file like Darknet's load_image(path, 0, 0, 3): (3, H, W) float32 RGB in [0, 1].

    A missing, unreadable, empty or corrupt file is an ImageError naming it (Darknet itself would print an
    error and go on with a black 10x10 image)."""
    p = Path(path)
    with open_input(p, ImageError, "image file") as f:
        data = f.read(MAX_IMAGE_BYTES + 1)  # bounded: /dev/zero given as an image must not hang
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageTooLargeError(f"more than {MAX_IMAGE_BYTES >> 20} MB: too large for an image file",
                                 file=str(path))
    return decode_image(data, str(path))


def resize_image(im: np.ndarray, w: int, h: int) -> np.ndarray:
    """Darknet's resize_image (image.c): separable bilinear, align-corners, float32, two passes.

    Pass 1 resamples each source row to the new width (the last column copies the last source column),
    pass 2 resamples rows: ``O[r] = (1-dy)*P[iy]`` plus ``dy*P[iy+1]`` except for the last row. The last row
    is *not* forced to the last source row: when ``(h-1)*h_scale`` rounds below H0-1 in float32, it is
    ``(1-dy)*P[H0-2]`` with dy ~ 1, i.e. almost black — reproduced on purpose."""
    im = np.asarray(im, np.float32)
    c, h0, w0 = im.shape
    if w <= 0 or h <= 0:
        raise ImageError(f"cannot resize to {w}x{h}")
    if (w0, h0) == (w, h):
        return im.copy()
    f32 = np.float32
    # pass 1: columns
    if w0 == 1 or w == 1:
        part = np.repeat(im[:, :, w0 - 1:w0], w, axis=2)
    else:
        w_scale = f32(w0 - 1) / f32(w - 1)
        sx = np.arange(w - 1, dtype=f32) * w_scale
        ix = sx.astype(np.int64)
        dx = (sx - ix.astype(f32)).astype(f32)
        ix1 = np.minimum(ix + 1, w0 - 1)
        part = np.empty((c, h0, w), f32)
        part[:, :, :w - 1] = (f32(1) - dx) * im[:, :, ix] + dx * im[:, :, ix1]
        part[:, :, w - 1] = im[:, :, w0 - 1]
    # pass 2: rows
    if h == 1:  # Darknet divides by zero here (h_scale = x/0); take the first source row
        return np.ascontiguousarray(part[:, :1, :])
    h_scale = f32(h0 - 1) / f32(h - 1)
    sy = np.arange(h, dtype=f32) * h_scale
    iy = sy.astype(np.int64)
    dy = (sy - iy.astype(f32)).astype(f32)
    out = (f32(1) - dy)[None, :, None] * part[:, iy, :]
    if h0 > 1:
        rows = np.arange(h - 1)
        iy1 = np.minimum(iy[rows] + 1, h0 - 1)
        out[:, rows, :] = out[:, rows, :] + dy[rows][None, :, None] * part[:, iy1, :]
    return out.astype(f32)


def letterbox_size(image_w: int, image_h: int, net_w: int, net_h: int) -> Tuple[int, int]:
    """(new_w, new_h) of letterbox_image: float comparison of the ratios, integer division."""
    if np.float32(net_w) / np.float32(image_w) < np.float32(net_h) / np.float32(image_h):
        return net_w, (image_h * net_w) // image_w
    return (image_w * net_h) // image_h, net_h


def letterbox_image(im: np.ndarray, w: int, h: int) -> np.ndarray:
    """Darknet's letterbox_image: resize keeping the aspect ratio, paste centred (integer offsets) on 0.5."""
    c, h0, w0 = im.shape
    new_w, new_h = letterbox_size(w0, h0, w, h)
    resized = resize_image(im, new_w, new_h)
    boxed = np.full((c, h, w), 0.5, np.float32)
    dx, dy = (w - new_w) // 2, (h - new_h) // 2
    boxed[:, dy:dy + new_h, dx:dx + new_w] = resized
    return boxed


def preprocess(im: np.ndarray, net_w: int, net_h: int, letter: bool = False) -> np.ndarray:
    """The network input for one image, (1, 3, net_h, net_w) float32, as detector test builds it."""
    out = letterbox_image(im, net_w, net_h) if letter else resize_image(im, net_w, net_h)
    return out[None]


def to_bgr_uint8(im: np.ndarray) -> np.ndarray:
    """(3, H, W) float RGB in [0, 1] -> (H, W, 3) uint8 BGR for OpenCV drawing/writing."""
    arr = np.clip(np.asarray(im, np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr[::-1].transpose(1, 2, 0))
