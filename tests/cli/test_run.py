"""`darkcsp run`: a cfg (+ weights) on a .npy input to an .npz of layer outputs."""
from __future__ import annotations

import numpy as np

from darkcsp.cli import main

from tests.conftest import cfg_text, write_cfg

TINY = cfg_text("tiny-route")


def test_run_writes_all_layers(tmp_path, capsys):
    cfg = write_cfg(tmp_path, TINY)
    x = np.random.default_rng(0).random((1, 3, 16, 16), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "out.npz"
    assert main(["run", "--cfg", str(cfg), "--input", str(tmp_path / "x.npy"), "--out", str(out), "--all-layers"]) == 0
    z = np.load(out)
    assert sorted(z.files) == ["layer_0", "layer_1", "layer_2", "layer_3"]
    assert z["layer_3"].shape == (1, 6, 8, 8)
    # route groups=2 group_id=1 of [conv2 (4 ch), maxpool (8 ch)] = conv2[2:4] ++ maxpool[4:8]
    assert np.array_equal(z["layer_3"][0], np.concatenate([z["layer_2"][0, 2:], z["layer_1"][0, 4:]]))
    assert not list(tmp_path.glob("*.part*"))


def test_run_bad_input_shape(tmp_path, capsys):
    cfg = write_cfg(tmp_path, TINY)
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 8, 8), np.float32))
    rc = main(["run", "--cfg", str(cfg), "--input", str(tmp_path / "x.npy"), "--out", str(tmp_path / "o.npz")])
    assert rc != 0 and not (tmp_path / "o.npz").exists()
    assert "expects (N, 3, 16, 16)" in capsys.readouterr().err
