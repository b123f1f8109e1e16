"""``doorkeep eval`` core: score labelled photos through the device's own detection path.

Each image is scaled to fit the configured lores size (aspect ratio kept: the same pixel budget the device has, no
invented bars or stretching), converted to I420, and run through the SAME preprocessing, model and decoder as on
the device. The per-image score is the best person score anywhere in the frame. Besides the overall counts, the
result has ``conditions``: the figures per split (``splits.csv``, written by ``doorkeep evalset build``) and per
variant (``<photo>__<variant>.png``), see :mod:`doorkeep.tools.conditions`.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from doorkeep.device.errors import DoorkeepError
from doorkeep.tools.conditions import ALL, auc, conditions, read_splits, split_name


class EvalError(DoorkeepError, ValueError):
    """The evaluation folder or its labels.csv is unusable."""


def read_labels(folder: Path) -> list[tuple[str, int]]:
    """``folder/labels.csv`` rows ``file,person`` (person 1 or 0; a header line is optional)."""
    path = folder / "labels.csv"
    if not path.is_file():
        raise EvalError(f"{path}: no such file (expected rows `file,person` with person 1 or 0)")
    rows: list[tuple[str, int]] = []
    with open(path, newline="", encoding="utf-8") as f:
        for n, row in enumerate(csv.reader(f), 1):
            if not row or row[0].strip().startswith("#") or (n == 1 and row[0].strip() == "file"):
                continue
            if len(row) != 2 or row[1].strip() not in ("0", "1"):
                raise EvalError(f"{path}:{n}: expected `file,person` with person 0 or 1, got {row!r}")
            if not (folder / row[0].strip()).is_file():
                raise EvalError(f"{path}:{n}: image {row[0].strip()!r} not found in {folder}")
            rows.append((row[0].strip(), int(row[1])))
    if not rows:
        raise EvalError(f"{path}: no labelled images")
    return rows


def image_to_lores(path: Path, *, width: int, height: int) -> tuple[np.ndarray, int, int]:
    """Load an image, fit it into ``width`` x ``height`` (even sizes, aspect kept) and return ``(i420, w, h)``."""
    from doorkeep.device.detect.preprocess import rgb_to_i420
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            rgb = im.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as exc:  # not an image, truncated, unreadable
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise EvalError(f"{path}: not a readable image ({why})") from None
    s = min(width / rgb.width, height / rgb.height)
    w, h = max(2, int(rgb.width * s) // 2 * 2), max(2, int(rgb.height * s) // 2 * 2)
    return rgb_to_i420(np.asarray(rgb.resize((w, h), Image.Resampling.BILINEAR))), w, h


def evaluate(folder: Path, config: Any, *, detector: Any,
             progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Score every labelled image; returns the JSON-ready result (threshold, tp, fp, tn, fn, auc, scores,
    conditions).

    ``progress(images_done, images_total)`` is called after each image.
    """
    w, h = config.capture.lores_width, config.capture.lores_height
    thr = detector.threshold
    scores: list[dict[str, Any]] = []
    from doorkeep.device.detect.pipeline import DetectionPipeline

    pipe = DetectionPipeline(detector=detector)  # the device's inference step; no gate or events on stills
    reset = getattr(detector, "reset", None)  # unrelated stills: each image decides its own day/night mode
    labels = read_labels(folder)
    splits = read_splits(folder)
    for i, (name, person) in enumerate(labels):
        if progress is not None:
            progress(i, len(labels))
        frame, _, _ = image_to_lores(folder / name, width=w, height=h)
        if reset is not None:
            reset()
        found = pipe.infer(frame)
        # "detected" is what the device would act on: the detector returned a person (the night model's region
        # scores are on their own scale, so the score alone is not compared with the day threshold).
        photo, variant = split_name(name)
        scores.append({"file": name, "person": person, "mode": getattr(detector, "last_mode", "day"),
                       "score": round(float(detector.max_score), 4), "detected": bool(found),
                       "photo": photo, "variant": variant, "split": splits.get(photo, ALL)})
        if progress is not None:
            progress(i + 1, len(labels))
    ys = [r["person"] for r in scores]
    ss = [r["score"] for r in scores]
    tp = sum(1 for r in scores if r["person"] and r["detected"])
    fp = sum(1 for r in scores if not r["person"] and r["detected"])
    a = auc(ys, ss)
    return {"threshold": thr, "tp": tp, "fp": fp, "tn": ys.count(0) - fp, "fn": ys.count(1) - tp,
            "auc": None if a is None else round(a, 4), "lores": [w, h],
            "modes": {m: sum(1 for r in scores if r["mode"] == m) for m in ("day", "night")}, "scores": scores,
            "conditions": conditions(scores, splits=splits, threshold=thr)}


def plot(result: dict[str, Any], out: Path) -> None:
    """Score distributions of person / no-person images per condition (split x variant) and the threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cond = result["conditions"]
    splits = [s for s in cond if s != ALL] or [ALL]
    variants = [v for v in dict.fromkeys(r["variant"] for r in result["scores"]) if v] or [ALL]  # set's order
    fig, axes = plt.subplots(len(splits), len(variants), figsize=(3.2 * len(variants), 2.6 * len(splits)),
                             squeeze=False, sharex=True)
    for i, s in enumerate(splits):
        for j, v in enumerate(variants):
            ax = axes[i][j]
            rows = [r for r in result["scores"] if (s == ALL or r["split"] == s) and (v == ALL or r["variant"] == v)]
            for label, colour in ((1, "tab:green"), (0, "tab:red")):
                ax.hist([r["score"] for r in rows if r["person"] == label], bins=20, range=(0, 1), alpha=0.6,
                        color=colour, label="person" if label else "no person")
            ax.axvline(result["threshold"], color="k", linestyle="--")
            c = cond[s][v]
            ax.set_title(f"{s} / {v}: {c['found']}/{c['people']} found, {c['false_alarms']} FA, auc {c['auc']}",
                         fontsize=8)
    axes[0][0].legend(fontsize=7)
    fig.supxlabel(f"best person score per image (threshold {result['threshold']:.2f}, dashed)")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
