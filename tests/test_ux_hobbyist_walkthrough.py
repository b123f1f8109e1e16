"""docs/hobbyist.md walked end to end (#11 "What it must show"), so a documented step can never again silently not
work: the command lines are read from the document itself and run as real ``doorkeep`` processes against a real
mosquitto and a real ``doorkeep run`` service on a file source (a real person photo walking past a wall).

Only what a Pi has and a test machine has not is translated (:func:`localise`): the install paths, the broker's
name (``homeassistant.local`` -> the test broker), the service's config path, ``systemctl stop/start`` (the
service process is stopped and started), ``ssh``/``scp`` (the commands run here), and the placeholders the reader
fills in (``dk-…``, ``<the 64 hex characters>``). Everything else — every subcommand, option and file name — is the
document's own, so changing a command in the doc changes what this test runs.

Walked: status of the unpaired service, owner keygen, pairing over MQTT (both screens, the same code), a settings
file signed, checked and applied, a second one pushed to the running service and answered, `status`, events
verified by the pinned device id, `identity show` -> `events --device-key`.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.broker, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "hobbyist.md"
UNIT = ROOT / "provisioning" / "systemd" / "doorkeep.service"
DOORKEEP = str(Path(sys.executable).with_name("doorkeep"))
SUBCOMMANDS = ("owner", "pair", "config", "status", "events", "identity", "run", "factory-reset")
COMMAND = re.compile(r"(?:^|\s|/)doorkeep ((?:" + "|".join(SUBCOMMANDS) + r")\b.*)$")


def code_pieces(text: str) -> list[str]:
    """Every piece of code in a markdown text: fenced blocks line by line, then inline spans (which may wrap)."""
    pieces: list[str] = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        pieces += block.splitlines()
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    pieces += [span.replace("\n", " ") for span in re.findall(r"`([^`]+)`", prose)]
    return pieces


def doorkeep_commands(text: str) -> list[list[str]]:
    """The ``doorkeep`` command lines of a document, as argument lists (ssh quoting, ``&&``, ``;`` and comments
    split off)."""
    found = []
    for piece in code_pieces(text):
        piece = piece.split(" #")[0]
        for part in re.split(r"&&|;|'", piece):
            m = COMMAND.search(part.strip())
            if m:  # a placeholder with spaces stays one argument
                found.append(shlex.split(m.group(1).replace("<the 64 hex characters>", "<DEVICE_KEY>")))
    return found


def doc_command(commands: list[list[str]], *prefix: str) -> list[str]:
    """The one documented command that starts with ``prefix`` (the doc and this test must agree on it)."""
    matches = [c for c in commands if c[: len(prefix)] == list(prefix)]
    matches = [c for c in matches if not any(len(o) > len(c) and o[: len(c)] == c for o in matches)]  # a mention
    assert matches, f"docs/hobbyist.md no longer shows `doorkeep {' '.join(prefix)} …`"
    assert all(m == matches[0] for m in matches), f"docs/hobbyist.md shows different `{' '.join(prefix)}`: {matches}"
    return matches[0]


class Walk:
    """The reader's two machines in one temporary directory: the Pi's files and service, the owner's home."""

    def __init__(self, tmp: Path, broker: str, model_dir: Path) -> None:
        self.tmp, self.broker = tmp, broker
        self.home = tmp / "home"  # the owner's machine ($HOME: ~/.config/doorkeep)
        self.home.mkdir()
        self.config = tmp / "etc" / "doorkeep.toml"  # what install-pi.sh writes, with a file source for the camera
        self.state = tmp / "var-lib-doorkeep"
        self.env = {**os.environ, "HOME": str(self.home), "DOORKEEP_PASSPHRASE": "correct horse battery",
                    "DOORKEEP_MODEL_DIR": str(model_dir)}
        for var in ("XDG_CONFIG_HOME", "NOTIFY_SOCKET", "WATCHDOG_USEC"):
            self.env.pop(var, None)
        self.fill: dict[str, str] = {}
        self.service: subprocess.Popen[str] | None = None
        self.service_log = tmp / "journal.log"

    def localise(self, args: list[str]) -> list[str]:
        out = []
        for a in args:
            a = a.replace("/etc/doorkeep/doorkeep.toml", str(self.config))
            a = a.replace("homeassistant.local", self.broker).replace("~/", f"{self.home}/")
            for placeholder, value in self.fill.items():
                a = a.replace(placeholder, value)
            out.append(a)
        return out

    def run(self, args: list[str], *extra: str, ok: bool = True, stdin: str = "",
            timeout: float = 180) -> subprocess.CompletedProcess[str]:
        argv = [DOORKEEP, *self.localise(args), *extra]
        proc = subprocess.run(argv, capture_output=True, text=True, env=self.env, cwd=self.tmp, input=stdin,
                              timeout=timeout, check=False)
        if ok:
            assert proc.returncode == 0, f"{shlex.join(argv)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc

    def popen(self, args: list[str], *extra: str, stdin: str | None = None) -> subprocess.Popen[str]:
        proc = subprocess.Popen([DOORKEEP, *self.localise(args), *extra], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=self.env,
                                cwd=self.tmp)
        if stdin is not None:
            assert proc.stdin is not None
            proc.stdin.write(stdin)
            proc.stdin.flush()
        return proc

    # ---------------------------------------------------------------- systemctl start / stop doorkeep
    def start_service(self) -> None:
        """The unit's ExecStart, as systemd runs it (its output is the journal)."""
        exec_start = next(line for line in UNIT.read_text().splitlines() if line.startswith("ExecStart="))
        args = shlex.split(exec_start.removeprefix("ExecStart="))
        assert Path(args[0]).name == "doorkeep" and args[1] == "run", exec_start
        self.journal = open(self.service_log, "a")
        self.service = subprocess.Popen([DOORKEEP, *self.localise(args[1:])], stdout=self.journal,
                                        stderr=subprocess.STDOUT, text=True, env=self.env)
        self.wait_for(lambda: "doorkeep: device" in self.journal_text(), "the service to start")

    def stop_service(self) -> None:
        assert self.service is not None
        self.service.send_signal(signal.SIGTERM)
        try:
            rc = self.service.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.service.kill()
            self.service.wait(timeout=10)
            raise AssertionError("the service did not stop on SIGTERM within 60 s") from None
        finally:
            self.journal.close()
        self.service = None
        assert rc == 0, self.journal_text()

    def journal_text(self) -> str:
        return self.service_log.read_text(errors="replace") if self.service_log.exists() else ""

    def wait_for(self, cond, what: str, timeout: float = 120) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while not cond():
            if self.service is not None and self.service.poll() is not None:
                raise AssertionError(f"the service exited ({self.service.returncode}) waiting for {what}:\n"
                                     f"{self.journal_text()}")
            assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{self.journal_text()}"
            time.sleep(0.3)

    def verified_person_event(self, args: list[str], timeout: float = 120) -> dict:
        """Run a documented ``doorkeep events`` line (with --json) until it shows a verified person event."""
        proc = self.popen(args, "--json")
        assert proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if not sel.select(timeout=1.0):
                    if proc.poll() is not None:
                        break
                    continue
                line = proc.stdout.readline()
                if not line:
                    break
                seen.append(line)
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if msg.get("verified") is True and msg.get("kind") == "person":
                    return msg
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        raise AssertionError(f"no verified person event from `{shlex.join(args)}`:\n{''.join(seen)[-3000:]}\n"
                             f"{self.journal_text()[-3000:]}")


def settings_block(text: str) -> str:
    """The documented settings.toml."""
    m = re.search(r"```toml\n(# settings\.toml\n.*?)```", text, flags=re.S)
    assert m, "docs/hobbyist.md no longer shows a settings.toml"
    return m.group(1)


def test_hobbyist_walkthrough(tmp_path: Path, mosquitto, model_path: Path) -> None:  # type: ignore[no-untyped-def]
    from console_support import scene_video

    text = DOC.read_text()
    cmds = doorkeep_commands(text)
    walk = Walk(tmp_path, mosquitto.url, model_path.parent)
    video = scene_video(tmp_path / "door.mp4")
    walk.config.parent.mkdir()
    walk.config.write_text(f'[device]\nstate_dir = "{walk.state}"\n\n[capture]\nsource = "file"\npath = "{video}"\n'
                           "loop = true\nmain_width = 640\nmain_height = 480\n")
    try:
        # 2. Install: the service runs; status reads the state directory beside it
        walk.start_service()
        assert re.search(r"device dk-\w+ \(fingerprint \d{4}-\d{4}\)", walk.journal_text()), walk.journal_text()
        status = walk.run(doc_command(cmds, "status"))
        assert "running (pid" in status.stdout and "NOT paired" in status.stdout, status.stdout

        # 3. The owner key
        walk.run(doc_command(cmds, "owner", "keygen"))
        # 4A. Pair over MQTT: the service stopped, both sides show the same code and answer y
        walk.stop_service()
        device = walk.popen(doc_command(cmds, "pair", "--device"), stdin="y\n")
        owner = walk.run(doc_command(cmds, "pair", "--owner", "--key", "~/.config/doorkeep/owner.key", "--broker"),
                         stdin="y\n")
        dev_out, _ = device.communicate(timeout=120)
        assert device.returncode == 0, dev_out
        codes = [re.search(r"(\d{3} \d{3})", out) for out in (dev_out, owner.stdout)]
        assert all(codes) and codes[0].group(1) == codes[1].group(1), (dev_out, owner.stdout)  # type: ignore[union-attr]
        walk.start_service()
        device_id = re.findall(r"device (dk-\w+)", walk.journal_text())[-1]
        walk.fill["dk-…"] = device_id

        # 5. Settings: sign, check on the doorbell, apply (the ssh line: stop, apply, start)
        settings = settings_block(text).replace('host = "homeassistant.local"',
                                                f'host = "{mosquitto.host}"\nport = {mosquitto.port}')
        (tmp_path / "settings.toml").write_text(settings)
        sign = doc_command(cmds, "config", "sign")
        signed = walk.run(sign)
        assert "this adds 1 privacy mask: neighbour's window" in signed.stdout, signed.stdout
        check = walk.run(doc_command(cmds, "config", "check"))
        assert "`config apply` would accept it" in check.stdout and "neighbour's window" in check.stdout
        walk.stop_service()
        applied = walk.run(doc_command(cmds, "config", "apply", "settings.signed.json"))
        assert "applied configuration #1" in applied.stdout, applied.stdout
        walk.start_service()
        walk.wait_for(lambda: "connected to" in walk.run(doc_command(cmds, "status")).stdout.split("mqtt", 1)[-1],
                      "the service to reach the broker")

        # ... then a change pushed to the running service, which answers with its verdict
        (tmp_path / "settings.toml").write_text(settings + '[[zones]]\nname = "porch"\n'
                                                'polygon = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]\n')
        walk.run(sign)
        pushed = walk.run(doc_command(cmds, "config", "push"))
        assert f"{device_id} applied document #2" in pushed.stdout, pushed.stdout + pushed.stderr
        assert "this adds 1 zone: porch" in pushed.stdout, pushed.stdout
        walk.wait_for(lambda: "signed configuration #2 applied" in walk.run(doc_command(cmds, "status")).stdout,
                      "status to show configuration #2")
        status = walk.run(doc_command(cmds, "status")).stdout
        assert "running (pid" in status and "paired (owner key" in status, status

        # 6. Events, each signature verified: by the pinned device id, then by the key `identity show` prints
        event = walk.verified_person_event(doc_command(cmds, "events", "--broker", "homeassistant.local",
                                                       "--device-id"))
        assert event.get("zone") == "porch", event  # the pushed policy is in force
        shown = walk.run(doc_command(cmds, "identity", "show")).stdout
        key = re.search(r"public key\s+([0-9a-f]{64})", shown)
        assert key, shown
        walk.fill["<DEVICE_KEY>"] = key.group(1)
        by_key = doc_command(cmds, "events", "--broker", "homeassistant.local", "--device-key")
        walk.verified_person_event(by_key)
    finally:
        if walk.service is not None:
            walk.stop_service()
