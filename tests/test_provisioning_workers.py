"""The provisioning threads are supervised workers: the owner-document applier (``doorkeep-owner-docs``) and the
pairing announcer (``doorkeep-pair-announce``) — each made to raise once is restarted, named, and stops promptly."""

from __future__ import annotations

import threading
from typing import Any

from doorkeep.provisioning.pairing import DevicePairing
from doorkeep.provisioning.pairing_mqtt import _Announcer
from doorkeep.provisioning.remote import RemoteDocuments
from provisioning_support import new_device
from worker_faults import check_restarted_after_one_crash, raise_once, wait_until


class StubClient:
    """The part of MqttClient these workers use, recording publishes."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []
        self.handlers: dict[str, Any] = {}

    def subscribe(self, topic: str, handler: Any, qos: int = 1) -> None:
        self.handlers[topic] = handler

    def unsubscribe(self, topic: str) -> None:
        self.handlers.pop(topic, None)

    def publish_raw(self, topic: str, payload: bytes, **_: Any) -> None:
        self.published.append((topic, payload))


def test_owner_document_worker_is_restarted_after_a_crash_and_still_answers(tmp_path) -> None:
    dev = new_device(tmp_path / "state")
    client = StubClient()
    remote = RemoteDocuments(client, dev.prov)  # type: ignore[arg-type]
    raise_once(remote, "_serve_one")
    remote.start()
    try:
        assert remote.worker.name == "doorkeep-owner-docs"
        check_restarted_after_one_crash(remote.worker)
        client.handlers[remote.doc_topic](remote.doc_topic, b"not a document")
        wait_until(lambda: any(t == remote.result_topic for t, _ in client.published), what="a signed verdict")
    finally:
        remote.stop()
    assert "doorkeep-owner-docs" not in [t.name for t in threading.enumerate()]


def test_pairing_announcer_is_a_restartable_worker(tmp_path) -> None:
    dev = new_device(tmp_path / "state")
    client = StubClient()
    ann = _Announcer(client, DevicePairing(dev.prov), "doorkeep/x/pair/open")  # type: ignore[arg-type]
    raise_once(client, "publish_raw")
    ann.start()
    try:
        assert ann.name == "doorkeep-pair-announce"
        check_restarted_after_one_crash(ann, after_restart=lambda: client.published)
    finally:
        assert ann.stop(timeout=2)
