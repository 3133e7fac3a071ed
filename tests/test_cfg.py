"""darkcsp.cfg: Darknet's line reader quirks and every way a cfg file can be unreadable (clear CfgErrors)."""
from __future__ import annotations

import logging

import pytest

from darkcsp.cfg import parse_cfg_text, read_cfg
from darkcsp.errors import CfgError

from tests.conftest import write_cfg


def one(text: str, name: str = "t.cfg"):
    sections = parse_cfg_text(text, file=name)
    return sections


# ----- Darknet's line reader ----------------------------------------------------------------------------------
def test_spaces_anywhere_are_deleted_and_first_equals_splits():
    s = one("[net]\n  wid th = 4 16\nact ivation=le aky\nkey=a=b\r\n")[0]
    assert s.str("width") == "416"
    assert s.str("activation") == "leaky"
    assert s.str("key") == "a=b"


def test_comments_only_at_line_start():
    s = one("# c\n; c\n[net]\n  # indented comment\nsize=3 # 3x3\n")[0]
    assert list(s.options) == ["size"]
    assert s.options["size"].value == "3#3x3"


@pytest.mark.parametrize("text, key, value, where, words", [
    ("[net]\n\nsize=3 # 3x3\n", "size", 3, "t.cfg:3", "inline comments"),  # an inline comment is not one
    ("[c]\nbatch_normalize=True\n", "batch_normalize", 0, "t.cfg:2", "atoi"),  # garbage is atoi's 0
])
def test_int_reader_reads_like_atoi_with_warning(caplog, text, key, value, where, words):
    s = one(text)[0]
    with caplog.at_level(logging.WARNING, "darkcsp"):
        assert s.int(key) == value
    assert where in caplog.text and words in caplog.text


def test_section_and_option_lines_keep_their_line_numbers():
    secs = one("\n[net]\nwidth=8\n\n[convolutional]\nfilters=4\n")
    assert [(s.name, s.line) for s in secs] == [("net", 2), ("convolutional", 5)]
    assert secs[1].options["filters"].line == 6


def test_keys_and_sections_are_case_sensitive():
    s = one("[net]\nWidth=3\n")[0]
    assert not s.has("width") and s.has("Width")


def test_duplicate_key_first_wins_and_warning_names_both_lines(caplog):
    with caplog.at_level(logging.WARNING, "darkcsp"):
        s = one("[convolutional]\nfilters=8\nsize=3\nfilters=16\n")[0]
    assert s.int("filters") == 8
    msg = caplog.text
    assert "t.cfg:4" in msg and "line 2" in msg and "filters" in msg and "first" in msg
    # reported once (at parse time), not again as an unused field
    assert s.unused() == [o for o in s.options.values() if not o.used]


def test_empty_value_is_dropped_with_warning(caplog):
    with caplog.at_level(logging.WARNING, "darkcsp"):
        s = one("[net]\nwidth=\n")[0]
    assert not s.has("width")
    assert "t.cfg:2" in caplog.text and "no value" in caplog.text


@pytest.mark.parametrize("text, line, words", [
    ("width=3\n[net]\n", 1, ["before the first [section]"]),
    ("[net]\nwidth\n", 2, ["malformed line 'width'", "key=value"]),
    ("[net]\n=3\n", 2, ["empty option name"]),
    ("[net]\n[convolutional] # conv\n", 2, ["malformed section header", "inline comments"]),
    ("[net]\n[]\n", 2, ["malformed section header"]),
    ("[net]\nwidth=1\x002\n", 2, ["NUL"]),
])
def test_malformed_lines_name_file_and_line(text, line, words):
    with pytest.raises(CfgError) as e:
        one(text)
    assert e.value.file == "t.cfg" and e.value.line == line
    assert str(e.value).startswith(f"t.cfg:{line}")
    for w in words:
        assert w in str(e.value)


def test_error_quotes_are_short_and_printable():
    with pytest.raises(CfgError) as e:
        one("\x1b[31m" + "x" * 500 + "\n")
    msg = str(e.value)
    assert len(msg) < 200 and "\x1b" not in msg and "\\x1b" in msg


# ----- typed readers -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, expected", [("3", 3), ("-2", -2), ("+4", 4), ("2.0", 2), ("1e2", 100)])
def test_int_reader_accepts(value, expected):
    s = one(f"[c]\nk={value}\n")[0]
    assert s.int("k") == expected


@pytest.mark.parametrize("value", ["1.5", "1e400", "-1e400", "3x", "0.1e-300"])
def test_int_reader_refuses_non_integers_with_option_named(value):
    s = one(f"[c]\n\nk={value}\n")[0]
    with pytest.raises(CfgError) as e:
        s.int("k")
    assert e.value.option == "k" and e.value.line == 3 and value in str(e.value)


def test_missing_required_option_names_section():
    s = one("[net]\n[route]\n")[1]
    with pytest.raises(CfgError) as e:
        s.ints("layers")
    assert e.value.line == 2 and e.value.section == "route" and "layers" in str(e.value)


@pytest.mark.parametrize("value, words", [("1,2,", ["trailing comma"]), ("1,,2", ["comma-separated list"]),
                                          ("a,b", ["comma-separated list"])])
def test_list_reader_errors(value, words):
    s = one(f"[route]\nlayers={value}\n")[0]
    with pytest.raises(CfgError) as e:
        s.ints("layers")
    assert e.value.option == "layers" and e.value.line == 2
    for w in words:
        assert w in str(e.value)


def test_float_reader():
    s = one("[c]\na=0.5\nb=.5\nc=1e-3\nd=x\n")[0]
    assert (s.float("a"), s.float("b"), s.float("c")) == (0.5, 0.5, 1e-3)
    with pytest.raises(CfgError, match="expected a number"):
        s.float("d")


# ----- files ---------------------------------------------------------------------------------------------------
def test_read_cfg_missing_file(tmp_path):
    with pytest.raises(CfgError) as e:
        read_cfg(tmp_path / "nope.cfg")
    assert "nope.cfg" in str(e.value) and "not found" in str(e.value)


def test_read_cfg_directory(tmp_path):
    with pytest.raises(CfgError, match="directory"):
        read_cfg(tmp_path)


@pytest.mark.parametrize("data", [b"", b"   \n\n\t\n"])
def test_read_cfg_empty(tmp_path, data):
    p = tmp_path / "e.cfg"
    p.write_bytes(data)
    with pytest.raises(CfgError, match="empty") as e:
        read_cfg(p)
    assert str(p) in str(e.value)


def test_read_cfg_weights_file_given_as_cfg(tmp_path):
    p = tmp_path / "model.weights"
    p.write_bytes(b"\x00\x00\x00\x00\x02\x00\x00\x00" + bytes(range(256)) * 4)
    with pytest.raises(CfgError, match="binary") as e:
        read_cfg(p)
    assert "model.weights" in str(e.value)


def test_read_cfg_binary_without_nul(tmp_path):
    p = tmp_path / "image.cfg"
    p.write_bytes(bytes(range(1, 256)) * 8)
    with pytest.raises(CfgError, match="binary"):
        read_cfg(p)


def test_read_cfg_utf8_bom_is_refused_clearly(tmp_path):
    p = tmp_path / "bom.cfg"
    p.write_bytes(b"\xef\xbb\xbf[net]\nwidth=8\n")
    with pytest.raises(CfgError, match="byte-order mark") as e:
        read_cfg(p)
    assert e.value.line == 1


def test_read_cfg_latin1_text_is_read_with_warning_naming_the_line(tmp_path, caplog):
    p = tmp_path / "l1.cfg"
    p.write_bytes(b"[net]\nwidth=8\n# caf\xe9\nheight=8\n")
    with caplog.at_level(logging.WARNING, "darkcsp"):
        secs = read_cfg(p)
    assert secs[0].int("height") == 8
    assert f"{p}:3" in caplog.text and "UTF-8" in caplog.text


def test_read_cfg_crlf(tmp_path):
    p = tmp_path / "crlf.cfg"
    p.write_bytes(b"[net]\r\nwidth=8\r\n\r\n[maxpool]\r\nsize=2\r\n")
    secs = read_cfg(p)
    assert secs[1].int("size") == 2 and secs[1].line == 4


def test_write_cfg_helper_roundtrip(tmp_path):
    p = write_cfg(tmp_path, """
        [net]
        width=8
    """)
    assert read_cfg(p)[0].int("width") == 8


@pytest.mark.parametrize("value, ok", [("2147483647", True), ("-2147483648", True), ("2147483648", False),
                                       ("99999999999999999999", False), ("1e10", False)])
def test_int_reader_refuses_values_outside_darknets_int(value, ok):
    s = one(f"[c]\nstride={value}\n")[0]
    if ok:
        assert s.int("stride") == int(value)
    else:
        with pytest.raises(CfgError, match="32-bit int") as e:
            s.int("stride")
        assert e.value.line == 2 and e.value.option == "stride"


def test_long_garbage_values_are_shortened_in_messages():
    s = one("[c]\nk=1" + "x\x07" * 5000 + "\n")[0]
    with pytest.raises(CfgError) as e:
        s.int("k")
    assert len(str(e.value)) < 300 and "\x07" not in str(e.value)
