"""Ordinary faults end in one ``doorkeep: …`` line, never a traceback (#11 items 6 and 15): a read-only state
directory, a file that is not an image, a missing optional extra, a name Home Assistant cannot take, a broker that
cannot be reached; what the machine refuses names the path; a real bug still shows its traceback."""

from __future__ import annotations

import argparse
import os
import socket
import stat
from pathlib import Path

import numpy as np
import pytest
from doorkeep.device.detect.runtime import filtered_native_stderr
from doorkeep.tools import cli
from ux_support import doorkeep, one_error_line, read_only


def _config(tmp_path: Path, state: Path, extra: str = "") -> Path:
    cfg = tmp_path / "doorkeep.toml"
    cfg.write_text(f'[device]\nstate_dir = "{state}"\n{extra}\n[mqtt]\nenabled = false\n')
    return cfg


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_read_only_state_dir_run_and_pair_say_so_in_one_line(tmp_path: Path) -> None:
    state = tmp_path / "state"
    cfg = _config(tmp_path, state)
    with read_only(state):
        for args in (["run", "--config", str(cfg)],
                     ["pair", "--device", "--config", str(cfg), "--broker", f"127.0.0.1:{_closed_port()}"]):
            line = one_error_line(doorkeep(*args), contains=f"cannot use the state directory {state}")
            assert "Read-only file system" in line or "Permission denied" in line


def test_what_the_machine_refuses_is_one_line_naming_the_file(tmp_path: Path) -> None:
    out = tmp_path / "keys"
    with read_only(out):
        proc = doorkeep("owner", "keygen", "--kdf", "min", "--out", str(out / "owner.key"),
                        env={"DOORKEEP_PASSPHRASE": "x"})
    line = one_error_line(proc)
    assert line.endswith(str(out / "owner.key")), line  # the file asked for, not a temporary one


def test_eval_refuses_a_png_that_is_not_an_image(tmp_path: Path) -> None:
    (tmp_path / "door.png").write_bytes(b"this is not a PNG")
    (tmp_path / "labels.csv").write_text("file,person\ndoor.png,1\n")
    one_error_line(doorkeep("eval", str(tmp_path)), contains=f"{tmp_path / 'door.png'}: not a readable image")


def test_eval_plot_without_matplotlib_fails_before_scoring(tmp_path: Path) -> None:
    fake = tmp_path / "site"  # a matplotlib that cannot be imported, first on the path
    (fake / "matplotlib").mkdir(parents=True)
    (fake / "matplotlib" / "__init__.py").write_text("raise ImportError(\"No module named 'matplotlib'\")\n")
    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "labels.csv").write_text("file,person\n")
    proc = doorkeep("eval", str(tmp_path / "set"), "--plot", str(tmp_path / "p.png"),
                    env={"PYTHONPATH": str(fake), "DOORKEEP_MODEL_DIR": str(tmp_path / "no-models")})
    one_error_line(proc, contains="--plot needs matplotlib: pip install 'doorkeep[eval]'")


def test_a_device_name_too_long_for_home_assistant_is_refused_at_start(tmp_path: Path) -> None:
    cfg = _config(tmp_path, tmp_path / "state", f'name = "{"Front door " * 7}"')
    one_error_line(doorkeep("run", "--config", str(cfg)), contains="config device.name")
    assert not (tmp_path / "state").exists()  # refused before anything was created


def test_pair_device_says_window_open_only_after_reaching_the_broker(tmp_path: Path) -> None:
    cfg = _config(tmp_path, tmp_path / "state")
    port = _closed_port()
    proc = doorkeep("pair", "--device", "--config", str(cfg), "--broker", f"127.0.0.1:{port}", timeout=60)
    one_error_line(proc, contains=f"cannot reach the MQTT broker 127.0.0.1:{port}")
    assert "window open" not in proc.stdout


def test_usage_errors_start_with_doorkeep() -> None:
    proc = doorkeep("pair")
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == "doorkeep: pair: one of the arguments --device --owner is required"
    proc = doorkeep("events", "--broker", "host:port", "--device-key", "k")
    assert proc.stderr.splitlines()[-1].startswith("doorkeep: events: argument --broker:")


def _main_with(func, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    parser = cli.build_parser()
    real = parser.parse_args

    def parse(args: list[str] | None = None) -> argparse.Namespace:
        ns = real(args)
        ns.func = func
        return ns

    parser.parse_args = parse  # type: ignore[method-assign]
    orig = cli.build_parser
    cli.build_parser = lambda: parser
    try:
        rc = cli.main(argv)
    finally:
        cli.build_parser = orig
    return rc, capsys.readouterr().err


def test_last_resort_handler_one_line_for_the_machine_traceback_for_bugs(capsys: pytest.CaptureFixture[str]) -> None:
    def disk_full(_args: argparse.Namespace) -> int:
        raise OSError(28, "No space left on device", "/var/lib/doorkeep/vault/x.clip")

    rc, err = _main_with(disk_full, ["models", "list"], capsys)
    assert rc == 1 and err == "doorkeep: No space left on device: /var/lib/doorkeep/vault/x.clip\n"
    rc, err = _main_with(disk_full, ["-v", "models", "list"], capsys)
    assert rc == 1 and "Traceback" in err and err.endswith("doorkeep: No space left on device: "
                                                           "/var/lib/doorkeep/vault/x.clip\n")

    def said(_args: argparse.Namespace) -> int:
        raise SystemExit("no clips selected (use --clip or --from/--to)")

    rc, err = _main_with(said, ["models", "list"], capsys)
    assert rc == 1 and err == "doorkeep: no clips selected (use --clip or --from/--to)\n"

    def bug(_args: argparse.Namespace) -> int:
        return {}["missing"]  # type: ignore[no-any-return]

    rc, err = _main_with(bug, ["models", "list"], capsys)
    assert rc == 1 and "Traceback" in err and "KeyError" in err  # a bug is never hidden
    assert err.splitlines()[-1].startswith("doorkeep: internal error (KeyError")


def test_version() -> None:
    proc = doorkeep("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("doorkeep 0.") and "Python 3." in proc.stdout


def test_native_runtime_noise_is_dropped_and_everything_else_kept(capfd: pytest.CaptureFixture[str]) -> None:
    with filtered_native_stderr():
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        os.write(2, b"WARNING: something the operator must see\n")
    err = capfd.readouterr().err
    assert "XNNPACK" not in err and "something the operator must see" in err


@pytest.mark.detection
def test_commands_that_load_a_model_print_no_runtime_banner(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(tmp_path / "noise.png")
    (tmp_path / "labels.csv").write_text("file,person\nnoise.png,0\n")
    proc = doorkeep("eval", str(tmp_path), "--json")
    assert proc.returncode == 0, proc.stderr
    assert "XNNPACK" not in proc.stderr and "Created TensorFlow Lite" not in proc.stderr, proc.stderr


def test_owner_config_folder_is_private(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    key = home / ".config" / "doorkeep" / "owner.key"
    proc = doorkeep("owner", "keygen", "--kdf", "min", "--out", str(key),
                    env={"HOME": str(home), "XDG_CONFIG_HOME": "", "DOORKEEP_PASSPHRASE": "x"})
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    from doorkeep.provisioning.owner_state import DeviceBook

    book = DeviceBook(tmp_path / "other" / "doorkeep" / "devices.json")
    book.save()
    assert stat.S_IMODE(book.path.parent.stat().st_mode) == 0o700


def test_a_closed_pipe_is_not_an_error_line() -> None:
    """`doorkeep evalset list | head -1`: the reader stopped early; doorkeep stays quiet."""
    import subprocess

    from ux_support import DOORKEEP

    proc = subprocess.Popen([DOORKEEP, "evalset", "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # like `head` exiting before the first line
    err = proc.stderr.read().decode()
    proc.wait(60)
    assert "Broken pipe" not in err and "Traceback" not in err and "Exception ignored" not in err, err


@pytest.mark.parametrize("args", [
    ["run", "--config", "/nonexistent/doorkeep.toml"],
    ["scan", "/nonexistent/door.mp4"],
    ["eval", "/nonexistent/set"],
    ["models", "fetch", "no-such-model"],
    ["identity", "show", "--state-dir", "/nonexistent/state"],
    ["config", "check", "/nonexistent/settings.toml"],
    ["config", "sign", "/nonexistent/settings.toml", "--key", "/nonexistent/owner.key", "--out", "/tmp/x.json"],
    ["audit", "verify", "--log", "/nonexistent/audit.log", "--device-key", "00" * 32],
    ["events", "--broker", "127.0.0.1:1", "--device-key", "not-a-key"],
    ["request", "--key", "/nonexistent/r.key", "--requester", "a", "--incident", "b", "--purpose", "c",
     "--from", "1", "--to", "2", "--out", "/tmp/r.json"],
    ["evalset", "build", "/tmp/x", "--set", "no-such-set"],
], ids=lambda a: " ".join(a[:2]))
def test_every_error_line_starts_with_doorkeep(args: list[str], tmp_path: Path) -> None:
    proc = doorkeep(*args, env={"DOORKEEP_PASSPHRASE": "x", "XDG_CONFIG_HOME": str(tmp_path),
                                "DOORKEEP_MODEL_DIR": str(tmp_path / "no-models")}, timeout=60)
    assert proc.returncode != 0, proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines and all(line.startswith("doorkeep: ") for line in lines), proc.stderr
