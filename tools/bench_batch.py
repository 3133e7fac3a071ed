#!/usr/bin/env python3
"""``darkcsp batch`` (local engine, Ray engine) against a plain ``darkcsp detect`` loop over the same photos.

Each command runs as its own process, as a user runs it, on N photos (copies and variants of the corpus photos
in a temp folder) and on a few of them; the two wall times split each command's cost into a fixed part (start-
up, model load, for Ray: starting Ray and its actors) and a per-image part::

    python tools/bench_batch.py                      # 200 photos, COCO yolov4-tiny of the corpus
    python tools/bench_batch.py -n 400 --repeat 3    # best of 3 per command

The figure of merit is end-to-end images/s on the N photos, as a ratio to ``detect`` in the same run (the
target: local engine >= 1.2x). All use the default backend (onnxruntime) and every core: ``detect`` one image
at a time with the backend on all cores; ``batch --engine local`` batches of 2, 2 reader threads and its default
inference streams (one per core up to 4, each a Detector on cores/streams threads); ``--engine ray`` a local Ray
with one actor per core (1 backend thread each), batches of 2. One more line runs the local engine with one
stream on every core (what the streams buy).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
CASE = "yolov4-tiny-coco"


def corpus() -> Path:
    return Path(os.environ.get("DARKCSP_CONFORMANCE", REPO.parent / "shared" / "conformance"))


def model_args():
    """The corpus' COCO yolov4-tiny (cfg, trained weights, names), else the pretrained default model."""
    d = corpus() / "cases" / CASE
    w = Path(os.environ.get("DARKCSP_CONFORMANCE_CACHE", Path.home() / ".cache" / "darkcsp-conformance")) / CASE / \
        "model.weights"
    if (d / "model.cfg").exists() and w.exists():
        return ["--cfg", str(d / "model.cfg"), "--weights", str(w), "--names", str(d / "coco.names")]
    return []


def make_photos(folder: Path, n: int) -> list:
    """n JPEGs: the corpus photos, flipped and rescaled (0.6x to 1.4x) in turn, re-encoded."""
    sources = []
    for f in sorted((corpus() / "cases").glob("*/images/*/*.jpg")):
        im = cv2.imread(str(f))
        if im is not None and not any(np.array_equal(im, s) for s in sources):
            sources.append(im)
    if not sources:
        sys.exit(f"no corpus photos under {corpus()} (set DARKCSP_CONFORMANCE)")
    folder.mkdir(parents=True)
    paths = []
    for i in range(n):
        im = sources[i % len(sources)]
        k = i // len(sources)
        scale = 0.6 + 0.8 * ((k * 0.37) % 1.0)
        im = cv2.resize(im, (max(32, int(im.shape[1] * scale)), max(32, int(im.shape[0] * scale))),
                        interpolation=cv2.INTER_AREA)
        if k % 2:
            im = im[:, ::-1]
        p = folder / f"{i:04d}.jpg"
        cv2.imwrite(str(p), im, [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(p)
    return paths


def timed(cmd, env=None) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd[:6])} ... failed ({r.returncode}):\n{r.stderr[-2000:]}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=200, help="photos (default 200)")
    ap.add_argument("--few", type=int, default=8, help="photos of the short runs that give the fixed cost (8)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per command and size; the best counts (1)")
    ap.add_argument("--batch-size", type=int, default=2, help="of both engines (2, the default of batch)")
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray engine")
    args = ap.parse_args()
    darkcsp = [sys.executable, "-m", "darkcsp"]
    model = model_args()
    with tempfile.TemporaryDirectory(prefix="bench_batch.") as tmp:
        tmp = Path(tmp)
        photos = make_photos(tmp / "photos", args.n)
        few = tmp / "few"
        few.mkdir()
        for p in photos[:args.few]:
            os.symlink(p, few / p.name)
        commands = {
            "detect (plain loop)": lambda src, out: darkcsp + ["detect", "-q", *model, "--no-save", "--json-file",
                                                               str(out), *sorted(str(p) for p in src.iterdir())],
            "batch --engine local": lambda src, out: darkcsp + ["batch", "-q", *model, str(src), "--out", str(out),
                                                                "--batch-size", str(args.batch_size)],
        }
        commands["batch local, 1 stream"] = lambda src, out: darkcsp + [
            "batch", "-q", *model, str(src), "--out", str(out), "--batch-size", str(args.batch_size),
            "--streams", "1"]  # one Detector on every core: what the streams buy
        if not args.no_ray:
            commands["batch --engine ray"] = lambda src, out: darkcsp + [
                "batch", "-q", *model, str(src), "--out", str(out), "--engine", "ray", "--batch-size",
                str(args.batch_size)]
        best = {(name, size): float("inf") for name in commands for size in ("n", "few")}
        run = 0
        for _ in range(args.repeat):  # interleaved: a slower spell of a shared machine hits every command
            for name, cmd in commands.items():
                for size, src in (("n", tmp / "photos"), ("few", few)):
                    run += 1
                    out = tmp / f"out{run}.json{'l' if 'batch' in name else ''}"
                    best[name, size] = min(best[name, size], timed(cmd(src, out)))
        print(f"{args.n} photos (corpus photos and variants), {'corpus ' + CASE if model else 'yolov4-tiny'}, "
              f"{os.cpu_count()} CPUs, best of {args.repeat}")
        print(f"{'command':27} {'wall s':>8} {'img/s':>7} {'vs detect':>9} {'fixed s':>8} {'ms/img':>7}")
        base = args.n / best["detect (plain loop)", "n"]
        for name in commands:
            t_n, t_few = best[name, "n"], best[name, "few"]
            per_image = (t_n - t_few) / (args.n - args.few)
            fixed = t_few - args.few * per_image
            rate = args.n / t_n
            print(f"{name:27} {t_n:8.2f} {rate:7.2f} {rate / base:8.2f}x {fixed:8.2f} {per_image * 1000:7.1f}")


if __name__ == "__main__":
    main()
