"""The Ray engine on a real local Ray (2 CPUs, one instance for the session): records equal to `darkcsp detect
--json`, resume, and a Ray actor killed mid-run (the test hook) without a lost or duplicated record."""
from __future__ import annotations

import json
import sys

import pytest

from darkcsp.batch.engine import TEST_EXIT_AFTER_ENV, TEST_MARKER_DIR_ENV
from darkcsp.cli import main
from darkcsp.errors import UnsupportedError
from tests.batch.conftest import assert_matches_detect, read_records


@pytest.mark.slow
def test_folder_matches_detect_json_and_resume(ray_local, photo_dir, detect_records, model_args, tmp_path):
    out = tmp_path / "r.jsonl"
    args = ["batch", "-q", *model_args, str(photo_dir), "--out", str(out), "--engine", "ray", "--workers", "2",
            "--batch-size", "2"]
    assert main(args) == 4
    full = read_records(out)
    assert_matches_detect(full, detect_records, photo_dir)
    # resume after deleting half of the records: exactly the missing ones come back
    kept = full[1::2]
    out.write_text("".join(json.dumps(r) + "\n" for r in kept))
    assert main(args) == 4
    again = read_records(out)
    assert again[:len(kept)] == kept
    assert sorted(again[len(kept):], key=lambda r: r["image"]) == sorted(full[::2], key=lambda r: r["image"])


@pytest.mark.slow
def test_killed_actor_loses_and_duplicates_nothing(ray_local, photo_dir, detect_records, model_args, tmp_path,
                                                   monkeypatch):
    out = tmp_path / "r.jsonl"
    markers = tmp_path / "markers"
    markers.mkdir()
    # one actor exits (os._exit, like a crash) after 3 images, in the middle of its second batch of 2
    monkeypatch.setenv(TEST_EXIT_AFTER_ENV, "3")
    monkeypatch.setenv(TEST_MARKER_DIR_ENV, str(markers))
    rc = main(["batch", "-q", *model_args, str(photo_dir), "--out", str(out), "--engine", "ray", "--workers", "2",
               "--batch-size", "2"])
    assert rc == 4
    # the marker is written just before the actor's os._exit: one actor died mid-run, Ray restarted it
    assert (markers / "darkcsp-batch-test-exit").exists(), "the test hook did not kill an actor"
    assert_matches_detect(read_records(out), detect_records, photo_dir)


def test_ray_missing_says_how_to_install(tiny_cfg, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    from darkcsp.batch.ray_engine import require_ray
    with pytest.raises(UnsupportedError, match=r"pip install 'darkcsp\[ray\]'"):
        require_ray()
    (tmp_path / "a.jpg").write_bytes(b"")
    rc = main(["batch", "--cfg", str(tiny_cfg), str(tmp_path / "a.jpg"), "--out", str(tmp_path / "r.jsonl"),
               "--engine", "ray"])
    assert rc == UnsupportedError.exit_code
    assert "darkcsp[ray]" in capsys.readouterr().err
    assert not (tmp_path / "r.jsonl").exists()
