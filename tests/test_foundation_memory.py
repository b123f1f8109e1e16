"""The allocator pin used by long-running commands (device/memory.py)."""

from __future__ import annotations

import subprocess
import sys


def test_pin_mmap_threshold_in_a_fresh_process() -> None:
    # Process-wide: run it in a child so the test process's allocator is untouched.
    code = "from doorkeep.device.memory import pin_mmap_threshold as p; import sys; sys.exit(0 if p() else 3)"
    rc = subprocess.run([sys.executable, "-c", code], check=False, timeout=60).returncode
    assert rc == 0  # glibc (Debian, Raspberry Pi OS) accepts it
