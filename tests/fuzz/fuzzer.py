"""Seeded mutation fuzzing of the cfg parser, the graph builder and the weights reader.

Test code, not part of the installed package: used by ``tests/fuzz/test_fuzz.py`` (a bounded run in the suite)
and ``python -m tests.fuzz`` (long runs; ``tools/fuzz.py`` runs it). Input ``i`` of a run is a pure function of
``(corpus, seed, i)``, so a crash or hang is reproduced from its index alone; the long run also saves the mutated
files.

The contract checked: whatever bytes are given as cfg and weights, darkcsp either works or raises a
``DarkcspError``, within a time bound, without allocating memory the size estimate did not allow.
"""
from __future__ import annotations

import contextlib
import gzip
import logging
import os
import tempfile
import lzma
import random
import re
import signal
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

#: Small cfgs written for the fuzzer (not taken from anywhere), in tests/data/cfg/fuzz/: the corpus when the
#: conformance data is absent. The order is part of the input numbering (input i picks a corpus entry).
SEED_DIR = Path(__file__).resolve().parent.parent / "data" / "cfg" / "fuzz"
SEED_CFGS = ("seed-detector", "seed-classifier", "seed-attention", "seed-misc", "seed-yolov1")

#: values a number is replaced with
_NUMBERS = ["0", "-1", "-2", "1", "2", "3", "4", "7", "31", "64", "1000", "100000", "1000000", "1000000000",
            "2147483647", "2147483648", "4294967296", "9223372036854775808", "1e30", "1e400", "-1e400", "0.5",
            "1.5", "-0.5", "1e-9", "nan", "inf", "-inf", "abc", ",", "1,,2", "#", "0x10", "1.0", "+3", "-0",
            "3#x", "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16", "99999999999999999999999999999999999", "", "="]
_STRINGS = ["leaky", "linear", "logistic", "mish", "swish", "relu6", "hard_mish", "normalize_channels",
            "normalize_channels_softmax", "gelu", "tanh", "selu", "elu", "loggy", "relie", "plse", "ramp",
            "lhtan", "stair", "hardtan", "per_channel", "per_feature", "none", "relu", "softmax", "greedynms",
            "diounms", "cornersnms", "implicit_add", "implicit_mul", "sse", "nonsense", "", "é", "\x00"]
_SECTIONS = ["net", "network", "convolutional", "conv", "connected", "conn", "local", "batchnorm", "activation",
             "normalization", "lrn", "implicit", "maxpool", "max", "local_avgpool", "local_avg", "avgpool", "avg",
             "route", "shortcut", "upsample", "reorg3d", "reorg", "sam", "scale_channels", "softmax", "soft",
             "crop", "dropout", "empty", "silence", "cost", "contrastive", "yolo", "Gaussian_yolo", "region",
             "detection", "rnn", "deconvolutional", "logistic", "nonsense"]
_BYTES = [b"\x00", b"\xff", b"\xfe\xff", b"\xc3", b"\xe2\x82", b"[", b"]", b"=", b",", b"#", b";", b"\n", b"\r",
          b"\t", b" ", b"-", b"0", b"9", b".", b"\x80\x81", "é".encode(), b"[net]\n", b"[route]\nlayers=\n"]
_NUM_RE = re.compile(rb"[+-]?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?")


@dataclass
class CorpusEntry:
    name: str
    cfg: bytes
    dialect: str = "alexeyab"
    #: float32 count the unmutated cfg needs in a .weights file (None if the cfg itself does not build)
    params: Optional[int] = None


@dataclass
class FuzzInput:
    index: int
    base: str
    cfg: bytes
    weights: Optional[bytes]
    dialect: str
    ops: List[str] = field(default_factory=list)
    #: --width/--height overrides (None: the cfg's)
    size: Tuple[Optional[int], Optional[int]] = (None, None)


def load_corpus(conformance_root: Optional[Path] = None, seeds: bool = True) -> List[CorpusEntry]:
    """The seed cfgs above plus, if given and present, the conformance cfgs (cases/*/model.cfg, shapes/*.cfg)."""
    out = [CorpusEntry(name, (SEED_DIR / f"{name}.cfg").read_bytes()) for name in SEED_CFGS] if seeds else []
    if conformance_root is not None and Path(conformance_root).is_dir():
        root = Path(conformance_root)
        for p in sorted(root.glob("cases/*/model.cfg")):
            out.append(CorpusEntry(p.parent.name, p.read_bytes(),
                                   "pjreddie" if p.parent.name.startswith("pj-") else "alexeyab"))
        for p in sorted(root.glob("shapes/*.cfg")):
            out.append(CorpusEntry(p.stem, p.read_bytes(), "pjreddie" if p.stem.startswith("pjreddie") else "alexeyab"))
    return out


def measure_params(corpus: Sequence[CorpusEntry], workdir: Path, max_memory_gb: float = 2.0) -> None:
    """Fill in ``params`` for every entry whose unmutated cfg builds (so that matching weights can be made)."""
    from darkcsp.errors import DarkcspError
    from darkcsp.graph import load_graph
    for entry in corpus:
        p = Path(workdir) / "corpus.cfg"
        p.write_bytes(entry.cfg)
        try:
            entry.params = load_graph(p, dialect=entry.dialect, max_memory_gb=max_memory_gb).params_total
        except DarkcspError:  # e.g. a pjreddie-only cfg: fuzzed without weights (any other error is a bug)
            entry.params = None


def weights_for(params: int, seed: int = 0, major: int = 0, minor: int = 2, revision: int = 5) -> bytes:
    """A syntactically valid .weights file holding ``params`` float32 values (deterministic, not all zero)."""
    head = struct.pack("<iii", major, minor, revision)
    head += struct.pack("<Q" if major * 10 + minor >= 2 else "<I", seed)
    body = bytearray(4 * params)
    # a few non-zero values; parsing must not care what they are
    for k in range(0, len(body), 4096):
        body[k:k + 4] = struct.pack("<f", ((k * 2654435761 + seed) % 1000) / 500.0 - 1.0)
    return head + bytes(body)


# ----- cfg mutations ---------------------------------------------------------------------------------------
def _lines(data: bytes) -> List[bytes]:
    return data.split(b"\n")


def _section_starts(lines: List[bytes]) -> List[int]:
    return [i for i, l in enumerate(lines) if l.strip().startswith(b"[")]


def _random_number(rng: random.Random) -> bytes:
    r = rng.random()
    if r < 0.7:
        return rng.choice(_NUMBERS).encode()
    if r < 0.9:
        return str(rng.randint(-10, 1000)).encode()
    return repr(rng.uniform(-10, 10)).encode()


def _m_delete_line(data: bytes, rng: random.Random) -> bytes:
    lines = _lines(data)
    del lines[rng.randrange(len(lines))]
    return b"\n".join(lines)


def _m_duplicate_line(data: bytes, rng: random.Random) -> bytes:
    lines = _lines(data)
    i = rng.randrange(len(lines))
    j = i + 1 if rng.random() < 0.5 else rng.randrange(len(lines) + 1)
    lines.insert(j, lines[i])
    return b"\n".join(lines)


def _m_number(data: bytes, rng: random.Random) -> bytes:
    nums = list(_NUM_RE.finditer(data))
    if not nums:
        return _m_insert_option(data, rng)
    m = rng.choice(nums)
    return data[:m.start()] + _random_number(rng) + data[m.end():]


def _m_nudge(data: bytes, rng: random.Random) -> bytes:
    """Change a number a little (+-1, x2, /2, negated): cfgs that still build, with odd shapes."""
    nums = [m for m in _NUM_RE.finditer(data) if b"." not in m.group() and b"e" not in m.group().lower()]
    if not nums:
        return _m_number(data, rng)
    m = rng.choice(nums)
    v = int(m.group())
    new = rng.choice([v + 1, v - 1, v * 2, v // 2, -v, v + rng.randint(2, 9)])
    return data[:m.start()] + str(new).encode() + data[m.end():]


def _m_value(data: bytes, rng: random.Random) -> bytes:
    """Replace a whole option value with a number, a string or another line's value."""
    lines = _lines(data)
    idx = [i for i, l in enumerate(lines) if b"=" in l and not l.lstrip().startswith((b"#", b";"))]
    if not idx:
        return _m_insert_option(data, rng)
    i = rng.choice(idx)
    key = lines[i].split(b"=", 1)[0]
    r = rng.random()
    if r < 0.4:
        value = _random_number(rng)
    elif r < 0.7:
        value = rng.choice(_STRINGS).encode()
    else:
        value = lines[rng.choice(idx)].split(b"=", 1)[1]
    lines[i] = key + b"=" + value
    return b"\n".join(lines)


def _m_key(data: bytes, rng: random.Random) -> bytes:
    """Rename an option to another option name of the file (stride -> size, ...)."""
    lines = _lines(data)
    idx = [i for i, l in enumerate(lines) if b"=" in l]
    if len(idx) < 2:
        return _m_delete_line(data, rng)
    i, j = rng.choice(idx), rng.choice(idx)
    lines[i] = lines[j].split(b"=", 1)[0] + b"=" + lines[i].split(b"=", 1)[1]
    return b"\n".join(lines)


def _known_keys(data: bytes) -> List[bytes]:
    keys = {l.split(b"=", 1)[0].strip() for l in _lines(data) if b"=" in l}
    return sorted(keys | {b"layers", b"from", b"groups", b"group_id", b"mask", b"anchors", b"num", b"classes",
                          b"filters", b"size", b"stride", b"pad", b"padding", b"dilation", b"stride_x",
                          b"stride_y", b"output", b"batch_normalize", b"weights_type", b"maxpool_depth",
                          b"out_channels", b"share_index", b"antialiasing", b"coords", b"side", b"reverse",
                          b"scale_wh", b"inputs", b"width", b"height", b"channels", b"dontload", b"xnor",
                          b"flipped", b"crop_width", b"crop_height", b"atoms", b"new_coords", b"binary"})


def _m_insert_option(data: bytes, rng: random.Random) -> bytes:
    lines = _lines(data)
    key = rng.choice(_known_keys(data))
    value = _random_number(rng) if rng.random() < 0.7 else rng.choice(_STRINGS).encode()
    lines.insert(rng.randrange(len(lines) + 1), key + b"=" + value)
    return b"\n".join(lines)


def _blocks(lines: List[bytes]) -> Tuple[List[bytes], List[List[bytes]]]:
    starts = _section_starts(lines)
    if not starts:
        return lines, []
    head = lines[:starts[0]]
    blocks = [lines[s:e] for s, e in zip(starts, starts[1:] + [len(lines)])]
    return head, blocks


def _join(head: List[bytes], blocks: List[List[bytes]]) -> bytes:
    return b"\n".join(head + [l for b in blocks for l in b])


def _m_swap_sections(data: bytes, rng: random.Random) -> bytes:
    head, blocks = _blocks(_lines(data))
    if len(blocks) < 2:
        return _m_delete_line(data, rng)
    i, j = rng.randrange(len(blocks)), rng.randrange(len(blocks))
    if rng.random() < 0.5:
        j = min(len(blocks) - 1, i + 1)
    blocks[i], blocks[j] = blocks[j], blocks[i]
    return _join(head, blocks)


def _m_delete_section(data: bytes, rng: random.Random) -> bytes:
    head, blocks = _blocks(_lines(data))
    if len(blocks) < 2:
        return _m_delete_line(data, rng)
    del blocks[rng.randrange(1 if rng.random() < 0.95 else 0, len(blocks))]
    return _join(head, blocks)


def _m_duplicate_section(data: bytes, rng: random.Random) -> bytes:
    head, blocks = _blocks(_lines(data))
    if not blocks:
        return _m_duplicate_line(data, rng)
    i = rng.randrange(len(blocks))
    blocks.insert(rng.randrange(1, len(blocks) + 1), list(blocks[i]))
    return _join(head, blocks)


def _m_rename_section(data: bytes, rng: random.Random) -> bytes:
    lines = _lines(data)
    starts = _section_starts(lines)
    if not starts:
        return _m_insert_bytes(data, rng)
    i = rng.choice(starts[1:] or starts)
    lines[i] = b"[" + rng.choice(_SECTIONS).encode() + b"]"
    return b"\n".join(lines)


def _m_truncate(data: bytes, rng: random.Random) -> bytes:
    return data[:rng.randrange(len(data) + 1)]


def _m_insert_bytes(data: bytes, rng: random.Random) -> bytes:
    pos = rng.randrange(len(data) + 1)
    if rng.random() < 0.6:
        ins = rng.choice(_BYTES)
    else:
        ins = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return data[:pos] + ins + data[pos:]


def _m_flip_byte(data: bytes, rng: random.Random) -> bytes:
    if not data:
        return b"\x00"
    b = bytearray(data)
    b[rng.randrange(len(b))] = rng.randrange(256)
    return bytes(b)


CFG_MUTATIONS: List[Tuple[str, Callable[[bytes, random.Random], bytes], float]] = [
    ("delete_line", _m_delete_line, 1.0),
    ("duplicate_line", _m_duplicate_line, 1.0),
    ("number", _m_number, 3.0),
    ("nudge", _m_nudge, 2.0),
    ("value", _m_value, 1.5),
    ("key", _m_key, 0.7),
    ("insert_option", _m_insert_option, 1.5),
    ("swap_sections", _m_swap_sections, 1.0),
    ("delete_section", _m_delete_section, 1.0),
    ("duplicate_section", _m_duplicate_section, 0.7),
    ("rename_section", _m_rename_section, 1.0),
    ("truncate", _m_truncate, 0.4),
    ("insert_bytes", _m_insert_bytes, 0.6),
    ("flip_byte", _m_flip_byte, 0.3),
]


# ----- weights mutations -----------------------------------------------------------------------------------
def _w_truncate(data: bytes, rng: random.Random) -> bytes:
    if rng.random() < 0.3:
        return data[:rng.randrange(min(len(data), 24) + 1)]
    return data[:rng.randrange(len(data) + 1)]


def _w_extend(data: bytes, rng: random.Random) -> bytes:
    n = rng.choice([1, 2, 3, 4, 8, 12, 4 * rng.randint(1, 1000)])
    return data + bytes(rng.randrange(256) for _ in range(min(n, 64))) + bytes(max(0, n - 64))


def _w_header(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data.ljust(12, b"\x00"))
    k = rng.randrange(3)
    v = rng.choice([0, 1, 2, 5, 9, 10, 1000, 1001, 1002, 99999, 100000, -1, -1000, 2 ** 31 - 1, -2 ** 31,
                    rng.randint(-2 ** 31, 2 ** 31 - 1)])
    b[4 * k:4 * k + 4] = struct.pack("<i", v)
    return bytes(b)


def _w_flip(data: bytes, rng: random.Random) -> bytes:
    return _m_flip_byte(data, rng)


def _w_insert(data: bytes, rng: random.Random) -> bytes:
    pos = rng.randrange(len(data) + 1)
    return data[:pos] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 7))) + data[pos:]


def _w_compress(data: bytes, rng: random.Random) -> bytes:
    packed = lzma.compress(data, preset=0) if rng.random() < 0.5 else gzip.compress(data, compresslevel=1)
    if rng.random() < 0.5:
        packed = packed[:rng.randrange(len(packed) + 1)]
    elif rng.random() < 0.5:
        packed = _m_flip_byte(packed, rng)
    return packed


def _w_nan(data: bytes, rng: random.Random) -> bytes:
    if len(data) < 28:
        return data
    b = bytearray(data)
    pos = 20 + 4 * rng.randrange((len(data) - 20) // 4)
    b[pos:pos + 4] = struct.pack("<f", rng.choice([float("nan"), float("inf"), -float("inf"), 1e38]))
    return bytes(b)


WEIGHTS_MUTATIONS: List[Tuple[str, Callable[[bytes, random.Random], bytes], float]] = [
    ("w_truncate", _w_truncate, 2.0),
    ("w_extend", _w_extend, 1.5),
    ("w_header", _w_header, 2.0),
    ("w_flip", _w_flip, 0.5),
    ("w_insert", _w_insert, 1.0),
    ("w_compress", _w_compress, 0.5),
    ("w_nan", _w_nan, 0.3),
]


def _pick(rng: random.Random, table):
    names, funcs, weights = zip(*table)
    k = rng.choices(range(len(table)), weights=weights)[0]
    return names[k], funcs[k]


#: weights files are generated only for cfgs needing at most this many floats (keeps each input fast)
MAX_WEIGHTS_PARAMS = 3_000_000


def make_input(corpus: Sequence[CorpusEntry], seed: int, index: int) -> FuzzInput:
    """Input ``index`` of the run ``seed``: a corpus cfg with 1-4 stacked mutations and maybe a weights file."""
    rng = random.Random(seed * 1_000_003 + index)
    small = [e for e in corpus if e.name.startswith(("seed-", "zoo-"))]
    # the small cfgs cover every layer type and are cheap enough to run forward: favour them
    pool = small if small and rng.random() < 0.35 else corpus
    entry = pool[rng.randrange(len(pool))]
    ops: List[str] = []
    cfg = entry.cfg
    mode = rng.random()
    with_weights = entry.params is not None and entry.params <= MAX_WEIGHTS_PARAMS
    if mode < 0.3 and with_weights:
        mutate_cfg, mutate_weights = False, True
    elif mode < 0.65 and with_weights:
        mutate_cfg, mutate_weights = True, rng.random() < 0.3
    else:
        mutate_cfg, mutate_weights = True, False
        with_weights = with_weights and rng.random() < 0.2
    if mutate_cfg:
        for _ in range(rng.choice([1, 1, 1, 2, 2, 3, 4])):
            name, f = _pick(rng, CFG_MUTATIONS)
            cfg = f(cfg, rng)
            ops.append(name)
    weights: Optional[bytes] = None
    if with_weights:
        r = rng.random()
        if r < 0.1:
            weights = weights_for(entry.params, index, major=1, minor=0, revision=0)
            ops.append("w_old_header")
        elif r < 0.15:
            weights = cfg
            ops.append("w_is_cfg")
        elif r < 0.2:
            others = [e for e in corpus if e.params is not None and e.params <= MAX_WEIGHTS_PARAMS]
            other = others[rng.randrange(len(others))]
            weights = weights_for(other.params, index)
            ops.append(f"w_of:{other.name}")
        else:
            weights = weights_for(entry.params, index)
        if mutate_weights:
            for _ in range(rng.choice([1, 1, 2, 3])):
                name, f = _pick(rng, WEIGHTS_MUTATIONS)
                weights = f(weights, rng)
                ops.append(name)
    dialect = entry.dialect if rng.random() < 0.9 else ("pjreddie" if entry.dialect == "alexeyab" else "alexeyab")
    size: Tuple[Optional[int], Optional[int]] = (None, None)
    if rng.random() < 0.08:
        size = tuple(rng.choice([None, 0, -32, 1, 7, 31, 32, 33, 64, 100, 416, 100000]) for _ in range(2))
        ops.append(f"size:{size[0]}x{size[1]}")
    return FuzzInput(index, entry.name, cfg, weights, dialect, ops, size)


# ----- running one input -----------------------------------------------------------------------------------
class FuzzHang(Exception):
    """An input took longer than the per-input time bound."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise FuzzHang in the main thread after ``seconds`` of CPU time (SIGPROF; checked between Python
    bytecodes). CPU time, not wall time, so that a loaded machine does not report false hangs; a process
    blocked without using CPU is caught by the wall-clock watchdog of ``python -m tests.fuzz``."""
    if seconds <= 0 or not hasattr(signal, "setitimer"):
        yield
        return

    def _alarm(signum, frame):
        raise FuzzHang(f"no result after {seconds:g} s of CPU time")

    old = signal.signal(signal.SIGPROF, _alarm)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, old)


@contextlib.contextmanager
def address_space_limit(extra_gb: float) -> Iterator[None]:
    """Cap this process's address space at its current size + ``extra_gb`` while the block runs, so that a
    runaway allocation is a MemoryError (a finding) instead of the machine swapping or the OOM killer."""
    try:
        import resource
        vm = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmSize:"))
        old = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (vm + int(extra_gb * 2 ** 30), old[1]))
    except (ImportError, OSError, ValueError, StopIteration):  # no RLIMIT_AS or no /proc: unbounded
        yield
        return
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, old)


@contextlib.contextmanager
def quiet_darkcsp() -> Iterator[None]:
    """darkcsp's warnings off while the block runs (mutated cfgs warn on every input)."""
    logger = logging.getLogger("darkcsp")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


#: random initial weights are made only for graphs up to this many parameters (Model without .weights)
MAX_INIT_PARAMS = 500_000


#: graphs whose activations fit in this many bytes are also run forward (NumPy executor) on a random input
MAX_FORWARD_BYTES = 4 << 20


def run_input(inp: FuzzInput, workdir: Path, max_memory_gb: float = 1.0, forward: bool = True,
              onnx: bool = False) -> str:
    """Parse ``inp`` as darkcsp would: cfg -> graph (+ summary text), weights against the graph, random init;
    small graphs are also run forward once (``forward``) and, with ``onnx``, lowered to ONNX and run in
    onnxruntime (slow: for ``python -m tests.fuzz --onnx``).

    Returns a short outcome ("ok", "ok+weights", or the DarkcspError class name); any other exception
    propagates (that is a crash)."""
    from darkcsp.errors import DarkcspError
    from darkcsp.graph import load_graph
    from darkcsp.model import Model, random_weights
    from darkcsp.weights import parse_weights, read_weights
    workdir = Path(workdir)
    cfg_path = workdir / "fuzz.cfg"
    cfg_path.write_bytes(inp.cfg)
    try:
        graph = load_graph(cfg_path, dialect=inp.dialect, width=inp.size[0], height=inp.size[1],
                           max_memory_gb=max_memory_gb)
        for layer in graph.layers:
            layer.describe()
        graph.params_total, graph.bflops_total, graph.output_indices(), graph.consumers()
        outcome = "ok"
        if inp.weights is not None:
            if inp.weights[:2] == b"\x1f\x8b" or inp.weights[:6] == b"\xfd7zXZ\x00":
                w_path = workdir / "fuzz.weights"  # compressed: through the file reader
                w_path.write_bytes(inp.weights)
                wf = read_weights(w_path, graph)
            else:  # the same parser read_weights uses, without a 10 MB file write per input
                wf = parse_weights(inp.weights, graph, file="fuzz.weights")
            if len(wf.layers) != len(graph.layers):
                raise AssertionError("read_weights returned the wrong number of layers")
            outcome = "ok+weights"
            if forward and graph.params_total <= MAX_INIT_PARAMS and graph.activation_bytes() <= MAX_FORWARD_BYTES:
                # the user's path: darkcsp.load(cfg, weights) (dontload/share_index handling), then forward
                from darkcsp.model import load
                w_path = workdir / "fuzz.weights"
                w_path.write_bytes(inp.weights)
                model = load(cfg_path, w_path, width=inp.size[0], height=inp.size[1], dialect=inp.dialect)
                _forward_check(model, inp.index)
                outcome = "ok+weights+forward"
        elif graph.params_total <= MAX_INIT_PARAMS:
            init = random_weights(graph)
            if forward and graph.activation_bytes() <= MAX_FORWARD_BYTES:
                x, ys = _forward_check(Model(graph, init), inp.index)
                outcome = "ok+forward"
                if onnx:
                    _check_onnx(graph, init, x, ys)
                    outcome = "ok+onnx"
    except DarkcspError as e:
        if not str(e):
            raise AssertionError(f"{type(e).__name__} with an empty message") from e
        return type(e).__name__
    return outcome


def _forward_check(model, seed: int):
    """Run ``model`` on a random input; every layer must return as many values as its out_shape says."""
    import numpy as np
    graph = model.graph
    x = np.random.default_rng(seed).random((1,) + tuple(graph.input_shape), dtype=np.float32)
    with np.errstate(all="ignore"):  # mutated parameters overflow to inf/nan: fine, not a crash
        ys = model.forward(x, all_layers=True)
    for layer in graph.layers:
        if ys[layer.index].size != layer.outputs:
            raise AssertionError(f"layer {layer.index} [{layer.type}] returned {ys[layer.index].shape}, its "
                                 f"out_shape is {layer.out_shape}")
    return x, ys


def _check_onnx(graph, init, x, ys) -> None:
    """Export, load in onnxruntime and run; shapes must match the NumPy outputs (values are not compared:
    mutated parameters give inf/nan)."""
    import onnxruntime as ort
    from darkcsp.model import Model
    from darkcsp.onnx.export import export_model
    proto, info = export_model(Model(graph, init))
    so = ort.SessionOptions()
    so.log_severity_level = 4
    sess = ort.InferenceSession(proto.SerializeToString(), sess_options=so, providers=["CPUExecutionProvider"])
    got = sess.run(list(info.outputs.values()), {"input": x})
    for (i, name), a in zip(info.outputs.items(), got):
        if a.size != ys[i].size:
            raise AssertionError(f"ONNX output {name} has shape {a.shape}, NumPy {ys[i].shape}")


def scratch_dir() -> "tempfile.TemporaryDirectory":
    """A temporary folder for the per-input files, in RAM (/dev/shm) when there is one."""
    shm = Path("/dev/shm")
    use = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    return tempfile.TemporaryDirectory(prefix="darkcsp-fuzz-", dir=use)


def save_input(inp: FuzzInput, folder: Path, note: str = "") -> Path:
    """Write ``inp`` (cfg, weights, description) to ``folder/<index>/`` for reproduction."""
    d = Path(folder) / f"{inp.index:08d}"
    d.mkdir(parents=True, exist_ok=True)
    (d / "model.cfg").write_bytes(inp.cfg)
    if inp.weights is not None:
        (d / "model.weights").write_bytes(inp.weights)
    (d / "README.txt").write_text(
        f"base: {inp.base}\ndialect: {inp.dialect}\nmutations: {', '.join(inp.ops)}\n{note}\n"
        f"reproduce: darkcsp summary --cfg model.cfg --dialect {inp.dialect}"
        + "".join(f" --{k} {v}" for k, v in zip(("width", "height"), inp.size) if v is not None)
        + (" (then read model.weights against it)" if inp.weights is not None else "") + "\n")
    return d


# ----- images (darkcsp.image: what `darkcsp detect` reads) ---------------------------------------------------
def seed_images() -> List[Tuple[str, bytes]]:
    """Small images in the formats Darknet users feed (made here with OpenCV's encoders)."""
    import cv2
    import numpy as np
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)
    out = []
    for name, arr, ext in (("rgb", rgb, ".png"), ("gray", rgb[:, :, 0], ".png"),
                           ("rgba", np.dstack([rgb, rgb[:, :, :1]]), ".png"),
                           ("rgb16", rgb.astype(np.uint16) * 257, ".png"),
                           ("gray16", rgb[:, :, 0].astype(np.uint16) * 3, ".png"),
                           ("jpeg", rgb, ".jpg"), ("gray-jpeg", rgb[:, :, 0], ".jpg"), ("bmp", rgb, ".bmp"),
                           ("tiff", rgb, ".tiff"), ("ppm", rgb, ".ppm"), ("pgm", rgb[:, :, 0], ".pgm"),
                           ("webp", rgb, ".webp"), ("1x1", rgb[:1, :1], ".png"), ("tall", rgb[:, :1], ".png")):
        ok, buf = cv2.imencode(ext, arr)
        if ok:
            out.append((name, buf.tobytes()))
    return out


def _i_dims(data: bytes, rng: random.Random) -> bytes:
    """Rewrite the PNG IHDR size (with a valid CRC, so the decoder trusts it) or the JPEG SOF size."""
    import zlib
    w, h = rng.choice([0, 1, 2, 65535, 100000, 2 ** 31 - 1]), rng.choice([0, 1, 3, 65535, 100000, 2 ** 31 - 1])
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        ihdr = data[12:16] + struct.pack(">II", w, h) + data[24:29]
        return data[:8] + data[8:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr) & 0xFFFFFFFF) + data[33:]
    i = data.find(b"\xff\xc0")
    if i >= 0 and i + 9 <= len(data):
        return data[:i + 5] + struct.pack(">HH", h & 0xFFFF, w & 0xFFFF) + data[i + 9:]
    return _m_flip_byte(data, rng)


IMAGE_MUTATIONS: List[Tuple[str, Callable[[bytes, random.Random], bytes], float]] = [
    ("i_flip", _m_flip_byte, 3.0),
    ("i_truncate", _m_truncate, 2.0),
    ("i_insert", _w_insert, 1.0),
    ("i_dims", _i_dims, 2.0),
]


@dataclass
class ImageInput:
    index: int
    base: str
    data: bytes
    net: Tuple[int, int, bool]
    ops: List[str] = field(default_factory=list)


def make_image_input(images: Sequence[Tuple[str, bytes]], seed: int, index: int) -> ImageInput:
    rng = random.Random(seed * 1_000_003 + index + 77)
    name, data = images[rng.randrange(len(images))]
    ops = []
    for _ in range(rng.choice([0, 1, 1, 2, 3])):
        op, f = _pick(rng, IMAGE_MUTATIONS)
        data = f(data, rng)
        ops.append(op)
    net = (rng.choice([1, 2, 13, 32, 416]), rng.choice([1, 2, 13, 32, 416]), rng.random() < 0.5)
    return ImageInput(index, name, data, net, ops)


def run_image_input(inp: ImageInput) -> str:
    """Decode as `darkcsp detect` does and build the network input; only ImageError may come out."""
    from darkcsp.errors import DarkcspError
    from darkcsp.image import decode_image, preprocess
    try:
        im = decode_image(inp.data, "fuzz.img")
        x = preprocess(im, inp.net[0], inp.net[1], letter=inp.net[2])
    except DarkcspError as e:
        if not str(e):
            raise AssertionError(f"{type(e).__name__} with an empty message") from e
        return type(e).__name__
    if x.shape != (1, 3, inp.net[1], inp.net[0]) or x.dtype.name != "float32":
        raise AssertionError(f"preprocess gave {x.shape} {x.dtype} for a {inp.net[0]}x{inp.net[1]} network")
    return "ok"


def save_image_input(inp: ImageInput, folder: Path, note: str = "") -> Path:
    d = Path(folder) / f"image-{inp.index:08d}"
    d.mkdir(parents=True, exist_ok=True)
    (d / "input.img").write_bytes(inp.data)
    (d / "README.txt").write_text(f"base: {inp.base}\nnetwork: {inp.net}\nmutations: {', '.join(inp.ops)}\n{note}\n")
    return d
