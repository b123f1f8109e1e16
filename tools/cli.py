"""The ``doorkeep`` command: one argparse entry; each subcommand family lives in its own ``cmd_*`` module.

A module registers its subcommands with ``register(subparsers)`` and sets ``func`` on each parser; heavy imports
stay inside the command functions so ``doorkeep --help`` is instant.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import sys
import traceback
from typing import NoReturn

from doorkeep.device.activity import NAME as ACTIVITY
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
    "cmd_status",  # status, identity show (config check is registered by cmd_provision)
    "cmd_console",  # console (the owner's web app)
    "cmd_bench",  # bench
)


class Parser(argparse.ArgumentParser):
    """argparse with doorkeep's error line: ``doorkeep: pair: the following arguments are required: …``.

    Subcommand parsers inherit the class (argparse makes them with ``type(parent)``).
    """

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        where = self.prog.removeprefix("doorkeep").strip()
        self.exit(2, f"doorkeep: {where + ': ' if where else ''}{message}\n")


def version() -> str:
    """``0.1.0 (Python 3.11.2; ai-edge-litert 1.2.0)``: the package and what runs the models (no import)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    def _v(dist: str) -> str | None:
        try:
            return dist_version(dist)
        except PackageNotFoundError:
            return None

    runtimes = [f"{d} {v}" for d in ("ai-edge-litert", "tflite-runtime") if (v := _v(d))]
    py = ".".join(map(str, sys.version_info[:3]))
    # "unknown": run from a source tree that was never installed
    return f"{_v('doorkeep') or 'unknown'} (Python {py}; {', '.join(runtimes) or 'no TFLite runtime installed'})"


def describe_os_error(exc: OSError) -> str:
    """An OSError as one line that names the path: ``cannot write /x/.lock: Read-only file system``."""
    what = exc.strerror or errno.errorcode.get(exc.errno or 0, "") or str(exc) or type(exc).__name__
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    return f"{what}: {' -> '.join(paths)}" if paths else what


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="doorkeep",
        description="Private-by-design video doorbell: on-device person detection, signed events, owner-only footage.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging (-vv for debug); with -v a failure also prints its traceback")
    parser.add_argument("--version", action="version", version=f"doorkeep {version()}")
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
    if not args.verbose:
        # A command says what happened in its own words (one `doorkeep:` line on failure); the device's activity
        # stream (a broker retry, ...) is for the running service, which shows it (cmd_run.show_activity).
        logging.getLogger(ACTIVITY).setLevel(logging.CRITICAL)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the handlers below, not at interpreter exit
        return rc
    except DoorkeepError as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"doorkeep: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except SystemExit as exc:  # raise SystemExit("message") in a command: still one doorkeep: line
        if isinstance(exc.code, str):
            print(f"doorkeep: {exc.code}", file=sys.stderr)
            return 1
        raise
    except BrokenPipeError:  # `doorkeep … | head`: the reader is done, which is no error worth a line
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush does not complain either
        return 1
    except OSError as exc:
        # What the machine refused (a read-only or full disk, a permission, a missing file, the network) is
        # something a user can cause and fix: one line naming the path; the traceback only with -v.
        if args.verbose:
            traceback.print_exc()
        print(f"doorkeep: {describe_os_error(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - the last resort: re-shown with its traceback, never swallowed
        # Anything else is a bug in doorkeep: keep the whole traceback, then say so in doorkeep's own words.
        traceback.print_exc()
        print(f"doorkeep: internal error ({type(exc).__name__}: {exc}); this is a bug — please report it with "
              "the traceback above", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
