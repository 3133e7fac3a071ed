"""Darknet's image input path: stb-style loading, resize_image, letterbox_image.

PNG inputs reproduce Darknet's input.npy bit for bit. JPEG inputs are decoded by OpenCV's libjpeg-turbo, not
stb_image, so pixels differ by a few 1/255 steps: measured on the corpus JPEGs (bus, dog, person, zidane)
max |diff| = 3/255 (0.0118) and mean |diff| <= 3.8e-4 after resizing; the tolerance below is 4/255 max and
1e-3 mean."""
from __future__ import annotations

import json

import numpy as np
import pytest

from darkcsp.errors import ImageError
from darkcsp.image import decode_image, from_bgr, letterbox_image, load_image, preprocess, resize_image

from tests.conftest import conformance_root

JPEG_MAX_ABS = 4 / 255
JPEG_MEAN_ABS = 1e-3


def corpus_images():
    out = []
    root = conformance_root() / "cases"
    for case in ("yolov3-tiny-coco", "yolov4-tiny-coco", "yolov4-tiny-custom10"):
        d = root / case / "images"
        if d.is_dir():
            for sub in sorted(d.iterdir()):
                img = next(p for p in sub.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
                out.append(pytest.param(sub, img, id=f"{case}/{img.name}"))
    return out or [pytest.param(None, None, marks=pytest.mark.skip(reason="conformance corpus not found"))]


@pytest.mark.parametrize("sub,img", corpus_images())
def test_preprocess_reproduces_darknet_input(sub, img):
    want = np.load(sub / "input.npy")
    letter = bool(json.loads((sub / "detections.json").read_text())["letter_box"])
    got = preprocess(load_image(img), want.shape[3], want.shape[2], letter)
    assert got.shape == want.shape and got.dtype == np.float32
    if img.suffix.lower() == ".png":
        np.testing.assert_array_equal(got, want)
    else:
        diff = np.abs(got - want)
        assert diff.max() <= JPEG_MAX_ABS and diff.mean() <= JPEG_MEAN_ABS, (diff.max(), diff.mean())


# ----- resize_image vs a naive transcription of Darknet's loops ------------------------------------------
def naive_resize(im, w, h):
    """image.c resize_image, loop by loop, in float32."""
    f = np.float32
    c, h0, w0 = im.shape
    part = np.zeros((c, h0, w), f)
    w_scale = f(w0 - 1) / f(w - 1) if w > 1 else f(0)
    h_scale = f(h0 - 1) / f(h - 1)
    for k in range(c):
        for r in range(h0):
            for col in range(w):
                if col == w - 1 or w0 == 1:
                    val = im[k, r, w0 - 1]
                else:
                    sx = f(col) * w_scale
                    ix = int(sx)
                    dx = f(sx - f(ix))
                    val = f(f(f(1) - dx) * im[k, r, ix]) + f(dx * im[k, r, ix + 1])
                part[k, r, col] = val
    out = np.zeros((c, h, w), f)
    for k in range(c):
        for r in range(h):
            sy = f(r) * h_scale
            iy = int(sy)
            dy = f(sy - f(iy))
            for col in range(w):
                out[k, r, col] = f(f(1) - dy) * part[k, iy, col]
            if r == h - 1 or h0 == 1:
                continue
            for col in range(w):
                out[k, r, col] = f(out[k, r, col] + f(dy * part[k, iy + 1, col]))
    return out


@pytest.mark.parametrize("src,dst", [((7, 5), (13, 11)), ((20, 9), (6, 4)), ((1, 5), (4, 3)), ((6, 1), (3, 4)),
                                     ((5, 5), (1, 3)), ((9, 13), (9, 7))])
def test_resize_matches_naive_loops(src, dst):
    rng = np.random.default_rng(0)
    im = rng.random((3, src[1], src[0]), dtype=np.float32)
    np.testing.assert_array_equal(resize_image(im, *dst), naive_resize(im, *dst))


def test_resize_same_size_is_a_copy():
    im = np.random.default_rng(1).random((3, 4, 5), dtype=np.float32)
    out = resize_image(im, 5, 4)
    np.testing.assert_array_equal(out, im)
    assert out is not im


def test_resize_last_row_quirk():
    """H0=16 -> h=416: (h-1)*h_scale rounds below 15 in float32, so the last row is ~1e-6 * row 14."""
    im = np.ones((1, 16, 2), np.float32)
    out = resize_image(im, 2, 416)
    assert out[0, -1, 0] < 1e-5            # practically black, as in Darknet
    assert out[0, -2, 0] == pytest.approx(1.0)
    np.testing.assert_array_equal(out, naive_resize(im, 2, 416))


def test_letterbox_hand_computed():
    """30x10 -> 8x8: new_w = 8, new_h = 10*8//30 = 2, pasted at y = 3 on 0.5 gray."""
    im = np.random.default_rng(2).random((3, 10, 30), dtype=np.float32)
    out = letterbox_image(im, 8, 8)
    assert out.shape == (3, 8, 8)
    np.testing.assert_array_equal(out[:, :3], 0.5)
    np.testing.assert_array_equal(out[:, 5:], 0.5)
    np.testing.assert_array_equal(out[:, 3:5], naive_resize(im, 8, 2))
    tall = letterbox_image(np.zeros((3, 20, 5), np.float32), 9, 8)  # new_w = 5*8//20 = 2 at x = 3
    np.testing.assert_array_equal(tall[:, :, 3:5], 0)
    np.testing.assert_array_equal(tall[:, :, :3], 0.5)
    np.testing.assert_array_equal(tall[:, :, 5:], 0.5)


# ----- stb_image conversions ----------------------------------------------------------------------------
def _png(arr) -> bytes:
    import cv2
    ok, buf = cv2.imencode(".png", arr)
    assert ok
    return buf.tobytes()


def test_rgb_order_and_scaling():
    bgr = np.array([[[10, 20, 30], [0, 128, 255]]], np.uint8)  # 1x2 image, OpenCV BGR
    im = decode_image(_png(bgr))
    assert im.shape == (3, 1, 2) and im.dtype == np.float32
    np.testing.assert_array_equal(im[:, 0, 0], (np.array([30, 20, 10]) / 255.0).astype(np.float32))  # RGB, byte/255.
    assert im[0, 0, 1] == np.float32(255 / 255.0) and im[2, 0, 1] == 0
    np.testing.assert_array_equal(from_bgr(bgr), im)


def test_gray_replicated():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    im = decode_image(_png(gray))
    assert im.shape == (3, 3, 4)
    for k in range(3):
        np.testing.assert_array_equal(im[k], (gray / 255.0).astype(np.float32))


def test_rgba_drops_alpha():
    bgra = np.zeros((2, 2, 4), np.uint8)
    bgra[..., 0], bgra[..., 1], bgra[..., 2], bgra[..., 3] = 1, 2, 3, 0  # fully transparent
    im = decode_image(_png(bgra))
    np.testing.assert_array_equal(im[:, 0, 0], (np.array([3, 2, 1]) / 255.0).astype(np.float32))


def test_16bit_png_takes_high_byte():
    arr = np.array([[[0x1234, 0xFF00, 0x00FF]]], np.uint16)  # BGR
    im = decode_image(_png(arr))
    np.testing.assert_array_equal(im[:, 0, 0], (np.array([0x00, 0xFF, 0x12]) / 255.0).astype(np.float32))


@pytest.mark.parametrize("content,match", [(None, "not found"), (b"", "empty"), (b"not an image at all", "decode"),
                                           ("truncated", "decode")])
def test_unreadable_images_raise_image_error(tmp_path, content, match):
    p = tmp_path / "bad.png"
    if content == "truncated":
        p.write_bytes(_png(np.zeros((50, 50, 3), np.uint8))[:40])
    elif content is not None:
        p.write_bytes(content)
    with pytest.raises(ImageError, match=match) as e:
        load_image(p)
    assert str(p) in str(e.value)


def test_directory_is_not_an_image(tmp_path):
    with pytest.raises(ImageError, match="directory"):
        load_image(tmp_path)
