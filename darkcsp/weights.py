"""Darknet .weights files: read into per-layer arrays (in each layer's ``weight_arrays`` order) and write back.

Format (parser.c: load_weights_upto, save_weights): int32 major, minor, revision; ``seen`` as uint64 when
major*10+minor >= 2 (pjreddie: and both < 1000), else uint32; then every layer's float32 arrays in cfg
order. Darknet silently stops at EOF and never checks leftover bytes; darkcsp treats both as errors (a
weights file for another cfg is the usual cause) unless a partial load is asked for.
xz- and gzip-compressed files are read transparently (by magic bytes).
"""
from __future__ import annotations

import gzip
import lzma
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Union

import numpy as np

from .dialect import Dialect, get_dialect
from .errors import WeightsError
from .fileio import atomic_write_bytes, open_input
from .graph import Graph
from .layers.base import Weights


@dataclass
class WeightsHeader:
    major: int = 0
    minor: int = 2
    revision: int = 5
    seen: int = 0

    def seen_is_64bit(self, dialect: Union[str, Dialect] = "alexeyab") -> bool:
        return get_dialect(dialect).seen_is_64bit(self.major, self.minor)

    @property
    def transpose(self) -> bool:
        """Old files store [connected] weights as [in][out]."""
        return self.major > 1000 or self.minor > 1000

    def nbytes(self, dialect: Union[str, Dialect] = "alexeyab") -> int:
        return 20 if self.seen_is_64bit(dialect) else 16


@dataclass
class WeightsFile:
    header: WeightsHeader
    #: one dict per layer (index = Darknet layer index) of name -> float32 array
    layers: List[Weights] = field(default_factory=list)


#: read_weights refuses, before reading it all, a file larger than twice what the cfg needs plus this
_SLACK = 1 << 20


def _too_long(path: Union[str, Path], limit: int, size: Optional[int] = None) -> WeightsError:
    what = f"{size} bytes" if size is not None else "the data"
    needed = (limit - _SLACK) // 2
    return WeightsError(f"weights file far too long: {what} exceed the limit of {limit} bytes, while the cfg "
                        f"needs {needed} (a weights file for another cfg, or not a weights file at all?)",
                        file=str(path))


def read_weights_bytes(path: Union[str, Path], limit: Optional[int] = None) -> bytes:
    """The (decompressed) file content; a file holding more than ``limit`` bytes is refused without reading
    (or decompressing) all of it."""
    with open_input(path, WeightsError, "weights file") as f:
        data = f.read(6)
        compressed = data == b"\xfd7zXZ\x00" or data[:2] == b"\x1f\x8b"
        if limit is not None and not compressed:
            size = os.fstat(f.fileno()).st_size
            if size > limit:
                raise _too_long(path, limit, size)
        # bounded read too: a device or pipe (/dev/zero) has no size to check
        data += f.read(-1 if limit is None or compressed else limit + 1 - len(data))
        if limit is not None and not compressed and len(data) > limit:
            raise _too_long(path, limit)
    try:
        if limit is None:
            if data[:6] == b"\xfd7zXZ\x00":
                return lzma.decompress(data)
            if data[:2] == b"\x1f\x8b":
                return gzip.decompress(data)
            return data
        if data[:6] == b"\xfd7zXZ\x00":
            d = lzma.LZMADecompressor()
            out = d.decompress(data, limit + 1)
        elif data[:2] == b"\x1f\x8b":
            d = zlib.decompressobj(wbits=31)
            out = d.decompress(data, limit + 1)
        else:
            return data
        if len(out) > limit:
            raise _too_long(path, limit)
        if not d.eof:
            raise WeightsError("corrupt compressed weights file: truncated", file=str(path))
        return out
    except (lzma.LZMAError, zlib.error, OSError, EOFError) as e:
        raise WeightsError(f"corrupt compressed weights file: {e}", file=str(path)) from None


def read_weights(path: Union[str, Path], graph: Graph, *, upto: Optional[int] = None,
                 allow_short: bool = False) -> WeightsFile:
    """Read ``path`` for ``graph``; ``upto`` loads only layers [0, upto) (Darknet's partial)."""
    # a full load needs exactly header + params floats: refuse a far bigger file (a video, another network's
    # 250 MB weights) before reading it all; smaller mismatches get parse_weights' precise message
    needed = 20 + 4 * sum(layer.params for layer in graph.layers if not layer.dontload)
    limit = None if upto is not None else 2 * needed + _SLACK
    data = read_weights_bytes(path, limit)
    return parse_weights(data, graph, file=str(path), upto=upto, allow_short=allow_short)


def parse_weights(data: bytes, graph: Graph, *, file: str = "<weights>", upto: Optional[int] = None,
                  allow_short: bool = False) -> WeightsFile:
    if len(data) < 16:
        raise WeightsError(f"file is {len(data)} bytes, shorter than a Darknet weights header (16 or 20 bytes)",
                           file=file)
    major, minor, revision = (int(v) for v in np.frombuffer(data, "<i4", 3))
    header = WeightsHeader(major, minor, revision)
    if major < 0 or minor < 0 or (major > 1000 and major not in range(1000, 100000)):
        raise WeightsError(f"bad header (major={major}, minor={minor}, revision={revision}): not a Darknet "
                           "weights file", file=file, offset=0)
    wide = header.seen_is_64bit(graph.dialect)
    if wide and len(data) < 20:
        raise WeightsError("file ends inside the 20-byte header", file=file, offset=len(data))
    header.seen = int(np.frombuffer(data, "<u8" if wide else "<u4", 1, 12)[0])
    offset = 20 if wide else 16
    floats = np.frombuffer(data, "<f4", (len(data) - offset) // 4, offset)
    if (len(data) - offset) % 4:
        raise WeightsError(f"file size {len(data)} leaves {(len(data) - offset) % 4} stray bytes after the "
                           "header: not a whole number of float32 values", file=file)
    stop = len(graph.layers) if upto is None else min(upto, len(graph.layers))
    expected = sum(layer.params for layer in graph.layers[:stop] if not layer.dontload)
    pos = 0
    out = WeightsFile(header)
    for layer in graph.layers[:stop]:
        arrays: Weights = {}
        for name, shape in ([] if layer.dontload else layer.weight_arrays()):
            n = int(np.prod(shape))
            if pos + n > len(floats):
                if allow_short:
                    break
                raise WeightsError(
                    f"weights file too short: ran out at layer {layer.index} [{layer.type}] "
                    f"({layer.section.file}:{layer.section.line}) array '{name}' {tuple(shape)}; the cfg needs "
                    f"{expected} floats, the file holds {len(floats)} (a weights file for another cfg, or "
                    f"truncated?)", file=file, offset=offset + 4 * pos)
            arrays[name] = floats[pos:pos + n].reshape(shape).copy()
            pos += n
        out.layers.append(layer.weights_from_file(arrays, header))
    if upto is None and pos != len(floats):
        raise WeightsError(
            f"weights file too long: the cfg needs {expected} floats but the file holds {len(floats)} "
            f"({len(floats) - pos} left over; a weights file for another cfg, or a different width/classes?)",
            file=file, offset=offset + 4 * pos)
    while len(out.layers) < len(graph.layers):
        out.layers.append({})
    return out


def weights_bytes(wf: WeightsFile, graph: Graph) -> bytes:
    """Serialise exactly as Darknet's save_weights (arrays in each layer's file order)."""
    h = wf.header
    parts = [np.asarray([h.major, h.minor, h.revision], "<i4").tobytes(),
             np.asarray([h.seen], "<u8" if h.seen_is_64bit(graph.dialect) else "<u4").tobytes()]
    for layer, arrays in zip(graph.layers, wf.layers):
        arrays = layer.weights_to_file(arrays, h)
        for name, shape in ([] if layer.dontload else layer.weight_arrays()):
            if name in arrays:
                parts.append(np.ascontiguousarray(arrays[name], "<f4").tobytes())
    return b"".join(parts)


def write_weights(path: Union[str, Path], wf: WeightsFile, graph: Graph) -> None:
    atomic_write_bytes(path, weights_bytes(wf, graph))
