"""#11.3: an unreachable broker is said — once per failure streak, with the reason and the next retry — and so is
its recovery; `doorkeep events` gives up with one clear line unless `--wait`."""

from __future__ import annotations

import logging
import threading

from doorkeep.device import activity
from doorkeep.device.config import MqttSection
from doorkeep.device.publish.mqtt import MqttClient
from doorkeep.tools.cli import main
from fixtures_broker import free_port
from worker_faults import wait_until

DEVICE_KEY = "ab" * 32


def _lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == activity.NAME]


def test_connect_failures_are_said_once_per_streak_and_the_recovery_too(mosquitto, caplog):
    caplog.set_level(logging.INFO, logger=activity.NAME)
    where = f"{mosquitto.host}:{mosquitto.port}"
    mosquitto.stop()
    client = MqttClient(MqttSection(host=mosquitto.host, port=mosquitto.port, reconnect_min_s=1, reconnect_max_s=1),
                        client_id="dk-link-test")
    client.start()
    try:
        wait_until(lambda: client.link.failures >= 3, 60, "three failed connect attempts")
        assert _lines(caplog) == [f"cannot connect to {where}: Connection refused, retrying in 1 s"]
        assert client.last_error == "Connection refused"

        mosquitto.start()
        client.wait_connected(60)
        assert _lines(caplog)[1].startswith(f"MQTT connected to {where} after ")
        assert client.last_error == ""

        caplog.clear()
        mosquitto.stop()  # an established link drops: said once, then the failed reconnects once more
        wait_until(lambda: client.link.failures >= 3, 60, "three failed reconnects")
        lost, failing = _lines(caplog)
        assert lost.startswith(f"MQTT connection to {where} lost: ") and lost.endswith("reconnecting in 1 s")
        assert failing == f"cannot connect to {where}: Connection refused, retrying in 1 s"

        mosquitto.start()
        client.wait_connected(60)
        assert _lines(caplog)[-1].startswith(f"MQTT connected to {where} again after ")
        assert len(_lines(caplog)) == 3
    finally:
        client.stop()


def test_events_gives_up_on_an_unreachable_broker_in_one_line(capsys):
    port = free_port()
    rc = main(["events", "--broker", f"127.0.0.1:{port}", "--device-key", DEVICE_KEY, "--timeout", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1
    assert err[-1] == (f"doorkeep: cannot reach the MQTT broker 127.0.0.1:{port} within 2 s (Connection refused); "
                       "--wait keeps trying")


def test_events_wait_keeps_trying_until_the_broker_comes(mosquitto, capsys):
    mosquitto.stop()
    later = threading.Timer(3.0, mosquitto.start)  # the broker comes up after the 1 s timeout has passed
    later.start()
    try:
        rc = main(["events", "--broker", mosquitto.url, "--device-key", DEVICE_KEY, "--timeout", "1", "--wait",
                   "--seconds", "20"])
    finally:
        later.cancel()
        later.join()
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "listening on" in err and "cannot reach" not in err
