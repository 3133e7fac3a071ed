"""`darkcsp profile`: the JSON and text reports and the plot, on a cfg counted by hand in tests/test_analysis.py."""
from __future__ import annotations

import json

from darkcsp.cli import main

from tests.conftest import is_png


def test_profile_json_and_plot(live_set_cfg, tmp_path, capsys):
    small = live_set_cfg
    assert main(["profile", "--cfg", str(small), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["cio"] == 4224 and d["peak_live_bytes"] == 4096 and len(d["per_layer"]) == 8
    png = tmp_path / "p.png"
    assert main(["profile", "--cfg", str(small), "--plot", str(png), "--top", "3"]) == 0
    assert "bottleneck" in capsys.readouterr().out and is_png(png)
