"""``doorkeep eval`` (labelled photos -> score, confusion counts, AUC) and ``doorkeep scan`` (footage -> events)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("eval", help="score labelled photos (DIR/labels.csv: file,person) through the device's detector")
    p.add_argument("dir", type=Path, help="folder with labels.csv and the images (PNG/JPEG)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plot", type=Path, metavar="FILE.png", help="draw the score distributions and the threshold")
    p.add_argument("--config", type=Path, help="device config (lores size, [detect])")
    p.set_defaults(func=_eval)
    q = sub.add_parser("scan", help="run a video file through mask, gate, detector and events as fast as possible")
    q.add_argument("video", type=Path)
    q.add_argument("--json", action="store_true", help="one JSON line per person event, then a summary line")
    q.add_argument("--config", type=Path, help="device config (lores size, [detect], [events], zones, masks)")
    q.add_argument("--no-gate", action="store_true", help="infer on every frame (ignore the motion gate)")
    q.set_defaults(func=_scan)


def _setup(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from doorkeep.device.config import Config
    from doorkeep.device.detect.night_detector import build_night_detector

    # The device's own detector: day model, and night mode chosen per frame/image ([night], docs/night.md).
    cfg = Config.from_toml(args.config) if args.config else Config()
    return cfg, build_night_detector(cfg)


def _eval(args: argparse.Namespace) -> int:
    from doorkeep.tools.evaluate import EvalError, evaluate, plot, read_labels
    from doorkeep.tools.progress import Progress

    if args.plot:  # before any image is scored: a missing extra must not cost a whole evaluation run
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise EvalError("--plot needs matplotlib: pip install 'doorkeep[eval]' (or leave out --plot)") from None
    read_labels(args.dir)  # a wrong folder is refused before the model is loaded (or fetched)
    cfg, det = _setup(args)
    with Progress(f"eval {args.dir.name or args.dir}", unit="images", enabled=not args.json) as bar:
        result = evaluate(args.dir, cfg, detector=det, progress=bar.update)
    result["runtime"] = det.runtime
    if args.plot:
        plot(result, args.plot)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{'file':<36} {'person':>6} {'mode':>5} {'score':>7}  result")
    for r in result["scores"]:
        ok = "ok" if r["detected"] == bool(r["person"]) else ("MISSED" if r["person"] else "FALSE ALARM")
        print(f"{r['file']:<36} {r['person']:>6} {r['mode']:>5} {r['score']:>7.3f}  {ok}")
    print(f"threshold {result['threshold']:.2f}  tp {result['tp']}  fp {result['fp']}  tn {result['tn']}  "
          f"fn {result['fn']}  auc {result['auc']}  ({det.runtime})")
    return 0


def _scan(args: argparse.Namespace) -> int:
    from doorkeep.device.errors import CaptureError
    from doorkeep.tools.progress import Progress
    from doorkeep.tools.scan import scan_video

    if not args.video.is_file():  # refused before the model is loaded (or fetched)
        raise CaptureError(f"cannot open video {args.video}: no such file")
    cfg, det = _setup(args)
    with Progress(f"scan {args.video.name}", unit="s of video", enabled=not args.json) as bar:
        events, summary = scan_video(args.video, cfg, detector=det, gate=not args.no_gate, progress=bar.update)
    for e in events:
        if args.json:
            print(json.dumps(e))
            continue
        end = "(still going at the end)" if e["end_s"] is None else f"{e['end_s']:.2f}s"
        zone = f"  zone {e['zone']}" if e["zone"] is not None else ""
        print(f"person {e['start_s']:>8.2f}s - {end}  score {e['score']:.2f}{zone}  mode {e['mode']}")
    modes = ", ".join(f"{m['mode']} from {m['t_s']:.1f}s" for m in summary["modes"])
    print(json.dumps(summary) if args.json else
          f"{summary['frames']} frames, {summary['inferences']} inferences ({summary['night_inferences']} in night "
          f"mode), {summary['events']} events; modes: {modes or '-'}")
    return 0
