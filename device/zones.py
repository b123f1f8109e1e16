"""Zones: named polygons (normalised frame coordinates) an owner cares about, e.g. the porch but not the pavement.

A person is "in" a zone when the box's foot point (bottom centre: where they stand) — or its centre — lies inside
the polygon (even-odd rule). The person state machine tags events with the zone and can require one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .detections import Detection
from .errors import EventError

_EDGE = 1e-6


@dataclass(frozen=True, slots=True)
class Zone:
    """A named polygon; ``points`` are ``(x, y)`` within 0..1, at least 3."""

    name: str
    points: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        if len(self.points) < 3:
            raise EventError(f"zone {self.name!r}: a polygon needs at least 3 points, got {len(self.points)}")
        for x, y in self.points:
            if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                raise EventError(f"zone {self.name!r}: point ({x}, {y}) is outside 0..1 (coordinates are normalised)")

    def contains(self, x: float, y: float) -> bool:
        """Point-in-polygon (even-odd, ray cast to +x)."""
        p = np.asarray(self.points, dtype=np.float64)
        x0, y0 = p[:, 0], p[:, 1]
        x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
        crosses = (y0 > y) != (y1 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            xi = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
        return bool(np.count_nonzero(crosses & (x < xi)) % 2)


def anchor_point(d: Detection, how: str = "foot") -> tuple[float, float]:
    """The point of a box tested against zones: ``foot`` (bottom centre) or ``centre``."""
    if how == "foot":
        x, y = (d.x0 + d.x1) / 2, d.y1
    elif how == "centre":
        x, y = d.centre
    else:
        raise EventError(f"zone point {how!r} must be 'foot' or 'centre'")
    # A box cut off by the frame edge has its foot exactly on the edge: pull it just inside, so a zone drawn to the
    # edge contains it.
    return min(max(x, _EDGE), 1 - _EDGE), min(max(y, _EDGE), 1 - _EDGE)


def zone_of(d: Detection, zones: Sequence[Zone], how: str = "foot") -> str | None:
    """Name of the first zone containing the detection's anchor point, else ``None``."""
    x, y = anchor_point(d, how)
    for z in zones:
        if z.contains(x, y):
            return z.name
    return None


def zones_from_config(entries: Sequence[object]) -> list[Zone]:
    """``config.zones`` ([[zones]] tables with ``name`` and ``polygon``) -> :class:`Zone` list."""
    return [Zone(name=e.name, points=tuple(e.polygon)) for e in entries]  # type: ignore[attr-defined]
