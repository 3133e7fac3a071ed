"""OpenVINO glue: read darkcsp's ONNX export, compile it for the CPU at float32 or bfloat16, write OpenVINO IR.

OpenVINO is an optional dependency (``pip install 'darkcsp[openvino]'``); everything here imports it on use and
says how to install it when it is missing.

Precision is OpenVINO's ``INFERENCE_PRECISION_HINT``. OpenVINO's CPU plugin *defaults* to bf16 on CPUs that
have it (AVX512_BF16 or AMX), so a float32 run must ask for f32 explicitly, and a bf16 run is refused on a CPU
without bf16 instead of silently running float32 under a bf16 label. INT8 models are darkcsp's QDQ ONNX
(``darkcsp.onnx.quantize``), which OpenVINO turns into its own low-precision graph; their float parts run f32.
"""
from __future__ import annotations

import io
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from .errors import DarkcspError, ResourceError, UnsupportedError

log = logging.getLogger("darkcsp")

#: inference precisions a darkcsp OpenVINO backend runs at (INFERENCE_PRECISION_HINT values)
PRECISIONS = ("f32", "bf16")
#: the CPU instruction sets OpenVINO's bf16 kernels need (any of them)
BF16_ISA = "AVX512_BF16 (Zen 4, Cooper Lake and later) or AMX-BF16 (Sapphire Rapids and later)"
INSTALL_HINT = "pip install 'darkcsp[openvino]' (openvino>=2024.0)"
DEVICE = "CPU"


def require_openvino():
    """The ``openvino`` module, or UnsupportedError saying how to install it."""
    try:
        import openvino
    except ImportError as e:
        raise UnsupportedError(f"the OpenVINO backends and IR export need OpenVINO, which is not installed ({e}): "
                               f"{INSTALL_HINT}") from None
    return openvino


_CORE = None


def core():
    """One shared ``openvino.Core`` (creating one loads the device plugins)."""
    global _CORE
    ov = require_openvino()
    if _CORE is None:
        _CORE = ov.Core()
    return _CORE


def cpu_capabilities() -> List[str]:
    """OpenVINO's CPU ``OPTIMIZATION_CAPABILITIES`` (e.g. FP32, BF16, INT8, WINOGRAD)."""
    return [str(c) for c in core().get_property(DEVICE, "OPTIMIZATION_CAPABILITIES")]


def check_precision(precision: str) -> None:
    """UnsupportedError when OpenVINO is missing, for an unknown precision, or for bf16 on a CPU without bf16
    instructions."""
    require_openvino()
    if precision not in PRECISIONS:
        raise UnsupportedError(f"unknown OpenVINO precision '{precision}': choose from {', '.join(PRECISIONS)}")
    if precision == "bf16" and "BF16" not in cpu_capabilities():
        raise UnsupportedError(f"bf16 inference needs a CPU with {BF16_ISA}; this CPU "
                               f"({_cpu_name()}) has neither, and OpenVINO would run float32 instead: use backend "
                               f"'openvino' (float32) or an INT8 backend")


def _cpu_name() -> str:
    try:
        return str(core().get_property(DEVICE, "FULL_DEVICE_NAME"))
    except Exception:  # pragma: no cover - informative only
        return "unknown CPU"


def read_onnx(data: bytes):
    """An ``openvino.Model`` from serialized ONNX (in memory: no temporary file)."""
    ov = require_openvino()
    try:
        return ov.convert_model(io.BytesIO(data))
    except Exception as e:
        raise UnsupportedError(f"OpenVINO {ov.__version__} cannot read the exported ONNX model: {e}") from None


def compile_model(model, precision: str = "f32", threads: Optional[int] = None):
    """Compile an ``openvino.Model`` for the CPU at ``precision``, latency-oriented (one stream).

    The precision OpenVINO actually chose is read back: a bf16 request that compiles to anything else is an
    error, never a float32 run reported as bf16."""
    check_precision(precision)
    config: Dict[str, Any] = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    try:
        compiled = core().compile_model(model, DEVICE, config)
    except Exception as e:
        raise UnsupportedError(f"OpenVINO cannot compile the model for the CPU at {precision}: {e}") from None
    got = _precision_name(str(compiled.get_property("INFERENCE_PRECISION_HINT")))
    if got != precision:
        need = f" ({precision} needs {BF16_ISA})" if precision == "bf16" else ""
        raise UnsupportedError(f"OpenVINO compiled the model at {got}, not the {precision} asked for{need}")
    return compiled


def _precision_name(ov_type: str) -> str:
    t = ov_type.lower()
    return {"float32": "f32", "f32": "f32", "bfloat16": "bf16", "bf16": "bf16", "float16": "f16",
            "f16": "f16"}.get(t.replace("<type: '", "").rstrip("'>"), t)


class Runner:
    """A compiled model and one infer request: ``runner(x) -> {output name: array}`` (not thread-safe; the
    backends serialise calls)."""

    def __init__(self, compiled):
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self.output_names = [o.get_any_name() for o in compiled.outputs]

    def __call__(self, x: np.ndarray) -> Dict[str, np.ndarray]:
        res = self.request.infer({"input": x})
        return {name: np.asarray(res[o]) for name, o in zip(self.output_names, self.compiled.outputs)}


def version() -> str:
    return str(require_openvino().__version__)


# ----- IR export ------------------------------------------------------------------------------------

def ir_paths(output: Union[str, Path]) -> tuple:
    """(.xml, .bin) for an IR output path, which must end in .xml."""
    output = Path(output)
    if output.suffix.lower() != ".xml":
        raise DarkcspError(f"an OpenVINO IR output is a .xml file (the weights go to the .bin beside it), not "
                           f"'{output.name}'", file=str(output))
    return output, output.with_suffix(".bin")


def export_ir(model, output: Union[str, Path], *, fp16: bool = False, int8: bool = False,
              calib: Optional[Sequence] = None, calib_method: str = "percentile", opset: Optional[int] = None,
              target: str = "generic", verify: bool = True, tolerance: Optional[float] = None,
              force: bool = False) -> Dict[str, Any]:
    """Write ``model`` as OpenVINO IR: ``output`` (.xml) and the .bin beside it, both or neither.

    ``fp16`` compresses the weights to float16 (OpenVINO decompresses them at load; compute stays as the runtime
    decides); ``int8`` writes darkcsp's calibrated INT8 model (QDQ -> OpenVINO FakeQuantize; ``calib``: photos,
    image arrays or .npy tensors, preprocessed like the detector). The IR is read back with plain OpenVINO,
    compiled at f32 and compared with the NumPy executor: float IRs must agree within ``tolerance`` (default 1e-2,
    5e-2 with fp16, of max(1, max |numpy|)); for INT8 the difference on the first calibration input is reported.
    An existing .xml or .bin is an error unless ``force``. Returns a summary dict."""
    from .onnx.builder import DEFAULT_OPSET
    from .onnx.export import ExportOptions, export_model
    from .onnx.verify import TOLERANCE, TOLERANCE_FP16, max_difference, verify_outputs

    ov = require_openvino()
    xml, bin_ = ir_paths(output)
    existing = [p for p in (xml, bin_) if p.exists()]
    if existing and not force:
        raise ResourceError(f"{' and '.join(str(p) for p in existing)} already exist(s): choose another output or "
                            f"overwrite with --force (force=True)", file=str(xml))
    if int8 and fp16:
        raise UnsupportedError("an INT8 IR keeps its float parts in float32: --fp16 does not combine with --int8")
    summary: Dict[str, Any] = {"format": "openvino", "openvino": ov.__version__, "fp16": fp16, "int8": int8}
    options = ExportOptions(opset=opset or DEFAULT_OPSET, target=target)
    if int8:
        from .onnx.quantize import calibration_inputs, quantize_export
        if not calib:
            raise DarkcspError("an INT8 IR needs calibration photos: --calib IMAGE [IMAGE ...] (or .npy input "
                               "tensors), ideally a few dozen images like the ones the model will see")
        inputs = calibration_inputs(calib, model)
        data, info, qsummary = quantize_export(model, inputs, options, method=calib_method)
        summary.update(qsummary)
    else:
        proto, info = export_model(model, options)
        data = proto.SerializeToString()
    ov_model = read_onnx(data)
    ov_model.set_rt_info(str(model.graph.file), ["darkcsp", "cfg"])
    ov_model.set_rt_info("input float32 NCHW RGB [0,1]; outputs layer_<i> = darkcsp run", ["darkcsp", "io"])

    parent = xml.parent if str(xml.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{xml.stem}.", suffix=".part", dir=str(parent)))
    except OSError as e:
        raise ResourceError(f"cannot write output: {e.strerror or e}", file=str(xml)) from None
    try:
        tmp_xml = tmp / "model.xml"
        try:
            ov.save_model(ov_model, str(tmp_xml), compress_to_fp16=fp16)
        except Exception as e:
            raise ResourceError(f"OpenVINO could not write the IR: {e}", file=str(xml)) from None
        if verify:
            # plain OpenVINO on the written files, as a user would load them
            runner = Runner(compile_model(core().read_model(str(tmp_xml)), "f32"))
            if int8:
                summary["max_abs_diff"] = max_difference(model, info.outputs, runner, inputs[0])
            else:
                tol = tolerance if tolerance is not None else (TOLERANCE_FP16 if fp16 else TOLERANCE)
                diffs = verify_outputs([(model, 1)], info.outputs, runner, tol, "OpenVINO IR")
                summary["max_abs_diff"] = max(diffs.values()) if diffs else 0.0
        umask = os.umask(0)
        os.umask(umask)
        for p in tmp.iterdir():
            os.chmod(p, 0o666 & ~umask)
        # the .bin first: the .xml is what readers open, so it appears only once its weights are in place
        try:
            os.replace(tmp / "model.bin", bin_)
            try:
                os.replace(tmp_xml, xml)
            except OSError:
                bin_.unlink(missing_ok=True)
                raise
        except OSError as e:
            raise ResourceError(f"cannot write output: {e.strerror or e}", file=str(xml)) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    summary.update(xml=str(xml), bin=str(bin_), xml_bytes=xml.stat().st_size, bin_bytes=bin_.stat().st_size,
                   outputs=dict(info.outputs), output_shapes=dict(info.output_shapes))
    return summary

