"""darkcsp.bench.runner: statistics and block ratios by hand, and the interleaving plan of ``run_bench``."""
from __future__ import annotations

import pytest

from darkcsp import bench


def test_summarise_by_hand():
    s = bench.summarise([0.010, 0.020, 0.030, 0.040, 0.050], batch=2, bflops=1.0)
    assert s["latency_ms"]["median"] == pytest.approx(30.0)
    assert s["latency_ms"]["p10"] == pytest.approx(14.0)  # linear interpolation: 10 + 0.4 * 10
    assert s["latency_ms"]["p90"] == pytest.approx(46.0)
    assert s["fps"] == pytest.approx(2 / 0.030)
    assert s["gflops"] == pytest.approx(2 * 1.0 / 0.030)


def test_block_ratios_by_hand():
    a = [(0, [0.01, 0.01]), (1, [0.02, 0.02])]  # twice as fast as b in block 0, as fast in block 1
    b = [(0, [0.02, 0.02]), (1, [0.02, 0.02]), (2, [0.5])]  # block 2: b alone, not paired
    r = bench.block_ratios(a, b)
    assert r["blocks"] == 2 and r["median"] == pytest.approx(1.5)
    assert r["p10"] == pytest.approx(1.1) and r["p90"] == pytest.approx(1.9)


def test_api_per_backend_runs_and_ratio_pairs_blocks(tiny_detector_cfg):
    cfg = bench.BenchConfig(cfg=str(tiny_detector_cfg), backends=[bench.BackendSpec("numpy", label="a"),
                                                         bench.BackendSpec("numpy", label="b", runs=2)],
                            threads=1, warmup=0, runs=6, block=2, baseline="a")
    res = bench.run_bench(cfg)
    a, b = res["backends"]
    assert (a["runs"], b["runs"]) == (6, 2)
    assert [i for i, _ in a["blocks"]] == [0, 1, 2] and [i for i, _ in b["blocks"]] == [0]
    assert b["vs_baseline"]["blocks"] == 1 and res["baseline"] == "a"
