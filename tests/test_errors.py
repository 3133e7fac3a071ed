"""darkcsp.errors: the DarkcspError hierarchy, one exit code per class, and the location prefix of a message.
How the CLI reports them is tested in tests/cli/test_errors.py."""
from __future__ import annotations

from darkcsp import errors
from darkcsp.errors import CfgError, DarkcspError, ImageError, ResourceError, UnsupportedError, WeightsError

CLASSES = [CfgError, WeightsError, ImageError, UnsupportedError, ResourceError]


def test_classes_have_distinct_nonzero_exit_codes():
    codes = [c.exit_code for c in CLASSES]
    assert len(set(codes)) == len(codes) and 0 not in codes
    assert all(issubclass(c, DarkcspError) for c in CLASSES)
    assert DarkcspError.exit_code not in codes + [0]  # any other DarkcspError: its own code


def test_message_format_names_every_location_part():
    e = CfgError("expected an integer", file="a.cfg", line=3, section="convolutional", option="size")
    assert str(e) == "a.cfg:3 [convolutional] option 'size': expected an integer"
    assert str(WeightsError("too short", file="w.weights", offset=20)) == "w.weights byte offset 20: too short"
    assert str(ImageError("cannot decode")) == "cannot decode"
    assert errors.DarkcspError("x").message == "x"
