"""``darkcsp models``: the pretrained models and assets darkcsp can fetch, and which are already here."""
from __future__ import annotations

from .. import assets

NAME = "models"
HELP = "list the pretrained models, sample images and names files `darkcsp fetch` can get"


def add_arguments(p) -> None:
    p.add_argument("--verify", action="store_true", help="check the sha256 of every cached file (slower)")


def _status(name: str, verify: bool) -> str:
    path = assets.asset_path(name)
    if not path.is_file():
        return "-"
    if verify:
        return "ok" if assets.is_present(name) else "BAD"
    a = assets.get_asset(name)
    return "here" if path.stat().st_size == a.size else "BAD"


def run(args) -> int:
    print(f"asset cache: {assets.cache_dir()}")
    print()
    print(f"{'model':<14} {'classes':>7}  {'weights':<30} {'here':<5} description")
    for m in assets.MODELS.values():
        print(f"{m.name:<14} {m.classes:>7}  {m.weights:<30} {_status(m.weights, args.verify):<5} {m.description}")
    print()
    print(f"{'asset':<30} {'kind':<8} {'size':>10}  {'here':<5} {'from':<24} description")
    for a in assets.ASSETS.values():
        print(f"{a.name:<30} {a.kind:<8} {a.size:>10}  {_status(a.name, args.verify):<5} {a.requirement:<24} "
              f"{a.description}")
    print()
    print("fetch with `darkcsp fetch NAME` (a model name fetches its weights and cfg; `all`, `samples`)")
    return 0
