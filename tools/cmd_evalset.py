"""``doorkeep evalset``: build an evaluation set of real registry-shipped photos and their night variants."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("evalset", help="build evaluation sets of real photos (for `doorkeep eval`)")
    s = p.add_subparsers(dest="evalset_command", metavar="ACTION")
    b = s.add_parser("build", help="fetch the photos (sha256-pinned), write variants + labels.csv into DIR")
    b.add_argument("dir", type=Path, help="output directory")
    b.add_argument("--set", default="night", help="built-in set name or a manifest .toml (default: night)")
    b.add_argument("--cache", type=Path, default=None, help="where fetched photos are cached")
    b.set_defaults(func=_build)
    ls = s.add_parser("list", help="show the photos, labels, sources and licences of a set")
    ls.add_argument("--set", default="night")
    ls.set_defaults(func=_list)
    p.set_defaults(func=lambda a: p.print_help() or 2)


def _build(args: argparse.Namespace) -> int:
    from doorkeep.device.detect.fetch import ProgressFn
    from doorkeep.tools.evalset import build_evalset, load_evalset
    from doorkeep.tools.progress import Progress

    es = load_evalset(args.set)
    bars: list[Progress] = []

    def done_fetching() -> None:
        while bars:
            bars.pop().close()

    def fetching(requirement: str) -> ProgressFn:
        done_fetching()
        bars.append(Progress(f"fetching {requirement}", unit="bytes"))
        return bars[-1].update

    try:
        with Progress(f"evalset {es.name}: writing", unit="images") as bar:
            def writing(done: int, total: int) -> None:
                done_fetching()
                bar.update(done, total)

            labels = build_evalset(es, args.dir, cache_dir=args.cache, progress=writing, fetch_progress=fetching)
    finally:
        done_fetching()
    print(f"{len(es.photos)} photos x {len(es.variants)} variants -> {labels}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from doorkeep.tools.evalset import load_evalset, packages

    es = load_evalset(args.set)
    for p in es.photos:
        print(f"{p.id:<18} person={p.person}  {p.source.requirement}:{p.source.path}  [{p.license}]")
    print("variants:", ", ".join(v.name for v in es.variants))
    print("packages:", ", ".join(packages(es)))
    return 0
