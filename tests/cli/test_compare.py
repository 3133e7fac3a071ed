"""`darkcsp compare`: JSON, the fps row, and the refusal of a single cfg, on a cfg counted by hand in
tests/test_analysis.py."""
from __future__ import annotations

import json

from darkcsp.cli import main


def test_compare_json_fps_and_refusal(live_set_cfg, capsys):
    small = live_set_cfg
    assert main(["compare", str(small), str(small), "--width", "16", "--height", "16", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert [m["change"]["bflops"] for m in d["models"]] == [0.0, 0.0]
    assert main(["compare", str(small), str(small), "--fps", "--backend", "numpy", "--runs", "1"]) == 0
    assert "fps" in capsys.readouterr().out
    assert main(["compare", str(small)]) != 0
    assert "at least two" in capsys.readouterr().err
