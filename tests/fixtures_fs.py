"""Filesystem fixtures: a real, small tmpfs for disk-full tests (``mount -t tmpfs``; the suite runs as root)."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """``small_tmpfs(size_kb)`` mounts a fresh tmpfs of that size and returns its directory; all are unmounted
    at teardown. A disk that really fills up: writes get short counts and ENOSPC from the kernel."""
    mounted: list[Path] = []

    def mount(size_kb: int) -> Path:
        d = tmp_path / f"tmpfs-{uuid.uuid4().hex[:8]}"
        d.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k,mode=0700", "tmpfs", str(d)],
                           capture_output=True, text=True, check=False)
        assert r.returncode == 0, f"cannot mount a tmpfs (the suite needs root): {r.stderr.strip()}"
        mounted.append(d)
        return d

    yield mount
    for d in mounted:
        subprocess.run(["umount", "-l", str(d)], check=False)
