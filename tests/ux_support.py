"""Helpers for the operator-UX tests: run the real ``doorkeep`` command, make a directory read-only."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DOORKEEP = str(Path(sys.executable).with_name("doorkeep"))


def doorkeep(*args: str, env: dict[str, str] | None = None, timeout: float = 120,
             input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed ``doorkeep`` command; never raises on a non-zero exit."""
    return subprocess.run([DOORKEEP, *args], capture_output=True, text=True, timeout=timeout, check=False,
                          env={**os.environ, **(env or {})}, input=input)


def one_error_line(proc: subprocess.CompletedProcess[str], *, contains: str = "") -> str:
    """Assert the command failed with exactly one ``doorkeep: …`` line on stderr (no traceback); return it."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("doorkeep: "), proc.stderr
    assert contains in lines[0], lines[0]
    return lines[0]


@contextmanager
def read_only(path: Path) -> Iterator[Path]:
    """``path`` made read-only for this process: a read-only bind mount as root (root ignores modes), else mode."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        old = path.stat().st_mode
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(old)
        return
    mount = shutil.which("mount") or "/usr/bin/mount"
    subprocess.run([mount, "--bind", "-o", "ro", str(path), str(path)], check=True, capture_output=True)
    try:
        yield path
    finally:
        subprocess.run([shutil.which("umount") or "/usr/bin/umount", str(path)], check=True, capture_output=True)


def doorkeep_on_tty(*args: str, env: dict[str, str] | None = None,
                    timeout: float = 300) -> tuple[int, str, str]:
    """Run ``doorkeep`` with stderr on a pseudo-terminal (as in an operator's shell); returns (status, stdout, what
    the terminal showed on stderr)."""
    import pty
    import threading

    master, slave = pty.openpty()
    chunks: list[bytes] = []

    def pump() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the terminal closed
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        proc = subprocess.run([DOORKEEP, *args], stdout=subprocess.PIPE, stderr=slave, text=True, timeout=timeout,
                              check=False, env={**os.environ, **(env or {})})
    finally:
        os.close(slave)
    reader.join(10)
    os.close(master)
    return proc.returncode, proc.stdout, b"".join(chunks).decode(errors="replace")
