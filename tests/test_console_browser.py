"""The owner console in a real headless Chromium, against a real mosquitto and a real ``doorkeep run`` process on a
file source (a real person photo walking past a wall, the real pinned detector), over the owner channel.

One story in steps sharing the device, the console and the browser session (module fixtures): the owner unlocks;
a person event appears in the timeline, verified, with its clip's thumbnail; the clip plays (the video element's
``currentTime`` advances); a relayed request is approved and the recipient's ``doorkeep decrypt`` yields the clip;
another is declined; a mask drawn in Settings reaches the device as a signed configuration and the device's later
frames are black there; the audit page shows each of these; the device page shows its health; locking forgets
the key. Every page is screenshotted to ``out/console/`` (printed).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from console_support import PASSPHRASE, DeviceProcess, Owner, doorkeep, owner_and_device, scene_video
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


def _try_unlock(b, scene: Scene) -> bool:
    if not b.driver.current_url.endswith("/unlock"):
        return True
    field = b.find("#passphrase")
    field.clear()
    field.send_keys(PASSPHRASE)
    b.find("#unlock-button").click()
    return scene.console.session.unlocked and b.driver.current_url.endswith("/timeline")


def test_the_visit_gets_its_clip_thumbnail_and_the_clip_plays(scene: Scene, browser_module) -> None:
    b = browser_module
    b.get(scene.url + "/timeline")
    thumb = b.wait_for("a clip thumbnail", lambda: _loaded_thumb(b), timeout=90)
    b.shot("02-timeline")
    thumb.click()
    b.wait_for("the clip page", lambda: "/clip/" in b.driver.current_url)
    b.wait_for("the video to load", lambda: b.js("return document.getElementById('player').readyState") >= 2,
               timeout=60)
    def now_playing() -> float:
        return float(b.js("return document.getElementById('player').currentTime"))

    t0 = now_playing()
    b.wait_for("currentTime to advance", lambda: now_playing() > t0 + 0.5, timeout=30)
    assert "signed by the device" in b.find("#facts").text
    assert b.js("return document.getElementById('player').videoWidth") == 640
    b.shot("03-clip")
    # Download MP4 (the only way plaintext reaches the disk, by the owner's click) serves the same MP4 as a file.
    href = b.find("#download").get_attribute("href")
    got = b.js("return fetch(arguments[0]).then(async r => [r.status, r.headers.get('content-disposition'), "
               "r.headers.get('content-type'), new TextDecoder('latin1').decode((await r.arrayBuffer()).slice(4, 8))])",
               href)
    assert got[0] == 200 and got[1].startswith("attachment;") and ".mp4" in got[1], got
    assert got[2] == "video/mp4" and got[3] == "ftyp", got
    # Nothing readable went to disk: the console's directory holds only the clip as the device stores it.
    assert all(p.suffix in (".clip", ".manifest") for p in scene.console.media.dir.iterdir())


def _loaded_thumb(b):
    for img in b.find_all("#timeline .visit.person a.thumb img"):
        if b.js("return arguments[0].complete && arguments[0].naturalWidth > 0", img):
            return img
    return None


def test_a_relayed_request_is_approved_and_the_recipient_decrypts_the_clip(scene: Scene, browser_module,
                                                                           tmp_path: Path) -> None:
    b = browser_module
    broker = f"127.0.0.1:{scene.console.settings.port}"
    (tmp_path / "rec.pass").write_text("recipient secret\n")
    doorkeep("recipient", "keygen", "--out", tmp_path / "rec.key", "--kdf", "min",
             "--passphrase-file", tmp_path / "rec.pass")
    now = time.time()
    receiver = subprocess.Popen([sys.executable, "-m", "doorkeep.tools.cli", "recipient", "receive", "--broker", broker,
                                 "--pub", str(tmp_path / "rec.key.pub"), "--device-id", scene.owner.identity.device_id,
                                 "--out", str(tmp_path / "got.bundle"), "--seconds", "240"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        doorkeep("request", "--key", tmp_path / "rec.key", "--passphrase-file", tmp_path / "rec.pass",
                 "--requester", "Example PD", "--incident", "incident 42", "--purpose", "identify a parcel thief",
                 "--from", str(now - 3600), "--to", str(now + 60), "--send", broker,
                 "--device", scene.owner.identity.device_id)
        b.get(scene.url + "/requests")
        card = b.wait_for("the request in the inbox", lambda: _reload_until(b, "#requests .request.pending"),
                          timeout=60)
        assert "Example PD" in card.text and "incident 42" in card.text
        ticked = [x for x in b.find_all(".request.pending input[name=clip]") if x.is_selected()]
        assert ticked, "no clip in the request's window was offered"
        b.shot("04-requests")
        b.find(".request.pending .approve-button").click()
        b.wait_for("approved", lambda: _reload_until(b, "#requests .request.approved"), timeout=240, every=1.0)
        b.shot("05-requests-approved")
        out = receiver.communicate(timeout=240)[0]
        assert receiver.returncode == 0, out
    finally:
        if receiver.poll() is None:
            receiver.kill()
    # The recipient has the owner's public key from the owner: the Requests page offers it for download.
    (tmp_path / "owner.key.pub").write_text(b.js("return fetch('/owner.key.pub').then(r => r.text())"))
    report = json.loads(doorkeep("decrypt", tmp_path / "got.bundle", "--key", tmp_path / "rec.key",
                                 "--passphrase-file", tmp_path / "rec.pass", "--owner", tmp_path / "owner.key.pub",
                                 "--expect-device", scene.owner.identity.device_id, "--out", tmp_path / "mp4",
                                 "--json"))
    assert report["ok"] is True and report["owner_verified"] is True and report["requester"] == "Example PD"
    mp4s = sorted((tmp_path / "mp4").glob("*.mp4"))
    assert len(mp4s) == len(ticked) and len(_frames(mp4s[0])) > 30


def test_a_request_is_declined(scene: Scene, browser_module, tmp_path: Path) -> None:
    b = browser_module
    (tmp_path / "r.pass").write_text("x\n")
    doorkeep("recipient", "keygen", "--out", tmp_path / "r.key", "--kdf", "min",
             "--passphrase-file", tmp_path / "r.pass")
    doorkeep("request", "--key", tmp_path / "r.key", "--passphrase-file", tmp_path / "r.pass", "--requester",
             "Curious Neighbour", "--incident", "none", "--purpose", "just looking", "--from", "2020-01-01",
             "--to", "2020-01-02", "--send", f"127.0.0.1:{scene.console.settings.port}",
             "--device", scene.owner.identity.device_id)
    b.get(scene.url + "/requests")
    b.wait_for("the second request", lambda: _reload_until(b, "#requests .request.pending"), timeout=60)
    b.find(".request.pending input[name=reason]").send_keys("no footage for neighbours")
    b.find(".request.pending .decline-button").click()
    b.wait_for("declined", lambda: _reload_until(b, "#requests .request.declined"), timeout=60)


def _reload_until(b, css: str):
    found = b.find_all(css)
    if not found:
        b.driver.refresh()
    return found[0] if found else None


#: The mask drawn in the test: the right fifth of the frame (the visitor stands in the middle).
MASK_BOX = (0.8, 0.05, 0.98, 0.95)


def test_a_mask_drawn_in_settings_reaches_the_device_and_later_frames_are_black_there(scene: Scene,
                                                                                     browser_module) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    b = browser_module
    b.get(scene.url + "/settings")
    b.wait_for("the live view", lambda: b.js("const i = document.getElementById('view'); "
                                             "return i.complete && i.naturalWidth > 0"), timeout=30)
    before = scene.console.link.require().live_snapshot()
    assert _region_luma(before.jpeg) > 40, "the region to mask is not black before the mask"
    b.find("#draw-mask").click()
    svg = b.find("#overlay")
    b.js("arguments[0].scrollIntoView({block: 'center'})", svg)
    w, h = svg.size["width"], svg.size["height"]
    x0, y0, x1, y1 = MASK_BOX
    for fx, fy in ((x0, y0), (x1, y0), (x1, y1), (x0, y1)):
        chain = ActionChains(b.driver).move_to_element_with_offset(svg, int((fx - 0.5) * w), int((fy - 0.5) * h))
        chain.click().perform()
    b.find("#finish").click()
    assert len(b.find_all("#overlay polygon.mask")) == 1
    name = b.find("#masks-list input")
    name.clear()
    name.send_keys("neighbour")
    b.find("#save").click()
    verdict = b.wait_for("the device's verdict", lambda: b.find("#verdict.ok").text, timeout=60)
    assert "applied configuration #" in verdict
    b.shot("07-settings")

    def masked() -> bool:
        try:
            return _region_luma(scene.console.link.require().live_snapshot().jpeg) < 25
        except Exception:  # noqa: BLE001 — the device restarts its pipeline with the new configuration
            return False

    b.wait_for("black frames in the masked region", masked, timeout=90, every=1.0)
    b.find("#refresh-view").click()
    time.sleep(1.5)
    b.shot("08-settings-masked")
    # The device kept its broker settings (the console edited the applied configuration, not a blank one).
    assert scene.device.proc.poll() is None


def _region_luma(jpeg: bytes) -> float:
    import io

    import numpy as np
    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(jpeg)).convert("L"), dtype=np.float64)
    h, w = img.shape
    x0, y0, x1, y1 = MASK_BOX
    # 4 % inside the drawn edges: the mask is rasterised at pixel centres and the JPEG blurs its border.
    return float(img[int((y0 + 0.04) * h):int((y1 - 0.04) * h), int((x0 + 0.04) * w):int((x1 - 0.04) * w)].mean())


def _frames(mp4: Path) -> list:
    import av

    with av.open(str(mp4)) as c:
        return [f.to_ndarray(format="yuv420p") for f in c.decode(video=0)]


def test_the_audit_page_shows_the_request_the_release_the_decline_and_the_mask(scene: Scene, browser_module) -> None:
    b = browser_module
    b.get(scene.url + "/audit")
    history = b.wait_for("the audit history", lambda: b.find("#history").text, timeout=60)
    assert "Example PD asked for footage (incident 42)" in history
    assert "Your release of 1 clip" in history or "Your release of" in history
    assert "Footage sent under grant" in history
    assert "You declined request" in history and "no footage for neighbours" in history
    assert "Configuration #" in history and "masks" in history
    checks = b.find("#audit-checks").text
    assert "chain intact" in checks and "head seen" in b.find("#heads-seen").text
    b.shot("09-audit")


def test_device_page_shows_availability_firmware_and_the_last_heartbeat(scene: Scene, browser_module) -> None:
    b = browser_module
    b.get(scene.url + "/device")
    assert b.wait_for("online", lambda: b.find("#availability").text == "online")
    assert b.find("#firmware").text not in ("", "—")
    b.wait_for("a heartbeat", lambda: "ago" in b.find("#last-heartbeat").text and b.find("#fps").text != "—")
    # The device has recorded clips by now: the heartbeat says how much they take.
    b.wait_for("the clips' storage", lambda: b.find("#storage").text not in ("0 B", "—", ""), timeout=60)
    b.shot("06-device")


def test_lock_forgets_the_key_and_the_next_page_asks_again(scene: Scene, browser_module) -> None:
    b = browser_module
    b.get(scene.url + "/timeline")
    b.find("#lock-button").click()
    b.wait_for("the unlock page", lambda: b.driver.current_url.endswith("/unlock"))
    assert not scene.console.session.unlocked
    b.get(scene.url + "/device")
    assert b.driver.current_url.endswith("/unlock")
