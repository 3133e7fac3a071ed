"""`darkcsp batch` killed mid-run (Ctrl-C, SIGKILL of the driver) and resumed: every record once, no torn line."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from darkcsp.cli import main
from tests.batch.conftest import TINY, read_records, write_photos
from tests.conftest import REPO, write_cfg

N = 150


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """A tiny model, N photos and the results of an uninterrupted run."""
    d = tmp_path_factory.mktemp("kill")
    cfg = write_cfg(d, TINY, "tiny.cfg")
    write_photos(d / "photos", N, size=(360, 480))
    reference = d / "reference.jsonl"
    args = ["-q", "--cfg", str(cfg), "--thresh", "0.0001", str(d / "photos"), "--batch-size", "1", "--threads", "1"]
    assert main(["batch", *args, "--out", str(reference)]) == 0
    return d, args, sorted(read_records(reference), key=lambda r: r["image"])


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_killed_driver_resumes_without_loss_or_duplicates(job, sig, tmp_path):
    d, args, reference = job
    out = tmp_path / "r.jsonl"
    cmd = [sys.executable, "-m", "darkcsp", "batch", *args, "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while (not out.exists() or out.read_bytes().count(b"\n") < 10) and proc.poll() is None:
        assert time.monotonic() < deadline, "no records after 120 s"
        time.sleep(0.01)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    done = read_records(out)  # whole lines only, even after SIGKILL: one write() per record
    assert 10 <= len(done) < N, f"the run was not interrupted mid-way ({len(done)} of {N} records)"
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "interrupted" in err
    else:
        assert proc.returncode == -signal.SIGKILL
    assert main(["batch", *args, "--out", str(out)]) == 0
    again = read_records(out)
    assert again[:len(done)] == done
    assert sorted(again, key=lambda r: r["image"]) == reference  # every input once, as an uninterrupted run


def test_bad_options_are_clear_errors(job, tmp_path, capsys):
    d, args, _ = job
    for extra, message in [(["--batch-size", "0"], "--batch-size 0 must be at least 1"),
                           (["--address", "auto"], "--address needs --engine ray"),
                           (["--workers", "0", "--engine", "ray"], "--workers 0 must be at least 1"),
                           (["--thresh", "2"], "thresh=2.0 must be between 0 and 1"),
                           (["--thresh", "2", "--engine", "ray"], "thresh=2.0 must be between 0 and 1")]:
        assert main(["batch", *args, "--out", str(tmp_path / "r.jsonl"), *extra]) == 1
        assert message in capsys.readouterr().err
    assert not (tmp_path / "r.jsonl").exists()
    (tmp_path / "bad.jsonl").write_text('{"image": "x"}\nnot json\n{"image": "y"}\n')
    assert main(["batch", *args, "--out", str(tmp_path / "bad.jsonl")]) == 6
    assert "line 2 is not a JSON record" in capsys.readouterr().err
