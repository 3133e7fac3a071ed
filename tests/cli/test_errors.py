"""The CLI's error contract: user mistakes end as one clear line
`darkcsp: error: <file:line [section] option>: <what was expected>` and a distinct exit code per error class:
never a traceback, never a half-written output file."""
from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from darkcsp.cli import main
from darkcsp.errors import CfgError, ImageError, ResourceError, UnsupportedError, WeightsError
from darkcsp.fileio import atomic_path, atomic_write_bytes

from tests.conftest import REPO, cfg_text

#: a valid cfg (conv, route, shortcut, sam, yolo) the tests break one option at a time; L gives its line numbers
BASE = cfg_text("error-base")
# BASE line numbers of interesting options
L = {"width": 2, "filters0": 7, "size0": 8, "stride0": 9, "layers": 21, "from": 24, "sam_from": 34, "mask": 43,
     "route": 20, "conv0": 6}
BASE_PARAMS = (8 + 8 * 3 * 9) + (8 + 8 * 8 * 9) + (16 + 16 * 16) + (21 + 21 * 16)


def sub(text: str, old: str, new: str, count: int = 1) -> str:
    assert text.count(old) >= count, old
    return text.replace(old, new, count)


def cli(argv, capsys):
    """Run the CLI in-process; return (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def error_line(err: str) -> str:
    lines = [l for l in err.splitlines() if l.startswith("darkcsp: error: ")]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    return lines[0][len("darkcsp: error: "):]


def write(tmp_path: Path, name: str, data) -> Path:
    p = tmp_path / name
    p.write_bytes(data if isinstance(data, bytes) else data.encode())
    return p


def header(major=0, minor=2, revision=5) -> bytes:
    return struct.pack("<iiiQ", major, minor, revision, 0)


# ----- cfg mistakes through `darkcsp summary` ----------------------------------------------------------------
def test_base_cfg_is_valid(tmp_path, capsys):
    code, out, err = cli(["summary", "--cfg", write(tmp_path, "net.cfg", BASE), "--json"], capsys)
    assert code == 0, err
    import json
    assert json.loads(out)["params_total"] == BASE_PARAMS


CFG_CASES = {
    # id: (cfg bytes/text, error class, line or None, words in the message)
    "empty": (b"", CfgError, None, ["empty"]),
    "blank": (b"\n  \n\t\n", CfgError, None, ["empty"]),
    "comments-only": ("# nothing\n;\n", CfgError, None, ["no sections", "[net]"]),
    "no-net": (BASE.replace("[net]", "[convolutional]", 1), CfgError, 1, ["first section must be [net]"]),
    "net-only": ("[net]\nwidth=8\nheight=8\nchannels=3\n", CfgError, 1, ["no layers"]),
    "net-twice": (BASE + "\n[net]\nwidth=8\n", CfgError, 48, ["[net] may appear only once"]),
    "garbage": (bytes(range(1, 32)) * 50, CfgError, None, ["binary"]),
    "weights-as-cfg": (header() + np.zeros(100, "<f4").tobytes(), CfgError, None, ["binary", "NUL"]),
    "png-as-cfg": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200), CfgError, None, ["binary"]),
    "bom": (b"\xef\xbb\xbf" + BASE.encode(), CfgError, 1, ["byte-order mark"]),
    "no-input-size": (sub(sub(BASE, "width=16", "width=0"), "height=16", "height=0"), CfgError, 1,
                      ["No input parameters"]),
    "negative-width": (sub(BASE, "width=16", "width=-16"), CfgError, None, ["width=-16", "positive"]),
    "filters-0": (sub(BASE, "filters=8", "filters=0"), CfgError, L["filters0"], ["filters=0", "option 'filters'"]),
    "filters-neg": (sub(BASE, "filters=8", "filters=-3"), CfgError, L["filters0"], ["filters=-3"]),
    "size-0": (sub(BASE, "size=3", "size=0"), CfgError, L["size0"], ["size=0", "option 'size'"]),
    "stride-0": (sub(BASE, "stride=1", "stride=0"), CfgError, L["stride0"], ["stride", "option 'stride'"]),
    "filters-text": (sub(BASE, "filters=8", "filters=8x"), CfgError, L["filters0"], ["expected an integer", "8x"]),
    "size-inf": (sub(BASE, "size=3", "size=1e400"), CfgError, L["size0"], ["expected an integer"]),
    "route-forward": (sub(BASE, "layers=-1,-2", "layers=-1,5"), CfgError, L["layers"],
                      ["layers=5", "later layer", "option 'layers'"]),
    "route-self": (sub(BASE, "layers=-1,-2", "layers=2"), CfgError, L["layers"], ["itself"]),
    "route-before-0": (sub(BASE, "layers=-1,-2", "layers=-1,-9"), CfgError, L["layers"], ["layers=-9"]),
    "route-trailing-comma": (sub(BASE, "layers=-1,-2", "layers=-1,"), CfgError, L["layers"], ["trailing comma"]),
    "shortcut-forward": (sub(BASE, "from=-3", "from=7"), CfgError, L["from"], ["from=7", "option 'from'"]),
    "shortcut-self": (sub(BASE, "from=-3", "from=3"), CfgError, L["from"], ["itself"]),
    "shortcut-out-of-range": (sub(BASE, "from=-3", "from=-30"), CfgError, L["from"], ["from=-30"]),
    "sam-forward": (sub(BASE, "from=-2", "from=9"), CfgError, L["sam_from"], ["from=9", "option 'from'"]),
    "sam-self": (sub(BASE, "from=-2", "from=0\n", 1).replace("[sam]\nfrom=0", "[sam]\nfrom=5"), CfgError,
                 L["sam_from"], ["itself"]),
    "route-groups": (sub(BASE, "layers=-1,-2", "layers=-1,-2\ngroups=3"), CfgError, L["layers"] + 1,
                     ["groups=3", "option 'groups'"]),
    "conv-groups": (sub(BASE, "filters=8\nsize=3", "filters=8\ngroups=2\nsize=3"), CfgError, L["filters0"] + 1,
                    ["groups=2", "option 'groups'"]),
    "mask-beyond-anchors": (sub(BASE, "mask=0,1,2", "mask=0,1,3"), CfgError, L["mask"], ["mask", "3"]),
    "unknown-section": (sub(BASE, "[sam]", "[samm]"), CfgError, 33,
                        ["unknown layer type [samm]", "did you mean [sam]?"]),
    "unsupported-section": (sub(BASE, "[sam]\nfrom=-2", "[lstm]\noutput=4"), UnsupportedError, 33, ["lstm"]),
    "option-before-section": ("width=3\n" + BASE, CfgError, 1, ["before the first [section]"]),
    "malformed-header": (sub(BASE, "[route]", "[route] # concat"), CfgError, L["route"], ["malformed section"]),
    "no-equals": (sub(BASE, "stride=1", "stride 1"), CfgError, L["stride0"], ["expected key=value"]),
    "huge-width": (sub(sub(BASE, "width=16", "width=100000"), "height=16", "height=100000"), ResourceError,
                   L["conv0"], ["GiB", "DARKCSP_MAX_MEMORY_GB"]),
    "huge-filters": (sub(BASE, "filters=8", "filters=1000000000"), ResourceError, L["conv0"], ["GiB"]),
}


@pytest.mark.parametrize("case", sorted(CFG_CASES))
def test_cfg_mistakes(tmp_path, capsys, case):
    data, cls, line, words = CFG_CASES[case]
    p = write(tmp_path, "bad.cfg", data)
    code, out, err = cli(["summary", "--cfg", p], capsys)
    assert code == cls.exit_code, err
    msg = error_line(err)
    assert re.match(re.escape(str(p)) + (f":{line}[ :]" if line is not None else "[ :]"), msg), msg
    for w in words:
        assert w in msg, (w, msg)
    assert out == ""


def test_cfg_missing_file_and_directory(tmp_path, capsys):
    code, _, err = cli(["summary", "--cfg", tmp_path / "nope.cfg"], capsys)
    assert code == CfgError.exit_code and "nope.cfg: cfg file not found" in error_line(err)
    code, _, err = cli(["summary", "--cfg", tmp_path], capsys)
    assert code == CfgError.exit_code and "directory" in error_line(err)


def test_non_utf8_cfg_warns_with_line_and_works(tmp_path, capsys, caplog):
    p = write(tmp_path, "l1.cfg", BASE.replace("[route]", "# r\xe9sum\xe9\n[route]").encode("latin-1"))
    code, out, err = cli(["summary", "--cfg", p], capsys)
    assert code == 0, err
    assert f"{p}:20" in caplog.text and "UTF-8" in caplog.text


def test_duplicate_key_first_wins_and_warning_names_both_lines(tmp_path, capsys, caplog):
    p = write(tmp_path, "dup.cfg", sub(BASE, "filters=8\nsize=3", "filters=8\nsize=3\nfilters=4"))
    code, out, err = cli(["summary", "--cfg", p, "--json"], capsys)
    assert code == 0, err
    import json
    assert json.loads(out)["layers"][0]["out_shape"][0] == 8  # the first 'filters' wins, as in Darknet
    warn = [r.getMessage() for r in caplog.records if "duplicate" in r.getMessage()]
    assert len(warn) == 1 and f"{p}:9" in warn[0] and "line 7" in warn[0] and "filters" in warn[0], warn


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(CfgError):
        main(["summary", "--debug", "--cfg", str(tmp_path / "nope.cfg")])


def test_no_traceback_for_user_mistakes_subprocess(tmp_path):
    """The installed entry point (python -m darkcsp) prints one line, no traceback, for typical mistakes."""
    bad = write(tmp_path, "bad.cfg", sub(BASE, "layers=-1,-2", "layers=-1,5"))
    good = write(tmp_path, "good.cfg", BASE)
    short = write(tmp_path, "short.weights", header() + bytes(40))
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 3, 16, 16), np.float32))
    commands = [
        (["summary", "--cfg", bad], CfgError),
        (["summary", "--cfg", tmp_path / "missing.cfg"], CfgError),
        (["run", "--cfg", good, "--weights", short, "--input", x, "--out", tmp_path / "o.npz"], WeightsError),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for argv, cls in commands:
        r = subprocess.run([sys.executable, "-m", "darkcsp"] + [str(a) for a in argv], capture_output=True,
                           text=True, timeout=120, env=env)
        assert r.returncode == cls.exit_code, (argv, r.stderr)
        assert "Traceback" not in r.stderr and r.stderr.count("darkcsp: error: ") == 1, r.stderr
    assert not (tmp_path / "o.npz").exists()


# ----- weights mistakes through `darkcsp run` and `darkcsp convert` ------------------------------------------
@pytest.fixture
def net(tmp_path):
    cfg = write(tmp_path, "net.cfg", BASE)
    x = tmp_path / "x.npy"
    np.save(x, np.random.default_rng(0).random((1, 3, 16, 16), dtype=np.float32))
    return cfg, x


WEIGHTS_CASES = {
    "short": (header() + bytes(4 * (BASE_PARAMS - 1)), ["too short", "layer 6 [convolutional]", "byte offset"]),
    "long": (header() + bytes(4 * (BASE_PARAMS + 3)),
             ["too long", "3 left over", f"byte offset {20 + 4 * BASE_PARAMS}"]),
    "empty": (b"", ["0 bytes", "header"]),
    "stray-bytes": (header() + bytes(4 * BASE_PARAMS + 2), ["stray bytes"]),
    "bad-header": (struct.pack("<iii", -7, 2, 0) + bytes(8 + 4 * BASE_PARAMS), ["bad header", "major=-7"]),
    "other-network": (header() + bytes(4 * 8858734), ["too long", "another cfg"]),
    "cfg-as-weights": (BASE.encode(), ["weights"]),
    "corrupt-xz": (b"\xfd7zXZ\x00" + bytes(100), ["corrupt compressed"]),
}


@pytest.mark.parametrize("case", sorted(WEIGHTS_CASES))
def test_weights_mistakes_run(tmp_path, capsys, net, case):
    cfg, x = net
    data, words = WEIGHTS_CASES[case]
    w = write(tmp_path, "bad.weights", data)
    out_npz = tmp_path / "out" / "o.npz"
    code, out, err = cli(["run", "--cfg", cfg, "--weights", w, "--input", x, "--out", out_npz], capsys)
    assert code == WeightsError.exit_code, err
    msg = error_line(err)
    assert msg.startswith(str(w)), msg
    for word in words:
        assert word in msg, (word, msg)
    assert not out_npz.exists() and not (out_npz.parent.exists() and any(out_npz.parent.iterdir()))


def test_weights_missing_run(tmp_path, capsys, net):
    cfg, x = net
    code, _, err = cli(["run", "--cfg", cfg, "--weights", tmp_path / "no.weights", "--input", x, "--out",
                        tmp_path / "o.npz"], capsys)
    assert code == WeightsError.exit_code and "no.weights: weights file not found" in error_line(err)
    assert not (tmp_path / "o.npz").exists()


def test_weights_mistake_convert_writes_nothing(tmp_path, capsys, net):
    cfg, _ = net
    w = write(tmp_path, "bad.weights", WEIGHTS_CASES["short"][0])
    onnx_path = tmp_path / "m.onnx"
    code, _, err = cli(["convert", "--cfg", cfg, "--weights", w, "-o", onnx_path], capsys)
    assert code == WeightsError.exit_code and "too short" in error_line(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.weights", "net.cfg", "x.npy"]


def test_cfg_mistake_convert(tmp_path, capsys):
    cfg = write(tmp_path, "bad.cfg", sub(BASE, "from=-3", "from=7"))
    code, _, err = cli(["convert", "--cfg", cfg, "-o", tmp_path / "m.onnx"], capsys)
    assert code == CfgError.exit_code and f"{cfg}:{L['from']}" in error_line(err)
    assert not (tmp_path / "m.onnx").exists()


def test_run_bad_input_file(tmp_path, capsys, net):
    cfg, _ = net
    for name, data in (("missing.npy", None), ("text.npy", b"hello"), ("empty.npy", b""), ("shape.npy", "shape"),
                       ("arch.npz", "npz"), ("str.npy", "str"), ("fake.npy", "fake")):
        p = tmp_path / name
        if data == "shape":
            np.save(p, np.zeros((1, 3, 8, 8), np.float32))
        elif data == "npz":
            with open(p, "wb") as f:
                np.savez(f, x=np.zeros((1, 3, 16, 16), np.float32))
        elif data == "str":
            np.save(p, np.full((1, 3, 16, 16), "a"))
        elif data == "fake":  # a header claiming 1.1 TB of data: must not be allocated
            import io
            from numpy.lib import format as npformat
            buf = io.BytesIO()
            npformat.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (100, 3, 32000, 32000)})
            p.write_bytes(buf.getvalue() + bytes(1000))
        elif data is not None:
            p.write_bytes(data)
        code, _, err = cli(["run", "--cfg", cfg, "--input", p, "--out", tmp_path / "o.npz"], capsys)
        assert code != 0 and str(p) in error_line(err), err
    assert not (tmp_path / "o.npz").exists()


# ----- unwritable outputs ------------------------------------------------------------------------------------
def unwritable(tmp_path: Path) -> Path:
    """A folder nobody can create: its parent is a regular file (works as root too)."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    return blocker / "sub"


def test_run_unwritable_output_folder(tmp_path, capsys, net):
    cfg, x = net
    out_npz = unwritable(tmp_path) / "o.npz"
    code, _, err = cli(["run", "--cfg", cfg, "--input", x, "--out", out_npz], capsys)
    assert code == ResourceError.exit_code, err
    assert str(out_npz) in error_line(err) and "cannot write" in error_line(err)


def test_convert_unwritable_output_folder(tmp_path, capsys, net):
    cfg, _ = net
    out = unwritable(tmp_path) / "m.onnx"
    code, _, err = cli(["convert", "--cfg", cfg, "--no-verify", "-o", out], capsys)
    assert code == ResourceError.exit_code, err
    assert str(out) in error_line(err)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_run_read_only_output_folder(tmp_path, capsys, net):
    cfg, x = net
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        code, _, err = cli(["run", "--cfg", cfg, "--input", x, "--out", ro / "o.npz"], capsys)
        assert code == ResourceError.exit_code and "ro" in error_line(err)
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o700)


# ----- atomic outputs ------------------------------------------------------------------------------------------
def test_atomic_path_failure_leaves_nothing_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "out.onnx"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("failed half way")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.onnx"]


def test_atomic_path_interrupt_leaves_nothing(tmp_path):
    target = tmp_path / "out.npz"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_creates_parents_and_replaces(tmp_path):
    target = tmp_path / "a" / "b" / "c.json"
    atomic_write_bytes(target, b"1")
    atomic_write_bytes(target, b"2")
    assert target.read_bytes() == b"2" and [p.name for p in target.parent.iterdir()] == ["c.json"]


def test_atomic_write_unwritable(tmp_path):
    with pytest.raises(ResourceError) as e:
        atomic_write_bytes(unwritable(tmp_path) / "x.json", b"{}")
    assert "x.json" in str(e.value) and e.value.exit_code == ResourceError.exit_code


def test_interrupted_run_leaves_no_output(tmp_path, capsys, net, monkeypatch):
    """Ctrl-C while the .npz is being written: exit 130, no file, no temp file."""
    cfg, x = net
    import numpy
    real = numpy.savez

    def interrupted(f, **arrays):
        real(f, **arrays)
        raise KeyboardInterrupt

    monkeypatch.setattr(numpy, "savez", interrupted)
    out_dir = tmp_path / "out"
    code, _, err = cli(["run", "--cfg", cfg, "--input", x, "--out", out_dir / "o.npz"], capsys)
    assert code == 130 and "interrupted" in err
    assert not out_dir.exists() or list(out_dir.iterdir()) == []


def test_no_python_exception_names_in_messages(tmp_path, capsys):
    """Messages are written for users: no 'ValueError', 'KeyError', 'NoneType' leaking through."""
    msgs = []
    for case in ("stride-0", "route-forward", "garbage", "mask-beyond-anchors", "conv-groups"):
        p = write(tmp_path, f"{case}.cfg", CFG_CASES[case][0])
        code, _, err = cli(["summary", "--cfg", p], capsys)
        msgs.append(error_line(err))
    for m in msgs:
        assert not re.search(r"(Error|Exception|NoneType|Traceback)\b", m.split(": ", 1)[1]), m


# ----- images: darkcsp.image and `darkcsp detect` ------------------------------------------------------------
DETECT_CFG = cfg_text("tiny-detector")


def _png_header_only(w: int, h: int) -> bytes:
    """A PNG that claims w x h pixels (one row of data): decoding it would allocate w*h*3 bytes."""
    import zlib

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    data = zlib.compress(b"\x00" * (1 + 3 * w))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", data) + chunk(b"IEND", b""))


@pytest.fixture
def images(tmp_path):
    import cv2
    rng = np.random.default_rng(0)
    d = tmp_path / "img"
    d.mkdir()
    cv2.imwrite(str(d / "rgb.png"), rng.integers(0, 255, (20, 30, 3), dtype=np.uint8))
    cv2.imwrite(str(d / "gray.png"), rng.integers(0, 255, (20, 30), dtype=np.uint8))
    cv2.imwrite(str(d / "gray16.png"), rng.integers(0, 65535, (20, 30), dtype=np.uint16))
    cv2.imwrite(str(d / "rgb16.png"), rng.integers(0, 65535, (20, 30, 3), dtype=np.uint16))
    cv2.imwrite(str(d / "rgba.png"), rng.integers(0, 255, (20, 30, 4), dtype=np.uint8))
    cv2.imwrite(str(d / "photo.jpg"), rng.integers(0, 255, (20, 30, 3), dtype=np.uint8))
    (d / "zero.jpg").write_bytes(b"")
    (d / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(100))
    (d / "truncated.png").write_bytes((d / "rgb.png").read_bytes()[:300])
    (d / "text.png").write_text("not an image")
    (d / "huge.png").write_bytes(_png_header_only(100000, 100000))
    (d / "big.png").write_bytes(_png_header_only(20000, 20000))
    # a valid 30x20 PNG whose IDAT length says 3.8 GB: OpenCV would allocate that before failing
    png = bytearray((d / "rgb.png").read_bytes())
    idat = png.find(b"IDAT") - 4
    png[idat:idat + 4] = struct.pack(">I", 3875537166)
    (d / "chunkbomb.png").write_bytes(bytes(png))
    return d


@pytest.mark.parametrize("name", ["rgb.png", "gray.png", "gray16.png", "rgb16.png", "rgba.png", "photo.jpg"])
def test_load_image_formats_become_rgb_float(images, name):
    from darkcsp.image import load_image
    im = load_image(images / name)
    assert im.shape == (3, 20, 30) and im.dtype == np.float32
    assert 0.0 <= im.min() and im.max() <= 1.0


def test_load_image_values_are_darknets_bytes_over_255(images):
    """gray: replicated to RGB; 16-bit: the high byte (stb_image's v >> 8); RGBA: alpha dropped."""
    import cv2
    from darkcsp.image import load_image
    g = cv2.imread(str(images / "gray.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(load_image(images / "gray.png"), np.stack([g / 255.0] * 3).astype(np.float32))
    g16 = cv2.imread(str(images / "gray16.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(load_image(images / "gray16.png")[0], ((g16 >> 8) / 255.0).astype(np.float32))
    bgra = cv2.imread(str(images / "rgba.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(load_image(images / "rgba.png"),
                                  (bgra[:, :, 2::-1].transpose(2, 0, 1) / 255.0).astype(np.float32))


@pytest.mark.parametrize("name, words", [("zero.jpg", ["empty", "0 bytes"]), ("corrupt.jpg", ["cannot decode"]),
                                         ("truncated.png", ["truncated", "the file ends at 300"]),
                                         ("text.png", ["cannot decode"]),
                                         ("chunkbomb.png", ["claims 3875537166 bytes"]),
                                         ("missing.png", ["not found"]), ("huge.png", ["100000 x 100000"]),
                                         ("big.png", ["20000 x 20000", "DARKCSP_MAX_IMAGE_PIXELS"])])
def test_load_image_errors(images, name, words):
    from darkcsp.image import load_image
    with pytest.raises(ImageError) as e:
        load_image(images / name)
    assert str(e.value).startswith(str(images / name))
    for w in words:
        assert w in str(e.value)


def test_load_image_pixel_limit_is_configurable(images, monkeypatch):
    from darkcsp.image import load_image
    monkeypatch.setenv("DARKCSP_MAX_IMAGE_PIXELS", "100")
    with pytest.raises(ImageError, match="30 x 20 pixels"):
        load_image(images / "rgb.png")


def detect(argv, capsys, tmp_path):
    cfg = write(tmp_path, "det.cfg", DETECT_CFG)
    return cli(["detect", "--cfg", cfg, "--backend", "numpy", "--thresh", "0.99"] + list(argv), capsys)


@pytest.mark.parametrize("name", ["zero.jpg", "corrupt.jpg", "truncated.png", "huge.png", "missing.png",
                                  "chunkbomb.png"])
def test_detect_bad_image(images, tmp_path, capsys, name):
    out = tmp_path / "out"
    code, _, err = detect([images / name, "--out", out, "--json"], capsys, tmp_path)
    assert code == ImageError.exit_code, err
    assert "Traceback" not in err
    msg = error_line(err)
    assert msg.startswith(str(images / name)), msg
    assert not out.exists() or not any(p.name.startswith(".") or p.suffix in (".png", ".jpg") for p in out.iterdir())


@pytest.mark.parametrize("name", ["gray.png", "gray16.png", "rgb16.png", "rgba.png"])
def test_detect_unusual_but_valid_images(images, tmp_path, capsys, name):
    out = tmp_path / "out"
    code, _, err = detect([images / name, "--out", out], capsys, tmp_path)
    assert code == 0, err
    assert (out / name).exists() and [p.name for p in out.iterdir()] == [name]


def test_detect_mixed_inputs_reports_bad_ones_and_fails(images, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = detect([images / "rgb.png", images / "corrupt.jpg", "--out", out], capsys, tmp_path)
    assert code == ImageError.exit_code
    assert str(images / "corrupt.jpg") in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["rgb.png"]  # the good one, nothing partial


def test_detect_unwritable_output(images, tmp_path, capsys):
    out = unwritable(tmp_path)
    code, _, err = detect([images / "rgb.png", "--out", out], capsys, tmp_path)
    assert code == ResourceError.exit_code, err
    assert "is a file, not a folder" in error_line(err)
    code, _, err = detect([images / "rgb.png", "--no-save", "--json-file", out / "d.json"], capsys, tmp_path)
    assert code == ResourceError.exit_code, err
    assert str(out / "d.json") in error_line(err)


def test_detect_bad_cfg_and_weights(images, tmp_path, capsys):
    bad = write(tmp_path, "bad.cfg", sub(DETECT_CFG, "mask = 3,4,5", "mask = 3,4,7"))  # num=6 anchors
    code, _, err = cli(["detect", "--cfg", bad, "--backend", "numpy", images / "rgb.png", "--no-save"], capsys)
    assert code == CfgError.exit_code and f"{bad}:34" in error_line(err)
    cfg = write(tmp_path, "det.cfg", DETECT_CFG)
    w = write(tmp_path, "short.weights", header() + bytes(40))
    code, _, err = cli(["detect", "--cfg", cfg, "--weights", w, "--backend", "numpy", images / "rgb.png",
                        "--out", tmp_path / "o"], capsys)
    assert code == WeightsError.exit_code and "too short" in error_line(err)
    assert not (tmp_path / "o").exists()


def test_out_of_memory_is_a_resource_error_without_traceback(tmp_path, capsys, monkeypatch):
    import darkcsp.cli.summary as summary

    def boom(args):
        raise MemoryError("Unable to allocate 300. GiB")

    monkeypatch.setattr(summary, "run", boom)
    code, _, err = cli(["summary", "--cfg", write(tmp_path, "net.cfg", BASE)], capsys)
    assert code == ResourceError.exit_code and "out of memory" in error_line(err)


def test_broken_pipe_exits_quietly(tmp_path):
    """`darkcsp summary ... | head -1`: no BrokenPipeError traceback when the reader goes away."""
    big = BASE + "".join("\n[maxpool]\nsize=1\nstride=1\n" for _ in range(3000))
    cfg = write(tmp_path, "big.cfg", big)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.Popen([sys.executable, "-m", "darkcsp", "summary", "--cfg", str(cfg)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env)
    p.stdout.readline()
    p.stdout.close()  # the reader goes away
    err = p.stderr.read().decode()
    p.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


@pytest.mark.parametrize("command", ["run", "convert", "detect"])
@pytest.mark.parametrize("case", sorted(CFG_CASES))
def test_cfg_mistakes_other_commands(tmp_path, capsys, case, command):
    """The same cfg mistakes through run/convert/detect: same message and exit code, no output file."""
    data, cls, line, words = CFG_CASES[case]
    p = write(tmp_path, "bad.cfg", data)
    out = tmp_path / "out"
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 3, 16, 16), np.float32))
    img = tmp_path / "i.png"
    import cv2
    cv2.imwrite(str(img), np.zeros((8, 8, 3), np.uint8))
    argv = {"run": ["run", "--cfg", p, "--input", x, "--out", out / "o.npz"],
            "convert": ["convert", "--cfg", p, "-o", out / "m.onnx"],
            "detect": ["detect", "--cfg", p, "--backend", "numpy", img, "--out", out, "--json"]}[command]
    code, _, err = cli(argv, capsys)
    assert code == cls.exit_code, err
    msg = error_line(err)
    assert re.match(re.escape(str(p)) + (f":{line}[ :]" if line is not None else "[ :]"), msg), msg
    for w in words:
        assert w in msg, (w, msg)
    assert not out.exists() or list(out.iterdir()) == []


@pytest.mark.parametrize("size", ["0", "-5"])
def test_bad_size_override_names_the_flag_not_the_cfg(tmp_path, capsys, size):
    code, _, err = cli(["summary", "--cfg", write(tmp_path, "net.cfg", BASE), "--width", size], capsys)
    assert code == CfgError.exit_code and error_line(err).startswith(f"--width {size}")


def test_huge_size_override_is_refused_before_allocating(tmp_path, capsys, net):
    cfg, x = net
    code, _, err = cli(["run", "--cfg", cfg, "--input", x, "--out", tmp_path / "o.npz", "--width", "100000",
                        "--height", "100000"], capsys)
    assert code == ResourceError.exit_code and "DARKCSP_MAX_MEMORY_GB" in error_line(err)
    assert not (tmp_path / "o.npz").exists()


def test_memory_limit_is_configurable(tmp_path, capsys, monkeypatch):
    cfg = write(tmp_path, "net.cfg", BASE)
    monkeypatch.setenv("DARKCSP_MAX_MEMORY_GB", "0.0001")  # ~100 kB: BASE needs more
    code, _, err = cli(["summary", "--cfg", cfg], capsys)
    assert code == ResourceError.exit_code and "0.0001 GiB" in error_line(err)


def test_reference_from_layer_0(tmp_path, capsys):
    p = write(tmp_path, "r.cfg", "[net]\nwidth=8\nheight=8\nchannels=3\n\n[route]\nlayers=-1\n")
    code, _, err = cli(["summary", "--cfg", p], capsys)
    assert code == CfgError.exit_code
    assert error_line(err).startswith(f"{p}:7 [route] option 'layers'") and "no earlier layer" in err


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_endless_files_do_not_hang(tmp_path, capsys, net):
    """A device that never ends (/dev/zero) given as cfg, weights or image: a bounded read and an error."""
    cfg, x = net
    code, _, err = cli(["summary", "--cfg", "/dev/zero"], capsys)
    assert code == CfgError.exit_code and "not a Darknet cfg" in error_line(err)
    code, _, err = cli(["run", "--cfg", cfg, "--weights", "/dev/zero", "--input", x, "--out", tmp_path / "o.npz"],
                       capsys)
    assert code == WeightsError.exit_code and "far too long" in error_line(err)
    from darkcsp.image import load_image
    import darkcsp.image
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(darkcsp.image, "MAX_IMAGE_BYTES", 1 << 20)
        with pytest.raises(ImageError, match="too large for an image file"):
            load_image("/dev/zero")
    img = tmp_path / "i.png"
    import cv2
    cv2.imwrite(str(img), np.zeros((8, 8, 3), np.uint8))
    code, _, err = detect([img, "--names", "/dev/zero", "--no-save"], capsys, tmp_path)
    assert code != 0 and "not a class names file" in error_line(err)


def test_output_path_is_an_existing_folder(tmp_path, capsys, net):
    cfg, x = net
    target = tmp_path / "o.npz"
    target.mkdir()
    code, _, err = cli(["run", "--cfg", cfg, "--input", x, "--out", target], capsys)
    assert code == ResourceError.exit_code and str(target) in error_line(err)
    assert list(target.iterdir()) == [] and not [p for p in tmp_path.iterdir() if p.name.startswith(".o.")]


@pytest.mark.parametrize("kind", ["maxpool", "local_avgpool"])
def test_huge_pooling_window_is_fast_and_exact(tmp_path, kind):
    """size=901 on an 8x8 map (Darknet: padding 900, windows cover the whole map): every output is the
    channel's max / mean over the valid cells; computed in far less than size^2 steps."""
    import time
    import darkcsp
    cfg = write(tmp_path, "p.cfg", f"[net]\nwidth=8\nheight=8\nchannels=3\n\n[{kind}]\nsize=901\nstride=1\n")
    model = darkcsp.load(cfg)
    x = np.random.default_rng(0).random((1, 3, 8, 8), dtype=np.float32)
    t = time.process_time()
    y = model.forward(x)[0]
    assert time.process_time() - t < 2.0
    want = x.max(axis=(2, 3)) if kind == "maxpool" else x.astype(np.float64).mean(axis=(2, 3))
    assert y.shape == (1, 3, 8, 8)
    np.testing.assert_allclose(y, np.broadcast_to(want[:, :, None, None], y.shape), rtol=1e-6)
