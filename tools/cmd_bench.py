"""``doorkeep bench``: the speed and memory figures recorded in BENCHMARKS.md.

Each area contributes one module ``doorkeep.tools.bench_<area>`` with ``run(quick: bool) -> dict[str, float]``.
Ratios compare two measurements taken in the same run, because this kind of machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from doorkeep.device.errors import DoorkeepError

BENCH_MODULES = ("bench_foundation", "bench_gate", "bench_detection", "bench_night", "bench_mqtt", "bench_vault",
                 "bench_provisioning", "bench_channel", "bench_console", "bench_device")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("bench", help="measure hot paths; --json prints one JSON object")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quick", action="store_true", help="fewer repetitions (for smoke tests)")
    p.add_argument("--only", action="append", default=[], metavar="AREA",
                   help="run only these areas: " + ", ".join(m.removeprefix("bench_") for m in BENCH_MODULES))
    p.set_defaults(func=_bench)


def _bench(args: argparse.Namespace) -> int:
    results: dict[str, float] = {}
    failed: list[str] = []
    for name in BENCH_MODULES:
        area = name.removeprefix("bench_")
        if args.only and area not in args.only:
            continue
        mod = importlib.import_module(f"doorkeep.tools.{name}")
        try:
            figures = mod.run(quick=args.quick)
        except DoorkeepError as exc:  # one area's failure (a timeout) must not throw away every other figure
            print(f"doorkeep: bench {area} failed: {exc}", file=sys.stderr)
            failed.append(area)
            continue
        results.update(figures)
        if not args.json:
            for k, v in figures.items():
                print(f"{area:>11}  {k:<28} {v:>12.4g}")
            sys.stdout.flush()
    if args.json:
        print(json.dumps(results, sort_keys=True))
    if failed:
        print(f"doorkeep: bench areas failed (figures above are incomplete): {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0
