"""Input listing for batch jobs: folders (recursive), globs and list files (``@list.txt``).

Kept apart from the CLI so that ``darkcsp detect`` can share it. An input is identified by its path string as
listed (folder + relative path, the glob match, the list-file line): that string is the ``"image"`` of its
record and the key that resume matches on, so a resumed run must list the inputs the same way (same working
directory for relative paths).
"""
from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Iterable, List, Sequence

from ..errors import ImageError
from ..image import IMAGE_EXTS


def list_inputs(inputs: Sequence[str], recursive: bool = True, exts: Iterable[str] = IMAGE_EXTS) -> List[str]:
    """INPUT arguments -> image paths, in order, each once.

    A folder gives its image files (by extension; subfolders too when ``recursive``; hidden ones skipped),
    sorted; a glob its matching files, sorted (``**`` recurses); ``@FILE`` the paths listed in FILE, one per line
    (blank lines and ``#`` comments skipped, relative paths as Darknet's list files: from the working
    directory), taken as they are: a listed file that is missing becomes an error record, not a failed run. An
    argument that matches nothing is an ImageError."""
    exts = frozenset(e.lower() for e in exts)
    out: List[str] = []
    seen = set()
    for arg in inputs:
        if arg.startswith("@"):
            paths = read_list_file(arg[1:])
            if not paths:
                raise ImageError("list file has no paths", file=arg[1:])
        else:
            p = Path(arg)
            if p.is_dir():
                paths = _folder(p, recursive, exts)
                if not paths:
                    raise ImageError("folder has no image files" + (" (searched recursively)" if recursive else ""),
                                     file=arg)
            elif p.exists():
                paths = [str(p)]
            elif glob.has_magic(arg):
                paths = sorted(f for f in glob.glob(arg, recursive=True) if os.path.isfile(f))
                if not paths:
                    raise ImageError("no file matches this pattern", file=arg)
            else:
                raise ImageError("input not found (not a file, folder, glob pattern or @list file)", file=arg)
        for s in paths:
            if s not in seen:
                seen.add(s)
                out.append(s)
    return out


def read_list_file(path: str) -> List[str]:
    """The paths in a Darknet-style list file (train.txt): one per line."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise ImageError("list file not found", file=path) from None
    except IsADirectoryError:
        raise ImageError("list file is a directory (give the folder without '@')", file=path) from None
    except OSError as e:
        raise ImageError(f"cannot read list file: {e.strerror or e}", file=path) from None
    return [s.strip() for s in lines if s.strip() and not s.lstrip().startswith("#")]


def _folder(root: Path, recursive: bool, exts: frozenset) -> List[str]:
    found: List[str] = []
    # os.walk, not Path.rglob: a million-file tree is listed without a Path object per entry; symlinked folders
    # are not followed (no cycles), symlinked files are. Hidden entries are skipped as glob skips them (macOS
    # "._photo.jpg" files are not images, .thumbnails/ holds copies)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [] if not recursive else sorted(d for d in dirnames if not d.startswith("."))
        found.extend(os.path.join(dirpath, f) for f in sorted(filenames)
                     if not f.startswith(".") and os.path.splitext(f)[1].lower() in exts
                     and os.path.isfile(os.path.join(dirpath, f)))
    # one sort over the whole tree: files of a folder before its subfolders' would depend on the walk otherwise
    return [str(Path(f)) for f in sorted(found, key=lambda s: Path(s).parts)]
