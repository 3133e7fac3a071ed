"""The results of a batch job: a JSON Lines file, one record per input, that a job can resume.

Each record is appended with one ``write`` on an ``O_APPEND`` descriptor as soon as it is complete, so a killed
job leaves whole lines plus, at worst, one torn last line (a partial write cut by a crash or a full disk).
Opening the store repairs that line (truncates it; its input is done again) and reads which inputs are
recorded. Appending a record for an input already recorded is refused: with retried Ray tasks the same input
can come back twice, and the driver, the one writer, keeps the first. An exclusive lock on the file keeps two
jobs from writing the same results at once.
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Union

from ..errors import ResourceError

log = logging.getLogger("darkcsp")

#: seconds between fsyncs: every record is written (visible to readers, safe from a killed process) at once;
#: fsync bounds what a power cut can lose without paying a disk flush per image
FSYNC_INTERVAL = 2.0


class ResultsStore:
    """An append-only JSON Lines results file keyed by each record's ``"image"``; use as a context manager."""

    def __init__(self, path: Union[str, Path]):
        self.path = Path(path)
        #: image key -> True when its record is an error record
        self.recorded: Dict[str, bool] = {}
        self.repaired_bytes = 0
        self.duplicates_in_file = 0
        self._fd: Optional[int] = None
        self._created = False
        self._last_sync = 0.0

    # ----- open / close -------------------------------------------------------------------------------
    def open(self) -> "ResultsStore":
        if self.path.is_dir():
            raise ResourceError("is a folder: --out is the JSON Lines file to write", file=str(self.path))
        self._created = not self.path.exists()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o666)
        except OSError as e:
            raise ResourceError(f"cannot open the results file: {e.strerror or e}", file=str(self.path)) from None
        try:
            _lock(fd, self.path)
            self._load(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._last_sync = time.monotonic()
        return self

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.fsync(fd)
                if self._created and os.fstat(fd).st_size == 0:
                    os.unlink(self.path)  # a run that failed before its first record leaves no file behind
            except OSError:
                pass
            os.close(fd)  # releases the lock

    def __enter__(self) -> "ResultsStore":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    # ----- reading --------------------------------------------------------------------------------------
    def _load(self, fd: int) -> None:
        good_end = 0  # byte offset after the last complete, valid line
        torn = None
        with os.fdopen(os.dup(fd), "rb") as f:
            f.seek(0)
            for number, line in enumerate(f, 1):
                if not line.endswith(b"\n"):
                    torn = number  # the last line, cut short
                    break
                if line.strip():
                    rec = self._parse(line, number)
                    if rec is None:  # unparsable but complete: only tolerated as the very last line
                        rest = f.read()
                        if rest.strip():
                            raise ResourceError(f"line {number} is not a JSON record (and more lines follow): "
                                                "this file was not written by darkcsp batch alone; fix or remove "
                                                "the line", file=str(self.path))
                        torn = number
                        break
                    key = rec["image"]
                    if key in self.recorded:
                        self.duplicates_in_file += 1
                    else:
                        self.recorded[key] = "error" in rec
                good_end = f.tell()
        size = os.fstat(fd).st_size
        if size > good_end:
            # a torn last line: the write of that record was cut (killed job, full disk); drop it, the input is
            # not recorded and the resumed job does it again
            os.ftruncate(fd, good_end)
            self.repaired_bytes = size - good_end
            log.warning("%s: line %d was cut short (an interrupted run); removed it (%d bytes), its input is "
                        "done again", self.path, torn, self.repaired_bytes)
        if self.duplicates_in_file:
            log.warning("%s has %d duplicate records (not written by this version of darkcsp batch); the first "
                        "of each counts", self.path, self.duplicates_in_file)

    def _parse(self, line: bytes, number: int) -> Optional[Dict[str, Any]]:
        try:
            rec = json.loads(line)
        except ValueError:
            return None
        if not isinstance(rec, dict) or not isinstance(rec.get("image"), str):
            raise ResourceError(f"line {number} is not a darkcsp batch record (no \"image\"): refusing to append "
                                "to a file of another kind; choose another --out", file=str(self.path))
        return rec

    # ----- queries ----------------------------------------------------------------------------------------
    def __contains__(self, key: str) -> bool:
        return key in self.recorded

    def __len__(self) -> int:
        return len(self.recorded)

    def missing(self, keys: Iterable[str]) -> List[str]:
        """The keys without a record, in order."""
        return [k for k in keys if k not in self.recorded]

    def errors(self, keys: Iterable[str]) -> List[str]:
        """The keys whose record is an error record."""
        return [k for k in keys if self.recorded.get(k)]

    # ----- writing ----------------------------------------------------------------------------------------
    def append(self, record: Dict[str, Any]) -> bool:
        """Write one record (one line, one write); False (nothing written) when its input is recorded already."""
        return self.append_line(record["image"], json.dumps(record), "error" in record)

    def append_line(self, key: str, text: str, is_error: bool) -> bool:
        """Write a record already serialised (``text`` is one JSON object without newline) for input ``key``."""
        if self._fd is None:
            raise ResourceError("results file is not open", file=str(self.path))
        if key in self.recorded:
            return False
        data = (text + "\n").encode("utf-8", "surrogateescape")
        try:
            view = memoryview(data)
            while view:  # one write for any normal line; a short write (disk full) is finished or torn
                n = os.write(self._fd, view)
                view = view[n:]
            now = time.monotonic()
            if now - self._last_sync >= FSYNC_INTERVAL:
                os.fsync(self._fd)
                self._last_sync = now
        except OSError as e:
            raise ResourceError(f"cannot write the results file: {e.strerror or e}", file=str(self.path)) from None
        self.recorded[key] = is_error
        return True


def _lock(fd: int, path: Path) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ResourceError("another darkcsp batch job is writing this results file; wait for it or choose another "
                            "--out", file=str(path)) from None
    except OSError:  # file systems without flock (some NFS setups): go on unlocked
        log.debug("no flock on %s", path)
