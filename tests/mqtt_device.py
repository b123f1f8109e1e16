"""A device process for MQTT tests: a real MqttPublisher with its durable outbox, killed and restarted by tests.

Usage: python tests/mqtt_device.py PORT STATE_DIR FIRST COUNT
Queues a person start and end for event ids ev<FIRST> … ev<FIRST+COUNT-1> (printing ``queued <i>`` once both
are durable in the outbox), prints ``done`` and keeps running (publishing) until killed.
"""

from __future__ import annotations

import sys
import time

import nacl.signing
from doorkeep.device.config import MqttSection
from doorkeep.device.events import Event
from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.publish.publisher import MqttPublisher

SEED = bytes([11]) * 32


def main() -> None:
    port, state, first, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    ident = DeviceIdentity(nacl.signing.SigningKey(SEED))
    settings = MqttSection(host="127.0.0.1", port=port, keepalive=5, reconnect_min_s=1, reconnect_max_s=2,
                           heartbeat_s=3600, discovery=False)
    pub = MqttPublisher(settings, ident, state_dir=state)
    pub.start()
    for i in range(first, first + count):
        t = time.time()
        pub.on_event(Event(f"ev{i}", "person", "start", t, t, None, 0.9, "porch", True))
        pub.on_event(Event(f"ev{i}", "person", "end", t + 0.001, t, t + 0.001, 0.9, "porch", True))
        print(f"queued {i}", flush=True)
    print("done", flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
