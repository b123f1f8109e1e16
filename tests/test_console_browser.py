"""The owner console in a real headless Chromium, against a real mosquitto and a real ``doorkeep run`` process on a
file source (a real person photo walking past a wall, the real pinned detector).

One story in steps sharing the device, the console and the browser session (module fixtures): the owner unlocks;
a person event appears in the timeline, verified; the device page shows its health; locking forgets the key.
Every page is screenshotted to ``out/console/`` (printed).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from console_support import PASSPHRASE, DeviceProcess, Owner, owner_and_device, scene_video
from doorkeep.device.config import MqttSection

pytestmark = [pytest.mark.broker, pytest.mark.slow, pytest.mark.browser]


@dataclass
class Scene:
    owner: Owner
    device: DeviceProcess
    console: Any  # ConsoleService (the web stack is imported late: the tflite venv collects this module without it)

    @property
    def url(self) -> str:
        return self.console.url.rstrip("/")


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory, mosquitto_module, model_path: Path) -> Iterator[Scene]:
    from doorkeep.tools.console.server import ConsoleService

    root = tmp_path_factory.mktemp("console")
    owner = owner_and_device(root)
    video = scene_video(root / "door.mp4")
    device = DeviceProcess(owner, broker_port=mosquitto_module.port, video=video, model_dir=model_path.parent)
    console = ConsoleService(MqttSection(host=mosquitto_module.host, port=mosquitto_module.port, discovery=False,
                                         reconnect_max_s=2),
                             key_path=owner.key, device_id=owner.identity.device_id,
                             device_key=owner.identity.public_bytes, device_name="Front door", port=0,
                             book=owner.book)
    try:
        with console:
            yield Scene(owner, device, console)
    finally:
        device.stop()
        print(f"device log:\n{device.output()[-3000:]}")


def test_locked_console_shows_only_the_unlock_page_and_refuses_a_wrong_passphrase(scene: Scene, browser_module) -> None:
    b = browser_module
    b.get(scene.url + "/timeline")
    b.wait_for("redirect to unlock", lambda: b.driver.current_url.endswith("/unlock"))
    b.shot("01-unlock")
    b.find("#passphrase").send_keys("not the passphrase")
    b.find("#unlock-button").click()
    error = b.wait_for("wrong-passphrase message", lambda: b.find("#unlock-error").text)
    assert "does not open" in error
    assert not scene.console.session.unlocked


def test_owner_unlocks_and_a_person_event_appears_verified_in_the_timeline(scene: Scene, browser_module) -> None:
    b = browser_module
    b.get(scene.url + "/unlock")
    # A wrong passphrase delays the next try (throttle): wait it out as a person would.
    b.wait_for("unlock", lambda: _try_unlock(b, scene), timeout=20, every=1.0)
    assert scene.console.session.unlocked
    cookie = b.driver.get_cookie("dk_console")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict", cookie
    card = b.wait_for("a person visit in the timeline", lambda: b.find_all("#timeline .visit.person"), timeout=90)
    assert "verified" in card[0].text
    assert "Someone at the door" in card[0].text
    b.wait_for("the visit to end", lambda: "ongoing" not in b.find("#timeline .visit.person").get_attribute("class"),
               timeout=60)
    b.shot("02-timeline")


def _try_unlock(b, scene: Scene) -> bool:
    if not b.driver.current_url.endswith("/unlock"):
        return True
    field = b.find("#passphrase")
    field.clear()
    field.send_keys(PASSPHRASE)
    b.find("#unlock-button").click()
    return scene.console.session.unlocked and b.driver.current_url.endswith("/timeline")


def test_device_page_shows_availability_firmware_and_the_last_heartbeat(scene: Scene, browser_module) -> None:
    b = browser_module
    b.get(scene.url + "/device")
    assert b.wait_for("online", lambda: b.find("#availability").text == "online")
    assert b.find("#firmware").text not in ("", "—")
    b.wait_for("a heartbeat", lambda: "ago" in b.find("#last-heartbeat").text and b.find("#fps").text != "—")
    b.shot("06-device")


def test_lock_forgets_the_key_and_the_next_page_asks_again(scene: Scene, browser_module) -> None:
    b = browser_module
    b.get(scene.url + "/timeline")
    b.find("#lock-button").click()
    b.wait_for("the unlock page", lambda: b.driver.current_url.endswith("/unlock"))
    assert not scene.console.session.unlocked
    b.get(scene.url + "/device")
    assert b.driver.current_url.endswith("/unlock")
