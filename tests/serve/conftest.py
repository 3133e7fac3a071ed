"""Fixtures of the service tests: a real uvicorn server on a free loopback port, in a thread of the test
process, with a tiny random-weights model (always) or a trained corpus model (skipped without the corpus)."""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'darkcsp[serve]')")
httpx = pytest.importorskip("httpx")

import darkcsp  # noqa: E402
from darkcsp.postprocess import class_names  # noqa: E402
from darkcsp.serve.app import ServeConfig, bind_socket, create_app, make_server  # noqa: E402

from tests.conftest import CFG_DATA, case_dir, conformance_model  # noqa: E402




@contextmanager
def running(app, timeout: float = 120.0) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free 127.0.0.1 port in a thread; yields the base URL."""
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = make_server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn-test", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                if httpx.get(base + "/health", timeout=5).json() == {"status": "ok"}:
                    break
            except httpx.TransportError:
                pass
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not come up")
            time.sleep(0.05)
        yield base
    finally:
        server.should_exit = True
        thread.join(60)
        sock.close()
        assert not thread.is_alive(), "the server did not shut down"


def noise_image(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth random BGR picture (noise alone compresses badly and detects nothing interesting)."""
    import cv2
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, h // 8), max(2, w // 8), 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def encode(image: np.ndarray, ext: str) -> bytes:
    import cv2
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


@pytest.fixture(scope="session")
def tiny_model():
    """A 96x96 one-head network with random weights: its detections mean nothing, but the service must give
    exactly the in-process detector's. The random initialisation gives every box a prior probability of ~0.01
    (nothing above a threshold): the head's convolution gets larger weights and biases, so that a few boxes
    per picture pass thresh 0.4."""
    model = darkcsp.load(CFG_DATA / "one-head-96.cfg")
    head_conv = model.weights[1]
    head_conv["biases"][:] = np.random.default_rng(0).normal(-1, 1, head_conv["biases"].shape)
    head_conv["weights"] *= 20
    return model


@pytest.fixture(scope="session")
def tiny_detector(tiny_model):
    return tiny_model.detector(thresh=0.4)


@pytest.fixture(scope="session")
def tiny_images(tmp_path_factory) -> Dict[str, Path]:
    """Files of several sizes and formats (the reference side reads files like `darkcsp detect`)."""
    d = tmp_path_factory.mktemp("imgs")
    out = {}
    for i, (h, w, ext) in enumerate([(120, 160, ".png"), (200, 90, ".jpg"), (64, 64, ".png"), (333, 500, ".jpg"),
                                     (97, 211, ".bmp")]):
        p = d / f"img{i}{ext}"
        p.write_bytes(encode(noise_image(h, w, i), ext))
        out[p.name] = p
    return out


@pytest.fixture(scope="session")
def tiny_server(tiny_detector) -> Iterator[str]:
    """workers=2, so that requests really run at the same time; 1 MB uploads at most."""
    with running(create_app(tiny_detector, ServeConfig(workers=2, queue=32, max_upload_mb=1))) as base:
        yield base


def trained_case(case: str):
    """(case dir, model, names path) of a trained corpus case (the suite's model cache); skips without the
    corpus (fails under DARKCSP_REQUIRE_CONFORMANCE)."""
    d = case_dir(case)
    return d, conformance_model(case), next(d.glob("*.names"))


_CASE_SERVERS: Dict[str, object] = {}


@pytest.fixture(scope="session")
def case_server():
    """case -> base URL of a server running that trained case (default options, as `darkcsp serve`)."""
    stack = {}

    def get(case: str) -> str:
        if case not in stack:
            d, model, names = trained_case(case)
            det = model.detector(names=names)
            cm = running(create_app(det, ServeConfig()))
            stack[case] = (cm, cm.__enter__())
        return stack[case][1]

    yield get
    for cm, _ in stack.values():
        cm.__exit__(None, None, None)


__all__ = ["running", "noise_image", "encode", "trained_case", "class_names"]
