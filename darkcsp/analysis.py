"""Cost analysis of a graph: per-layer BFLOPs, CIO (memory traffic), live-set memory, and comparisons.

Everything here works from shapes alone (``darkcsp.load_graph``); nothing is run.

CIO ("convolutional input/output", HarDNet, Chao et al. ICCV 2019; the CSPNet paper's memory-traffic
measure) counts feature-map elements (not bytes), batch 1:

* ``cio_in`` of a layer = the elements it reads from earlier feature maps (or the network input; each layer
  says how much, ``Layer.cio_reads``):
  - ``[route]`` reads, from each listed layer, only its ``group_id`` slice: ``C_k/groups * H * W``;
  - ``[shortcut]`` reads the previous layer in full plus, from each ``from`` layer, the part that is added:
    ``min(outputs_from, outputs)`` elements (Darknet adds a larger map's first ``outputs`` values only);
  - a ``[maxpool]`` / ``[local_avgpool]`` whose windows leave pixels out (size < stride, e.g. the 1x1/2
    subsampling pools of cfg/resnet10.cfg) reads only the covered pixels: ``min(input, size^2 * output)``;
  - ``[sam]`` / ``[scale_channels]`` read both inputs in full; every other layer reads each input in full;
  - ``[dropout]`` / ``[empty]`` alias the previous buffer: 0.
* ``cio_out`` = the elements it writes = ``C * H * W`` of its output (0 for the aliasing layers).
* ``cio`` of a layer = ``cio_in + cio_out``. ``GraphProfile.cio`` sums every layer (all memory traffic,
  concatenations and additions included). ``cio_compute`` sums the layers that compute on windows of their
  input: ``[convolutional]``, ``[connected]``, ``[local]``, ``[avgpool]``, and ``[maxpool]`` /
  ``[local_avgpool]`` with windows of more than one pixel (a 1x1 window is a strided copy: data movement, like
  the resampling inside pjreddie's ``[shortcut]``, which it stands in for in our default-dialect ResNets).
  HarDNet defines CIO over convolution layers; with the pooling layers added it reproduces the CSPNet paper's
  figures (ResNeXt-50 34.4M and CSPResNeXt-50 32.6M at 256x256: cfg/resnext50.cfg and cfg/cspresnext50.cfg
  give 34.41M and 32.64M; without the pools 32.97M and 31.20M), so that is the number reported as the
  paper's CIO.

Live-set memory: layer ``i``'s output is allocated when ``i`` runs and freed after its last consumer ran
(network outputs, ``Graph.output_indices()``, are kept to the end; the network input is freed after its last
consumer). While layer ``t`` runs, the live set is its inputs, its output and every map still awaited by a
later layer. ``peak_live_bytes`` = the largest such set, in float32 bytes, batch 1.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

from .graph import Graph
from .layers.base import NETWORK_INPUT


@dataclass
class LayerCost:
    index: int
    type: str
    compute: bool  # counted by the paper's CIO (see ``GraphProfile.cio_compute``)
    out_shape: Tuple[int, int, int]
    params: int
    bflops: float
    cio_in: int
    cio_out: int
    live: int  # elements alive while this layer runs

    @property
    def cio(self) -> int:
        return self.cio_in + self.cio_out


@dataclass
class GraphProfile:
    file: str
    input_shape: Tuple[int, int, int]
    layers: List[LayerCost] = field(default_factory=list)

    @property
    def name(self) -> str:
        return Path(self.file).name

    @property
    def params(self) -> int:
        return sum(l.params for l in self.layers)

    @property
    def bflops(self) -> float:
        return sum(l.bflops for l in self.layers if l.bflops > 0)

    @property
    def cio(self) -> int:
        return sum(l.cio for l in self.layers)

    @property
    def cio_compute(self) -> int:
        return sum(l.cio for l in self.layers if l.compute)

    @property
    def peak_layer(self) -> LayerCost:
        """The computational bottleneck: the layer with the largest BFLOPs (the first of equals)."""
        return max(self.layers, key=lambda l: l.bflops)

    @property
    def peak_live_layer(self) -> LayerCost:
        return max(self.layers, key=lambda l: l.live)

    @property
    def peak_live_bytes(self) -> int:
        return 4 * self.peak_live_layer.live

    def totals(self) -> Dict[str, object]:
        peak, live = self.peak_layer, self.peak_live_layer
        return {
            "file": self.file, "input_shape": list(self.input_shape), "layers": len(self.layers),
            "params": self.params, "bflops": self.bflops, "cio": self.cio, "cio_compute": self.cio_compute,
            "peak_layer": {"index": peak.index, "type": peak.type, "bflops": peak.bflops,
                           "share": peak.bflops / self.bflops if self.bflops else 0.0,
                           "depth": (peak.index + 1) / len(self.layers), "out_shape": list(peak.out_shape)},
            "peak_live_bytes": self.peak_live_bytes,
            "peak_live_layer": live.index,
        }

    def to_dict(self) -> Dict[str, object]:
        out = self.totals()
        out["per_layer"] = [dict(asdict(l), out_shape=list(l.out_shape), cio=l.cio) for l in self.layers]
        return out


def profile(graph: Graph) -> GraphProfile:
    """Per-layer params, BFLOPs, CIO and live-set size of ``graph`` (batch 1)."""
    layers = graph.layers
    n = len(layers)

    def outputs_of(i: int) -> int:
        return graph.net.inputs if i == NETWORK_INPUT else layers[i].outputs

    # Which buffer holds each layer's output: aliasing layers ([dropout], [empty]) share their input's.
    owner = list(range(n))
    for layer in layers:
        if layer.is_alias and layer.inputs and layer.inputs[0] >= 0:
            owner[layer.index] = owner[layer.inputs[0]]
    size = [0 if owner[i] != i else layers[i].outputs for i in range(n)]
    # death[b] = the last step at which buffer b is needed; -1 stands for the network input.
    death: Dict[int, int] = {i: i for i in range(n)}
    death[NETWORK_INPUT] = -1
    for layer in layers:
        for i in layer.inputs:
            b = owner[i] if i >= 0 else NETWORK_INPUT
            death[b] = max(death[b], layer.index)
    for i in graph.output_indices():
        death[owner[i]] = n - 1
    # live[t] = sum of buffers born at or before t and dying at or after t (difference array).
    delta = [0] * (n + 1)
    delta[0] += graph.net.inputs
    delta[max(death[NETWORK_INPUT], 0) + 1] -= graph.net.inputs
    for i in range(n):
        if size[i]:
            delta[i] += size[i]
            delta[death[i] + 1] -= size[i]
    live, running = [], 0
    for t in range(n):
        running += delta[t]
        live.append(running)

    costs = []
    for layer in layers:
        out = 0 if layer.is_alias else layer.outputs
        costs.append(LayerCost(layer.index, layer.type, bool(layer.cio_compute), tuple(layer.out_shape), layer.params,
                               layer.bflops, layer.cio_reads(outputs_of), out, live[layer.index]))
    return GraphProfile(graph.file, tuple(graph.input_shape), costs)


# ----------------------------------------------------------------------------------------------------------
# comparisons
# ----------------------------------------------------------------------------------------------------------
#: (key, label) of the totals a comparison shows, in order
COMPARE_KEYS = (
    ("params", "params"),
    ("bflops", "BFLOPs"),
    ("cio", "CIO, all layers (elements)"),
    ("cio_compute", "CIO, conv+pool (paper)"),
    ("peak_bflops", "peak layer BFLOPs"),
    ("peak_live_bytes", "peak live memory (bytes)"),
)


def compare_values(p: GraphProfile) -> Dict[str, float]:
    return {"params": float(p.params), "bflops": p.bflops, "cio": float(p.cio), "cio_compute": float(p.cio_compute),
            "peak_bflops": p.peak_layer.bflops, "peak_live_bytes": float(p.peak_live_bytes)}


def relative_change(new: float, base: float) -> Optional[float]:
    """``new / base - 1`` (None when the base is 0)."""
    return None if not base else new / base - 1.0


def compare(profiles: Sequence[GraphProfile], fps: Optional[Sequence[Optional[float]]] = None) -> Dict[str, object]:
    """Totals of each profile and their change relative to the first one."""
    rows = []
    base = compare_values(profiles[0])
    for k, p in enumerate(profiles):
        v = compare_values(p)
        if fps is not None:
            v["fps"] = fps[k]
        change = {key: relative_change(v[key], base[key]) for key in base}
        if fps is not None:
            change["fps"] = (None if fps[k] is None or fps[0] is None else relative_change(fps[k], fps[0]))
        rows.append({"file": p.file, "input_shape": list(p.input_shape), "values": v, "change": change,
                     "peak_layer": p.totals()["peak_layer"]})
    return {"baseline": profiles[0].file, "models": rows}


# ----------------------------------------------------------------------------------------------------------
# text
# ----------------------------------------------------------------------------------------------------------
def human(n: float) -> str:
    """12345678 -> '12.35M' (k, M, G)."""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.2f}{suffix}"
    return f"{n:.0f}"


def mib(n_bytes: float) -> str:
    return f"{n_bytes / 2 ** 20:.2f} MiB"


def format_profile(p: GraphProfile, top: Optional[int] = None) -> str:
    """The per-layer table (every layer, or the ``top`` most expensive) and the totals."""
    c, h, w = p.input_shape
    peak = p.peak_layer
    t = p.totals()
    lines = [f"{p.file}: input {w}x{h}x{c}, {len(p.layers)} layers",
             "  layer  type                   output      params   BFLOPs  share       CIO     live"]
    rows = p.layers
    if top:
        rows = sorted(rows, key=lambda l: l.bflops, reverse=True)[:top]
    for l in rows:
        oc, oh, ow = l.out_shape
        share = l.bflops / p.bflops if p.bflops else 0.0
        mark = "  <- peak" if l is peak else ""
        shape = f"{ow}x{oh}x{oc}"
        lines.append(f"  {l.index:5d}  {l.type:<16s} {shape:>14s}  {l.params:10d}  {l.bflops:7.3f}"
                     f"  {100 * share:4.1f}%  {human(l.cio):>8s}  {human(l.live):>7s}{mark}")
    lines += [
        f"params {p.params} ({human(p.params)})   BFLOPs {p.bflops:.3f}   CIO {human(p.cio_compute)} "
        f"(conv+pool layers, the paper's measure; all layers {human(p.cio)})",
        f"computational bottleneck: layer {peak.index} [{peak.type}] {peak.out_shape[2]}x{peak.out_shape[1]}x"
        f"{peak.out_shape[0]}, {peak.bflops:.3f} BFLOPs = {100 * t['peak_layer']['share']:.1f}% of the total, "
        f"at {100 * t['peak_layer']['depth']:.0f}% of the depth",
        f"peak live memory {mib(p.peak_live_bytes)} (float32, batch 1) while layer {p.peak_live_layer.index} runs",
    ]
    return "\n".join(lines)


def format_compare(result: Dict[str, object]) -> str:
    models = result["models"]
    names = [Path(m["file"]).name for m in models]
    width = max(14, *(len(n) for n in names)) + 2
    keys = list(COMPARE_KEYS)
    if "fps" in models[0]["values"]:
        keys.append(("fps", "fps"))
    head = f"{'':28s}" + "".join(f"{n:>{width}s}" for n in names)
    lines = [head]
    for key, label in keys:
        cells = []
        for k, m in enumerate(models):
            v = m["values"][key]
            if v is None:
                text = "n/a"
            elif key == "bflops" or key == "peak_bflops":
                text = f"{v:.3f}"
            elif key == "peak_live_bytes":
                text = mib(v)
            elif key == "fps":
                text = f"{v:.1f}"
            else:
                text = human(v)
            ch = m["change"].get(key)
            if k > 0 and ch is not None:
                text += f" ({100 * ch:+.1f}%)"
            cells.append(f"{text:>{width}s}")
        lines.append(f"{label:28s}" + "".join(cells))
    for m, n in zip(models, names):
        pk = m["peak_layer"]
        lines.append(f"{n}: bottleneck layer {pk['index']} [{pk['type']}] {pk['bflops']:.3f} BFLOPs "
                     f"({100 * pk['share']:.1f}% of the total, at {100 * pk['depth']:.0f}% of the depth)")
    lines.append(f"(changes relative to {names[0]})")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------
# plots (matplotlib, Agg; written atomically)
# ----------------------------------------------------------------------------------------------------------
_TYPE_COLORS = {"convolutional": "#4C72B0", "connected": "#4C72B0", "maxpool": "#55A868",
                "local_avgpool": "#55A868", "shortcut": "#C44E52", "sam": "#8172B2"}
_OTHER = "#999999"
_PEAK = "#DD8452"


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: Union[str, Path]) -> None:
    from .errors import DarkcspError
    from .fileio import atomic_path
    suffix = Path(path).suffix.lstrip(".").lower() or "png"
    formats = fig.canvas.get_supported_filetypes()
    if suffix not in formats:
        raise DarkcspError(f"{path}: cannot draw a plot as .{suffix}; use one of "
                           f"{', '.join('.' + f for f in sorted(formats))}")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=suffix, dpi=110)


def _layer_bars(ax, p: GraphProfile, values, ylabel: str, mark_peak: bool = True) -> None:
    idx = [l.index for l in p.layers]
    colors = [_TYPE_COLORS.get(l.type, _OTHER) for l in p.layers]
    peak = max(range(len(values)), key=lambda i: values[i]) if values else 0
    if mark_peak and values:
        colors[peak] = _PEAK
    ax.bar(idx, values, width=1.0 if len(idx) > 60 else 0.8, color=colors, linewidth=0)
    ax.set_ylabel(ylabel)
    ax.set_xlim(-1, len(idx))
    ax.grid(axis="y", alpha=0.3)
    if mark_peak and values and values[peak] > 0:
        l = p.layers[peak]
        right = l.index > 0.6 * len(idx)  # label on the left of late peaks so it stays inside the axes
        ax.annotate(f"layer {l.index} [{l.type}] {l.out_shape[2]}x{l.out_shape[1]}x{l.out_shape[0]}",
                    (l.index, values[peak]), xytext=(-8 if right else 8, -4), textcoords="offset points",
                    fontsize=8, color="#333333", va="top", ha="right" if right else "left", bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="none", alpha=0.85))


def _legend(ax) -> None:
    from matplotlib.patches import Patch
    handles = [Patch(color=c, label=t) for t, c in (("conv", "#4C72B0"), ("pool", "#55A868"),
                                                     ("shortcut", "#C44E52"), ("sam", "#8172B2"),
                                                     ("other", _OTHER), ("peak", _PEAK))]
    ax.legend(handles=handles, fontsize=7, ncol=6, loc="lower right", bbox_to_anchor=(1.0, 1.0), frameon=False,
              borderaxespad=0.2)


def plot_profile(p: GraphProfile, path: Union[str, Path]) -> None:
    """Two bar charts over the layer index: BFLOPs and CIO per layer; the peak layer highlighted."""
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 6), sharex=True)
    _layer_bars(ax1, p, [l.bflops for l in p.layers], "BFLOPs per layer")
    _legend(ax1)
    _layer_bars(ax2, p, [l.cio / 1e6 for l in p.layers], "CIO per layer (M elements)")
    ax2.set_xlabel("layer index")
    c, h, w = p.input_shape
    peak = p.peak_layer
    fig.suptitle(f"{p.name} ({w}x{h}): {human(p.params)} params, {p.bflops:.3f} BFLOPs, CIO {human(p.cio_compute)} "
                 f"(conv+pool); bottleneck layer {peak.index} = {100 * peak.bflops / p.bflops:.1f}% of BFLOPs",
                 fontsize=10)
    fig.tight_layout()
    try:
        _save(fig, path)
    finally:
        plt.close(fig)


def plot_compare(profiles: Sequence[GraphProfile], result: Dict[str, object], path: Union[str, Path]) -> None:
    """Totals relative to the first model (grouped bars), then each model's per-layer BFLOPs on one scale."""
    plt = _pyplot()
    n = len(profiles)
    fig = plt.figure(figsize=(11, 3.4 + 2.0 * n))
    grid = fig.add_gridspec(1 + n, 1, height_ratios=[1.6] + [1.0] * n)
    ax = fig.add_subplot(grid[0])
    keys = list(COMPARE_KEYS)
    if "fps" in result["models"][0]["values"] and all(m["values"].get("fps") for m in result["models"]):
        keys.append(("fps", "fps"))
    labels = {"params": "params", "bflops": "BFLOPs", "cio": "CIO (all)", "cio_compute": "CIO\n(conv+pool)",
              "peak_bflops": "peak layer\nBFLOPs", "peak_live_bytes": "peak live\nmemory", "fps": "fps"}
    width = 0.8 / n
    palette = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B2", "#937860"]
    base = result["models"][0]["values"]
    highest = 100.0
    for k, m in enumerate(result["models"]):
        rel = [100.0 * (m["values"][key] or 0) / base[key] if base.get(key) else 0.0 for key, _ in keys]
        highest = max([highest] + rel)
        xs = [i + (k - (n - 1) / 2) * width for i in range(len(keys))]
        bars = ax.bar(xs, rel, width=width, color=palette[k % len(palette)], label=Path(m["file"]).name)
        for bar, r in zip(bars, rel):
            ax.annotate(f"{r:.0f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                        va="bottom", fontsize=7, xytext=(0, 1), textcoords="offset points")
    ax.axhline(100, color="#333333", linewidth=0.8, linestyle="--")
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels([labels[key] for key, _ in keys], fontsize=8)
    ax.set_ylabel(f"% of {Path(result['baseline']).name}", fontsize=8)
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_ylim(0, max(130.0, 1.12 * highest))
    top = max(p.peak_layer.bflops for p in profiles) * 1.15
    for k, p in enumerate(profiles):
        axk = fig.add_subplot(grid[1 + k])
        _layer_bars(axk, p, [l.bflops for l in p.layers], "BFLOPs")
        axk.set_ylim(0, top)
        axk.set_title(f"{p.name}: {p.bflops:.3f} BFLOPs in {len(p.layers)} layers, peak layer "
                      f"{p.peak_layer.index} = {p.peak_layer.bflops:.3f}", fontsize=9, loc="left")
        if k == n - 1:
            axk.set_xlabel("layer index")
    fig.tight_layout()
    try:
        _save(fig, path)
    finally:
        plt.close(fig)
