"""Hypothesis fuzzing of every vault parser: only clean, typed errors (FormatError / ReleaseError), never
IndexError, KeyError, UnicodeDecodeError, struct.error, ... Inputs are random bytes, bit-flipped valid documents
and valid documents with one JSON field replaced, removed or added."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from doorkeep.device.errors import FormatError, ReleaseError
from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.vault.audit import AuditLog, parse_record, verify_bytes
from doorkeep.device.vault.bundle_chunks import parse_chunk
from doorkeep.device.vault.bundle_open import open_bundle
from doorkeep.device.vault.clips import decrypt_clip, parse_header
from doorkeep.device.vault.grants import Grant, ReplaySet, check_grant, issue_grant
from doorkeep.device.vault.keys import MIN, PassphraseError, PublicKeys, SecretKeys
from doorkeep.device.vault.manifest import Manifest
from doorkeep.device.vault.requests import Request, make_request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vault_support import make_device, make_packets, release, sealed_keys, write_clip

FUZZ = settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck), database=None)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10)


def inputs(valid: bytes, *, is_json: bool = True) -> st.SearchStrategy[bytes]:
    flips = st.lists(st.tuples(st.integers(0, len(valid) - 1), st.integers(1, 255)), min_size=1, max_size=4).map(
        lambda fl: _flip(valid, fl))
    cuts = st.integers(0, len(valid) - 1).map(lambda n: valid[:n])
    strategies = [st.binary(max_size=400), flips, cuts]
    if is_json:
        doc = json.loads(valid)
        keys = sorted(doc)
        strategies += [
            st.tuples(st.sampled_from(keys), json_values).map(lambda kv: _set(doc, *kv)),
            st.sampled_from(keys).map(lambda k: json.dumps({x: v for x, v in doc.items() if x != k}).encode()),
            st.tuples(st.text(max_size=8), json_values).map(lambda kv: _set(doc, *kv)),
        ]
    return st.one_of(*strategies)


def _flip(data: bytes, flips: list[tuple[int, int]]) -> bytes:
    b = bytearray(data)
    for i, x in flips:
        b[i] ^= x
    return bytes(b)


def _set(doc: dict, key: str, value: object) -> bytes:
    return json.dumps({**doc, key: value}).encode()


def clean(fn: Callable[[bytes], object], data: bytes, allowed: tuple[type[Exception], ...] = (FormatError,)) -> None:
    try:
        fn(data)
    except allowed:
        pass


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("fuzz")
    dev = make_device(tmp)
    write_clip(dev, "clipA", make_packets(8))
    grant = issue_grant(dev.owner, device_id=dev.identity.device_id, sealed_keys=sealed_keys(dev, "clipA"),
                        recipient=dev.recipient.public, recipient_name="R", purpose="p", requester="q")
    bundle = release(dev, grant.to_bytes())
    clip = dev.vault.store.clip_path("clipA").read_bytes()
    manifest = dev.vault.store.manifest_path("clipA").read_bytes()
    return dev, grant, bundle, clip, manifest


def test_fuzz_grant(world) -> None:
    dev, grant, *_ = world
    replay = ReplaySet(dev.state / "fuzz.replay")

    @FUZZ
    @given(inputs(grant.to_bytes()))
    def run(data: bytes) -> None:
        clean(Grant.from_bytes, data)
        clean(lambda d: check_grant(d, owner=dev.owner.public, device_id=dev.identity.device_id,
                                    existing=["clipA"], replay=replay, now=time.time()), data, (ReleaseError,))
    run()


def test_fuzz_request(world) -> None:
    dev, *_ = world
    valid = make_request(dev.recipient, requester="PD", incident="i", purpose="p", window=(1.0, 2.0)).to_bytes()

    @FUZZ
    @given(inputs(valid))
    def run(data: bytes) -> None:
        clean(Request.from_bytes, data)
    run()


def test_fuzz_bundle(world) -> None:
    dev, _, bundle, *_ = world

    @FUZZ
    @given(inputs(bundle, is_json=False))
    def run(data: bytes) -> None:
        clean(lambda d: open_bundle(d, dev.recipient), data, (ReleaseError,))
    run()


def test_fuzz_bundle_index(world) -> None:
    """Structure-aware: valid framing around a mutated index JSON (the device signature then fails, cleanly)."""
    import struct

    from doorkeep.device.vault.bundles import MAGIC
    dev, _, bundle, *_ = world
    (n,) = struct.unpack_from(">I", bundle, len(MAGIC))
    index = bundle[len(MAGIC) + 4:len(MAGIC) + 4 + n]

    @FUZZ
    @given(inputs(index))
    def run(data: bytes) -> None:
        framed = MAGIC + struct.pack(">I", len(data)) + data + bundle[len(MAGIC) + 4 + n:]
        clean(lambda d: open_bundle(d, dev.recipient), framed, (ReleaseError,))
    run()


def test_fuzz_bundle_chunk(world) -> None:
    from doorkeep.device.vault.bundle_chunks import bundle_chunks
    _, _, bundle, *_ = world
    valid = list(bundle_chunks(bundle[:500], chunk_size=200))[1]

    @FUZZ
    @given(inputs(valid, is_json=False))
    def run(data: bytes) -> None:
        clean(parse_chunk, data)
    run()


def test_fuzz_clip_header_and_body(world) -> None:
    dev, _, _, clip, _ = world
    key = dev.owner.unseal(parse_header(clip).sealed_key)

    @FUZZ
    @given(inputs(clip[:600], is_json=False) | inputs(clip, is_json=False))
    def run(data: bytes) -> None:
        clean(parse_header, data)
        clean(lambda d: decrypt_clip(d, key), data)
    run()


def test_fuzz_manifest(world) -> None:
    dev, _, _, clip, manifest = world

    @FUZZ
    @given(inputs(manifest.strip()))
    def run(data: bytes) -> None:
        clean(lambda d: Manifest.from_bytes(d).verify(dev.identity.verify_key).check_clip(clip), data)
    run()


def test_fuzz_audit_record(tmp_path: Path) -> None:
    ident = DeviceIdentity.generate()
    path = tmp_path / "a.log"
    with AuditLog.open(path, ident) as log:
        log.append("boot")
        rec = log.append("grant_refused", reason="expired", detail="x")
    valid = rec.to_line().strip()
    prefix = path.read_bytes().split(b"\n")[0] + b"\n"

    @FUZZ
    @given(inputs(valid))
    def run(data: bytes) -> None:
        clean(parse_record, data)
        r = verify_bytes(prefix + data + b"\n", ident.verify_key)  # never raises: reports
        assert r.ok or r.first_bad in (1, 2)
    run()


def test_fuzz_key_files(world) -> None:
    dev, *_ = world
    pub = dev.owner.public.to_bytes()
    secret = SecretKeys.generate("recipient").to_file_bytes(b"pw", limits=MIN)

    @FUZZ
    @given(inputs(pub.strip()) | inputs(secret.strip()))
    def run(data: bytes) -> None:
        clean(PublicKeys.from_bytes, data)
        clean(lambda d: SecretKeys.from_file_bytes(d, b"pw"), data, (FormatError, PassphraseError))
    run()
