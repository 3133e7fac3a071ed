"""Darknet .cfg text -> sections, read the way Darknet's parser reads it (parser.c: read_cfg).

Darknet's quirks kept here:
* every space, tab and CR anywhere in a line is deleted before anything else (utils.c: strip), so
  ``layers = -1, 8`` and ``act ivation=leaky`` both parse;
* ``#`` and ``;`` start a comment only as the first character of a (stripped) line: there are no inline
  comments, ``size=3 # 3x3`` is read by Darknet as ``size=3#3x3`` (``atoi`` then stops at ``#``);
* the first ``=`` splits key and value; duplicate keys: the first occurrence wins;
* keys and section names are case-sensitive.
Every section and option keeps its file and line so that errors and warnings can point at them.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

from .errors import CfgError
from .fileio import open_input

log = logging.getLogger("darkcsp")

#: cfg files larger than this are refused (real cfgs are < 100 kB)
MAX_CFG_BYTES = 16 << 20

_INT_RE = re.compile(r"^[+-]?\d+$")
_FLOAT_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


@dataclass
class Option:
    key: str
    value: str
    line: int
    used: bool = False


@dataclass
class Section:
    """One ``[name]`` block of a cfg: typed option readers that record which options were read."""

    name: str
    file: str
    line: int
    options: Dict[str, Option] = field(default_factory=dict)
    duplicates: List[Option] = field(default_factory=list)

    # --- errors -------------------------------------------------------------------------------
    def error(self, message: str, key: Optional[str] = None, cls=CfgError) -> CfgError:
        opt = self.options.get(key) if key else None
        line = opt.line if opt else self.line
        return cls(message, file=self.file, line=line, section=self.name, option=key)

    def warn(self, message: str, key: Optional[str] = None) -> None:
        opt = self.options.get(key) if key else None
        line = opt.line if opt else self.line
        where = f"{self.file}:{line} [{self.name}]" + (f" option '{key}'" if key else "")
        log.warning("%s: %s", where, message)

    # --- raw access ---------------------------------------------------------------------------
    def has(self, key: str) -> bool:
        return key in self.options

    def _raw(self, key: str, default=None) -> Optional[str]:
        """The option's text (marked as used), or None when it is absent and has a ``default``."""
        opt = self.options.get(key)
        if opt is None:
            if default is None:
                raise self.error(f"required option '{key}' is missing")
            return None
        opt.used = True
        return opt.value

    def _number_text(self, key: str, value: str) -> str:
        # No inline comments in Darknet: "3#3x3" is atoi'd to 3. Keep that, but say so.
        if "#" in value:
            head = value.split("#", 1)[0]
            self.warn(f"'{key}={value}': Darknet has no inline comments; reading '{head}' as Darknet's atoi/atof does", key)
            return head
        return value

    # --- typed readers (Darknet's option_find_int / option_find_float / option_find_str) -------
    def int(self, key: str, default: Optional[int] = None) -> int:
        value = self._raw(key, default)
        if value is None:
            return default
        text = self._number_text(key, value)
        number: Optional[int] = None
        if _INT_RE.match(text):
            number = int(text)
        elif _FLOAT_RE.match(text):
            # Darknet's atoi truncates "2.0" to 2; accept integral floats, refuse the rest.
            f = float(text)
            if abs(f) < float("inf") and f == int(f):  # "1e400" is inf: refused below, not OverflowError
                number = int(f)
        if number is not None:
            if not -2 ** 31 <= number < 2 ** 31:
                raise self.error(f"{key}={value} is outside the range of Darknet's 32-bit int", key)
            return number
        if not re.match(r"^[+-]?\d", text):
            # Darknet's atoi: no leading number -> 0 (e.g. batch_normalize=True means NO batch norm)
            self.warn(f"'{key}={_quote(value)}' is not a number; Darknet's atoi reads it as 0", key)
            return 0
        raise self.error(f"expected an integer, got '{_quote(value)}'", key)

    def float(self, key: str, default: Optional[float] = None) -> float:
        value = self._raw(key, default)
        if value is None:
            return default
        text = self._number_text(key, value)
        if _FLOAT_RE.match(text) or _INT_RE.match(text):
            return float(text)
        raise self.error(f"expected a number, got '{_quote(value)}'", key)

    def str(self, key: str, default: Optional[str] = None) -> str:
        value = self._raw(key, default)
        if value is None:
            return default
        return value

    def _list(self, key: str, default, convert, what: str) -> list:
        value = self._raw(key, default)
        if value is None:
            return list(default)
        text = value.split("#", 1)[0] if "#" in value else value
        items = text.split(",")
        if items and items[-1] == "" and len(items) > 1:
            # Darknet turns a trailing comma into an extra item atoi("") == 0; nobody means that.
            raise self.error(f"trailing comma in '{key}={value}' (Darknet would read an extra item 0)", key)
        out = []
        for item in items:
            if not re.match(_INT_RE if what == "integers" else _FLOAT_RE, item) and not (
                    what != "integers" and _INT_RE.match(item)):
                raise self.error(f"expected a comma-separated list of {what}, got '{_quote(value)}'", key)
            out.append(convert(item))
        return out

    def ints(self, key: str, default: Optional[Sequence[int]] = None) -> List[int]:
        return self._list(key, default, int, "integers")

    def floats(self, key: str, default: Optional[Sequence[float]] = None) -> List[float]:
        return self._list(key, default, float, "numbers")

    def unused(self) -> List[Option]:
        # duplicates are not listed: parse_cfg_text already warned about them, naming both lines
        return [o for o in self.options.values() if not o.used]


def _quote(raw: str, limit: int = 60) -> str:
    """A cfg line for an error message: stripped, shortened, control characters escaped."""
    text = raw.strip()
    text = text if len(text) <= limit else text[:limit] + "..."
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def parse_cfg_text(text: str, file: str = "<string>") -> List[Section]:
    """Split cfg text into sections exactly as Darknet's read_cfg does."""
    sections: List[Section] = []
    current: Optional[Section] = None
    for lineno, raw in enumerate(text.split("\n"), start=1):
        line = re.sub(r"[ \t\r\n\v\f]", "", raw)
        if not line or line[0] in "#;":
            continue
        if "\x00" in line:
            raise CfgError("binary data (NUL byte) in a cfg file; is this really a Darknet .cfg?", file=file, line=lineno)
        if line[0] == "[":
            if not line.endswith("]") or len(line) < 3:
                hint = " (Darknet has no inline comments)" if "]" in line else ""
                raise CfgError(f"malformed section header '{_quote(raw)}'{hint}", file=file, line=lineno)
            current = Section(name=line[1:-1], file=file, line=lineno)
            sections.append(current)
            continue
        if current is None:
            raise CfgError(f"option '{_quote(raw)}' before the first [section]", file=file, line=lineno)
        if "=" not in line:
            raise CfgError(f"malformed line '{_quote(raw)}': expected key=value", file=file, line=lineno,
                           section=current.name)
        key, value = line.split("=", 1)
        if not key:
            raise CfgError(f"malformed line '{_quote(raw)}': empty option name", file=file, line=lineno,
                           section=current.name)
        if value == "":
            # Darknet: "Config file error line N, could parse" and the option is dropped.
            log.warning("%s:%d [%s]: option '%s' has no value; Darknet ignores it", file, lineno, current.name, key)
            continue
        opt = Option(key=key, value=value, line=lineno)
        if key in current.options:
            current.duplicates.append(opt)  # Darknet's option_find returns the first occurrence
            first = current.options[key]
            log.warning("%s:%d [%s]: duplicate option '%s = %s' is ignored: Darknet uses the first one, line %d "
                        "('%s = %s')", file, lineno, current.name, key, value, first.line, key, first.value)
        else:
            current.options[key] = opt
    return sections


def read_cfg(path: Union[str, Path]) -> List[Section]:
    """Read a cfg file into sections; a missing, binary or non-text file is a CfgError."""
    p = Path(path)
    with open_input(p, CfgError, "cfg file") as f:
        data = f.read(MAX_CFG_BYTES + 1)  # bounded: /dev/zero or a video given as cfg must not hang
    if len(data) > MAX_CFG_BYTES:
        raise CfgError(f"more than {MAX_CFG_BYTES >> 20} MB: not a Darknet cfg (the largest are ~100 kB)",
                       file=str(path))
    if not data.strip():
        raise CfgError("cfg file is empty", file=str(path))
    if b"\x00" in data[:4096]:
        raise CfgError("binary data (NUL bytes) where a text .cfg was expected (a .weights file given as cfg?)",
                       file=str(path))
    if data.startswith(b"\xef\xbb\xbf"):
        raise CfgError("the file starts with a UTF-8 byte-order mark, which Darknet reads as part of the first "
                       "line (and then fails); save the cfg without BOM", file=str(path), line=1)
    head = data[:4096]
    binary = sum(b < 32 and b not in b"\t\n\r\f\v" for b in head)
    if binary * 20 > len(head):
        raise CfgError(f"{binary} control bytes in the first {len(head)}: binary data where a text .cfg was "
                       "expected", file=str(path))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        try:
            text = data.decode("latin-1")
            log.warning("%s:%d: cfg is not valid UTF-8; reading it as Latin-1", path, line)
        except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes everything
            raise CfgError("cfg is not text", file=str(path), line=line) from None
    return parse_cfg_text(text, file=str(path))
