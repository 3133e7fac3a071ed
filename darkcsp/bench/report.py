"""Presentation of a benchmark result: the text table (with the machine header), JSON, and a bar chart."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional

__all__ = ["format_header", "format_table", "format_agreement", "to_json", "plot"]


def format_header(result: Dict[str, Any]) -> str:
    m, s, md = result["machine"], result["settings"], result["model"]
    v = m["versions"]
    libs = ", ".join(f"{k} {v[k]}" for k in ("numpy", "onnxruntime", "opencv") if k in v)
    blas = f" ({v['blas']})" if v.get("blas") and v["blas"] != "?" else ""
    what = "end-to-end (decode+resize+network+boxes+NMS)" if s["end_to_end"] else "network only"
    prio = f", priority {s['nice']:+d}" if s.get("nice") else ""
    lines = [
        f"darkcsp bench {result['date']}: {md['cfg']} {md['width']}x{md['height']}, "
        f"{md['bflops']:.3f} BFLOPs, {'random weights' if md['random_weights'] else md['weights']}",
        f"  {what}; batch {s['batch']}, threads {s['threads']}, {s['warmup']} warm-up + {s['runs']} timed runs "
        f"each, interleaved in blocks of {s['block']}{prio}",
        f"  machine: {m['cpu']} ({m['cores']} cores, {m['cores_usable']} usable"
        f"{', ' + ' '.join(m['cpu_flags']) if m['cpu_flags'] else ''}), {m['memory_gib']} GiB, {m['os']}",
        f"  python {v.get('python')}, darkcsp {v.get('darkcsp')}, {libs}{blas}; load average "
        f"{_fmt_load(m.get('load_average'))} -> {_fmt_load(m.get('load_average_end'))}",
    ]
    return "\n".join(lines)


def _fmt_load(load) -> str:
    return "/".join(f"{x:.2f}" for x in load) if load else "?"


def format_table(result: Dict[str, Any]) -> str:
    """The human-readable report: header, then one row per backend (skipped ones say why)."""
    base = result.get("baseline")
    entries = result["backends"]
    agree = any("agreement" in e for e in entries)
    width = max([len(e["label"]) for e in entries] + [7])
    head = (f"{'backend':<{width}}  {'median ms':>9}  {'p10':>7}  {'p90':>7}  {'fps':>7}  {'GFLOP/s':>7}  "
            f"{'peak RSS MiB':>12}")
    if base:
        head += f"  {'x ' + base:>{max(18, len(base) + 2)}}"
    if agree:
        head += "  agreement"
    lines = [format_header(result), "", head, "-" * len(head)]
    for e in entries:
        if e["status"] != "ok" or not e.get("times"):
            lines.append(f"{e['label']:<{width}}  {e['status']}: {e.get('message', 'no runs')}")
            continue
        lat = e["latency_ms"]
        rss = e.get("peak_rss_mib")
        row = (f"{e['label']:<{width}}  {lat['median']:9.2f}  {lat['p10']:7.2f}  {lat['p90']:7.2f}  "
               f"{e['fps']:7.2f}  {e['gflops']:7.1f}  {(f'{rss:.0f}' if rss else '?'):>12}")
        if base:
            r = e.get("vs_baseline") or {}
            cell = f"{r['median']:.2f} [{r['p10']:.2f}-{r['p90']:.2f}]" if r.get("median") else "-"
            row += f"  {cell:>{max(18, len(base) + 2)}}"
        if agree:
            row += "  " + format_agreement(e.get("agreement"))
        lines.append(row)
    if base:
        lines.append(f"(x {base}: fps ratio, median [p10-p90] over interleaved blocks)")
    return "\n".join(lines)


def format_agreement(a: Optional[Dict[str, Any]]) -> str:
    if not a:
        return "-"
    if "error" in a:
        return f"n/a ({a['error']})"
    return (f"{a['matched']}/{a['expected']} ({100 * a['recall']:.0f}%) same class IoU>={a['iou']:g}, "
            f"max |dprob| {a['max_prob_diff']:.3f}, {a['extra']} extra")


def to_json(result: Dict[str, Any], keep_times: bool = False) -> str:
    """JSON text of a result; per-run times are dropped unless ``keep_times``."""
    def strip(e):
        e = {k: v for k, v in e.items() if keep_times or k not in ("times", "blocks")}
        if "blocks" in e:
            e["blocks"] = [{"block": i, "times": t} for i, t in e["blocks"]]
        return e
    out = dict(result, backends=[strip(e) for e in result["backends"]])
    return json.dumps(out, indent=1, default=float)


def plot(result: Dict[str, Any], path) -> None:
    """Bar chart of fps per backend with p10..p90 whiskers, written atomically (matplotlib, Agg)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from ..fileio import atomic_path

    ok = [e for e in result["backends"] if e["status"] == "ok" and e.get("times")]
    labels = [e["label"] for e in ok]
    fps = [e["fps"] for e in ok]
    batch = result["settings"]["batch"]
    lo = [f - batch * 1000.0 / e["latency_ms"]["p90"] for f, e in zip(fps, ok)]
    hi = [batch * 1000.0 / e["latency_ms"]["p10"] - f for f, e in zip(fps, ok)]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(ok) + 2), 4))
    bars = ax.bar(range(len(ok)), fps, yerr=[lo, hi], capsize=4, color="#4C72B0")
    for bar, f, up in zip(bars, fps, hi):
        ax.annotate(f"{f:.1f}", (bar.get_x() + bar.get_width() / 2, bar.get_height() + up), ha="center",
                    va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(range(len(ok)))
    ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=8)
    md, s, m = result["model"], result["settings"], result["machine"]
    ax.set_ylabel("frames per second (median; whiskers p10..p90)")
    ax.set_title(f"{Path(md['cfg']).name} {md['width']}x{md['height']}, batch {s['batch']}, "
                 f"{s['threads']} threads\n{m['cpu']}, {result['date']}", fontsize=9)
    fig.tight_layout()
    suffix = Path(path).suffix.lstrip(".") or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=suffix, dpi=110)
    plt.close(fig)
