"""The local engine through the CLI: records equal to `darkcsp detect --json`, resume, torn-line repair,
--save-images."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from darkcsp.batch import list_inputs
from darkcsp.batch.engine import annotated_path
from darkcsp.cli import main
from tests.batch.conftest import assert_matches_detect, read_records, write_photos


def test_folder_matches_detect_json(photo_dir, detect_records, model_args, tmp_path):
    out = tmp_path / "r.jsonl"
    rc = main(["batch", "-q", *model_args, str(photo_dir), "--out", str(out), "--batch-size", "4", "--streams", "2"])
    assert rc == 4  # broken.jpg could not be read: ImageError's exit code, as detect
    records = read_records(out)
    assert_matches_detect(records, detect_records, photo_dir)
    assert [r["image"] for r in records] == list_inputs([str(photo_dir)])  # the local engine keeps input order


def test_resume_restores_exactly_the_missing_records(photo_dir, detect_records, model_args, tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    args = ["batch", *model_args, str(photo_dir), "--out", str(out), "--batch-size", "3"]
    assert main(args) == 4
    full = read_records(out)
    kept = full[::2]  # delete half of the records
    out.write_text("".join(json.dumps(r) + "\n" for r in kept))
    capsys.readouterr()
    assert main(args) == 4
    err = capsys.readouterr().err
    assert f"{len(full)} inputs, {len(kept)} already in {out}, {len(full) - len(kept)} to do" in err
    again = read_records(out)
    assert again[:len(kept)] == kept  # the kept lines untouched, the missing ones appended
    assert sorted(again[len(kept):], key=lambda r: r["image"]) == \
        sorted(full[1::2], key=lambda r: r["image"])
    assert_matches_detect(again, detect_records, photo_dir)
    # a third run has nothing to do and writes nothing
    before = out.read_bytes()
    assert main(args) == 4
    assert out.read_bytes() == before


def test_torn_last_line_is_repaired_and_redone(tiny_cfg, tmp_path):
    photos = write_photos(tmp_path / "p", 5)
    out = tmp_path / "r.jsonl"
    args = ["batch", "-q", "--cfg", str(tiny_cfg), "--thresh", "0.01", str(tmp_path / "p"), "--out", str(out),
            "--streams", "1", "--batch-size", "2"]
    assert main(args) == 0
    full = read_records(out)
    assert [r["image"] for r in full] == [str(p) for p in photos]
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:3]) + lines[3][:len(lines[3]) // 2])  # record 4 torn, record 5 missing
    assert main(args) == 0
    again = read_records(out)
    assert again[:3] == full[:3]
    assert sorted(again, key=lambda r: r["image"]) == full


def test_save_images(tiny_cfg, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_photos(tmp_path / "p" / "q", 3)
    out = tmp_path / "r.jsonl"
    model = ["--cfg", str(tiny_cfg), "--thresh", "0.0001"]  # random weights: objectness ~0.01
    assert main(["batch", "-q", *model, "p", "--out", str(out), "--save-images", "ann"]) == 0
    assert main(["detect", "-q", *model, "p/q", "--out", "det"]) == 0
    for r in read_records(out):
        target = annotated_path(tmp_path / "ann", r["image"])
        assert target == tmp_path / "ann" / r["image"]
        # the annotated copy `detect` writes, byte for byte
        assert target.read_bytes() == (tmp_path / "det" / target.name).read_bytes()
        assert r["detections"] and not np.array_equal(cv2.imread(str(target)), cv2.imread(r["image"]))
    assert not list((tmp_path / "ann").rglob("*.part*"))
    with pytest.raises(SystemExit):
        main(["batch", "--cfg", str(tiny_cfg), "p"])  # --out is required
    assert main(["batch", "-q", "--cfg", str(tiny_cfg), "p", "--out", str(out), "--save-images", "."]) == 6


def test_annotated_paths():
    assert annotated_path("d", "/abs/x.png").as_posix() == "d/abs/x.png"
    assert annotated_path("d", "../up/./x.tif").as_posix() == "d/__/up/x.tif.jpg"
