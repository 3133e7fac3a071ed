"""Seeded, bounded fuzzing: mutated cfgs and weights give a DarkcspError or work, never a crash or a hang.

The corpus is the seed cfgs of tests/data/cfg/fuzz/ plus, when present, the conformance cfgs. Input i is a
pure function of (corpus, seed, i): a failure message names the index, and
``python tools/fuzz.py --seed S --start I --inputs 1 --save`` writes that input out for reproduction.
"""
from __future__ import annotations

import collections
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest

from tests.conftest import REPO, conformance_root
from tests.fuzz import fuzzer

#: per-input bound (seconds): a parse that takes longer is a hang
PER_INPUT_SECONDS = 3.0


def fuzz(corpus, seed: int, n: int):
    with fuzzer.scratch_dir() as td:
        return _fuzz_in(corpus, seed, n, Path(td))


def _fuzz_in(corpus, seed: int, n: int, workdir: Path):
    with fuzzer.quiet_darkcsp():
        fuzzer.measure_params(corpus, workdir)
    failures, outcomes, slowest = [], collections.Counter(), (0.0, -1)
    t0 = time.perf_counter()
    with fuzzer.quiet_darkcsp(), fuzzer.address_space_limit(3.0):
        for i in range(n):
            inp = fuzzer.make_input(corpus, seed, i)
            t = time.perf_counter()
            try:
                with fuzzer.time_limit(PER_INPUT_SECONDS):
                    outcomes[fuzzer.run_input(inp, workdir)] += 1
            except fuzzer.FuzzHang:
                failures.append(f"input {i} ({inp.base}, {inp.ops}): HANG (> {PER_INPUT_SECONDS} s)")
            except Exception as e:  # noqa: BLE001
                tb = traceback.extract_tb(e.__traceback__)[-1]
                failures.append(f"input {i} ({inp.base}, {inp.ops}): {type(e).__name__}: {e} "
                                f"at {tb.filename}:{tb.lineno}")
            slowest = max(slowest, (time.perf_counter() - t, i))
    return failures, outcomes, time.perf_counter() - t0, slowest


def _report(failures, outcomes, elapsed, slowest, n, seed, corpus_flag=""):
    return (f"{len(failures)} of {n} inputs failed in {elapsed:.1f} s (slowest input {slowest[1]}: "
            f"{slowest[0]:.2f} s; outcomes {dict(outcomes)}); to get input I as files: python tools/fuzz.py "
            f"--seed {seed} --start I --inputs 1 --save{corpus_flag}\n" + "\n".join(failures[:15]))


def test_fuzz_seed_cfgs_without_corpus(tmp_path):
    """Works on a fresh clone: only the cfgs written in darkcsp/fuzzer.py."""
    corpus = fuzzer.load_corpus(None)
    n = 800
    failures, outcomes, elapsed, slowest = fuzz(corpus, seed=11, n=n)
    assert not failures, _report(failures, outcomes, elapsed, slowest, n, 11, " --no-corpus")
    # the seeds must exercise the whole pipeline, not just die in the parser
    assert outcomes["ok+forward"] > n // 20, dict(outcomes)
    assert outcomes["ok+weights"] + outcomes["ok+weights+forward"] > n // 50, dict(outcomes)
    assert outcomes["WeightsError"] > 0 and outcomes["CfgError"] > 0, dict(outcomes)


def test_fuzz_corpus(tmp_path):
    """2,000 inputs over the conformance cfgs (+ seeds); falls back to seeds only without the corpus."""
    root = conformance_root()
    corpus = fuzzer.load_corpus(root if root.is_dir() else None)
    n = 2000
    failures, outcomes, elapsed, slowest = fuzz(corpus, seed=1, n=n)
    assert not failures, _report(failures, outcomes, elapsed, slowest, n, 1, "" if root.is_dir() else " --no-corpus")
    assert sum(outcomes.values()) == n


def test_seed_cfgs_build_unmutated(tmp_path):
    corpus = fuzzer.load_corpus(None)
    with fuzzer.quiet_darkcsp():
        fuzzer.measure_params(corpus, tmp_path)
    assert all(e.params is not None for e in corpus), [e.name for e in corpus if e.params is None]


def test_inputs_are_reproducible_from_seed_and_index():
    corpus = fuzzer.load_corpus(None)
    for e in corpus:
        e.params = 100
    a = [fuzzer.make_input(corpus, 5, i) for i in range(50)]
    b = [fuzzer.make_input(corpus, 5, i) for i in range(50)]
    assert [(x.cfg, x.weights, x.ops) for x in a] == [(x.cfg, x.weights, x.ops) for x in b]
    c = [fuzzer.make_input(corpus, 6, i) for i in range(50)]
    assert [x.cfg for x in a] != [x.cfg for x in c]


def test_every_mutation_is_used():
    corpus = fuzzer.load_corpus(None)
    for e in corpus:
        e.params = 100
    ops = collections.Counter(op.split(":")[0] for i in range(3000) for op in fuzzer.make_input(corpus, 3, i).ops)
    names = {n for n, _, _ in fuzzer.CFG_MUTATIONS} | {n for n, _, _ in fuzzer.WEIGHTS_MUTATIONS}
    assert names <= set(ops), names - set(ops)


def test_time_limit_interrupts_a_loop():
    with pytest.raises(fuzzer.FuzzHang):
        with fuzzer.time_limit(0.2):
            while True:
                pass


def test_fuzz_tool_runs_and_saves_reproducers(tmp_path):
    out = tmp_path / "findings"
    # --onnx: graphs that run are also exported and run in onnxruntime
    r = subprocess.run([sys.executable, str(REPO / "tools" / "fuzz.py"), "--inputs", "60", "--seed", "3",
                        "--no-corpus", "--onnx", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "60 tried" in r.stdout and "crashes: 0" in r.stdout and "hangs: 0" in r.stdout
    assert "ok+onnx" in r.stdout
    assert not out.exists()
    # reproducing input 7 as files: --out is relative to the caller's folder (the tool runs from the repo root)
    r = subprocess.run([sys.executable, str(REPO / "tools" / "fuzz.py"), "--start", "7", "--inputs", "1", "--seed",
                        "3", "--no-corpus", "--save", "--out", "findings"], capture_output=True, text=True,
                       timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    d = out / "00000007"
    assert (d / "model.cfg").exists() and "mutations" in (d / "README.txt").read_text()
    assert sorted(p.name for p in out.iterdir()) == ["00000007"]


def test_fuzz_images(tmp_path):
    """Mutated PNG/JPEG/BMP/TIFF/WebP/PNM bytes through darkcsp.image (decode + Darknet's resize/letterbox):
    an ImageError or a correct network input, never a crash, a hang or a memory blow-up. Run in a worker
    process by tools/fuzz.py, so that a crash inside a C decoder cannot take pytest down."""
    r = subprocess.run([sys.executable, str(REPO / "tools" / "fuzz.py"), "--images", "--inputs", "600", "--seed", "4",
                        "--timeout", str(PER_INPUT_SECONDS), "--out", str(tmp_path / "findings")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "600 tried" in r.stdout and "crashes: 0" in r.stdout and "hangs: 0" in r.stdout
    assert "ok " in r.stdout and "ImageError " in r.stdout  # both outcomes exercised


def test_image_inputs_are_reproducible():
    images = fuzzer.seed_images()
    assert len(images) >= 10
    a = [fuzzer.make_image_input(images, 2, i) for i in range(30)]
    b = [fuzzer.make_image_input(images, 2, i) for i in range(30)]
    assert [(x.data, x.net) for x in a] == [(x.data, x.net) for x in b]
