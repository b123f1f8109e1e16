"""The committed SSDLite person models are reproduced byte for byte from the pinned source (models/build/).

The build runs in its own venv (models/build/.venv, made by ``./run test`` from models/build/requirements.txt), so
TensorFlow never becomes a dependency of doorkeep itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD_PY = ROOT / "models" / "build" / ".venv" / "bin" / "python"
PROVENANCE = ROOT / "models" / "ssdlite_person.provenance.json"


def test_provenance_names_the_committed_files_and_their_manifests_pin_them() -> None:
    from doorkeep.device.detect.fetch import sha256_file
    from doorkeep.device.detect.models import builtin_manifests

    prov = json.loads(PROVENANCE.read_text(encoding="utf-8"))
    by_file = {m.file: m for m in builtin_manifests().values()}
    assert prov["source"]["file_sha256"] == "7a23982e5825c809853351c9c3e7f7dc05891513ad79b4eded4eea93198cc47a"
    assert (ROOT / "models" / prov["source"]["license_text"]).read_text().startswith("MIT License")
    for out in prov["outputs"]:
        path = ROOT / "models" / out["file"]
        assert path.stat().st_size == out["size"] <= 10 * 1024 * 1024
        assert sha256_file(path) == out["sha256"] == by_file[out["file"]].sha256


@pytest.mark.slow
def test_build_reproduces_the_committed_sha256(tmp_path: Path) -> None:
    if not BUILD_PY.exists():
        if os.environ.get("CI"):
            pytest.fail("models/build/.venv is missing: ./run test makes it (pip install -r "
                        "models/build/requirements.txt)")
        pytest.skip("models/build/.venv not made (./run test makes it)")
    script = ROOT / "models" / "build" / "build_ssdlite.py"
    proc = subprocess.run([str(BUILD_PY), str(script), "--out", str(tmp_path), "--check"],
                          capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "every output reproduces the committed sha256" in proc.stdout
    prov = json.loads(PROVENANCE.read_text(encoding="utf-8"))
    for out in prov["outputs"]:
        assert (tmp_path / out["file"]).read_bytes() == (ROOT / "models" / out["file"]).read_bytes()
    print(proc.stdout, file=sys.stderr)


def test_bundled_models_need_no_fetch_and_no_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``pip install doorkeep`` is enough offline: the derived models are package data, verified by sha256."""
    from doorkeep.device.detect.models import (
        MODEL_DIR_ENV,
        builtin_manifests,
        ensure_model,
    )

    monkeypatch.setenv(MODEL_DIR_ENV, str(tmp_path))  # an empty cache
    for name in ("ssdlite", "ssdlite-fp16"):
        path = ensure_model(builtin_manifests()[name], fetch=False)
        assert path.parent.name == "models" and path.is_file() and not any(tmp_path.iterdir())
