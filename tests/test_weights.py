"""darkcsp.weights: Darknet's .weights layout on tiny hand-counted cfgs, and every way a file can misfit its cfg."""
from __future__ import annotations

import gzip
import lzma
import struct

import numpy as np
import pytest

import darkcsp
from darkcsp.errors import WeightsError
from darkcsp.graph import load_graph
from darkcsp.weights import WeightsHeader, parse_weights, read_weights, weights_bytes, write_weights

from tests.conftest import write_cfg

# conv0: 2 filters 1x1 on 1 channel, no BN: biases[2], weights[2][1][1][1] -> 4 floats
# conv1: 3 filters 1x1 on 2 channels, BN: biases[3], scales[3], mean[3], var[3], weights[3][2][1][1] -> 18 floats
CFG = """
[net]
width=2
height=2
channels=1

[convolutional]
filters=2
size=1
stride=1
activation=linear

[convolutional]
batch_normalize=1
filters=3
size=1
stride=1
activation=linear
"""
NEEDED = 4 + 18


@pytest.fixture
def graph(tmp_path):
    return load_graph(write_cfg(tmp_path, CFG))


def header(major=0, minor=2, revision=5, seen=7) -> bytes:
    wide = major * 10 + minor >= 2
    return struct.pack("<iii", major, minor, revision) + struct.pack("<Q" if wide else "<I", seen)


def body(n: int) -> bytes:
    return np.arange(n, dtype="<f4").tobytes()


def test_params_hand_counted(graph):
    assert [l.params for l in graph.layers] == [4, 18]
    assert graph.params_total == NEEDED


def test_layout_in_darknet_order(graph):
    wf = parse_weights(header() + body(NEEDED), graph)
    assert wf.header == WeightsHeader(0, 2, 5, 7)
    l0, l1 = wf.layers
    np.testing.assert_array_equal(l0["biases"], [0, 1])
    np.testing.assert_array_equal(l0["weights"].ravel(), [2, 3])
    np.testing.assert_array_equal(l1["biases"], [4, 5, 6])
    np.testing.assert_array_equal(l1["scales"], [7, 8, 9])
    np.testing.assert_array_equal(l1["rolling_mean"], [10, 11, 12])
    np.testing.assert_array_equal(l1["rolling_variance"], [13, 14, 15])
    np.testing.assert_array_equal(l1["weights"].ravel(), np.arange(16, 22))


def test_16_byte_header_when_major10_plus_minor_below_2(graph):
    wf = parse_weights(header(0, 1, 0) + body(NEEDED), graph)
    assert wf.header.seen == 7 and wf.header.nbytes() == 16
    np.testing.assert_array_equal(wf.layers[0]["biases"], [0, 1])


@pytest.mark.parametrize("extra", [1, 100])
def test_too_long_names_file_offset_and_counts(graph, extra):
    with pytest.raises(WeightsError) as e:
        parse_weights(header() + body(NEEDED + extra), graph, file="x.weights")
    msg = str(e.value)
    assert msg.startswith("x.weights") and "too long" in msg
    assert f"byte offset {20 + 4 * NEEDED}" in msg and str(NEEDED) in msg and f"{extra} left over" in msg


@pytest.mark.parametrize("have, layer, array", [(0, 0, "biases"), (3, 0, "weights"), (9, 1, "scales"),
                                                (10, 1, "rolling_mean"),
                                                (NEEDED - 1, 1, "weights")])
def test_too_short_names_layer_array_and_offset(graph, have, layer, array):
    with pytest.raises(WeightsError) as e:
        parse_weights(header() + body(have), graph, file="x.weights")
    msg = str(e.value)
    assert "too short" in msg and f"layer {layer} [convolutional]" in msg and f"'{array}'" in msg
    assert f"needs {NEEDED} floats" in msg and f"holds {have}" in msg
    assert e.value.offset is not None and "byte offset" in msg
    assert ".cfg:" in msg  # the layer's cfg location


def test_stray_bytes(graph):
    with pytest.raises(WeightsError, match="stray bytes"):
        parse_weights(header() + body(NEEDED) + b"\x01\x02", graph)


@pytest.mark.parametrize("data", [b"", b"\x00" * 11, header()[:15]])
def test_shorter_than_header(graph, data):
    with pytest.raises(WeightsError, match="header"):
        parse_weights(data, graph)


def test_file_ends_inside_20_byte_header(graph):
    with pytest.raises(WeightsError, match="20-byte header"):
        parse_weights(header()[:18], graph)


@pytest.mark.parametrize("major, minor", [(-1, 2), (0, -5), (2 ** 31 - 1, 0)])
def test_bad_header(graph, major, minor):
    data = struct.pack("<iii", major, minor, 0) + b"\x00" * 8 + body(NEEDED)
    with pytest.raises(WeightsError) as e:
        parse_weights(data, graph)
    assert "header" in str(e.value) or "too" in str(e.value)


def test_cfg_text_given_as_weights(graph, tmp_path):
    p = tmp_path / "model.weights"
    p.write_text(CFG)
    with pytest.raises(WeightsError) as e:
        read_weights(p, graph)
    assert "model.weights" in str(e.value)


def test_weights_of_another_network(tmp_path, graph):
    other = load_graph(write_cfg(tmp_path, CFG.replace("filters=3", "filters=5"), "other.cfg"))
    p = tmp_path / "other.weights"
    p.write_bytes(header() + body(other.params_total))
    with pytest.raises(WeightsError) as e:
        read_weights(p, graph)
    assert "another cfg" in str(e.value) and "other.weights" in str(e.value)


def test_missing_and_directory(tmp_path, graph):
    with pytest.raises(WeightsError, match="not found"):
        read_weights(tmp_path / "nope.weights", graph)
    with pytest.raises(WeightsError, match="directory"):
        read_weights(tmp_path, graph)


def test_compressed_files(tmp_path, graph):
    raw = header() + body(NEEDED)
    for name, data in (("a.weights.xz", lzma.compress(raw)), ("a.weights.gz", gzip.compress(raw))):
        p = tmp_path / name
        p.write_bytes(data)
        np.testing.assert_array_equal(read_weights(p, graph).layers[1]["weights"].ravel(), np.arange(16, 22))


@pytest.mark.parametrize("kind", ["xz-truncated", "gz-truncated", "gz-corrupt", "xz-magic-only"])
def test_corrupt_compressed_files(tmp_path, graph, kind):
    raw = header() + body(NEEDED)
    data = {"xz-truncated": lzma.compress(raw)[:40], "gz-truncated": gzip.compress(raw)[:30],
            "gz-corrupt": gzip.compress(raw)[:10] + b"\xff" * 40, "xz-magic-only": b"\xfd7zXZ\x00" + b"\x00" * 30}[kind]
    p = tmp_path / "c.weights"
    p.write_bytes(data)
    with pytest.raises(WeightsError, match="corrupt compressed") as e:
        read_weights(p, graph)
    assert "c.weights" in str(e.value)


def test_allow_short_and_upto(graph):
    wf = parse_weights(header() + body(4), graph, allow_short=True)
    assert set(wf.layers[0]) == {"biases", "weights"} and len(wf.layers) == 2
    wf = parse_weights(header() + body(4), graph, upto=1)
    np.testing.assert_array_equal(wf.layers[0]["weights"].ravel(), [2, 3])
    assert wf.layers[1] == {}


def test_write_read_roundtrip_is_byte_identical(tmp_path, graph):
    raw = header(0, 2, 5, 123456789012) + body(NEEDED)
    wf = parse_weights(raw, graph)
    assert weights_bytes(wf, graph) == raw
    p = tmp_path / "out" / "rt.weights"
    write_weights(p, wf, graph)
    assert p.read_bytes() == raw
    assert [q.name for q in p.parent.iterdir()] == ["rt.weights"]  # no temp file left


def test_write_to_unwritable_place_leaves_nothing(tmp_path, graph):
    from darkcsp.errors import ResourceError
    blocker = tmp_path / "file"
    blocker.write_text("x")
    wf = parse_weights(header() + body(NEEDED), graph)
    with pytest.raises(ResourceError) as e:
        write_weights(blocker / "rt.weights", wf, graph)
    assert "rt.weights" in str(e.value)
    assert sorted(q.name for q in tmp_path.iterdir()) == ["file", "net.cfg"]


def test_model_load_reports_weights_errors(tmp_path):
    cfg = write_cfg(tmp_path, CFG)
    p = tmp_path / "short.weights"
    p.write_bytes(header() + body(5))
    with pytest.raises(WeightsError, match="too short"):
        darkcsp.load(cfg, p)


def test_huge_cfg_is_refused_before_random_init(tmp_path, monkeypatch):
    """[connected] output=10^9: 4 GB of weights; refused by the size estimate, nothing allocated."""
    cfg = write_cfg(tmp_path, """
        [net]
        inputs=64
        channels=1
        width=8
        height=8

        [connected]
        output=1000000000
        activation=linear
    """)
    from darkcsp.errors import ResourceError
    with pytest.raises(ResourceError) as e:
        darkcsp.load(cfg)
    assert "net.cfg:7" in str(e.value) and "DARKCSP_MAX_MEMORY_GB" in str(e.value)


def test_far_too_long_file_is_refused_without_reading_it(tmp_path, graph, monkeypatch):
    p = tmp_path / "video.weights"
    with open(p, "wb") as f:  # 64 MB, sparse: cheap to create
        f.write(header())
        f.truncate(64 << 20)
    reads = []
    real_open = open

    def spy(*args, **kwargs):
        fh = real_open(*args, **kwargs)
        real_read = fh.read
        fh.read = lambda n=-1: reads.append(n) or real_read(n)  # record read sizes
        return fh

    monkeypatch.setattr("builtins.open", spy)
    with pytest.raises(WeightsError, match="far too long") as e:
        read_weights(p, graph)
    assert "67108864 bytes" in str(e.value)
    assert -1 not in reads  # never read to the end


@pytest.mark.parametrize("kind", ["xz", "gz"])
def test_compressed_bomb_is_not_fully_decompressed(tmp_path, graph, kind):
    raw = header() + bytes(16 << 20)  # 16 MB of zeros: far more than the ~1 MB allowed for this cfg
    data = lzma.compress(raw, preset=0) if kind == "xz" else gzip.compress(raw, compresslevel=1)
    p = tmp_path / f"bomb.weights.{kind}"
    p.write_bytes(data)
    with pytest.raises(WeightsError, match="far too long: the data exceed the limit"):
        read_weights(p, graph)


def test_partial_load_reads_a_bigger_file(tmp_path, graph):
    """upto= is Darknet's partial load: the file may hold more than the layers read."""
    p = tmp_path / "big.weights"
    p.write_bytes(header() + body(NEEDED + 10_000_000 // 4))
    wf = read_weights(p, graph, upto=1)
    np.testing.assert_array_equal(wf.layers[0]["biases"], [0, 1])
