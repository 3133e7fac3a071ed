#!/usr/bin/env python
"""Long fuzz run of darkcsp: runs ``python -m tests.fuzz ARGS`` from the repository root (``--help`` lists ARGS).

The fuzzer is test code (tests/fuzz/), not part of the installed package, so it runs as a module of the
checkout's ``tests`` package, from the root as ``python -m pytest`` does; darkcsp itself is the installed one.
Paths given to --out and --corpus are taken relative to the caller's folder; the default --out,
fuzz-findings/, is in the repository root.

    nice -n 19 python tools/fuzz.py --inputs 100000 --seed 1
    python tools/fuzz.py --images --seconds 60
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PATH_OPTIONS = ("--out", "--corpus")


def absolute_paths(argv: list) -> list:
    """``argv`` with the values of PATH_OPTIONS (``--out X`` or ``--out=X``) made absolute."""
    out = []
    for prev, arg in zip([None] + argv, argv):
        name, eq, value = arg.partition("=")
        if prev in PATH_OPTIONS:
            arg = str(Path(arg).resolve())
        elif eq and name in PATH_OPTIONS:
            arg = f"{name}={Path(value).resolve()}"
        out.append(arg)
    return out


def main(argv: list) -> int:
    try:
        return subprocess.call([sys.executable, "-m", "tests.fuzz", *absolute_paths(argv)], cwd=REPO)
    except KeyboardInterrupt:  # the fuzzer, in the same process group, is interrupted too
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
