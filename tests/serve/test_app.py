"""`darkcsp serve`'s HTTP API against a real uvicorn server on a loopback port.

Fidelity: every trained corpus photo through POST /detect gives Darknet's detections (the rule of
tests/test_detect.py: PNG the printed lines, JPEG the same classes in order, probs within 0.01, IoU >= 0.98), and
exactly what `darkcsp detect --json` writes for the same files. Then bad input (4xx JSON, the server keeps
answering), concurrency (8 clients x 20 requests = the sequential answers) and the bounded queue (503 +
Retry-After at once when it is full)."""
from __future__ import annotations

import json
import struct
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from darkcsp.cli import main
from darkcsp.detector import record
from darkcsp.postprocess import Detection
from darkcsp.serve.app import ServeConfig, create_app, is_loopback

from tests.conftest import TRAINED, assert_same_detections, case_weights, photo_of, trained_images
from tests.serve.conftest import encode, noise_image, running, trained_case


def post_file(base, path, **params):
    with open(path, "rb") as f:
        return httpx.post(f"{base}/detect", params=params, files={"image": (path.name, f, "image/jpeg")},
                          timeout=120)


def as_detections(rec):
    """The JSON record back as Detection objects (for tests.test_postprocess.assert_same_detections)."""
    return [Detection(d["class_id"], d["class_name"], d["prob"], d["x"], d["y"], d["w"], d["h"], 0.0,
                      rec["width"], rec["height"]) for d in rec["detections"]]


# ----- fidelity -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case,image", trained_images())
def test_detect_equals_darknet(case, image, case_server):
    base = case_server(case)
    f = photo_of(case, image)
    dj = json.loads((f.parent / "detections.json").read_text())
    r = post_file(base, f)
    assert r.status_code == 200, r.text
    rec = r.json()
    assert (rec["image"], rec["width"], rec["height"]) == (f.name, dj["image_w"], dj["image_h"])
    got = as_detections(rec)
    if f.suffix.lower() == ".png":  # lossless: Darknet's printed lines
        assert_same_detections(got, dj["detections"])
    else:  # stb_image vs libjpeg-turbo IDCT: a few 1/255 per pixel (tests/test_detect.py)
        assert_same_detections(got, dj["detections"], prob_tol=0.01, min_iou=0.98, lines=False)


@pytest.mark.parametrize("case", TRAINED)
def test_detect_equals_cli_json(case, case_server, tmp_path, capsys):
    """The same record as `darkcsp detect --json` for each photo of the case (apart from the image name: the
    CLI writes the path it was given, the service the upload's file name)."""
    d, _, names = trained_case(case)
    base = case_server(case)
    photos = [photo_of(case, p.name) for p in sorted((d / "images").iterdir())]
    out = tmp_path / "cli.json"
    rc = main(["detect", "--cfg", str(d / "model.cfg"), "--weights", str(case_weights(case)), "--names", str(names),
               "--no-save", "--json-file", str(out), "-q", *map(str, photos)])
    assert rc == 0, capsys.readouterr().err
    cli = json.loads(out.read_text())
    for f, want in zip(photos, cli):
        got = post_file(base, f).json()
        assert got == dict(want, image=f.name)


def test_model_and_health(case_server):
    base = case_server("yolov4-tiny-coco")
    assert httpx.get(f"{base}/health").json() == {"status": "ok"}
    m = httpx.get(f"{base}/model").json()
    assert (m["cfg"], m["weights"], m["backend"], m["width"], m["height"], m["classes"]) == \
        ("model.cfg", "model.weights", "onnxruntime", 416, 416, 80)
    assert m["params"] == 6062814 and m["bflops"] == pytest.approx(6.910, abs=1e-3)  # Darknet's printout
    assert m["names"][:2] == ["person", "bicycle"] and m["source"] is None


def test_query_thresholds(case_server):
    """thresh/nms per request: the detector with those options, the server's own options unchanged."""
    case = "yolov4-tiny-coco"
    base = case_server(case)
    _, model, names = trained_case(case)
    f = photo_of(case, "bus")
    for params in ({"thresh": 0.5}, {"thresh": 0.1, "nms": 0.3}, {"nms": 0}, {}):
        det = model.detector(names=names, **params)
        assert post_file(base, f, **params).json() == record(f.name, 810, 1080, det(f))
    assert httpx.get(f"{base}/model").json()["thresh"] == 0.25


# ----- tiny model: exact equality with the in-process detector -------------------------------------------------
def reference(det, path):
    dets = det(path)
    im = det.load_image(path)
    return record(path.name, im.shape[2], im.shape[1], dets)


def test_tiny_detect_equals_in_process(tiny_server, tiny_detector, tiny_images):
    total = 0
    for p in tiny_images.values():
        r = post_file(tiny_server, p)
        assert r.status_code == 200, r.text
        assert r.json() == reference(tiny_detector, p)
        total += len(r.json()["detections"])
    assert total > 0  # otherwise the comparison proves little


def test_raw_body(tiny_server, tiny_detector, tiny_images):
    p = tiny_images["img0.png"]
    r = httpx.post(f"{tiny_server}/detect", params={"name": "../../etc/x.png"}, content=p.read_bytes(),
                   headers={"Content-Type": "image/png"})
    assert r.status_code == 200
    assert r.json() == dict(reference(tiny_detector, p), image="x.png")  # no directory part is echoed
    r = httpx.post(f"{tiny_server}/detect", content=p.read_bytes(),
                   headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 200 and r.json()["image"] == "upload"


def _png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header says width x height (its data does not follow: the size check comes first)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
            + struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND")))


def _slow_body(data: bytes, chunk: int = 64 << 10):
    for i in range(0, len(data), chunk):  # no Content-Length: the limit must hold while reading
        yield data[i:i + chunk]


BAD = {
    "text file": (lambda good: {"files": {"image": ("notes.txt", b"just some text, not an image", "text/plain")}},
                  415, "cannot decode image"),
    "truncated jpeg": (lambda good: {"files": {"image": ("cut.jpg", good[: len(good) // 2], "image/jpeg")}},
                       422, "corrupt/truncated"),
    "truncated png": (lambda good: {"files": {"image": ("cut.png", encode(noise_image(200, 300, 9), ".png")[:3000],
                                                         "image/png")}}, 422, "truncated"),
    "over the pixel limit": (lambda good: {"files": {"image": ("huge.png", _png_claiming(40000, 40000), "image/png")}},
                             413, "40000 x 40000 pixels"),
    "over max-upload-mb": (lambda good: {"files": {"image": ("big.jpg", good + b"\0" * (2 << 20), "image/jpeg")}},
                           413, "limit of 1 MB"),
    "over max-upload-mb, chunked": (lambda good: {"content": _slow_body(b"\xff\xd8\xff" + b"\0" * (3 << 20)),
                                                  "headers": {"Content-Type": "image/jpeg"}}, 413, "limit of 1 MB"),
    "wrong field name": (lambda good: {"files": {"file": ("a.jpg", good, "image/jpeg")}}, 422, "no field 'image'"),
    "no field at all": (lambda good: {"data": {"thresh": "0.3"}, "files": {"other": ("x", b"", "text/plain")}}, 422,
                        "no field 'image'"),
    "json body": (lambda good: {"json": {"image": "bus.jpg"}}, 415, "not an image"),
    "empty body": (lambda good: {"content": b"", "headers": {"Content-Type": "image/jpeg"}}, 400, "no body"),
    "empty field": (lambda good: {"files": {"image": ("e.jpg", b"", "image/jpeg")}}, 400, "empty"),
    "thresh not a number": (lambda good: {"params": {"thresh": "high"}, "files": {"image": ("a.jpg", good)}}, 422,
                            "thresh"),
    "thresh out of range": (lambda good: {"params": {"thresh": "1.5"}, "files": {"image": ("a.jpg", good)}}, 422,
                            "thresh"),
}


@pytest.mark.parametrize("what", list(BAD))
def test_bad_input_gets_4xx_json_and_the_server_goes_on(what, tiny_server, tiny_detector, tiny_images):
    good = tiny_images["img1.jpg"].read_bytes()
    make, status, text = BAD[what]
    r = httpx.post(f"{tiny_server}/detect", timeout=60, **make(good))
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert text in r.json()["error"]
    p = tiny_images["img3.jpg"]
    assert post_file(tiny_server, p).json() == reference(tiny_detector, p)


def test_unknown_endpoint_and_method(tiny_server):
    r = httpx.get(f"{tiny_server}/etc/passwd")
    assert r.status_code == 404 and "no such endpoint" in r.json()["error"]
    r = httpx.get(f"{tiny_server}/detect")
    assert r.status_code == 405 and "error" in r.json()
    assert httpx.get(f"{tiny_server}/stream.mjpg").status_code == 404  # no --source


def test_page_is_self_contained(tiny_server):
    r = httpx.get(f"{tiny_server}/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in r.headers["content-security-policy"]
    html = r.text
    assert "<script src" not in html and "http://" not in html and "https://" not in html  # no CDN


# ----- concurrency -------------------------------------------------------------------------------------------
def test_8_clients_x_20_requests_equal_sequential(tiny_server, tiny_detector, tiny_images):
    files = sorted(tiny_images.values())
    sequential = {p.name: post_file(tiny_server, p).json() for p in files}
    assert all(sequential[p.name] == reference(tiny_detector, p) for p in files)

    def client(k):
        out = []
        with httpx.Client(timeout=120) as c:
            for i in range(20):
                p = files[(k + i) % len(files)]
                with open(p, "rb") as f:
                    r = c.post(f"{tiny_server}/detect", files={"image": (p.name, f)})
                out.append((p.name, r.status_code, r.json()))
        return out

    with ThreadPoolExecutor(8) as ex:
        answers = [a for batch in ex.map(client, range(8)) for a in batch]
    assert len(answers) == 160
    assert all(status == 200 for _, status, _ in answers), [a for a in answers if a[1] != 200][:3]
    assert all(rec == sequential[name] for name, _, rec in answers)


def test_full_queue_answers_503_at_once(tiny_detector, tiny_images):
    """workers=1 + queue=1 = 2 slots: two uploads that are still sending hold them; the third request gets 503
    with Retry-After without waiting, and the held ones complete once their bodies arrive."""
    good = tiny_images["img0.png"].read_bytes()
    app = create_app(tiny_detector, ServeConfig(workers=1, queue=1), warmup=False)
    with running(app) as base:
        release = threading.Event()
        started = threading.Semaphore(0)

        def held_body():
            yield good[:100]
            started.release()
            release.wait(30)
            yield good[100:]

        def held_request():
            return httpx.post(f"{base}/detect", content=held_body(), headers={"Content-Type": "image/png"}, timeout=60)

        with ThreadPoolExecutor(2) as ex:
            held = [ex.submit(held_request) for _ in range(2)]
            for _ in range(2):
                assert started.acquire(timeout=30)
            import time
            time.sleep(0.3)  # the server has taken both slots once it reads the first chunks
            t0 = time.monotonic()
            r = httpx.post(f"{base}/detect", content=good, headers={"Content-Type": "image/png"}, timeout=30)
            waited = time.monotonic() - t0
            release.set()
            results = [h.result() for h in held]
        assert r.status_code == 503 and "busy" in r.json()["error"] and int(r.headers["Retry-After"]) >= 1
        assert waited < 5
        assert [h.status_code for h in results] == [200, 200]
        assert results[0].json()["detections"] == results[1].json()["detections"]
        # and the slots are free again
        assert httpx.post(f"{base}/detect", content=good, headers={"Content-Type": "image/png"}).status_code == 200


def test_burst_on_a_tiny_queue_gets_answers_or_503(tiny_detector, tiny_images):
    """8 clients x 20 requests on workers=1, queue=0: every answer is the sequential one or a JSON 503."""
    files = sorted(tiny_images.values())
    with running(create_app(tiny_detector, ServeConfig(workers=1, queue=0), warmup=False)) as base:
        sequential = {p.name: post_file(base, p).json() for p in files}

        def client(k):
            out = []
            with httpx.Client(timeout=120) as c:
                for i in range(20):
                    p = files[(k + i) % len(files)]
                    r = c.post(f"{base}/detect", content=p.read_bytes(), params={"name": p.name},
                               headers={"Content-Type": "application/octet-stream"})
                    out.append((p.name, r))
            return out

        with ThreadPoolExecutor(8) as ex:
            answers = [a for batch in ex.map(client, range(8)) for a in batch]
    assert len(answers) == 160
    for name, r in answers:
        assert r.status_code in (200, 503), r.text
        if r.status_code == 200:
            assert r.json() == sequential[name]
        else:
            assert "busy" in r.json()["error"] and r.headers["Retry-After"].isdigit()
    assert any(r.status_code == 200 for _, r in answers)


def test_is_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1") and is_loopback("127.0.0.2")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("192.168.1.10")


def test_uploads_never_touch_the_disk(tiny_detector, monkeypatch):
    """Starlette's form parser spools uploads over 1 MB to a temporary file; ours must not: a 2 MB upload with
    every way to a temporary file forbidden still answers."""
    import tempfile
    import starlette.formparsers

    def forbidden(*a, **k):
        raise AssertionError("an upload was written to a temporary file")

    for name in ("SpooledTemporaryFile", "TemporaryFile", "NamedTemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, forbidden)
    monkeypatch.setattr(starlette.formparsers, "SpooledTemporaryFile", forbidden)
    big = encode(noise_image(900, 1200, 5), ".png")
    assert len(big) > 1.5 * (1 << 20)
    with running(create_app(tiny_detector, ServeConfig(max_upload_mb=8), warmup=False)) as base:
        r = httpx.post(f"{base}/detect", files={"image": ("big.png", big, "image/png")}, timeout=60)
    assert r.status_code == 200 and r.json()["width"] == 1200


@pytest.mark.parametrize("backend", ["numpy", "opencv"])
def test_other_backends_under_concurrency(backend, tiny_model, tiny_images):
    """numpy runs in parallel on the workers, OpenCV's Net is not thread-safe and is serialised: both give the
    in-process answers to 4 concurrent clients."""
    from darkcsp.backends import available_backends
    if backend not in available_backends():
        pytest.skip(f"backend {backend} not available here")
    det = tiny_model.detector(backend=backend, thresh=0.4)
    files = sorted(tiny_images.values())
    want = {p.name: reference(det, p) for p in files}
    with running(create_app(det, ServeConfig(workers=2), warmup=False)) as base:
        def client(k):
            with httpx.Client(timeout=120) as c:
                return [(p.name, c.post(f"{base}/detect", files={"image": (p.name, p.read_bytes())}).json())
                        for p in files[k:] + files[:k]]

        with ThreadPoolExecutor(4) as ex:
            answers = [a for batch in ex.map(client, range(4)) for a in batch]
    assert len(answers) == 4 * len(files) and all(rec == want[name] for name, rec in answers)
