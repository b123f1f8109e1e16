"""The device side of the owner channel: admit an owner-signed command, do it, answer with signed replies.

Admission (:meth:`OwnerChannel.admit`), cheapest check first: size and form → device id → freshness and nonce →
signer is the pinned owner → signature → the command token bucket. A refused command is counted (one
``owner_cmd_refused`` audit record per interval) and answered with **nothing**: an unauthenticated message never
makes the device send a byte. Accepted commands are counted in one ``owner_commands`` record per interval; those
that change or release something are audited on their own by the part that does it (``config_applied``,
``grant_accepted``/``export``, ``request_declined``, ``owner_fetch``).

The device only ever sends ciphertext: clip files as stored (sealed to the owner), their signed manifests, sealed
snapshots, signed audit records and listings. It never opens a clip.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import ChannelError, PublishError, ReleaseError, VaultError
from ..identity import DeviceIdentity
from ..publish.mqtt import MqttClient
from ..publish.topics import Topics
from ..vault.audit import AuditLog
from ..vault.codec import canonical
from ..vault.grants import Grant
from ..vault.keys import PublicKeys
from ..vault.store import ClipStore
from ..vault.vault import Vault, recipient_topic_id
from .limits import AuditTally, FreshnessWindow, TokenBucket
from .protocol import CHUNK, Command, parse_command, sign_reply
from .transfer import Streamer, TransferWorker, bytes_pieces, file_range

log = logging.getLogger(__name__)

#: ``apply_config(document bytes) -> verdict`` — injected by the service (device/ never imports provisioning/).
#: The verdict: ``{"ok": bool, "reason": str, "detail": str, "counter": int | None, "changed": [str]}``.
ConfigHandler = Callable[[bytes], dict[str, Any]]
LIST_BODY = CHUNK


@dataclass
class ChannelParts:
    """What the owner channel works on (built by device/assembly.py)."""

    identity: DeviceIdentity
    vault: Vault | None
    audit: AuditLog
    owner: Callable[[], PublicKeys | None]
    live_snapshot: Callable[[], bytes] | None = None
    apply_config: ConfigHandler | None = None
    #: The owner-signed configuration document the device applied last, as stored (b"" when none).
    config_document: Callable[[], bytes] | None = None
    #: Called after a config/rotation verdict with ok=True was delivered (the service rebuilds the pipeline).
    on_applied: Callable[[dict[str, Any]], None] | None = None


class OwnerChannel:
    """Handles ``doorkeep/<id>/owner/cmd`` messages (called on the inbox worker thread)."""

    def __init__(self, client: MqttClient, topics: Topics, parts: ChannelParts, *, window: FreshnessWindow,
                 bucket: TokenBucket, refused: AuditTally, accepted: AuditTally, transfers: TransferWorker,
                 streamer: Streamer) -> None:
        self.client, self.topics, self.p = client, topics, parts
        self.window, self.bucket, self.refused, self.accepted = window, bucket, refused, accepted
        self.transfers, self.streamer = transfers, streamer
        self._handlers: dict[str, Callable[[Command], None]] = {
            "list_clips": self._list, "fetch": self._fetch, "live_snapshot": self._live, "fetch_audit": self._audit,
            "apply_config": self._config, "get_config": self._get_config, "send_grant": self._grant,
            "decline_request": self._decline}

    # ---------------------------------------------------------------------------------------------- admission
    def refuse(self, reason: str) -> None:
        self.refused.note(reason)

    def handle(self, payload: bytes) -> None:
        try:
            cmd = self.admit(payload)
        except ChannelError as exc:
            self.refused.note(exc.reason)
            log.debug("owner command refused: %s", exc)
            return
        self.accepted.note(cmd.cmd)
        try:
            self._handlers[cmd.cmd](cmd)
        except ChannelError as exc:
            self.reply(cmd, ok=False, reason=exc.reason, detail=exc.detail)

    def admit(self, payload: bytes) -> Command:
        """Every check before a command runs. Raises :class:`ChannelError` with the refusal reason."""
        cmd = parse_command(payload)
        if cmd.device_id != self.p.identity.device_id:
            raise ChannelError("wrong_device", f"command is for {cmd.device_id[:64]}")
        why = self.window.check(cmd.nonce, cmd.issued_at)
        if why is not None:
            raise ChannelError(why, f"nonce {cmd.nonce}, issued_at {cmd.issued_at}")
        owner = self.p.owner()
        if owner is None:
            raise ChannelError("not_owner", "no owner is pinned")
        cmd = cmd.verify(owner)
        if not self.bucket.take():
            raise ChannelError("rate", "too many owner commands")
        self.window.add(cmd.nonce, cmd.issued_at)
        return cmd

    # ---------------------------------------------------------------------------------------------- replies
    def _message(self, cmd: Command, **kw: Any) -> bytes:
        """One signed reply message to ``cmd``, sealed to the owner who signed it."""
        assert cmd.owner is not None, "replies only to verified commands"
        return sign_reply(self.p.identity.sign, device_id=self.p.identity.device_id, owner=cmd.owner, cmd=cmd.cmd,
                          nonce=cmd.nonce, **kw)

    def reply(self, cmd: Command, *, ok: bool = True, reason: str = "ok", detail: str = "",
              result: dict[str, Any] | None = None, body: bytes = b"") -> Any:
        msg = self._message(cmd, ok=ok, reason=reason, detail=detail, result=result, body=body)
        try:
            return self.client.publish_raw(self.topics.owner_reply(cmd.reply_to), msg, qos=1)
        except PublishError:
            log.exception("could not answer owner command %s", cmd.cmd)
            return None

    def _stream(self, cmd: Command, pieces: Iterator[tuple[int, bytes]], result: dict[str, Any], total: int,
                stop: threading.Event) -> None:
        topic = self.topics.owner_reply(cmd.reply_to)

        def messages() -> Iterator[bytes]:
            seq = 0
            held: tuple[int, bytes] | None = None
            for piece in pieces:  # hold one back so the last message can say final
                if held is not None:
                    yield self._message(cmd, seq=seq, final=False,
                                        result={**result, "offset": held[0], "total": total}, body=held[1])
                    seq += 1
                held = piece
            off, data = held if held is not None else (result.get("offset", 0), b"")
            yield self._message(cmd, seq=seq, final=True, result={**result, "offset": off, "total": total},
                                body=data)

        try:
            self.streamer.send(topic, messages(), stop=stop)
        except (ChannelError, OSError) as exc:
            log.warning("owner transfer %s stopped: %s", cmd.cmd, exc)

    def _submit(self, job: Callable[[threading.Event], None]) -> None:
        if not self.transfers.submit(job):
            raise ChannelError("busy", "too many transfers queued; try again")

    # ---------------------------------------------------------------------------------------------- commands
    def _require_store(self) -> ClipStore:
        if self.p.vault is None:
            raise ChannelError("no_vault", "the vault is disabled on this device")
        return self.p.vault.store

    def _list(self, cmd: Command) -> None:
        store = self._require_store()
        after, limit = cmd.args["after"], cmd.args["limit"]
        ids = [c for c in store.clip_ids() if c > after and store.exists(c)]
        entries: list[dict[str, Any]] = []
        size = 64
        for clip_id in ids[:limit]:
            try:
                m = store.manifest(clip_id)
            except (VaultError, OSError):  # an unreadable manifest is listed as such, not hidden
                e: dict[str, Any] = {"clip_id": clip_id, "error": "unreadable manifest"}
            else:
                e = {"clip_id": clip_id, "t_start": m.t_start, "t_end": m.t_end, "size": m.size,
                     "complete": m.complete, "event_ids": list(m.event_ids[:16]), "events": len(m.event_ids),
                     "snapshot": store.snapshot_path(clip_id).is_file()}
            n = len(canonical(e)) + 1
            if size + n > LIST_BODY:
                break
            entries.append(e)
            size += n
        nxt = entries[-1]["clip_id"] if entries and len(entries) < len(ids) else ""
        body = canonical({"clips": entries, "next": nxt})
        self.reply(cmd, result={"count": len(entries), "next": nxt}, body=body)

    def _fetch(self, cmd: Command) -> None:
        store = self._require_store()
        a = cmd.args
        clip_id, part, offset = a["clip_id"], a["part"], a["offset"]
        if not store.exists(clip_id):
            raise ChannelError("unknown_clip", f"no clip {clip_id}")
        paths = {"clip": store.clip_path, "manifest": store.manifest_path, "snapshot": store.snapshot_path}
        path = paths[part](clip_id)
        try:
            total = path.stat().st_size
        except FileNotFoundError:
            why = "no_snapshot" if part == "snapshot" else "unknown_clip"
            raise ChannelError(why, f"no {part} for {clip_id}") from None
        if offset > total:
            raise ChannelError("bad_range", f"offset {offset} is past the end ({total} bytes)")
        length = min(a["length"], total - offset)
        if offset == 0 and part == "clip":
            self.p.audit.append("owner_fetch", clip_id=clip_id, part=part, bytes=total)
        result = {"clip_id": clip_id, "part": part}
        self._submit(lambda stop: self._stream(cmd, file_range(path, offset, length), result, total, stop))

    def _live(self, cmd: Command) -> None:
        if self.p.live_snapshot is None:
            raise ChannelError("no_camera", "live view is not available on this device")
        take = self.p.live_snapshot

        def job(stop: threading.Event) -> None:
            try:
                data = take()
            except ChannelError as exc:
                self.reply(cmd, ok=False, reason=exc.reason, detail=exc.detail)
                return
            self._stream(cmd, bytes_pieces(data), {"part": "live"}, len(data), stop)

        self._submit(job)

    def _audit(self, cmd: Command) -> None:
        start, limit = cmd.args["from"], cmd.args["limit"]
        audit = self.p.audit

        def pieces() -> Iterator[tuple[int, bytes]]:
            """The records' lines from ``start`` (across segments; from the oldest kept if older), cut in CHUNKs."""
            buf, pos = bytearray(), 0
            for n, rec in enumerate(audit.records(start)):
                if n >= limit:
                    break
                buf += rec.to_line()
                while len(buf) >= CHUNK:
                    yield pos, bytes(buf[:CHUNK])
                    pos += CHUNK
                    del buf[:CHUNK]
            yield pos, bytes(buf)

        self._submit(lambda stop: self._stream(cmd, pieces(), {"from": start}, -1, stop))

    def _config(self, cmd: Command) -> None:
        if self.p.apply_config is None:
            raise ChannelError("unsupported", "this device does not accept configuration over MQTT")
        verdict = self.p.apply_config(cmd.body)
        h = self.reply(cmd, ok=bool(verdict.get("ok")), reason=str(verdict.get("reason", "applied")),
                       detail=str(verdict.get("detail", "")), result={
                           "counter": verdict.get("counter"), "changed": list(verdict.get("changed", []))[:64]})
        if verdict.get("ok") and self.p.on_applied is not None:
            if h is not None:
                try:
                    h.wait(5.0)  # the verdict reaches the broker before the pipeline restarts
                except PublishError:
                    pass
            self.p.on_applied(verdict)

    def _get_config(self, cmd: Command) -> None:
        """The applied owner document, byte-exact: owner-signed, so the owner tool checks it itself (the console
        edits it and signs the next one without losing the tables it does not show)."""
        if self.p.config_document is None:
            raise ChannelError("unsupported", "this device does not keep a signed configuration")
        data = self.p.config_document()
        self._submit(lambda stop: self._stream(cmd, bytes_pieces(data), {"part": "config"}, len(data), stop))

    def _grant(self, cmd: Command) -> None:
        vault = self.p.vault
        if vault is None:
            raise ChannelError("no_vault", "the vault is disabled on this device")

        def job(stop: threading.Event) -> None:
            try:  # checked, spent and audited by the vault; a refusal lets no footage byte out
                n = vault.export_mqtt(cmd.body, self.client.publish_raw, self.topics.recipient,
                                      window=self.streamer.window, stop=stop)
            except ReleaseError as exc:
                self.reply(cmd, ok=False, reason=exc.reason, detail=str(exc))
                return
            grant = Grant.from_bytes(cmd.body)
            self.reply(cmd, result={"grant_id": grant.grant_id, "chunks": n,
                                    "topic": self.topics.recipient(recipient_topic_id(grant.recipient))})

        self._submit(job)

    def _decline(self, cmd: Command) -> None:
        self.p.audit.append("request_declined", request_id=cmd.args["request_id"], reason=cmd.args["reason"])
        self.reply(cmd, result={"request_id": cmd.args["request_id"]})
