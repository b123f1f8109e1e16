"""Helpers for the owner console's tests: a real device process on a file source and the owner's side of it.

- :func:`owner_and_device` — an owner key (passphrase :data:`PASSPHRASE`, cheap argon2id for tests), the device's
  identity with the owner pinned on it (so the vault records), and the owner's device book pinning the device;
- :class:`DeviceProcess` — ``doorkeep run --config`` as a subprocess on a looping video of a real person photo
  walking past a wall, publishing to the test's mosquitto; ``stop()`` sends SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.vault import keys

PASSPHRASE = "console test passphrase"


@dataclass
class Owner:
    key: Path
    book: Path
    keys: keys.SecretKeys
    identity: DeviceIdentity
    state: Path


def owner_and_device(root: Path) -> Owner:
    """Owner key + device state with the owner pinned + the owner's device book (the pairing outcome)."""
    from doorkeep.provisioning.owner_state import DeviceBook

    state = root / "device"
    identity = DeviceIdentity.load_or_create(state)
    owner_dir = root / "owner"
    owner_dir.mkdir(parents=True, exist_ok=True)
    sk = keys.SecretKeys.generate("owner")
    sk.save(owner_dir / "owner.key", PASSPHRASE.encode(), limits=keys.MIN)
    keys.pin_owner_public(state, sk.public)
    book = DeviceBook(owner_dir / "devices.json")
    book.pin(identity.device_id, identity.public_bytes)
    return Owner(owner_dir / "owner.key", book.path, sk, identity, state)


def scene_video(path: Path, *, seconds: float | None = None, width: int = 640, height: int = 480) -> Path:
    """A real person photo walking past a real wall, as an H.264 file (made once per path); by default one loop
    of the scene (16 s: the person visits 1.5-10.5 s, so each visit ends before the file loops)."""
    from doorkeep.device.sources.photo_scene import LOOP_S, photo_scene
    from doorkeep.device.sources.synthetic import write_video

    if not path.exists():
        write_video(str(path), seconds=seconds or LOOP_S, width=width, height=height, fps=30,
                    scene=photo_scene(width, height))
    return path


def doorkeep(*args: str | Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run([sys.executable, "-m", "doorkeep.tools.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=120, check=False, env=env)
    assert proc.returncode == 0, f"doorkeep {' '.join(map(str, args))}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def sign_and_apply(owner: Owner, config: Path, policy_toml: str) -> None:
    """The owner signs a policy (``doorkeep config sign``) and the device applies it (``doorkeep config apply``)."""
    root = owner.state.parent
    (root / "policy.toml").write_text(policy_toml)
    (root / "owner.pass").write_text(PASSPHRASE + "\n")
    doorkeep("config", "sign", root / "policy.toml", "--key", owner.key, "--passphrase-file", root / "owner.pass",
             "--book", owner.book, "--out", root / "policy.signed.json")
    doorkeep("config", "apply", root / "policy.signed.json", "--config", config)


class DeviceProcess:
    """``doorkeep run`` on a file source, as the systemd service runs it. The device is paired, so its broker
    settings come from an owner-signed configuration (signed and applied first, as an owner would)."""

    def __init__(self, owner: Owner, *, broker_port: int, video: Path, model_dir: Path, policy: str = "",
                 width: int = 640, height: int = 480) -> None:
        self.config = owner.state.parent / "doorkeep.toml"
        self.config.write_text(f"""
[device]
state_dir = "{owner.state}"
[capture]
source = "file"
path = "{video}"
realtime = true
loop = true
main_width = {width}
main_height = {height}
""")
        sign_and_apply(owner, self.config, f"""
[mqtt]
host = "127.0.0.1"
port = {broker_port}
heartbeat_s = 1
reconnect_max_s = 2
{policy}
""")
        self.log = owner.state.parent / "device.log"
        env = {**os.environ, "DOORKEEP_MODEL_DIR": str(model_dir)}
        env.pop("NOTIFY_SOCKET", None)
        self._out = open(self.log, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "doorkeep.tools.cli", "run", "--config", str(self.config)],
                                     env=env, stdout=self._out, stderr=subprocess.STDOUT, text=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._out.close()
