"""`./run demo` starts fast and works offline once set up (#11 item 13): pip runs only when setup.cfg/pyproject
change or new extras are asked for, the first run says what it is doing, setuptools' editable-install warning is
not shown, and an unreachable package index does not stop a machine where everything is installed."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _script(path: Path, body: str) -> None:
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _fake_checkout(tmp: Path, *, pip_ok: bool = True) -> Path:
    """A copy of ./run with the real package metadata and a stand-in venv: its python logs every pip call (and
    fails it when ``pip_ok`` is false, as pip does offline); its doorkeep prints what it was asked."""
    root = tmp / "checkout"
    (root / ".venv" / "bin").mkdir(parents=True)
    for name in ("run", "setup.cfg", "pyproject.toml"):
        shutil.copy(REPO / name, root / name)
    bin_ = root / ".venv" / "bin"
    for tool in ("doorkeep", "ruff", "mypy"):
        _script(bin_ / f"{tool}.installed", f'echo "{tool} $*"\n')
    installs = f'for t in doorkeep ruff mypy; do cp -p "{bin_}/$t.installed" "{bin_}/$t"; done\n'
    _script(bin_ / "python",
            f'echo "pip $* PYTHONWARNINGS=$PYTHONWARNINGS" >> "{root}/pip.log"\n'
            + (installs if pip_ok else 'echo "ERROR: Could not find a version (index unreachable)" >&2; exit 1\n'))
    if not pip_ok:  # installed earlier, while the index was reachable
        subprocess.run(["bash", "-c", installs], check=True)
    return root


def _run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(root / "run"), *args], capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "CI": ""})


def _pip_calls(root: Path) -> list[str]:
    log = root / "pip.log"
    return log.read_text().splitlines() if log.exists() else []


def test_pip_runs_once_then_only_when_the_metadata_changes(tmp_path: Path) -> None:
    root = _fake_checkout(tmp_path)
    first = _run(root, "demo", "--seconds", "1")
    assert first.returncode == 0, first.stderr
    assert "./run: installing doorkeep [demo,console]" in first.stderr  # the first run says what it is doing
    assert first.stdout.splitlines()[-2:] == ["doorkeep models fetch --all", "doorkeep demo --seconds 1"]
    calls = _pip_calls(root)
    assert len(calls) == 1 and "install" in calls[0] and "-e .[demo,console]" in calls[0]
    assert "PYTHONWARNINGS=ignore:Editable installation" in calls[0]  # setuptools' warning block stays quiet

    again = _run(root, "demo", "--seconds", "1")
    assert again.returncode == 0 and again.stderr == "" and len(_pip_calls(root)) == 1  # no pip at all

    with open(root / "setup.cfg", "a") as f:
        f.write("\n# a new dependency\n")
    changed = _run(root, "demo")
    assert "setup.cfg changed" in changed.stderr and len(_pip_calls(root)) == 2
    assert _run(root, "demo").stderr == "" and len(_pip_calls(root)) == 2


def test_extras_add_up_so_demo_then_lint_then_demo_installs_twice_only(tmp_path: Path) -> None:
    root = _fake_checkout(tmp_path)
    assert _run(root, "demo").returncode == 0 and len(_pip_calls(root)) == 1
    assert _run(root, "lint").returncode == 0  # more extras (dev, eval): ruff and mypy are stand-ins too
    assert len(_pip_calls(root)) == 2
    assert _run(root, "demo").returncode == 0 and _run(root, "lint").returncode == 0
    assert len(_pip_calls(root)) == 2
    installed = (root / ".venv" / ".doorkeep-install").read_text().split()[1].split(",")
    assert {"demo", "dev", "console"} <= set(installed)


def test_offline_with_everything_installed_still_runs(tmp_path: Path) -> None:
    root = _fake_checkout(tmp_path, pip_ok=False)  # installed, but the index cannot be reached
    proc = _run(root, "demo")
    assert proc.returncode == 0, proc.stderr
    assert "could not update" in proc.stderr and "using what is installed" in proc.stderr
    assert proc.stdout.splitlines()[-1] == "doorkeep demo"
    (root / ".venv" / "bin" / "doorkeep").unlink()  # nothing installed and no index: that must fail
    assert _run(root, "demo").returncode != 0


def test_real_demo_entry_works_with_the_index_unreachable() -> None:
    """The real .venv of this checkout, the package index pointed at a dead address: `./run demo --help` works."""
    # no pip config files (they may name local wheel folders), no find-links, and an index nobody answers on
    env = {k: v for k, v in os.environ.items() if k not in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_INDEX_URL="http://127.0.0.1:9/simple", PIP_DEFAULT_TIMEOUT="2",
               PIP_RETRIES="0")
    proc = subprocess.run([str(REPO / "run"), "demo", "--help"], capture_output=True, text=True, timeout=300,
                          check=False, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "usage: doorkeep demo" in proc.stdout
    assert "BuildBackendWarning" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
