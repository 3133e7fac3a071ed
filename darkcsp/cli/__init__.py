"""The ``darkcsp`` command line: a thin layer over the library. One module per subcommand."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import List, Optional

from ..errors import DarkcspError, ResourceError
import importlib

#: subcommand modules (darkcsp/cli/<name>.py); each has NAME, HELP, add_arguments(parser) and run(args) -> int
COMMANDS = ["detect", "summary", "run", "diff", "convert", "bench", "profile", "compare", "models", "fetch", "batch",
            "serve"]


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__
    parser = argparse.ArgumentParser(prog="darkcsp", description="Darknet .cfg/.weights compiler and runtime")
    parser.add_argument("--version", action="version", version=f"darkcsp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f".{name}", __package__)
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        p.add_argument("--debug", action="store_true", help="show Python tracebacks and debug logging")
        p.add_argument("-q", "--quiet", action="store_true", help="only errors on stderr")
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    level = logging.DEBUG if args.debug else (logging.ERROR if args.quiet else logging.WARNING)
    logging.basicConfig(level=level, format="darkcsp: %(levelname)s: %(message)s", stream=sys.stderr)
    try:
        return int(args._run(args) or 0)
    except DarkcspError as e:
        if args.debug:
            raise
        print(f"darkcsp: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("darkcsp: interrupted", file=sys.stderr)
        return 130
    except MemoryError as e:
        if args.debug:
            raise
        print(f"darkcsp: error: out of memory ({e}); try a smaller --width/--height, a smaller input or a lower "
              "DARKCSP_MAX_MEMORY_GB", file=sys.stderr)
        return ResourceError.exit_code
    except BrokenPipeError:  # `darkcsp ... | head`: the reader is gone; exit quietly like other CLI tools
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 141
