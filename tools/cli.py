"""The ``doorkeep`` command: one argparse entry; each subcommand family lives in its own ``cmd_*`` module.

A module registers its subcommands with ``register(subparsers)`` and sets ``func`` on each parser; heavy imports
stay inside the command functions so ``doorkeep --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from doorkeep.device.errors import DoorkeepError

#: Subcommand modules in help order: device, hub, owner, requester/recipient, provisioning, developer tools.
COMMAND_MODULES = (
    "cmd_run",  # run, demo
    "cmd_models",  # models fetch/list/verify
    "cmd_detect",  # eval, scan
    "cmd_evalset",  # evalset build/list (real-photo evaluation sets)
    "cmd_hub",  # events
    "cmd_vault",  # owner, recipient, grant, request, decrypt, clips, view, audit
    "cmd_provision",  # pair, config, factory-reset
    "cmd_bench",  # bench
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="doorkeep",
        description="Private-by-design video doorbell: on-device person detection, signed events, owner-only footage.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"doorkeep.tools.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except DoorkeepError as exc:
        print(f"doorkeep: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
