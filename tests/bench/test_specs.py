"""darkcsp.bench.specs: backend specs and the [net] size rewrite."""
from __future__ import annotations

import pytest

from darkcsp import bench


def test_parse_backend_spec():
    s = bench.parse_backend_spec("opencv-darknet@/opt/venv-cv4/bin/python")
    assert (s.name, s.python, s.onnx_file, s.label) == ("opencv-darknet", "/opt/venv-cv4/bin/python", None,
                                                        "opencv-darknet@venv-cv4")
    s = bench.parse_backend_spec("onnxruntime=/tmp/peer.onnx")
    assert (s.name, s.onnx_file, s.label) == ("onnxruntime", "/tmp/peer.onnx", "onnxruntime=peer")
    with pytest.raises(Exception, match="only onnxruntime=FILE.onnx"):
        bench.parse_backend_spec("numpy=x.onnx")


def test_set_net_size_rewrites_only_net():
    text = "[net]\nbatch=64\nwidth=416\n height = 416\nchannels=3\n\n[convolutional]\nwidth=7\nsize=3\n"
    out = bench.set_net_size(text, 512, 320)
    net, rest = out.split("[convolutional]")
    assert "width=512" in net and "height=320" in net and "batch=1" in net and "subdivisions=1" in net
    assert "416" not in net and "64" not in net
    assert rest == "\nwidth=7\nsize=3\n"
