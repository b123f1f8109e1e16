"""Benchmarks for the night area (filled in by that area)."""

from __future__ import annotations


def run(*, quick: bool = False) -> dict[str, float]:
    return {}
