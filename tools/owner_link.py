"""The owner's link to one device over the owner's own MQTT broker: verified live streams and owner-signed commands.

Everything that arrives is verified against the device key before anyone sees it (events, the signed heartbeat,
request notices, every reply); everything sent is signed with the owner key (docs/formats.md#owner-channel).
Media arrive only as the device stores them — clip files sealed to the owner, sealed snapshots — and are opened
here, on the owner's machine.

Example::

    from doorkeep.device.config import MqttSection
    from doorkeep.device.vault.keys import SecretKeys
    from doorkeep.tools.owner_link import OwnerLink

    owner = SecretKeys.load("owner.key", b"passphrase", role="owner")
    link = OwnerLink(MqttSection(host="hub.local"), owner=owner, device_key=bytes.fromhex("03a1…"))
    link.on_event = lambda ev: print(ev.kind, ev.phase, ev.t)          # VerifiedEvent (payload.py)
    link.on_heartbeat = lambda hb, warning: print(hb["fps"], warning)   # signed heartbeat fields; warning "" or why
    link.on_availability = lambda online: print("online" if online else "offline")
    link.on_request = lambda notice: print(notice.request.requester)   # vault.requests.Notice, device-signed
    with link:                                                          # connects and subscribes (waits for SUBACK)
        clips = link.list_clips()                                       # [ClipInfo], oldest first
        link.fetch_clip(clips[-1].clip_id, Path("front.clip"),          # resumable; verified against the manifest
                        progress=lambda done, total: print(done, total))
        snap = link.fetch_snapshot(clips[-1].clip_id)                   # Snapshot (.jpeg, .t, .width, .height)
        view = link.live_snapshot()                                     # the masked camera view, now
        records = link.fetch_audit(0)                                   # [AuditRecord], chain + signatures checked
        verdict = link.apply_config(Path("signed.json").read_bytes())   # Verdict(ok, reason, detail, result)
        verdict = link.send_grant(Path("grant.json").read_bytes())      # the device exports to the recipient
        link.decline_request(notice.request.request_id, "not our street")

Commands wait for the device's signed answer and raise a :class:`~doorkeep.device.errors.ChannelError`:
``CommandRefused`` (``.reason``, ``.detail``: the device said no), ``ChannelTimeout`` (no complete answer: offline,
or a command this device refused unanswered — replayed, wrong device, over its rate) or ``ReplyInvalid``.
Callbacks run on one dispatcher thread (``doorkeep-owner-link``), never the network thread; keep them short.
"""

from __future__ import annotations

import logging
import os
import queue
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from doorkeep.device.channel.protocol import MAX_RANGE, Reply, parse_reply, sign_command
from doorkeep.device.channel.snapshots import Snapshot, open_snapshot
from doorkeep.device.config import MqttSection
from doorkeep.device.errors import (
    ChannelError,
    ChannelTimeout,
    CommandRefused,
    FormatError,
    KeyRoleError,
    PayloadError,
    PublishError,
)
from doorkeep.device.fileio import write_atomic
from doorkeep.device.identity import device_id_for
from doorkeep.device.publish.mqtt import MqttClient
from doorkeep.device.publish.payload import VerifiedEvent, verify
from doorkeep.device.publish.topics import OFFLINE, ONLINE, Topics
from doorkeep.device.vault.audit import AuditRecord
from doorkeep.device.vault.codec import parse_json
from doorkeep.device.vault.keys import SecretKeys
from doorkeep.device.vault.manifest import Manifest
from doorkeep.device.vault.requests import Notice, parse_notice
from doorkeep.tools.hub import HeartbeatCheck
from doorkeep.tools.owner_fetch import (
    ClipInfo,
    check_audit,
    check_clip_file,
    write_range,
)

log = logging.getLogger(__name__)
RANGE = 2 << 20  # bytes per fetch command; two are in flight (the owner's credit window)
assert RANGE <= MAX_RANGE

__all__ = ["ClipInfo", "OwnerLink", "Verdict"]


@dataclass(frozen=True)
class Verdict:
    """The device's signed answer to a state-changing command."""

    ok: bool
    reason: str
    detail: str
    result: dict[str, Any]


class _Call:
    """The replies to one command, in ``seq`` order (duplicates from QoS 1 redelivery ignored)."""

    def __init__(self) -> None:
        self.q: queue.Queue[Reply] = queue.Queue()
        self.next_seq = 0
        self._held: dict[int, Reply] = {}

    def replies(self, timeout: float) -> Any:
        while True:
            if self.next_seq in self._held:
                r = self._held.pop(self.next_seq)
            else:
                try:
                    r = self.q.get(timeout=timeout)
                except queue.Empty:
                    raise ChannelTimeout(f"no answer from the device within {timeout:.0f} s (offline, or the "
                                         "command was refused unanswered)") from None
                if r.seq != self.next_seq:
                    if r.seq > self.next_seq:
                        self._held[r.seq] = r
                    continue
            self.next_seq += 1
            yield r
            if r.final:
                return


class OwnerLink:
    """One owner tool's connection to one device. See the module docstring.

    Args:
        settings: the owner's broker (``MqttSection``: host, port, TLS, credentials).
        owner: the owner's secret keys (signs commands, opens snapshots).
        device_key: the device's Ed25519 public key (32 bytes), pinned at pairing.
        timeout: seconds to wait for an answer (per message of a stream).
    """

    def __init__(self, settings: MqttSection, *, owner: SecretKeys, device_key: bytes, timeout: float = 15.0) -> None:
        if owner.role != "owner":
            raise KeyRoleError("OwnerLink needs the owner's keys (role 'owner')")
        self.owner, self.device_key, self.timeout = owner, bytes(device_key), timeout
        self.device_id = device_id_for(self.device_key)
        self.topics = Topics(self.device_id)
        self.tool_id = "o-" + secrets.token_hex(6)
        self.heartbeats = HeartbeatCheck(self.device_key)
        self.on_event: Callable[[VerifiedEvent], None] | None = None
        self.on_heartbeat: Callable[[dict[str, Any], str], None] | None = None
        self.on_availability: Callable[[bool], None] | None = None
        self.on_request: Callable[[Notice], None] | None = None
        self.on_rejected: Callable[[str, str, str], None] | None = None
        self.online: bool | None = None
        self._calls: dict[str, _Call] = {}
        self._lock = threading.Lock()
        self._dispatch: queue.Queue[Callable[[], None] | None] = queue.Queue(maxsize=10_000)
        self._thread: threading.Thread | None = None
        self._client = MqttClient(settings, client_id=f"doorkeep-owner-{self.tool_id}")
        t = self.topics
        for topic, handler in ((t.owner_reply(self.tool_id), self._on_reply), (t.event, self._on_event),
                               (t.stats, self._on_stats), (t.availability, self._on_availability),
                               (t.request, self._on_notice)):
            self._client.subscribe(topic, handler, qos=1)

    # ------------------------------------------------------------------------------------------ lifecycle
    def start(self, *, timeout: float = 15.0) -> None:
        """Connect and wait until every subscription is acknowledged (raises ChannelTimeout)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run_dispatch, name="doorkeep-owner-link", daemon=True)
            self._thread.start()
        self._client.start()
        try:
            self._client.wait_subscribed(timeout)
        except PublishError as exc:
            raise ChannelTimeout(str(exc)) from None

    def close(self) -> None:
        self._client.stop()
        if self._thread is not None:
            self._dispatch.put(None)
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        return self._client.connected

    # ------------------------------------------------------------------------------------------ live streams
    def _emit(self, fn: Callable[..., None] | None, *args: Any) -> None:
        if fn is not None:
            try:
                self._dispatch.put_nowait(lambda: fn(*args))
            except queue.Full:
                log.warning("owner link: callbacks are not keeping up; one dropped")

    def _run_dispatch(self) -> None:
        while (fn := self._dispatch.get()) is not None:
            try:
                fn()
            except Exception:
                log.exception("owner link callback failed")

    def _reject(self, topic: str, reason: str, detail: str) -> None:
        log.warning("rejected a message on %s: %s %s", topic, reason, detail)
        self._emit(self.on_rejected, topic, reason, detail)

    def _on_event(self, topic: str, payload: bytes) -> None:
        try:
            self._emit(self.on_event, verify(payload, self.device_key))
        except PayloadError as exc:
            self._reject(topic, getattr(exc, "reason", "invalid"), str(exc))

    def _on_stats(self, topic: str, payload: bytes) -> None:
        try:
            hb = self.heartbeats.check(payload)
        except PayloadError as exc:
            self._reject(topic, f"heartbeat {getattr(exc, 'reason', 'invalid')}", str(exc))
            return
        self._emit(self.on_heartbeat, hb, self.heartbeats.last_warning)

    def _on_availability(self, _topic: str, payload: bytes) -> None:
        if payload in (ONLINE, OFFLINE):  # unsigned by nature (the broker's last will): a hint, not evidence
            self.online = payload == ONLINE
            self._emit(self.on_availability, self.online)

    def _on_notice(self, topic: str, payload: bytes) -> None:
        try:
            self._emit(self.on_request, parse_notice(payload, self.device_key))
        except FormatError as exc:
            self._reject(topic, "request notice", str(exc))

    def _on_reply(self, topic: str, payload: bytes) -> None:
        try:
            r = parse_reply(payload, self.device_key, self.owner)
        except ChannelError as exc:
            self._reject(topic, exc.reason, exc.detail)
            return
        with self._lock:
            call = self._calls.get(r.nonce)
        if call is not None:
            call.q.put(r)

    # ------------------------------------------------------------------------------------------ commands
    def _send(self, cmd: str, args: dict[str, Any] | None = None, body: bytes = b"") -> tuple[str, _Call]:
        data = sign_command(self.owner, device_id=self.device_id, cmd=cmd, args=args, body=body,
                            reply_to=self.tool_id)
        nonce = str(parse_json(data[:data.index(b"\n")], what="command")["nonce"])
        call = _Call()
        with self._lock:
            self._calls[nonce] = call
        try:
            self._client.publish_raw(self.topics.owner_cmd, data, qos=1).wait(self.timeout)
        except PublishError as exc:
            self._forget(nonce)
            raise ChannelTimeout(f"could not publish the command: {exc}") from None
        return nonce, call

    def _forget(self, nonce: str) -> None:
        with self._lock:
            self._calls.pop(nonce, None)

    def _stream(self, cmd: str, args: dict[str, Any] | None = None, body: bytes = b"", *,
                timeout: float | None = None) -> Any:
        """Send a command now; return an iterator over its replies in order (CommandRefused on a refusal)."""
        nonce, call = self._send(cmd, args, body)
        return self._replies(nonce, call, timeout)

    def _replies(self, nonce: str, call: _Call, timeout: float | None) -> Any:
        try:
            for r in call.replies(timeout or self.timeout):
                if not r.ok:
                    raise CommandRefused(r.reason, r.detail)
                yield r
        finally:
            self._forget(nonce)

    def _one(self, cmd: str, args: dict[str, Any] | None = None, body: bytes = b"", *,
             timeout: float | None = None) -> Verdict:
        nonce, call = self._send(cmd, args, body)
        try:
            for r in call.replies(timeout or self.timeout):
                if r.final:
                    return Verdict(r.ok, r.reason, r.detail, r.result)
        finally:
            self._forget(nonce)
        raise ChannelTimeout("the answer ended without a final message")

    def _collect(self, cmd: str, args: dict[str, Any]) -> bytes:
        return b"".join(r.body for r in self._stream(cmd, args))

    def list_clips(self) -> list[ClipInfo]:
        """Every clip on the device (from its signed listing), oldest first."""
        out: list[ClipInfo] = []
        after = ""
        while True:
            page = parse_json(self._collect("list_clips", {"after": after, "limit": 1000}), what="clip list")
            out += [ClipInfo.from_json(e) for e in page.get("clips", [])]
            after = str(page.get("next", ""))
            if not after:
                return out

    def fetch_manifest(self, clip_id: str) -> Manifest:
        """The clip's device-signed manifest (signature checked)."""
        data = self._fetch_bytes(clip_id, "manifest")
        try:
            m = Manifest.from_bytes(data).verify(_vk(self.device_key))
        except FormatError as exc:
            raise ChannelError("bad_manifest", str(exc)) from None
        if m.clip_id != clip_id or m.device_id != self.device_id:
            raise ChannelError("bad_manifest", "the manifest names another clip or device")
        return m

    def _fetch_bytes(self, clip_id: str, part: str) -> bytes:
        """A small part (manifest, snapshot) fetched whole."""
        buf = bytearray()
        while True:
            replies = list(self._stream("fetch", {"clip_id": clip_id, "part": part, "offset": len(buf),
                                                  "length": MAX_RANGE}))
            for r in replies:
                buf += r.body
            total = int(replies[-1].result.get("total", len(buf)))
            if len(buf) >= total:
                return bytes(buf)

    def fetch_clip(self, clip_id: str, out: str | Path, *, progress: Callable[[int, int], None] | None = None,
                   attempts: int = 3) -> Manifest:
        """Fetch the encrypted clip file into ``out`` (a ``.part`` file until complete; a rerun resumes it) and
        check it against the device-signed manifest, which is saved beside it as ``out.manifest``.

        Returns the manifest. Raises :class:`ChannelError` (``bad_clip`` if the bytes do not match the manifest).
        """
        out = Path(out)
        manifest = self.fetch_manifest(clip_id)
        part = out.with_name(out.name + ".part")
        total = manifest.size
        done = part.stat().st_size if part.exists() else 0
        if done > total:
            part.unlink()
            done = 0
        failures = 0
        while done < total:
            try:
                done = self._fetch_ranges(clip_id, part, done, total, progress)
            except ChannelTimeout:
                failures += 1
                if failures >= attempts:
                    raise
                done = part.stat().st_size if part.exists() else 0
                log.warning("fetch of %s stalled at %d of %d bytes; resuming", clip_id, done, total)
        check_clip_file(part, manifest)
        part.replace(out)
        write_atomic(out.with_name(out.name + ".manifest"), manifest.to_bytes(), mode=0o600)
        return manifest

    def _fetch_ranges(self, clip_id: str, part: Path, done: int, total: int,
                      progress: Callable[[int, int], None] | None) -> int:
        streams: list[Any] = []
        nxt = done
        fd = os.open(part, os.O_WRONLY | os.O_CREAT, 0o600)  # the owner's footage: private, even encrypted
        try:
            os.ftruncate(fd, done)
        finally:
            os.close(fd)
        while done < total:
            while len(streams) < 2 and nxt < total:  # two ranges in flight: the next is asked while one arrives
                n = min(RANGE, total - nxt)
                streams.append(self._stream("fetch", {"clip_id": clip_id, "part": "clip", "offset": nxt,
                                                      "length": n}))
                nxt += n
            for r in streams.pop(0):
                done = write_range(part, int(r.result["offset"]), r.body, expect=done)
                if progress is not None:
                    progress(done, total)
        return done

    def fetch_snapshot(self, clip_id: str) -> Snapshot:
        """The clip's thumbnail (made when it was recorded), opened with the owner key."""
        return self._open_snapshot(self._fetch_bytes(clip_id, "snapshot"))

    def live_snapshot(self) -> Snapshot:
        """A snapshot of the camera's current (privacy-masked) view, opened with the owner key."""
        return self._open_snapshot(self._collect("live_snapshot", {}))

    def _open_snapshot(self, data: bytes) -> Snapshot:
        try:
            return open_snapshot(data, owner=self.owner, device_key=self.device_key)
        except FormatError as exc:
            raise ChannelError("bad_snapshot", str(exc)) from None

    def fetch_audit(self, from_index: int = 0, *, limit: int = 100_000, prev_head: str | None = None
                    ) -> list[AuditRecord]:
        """Audit records from ``from_index``: each record's hash, signature and link to the one before are checked
        (from 0 the chain starts at genesis; else at ``prev_head`` when given). Raises ChannelError ``bad_audit``."""
        data = self._collect("fetch_audit", {"from": from_index, "limit": limit})
        return check_audit(data, self.device_key, from_index=from_index, prev_head=prev_head,
                           seen=self.heartbeats.seen)

    def apply_config(self, document: bytes) -> Verdict:
        """Send an owner-signed config (or rotation) document; the device's verdict (``result``: counter, changed)."""
        return self._one("apply_config", {}, document)

    def get_config(self) -> bytes:
        """The owner-signed configuration document the device applied last, byte-exact (``b""``: none). Check it
        yourself (``OwnerDocument.from_bytes(...).verify(...)``): the device relays it, the owner signed it."""
        return self._collect("get_config", {})

    def send_grant(self, grant: bytes, *, timeout: float = 600.0) -> Verdict:
        """Send a signed grant; the device checks it and exports the bundle to the recipient's topic. The verdict
        comes once the last chunk is published (``result``: grant_id, bytes, chunks, topic)."""
        return self._one("send_grant", {}, grant, timeout=timeout)

    def decline_request(self, request_id: str, reason: str = "") -> Verdict:
        """Decline a footage request: the device audits ``request_declined`` (the requester is not told)."""
        return self._one("decline_request", {"request_id": request_id, "reason": reason[:200]})


def _vk(key: bytes) -> Any:
    import nacl.signing

    return nacl.signing.VerifyKey(key)

