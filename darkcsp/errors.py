"""The error hierarchy: every user mistake surfaces as a DarkcspError with a location and an exit code."""
from __future__ import annotations

from typing import Optional


class DarkcspError(Exception):
    """Base class of every error darkcsp reports to a user (never a bug in darkcsp itself)."""

    exit_code = 1

    def __init__(self, message: str, *, file: Optional[str] = None, line: Optional[int] = None,
                 section: Optional[str] = None, option: Optional[str] = None, offset: Optional[int] = None):
        self.message = message
        self.file = file
        self.line = line
        self.section = section
        self.option = option
        self.offset = offset
        super().__init__(self.__str__())

    def location(self) -> str:
        parts = []
        if self.file is not None:
            parts.append(f"{self.file}:{self.line}" if self.line is not None else str(self.file))
        if self.section is not None:
            parts.append(f"[{self.section}]")
        if self.option is not None:
            parts.append(f"option '{self.option}'")
        if self.offset is not None:
            parts.append(f"byte offset {self.offset}")
        return " ".join(parts)

    def __str__(self) -> str:
        loc = self.location()
        return f"{loc}: {self.message}" if loc else self.message


class CfgError(DarkcspError):
    """A .cfg file that Darknet would reject, misread or crash on."""
    exit_code = 2


class WeightsError(DarkcspError):
    """A .weights file that does not fit its cfg (short, long, bad header)."""
    exit_code = 3


class ImageError(DarkcspError):
    """An input image or video that cannot be read."""
    exit_code = 4


class ImageTooLargeError(ImageError):
    """An image over the size limits (bytes, or pixels that decoding would need): refused before decoding."""


class UnsupportedError(DarkcspError):
    """Valid Darknet input that darkcsp deliberately does not run (recurrent layers, xnor, ...)."""
    exit_code = 5


class ResourceError(DarkcspError):
    """Memory, disk, network or file-system limits: too large a network, an unwritable folder, a failed fetch."""
    exit_code = 6
