"""NMS speed and the random-weight `darkcsp detect` run (issue: 65-92 s and 10,216 lines before).

1. Candidates: the paper's csppeleenet-efm at 416 with random weights and Darknet's zero head biases (every
   anchor of every cell is a candidate, 10k+ boxes), decoded by darkcsp.postprocess.get_network_boxes.
   darkcsp's vectorised do_nms is timed against the previous implementation (box.c transcribed det by det,
   taken from git history, ``--baseline-rev``) on the same candidates, in the same run, and both results are
   checked equal.
2. `darkcsp detect --cfg cfg/csppeleenet-efm.cfg IMAGE` with no weights (random weights with the YOLO prior):
   wall time and number of printed lines.

    python tools/bench_nms.py [--repeat 3] [--image weights/bus.jpg]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np

import darkcsp
from darkcsp.backends import create_backend
from darkcsp.postprocess import do_nms, get_network_boxes

REPO = Path(__file__).resolve().parent.parent


def previous_do_nms(rev: str):
    """do_nms of darkcsp/postprocess.py at git revision ``rev`` (the det-by-det implementation)."""
    source = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:darkcsp/postprocess.py"], check=True,
                            capture_output=True, text=True).stdout
    module = types.ModuleType("previous_postprocess")
    module.__dict__["__package__"] = "darkcsp"
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"{rev}:darkcsp/postprocess.py", "exec"), module.__dict__)
    return module.do_nms


def candidates(cfg: Path, image_w: int, image_h: int):
    model = darkcsp.load(cfg)
    for head in model.graph.layers:  # back to Darknet's zero biases: every candidate passes thresh
        if head.is_head:
            for i in head.inputs:
                model.weights[i]["biases"][:] = 0
    x = np.random.default_rng(0).random((1,) + tuple(model.graph.input_shape), dtype=np.float32)
    outputs = create_backend("onnxruntime", model).run(x)
    _, net_h, net_w = model.graph.input_shape
    last = [layer for layer in model.graph.layers if layer.is_head][-1]
    return get_network_boxes(model.graph.layers, outputs, net_w, net_h, image_w, image_h), last


def best_time(fn, repeat: int):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cfg", default=str(REPO / "cfg" / "csppeleenet-efm.cfg"))
    ap.add_argument("--image", default=str(REPO / "weights" / "bus.jpg"), help="photo for the detect run")
    ap.add_argument("--baseline-rev", default="2b57351", help="git revision of the previous do_nms")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    dets, last = candidates(Path(args.cfg), 810, 1080)
    n_nonzero = int((dets.probs > 0).sum())
    print(f"{Path(args.cfg).name} random weights, zero head biases: {len(dets)} candidates, {n_nonzero} "
          f"(box, class) probs over thresh, {dets.probs.shape[1]} classes, nms_kind {last.nms_kind}")
    t_new, new = best_time(lambda: do_nms(dets, 0.45, last.nms_kind, last.beta_nms), args.repeat)
    old_nms = previous_do_nms(args.baseline_rev)
    t_old, old = best_time(lambda: old_nms(dets, 0.45, last.nms_kind, last.beta_nms), 1)
    same = all(np.array_equal(a, b) for a, b in ((new.boxes, old.boxes), (new.probs, old.probs),
                                                  (new.objectness, old.objectness)))
    print(f"do_nms: vectorised {t_new * 1000:.0f} ms, previous ({args.baseline_rev}) {t_old * 1000:.0f} ms: "
          f"{t_old / t_new:.0f}x faster; results identical: {same}")

    if Path(args.image).is_file():
        t0 = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "darkcsp", "detect", "--cfg", args.cfg, "--no-save", args.image],
                             capture_output=True, text=True)
        wall = time.perf_counter() - t0
        lines = run.stdout.count("\n")
        print(f"darkcsp detect --cfg {Path(args.cfg).name} (random weights, YOLO prior) {Path(args.image).name}: "
              f"exit {run.returncode}, {wall:.1f} s wall (start-up and ONNX export included), {lines} lines on "
              f"stdout; warning kept: {'RANDOM weights' in run.stderr}")
    else:
        print(f"{args.image} not found: `darkcsp fetch samples` first for the detect run")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
