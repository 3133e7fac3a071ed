#!/usr/bin/env python3
"""darkcsp's ONNX against the best peer converter, OpenCV's Darknet importer and INT8, in one interleaved run.

The peer (Tianxiaomo's pytorch-YOLOv4 darknet2onnx, on PyPI as ``darknet2any``) needs PyTorch, so it lives in a
throwaway venv of its own, never in darkcsp's dependencies::

    python3 -m venv /work/venv-peer
    /work/venv-peer/bin/pip install torch==2.13.0 darknet2any    # CPU torch
    python3 -m venv /work/venv-cv4
    /work/venv-cv4/bin/pip install numpy opencv-python==4.14.0.94 onnx onnxruntime tqdm matplotlib

    python tools/bench_peer.py --peer-python /work/venv-peer/bin/python --cv4-python /work/venv-cv4/bin/python

What it does:
1. converts cfg+weights with the peer (``darknet2any.tool.darknet2onnx.transform_to_onnx``, batch 1, its default
   opset 15) inside the peer venv;
2. quantises both ONNX models to INT8 the same way (onnxruntime static QDQ, per-channel, U8S8, the same
   calibration photos); darkcsp's keeps the yolo heads in float (darkcsp.onnx.quantize);
3. measures how many of Darknet's detections (detections.json of the conformance photos: same class,
   IoU >= 0.8) each model recovers, the peer's outputs decoded with Darknet's own rules (thresh 0.25, the
   cfg's NMS kind) so that only the network's numbers differ;
4. times everything with darkcsp.bench (one worker process per backend, interleaved blocks), ``--repeat``
   times, and prints each ratio's median and range over the repetitions (``--json`` for all numbers).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from darkcsp import bench

REPO = Path(__file__).resolve().parent.parent  # the checkout's cfg/ folder and the corpus beside it

CONF = Path(os.environ.get("DARKCSP_CONFORMANCE", REPO.parent / "shared" / "conformance"))
CACHE = Path(os.environ.get("DARKCSP_CONFORMANCE_CACHE", Path.home() / ".cache" / "darkcsp-conformance"))
CASE = CONF / "cases" / "yolov4-tiny-coco"
#: calibration photos: the conformance photos of the *other* trained cases (not the ones we score on)
CALIB = [CONF / "cases" / "yolov3-tiny-coco" / "images" / n / f for n, f in
         (("astronaut", "astronaut.png"), ("chelsea", "chelsea.png"), ("coffee", "coffee.png"),
          ("person", "person.jpg"))]

PEER_SCRIPT = """
import sys
from darknet2any.tool.darknet2onnx import transform_to_onnx
transform_to_onnx(sys.argv[1], sys.argv[2], 1, sys.argv[3])
"""


def make_peer_onnx(peer_python: str, cfg: Path, weights: Path, out: Path) -> Path:
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    r = subprocess.run([peer_python, "-c", PEER_SCRIPT, str(cfg), str(weights), str(out)], capture_output=True,
                       text=True, cwd=str(out.parent))
    if r.returncode != 0 or not out.exists():
        sys.exit(f"peer conversion failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return out


def peer_version(peer_python: str) -> str:
    r = subprocess.run([peer_python, "-c", "import importlib.metadata as m; print(m.version('darknet2any'), "
                        "m.version('torch'))"], capture_output=True, text=True)
    return r.stdout.strip().replace(" ", ", torch ") if r.returncode == 0 else "?"


def calib_inputs(model, paths):
    from darkcsp.onnx.quantize import calibration_inputs
    xs = calibration_inputs(paths, model)
    # Horizontal flips double the little calibration set.
    return xs + [np.ascontiguousarray(x[..., ::-1]) for x in xs]


def peer_detect(model, boxes, confs, image_w, image_h, thresh=0.25, nms=0.45):
    """The peer's (boxes x1,y1,x2,y2 relative; confs = objectness * class prob) through Darknet's own rules."""
    from darkcsp.layers.yolo import BoxSet
    from darkcsp.postprocess import do_nms, nms_settings, print_order
    b = boxes[0, :, 0, :].astype(np.float32)
    c = confs[0].astype(np.float32)
    xywh = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1)
    probs = np.where(c > np.float32(thresh), c, np.float32(0))
    keep = probs.max(1) > 0
    dets = BoxSet(xywh[keep], c[keep].max(1), probs[keep])
    kind, beta = nms_settings(model.graph.layers, model.graph.dialect)
    dets = do_nms(dets, nms, kind, beta)
    return print_order(dets, thresh, [str(j) for j in range(c.shape[1])], image_w, image_h)


def agreement_of(path: str, model, darkcsp_outputs: bool, dirs):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    from darkcsp.postprocess import detect
    w, h = model.graph.net.width, model.graph.net.height

    def run(x, image_w, image_h, letter_box):
        out = dict(zip(names, sess.run(None, {sess.get_inputs()[0].name: x})))
        if darkcsp_outputs:
            layers = {int(k.split("_")[1]): v for k, v in out.items() if k.startswith("layer_")}
            return detect(model.graph.layers, layers, w, h, image_w, image_h, letter=bool(letter_box))
        return peer_detect(model, out["boxes"], out["confs"], image_w, image_h)
    return bench.detection_agreement(run, dirs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peer-python", default="/work/venv-peer/bin/python")
    ap.add_argument("--cv4-python", default="/work/venv-cv4/bin/python")
    ap.add_argument("--cfg", default=str(REPO / "cfg" / "yolov4-tiny.cfg") if (REPO / "cfg" / "yolov4-tiny.cfg")
                    .exists() else str(CASE / "model.cfg"))
    ap.add_argument("--weights", default=str(CACHE / "yolov4-tiny-coco" / "model.weights"))
    ap.add_argument("--size", type=int, default=416)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--block", type=int, default=5)
    ap.add_argument("--nice", type=int, default=0, help="workers' priority change (e.g. -5 on a busy machine)")
    ap.add_argument("--repeat", type=int, default=3, help="independent interleaved runs (default 3)")
    ap.add_argument("--workdir", default=str(Path.home() / ".cache" / "darkcsp-bench"))
    ap.add_argument("--skip", default="", help="comma-separated labels to leave out")
    ap.add_argument("--json", help="write every number here")
    args = ap.parse_args()

    import darkcsp
    from darkcsp.onnx.quantize import quantize_export, quantize_onnx
    from darkcsp.onnx.export import ExportOptions, export_model

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    cfg, weights = Path(args.cfg), Path(args.weights)
    # The peer reads width/height from the cfg: give it one at the benchmarked size.
    text = bench.set_net_size(cfg.read_text(), args.size, args.size)
    sized_cfg = work / f"{cfg.stem}-{args.size}.cfg"
    sized_cfg.write_text(text)
    model = darkcsp.load(sized_cfg, weights)
    peer = make_peer_onnx(args.peer_python, sized_cfg, weights, work / f"peer-{cfg.stem}-{args.size}.onnx")

    print("quantising ...", file=sys.stderr)
    inputs = calib_inputs(model, [p for p in CALIB if p.exists()])
    # the fp32 model the onnxruntime backend runs (tuned for it); INT8 starts from the generic graph
    ours_fp32 = work / f"darkcsp-{cfg.stem}-{args.size}.onnx"
    ours_fp32.write_bytes(export_model(model, ExportOptions(batch=1, target="onnxruntime"))[0].SerializeToString())
    ours_int8 = work / f"darkcsp-{cfg.stem}-{args.size}-int8.onnx"
    # the generic graph, the detection heads (and the convolutions feeding them) in float
    ours_int8.write_bytes(quantize_export(model, inputs, ExportOptions(batch=1), method="percentile")[0])
    peer_int8 = work / f"peer-{cfg.stem}-{args.size}-int8.onnx"
    quantize_onnx(peer, peer_int8, inputs, method="percentile")

    dirs = sorted(glob.glob(str(CASE / "images" / "*")))
    agreement = {
        "darkcsp fp32 (onnxruntime)": agreement_of(str(ours_fp32), model, True, dirs),
        "darkcsp int8": agreement_of(str(ours_int8), model, True, dirs),
        "peer fp32 (onnxruntime)": agreement_of(str(peer), model, False, dirs),
        "peer int8": agreement_of(str(peer_int8), model, False, dirs),
    }
    for k, a in agreement.items():
        print(f"agreement {k:28s} {bench.format_agreement(a)}")

    S = bench.BackendSpec
    specs = [S("onnxruntime"), S("onnxruntime", str(peer), label="onnxruntime=peer"),
             S("opencv-darknet", python=args.cv4_python, label="opencv4-darknet"),
             S("opencv"), S("opencv", str(peer), label="opencv=peer"),
             S("opencv", python=args.cv4_python, label="opencv4"),
             # OpenCV 5's classic engine (OpenCV 4's layers, Winograd 3x3) on darkcsp's ONNX
             S("opencv-classic"),
             S("onnxruntime", str(ours_int8), label="onnxruntime-int8"),
             S("onnxruntime", str(peer_int8), label="onnxruntime-int8=peer")]
    skip = set(filter(None, args.skip.split(",")))
    specs = [s for s in specs if s.label not in skip]
    runs = []
    for r in range(args.repeat):
        cfgb = bench.BenchConfig(cfg=str(sized_cfg), weights=str(weights), backends=specs, threads=args.threads,
                                 warmup=args.warmup, runs=args.runs, block=args.block, baseline="opencv4-darknet",
                                 nice=args.nice)
        res = bench.run_bench(cfgb)
        print(bench.format_table(res), "\n", flush=True)
        runs.append(res)

    def entry(res, label):
        e = next((e for e in res["backends"] if e["label"] == label), None)
        return e if e and e["status"] == "ok" and e.get("blocks") else None

    def ratio(a, b):
        """fps(a)/fps(b): per run the median over its paired interleaved blocks; then median/min/max over runs."""
        vals = []
        for r in runs:
            ea, eb = entry(r, a), entry(r, b)
            if ea and eb:
                v = bench.block_ratios(ea["blocks"], eb["blocks"]).get("median")
                if v:
                    vals.append(v)
        if not vals:
            return None
        return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals),
                "runs": vals}

    ratios = {
        "onnxruntime / opencv4-darknet": ratio("onnxruntime", "opencv4-darknet"),
        "onnxruntime / onnxruntime=peer": ratio("onnxruntime", "onnxruntime=peer"),
        "onnxruntime-int8 / onnxruntime-int8=peer": ratio("onnxruntime-int8", "onnxruntime-int8=peer"),
        "opencv (5.x, darkcsp ONNX) / opencv4-darknet": ratio("opencv", "opencv4-darknet"),
        "opencv-classic (5.x classic engine, darkcsp ONNX) / opencv4-darknet": ratio("opencv-classic",
                                                                                   "opencv4-darknet"),
        "opencv4 (darkcsp ONNX) / opencv4-darknet": ratio("opencv4", "opencv4-darknet"),
        "opencv=peer (5.x) / opencv4-darknet": ratio("opencv=peer", "opencv4-darknet"),
        "onnxruntime-int8 / opencv4-darknet": ratio("onnxruntime-int8", "opencv4-darknet"),
        "onnxruntime-int8=peer / opencv4-darknet": ratio("onnxruntime-int8=peer", "opencv4-darknet"),
    }
    print(f"fps ratios (per run: median over paired interleaved blocks) over {args.repeat} runs: median [min-max]")
    for k, v in ratios.items():
        if v:
            print(f"  {k:66s} {v['median']:.2f} [{v['min']:.2f}-{v['max']:.2f}]")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "peer": peer_version(args.peer_python),
            "agreement": agreement, "ratios": ratios,
            "runs": [json.loads(bench.to_json(r)) for r in runs]}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
