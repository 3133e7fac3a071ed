"""`darkcsp convert`: writes a verified ONNX model (one summary line) or fails without leaving a file."""
from __future__ import annotations

import onnx

from darkcsp.cli import main


def test_convert_cli_writes_verified_model(tiny_detector_cfg, tmp_path, capsys):
    cfg = tiny_detector_cfg
    out = tmp_path / "m.onnx"
    assert main(["convert", "--cfg", str(cfg), "-o", str(out), "--nms", "--dynamic-batch"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.count("\n") == 0
    assert "8 layers" in line and "opset 17" in line and "layer_4 (N,21,16,16)" in line and "boxes" in line
    assert "onnxruntime vs numpy: max abs diff" in line
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto, full_check=True)
    assert [o.name for o in proto.graph.output] == ["layer_4", "layer_7", "boxes", "selected_indices"]


def test_convert_cli_fails_without_leaving_a_file(tiny_detector_cfg, tmp_path, monkeypatch, capsys):
    """A lowering that departs from the NumPy executor fails verification: non-zero exit, no file."""
    from darkcsp.layers.convolutional import Convolutional
    real = Convolutional.to_onnx

    def off_by_a_bit(self, g, xs, w):
        y = real(self, g, xs, w)
        return g.op("Add", [y, g.scalar(0.05)]) if self.index == 6 else y

    monkeypatch.setattr(Convolutional, "to_onnx", off_by_a_bit)
    cfg = tiny_detector_cfg
    out = tmp_path / "bad.onnx"
    assert main(["convert", "--cfg", str(cfg), "-o", str(out)]) != 0
    assert "verification failed: layer_7" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob("*.onnx*"))
    # --no-verify writes it anyway
    assert main(["convert", "--cfg", str(cfg), "-o", str(out), "--no-verify"]) == 0
    assert out.exists()


def test_convert_cli_rejects_bad_opset(tiny_detector_cfg, tmp_path, capsys):
    cfg = tiny_detector_cfg
    assert main(["convert", "--cfg", str(cfg), "-o", str(tmp_path / "x.onnx"), "--opset", "7"]) == 5
    assert "opset 7 is not supported" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()
