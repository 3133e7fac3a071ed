"""darkcsp.openvino and ``darkcsp convert --format openvino``: OpenVINO IR (.xml + .bin) written together or not at
all, readable by plain OpenVINO with darkcsp's input/output names, equal to the NumPy executor (float32),
float16-compressed and INT8 variants, and the errors: unknown precision, missing calibration, an existing IR,
OpenVINO not installed."""
from __future__ import annotations

import sys

import numpy as np
import pytest

import darkcsp
from darkcsp.cli import main
from darkcsp.errors import DarkcspError, ResourceError, UnsupportedError
from darkcsp.onnx.verify import verification_input

ov = pytest.importorskip("openvino", reason="OpenVINO not installed: pip install 'darkcsp[openvino]'")


@pytest.fixture
def model(tiny_detector_cfg):
    return darkcsp.load(tiny_detector_cfg, seed=5)


@pytest.fixture
def calib(tmp_path):
    p = tmp_path / "calib.npy"
    np.save(p, verification_input((6, 3, 32, 32)))
    return p


def _plain_openvino(xml, x):
    """Load and run an IR the way a user without darkcsp would (float32 asked for explicitly)."""
    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(xml)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    assert [i.get_any_name() for i in compiled.inputs] == ["input"]
    res = compiled({"input": x})
    return {o.get_any_name(): np.asarray(res[o]) for o in compiled.outputs}


def _leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_ir_export_matches_numpy(model, tmp_path):
    from darkcsp.openvino import export_ir
    xml = tmp_path / "out" / "tiny.xml"
    info = export_ir(model, xml)
    assert xml.exists() and xml.with_suffix(".bin").exists() and not _leftovers(xml.parent)
    assert info["outputs"] == {4: "layer_4", 7: "layer_7"} and info["max_abs_diff"] < 1e-4
    x = verification_input((1, 3, 32, 32))
    got = _plain_openvino(xml, x)
    ref = model.forward(x)
    assert sorted(got) == ["layer_4", "layer_7"]
    for i in ref:
        np.testing.assert_allclose(got[f"layer_{i}"], ref[i], rtol=1e-4, atol=1e-5)
    # an existing IR is not overwritten without force, and nothing else is left behind
    before = xml.read_bytes()
    with pytest.raises(ResourceError, match="already exist"):
        export_ir(model, xml)
    assert xml.read_bytes() == before and not _leftovers(xml.parent)
    export_ir(model, xml, force=True)


def test_ir_fp16_weights(model, tmp_path):
    from darkcsp.openvino import export_ir
    f32 = export_ir(model, tmp_path / "a.xml")
    f16 = export_ir(model, tmp_path / "b.xml", fp16=True)
    # float16 weights: about half the .bin; results within the float16 tolerance
    assert f16["bin_bytes"] < 0.6 * f32["bin_bytes"]
    assert 0 < f16["max_abs_diff"] < 5e-2 * 10


def test_ir_verification_failure_writes_nothing(model, tmp_path):
    from darkcsp.openvino import export_ir
    with pytest.raises(DarkcspError, match="verification failed.*no file written"):
        export_ir(model, tmp_path / "m.xml", fp16=True, tolerance=1e-12)
    assert list(tmp_path.iterdir()) == []


def test_ir_int8(model, tmp_path, calib):
    from darkcsp.openvino import export_ir
    with pytest.raises(DarkcspError, match="needs calibration photos"):
        export_ir(model, tmp_path / "q.xml", int8=True)
    with pytest.raises(UnsupportedError, match="does not combine"):
        export_ir(model, tmp_path / "q.xml", int8=True, fp16=True, calib=[calib])
    assert list(tmp_path.iterdir()) == [calib]
    info = export_ir(model, tmp_path / "q.xml", int8=True, calib=[calib])
    assert info["calibration_inputs"] == 6 and info["float_layers"] == [3, 4, 6, 7]
    assert "FakeQuantize" in (tmp_path / "q.xml").read_text()
    x = verification_input((1, 3, 32, 32))
    got = _plain_openvino(tmp_path / "q.xml", x)
    ref = model.forward(x)
    for i in ref:
        err = float(np.max(np.abs(got[f"layer_{i}"] - ref[i])))
        assert 0 < err < 0.1 * max(1.0, float(np.max(np.abs(ref[i]))))


def test_ir_path_must_be_xml(model, tmp_path):
    from darkcsp.openvino import export_ir
    with pytest.raises(DarkcspError, match="is a .xml file"):
        export_ir(model, tmp_path / "m.onnx")


def test_convert_cli_openvino(tiny_detector_cfg, tmp_path, calib, capsys):
    out = tmp_path / "m.xml"
    args = ["convert", "--cfg", str(tiny_detector_cfg), "--format", "openvino", "-o", str(out)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"{out} + m.bin: OpenVINO ") and "float32" in text and "layer_4 (1,21,16,16)" in text
    assert "OpenVINO (f32) vs numpy: max abs diff" in text
    assert main(args) == ResourceError.exit_code
    err = capsys.readouterr().err
    assert "already exist" in err and "--force" in err and "Traceback" not in err
    assert main(args + ["--force", "--fp16"]) == 0
    assert "float16 weights" in capsys.readouterr().out
    # INT8 without calibration, ONNX-only options, --force on ONNX: refused before anything is written
    q = tmp_path / "q.xml"
    assert main(["convert", "--cfg", str(tiny_detector_cfg), "--format", "openvino", "-o", str(q), "--int8"]) != 0
    assert "--calib" in capsys.readouterr().err
    assert main(["convert", "--cfg", str(tiny_detector_cfg), "--format", "openvino", "-o", str(q), "--nms"]) != 0
    assert "ONNX-only" in capsys.readouterr().err
    assert main(["convert", "--cfg", str(tiny_detector_cfg), "-o", str(tmp_path / "m.onnx"), "--force"]) != 0
    assert "--force is for --format openvino" in capsys.readouterr().err
    assert not q.exists() and not (tmp_path / "m.onnx").exists()
    assert main(["convert", "--cfg", str(tiny_detector_cfg), "--format", "openvino", "-o", str(q), "--int8",
                 "--calib", str(calib)]) == 0
    assert "INT8 (FakeQuantize)" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib.npy", "m.bin", "m.xml", "q.bin", "q.xml"]


def test_convert_cli_without_openvino(tiny_detector_cfg, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` raises ImportError
    out = tmp_path / "m.xml"
    code = main(["convert", "--cfg", str(tiny_detector_cfg), "--format", "openvino", "-o", str(out)])
    assert code == UnsupportedError.exit_code
    err = capsys.readouterr().err
    assert "pip install 'darkcsp[openvino]'" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
