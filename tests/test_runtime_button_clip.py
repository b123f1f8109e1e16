"""#10.7: a doorbell press records a clip (pre-roll + post-roll) like a person event, and the published, signed
doorbell event says clip=true — over the real mosquitto, with the real model in the assembled device."""

from __future__ import annotations

import time

import pytest
from doorkeep.device.assembly import assemble
from doorkeep.device.config import Config
from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.publish.payload import verify
from doorkeep.device.publish.topics import Topics
from doorkeep.device.sources.synthetic import Scene, SyntheticSource, default_scene
from doorkeep.device.vault.clips import decrypt_clip, open_clip_key, parse_header
from doorkeep.device.vault.keys import SecretKeys, pin_owner_public
from fixtures_broker import Subscriber
from worker_faults import wait_until

pytestmark = [pytest.mark.broker, pytest.mark.detection]

PREROLL_S, POSTROLL_S, FPS = 2.0, 1.0, 30


def test_a_press_with_nobody_detected_records_a_clip_and_says_so(tmp_path, mosquitto, model_path) -> None:
    state = tmp_path / "state"
    identity = DeviceIdentity.load_or_create(state)
    owner = SecretKeys.generate("owner")
    pin_owner_public(state, owner.public)
    config = Config.from_dict({
        "device": {"state_dir": str(state)},
        "capture": {"main_width": 320, "main_height": 240, "preroll_s": PREROLL_S, "gop": FPS},
        "mqtt": {"host": mosquitto.host, "port": mosquitto.port},
        "vault": {"fsync_chunks": False, "postroll_s": POSTROLL_S}})
    # An empty, still scene: the gate never opens and no person is ever detected (a hooded visitor).
    still = Scene(background=default_scene(320, 240).background)
    device = assemble(config, identity=identity, source=SyntheticSource(width=320, height=240, fps=FPS, scene=still))
    topics = Topics(identity.device_id)
    with device, Subscriber(mosquitto, topics.event) as events:
        vault, button = device.vault, device.button
        assert vault is not None and button is not None
        wait_until(lambda: device.bell.preroll.bytes > 0 and device.bell.source.frames > FPS * (PREROLL_S + 0.5),
                   what="a full pre-roll")
        t_press = time.time()
        pts_press = device.bell.source.frames * 1e6 / FPS  # the synthetic source stamps frame i with i/fps s
        press = button.press()
        assert press is not None
        wait_until(lambda: vault.store.manifests(), timeout=30, what="the press clip to be closed")
        (_topic, payload, _retain) = events.get(timeout=10)
    (m,) = vault.store.manifests()
    assert m.complete and m.event_ids == (press.event_id,)
    assert device.bell.stats.snapshot()["counters"].get("inferences", 0) == 0  # nobody was detected
    # pre-roll (from the keyframe before it) + post-roll; judged on the clip's own packets, so a loaded machine
    # that delays frames cannot fail it
    data = vault.store.clip_path(m.clip_id).read_bytes()
    _header, packets = decrypt_clip(data, open_clip_key(parse_header(data), owner))
    assert packets[0].keyframe and packets[0].has_config
    assert packets[0].pts <= pts_press - (PREROLL_S - 1.0) * 1e6  # GOP 1 s: at least 1 s before the press
    assert packets[-1].pts >= pts_press  # footage after the press
    # closed by the post-roll, counted from the press (the source may stamp a frame up to 5 periods late)
    assert m.t_end is not None and t_press <= m.t_end <= t_press + POSTROLL_S + 5 / FPS + 0.05
    ev = verify(payload, identity.public_bytes)
    assert (ev.kind, ev.phase, ev.event_id, ev.clip) == ("doorbell", "press", press.event_id, True)
