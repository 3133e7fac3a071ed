"""`darkcsp serve` as a command: a real process on a free loopback port, stopped with Ctrl-C; its errors."""
from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from darkcsp.cli import main


pytest.importorskip("fastapi", reason="the serve extra is not installed")
httpx = pytest.importorskip("httpx")



def test_serve_process_answers_and_stops_on_ctrl_c(tmp_path, tiny_detector_cfg):
    import cv2
    import numpy as np
    cfg = tiny_detector_cfg
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8))
    proc = subprocess.Popen([sys.executable, "-m", "darkcsp", "serve", "--cfg", str(cfg), "--port", "0",
                             "--backend", "numpy", "--thresh", "0.01"], stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 120
        url = None
        while url is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            m = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
            url = m.group(1) if m else None
        assert url, "".join(lines)
        assert any("RANDOM weights" in ln for ln in lines)
        assert not any("WARNING: listening" in ln for ln in lines)  # loopback: no exposure warning
        assert httpx.get(f"{url}/health", timeout=30).json() == {"status": "ok"}
        r = httpx.post(f"{url}/detect", files={"image": ("a.png", img.read_bytes(), "image/png")}, timeout=60)
        rec = r.json()
        assert r.status_code == 200 and (rec["image"], rec["width"], rec["height"]) == ("a.png", 50, 40)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "stopped" in err


def test_serve_without_the_extra_says_how_to_install(tiny_detector_cfg, monkeypatch, capsys):
    cfg = tiny_detector_cfg
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if not installed: import raises ImportError
    rc = main(["serve", "--cfg", str(cfg), "--port", "0"])
    err = capsys.readouterr().err
    assert rc != 0 and "pip install 'darkcsp[serve]'" in err and "uvicorn" in err and "Traceback" not in err


def test_serve_port_in_use(tiny_detector_cfg, capsys):
    cfg = tiny_detector_cfg
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        rc = main(["serve", "--cfg", str(cfg), "--port", str(port)])
    err = capsys.readouterr().err
    assert rc == 6 and f"cannot listen on 127.0.0.1:{port}" in err and "--port" in err


@pytest.mark.parametrize("args,code,text", [
    (["--source", "missing.mp4"], 4, "video source not found"),
    (["--source-once"], 1, "--source-once needs --source"),
    (["--workers", "0"], 1, "--workers"),
    (["--max-upload-mb", "0"], 1, "--max-upload-mb"),
    (["--port", "70000"], 1, "not a TCP port"),
])
def test_serve_bad_options(tiny_detector_cfg, capsys, args, code, text):
    cfg = tiny_detector_cfg
    rc = main(["serve", "--cfg", str(cfg), "--port", "0", "-q", *args])
    err = capsys.readouterr().err
    assert rc == code and text in err and "Traceback" not in err
