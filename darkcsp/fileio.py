"""User files in and out: inputs opened with errors that name them, atomic outputs (written to a temp file
beside the target, renamed on success, deleted on failure)."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator, Type, Union

from .errors import DarkcspError, ResourceError


@contextlib.contextmanager
def open_input(path: Union[str, Path], error: Type[DarkcspError], noun: str) -> Iterator[BinaryIO]:
    """``open(path, "rb")`` for a user's input file: a missing file, a folder or a read failure (inside the
    block too) raises ``error`` naming the path, e.g. ``CfgError("cfg file not found")`` for noun "cfg file"."""
    article = "an" if noun[:1] in "aeiou" else "a"
    try:
        with open(path, "rb") as f:
            yield f
    except FileNotFoundError:
        raise error(f"{noun} not found", file=str(path)) from None
    except IsADirectoryError:
        raise error(f"is a directory, not {article} {noun}", file=str(path)) from None
    except OSError as e:
        raise error(f"cannot read {noun}: {e.strerror or e}", file=str(path)) from None


@contextlib.contextmanager
def atomic_path(path: Union[str, Path]) -> Iterator[Path]:
    """Yield a temporary path to write; it becomes ``path`` only if the block finishes without error."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    blocker = next((p for p in (parent, *parent.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise ResourceError(f"cannot write output: {blocker} is a file, not a folder", file=str(path))
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".part{path.suffix}", dir=str(parent))
        os.close(fd)
        # mkstemp creates 0600; outputs get the usual permissions of a new file (0666 minus the umask)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
    except OSError as e:
        raise ResourceError(f"cannot write output: {e.strerror or e}", file=str(path)) from None
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except OSError as e:
        _unlink(tmp)
        raise ResourceError(f"cannot write output: {e.strerror or e}", file=str(path)) from None
    except BaseException:
        _unlink(tmp)
        raise


def atomic_write_bytes(path: Union[str, Path], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _unlink(p: str) -> None:
    try:
        os.unlink(p)
    except OSError:
        pass
