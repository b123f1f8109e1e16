"""Non-finite numbers in every signed format are refused with a typed error (#14.13).

``1e999`` is valid JSON that Python parses as infinity; re-encoding it for a signature check then raised a bare
``ValueError`` that killed the pairing driver and the owner-documents worker. Each valid document below gets one
value (anywhere in it, at any depth) replaced by a non-finite number literal, and the whole device- or recipient-
side check must refuse it with a :class:`DoorkeepError` — never a bare ``ValueError``, never acceptance.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from doorkeep.device.errors import DoorkeepError
from doorkeep.device.events import Event
from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.publish import payload
from doorkeep.device.vault import codec
from doorkeep.device.vault.audit import verify_bytes
from doorkeep.device.vault.bundle_open import open_bundle
from doorkeep.device.vault.grants import ReplaySet, check_grant, issue_grant
from doorkeep.device.vault.keys import SecretKeys
from doorkeep.device.vault.manifest import Manifest
from doorkeep.device.vault.requests import Request, make_request
from doorkeep.provisioning import boot_pairing
from doorkeep.provisioning.documents import KIND_CONFIG, OwnerDocument, sign_document
from doorkeep.provisioning.pairing import DevicePairing
from doorkeep.provisioning.pairing_owner import OwnerPairing
from doorkeep.provisioning.remote import (
    DocResult,
    RemoteDocuments,
    parse_result,
    sign_result,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from provisioning_support import new_device, owner_keys
from vault_support import make_device, make_packets, sealed_keys, write_clip
from vault_support import release as release_bytes

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
#: JSON number literals that do not fit a finite double (and the constants Python's json module also accepts).
NON_FINITE = ("1e999", "-1e999", "1E400", "2.5e308", "-9e9999", "Infinity", "-Infinity", "NaN")
_MARK = "\x00non-finite\x00"


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every value position in a JSON document (containers included)."""
    if prefix:
        yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))


def _replace(doc: Any, path: tuple[Any, ...], literal: str) -> bytes:
    doc = json.loads(json.dumps(doc))
    node = doc
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = _MARK
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return text.replace(json.dumps(_MARK), literal).encode()


def mutations(valid: bytes) -> st.SearchStrategy[bytes]:
    doc = json.loads(valid)
    return st.tuples(st.sampled_from(list(_paths(doc))), st.sampled_from(NON_FINITE)).map(
        lambda pl: _replace(doc, *pl))


def refused(check: Callable[[bytes], object], data: bytes) -> None:
    try:
        result = check(data)
    except DoorkeepError:
        return
    except ValueError as exc:  # the bug: a bare ValueError escaping a parser
        pytest.fail(f"untyped {type(exc).__name__}: {exc} for {data[:200]!r}")
    pytest.fail(f"accepted a non-finite number: {result!r} for {data[:200]!r}")


def test_parse_json_names_the_non_finite_number():
    with pytest.raises(DoorkeepError, match="1e999 is out of range"):
        codec.parse_json(b'{"t": 1e999}', what="doc")
    assert codec.parse_json(b'{"t": 1e308}', what="doc") == {"t": 1e308}


# ------------------------------------------------------------------------------------------------ vault formats

@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A device with one clip, a signed grant, its bundle and a request."""
    dev = make_device(tmp_path_factory.mktemp("release"))
    write_clip(dev, "c1", make_packets(8))
    grant = issue_grant(dev.owner, device_id=dev.identity.device_id, sealed_keys=sealed_keys(dev, "c1"),
                        recipient=dev.recipient.public, recipient_name="Det. Y", purpose="incident 7",
                        requester="PD")
    bundle = release_bytes(dev, grant.to_bytes())
    request = make_request(dev.recipient, requester="PD", incident="7", purpose="p", window=(1.0, 2.0))
    dev.vault.close()
    return {"dev": dev, "grant": grant.to_bytes(), "bundle": bundle, "request": request.to_bytes()}


@FUZZ
@given(data=st.data())
def test_grants_with_non_finite_numbers_are_refused(release, data):
    dev = release["dev"]
    blob = data.draw(mutations(release["grant"]))
    replay = ReplaySet(dev.state / "fuzz.used")
    refused(lambda b: check_grant(b, owner=dev.owner.public, device_id=dev.identity.device_id, existing=["c1"],
                                  replay=replay), blob)


@FUZZ
@given(data=st.data())
def test_requests_with_non_finite_numbers_are_refused(release, data):
    refused(Request.from_bytes, data.draw(mutations(release["request"])))


@FUZZ
@given(data=st.data())
def test_bundle_indexes_with_non_finite_numbers_are_refused(release, data):
    bundle: bytes = release["bundle"]
    n = int.from_bytes(bundle[8:12], "big")
    index, rest = bundle[12:12 + n], bundle[12 + n:]
    mutated = data.draw(mutations(index))
    blob = bundle[:8] + len(mutated).to_bytes(4, "big") + mutated + rest
    refused(lambda b: open_bundle(b, release["dev"].recipient), blob)


@FUZZ
@given(data=st.data())
def test_manifests_with_non_finite_numbers_are_refused(release, data):
    dev = release["dev"]
    valid = dev.vault.store.manifest_path("c1").read_bytes()
    refused(lambda b: Manifest.from_bytes(b).verify(dev.identity.verify_key), data.draw(mutations(valid)))


@FUZZ
@given(data=st.data())
def test_audit_records_with_non_finite_numbers_fail_verification(release, data):
    dev = release["dev"]
    lines = (dev.state / "audit.log").read_bytes().splitlines(keepends=True)
    i = data.draw(st.integers(0, len(lines) - 1))
    lines[i] = data.draw(mutations(lines[i])) + b"\n"
    try:
        report = verify_bytes(b"".join(lines), dev.identity.public_bytes)
    except ValueError as exc:
        pytest.fail(f"untyped {type(exc).__name__}: {exc}")
    assert not report.ok and report.first_bad == i


# ------------------------------------------------------------------------------------------------ provisioning

@pytest.fixture()
def device(tmp_path: Path):
    return new_device(tmp_path / "dev")


@FUZZ
@given(data=st.data())
def test_pairing_messages_with_non_finite_numbers_are_refused(tmp_path_factory, data):
    dev = new_device(tmp_path_factory.mktemp("pair"))
    keys = owner_keys()
    owner = OwnerPairing(keys)
    offer = owner.start()
    (accept,) = DevicePairing(dev.prov).handle(offer)
    kind = data.draw(st.sampled_from(["offer", "accept"]))
    if kind == "offer":
        machine = DevicePairing(dev.prov)
        refused(machine.handle, data.draw(mutations(offer)))
        assert machine.state == "offer"  # and the window is still open for the real owner
    else:
        refused(owner.handle, data.draw(mutations(accept)))
        assert owner.state == "accept"


@FUZZ
@given(data=st.data())
def test_owner_documents_with_non_finite_numbers_are_refused(tmp_path_factory, data):
    dev = new_device(tmp_path_factory.mktemp("doc"))
    keys = owner_keys()
    doc = sign_document(KIND_CONFIG, device_id=dev.identity.device_id, counter=1,
                        body={"detect": {"threshold": 0.5}, "capture": {"fps": 10}},
                        owner=keys)

    def check(b: bytes) -> object:
        d = OwnerDocument.from_bytes(b)
        d.verify(kind=KIND_CONFIG, pinned_owner=keys.public.sign, device_id=dev.identity.device_id, last_counter=0)
        return d

    refused(check, data.draw(mutations(doc.to_bytes())))


@FUZZ
@given(data=st.data())
def test_pairing_files_results_and_event_payloads_with_non_finite_numbers_are_refused(tmp_path_factory, data):
    dev = new_device(tmp_path_factory.mktemp("file"))
    keys = owner_keys()
    kind = data.draw(st.sampled_from(["pair-file", "result", "event"]))
    if kind == "pair-file":
        pf = boot_pairing.make_pair_file(keys)
        path = dev.state / "incoming-pair.json"
        blob = data.draw(mutations(pf.data))
        path.write_bytes(blob)
        refused(lambda _b: boot_pairing.consume_pair_file(path, dev.prov), blob)
        assert not (dev.state / "owner.pub").exists()
    elif kind == "result":
        signed = sign_result(DocResult("00" * 32, True, 3, "applied", ""), dev.identity.sign)
        refused(lambda b: parse_result(b, device_key=dev.identity.public_bytes), data.draw(mutations(signed)))
    else:
        ident = DeviceIdentity.generate()
        event = Event("ev-1", "person", "start", time.time(), time.time())
        signed = payload.encode(event, ident)
        body, _, _sig = signed.rpartition(b',"sig"')
        mutated = data.draw(mutations(body + b"}"))
        blob = mutated[:-1] + b',"sig"' + _sig  # keep the signature member last, as the verifier expects
        refused(lambda b: payload.verify(b, ident.public_bytes), blob)


def test_owner_documents_worker_answers_a_non_finite_document(device):
    """The remote-documents worker used to die on ``1e999`` (a bare ValueError on its thread)."""
    keys = owner_keys()
    device.prov.pin(keys.public, replace=False)
    doc = sign_document(KIND_CONFIG, device_id=device.identity.device_id, counter=1, body={"capture": {"fps": 10}},
                        owner=keys)
    evil = doc.to_bytes().replace(b'"fps":10', b'"fps":1e999')

    class NoClient:
        def subscribe(self, *a: object, **k: object) -> None: ...

    remote = RemoteDocuments(NoClient(), device.prov)  # type: ignore[arg-type]
    result = remote.apply(evil)
    assert not result.ok and result.reason == "malformed" and "out of range" in result.detail


def test_secret_key_files_with_non_finite_numbers_are_refused(tmp_path: Path):
    from doorkeep.device.vault.keys import MIN

    data = SecretKeys.generate("owner").to_file_bytes(b"pw", limits=MIN).replace(b'"ops":1', b'"ops":1e999')
    with pytest.raises(DoorkeepError):
        SecretKeys.from_file_bytes(data, b"pw")
