"""Every refusal: grants on the device, bundles at the recipient, the audit log. Each must refuse, with a reason,
audited, and with no footage byte leaving."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest
from doorkeep.device.config import Config
from doorkeep.device.errors import FormatError, ReleaseError
from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.vault.audit import AuditLog, verify
from doorkeep.device.vault.bundle_chunks import BundleAssembler, bundle_chunks
from doorkeep.device.vault.bundle_open import open_bundle
from doorkeep.device.vault.bundles import BundleClip, build_bundle
from doorkeep.device.vault.grants import GRANT_SKEW_S, Grant, issue_grant
from doorkeep.device.vault.keys import SecretKeys
from doorkeep.device.vault.requests import (
    Request,
    audit_fields,
    make_request,
    parse_ack,
    parse_notice,
    sign_ack,
    sign_notice,
)
from doorkeep.device.vault.vault import build_vault
from vault_support import (
    Device,
    make_device,
    make_packets,
    release,
    sealed_keys,
    write_clip,
)

NOW = time.time()


@pytest.fixture(scope="module")
def packets():
    return make_packets(12, t0=NOW - 3600)


@pytest.fixture
def dev(tmp_path: Path, packets) -> Device:
    d = make_device(tmp_path)
    write_clip(d, "clipA", packets)
    write_clip(d, "clipB", packets, event_id="ev2")
    return d


def grant_for(dev: Device, *clips: str, owner: SecretKeys | None = None, **kw) -> Grant:
    args = {"device_id": dev.identity.device_id, "recipient": dev.recipient.public, "recipient_name": "Det. Y",
            "purpose": "case 17", "requester": "City PD"}
    args.update(kw)
    return issue_grant(owner or dev.owner, sealed_keys=sealed_keys(dev, *(clips or ("clipA",))), **args)


def refused(dev: Device, data: bytes, reason: str | set[str], **kw) -> None:
    out = dev.state / "bundle.out"
    with pytest.raises(ReleaseError) as ei:
        dev.vault.export_to_file(data, out, **kw)
    reasons = {reason} if isinstance(reason, str) else reason
    assert ei.value.reason in reasons, ei.value
    assert not out.exists()  # no footage byte left
    last = json.loads((dev.state / "audit.log").read_text().splitlines()[-1])
    assert last["kind"] == "grant_refused" and last["f"]["reason"] == ei.value.reason


def test_valid_grant_exports(dev: Device) -> None:
    out = dev.vault.export_to_file(grant_for(dev, "clipA", "clipB").to_bytes(), dev.state / "b.bundle")
    opened = open_bundle(out.read_bytes(), dev.recipient, owner=dev.owner.public)
    assert [c.clip_id for c in opened.clips] == ["clipA", "clipB"]
    assert len(opened.clips[0].packets) == 12


def test_bad_signature(dev: Device) -> None:
    from doorkeep.device.vault.codec import canonical, signed_message
    from doorkeep.device.vault.grants import SIG_DOMAIN

    g = grant_for(dev)
    forged = Grant(**{**g.__dict__, "sig": SecretKeys.generate("owner").sign(signed_message(SIG_DOMAIN,
                                                                                          canonical(g.body())))})
    refused(dev, forged.to_bytes(), "bad_signature")


def _mutations() -> dict[str, object]:
    return {"grant_id": lambda v: ("0" if v[0] != "0" else "1") + v[1:],
            "device_id": lambda v: v + "x", "recipient_name": lambda v: v + "x", "purpose": lambda v: v + "x",
            "requester": lambda v: v + "x", "request_id": lambda v: v + "r",
            "issued_at": lambda v: v - 1, "expires_at": lambda v: v + 86400,
            "clips": lambda v: [*v, {"clip_id": "clipB", "key": v[0]["key"]}],
            "recipient": lambda v: SecretKeys.generate("recipient").public.to_json(),
            "format": lambda v: v + "x", "v": lambda v: v + 1,
            "sig": lambda v: ("A" if v[0] != "A" else "B") + v[1:]}


@pytest.mark.parametrize("field", sorted(_mutations()))
def test_any_tampered_field(dev: Device, field: str) -> None:
    doc = grant_for(dev).to_json()
    assert field in doc
    doc[field] = _mutations()[field](doc[field])  # type: ignore[operator]
    refused(dev, json.dumps(doc).encode(), {"bad_signature", "malformed"})


def test_every_grant_field_is_covered_by_the_tamper_test(dev: Device) -> None:
    assert set(grant_for(dev).to_json()) == set(_mutations())


def test_expired(dev: Device) -> None:
    g = grant_for(dev, issued_at=int(NOW) - 10 * 86400, lifetime_s=86400)
    refused(dev, g.to_bytes(), "expired")


def test_not_yet_valid(dev: Device) -> None:
    refused(dev, grant_for(dev, issued_at=int(time.time()) + 2 * GRANT_SKEW_S).to_bytes(), "not_yet_valid")


def test_clock_skew_allowance(dev: Device) -> None:
    now = time.time()  # not the module's NOW: a long suite run must not age this 150 s margin
    g = grant_for(dev, issued_at=int(now) - 86400, lifetime_s=86400 - GRANT_SKEW_S // 2)
    release(dev, g.to_bytes(), now=now)  # expired 150 s ago: within the documented skew


def test_lifetime_too_long(dev: Device) -> None:
    g = grant_for(dev)  # the owner's tool refuses to sign a longer one, so stretch a signed grant by hand
    long = dataclasses.replace(g, expires_at=g.issued_at + 60 * 86400).signed(dev.owner)
    refused(dev, long.to_bytes(), "lifetime_too_long")


def test_replayed_grant_id(dev: Device, tmp_path: Path) -> None:
    g = grant_for(dev).to_bytes()
    release(dev, g)
    refused(dev, g, "replayed")
    # the replay set survives a restart
    dev.vault.close()
    cfg = Config.from_dict({"device": {"state_dir": str(dev.state)}})
    dev.vault = build_vault(cfg, dev.identity)
    refused(dev, g, "replayed")
    # a new grant id for the same clips is fine
    release(dev, grant_for(dev).to_bytes())


def test_other_device(dev: Device) -> None:
    other = DeviceIdentity.generate().device_id
    refused(dev, grant_for(dev, device_id=other).to_bytes(), "wrong_device")


def test_unknown_clip(dev: Device) -> None:
    g = grant_for(dev, "clipA")
    doc = g.to_json()
    (dev.vault.store.clip_path("clipA")).unlink()
    refused(dev, json.dumps(doc).encode(), "unknown_clip")


def test_clip_out_of_scope(dev: Device) -> None:
    with pytest.raises(ReleaseError) as ei:
        release(dev, grant_for(dev, "clipA").to_bytes(), clip_ids=["clipA", "clipB"])
    assert ei.value.reason == "out_of_scope"


def test_bundle_with_clip_out_of_scope(dev: Device) -> None:
    g = grant_for(dev, "clipA")
    store = dev.vault.store
    clips = [BundleClip(store.manifest(c), store.clip_path(c).read_bytes()) for c in ("clipA", "clipB")]
    bundle = build_bundle(dev.identity, g, dev.owner.public, clips)
    with pytest.raises(ReleaseError) as ei:
        open_bundle(bundle, dev.recipient)
    assert ei.value.reason == "out_of_scope"


def test_wrong_recipient_key(dev: Device) -> None:
    bundle = release(dev, grant_for(dev).to_bytes())
    with pytest.raises(ReleaseError) as ei:
        open_bundle(bundle, SecretKeys.generate("recipient"))
    assert ei.value.reason == "wrong_recipient"


def test_wrong_owner_expected(dev: Device) -> None:
    bundle = release(dev, grant_for(dev).to_bytes())
    with pytest.raises(ReleaseError) as ei:
        open_bundle(bundle, dev.recipient, owner=SecretKeys.generate("owner").public)
    assert ei.value.reason == "wrong_owner"


@pytest.fixture
def bundle(dev: Device) -> bytes:
    return release(dev, grant_for(dev, "clipA", "clipB").to_bytes())


@pytest.mark.parametrize("cut", [1, 17, 100, 1000, 3000, -64, -1])
def test_truncated_bundle(dev: Device, bundle: bytes, cut: int) -> None:
    data = bundle[:cut]
    with pytest.raises(ReleaseError) as ei:
        open_bundle(data, dev.recipient)
    assert ei.value.reason in {"malformed", "truncated", "tampered", "bad_device_signature"}


@pytest.mark.parametrize("where", [0, 9, 40, 200, 0.3, 0.5, 0.7, 0.9, -1])
def test_tampered_bundle(dev: Device, bundle: bytes, where: float) -> None:
    i = int(where * len(bundle)) if isinstance(where, float) else where % len(bundle)
    data = bytearray(bundle)
    data[i] ^= 0x01
    with pytest.raises(ReleaseError):
        open_bundle(bytes(data), dev.recipient)


def test_extended_bundle(dev: Device, bundle: bytes) -> None:
    with pytest.raises(ReleaseError) as ei:
        open_bundle(bundle + b"\x00", dev.recipient)
    assert ei.value.reason == "truncated"


def test_bundle_chunks_reassemble_any_order(dev: Device, bundle: bytes) -> None:
    chunks = list(bundle_chunks(bundle, chunk_size=1000))
    assert len(chunks) > 3
    asm = BundleAssembler(dev.state / "in.bundle")
    out = None
    for c in reversed(chunks + chunks[:2]):
        out = asm.add(c) or out
    assert out is not None and out.read_bytes() == bundle
    bad = bytearray(chunks[1])
    bad[-1] ^= 1
    with pytest.raises(FormatError):
        BundleAssembler(dev.state / "bad.bundle").add(bytes(bad))


# ---------------------------------------------------------------------------------------------- audit log

@pytest.fixture
def log(tmp_path: Path):
    ident = DeviceIdentity.generate()
    path = tmp_path / "audit.log"
    with AuditLog.open(path, ident) as a:
        for i in range(6):
            a.append("event", n=i)
        head = a.head()
    return path, ident, head


def _rewrite(path: Path, fn) -> None:
    lines = path.read_bytes().split(b"\n")[:-1]
    path.write_bytes(b"\n".join(fn(lines)) + b"\n")


@pytest.mark.parametrize("what,reason", [("field", "hash"), ("kind", "hash"), ("prev", "chain"),
                                         ("sig", "signature"), ("index", "index"), ("garbage", "malformed")])
def test_tampered_audit_record(log, what: str, reason: str) -> None:
    path, ident, _ = log

    def tamper(lines):
        rec = json.loads(lines[3])
        if what == "field":
            rec["f"]["n"] = 99
        elif what == "kind":
            rec["kind"] = "boot"
        elif what == "prev":
            rec["prev"] = "0" * 64
        elif what == "sig":
            rec["sig"] = json.loads(lines[2])["sig"]
        elif what == "index":
            rec["i"] = 7
        else:
            return [*lines[:3], b"{not json", *lines[4:]]
        return [*lines[:3], json.dumps(rec).encode(), *lines[4:]]

    _rewrite(path, tamper)
    r = verify(path, ident.verify_key)
    assert not r.ok and r.first_bad == 3 and r.reason == reason


def test_deleted_audit_record(log) -> None:
    path, ident, _ = log
    _rewrite(path, lambda lines: lines[:2] + lines[3:])
    r = verify(path, ident.verify_key)
    assert (r.ok, r.first_bad, r.reason) == (False, 2, "index")


def test_audit_signed_by_another_device(log) -> None:
    path, _, _ = log
    r = verify(path, DeviceIdentity.generate().verify_key)
    assert (r.ok, r.first_bad, r.reason) == (False, 0, "signature")


def test_truncated_audit_log(log) -> None:
    path, ident, head = log
    _rewrite(path, lambda lines: lines[:-2])
    assert verify(path, ident.verify_key).ok  # a clean cut is only visible against a known head
    r = verify(path, ident.verify_key, expect_head=head)
    assert not r.ok and r.reason == "truncated" and r.first_bad == 4


def test_rolled_back_and_regrown_audit_log(log) -> None:
    path, ident, head = log
    _rewrite(path, lambda lines: lines[:-2])
    with AuditLog.open(path, ident) as a:  # the device goes on appending after a rollback
        a.append("event", n=100)
        a.append("event", n=101)
    assert verify(path, ident.verify_key, expect_head=head).reason == "truncated"


def test_torn_audit_tail_reported_then_repaired(log) -> None:
    path, ident, _ = log
    with open(path, "ab") as f:
        f.write(b'{"v":1,"i":6,"t":1.0,"ki')
    r = verify(path, ident.verify_key)
    assert (r.ok, r.first_bad, r.reason) == (False, 6, "torn")
    AuditLog.open(path, ident).close()
    r = verify(path, ident.verify_key)
    assert r.ok and r.records == 7
    assert json.loads(path.read_text().splitlines()[-1])["kind"] == "audit_repair"


# ---------------------------------------------------------------------------------------------- requests

def test_notice_and_ack_never_depend_on_footage(tmp_path: Path, packets) -> None:
    """The notice carries the request as received; the ack has fixed fields of fixed length: neither is made
    from the vault, so two devices (one with footage) produce the same shapes."""
    req_bytes = make_request(SecretKeys.generate("recipient"), requester="County Sheriff", incident="geofence 4411",
                             purpose="canvass", window=(NOW - 7200, NOW)).to_bytes()
    req = Request.from_bytes(req_bytes)
    empty, full = make_device(tmp_path / "a"), make_device(tmp_path / "b")
    write_clip(full, "clipA", packets)
    na = sign_notice(empty.identity, req_bytes, req, received_at=1.0)
    nb = sign_notice(full.identity, req_bytes, req, received_at=1.0)
    assert na.split(b"\n", 1)[1] == nb.split(b"\n", 1)[1] == req_bytes and len(na) == len(nb)
    assert parse_notice(nb, full.identity.public_bytes).request == req
    aa, ab = sign_ack(empty.identity, req), sign_ack(full.identity, req)
    assert len(aa) == len(ab) and b"clip" not in ab
    assert parse_ack(ab, device_id=full.identity.device_id, request_id=req.request_id)["status"]
    with pytest.raises(FormatError):
        parse_ack(ab, device_id=empty.identity.device_id, request_id=req.request_id)
    with pytest.raises(FormatError):
        parse_notice(nb, empty.identity.public_bytes)


def test_request_audit_record_is_bounded() -> None:
    """A request at the 8 KiB limit full of non-ASCII text (escaped 6x in canonical JSON) still makes a small
    audit record: free text is cut, the request is named by its hash."""
    from channel_support import utf8_request

    data = utf8_request(SecretKeys.generate("recipient"), requester="é" * 256, incident="漢" * 1024,
                        purpose="😀" * 1000)
    assert len(data) <= 8192
    req = Request.from_bytes(data)
    f = audit_fields(req, data)
    assert len(json.dumps(f)) < 1200 and f["bytes"] == len(data)


def test_forged_request_refused(dev: Device) -> None:
    doc = make_request(dev.recipient, requester="X", incident="i", purpose="p", window=(1.0, 2.0)).to_json()
    doc["window"] = [0.0, 2.0]
    with pytest.raises(FormatError):
        Request.from_bytes(json.dumps(doc).encode())
    assert Request.parse(json.dumps(doc).encode()).requester == "X"  # form is fine; the signature is not
