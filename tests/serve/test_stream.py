"""`darkcsp serve --source`: /events (one `detect --json` record per frame) and /stream.mjpg (annotated JPEG
frames) from a short video made here with cv2.VideoWriter, against a real uvicorn server. Every record must be
the in-process detector's answer for that frame of the video (read back with OpenCV, the same decoder)."""
from __future__ import annotations

import json
import time

import cv2
import httpx
import numpy as np
import pytest

from darkcsp.detector import record
from darkcsp.serve.app import ServeConfig, create_app
from darkcsp.serve.stream import BOUNDARY, VideoSource

from tests.conftest import photo_of
from tests.serve.conftest import noise_image, running, trained_case


def write_video(path, frames, fps=10.0):
    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert vw.isOpened()
    for f in frames:
        vw.write(f)
    vw.release()
    cap = cv2.VideoCapture(str(path))  # what the server will see (MJPG is lossy)
    out = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        out.append(f)
    cap.release()
    assert len(out) == len(frames)
    return out


def sse_events(response, limit_s=60.0):
    """(event, data) pairs of a text/event-stream response."""
    event, data = "message", []
    t0 = time.monotonic()
    for line in response.iter_lines():
        if time.monotonic() - t0 > limit_s:
            raise AssertionError("the event stream took too long")
        if line == "":
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())
        elif line.startswith("event:"):
            event = line[6:].strip()


def mjpeg_parts(response, limit_s=60.0):
    """(headers, jpeg bytes) of a multipart/x-mixed-replace response."""
    buf = b""
    t0 = time.monotonic()
    sep = f"--{BOUNDARY}\r\n".encode()
    for chunk in response.iter_bytes():
        assert time.monotonic() - t0 < limit_s, "the MJPEG stream took too long"
        buf += chunk
        while True:
            start = buf.find(sep)
            head_end = buf.find(b"\r\n\r\n", start)
            if start < 0 or head_end < 0:
                break
            headers = dict(line.split(": ", 1) for line in buf[start + len(sep):head_end].decode().split("\r\n"))
            n = int(headers["Content-Length"])
            if len(buf) < head_end + 4 + n + 2:
                break
            yield headers, buf[head_end + 4:head_end + 4 + n]
            buf = buf[head_end + 4 + n + 2:]


def frame_index(name: str) -> int:
    return int(name.rsplit("#frame=", 1)[1])


def check_events_and_stream(base, det, frames, label, want_frames):
    expected = [record(f"{label}#frame={k}", f.shape[1], f.shape[0], det(f)) for k, f in enumerate(frames)]
    seen = {}
    with httpx.stream("GET", f"{base}/events", timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for event, data in sse_events(r):
            assert event == "message"
            rec = json.loads(data)
            k = frame_index(rec["image"])
            assert rec == expected[k]
            seen[k] = rec
            if len(seen) >= want_frames:
                break
    with httpx.stream("GET", f"{base}/stream.mjpg", timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"] == f"multipart/x-mixed-replace; boundary={BOUNDARY}"
        n = 0
        for headers, jpeg in mjpeg_parts(r):
            assert headers["Content-Type"] == "image/jpeg"
            k = frame_index(headers["X-Frame"])
            got = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            want = det.draw(frames[k], det(frames[k]))
            # the annotated frame, JPEG-encoded at the server's quality: the same bytes decode to the same pixels
            ok, enc = cv2.imencode(".jpg", want, [cv2.IMWRITE_JPEG_QUALITY, 80])
            np.testing.assert_array_equal(got, cv2.imdecode(enc, cv2.IMREAD_COLOR))
            n += 1
            if n >= 3:
                break
    return seen


def test_events_and_mjpeg_from_a_looping_video(tiny_detector, tmp_path):
    frames = write_video(tmp_path / "clip.avi", [noise_image(120, 160, s) for s in range(6)])
    source = VideoSource(tiny_detector, str(tmp_path / "clip.avi"))
    with running(create_app(tiny_detector, ServeConfig(), source, warmup=False)) as base:
        m = httpx.get(f"{base}/model").json()
        assert m["source"] == {"name": "clip.avi", "kind": "file", "loop": True, "fps": 10.0, "ended": False}
        seen = check_events_and_stream(base, tiny_detector, frames, "clip.avi", 6)
        assert sorted(seen) == list(range(6))
        assert sum(len(r["detections"]) for r in seen.values()) > 0
        # the video loops: later frames come again
        with httpx.stream("GET", f"{base}/events", timeout=60) as r:
            ks = []
            for _, data in sse_events(r):
                ks.append(frame_index(json.loads(data)["image"]))
                if len(ks) >= 8:
                    break
        assert any(b < a for a, b in zip(ks, ks[1:]))  # wrapped around
        assert httpx.post(f"{base}/detect", content=cv2.imencode(".png", frames[0])[1].tobytes(),
                          headers={"Content-Type": "image/png"}).status_code == 200


def test_source_once_ends_cleanly(tiny_detector, tmp_path):
    write_video(tmp_path / "once.avi", [noise_image(90, 120, s) for s in range(4)], fps=20)
    source = VideoSource(tiny_detector, str(tmp_path / "once.avi"), loop=False)
    with running(create_app(tiny_detector, ServeConfig(), source, warmup=False)) as base:
        with httpx.stream("GET", f"{base}/events", timeout=60) as r:
            events = list(sse_events(r))
        assert events[-1][0] == "end" and "end of the video" in json.loads(events[-1][1])["reason"]
        ks = [frame_index(json.loads(d)["image"]) for e, d in events if e == "message"]
        assert ks and ks == sorted(ks) and ks[-1] == 3  # in order, and the last frame is always delivered
        for path in ("/events", "/stream.mjpg"):
            r = httpx.get(f"{base}{path}")
            assert r.status_code == 410 and "ended" in r.json()["error"]
        assert httpx.get(f"{base}/model").json()["source"]["ended"] is True
        assert httpx.get(f"{base}/health").json() == {"status": "ok"}


def test_bad_source_is_a_clear_error(tiny_detector, tmp_path):
    from darkcsp.errors import ImageError
    with pytest.raises(ImageError, match="video source not found"):
        VideoSource(tiny_detector, str(tmp_path / "missing.mp4"))
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 10)
    with pytest.raises(ImageError, match="cannot open"):
        VideoSource(tiny_detector, str(junk))


def test_trained_model_on_a_video_of_a_corpus_photo(tmp_path):
    """yolov4-tiny on a video panning over bus.jpg: every record = the detector on that frame, with objects."""
    case = "yolov4-tiny-coco"
    _, model, names = trained_case(case)
    det = model.detector(names=names)
    photo = cv2.imread(str(photo_of(case, "bus")))
    h, w = 640, 640
    frames = [np.ascontiguousarray(photo[40 * k:40 * k + h, 20 * k:20 * k + w]) for k in range(5)]
    frames = write_video(tmp_path / "bus.avi", frames, fps=10)
    source = VideoSource(det, str(tmp_path / "bus.avi"))
    with running(create_app(det, ServeConfig(), source)) as base:
        seen = check_events_and_stream(base, det, frames, "bus.avi", 5)
    assert sorted(seen) == list(range(5))
    assert all(any(d["class_name"] == "person" for d in r["detections"]) for r in seen.values())
