"""``darkcsp serve --source``: a video file, camera or URL read by one thread, every frame detected and
published to ``/stream.mjpg`` (annotated JPEGs, like Darknet's ``-mjpeg_port``) and ``/events`` (one
``detect --json`` record per frame as server-sent events, like ``-json_port``).

The reader works only while someone watches (a file pauses, a camera or URL keeps being drained so that the
next viewer sees a current picture). A file is played at its own frame rate (at most; slower when detection
is slower) and loops; with ``loop=False`` it ends after the last frame: open streams finish (SSE sends
``event: end``) and later requests get 410. Viewers see the latest frame: a slow client skips frames rather
than holding the reader back.
"""
from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Dict, Optional, Set

from ..detector import Detector, record
from ..errors import DarkcspError, ImageError

__all__ = ["VideoSource", "Frame", "mjpeg_response", "events_response"]

log = logging.getLogger("darkcsp")

BOUNDARY = "darkcspframe"
#: SSE comment sent when no frame came for this long (keeps proxies from closing an idle stream)
HEARTBEAT_S = 15.0


@dataclass
class Frame:
    seq: int            # increases with every published frame (across loops)
    index: int          # frame number in the source (restarts when a file loops)
    jpeg: bytes         # the annotated frame
    record: Dict[str, Any]


class _Subscriber:
    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.event = asyncio.Event()

    def wake(self) -> None:
        try:
            self.loop.call_soon_threadsafe(self.event.set)
        except RuntimeError:  # its event loop is closed: the server is gone
            pass


class VideoSource:
    """``source``: a video file path, a camera index (``0``) or a URL OpenCV opens (rtsp://, http://...)."""

    def __init__(self, detector: Detector, source: str, loop: bool = True, jpeg_quality: int = 80):
        import cv2
        self.detector, self.loop, self.jpeg_quality = detector, loop, int(jpeg_quality)
        self.source = str(source)
        if self.source.isdigit():
            self.kind, self.label, self._open_arg = "camera", f"camera{self.source}", int(self.source)
        elif "://" in self.source:
            self.kind, self.label, self._open_arg = "url", self.source.split("://", 1)[0] + "-stream", self.source
        else:
            p = Path(self.source)
            if not p.is_file():
                raise ImageError("video source not found (a video file, a camera index or a URL)", file=self.source)
            self.kind, self.label, self._open_arg = "file", p.name, str(p)
        self.cap = self._open()
        self.fps = float(self.cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not 0 < self.fps <= 240:
            self.fps = 25.0
        self._subs: Set[_Subscriber] = set()
        self._subs_lock = threading.Lock()
        self._watched = threading.Event()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._lock: Any = None
        self.latest: Optional[Frame] = None
        self.ended = False
        self.end_reason = ""
        self.frames_published = 0

    def _open(self):
        import cv2
        cap = cv2.VideoCapture(self._open_arg)
        if not cap.isOpened():
            raise ImageError(f"cannot open the {self.kind} source (unknown format, no such device or unreachable)",
                             file=self.source)
        return cap

    def describe(self) -> Dict[str, Any]:
        return {"name": self.label, "kind": self.kind, "loop": self.loop and self.kind == "file",
                "fps": round(self.fps, 3), "ended": self.ended}

    # ----- the reader thread ------------------------------------------------------------------------
    def start(self, lock=None) -> None:
        """Start reading; ``lock`` serialises inference with the request workers when the backend needs it."""
        from contextlib import nullcontext
        self._lock = lock if lock is not None else nullcontext()
        self._thread = threading.Thread(target=self._run, name="darkcsp-source", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.end_streams("the server is shutting down")
        self._stop.set()
        self._watched.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.cap.release()

    def end_streams(self, reason: str) -> None:
        """Mark the source ended and let every open stream finish."""
        if not self.ended:
            self.ended, self.end_reason = True, reason
        with self._subs_lock:
            subs = list(self._subs)
        for s in subs:
            s.wake()

    def _run(self) -> None:
        try:
            self._read_loop()
        except Exception as e:  # a broken camera/codec must end the streams, not leave them hanging
            if isinstance(e, DarkcspError):
                log.error("video source %s: %s", self.source, e)
            else:
                log.exception("video source %s failed", self.source)
            self.end_streams(f"the source failed: {e}")

    def _read_loop(self) -> None:
        import cv2
        index, pass_start, frames_in_pass = 0, time.monotonic(), 0
        while not self._stop.is_set():
            if not self._watched.is_set():
                if self.kind == "file":
                    self._watched.wait(0.5)
                elif not self.cap.grab():  # keep a live source current while nobody watches
                    self._stop.wait(0.5)  # a camera that stopped delivering: no busy loop
                pass_start, frames_in_pass = time.monotonic(), 0
                continue
            ok, frame = self.cap.read()
            if not ok or frame is None:
                if self.kind == "file" and self.loop and index > 0:
                    self.cap.release()
                    self.cap = self._open()
                    index, pass_start, frames_in_pass = 0, time.monotonic(), 0
                    continue
                self.end_streams("end of the video" if index else "the source delivered no frame")
                return
            with self._lock:
                dets = self.detector(frame)
            annotated = self.detector.draw(frame, dets)
            ok, jpg = cv2.imencode(".jpg", annotated, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
            if not ok:
                raise DarkcspError("OpenCV could not encode a JPEG frame")
            h, w = frame.shape[:2]
            self._publish(Frame(self.frames_published, index, jpg.tobytes(),
                                record(f"{self.label}#frame={index}", w, h, dets)))
            index += 1
            if self.kind == "file":  # play a file at its frame rate, not faster
                frames_in_pass += 1
                delay = pass_start + frames_in_pass / self.fps - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)

    def _publish(self, frame: Frame) -> None:
        with self._subs_lock:
            self.latest = frame
            self.frames_published += 1
            subs = list(self._subs)
        for s in subs:
            s.wake()

    # ----- viewers ----------------------------------------------------------------------------------
    async def frames(self) -> AsyncIterator[Optional[Frame]]:
        """The frames published while the caller iterates (the latest one first); None = heartbeat."""
        sub = _Subscriber(asyncio.get_running_loop())
        with self._subs_lock:
            self._subs.add(sub)
            self._watched.set()
        try:
            last = -1
            while True:
                sub.event.clear()
                f = self.latest
                if f is not None and f.seq > last:
                    last = f.seq
                    yield f
                    continue
                if self.ended:
                    return
                try:
                    await asyncio.wait_for(sub.event.wait(), HEARTBEAT_S)
                except asyncio.TimeoutError:
                    yield None
        finally:
            with self._subs_lock:
                self._subs.discard(sub)
                if not self._subs:
                    self._watched.clear()


def _gone(source: VideoSource):
    from .app import _error
    return _error(410, f"the video source has ended ({source.end_reason}); restart the server to play it again")


def mjpeg_response(source: VideoSource, request):
    """``multipart/x-mixed-replace`` of annotated JPEG frames (what browsers show in an <img>)."""
    from fastapi.responses import StreamingResponse
    if source.ended:
        return _gone(source)

    async def body():
        async for f in source.frames():
            if f is None:
                continue
            yield (f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(f.jpeg)}\r\n"
                   f"X-Frame: {f.record['image']}\r\n\r\n").encode() + f.jpeg + b"\r\n"
        yield f"--{BOUNDARY}--\r\n".encode()

    return StreamingResponse(body(), media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def events_response(source: VideoSource, request):
    """Server-sent events: ``id: <seq>`` and ``data: <detect --json record>`` per frame; ``event: end`` last."""
    from fastapi.responses import StreamingResponse
    if source.ended:
        return _gone(source)

    async def body():
        yield b"retry: 2000\n\n"
        async for f in source.frames():
            if f is None:
                yield b": keep-alive\n\n"
                continue
            yield f"id: {f.seq}\ndata: {json.dumps(f.record)}\n\n".encode()
        yield f"event: end\ndata: {json.dumps({'reason': source.end_reason})}\n\n".encode()

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
