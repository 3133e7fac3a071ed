"""Long fuzz run of darkcsp's cfg parser, graph builder and weights reader (see tests/fuzz/fuzzer.py).

Every input is a mutated cfg (conformance corpus + built-in seeds) and maybe a (mutated) .weights file; it must
either parse or raise a DarkcspError, within --timeout seconds of CPU and the memory limit. Small graphs that
build are also run forward by the NumPy executor (with --onnx: exported and run in onnxruntime too). --images
fuzzes the image decoder instead. A worker process runs the inputs; this supervisor restarts it after a hard
hang (no answer) or a death (segfault, OOM kill), and saves every crashing/hanging input to --out for
reproduction (input i of a run depends only on --seed and i: --start I --inputs 1 re-runs it).

From the repository root (``tests`` is the checkout's test package, not installed), or through tools/fuzz.py
from anywhere:

    nice -n 19 python -m tests.fuzz --inputs 100000 --seed 1
    python tools/fuzz.py --images --seconds 60
"""
from __future__ import annotations

import argparse
import collections
import multiprocessing as mp
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import darkcsp
from tests.conftest import REPO, conformance_root
from tests.fuzz import fuzzer

#: the installed package's folder: a crash is located at its innermost frame in there
PACKAGE_DIR = os.path.dirname(darkcsp.__file__) + os.sep


def _signature(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    # innermost frame inside darkcsp (the bug's location), else the innermost frame
    inner = next((f for f in reversed(frames) if f.filename.startswith(PACKAGE_DIR)), frames[-1] if frames else None)
    where = f"{os.path.relpath(inner.filename, REPO)}:{inner.lineno}" if inner else "?"
    return f"{type(exc).__name__} at {where}"


def worker(conn, corpus_root, use_seeds: bool, seed: int, start: int, stop: int, timeout: float,
           memory_gb: float, max_memory_gb: float, onnx: bool = False, images: bool = False) -> None:
    if images:  # libpng/libjpeg warn on stderr for every corrupt input; results come through the pipe
        os.environ["OPENCV_LOG_LEVEL"] = "OFF"
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
    with fuzzer.quiet_darkcsp(), fuzzer.address_space_limit(memory_gb):
        if images:
            seeds = fuzzer.seed_images()
            corpus = []
        else:
            corpus = fuzzer.load_corpus(corpus_root, seeds=use_seeds)
        with fuzzer.scratch_dir() as td:
            if images:
                conn.send(("ready", len(seeds), len(seeds)))
            else:
                fuzzer.measure_params(corpus, Path(td))
                conn.send(("ready", len(corpus), sum(e.params is not None for e in corpus)))
            for i in range(start, stop):
                conn.send(("start", i))
                t0 = time.perf_counter()
                try:
                    with fuzzer.time_limit(timeout):
                        if images:
                            outcome = fuzzer.run_image_input(fuzzer.make_image_input(seeds, seed, i))
                        else:
                            inp = fuzzer.make_input(corpus, seed, i)
                            outcome = fuzzer.run_input(inp, Path(td), max_memory_gb=max_memory_gb, onnx=onnx)
                    conn.send(("done", i, outcome, time.perf_counter() - t0, None))
                except fuzzer.FuzzHang as e:
                    conn.send(("done", i, "HANG", time.perf_counter() - t0, str(e)))
                except Exception as e:  # noqa: BLE001 - any non-DarkcspError is what we hunt
                    conn.send(("done", i, "CRASH", time.perf_counter() - t0,
                               (_signature(e), "".join(traceback.format_exception(type(e), e, e.__traceback__)))))
        conn.send(("finished",))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inputs", type=int, default=10000, help="number of inputs to try (default 10000)")
    ap.add_argument("--seed", type=int, default=1, help="run seed (input i depends only on seed and i)")
    ap.add_argument("--start", type=int, default=0, help="first input index (to resume or reproduce)")
    ap.add_argument("--seconds", type=float, default=0, help="stop after this wall time (0 = no limit)")
    ap.add_argument("--timeout", type=float, default=5.0, help="per-input time bound in seconds (default 5)")
    ap.add_argument("--memory-gb", type=float, default=4.0, help="address-space limit of the worker above its "
                    "start size; a MemoryError is a crash (default 4)")
    ap.add_argument("--max-memory-gb", type=float, default=1.0,
                    help="darkcsp's own network size limit during the run (default 1)")
    ap.add_argument("--corpus", type=Path, default=conformance_root(), help="conformance corpus folder "
                    "(default $DARKCSP_CONFORMANCE)")
    ap.add_argument("--no-corpus", action="store_true", help="fuzz only the built-in seed cfgs")
    ap.add_argument("--out", type=Path, default=Path("fuzz-findings"), help="where crashing inputs are saved")
    ap.add_argument("--onnx", action="store_true",
                    help="also export every small graph that runs to ONNX and run it in onnxruntime (slower)")
    ap.add_argument("--images", action="store_true",
                    help="fuzz the image decoder/preprocessing (darkcsp.image) instead of cfgs and weights")
    ap.add_argument("--save", action="store_true", help="save every input tried to --out (to inspect one: "
                    "--start I --inputs 1 --save)")
    ap.add_argument("--keep", type=int, default=3, help="inputs saved per distinct crash signature")
    args = ap.parse_args(argv)

    corpus_root = None if args.no_corpus else args.corpus
    if corpus_root is not None and not corpus_root.is_dir():
        print(f"fuzz: corpus {corpus_root} not found; using the built-in seeds only", file=sys.stderr)
        corpus_root = None
    corpus = fuzzer.load_corpus(corpus_root)  # the supervisor regenerates inputs to save them
    ctx = mp.get_context("fork")
    stop = args.start + args.inputs
    t_start = time.time()
    deadline = t_start + args.seconds if args.seconds > 0 else float("inf")
    outcomes: collections.Counter = collections.Counter()
    crashes: "collections.OrderedDict[str, list]" = collections.OrderedDict()
    hangs: list = []
    tried = 0
    slowest = (0.0, -1)
    next_index = args.start
    corpus_info = None
    corpus_params_done = False

    def save(i: int, note: str) -> Path:
        nonlocal corpus_params_done
        if args.images:
            return fuzzer.save_image_input(fuzzer.make_image_input(fuzzer.seed_images(), args.seed, i), args.out, note)
        if not corpus_params_done:  # the supervisor needs the same params to regenerate weights
            with tempfile.TemporaryDirectory() as td, fuzzer.quiet_darkcsp():
                fuzzer.measure_params(corpus, Path(td))
            corpus_params_done = True
        return fuzzer.save_input(fuzzer.make_input(corpus, args.seed, i), args.out, note)

    while next_index < stop and time.time() < deadline:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=worker, args=(child, corpus_root, True, args.seed, next_index, stop,
                                                args.timeout, args.memory_gb, args.max_memory_gb, args.onnx,
                                                args.images),
                          daemon=True)
        proc.start()
        child.close()
        current = None
        try:
            while True:
                wait = max(args.timeout * 3, 30.0) if current is not None else 120.0
                if not parent.poll(wait):
                    # hard hang: the in-process alarm did not fire (stuck in C code)
                    i = current if current is not None else next_index
                    proc.kill()
                    hangs.append(i)
                    tried += 1
                    d = save(i, f"hard hang: no answer after {wait:g} s")
                    print(f"HANG input {i}: no answer after {wait:g} s -> {d}", flush=True)
                    next_index = i + 1
                    break
                msg = parent.recv()
                if msg[0] == "ready":
                    corpus_info = msg[1:]
                elif msg[0] == "start":
                    current = msg[1]
                    if time.time() > deadline:  # --seconds reached: input `current` is not counted
                        proc.kill()
                        break
                elif msg[0] == "done":
                    _, i, outcome, seconds, info = msg
                    tried += 1
                    current = None
                    next_index = i + 1
                    slowest = max(slowest, (seconds, i))
                    outcomes[outcome] += 1
                    if args.save and outcome not in ("HANG", "CRASH"):
                        print(f"input {i}: {outcome} -> {save(i, outcome)}", flush=True)
                    if outcome == "HANG":
                        hangs.append(i)
                        d = save(i, f"hang: {info}")
                        print(f"HANG input {i}: {info} -> {d}", flush=True)
                    elif outcome == "CRASH":
                        sig, tb = info
                        seen = crashes.setdefault(sig, [])
                        seen.append(i)
                        if len(seen) <= args.keep:
                            d = save(i, tb)
                            if len(seen) == 1:
                                print(f"CRASH input {i}: {sig} -> {d}\n{tb}", flush=True)
                    if tried % 5000 == 0:
                        rate = tried / max(time.time() - t_start, 1e-9)
                        print(f"... {tried} inputs, {sum(len(v) for v in crashes.values())} crashes, "
                              f"{len(hangs)} hangs, {rate:.0f}/s", flush=True)
                elif msg[0] == "finished":
                    next_index = stop
                    break
        except EOFError:
            # the worker died (segfault, OOM kill, os._exit)
            i = current if current is not None else next_index
            tried += 1
            sig = f"worker died (exit code {proc.exitcode})"
            crashes.setdefault(sig, []).append(i)
            d = save(i, sig)
            print(f"CRASH input {i}: {sig} -> {d}", flush=True)
            next_index = i + 1
        finally:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()

    elapsed = time.time() - t_start
    n_crash = sum(len(v) for v in crashes.values())
    print(f"\nfuzz: seed {args.seed}, inputs {args.start}..{next_index - 1}: {tried} tried in {elapsed:.1f} s "
          f"({tried / max(elapsed, 1e-9):.0f}/s)")
    if corpus_info:
        print(f"corpus: {corpus_info[0]} seed images" if args.images else
              f"corpus: {corpus_info[0]} cfgs ({corpus_info[1]} build unmutated)")
    print("outcomes: " + ", ".join(f"{k} {v}" for k, v in outcomes.most_common()))
    print(f"slowest input: {slowest[1]} ({slowest[0]:.3f} s)")
    print(f"crashes: {n_crash} ({len(crashes)} distinct)")
    for sig, idx in crashes.items():
        print(f"  {len(idx):6d} x {sig}  (first input {idx[0]})")
    print(f"hangs: {len(hangs)}" + (f" (inputs {hangs[:20]})" if hangs else ""))
    if n_crash or hangs:
        print(f"inputs saved under {args.out}/")
    return 1 if (n_crash or hangs) else 0


if __name__ == "__main__":
    sys.exit(main())
