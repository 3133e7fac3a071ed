"""``darkcsp serve``: the detector as an HTTP service (web page, JSON API, live MJPEG/SSE streams).

Needs the ``serve`` extra (``pip install 'darkcsp[serve]'``). Binds 127.0.0.1 unless ``--host`` says otherwise.
"""
from __future__ import annotations

import sys

from .. import assets
from ..errors import DarkcspError
from .common import add_detector_arguments, make_detector

NAME = "serve"
HELP = "serve detections over HTTP: a web page, POST /detect (JSON), live MJPEG/JSON streams of a video"


def add_arguments(p) -> None:
    add_detector_arguments(p)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 exposes the service)")
    p.add_argument("--port", type=int, default=8070, help="TCP port (default 8070; 0 picks a free one)")
    p.add_argument("--source", metavar="VIDEO|CAMERA|URL",
                   help="video file, camera index or stream URL: served annotated at /stream.mjpg and as JSON "
                        "records at /events (a file loops; see --source-once)")
    p.add_argument("--source-once", action="store_true",
                   help="play a --source file once: the streams end after its last frame (default: loop)")
    p.add_argument("--workers", type=int, default=1,
                   help="inference threads (default 1: the backend already uses every core)")
    p.add_argument("--queue", type=int, default=32,
                   help="requests that may wait for a worker; beyond that: 503 + Retry-After (default 32)")
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="largest accepted upload in MB (default 20)")


def run(args) -> int:
    from ..serve import require_serve_extra
    require_serve_extra()
    from ..serve.app import ServeConfig, bind_socket, create_app, is_loopback, make_server
    if not 0 <= args.port <= 65535:
        raise DarkcspError(f"--port {args.port} is not a TCP port (0-65535)", option="--port")
    config = ServeConfig(workers=args.workers, queue=args.queue, max_upload_mb=args.max_upload_mb)
    if args.source_once and not args.source:
        raise DarkcspError("--source-once needs --source", option="--source-once")
    if args.cfg is None and not args.weights:
        assets.fetch([assets.get_model(args.model or assets.DEFAULT_MODEL).weights], progress=not args.quiet)
    sock = bind_socket(args.host, args.port)  # before loading the model: a taken port fails at once
    try:
        det, cfg, weights = make_detector(args)
        config.weights = str(weights) if weights else None
        source = None
        if args.source:
            from ..serve.stream import VideoSource
            source = VideoSource(det, args.source, loop=not args.source_once)
        app = create_app(det, config, source)
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        if not args.quiet:
            print(f"darkcsp serve: {cfg} on {det.backend_name}, {det.net_w}x{det.net_h}, {config.workers} worker(s), "
                  f"queue {config.queue}", file=sys.stderr)
            print(f"darkcsp serve: http://{shown}:{port}/  (Ctrl-C stops)", file=sys.stderr)
        if not is_loopback(args.host):
            print(f"darkcsp serve: WARNING: listening on {args.host}, NOT only on this machine: anyone who can "
                  f"reach port {port} can use the service (no authentication, no TLS). Use --host 127.0.0.1 "
                  "to keep it local.", file=sys.stderr)
        server = make_server(app, log_level="error" if args.quiet else ("debug" if args.debug else "warning"))
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled: the normal way to stop a server
            pass
        if not args.quiet:
            print("darkcsp serve: stopped", file=sys.stderr)
    finally:
        sock.close()
    return 0
