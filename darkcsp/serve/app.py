"""The FastAPI application of ``darkcsp serve``.

Every detection goes through ``darkcsp.Detector`` (Darknet's image loading, resize/letterbox, network,
get_network_boxes, NMS): the service adds HTTP, nothing else. Uploads are read into memory with a running size
check (never spooled to disk, unlike Starlette's form parser, which writes files over 1 MB to a temporary
file), decoded by ``darkcsp.image.decode_image`` on a decoding thread and detected on a bounded pool of
``workers`` threads (the next upload is decoded while the network runs). A request takes a slot before its body
is read; ``workers + queue`` slots exist, and a request finding none gets 503 with ``Retry-After`` at once, so a
burst never grows memory or latency without bound.
"""
from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Callable, Dict, Optional, Tuple

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..detector import Detector, record
from ..errors import DarkcspError, ImageError, ImageTooLargeError

__all__ = ["create_app", "ServeConfig", "InferencePool"]

log = logging.getLogger("darkcsp")


#: after an over-limit upload, at most this many more bytes are read (and dropped) so that the client sees the
#: 413 instead of a reset connection; a longer body gets the connection closed
_DRAIN_BYTES = 64 << 20

#: leading bytes of the formats OpenCV decodes, used only to tell "not an image" (415) from "a broken image"
#: (422) when decoding fails
_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*", b"RIFF",
          b"\x00\x00\x00\x0cjP  ", b"\xff\x4f\xff\x51", b"P1", b"P2", b"P3", b"P4", b"P5", b"P6", b"P7", b"PF",
          b"Pf", b"#?RADIANCE", b"#?RGBE", b"\x59\xa6\x6a\x95", b"v/1\x01")


@dataclass
class ServeConfig:
    """Service options (the ``darkcsp serve`` flags)."""
    workers: int = 1
    queue: int = 32
    max_upload_mb: float = 20.0
    #: the weights file shown by /model (the detector's model knows it when loaded from a file)
    weights: Optional[str] = None

    def __post_init__(self):
        if int(self.workers) < 1:
            raise DarkcspError(f"workers={self.workers} must be at least 1", option="--workers")
        if int(self.queue) < 0:
            raise DarkcspError(f"queue={self.queue} must be 0 or more", option="--queue")
        if not 0 < self.max_upload_mb < 1 << 20:
            raise DarkcspError(f"max_upload_mb={self.max_upload_mb} must be a size in MB, more than 0",
                              option="--max-upload-mb")
        self.workers, self.queue = int(self.workers), int(self.queue)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * (1 << 20))


class HTTPError(Exception):
    """An error answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str, headers: Optional[Dict[str, str]] = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class InferencePool:
    """``workers`` inference threads, ``workers`` decoding threads and ``workers + queue`` admission slots.

    ``admit()`` takes a slot or returns False (the caller answers 503). ``detect()`` decodes the upload on a
    decoding thread and detects on an inference thread, so that the next image is decoded while the network
    runs on the current one; at most ``2 * workers`` decoded images exist at a time (they are large: float32
    RGB). The slot is released when the work ends, even if the request awaiting it was cancelled, so a client
    that hangs up cannot queue more work than there are slots. Backends that are not ``thread_safe`` run one
    inference at a time whatever ``workers`` says (``lock``)."""

    def __init__(self, detector: Detector, workers: int = 1, queue: int = 32):
        self.workers, self.queue = workers, queue
        self.capacity = workers + queue
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix="darkcsp-infer")
        self.decoder = ThreadPoolExecutor(workers, thread_name_prefix="darkcsp-decode")
        self._slots = threading.BoundedSemaphore(self.capacity)
        self._decoded = threading.BoundedSemaphore(2 * workers)
        self.lock = nullcontext() if detector.backend.thread_safe else threading.Lock()
        self._mean_s = 0.05  # running mean of one inference, for Retry-After

    def admit(self) -> bool:
        return self._slots.acquire(blocking=False)

    def release(self) -> None:
        self._slots.release()

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the queue drained at the measured rate, at least 1."""
        return max(1, math.ceil(self.capacity * self._mean_s / self.workers))

    async def detect(self, det: Detector, data: bytes, name: str) -> Dict[str, Any]:
        """The ``detect --json`` record of encoded image bytes (the caller holds a slot; this releases it)."""
        out: Future = Future()
        try:
            self.decoder.submit(self._decode, det, data, name, out)
        except BaseException:
            self.release()
            raise
        return await asyncio.wrap_future(out)

    def _decode(self, det: Detector, data: bytes, name: str, out: Future) -> None:
        from ..image import decode_image
        self._decoded.acquire()
        try:
            im = decode_image(data, name)
            self.executor.submit(self._infer, det, im, name, out)
        except BaseException as e:
            self._decoded.release()
            self.release()
            out.set_exception(e)

    def _infer(self, det: Detector, im, name: str, out: Future) -> None:
        t0 = time.perf_counter()
        try:
            with self.lock:
                dets = det.detect_images([im])[0]
            out.set_result(record(name, im.shape[2], im.shape[1], dets))
        except BaseException as e:
            out.set_exception(e)
        finally:
            self._mean_s = 0.9 * self._mean_s + 0.1 * (time.perf_counter() - t0)
            self._decoded.release()
            self.release()

    def shutdown(self) -> None:
        self.decoder.shutdown(wait=True, cancel_futures=True)
        self.executor.shutdown(wait=True, cancel_futures=True)


class DetectorVariants:
    """The service's detector with other thresh/hier/nms per request (``Detector.with_options``: copies sharing
    the backend), the last few kept."""

    def __init__(self, detector: Detector, keep: int = 16):
        self.base, self.keep = detector, keep
        self._cache: Dict[Tuple[Optional[float], Optional[float], Optional[float]], Detector] = {}
        self._lock = threading.Lock()

    def get(self, thresh: Optional[float], hier: Optional[float], nms: Optional[float]) -> Detector:
        if thresh is None and hier is None and nms is None:
            return self.base
        key = (thresh, hier, nms)
        with self._lock:
            det = self._cache.get(key)
            if det is None:
                det = self.base.with_options(thresh, hier, nms)
                if len(self._cache) >= self.keep:
                    self._cache.pop(next(iter(self._cache)))
                self._cache[key] = det
            return det


# ----- request bodies -------------------------------------------------------------------------------------
def _safe_name(filename: Optional[str]) -> str:
    """The upload's file name without any directory part (it is only echoed back, never opened)."""
    if not filename:
        return "upload"
    name = PureWindowsPath(PurePosixPath(filename).name).name
    return name.strip()[:255] or "upload"


def _looks_like_image(data: bytes) -> bool:
    return data.startswith(_MAGIC) or data[4:12] in (b"ftypavif", b"ftypheic", b"ftypmif1")


async def _read_limited(request: Request, limit: int, on_chunk: Callable[[bytes], None]) -> int:
    """Feed the request body to ``on_chunk`` chunk by chunk; 413 as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        await _drain(request)
        raise _too_large(limit, int(declared))
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            await _drain(request)
            raise _too_large(limit, None)
        if chunk:
            on_chunk(chunk)
    return total


async def _drain(request: Request, limit: int = _DRAIN_BYTES) -> None:
    """Read and drop the rest of a refused body (up to ``limit`` bytes) so that a client still sending it gets
    the answer rather than a reset connection; beyond that the connection is closed."""
    seen = 0
    try:
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > limit:
                break
    except Exception:  # a client that went away: nothing left to answer
        pass


def _too_large(limit: int, declared: Optional[int]) -> HTTPError:
    size = f" ({declared / (1 << 20):.1f} MB)" if declared is not None else ""
    return HTTPError(413, f"upload{size} is larger than the server's limit of {limit / (1 << 20):g} MB "
                          "(darkcsp serve --max-upload-mb)")


async def read_image_upload(request: Request, limit: int) -> Tuple[str, bytes]:
    """(file name, encoded image bytes) from a multipart field ``image`` or a raw image body, in memory."""
    ctype = request.headers.get("content-type", "")
    main_type = ctype.split(";", 1)[0].strip().lower()
    if main_type == "multipart/form-data":
        return await _read_multipart(request, ctype, limit)
    if main_type and not (main_type.startswith("image/") or main_type == "application/octet-stream"):
        raise HTTPError(415, f"Content-Type {main_type} is not an image: send a multipart/form-data field 'image' "
                             "or the image bytes with Content-Type image/* or application/octet-stream")
    body = bytearray()
    await _read_limited(request, limit, body.extend)
    if not body:
        raise HTTPError(400, "the request has no body: send an image (multipart field 'image' or raw bytes)")
    return _safe_name(request.query_params.get("name")), bytes(body)


async def _read_multipart(request: Request, ctype: str, limit: int) -> Tuple[str, bytes]:
    from python_multipart.multipart import MultipartParser, parse_options_header
    _, params = parse_options_header(ctype)
    boundary = params.get(b"boundary")
    if not boundary:
        raise HTTPError(400, "multipart/form-data without a boundary")
    fields = []            # field names in order
    state: Dict[str, Any] = {"header": b"", "value": b"", "headers": {}, "take": False, "name": None}
    image = bytearray()

    def on_part_begin():
        state["headers"] = {}

    def on_header_field(data, start, end):
        state["header"] += data[start:end]

    def on_header_value(data, start, end):
        state["value"] += data[start:end]

    def on_header_end():
        state["headers"][state["header"].lower()] = state["value"]
        state["header"], state["value"] = b"", b""

    def on_headers_finished():
        _, disp = parse_options_header(state["headers"].get(b"content-disposition", b""))
        field = disp.get(b"name", b"").decode("utf-8", "replace")
        fields.append(field)
        state["take"] = field == "image" and state["name"] is None
        if state["take"]:
            state["name"] = _safe_name(disp.get(b"filename", b"").decode("utf-8", "replace"))

    def on_part_data(data, start, end):
        if state["take"]:
            image.extend(data[start:end])

    def on_part_end():
        state["take"] = False

    parser = MultipartParser(boundary, {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished, "on_part_data": on_part_data,
        "on_part_end": on_part_end})
    try:
        await _read_limited(request, limit, parser.write)
        parser.finalize()
    except HTTPError:
        raise
    except Exception as e:  # python-multipart's parse errors
        raise HTTPError(400, f"malformed multipart/form-data body: {e}") from None
    if state["name"] is None:
        got = ", ".join(repr(f) for f in fields) if fields else "no fields"
        raise HTTPError(422, f"the multipart form has no field 'image' (got {got}): send the image as "
                             "-F image=@photo.jpg")
    if not image:
        raise HTTPError(400, "the multipart field 'image' is empty")
    return state["name"], bytes(image)


def _image_error_status(e: ImageError, data: bytes) -> int:
    if isinstance(e, ImageTooLargeError):
        return 413
    return 422 if _looks_like_image(data) else 415


# ----- the application ------------------------------------------------------------------------------------
def model_info(detector: Detector, config: ServeConfig, source=None) -> Dict[str, Any]:
    """What ``GET /model`` answers: files by name only (the service never shows server paths)."""
    graph = detector.model.graph
    weights = config.weights or detector.model.weights_file
    return {"cfg": Path(str(graph.file)).name,
            "weights": Path(str(weights)).name if weights else None,
            "random_weights": bool(detector.model.random_weights),
            "backend": detector.backend_name, "width": detector.net_w, "height": detector.net_h,
            "channels": int(graph.input_shape[0]), "letterbox": detector.letterbox,
            "classes": detector.classes, "names": list(detector.names),
            "params": int(graph.params_total), "bflops": round(float(graph.bflops_total), 3),
            "thresh": detector.thresh, "hier": detector.hier, "nms": detector.nms,
            "workers": config.workers, "queue": config.queue, "max_upload_mb": config.max_upload_mb,
            "source": source.describe() if source is not None else None}


def _error(status: int, message: str, headers: Optional[Dict[str, str]] = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _page() -> str:
    from importlib import resources
    return resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8")


#: the page is self-contained: nothing may be loaded from elsewhere
_PAGE_HEADERS = {"Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; style-src "
                                            "'unsafe-inline'; img-src 'self' blob: data:; connect-src 'self'",
                 "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


def create_app(detector: Detector, config: Optional[ServeConfig] = None, source=None,
               warmup: bool = True) -> FastAPI:
    """The service for ``detector``. ``source`` is an optional ``darkcsp.serve.stream.VideoSource`` (not yet
    started; the app starts it and stops it with its lifespan)."""
    config = config or ServeConfig()
    pool = InferencePool(detector, config.workers, config.queue)
    variants = DetectorVariants(detector)
    info = model_info(detector, config, source)
    page = _page()
    if warmup:  # one full detection, so that the first request does not pay for allocations
        import numpy as np
        detector.detect_images([np.full((3, detector.net_h, detector.net_w), 0.5, np.float32)])

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if source is not None:
            source.start(pool.lock)
        try:
            yield
        finally:
            if source is not None:
                source.stop()
            pool.shutdown()

    app = FastAPI(title="darkcsp serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.pool, app.state.detector, app.state.source = pool, detector, source

    @app.exception_handler(HTTPError)
    async def _http_error(request: Request, e: HTTPError):
        return _error(e.status, e.message, e.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _starlette_error(request: Request, e: StarletteHTTPException):
        message = e.detail if isinstance(e.detail, str) else str(e.detail)
        if e.status_code == 404:
            message = f"no such endpoint: {request.method} {request.url.path}"
        return _error(e.status_code, message, getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, e: RequestValidationError):
        parts = []
        for err in e.errors():
            loc = ".".join(str(x) for x in err.get("loc", ()) if x != "query")
            parts.append(f"query parameter '{loc}': {err.get('msg')}" if err.get("loc", ("",))[0] == "query"
                         else f"{loc}: {err.get('msg')}")
        return _error(422, "; ".join(parts) or "invalid request")

    @app.exception_handler(DarkcspError)
    async def _darkcsp_error(request: Request, e: DarkcspError):
        return _error(422, str(e))

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, e: Exception):
        log.exception("error answering %s %s", request.method, request.url.path)
        return _error(500, f"internal error ({type(e).__name__}); the server log has the details")

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/model")
    async def model():
        return info if source is None else dict(info, source=source.describe())

    @app.get("/", response_class=HTMLResponse)
    async def index():
        return HTMLResponse(page, headers=_PAGE_HEADERS)

    @app.post("/detect")
    async def detect(request: Request,
                     thresh: Optional[float] = Query(None, ge=0, le=1, description="probability threshold"),
                     hier: Optional[float] = Query(None, ge=0, le=1, description="hierarchy threshold"),
                     nms: Optional[float] = Query(None, ge=0, le=1, description="NMS threshold (0 disables)")):
        det = variants.get(thresh, hier, nms)
        if not pool.admit():
            await _drain(request, config.max_upload_bytes)  # read, never kept: memory stays bounded
            return _error(503, f"busy: {pool.workers} worker(s) and a queue of {pool.queue} are all taken; retry "
                               "later", {"Retry-After": str(pool.retry_after())})
        try:
            name, data = await read_image_upload(request, config.max_upload_bytes)
        except BaseException:
            pool.release()
            raise
        try:  # from here on the slot is the job's: the pool releases it when the detection ends
            return JSONResponse(await pool.detect(det, data, name))
        except ImageError as e:
            status = _image_error_status(e, data)
            raise HTTPError(status, f"not an image: {e}" if status == 415 else str(e)) from None

    if source is not None:
        from .stream import events_response, mjpeg_response

        @app.get("/stream.mjpg")
        async def stream(request: Request):
            return mjpeg_response(source, request)

        @app.get("/events")
        async def events(request: Request):
            return events_response(source, request)

    return app



# ----- the server -------------------------------------------------------------------------------------------
def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine."""
    import ipaddress
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind_socket(host: str, port: int):
    """A listening TCP socket on (host, port) (port 0: a free one); a clear ResourceError when it is taken."""
    import socket
    from ..errors import ResourceError
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ResourceError(f"cannot resolve --host {host}: {e.strerror}") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise ResourceError(f"cannot listen on {host}:{port}: {e.strerror or e} (another server on that port? "
                            "choose another --port)") from None
    sock.set_inheritable(True)
    return sock


def make_server(app: FastAPI, log_level: str = "warning", access_log: bool = False):
    """A uvicorn Server for ``app`` that ends the video streams first when it shuts down (uvicorn waits for
    open responses before the application's shutdown, and a live stream never ends by itself)."""
    import uvicorn

    class Server(uvicorn.Server):
        async def shutdown(self, sockets=None):
            source = getattr(app.state, "source", None)
            if source is not None:
                source.end_streams("the server is shutting down")
            await super().shutdown(sockets)

    config = uvicorn.Config(app, log_level=log_level, access_log=access_log, timeout_graceful_shutdown=5,
                            lifespan="on", server_header=False)
    return Server(config)
