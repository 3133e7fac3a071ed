#!/usr/bin/env python3
"""Benchmark the model zoo on every backend in one run; print (and write) a Markdown table for the README.

    python tools/bench_zoo.py --cv4-python /work/venv-cv4/bin/python --out docs/bench-zoo.md

Models (the COCO-trained ones with their weights from the conformance cache, the others with the corpus's
random-calibrated weights or, where there are none, darkcsp's random initialisation):
  yolov4-tiny 416 (COCO), yolov3-tiny 416 (COCO), csresnext50-panet-spp 512 (random-calibrated),
  csppeleenet-efm 416 and the CSP PRN classifiers at 320 (random).
Backends: numpy (reference executor), onnxruntime and opencv (OpenCV 5.x) on darkcsp's ONNX, OpenCV 4.x's
readNetFromDarknet and OpenCV 4.x on darkcsp's ONNX (both in the --cv4-python venv), OpenVINO at float32 and
bf16 (when installed; bf16 only on a CPU with bf16 instructions), and, for yolov4-tiny, darkcsp's INT8 model on
onnxruntime and OpenVINO. Each model is one interleaved darkcsp.bench run; ratios are against
OpenCV 4's Darknet importer in the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from darkcsp import bench

REPO = Path(__file__).resolve().parent.parent  # the checkout's cfg/ folder and the corpus beside it

CONF = Path(os.environ.get("DARKCSP_CONFORMANCE", REPO.parent / "shared" / "conformance"))
CACHE = Path(os.environ.get("DARKCSP_CONFORMANCE_CACHE", Path.home() / ".cache" / "darkcsp-conformance"))
CALIB = [CONF / "cases" / "yolov3-tiny-coco" / "images" / n / f for n, f in
         (("astronaut", "astronaut.png"), ("chelsea", "chelsea.png"), ("coffee", "coffee.png"),
          ("person", "person.jpg"))]


def first(*paths):
    return next((str(p) for p in paths if p and Path(p).exists()), None)


def zoo():
    """(name, cfg, weights, size, weights note, extra) per model; models whose cfg is missing are skipped."""
    cases = CONF / "cases"
    return [
        ("yolov4-tiny", first(REPO / "cfg" / "yolov4-tiny.cfg", cases / "yolov4-tiny-coco" / "model.cfg"),
         first(CACHE / "yolov4-tiny-coco" / "model.weights"), 416, "COCO",
         {"int8": True, "agreement": sorted(str(p) for p in (cases / "yolov4-tiny-coco" / "images").glob("*"))}),
        ("yolov3-tiny", first(REPO / "cfg" / "yolov3-tiny.cfg", cases / "yolov3-tiny-coco" / "model.cfg"),
         first(CACHE / "yolov3-tiny-coco" / "model.weights"), 416, "COCO", {}),
        ("csresnext50-panet-spp", first(cases / "csresnext50-panet-spp-256" / "model.cfg"),
         first(cases / "csresnext50-panet-spp-256" / "model.weights.xz"), 512, "random-calibrated",
         {"numpy_runs": 5, "runs": 15}),
        ("csppeleenet-efm", first(REPO / "cfg" / "csppeleenet-efm.cfg"), None, 416, "random", {}),
        ("csppeleenet-ref-prn", first(REPO / "cfg" / "csppeleenet-ref-prn.cfg"), None, 320, "random", {}),
        ("cspdensenet-ref-prn", first(REPO / "cfg" / "cspdensenet-ref-prn.cfg"), None, 320, "random", {}),
        ("cspdensenetb-ref-prn", first(REPO / "cfg" / "cspdensenetb-ref-prn.cfg"), None, 320, "random", {}),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cv4-python", default=os.environ.get(bench.OPENCV4_PYTHON_ENV, "/work/venv-cv4/bin/python"))
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--numpy-runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--block", type=int, default=5)
    ap.add_argument("--nice", type=int, default=0, help="workers' priority change (e.g. -5 on a busy machine)")
    ap.add_argument("--only", help="comma-separated model names")
    ap.add_argument("--out", help="write the Markdown here too")
    ap.add_argument("--json", help="write every result as JSON here")
    args = ap.parse_args()

    only = set(args.only.split(",")) if args.only else None
    S = bench.BackendSpec
    have_cv4 = Path(args.cv4_python).exists()
    from darkcsp.backends import available_backends
    available = available_backends()
    have_openvino = "openvino" in available
    results = []
    for name, cfg, weights, size, note, extra in zoo():
        if only and name not in only:
            continue
        if not cfg:
            print(f"{name}: cfg not found, skipped", file=sys.stderr)
            continue
        specs = [S("numpy", runs=min(args.numpy_runs, extra.get("numpy_runs", args.numpy_runs))),
                 S("onnxruntime"), S("opencv"), S("opencv-classic")]
        if have_cv4:
            specs += [S("opencv-darknet", python=args.cv4_python, label="opencv4-darknet"),
                      S("opencv", python=args.cv4_python, label="opencv4")]
        if have_openvino:
            specs += [S("openvino")] + ([S("openvino-bf16")] if "openvino-bf16" in available else [])
        if extra.get("int8"):
            specs.append(S("onnxruntime-int8"))
            if have_openvino:
                specs.append(S("openvino-int8"))
        config = bench.BenchConfig(cfg=cfg, weights=weights, width=size, height=size, backends=specs,
                                   threads=args.threads, warmup=args.warmup, runs=extra.get("runs", args.runs),
                                   block=args.block, nice=args.nice, agreement=extra.get("agreement", ()),
                                   calib=[str(p) for p in CALIB if p.exists()] if extra.get("int8") else (),
                                   baseline="opencv4-darknet" if have_cv4 else "onnxruntime")
        print(f"{name} {size}: ...", file=sys.stderr, flush=True)
        res = bench.run_bench(config)
        res["zoo"] = {"name": name, "size": size, "weights": note}
        print(bench.format_table(res), "\n", file=sys.stderr, flush=True)
        results.append(res)
    md = markdown(results)
    print(md)
    if args.out:
        from darkcsp.fileio import atomic_write_bytes
        atomic_write_bytes(args.out, md.encode())
    if args.json:
        Path(args.json).write_text(json.dumps([json.loads(bench.to_json(r)) for r in results], indent=1))
    return 0


def markdown(results) -> str:
    if not results:
        return "(no model ran)\n"
    m = results[0]["machine"]
    v = m["versions"]
    cv4 = next((e["info"]["versions"].get("opencv") for r in results for e in r["backends"]
                if e["label"] == "opencv4-darknet" and e.get("info")), None)
    lines = [f"Measured {results[0]['date']} on {m['cpu']} ({m['cores']} cores, "
             f"{' '.join(m['cpu_flags'])}), {m['os']}; python {v['python']}, numpy {v['numpy']} "
             f"({v.get('blas', '?')}), onnxruntime {v.get('onnxruntime', '-')}, OpenCV {v.get('opencv', '-')}"
             f"{f' and {cv4} (opencv4*)' if cv4 else ''}; {results[0]['settings']['threads']} threads, batch 1, "
             f"network only (no pre/post-processing). fps = 1000 / median latency; x = fps ratio against "
             f"OpenCV 4's readNetFromDarknet measured in the same interleaved run (median over blocks).", ""]
    labels = []
    for r in results:
        for e in r["backends"]:
            if e["label"] not in labels:
                labels.append(e["label"])
    head = "| model | size | BFLOPs | " + " | ".join(labels) + " |"
    lines += [head, "|" + "---|" * (3 + len(labels))]
    for r in results:
        z, md = r["zoo"], r["model"]
        cells = []
        by = {e["label"]: e for e in r["backends"]}
        for lab in labels:
            e = by.get(lab)
            if not e:
                cells.append("")
            elif e["status"] != "ok" or not e.get("times"):
                cells.append(f"{e['status']}")
            else:
                cell = f"{e['fps']:.1f} fps"
                ratio = (e.get("vs_baseline") or {}).get("median")
                if ratio and r.get("baseline") != lab:
                    cell += f" (x{ratio:.2f})"
                if lab == "numpy" or lab.startswith("numpy"):
                    cell += f", {e['gflops']:.0f} GFLOP/s"
                if e.get("agreement") and "recall" in e["agreement"]:
                    a = e["agreement"]
                    cell += f", {a['matched']}/{a['expected']} dets"
                cells.append(cell)
        lines.append(f"| {z['name']} ({z['weights']}) | {z['size']} | {md['bflops']:.2f} | " + " | ".join(cells) + " |")
    failures = [(r["zoo"]["name"], e["label"], e.get("message", "")) for r in results for e in r["backends"]
                if e["status"] != "ok"]
    if failures:
        lines.append("")
        for name, lab, msg in failures:
            lines.append(f"- {name} / {lab}: {msg[:200]}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
