"""``doorkeep eval``'s per-condition report: every split (``splits.csv``) and variant (``<photo>__<variant>.png``).

For each (split, variant) cell, and ``all`` across either: people found at the threshold, false alarms, AUC, and
recall at zero false alarms (the share of person images scoring above the best-scoring image without a person: what
the detector finds at the threshold an owner would need for no false alarm at all in that condition).

Example::

    cells = conditions(result["scores"], splits={"astronaut": "dev"}, threshold=0.62)
    cells["test"]["gray"]["recall_at_zero_false_alarms"]
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

ALL = "all"
#: Separates photo id and variant in the image file names (``bus__gray.png``).
NAME_SEP = "__"


def split_name(file: str) -> tuple[str, str]:
    """``"bus__gray.png"`` -> ``("bus", "gray")``; a name without a variant -> ``(stem, "")``."""
    stem = Path(file).stem
    photo, _, variant = stem.rpartition(NAME_SEP)
    return (photo, variant) if photo else (stem, "")


def read_splits(folder: Path) -> dict[str, str]:
    """``folder/splits.csv`` (``photo,split``) if present, else ``{}`` (every image is in split ``all``)."""
    path = folder / "splits.csv"
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as f:
        return {r["photo"]: r["split"] for r in csv.DictReader(f) if r.get("photo")}


def auc(labels: list[int], scores: list[float]) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties count half); ``None`` if one class is absent."""
    pos = sorted(s for s, y in zip(scores, labels, strict=True) if y)
    neg = sorted(s for s, y in zip(scores, labels, strict=True) if not y)
    if not pos or not neg:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def cell(rows: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
    """The figures of one condition from its score rows (``person``, ``score``, ``detected``)."""
    pos = [r for r in rows if r["person"]]
    neg = [r for r in rows if not r["person"]]
    worst = max((r["score"] for r in neg), default=None)
    a = auc([r["person"] for r in rows], [r["score"] for r in rows])
    return {
        "images": len(rows), "people": len(pos), "found": sum(1 for r in pos if r["detected"]),
        "without_people": len(neg), "false_alarms": sum(1 for r in neg if r["detected"]),
        "auc": None if a is None else round(a, 4),
        "recall_at_zero_false_alarms": None if not pos else
        round(sum(1 for r in pos if worst is None or r["score"] > worst) / len(pos), 4),
        "threshold": threshold,
    }


def conditions(scores: list[dict[str, Any]], *, splits: dict[str, str], threshold: float) -> dict[str, Any]:
    """``{split: {variant: cell}}`` with ``all`` rows and columns; rows need ``photo`` and ``variant``."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in scores:
        split = splits.get(r["photo"], ALL)
        for s in {split, ALL}:
            for v in {r["variant"] or ALL, ALL}:
                groups.setdefault((s, v), []).append(r)
    out: dict[str, Any] = {}
    for (s, v), rows in sorted(groups.items()):
        out.setdefault(s, {})[v] = cell(rows, threshold)
    return out
