"""``darkcsp detect``: TODO (skeleton, being written this session)."""
from __future__ import annotations

from ..errors import UnsupportedError

NAME = "detect"
HELP = "(not implemented yet)"


def add_arguments(p) -> None:
    pass


def run(args) -> int:
    raise UnsupportedError("darkcsp detect is not implemented yet")
