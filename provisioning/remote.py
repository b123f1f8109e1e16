"""Owner-signed documents over MQTT: the owner's hub pushes a configuration or an owner rotation to the running
device, which answers with a device-signed result.

Topics (under the pairing family, docs/formats.md "Provisioning")::

    doorkeep/<id>/pair/doc      owner -> device   an owner document (canonical JSON, docs/formats.md)
    doorkeep/<id>/pair/result   device -> owner   {"format":"doorkeep/doc-result","v":1,"doc_hash","ok",
                                                   "counter","reason","detail","sig"}

Unlike the pairing exchange, ``pair/doc`` is listened to all the time: a document is self-authenticating (owner
signature, device id, counter), so the channel does not have to be trusted. Every document is audited by the
checks in :mod:`.signed_config` / :mod:`.rotation` whatever the outcome. Documents are applied on a worker thread,
never on the network thread: in the service, the device's inbox worker (device/channel/inbox.py) routes
``pair/doc`` here (:meth:`RemoteDocuments.handle`) and the owner channel's ``apply_config`` command uses
:meth:`RemoteDocuments.verdict`; standalone, :meth:`RemoteDocuments.start` runs its own worker.

Example (device side, in the service: tools/cmd_run.py ``owner_documents``)::

    remote = RemoteDocuments(client, prov, local=local_tables, on_applied=lambda verdict: reload.set())
    device.channel.inbox.route(remote.doc_topic, remote, max_bytes=MAX_BYTES)
    device.channel.owner.p.apply_config = remote.verdict
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import nacl.exceptions
import nacl.signing
from doorkeep.device.errors import FormatError, PublishError
from doorkeep.device.publish.mqtt import MqttClient
from doorkeep.device.publish.topics import Topics
from doorkeep.device.safe_text import printable
from doorkeep.device.vault import codec
from doorkeep.device.vault.keys import PublicKeys
from doorkeep.device.worker import Worker

from .device_state import DeviceProvisioning
from .documents import KIND_CONFIG, KIND_ROTATE, MAX_BYTES, OwnerDocument
from .errors import BadSignature, MalformedDocument, PairingMismatch, ProvisionRefused
from .rotation import apply_rotation
from .signed_config import Applied, SignedConfigStore

log = logging.getLogger(__name__)

LEAF_DOC, LEAF_RESULT = "doc", "result"
RESULT_FORMAT = "doorkeep/doc-result"
RESULT_DOMAIN = "doorkeep-doc-result-v1"


def doc_hash(data: bytes) -> str:
    return codec.blake2b(data, person=b"dk-prov-doc").hex()


@dataclass(frozen=True)
class DocResult:
    """The device's verdict on one pushed document."""

    doc_hash: str
    ok: bool
    counter: int | None
    reason: str
    detail: str


class RemoteDocuments:
    """Device side: apply owner documents arriving on ``pair/doc`` and publish signed results.

    Args:
        client: the service's MQTT client.
        prov: the device's provisioning state (with the service's audit log).
        local: the local TOML tables (only ``[device]``/``[capture]`` are used).
        on_config: called with the :class:`Applied` configuration (e.g. to rebuild the pipeline).
        on_rotation: called with the new owner keys (e.g. to reseal new clips to them).
    """

    def __init__(self, client: MqttClient, prov: DeviceProvisioning, *, local: dict[str, Any] | None = None,
                 on_config: Callable[[Applied], None] | None = None,
                 on_rotation: Callable[[PublicKeys], None] | None = None,
                 on_applied: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.client = client
        self.prov = prov
        self.store = SignedConfigStore(prov, local=local)
        self.on_config = on_config
        self.on_rotation = on_rotation
        #: After an accepted document's result was published (the service rebuilds the pipeline).
        self.on_applied = on_applied
        self._changed: list[str] = []
        topics = Topics(prov.identity.device_id)
        self.doc_topic, self.result_topic = topics.pairing(LEAF_DOC), topics.pairing(LEAF_RESULT)
        self._inbox: queue.Queue[bytes | None] = queue.Queue(maxsize=16)
        #: The supervised thread applying documents (``doorkeep-owner-docs``); register it with the supervisor.
        self.worker = _DocWorker(self)

    def start(self) -> None:
        self.worker.start()
        self.client.subscribe(self.doc_topic, self._on_message, qos=1)

    def stop(self) -> None:
        self.client.unsubscribe(self.doc_topic)
        self.worker.stop()

    def _on_message(self, _topic: str, payload: bytes) -> None:
        if len(payload) > MAX_BYTES:
            log.warning("dropped a %d-byte owner document (limit %d)", len(payload), MAX_BYTES)
            return
        try:
            self._inbox.put_nowait(bytes(payload))
        except queue.Full:
            log.warning("owner document queue full; dropped one")

    def _serve_one(self, worker: Worker) -> None:
        try:
            data = self._inbox.get(timeout=1.0)
        except queue.Empty:
            return
        if data is None or worker.stopping:
            return
        self.handle(data)

    def handle(self, data: bytes) -> None:
        """Apply one document from ``pair/doc`` and publish the signed result (inbox worker or own thread)."""
        result = self._safe_apply(data)
        h = self.client.publish_raw(self.result_topic, sign_result(result, self.prov.identity.sign), qos=1)
        if result.ok and self.on_applied is not None:
            try:
                h.wait(5.0)  # the verdict reaches the broker before the service restarts its pipeline
            except PublishError:
                log.warning("the document result was not acknowledged before the restart")
            self.on_applied(self._verdict_dict(result))

    def _safe_apply(self, data: bytes) -> DocResult:
        try:
            return self.apply(data)
        except Exception:  # a bug in one document's handling must not silence the owner's channel for good
            log.exception("owner document: unexpected error (refused)")
            return DocResult(doc_hash(data), False, None, "internal-error", "the device could not process it")

    def refuse(self, reason: str) -> None:
        """Inbox handler: a message dropped before it was read (too big, queue full)."""
        log.warning("dropped an owner document on %s: %s", self.doc_topic, reason)

    def verdict(self, data: bytes) -> dict[str, Any]:
        """The owner channel's ``apply_config``: apply and return the verdict as a dict (no result published)."""
        return self._verdict_dict(self._safe_apply(data))

    def _verdict_dict(self, r: DocResult) -> dict[str, Any]:
        return {"ok": r.ok, "reason": r.reason, "detail": r.detail, "counter": r.counter,
                "changed": list(self._changed) if r.ok else []}

    def apply(self, data: bytes) -> DocResult:
        """Apply one document (config or rotation) and return the verdict; refusals are audited, never raised."""
        h = doc_hash(data)
        self._changed = []
        try:
            kind = _peek_kind(data)
            if kind == KIND_ROTATE:
                new = apply_rotation(self.prov, data)
                counter = self.prov.last_counter()
                self._changed = ["owner"]
                if self.on_rotation:
                    self.on_rotation(new)
            else:
                applied = self.store.apply(data)
                counter = applied.counter
                self._changed = list(applied.changed)
                if self.on_config:
                    self.on_config(applied)
        except ProvisionRefused as exc:
            log.warning("owner document refused: %s", printable(exc))
            return DocResult(h, False, None, exc.reason, exc.detail[:300])
        return DocResult(h, True, counter, "applied", "")


class _DocWorker(Worker):
    def __init__(self, remote: RemoteDocuments) -> None:
        super().__init__("owner-docs")
        self.remote = remote

    def _wake(self) -> None:
        try:
            self.remote._inbox.put_nowait(None)
        except queue.Full:
            pass  # it finishes the queued documents first, then sees the stop flag

    def _run(self) -> None:
        while not self.stopping:
            self.remote._serve_one(self)
            self.mark()


def _peek_kind(data: bytes) -> str:
    try:
        return OwnerDocument.from_bytes(data).kind
    except ProvisionRefused:
        return KIND_CONFIG  # the config path refuses (and audits) it with its reason


def sign_result(r: DocResult, sign: Callable[[bytes], bytes]) -> bytes:
    body = {"format": RESULT_FORMAT, "v": 1, "doc_hash": r.doc_hash, "ok": r.ok, "counter": r.counter,
            "reason": r.reason, "detail": r.detail}
    sig = sign(codec.signed_message(RESULT_DOMAIN, codec.canonical(body)))
    return codec.canonical({**body, "sig": codec.b64e(sig)}) + b"\n"


def parse_result(data: bytes, *, device_key: bytes) -> DocResult:
    """Owner side: verify a result against the pinned device key."""
    try:
        f = codec.Fields(codec.parse_json(data, what="document result"), what="document result")
        f.header(RESULT_FORMAT, 1)
        f.only("format", "v", "doc_hash", "ok", "counter", "reason", "detail", "sig")
        body = {k: v for k, v in f.obj.items() if k != "sig"}
        try:
            nacl.signing.VerifyKey(device_key).verify(codec.signed_message(RESULT_DOMAIN, codec.canonical(body)),
                                                      f.b64("sig", length=64))
        except nacl.exceptions.BadSignatureError:
            raise BadSignature("document result: not signed by the pinned device key") from None
        counter = None if f.obj.get("counter") is None else f.integer("counter")
        return DocResult(f.hexstr("doc_hash", length=32), f.flag("ok"), counter, f.text("reason", max_len=64),
                         f.text("detail", max_len=400, empty=True))
    except FormatError as exc:
        raise MalformedDocument(str(exc)) from None


def push_document(client: MqttClient, *, device_id: str, device_key: bytes, data: bytes,
                  timeout: float) -> DocResult:
    """Owner side: publish a document to the device and wait for its signed verdict on this document.

    Raises:
        PairingMismatch: no verdict within ``timeout`` (reason ``timeout``) — is the device online?
    """
    topics = Topics(device_id)
    want = doc_hash(data)
    results: queue.Queue[DocResult] = queue.Queue()

    def on_result(_topic: str, payload: bytes) -> None:
        try:
            r = parse_result(payload, device_key=device_key)
        except ProvisionRefused as exc:
            log.warning("ignored a result: %s", printable(exc))
            return
        if r.doc_hash == want:
            results.put(r)

    client.subscribe(topics.pairing(LEAF_RESULT), on_result, qos=1)
    try:
        client.wait_subscribed(timeout)
        client.publish_raw(topics.pairing(LEAF_DOC), data, qos=1).wait(timeout)
        try:
            return results.get(timeout=timeout)
        except queue.Empty:
            raise PairingMismatch(f"no answer from {device_id} within {timeout:.0f} s (is it online?)",
                                  reason="timeout") from None
    finally:
        client.unsubscribe(topics.pairing(LEAF_RESULT))
