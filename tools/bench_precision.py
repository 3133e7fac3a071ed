#!/usr/bin/env python3
"""Reduced precision against OpenCV 4's Darknet importer: fps, ratio and Darknet's detections recovered.

    python tools/bench_precision.py --cv4-python /work/venv-cv4/bin/python \\
        --json docs/bench-precision.json --plot docs/images/bench_precision.png

For each model, one interleaved run (rounds of a few network runs per backend, the backend order rotated every
round) of OpenCV 4.x's ``cv2.dnn.readNetFromDarknet`` (in the --cv4-python interpreter: OpenCV 5 removed the
importer) against darkcsp's backends, all with the same number of threads (--threads, default 2), on the same
network input (the corpus tensor; network time only: no image decoding or box decoding). fps = 1 / median
latency; ratio = fps / OpenCV 4's fps in the same run.

"Darknet's detections recovered": for the COCO-trained models, every detection of Darknet's ``detector test``
on the corpus photos (detections.json of the trained cases) counts as recovered when the backend's
``model.detector(backend)`` output has a detection of the same class with IoU >= 0.8 (one-to-one, greedy by
IoU). INT8 backends are calibrated on the corpus photos that the model is NOT evaluated on (leave-out).
"""
from __future__ import annotations

import argparse
import json
import lzma
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

REPO = Path(__file__).resolve().parent.parent

import darkcsp
from darkcsp.backends import create_backend

CONF = Path(os.environ.get("DARKCSP_CONFORMANCE", REPO.parent / "shared" / "conformance"))
CACHE = Path(os.environ.get("DARKCSP_CONFORMANCE_CACHE", Path.home() / ".cache" / "darkcsp-conformance"))
TRAINED = ("yolov4-tiny-coco", "yolov3-tiny-coco", "yolov4-tiny-custom10")
BACKENDS = ("onnxruntime", "openvino", "openvino-bf16", "onnxruntime-int8", "openvino-int8")
BASELINE = "opencv4-darknet"
IOU_MIN = 0.8

# The OpenCV 4 side: a loop reading JSON commands on stdin, answering one JSON line each.
CV4_WORKER = r"""
import json, sys, time
import numpy as np, cv2
net = x = names = None
for line in sys.stdin:
    msg = json.loads(line)
    if msg["cmd"] == "load":
        cv2.setNumThreads(int(msg["threads"]))
        net = cv2.dnn.readNetFromDarknet(msg["cfg"], msg["weights"])
        net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        names = list(net.getUnconnectedOutLayersNames())
        x = np.load(msg["input"])
        net.setInput(x); net.forward(names)
        out = {"version": cv2.__version__, "threads": cv2.getNumThreads()}
    elif msg["cmd"] == "time":
        times = []
        for _ in range(int(msg["n"])):
            t = time.perf_counter()
            net.setInput(x)
            net.forward(names)
            times.append(time.perf_counter() - t)
        out = {"times": times}
    else:
        break
    sys.stdout.write(json.dumps(out) + "\n"); sys.stdout.flush()
"""


class Cv4:
    def __init__(self, python: str, cfg: str, weights: str, x: np.ndarray, threads: int, tmp: Path):
        np.save(tmp / "input.npy", x)
        self.proc = subprocess.Popen([python, "-c", CV4_WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
        self.info = self._call({"cmd": "load", "cfg": cfg, "weights": weights, "threads": threads,
                                "input": str(tmp / "input.npy")})

    def _call(self, msg):
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the OpenCV 4 worker died (its error is above)")
        return json.loads(line)

    def times(self, n: int) -> List[float]:
        return self._call({"cmd": "time", "n": n})["times"]

    def close(self):
        try:
            self._call({"cmd": "quit"})
        except (RuntimeError, BrokenPipeError, json.JSONDecodeError):
            pass
        self.proc.wait(timeout=10)


def net_cfg(src: Path, width: int, height: int, tmp: Path) -> Path:
    """The cfg with [net] width/height set (OpenCV's importer takes the size from the cfg)."""
    text = src.read_text()
    m = re.search(r"(\[net\][^\[]*)", text)
    net = m.group(1)
    net2 = re.sub(r"(?m)^\s*width\s*=.*$", f"width={width}", net)
    net2 = re.sub(r"(?m)^\s*height\s*=.*$", f"height={height}", net2)
    out = tmp / src.name
    out.write_text(text.replace(net, net2, 1))
    return out


def plain_weights(model, src: Optional[Path], tmp: Path) -> Path:
    """A .weights file OpenCV can read: the file itself, decompressed, or darkcsp's (random) weights written out."""
    if src is not None and src.suffix == ".weights":
        return src
    out = tmp / "model.weights"
    if src is not None and src.suffix == ".xz":
        out.write_bytes(lzma.open(src).read())
        return out
    from darkcsp.weights import WeightsFile, weights_bytes
    out.write_bytes(weights_bytes(WeightsFile(model.header, model.weights), model.graph))
    return out


def photos(case: str) -> List[Path]:
    d = CONF / "cases" / case / "images"
    if not d.is_dir():
        return []
    return [next(p for p in sub.iterdir() if p.suffix.lower() in (".jpg", ".png", ".jpeg"))
            for sub in sorted(d.iterdir()) if sub.is_dir()]


def iou(a, b) -> float:
    ax0, ay0, ax1, ay1 = a[0] - a[2] / 2, a[1] - a[3] / 2, a[0] + a[2] / 2, a[1] + a[3] / 2
    bx0, by0, bx1, by1 = b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2, b[1] + b[3] / 2
    iw, ih = max(0.0, min(ax1, bx1) - max(ax0, bx0)), max(0.0, min(ay1, by1) - max(ay0, by0))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def recovered(det, case: str) -> Dict[str, object]:
    """Darknet's detections on the case's photos that ``det`` reproduces (same class, IoU >= 0.8)."""
    total = hit = extra = 0
    dprob = 0.0
    missed = []
    for sub in sorted((CONF / "cases" / case / "images").iterdir()):
        want = json.loads((sub / "detections.json").read_text())["detections"]
        img = next(p for p in sub.iterdir() if p.suffix.lower() in (".jpg", ".png", ".jpeg"))
        got = [(d.class_id, (d.x, d.y, d.w, d.h), d.prob) for d in det(str(img))]
        pairs = sorted(((iou((w["x"], w["y"], w["w"], w["h"]), g[1]), i, j)
                        for i, w in enumerate(want) for j, g in enumerate(got) if g[0] == w["class_id"]),
                       reverse=True)
        used_w, used_g = set(), set()
        for v, i, j in pairs:
            if v < IOU_MIN or i in used_w or j in used_g:
                continue
            used_w.add(i)
            used_g.add(j)
            dprob = max(dprob, abs(got[j][2] - want[i]["prob"]))
        total += len(want)
        hit += len(used_w)
        extra += len(got) - len(used_g)
        missed += [f"{sub.name}:{want[i]['class_name']}" for i in range(len(want)) if i not in used_w]
    return {"recovered": hit, "total": total, "extra": extra, "max_dprob": round(dprob, 4), "missed": missed}


def models(which: List[str]):
    cases = CONF / "cases"
    table = {
        "yolov4-tiny": (cases / "yolov4-tiny-coco" / "model.cfg", CACHE / "yolov4-tiny-coco" / "model.weights", 416,
                        "yolov4-tiny-coco"),
        "yolov3-tiny": (cases / "yolov3-tiny-coco" / "model.cfg", CACHE / "yolov3-tiny-coco" / "model.weights", 416,
                        "yolov3-tiny-coco"),
        "csresnext50-panet-spp": (cases / "csresnext50-panet-spp-256" / "model.cfg",
                                  cases / "csresnext50-panet-spp-256" / "model.weights.xz", 512, None),
        "yolov4-tiny-custom10": (cases / "yolov4-tiny-custom10" / "model.cfg",
                                 CACHE / "yolov4-tiny-custom10" / "model.weights", 416, "yolov4-tiny-custom10"),
        "csppeleenet-efm": (REPO / "cfg" / "csppeleenet-efm.cfg", None, 416, None),
        "cspresnext50": (REPO / "cfg" / "cspresnext50.cfg", None, 256, None),
    }
    return [(name,) + table[name] for name in which]


def bench_model(name, cfg, weights, size, case, args, tmp: Path) -> Dict[str, object]:
    model = darkcsp.load(cfg, weights if weights and weights.exists() else None, width=size, height=size)
    eval_photos = {p.name for p in photos(case)} if case else set()
    # the trained cases share some photos (same files): one of each, minus the ones the model is evaluated on
    by_name = {p.name: p for c in TRAINED for p in photos(c)}
    calib = [str(by_name[n]) for n in sorted(by_name) if n not in eval_photos]
    if case:
        x = np.load(CONF / "cases" / case / "images" / "dog" / "input.npy") if (
            CONF / "cases" / case / "images" / "dog").is_dir() else None
    else:
        x = None
    if x is None or tuple(x.shape[1:]) != tuple(model.graph.input_shape):
        from darkcsp.onnx.verify import verification_input
        x = verification_input((1,) + tuple(model.graph.input_shape))
    runners = {}
    setup = {}
    for b in args.backends:
        t0 = time.perf_counter()
        opts = {"calib": calib} if b.endswith("int8") else {}
        try:
            be = create_backend(b, model, threads=args.threads, **opts)
            be.run(x)
        except darkcsp.errors.DarkcspError as e:
            print(f"  {b}: skipped ({e})", file=sys.stderr)
            continue
        runners[b] = be
        setup[b] = time.perf_counter() - t0
    try:
        cv4 = Cv4(args.cv4_python, str(net_cfg(Path(cfg), size, size, tmp)),
                  str(plain_weights(model, weights if weights and weights.exists() else None, tmp)), x, args.threads,
                  tmp)
    except RuntimeError as e:  # e.g. a layer OpenCV's importer does not know ([local_avgpool])
        print(f"  {BASELINE}: failed ({e}); fps only", file=sys.stderr)
        cv4 = None
    names = ([BASELINE] if cv4 else []) + list(runners)
    times: Dict[str, List[float]] = {n: [] for n in names}
    blocks: Dict[str, List[float]] = {n: [] for n in names}  # median latency of each round's block
    per_block = max(1, args.block)
    for b in runners.values():  # warm-up
        for _ in range(2):
            b.run(x)
    if cv4:
        cv4.times(2)
    t_start = time.perf_counter()
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            if n == BASELINE:
                block = cv4.times(per_block)
            else:
                be = runners[n]
                block = []
                for _ in range(per_block):
                    t = time.perf_counter()
                    be.run(x)
                    block.append(time.perf_counter() - t)
            times[n] += block
            blocks[n].append(float(np.median(block)))
        if time.perf_counter() - t_start > args.max_seconds:
            break
    cv4_version = cv4.info["version"] if cv4 else "failed"
    if cv4:
        cv4.close()
    base_fps = 1.0 / float(np.median(times[BASELINE])) if cv4 else None
    rows = []
    for n in names:
        med = float(np.median(times[n]))
        row = {"backend": n, "ms": round(1000 * med, 2), "fps": round(1 / med, 1),
               "ratio": round(1 / med / base_fps, 2) if base_fps else None,
               # the same, round by round (each backend's block against OpenCV's block of the same round)
               "ratio_paired": round(float(np.median(np.array(blocks[BASELINE]) / np.array(blocks[n]))), 2)
               if base_fps else None,
               "runs": len(times[n]), "setup_s": round(setup.get(n, 0.0), 1)}
        if n != BASELINE and case:
            det = model.detector(backend=runners[n])
            row["detections"] = recovered(det, case)
        rows.append(row)
    return {"model": name, "size": size, "weights": "COCO" if case else ("random-calibrated" if weights else "random"),
            "opencv4": cv4_version, "calib": [Path(c).name for c in calib], "rows": rows}


def cpu_flags() -> List[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = set(re.search(r"(?m)^flags\s*:(.*)$", text).group(1).split())
    return sorted(f for f in flags if f in ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8",
                                            "avx_vnni"))


def versions() -> Dict[str, str]:
    import onnxruntime
    out = {"darkcsp": darkcsp.__version__, "python": platform.python_version(), "numpy": np.__version__,
           "onnxruntime": onnxruntime.__version__}
    try:
        import openvino
        out["openvino"] = openvino.__version__.split("-")[0]
    except ImportError:
        pass
    return out


def markdown(result) -> str:
    lines = [f"{result['date']}, {result['cpu']} ({result['cores']} cores, flags {' '.join(result['cpu_flags'])}), "
             f"{result['threads']} threads, load average {result['load_before'][0]} -> "
             f"{result.get('load_after', ['?'])[0]}; " + ", ".join(f"{k} {v}" for k, v in result["versions"].items()),
             "",
             "| model | backend | fps | ratio to OpenCV 4 Darknet (paired rounds) | Darknet's detections recovered | "
             "max abs dprob |", "|---|---|---:|---:|---:|---:|"]
    for m in result["models"]:
        for r in m["rows"]:
            d = r.get("detections")
            rec = f"{d['recovered']}/{d['total']}" + (f" ({', '.join(d['missed'])} missed)" if d["missed"] else "") \
                if d else "-"
            label = f"OpenCV {m['opencv4']} readNetFromDarknet" if r["backend"] == BASELINE else r["backend"]
            ratio = f"{r['ratio']:.2f}x" if r["ratio"] else "-"
            if r.get("ratio_paired") and r["backend"] != BASELINE:
                ratio += f" ({r['ratio_paired']:.2f}x)"
            lines.append(f"| {m['model']} {m['size']} ({m['weights']}) | {label} | {r['fps']} | {ratio} | "
                         f"{rec} | {d['max_dprob'] if d else '-'} |")
    return "\n".join(lines)


def plot(result, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ms = [m for m in result["models"] if any(r["backend"] == BASELINE for r in m["rows"])]
    backends = [BASELINE] + [b for b in BACKENDS if any(r["backend"] == b for m in ms for r in m["rows"])]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / len(backends)
    for k, b in enumerate(backends):
        vals = [next((r["ratio"] or 0 for r in m["rows"] if r["backend"] == b), 0) for m in ms]
        bars = ax.bar(np.arange(len(ms)) + k * width, vals, width,
                      label="OpenCV 4 readNetFromDarknet" if b == BASELINE else b)
        for rect, v in zip(bars, vals):
            if v:
                ax.text(rect.get_x() + rect.get_width() / 2, v, f"{v:.1f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(np.arange(len(ms)) + width * (len(backends) - 1) / 2)
    ax.set_xticklabels([f"{m['model']}\n{m['size']}" for m in ms], fontsize=8)
    ax.set_ylabel("speed vs OpenCV 4's Darknet importer (x)")
    ax.axhline(1, color="grey", lw=0.8)
    ax.set_title(f"{result['threads']} threads, {result['cpu']} ({' '.join(result['cpu_flags'])}), {result['date']}",
                 fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cv4-python", default=os.environ.get("DARKCSP_OPENCV4_PYTHON", "/work/venv-cv4/bin/python"))
    ap.add_argument("--models", nargs="+", default=["yolov4-tiny", "yolov3-tiny", "csresnext50-panet-spp"])
    ap.add_argument("--backends", nargs="+", default=list(BACKENDS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--block", type=int, default=8, help="runs per backend per round")
    ap.add_argument("--max-seconds", type=float, default=120, help="stop a model's rounds after this long")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--markdown", type=Path)
    ap.add_argument("--plot", type=Path)
    ap.add_argument("--from-json", type=Path, help="only re-render the table/plot of a saved --json result")
    args = ap.parse_args()
    if args.from_json:
        result = json.loads(args.from_json.read_text())
        print(markdown(result))
        if args.plot:
            plot(result, args.plot)
        return 0
    result = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "cpu": _cpu_name(),
              "cores": os.cpu_count(), "cpu_flags": cpu_flags(), "threads": args.threads, "versions": versions(),
              "load_before": [round(v, 2) for v in os.getloadavg()], "models": []}
    with tempfile.TemporaryDirectory(prefix="bench-precision-") as tmp:
        for spec in models(args.models):
            print(f"{spec[0]} ...", file=sys.stderr)
            result["models"].append(bench_model(*spec, args, Path(tmp)))
            if args.json:  # after every model: a later failure keeps what was measured
                args.json.write_text(json.dumps(result, indent=1) + "\n")
    result["load_after"] = [round(v, 2) for v in os.getloadavg()]
    md = markdown(result)
    print(md)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    if args.markdown:
        args.markdown.write_text(md + "\n")
    if args.plot:
        plot(result, args.plot)
    return 0


def _cpu_name() -> str:
    try:
        m = re.search(r"(?m)^model name\s*:\s*(.*)$", Path("/proc/cpuinfo").read_text())
        return m.group(1).strip() if m else platform.processor()
    except OSError:
        return platform.processor()


if __name__ == "__main__":
    sys.exit(main())
