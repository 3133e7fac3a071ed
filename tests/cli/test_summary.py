"""`darkcsp summary`: Darknet's layer table, or JSON, for a cfg."""
from __future__ import annotations

import json

from darkcsp.cli import main

from tests.conftest import cfg_text, write_cfg

TINY = cfg_text("tiny-route")


def test_summary_json_format(tmp_path, capsys):
    assert main(["summary", "--cfg", str(write_cfg(tmp_path, TINY)), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert set(d) == {"layers", "bflops_total", "params_total"}
    assert set(d["layers"][0]) == {"index", "type", "in_shape", "out_shape", "bflops", "params"}
    assert d["layers"][3]["type"] == "route" and d["layers"][3]["out_shape"] == [6, 8, 8]
    assert d["params_total"] == 284


def test_summary_table(tmp_path, capsys):
    assert main(["summary", "--cfg", str(write_cfg(tmp_path, TINY))]) == 0
    out = capsys.readouterr().out
    assert "Total BFLOPS" in out and "route" in out and "maxpool" in out
