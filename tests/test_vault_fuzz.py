"""Hypothesis fuzzing of every vault parser: only clean, typed errors (FormatError / ReleaseError), never
IndexError, KeyError, UnicodeDecodeError, struct.error, ... Inputs are random bytes, bit-flipped valid documents
and valid documents with one JSON field replaced, removed or added.

Signed and authenticated documents are held to more than "no crash": a mutated one must be REFUSED. A mutation
that leaves the signed content unchanged (JSON whitespace or key order, ``1`` for ``1.0``, a field "replaced" by its
own value) may legitimately verify, so an accepted input is compared with the original on what is signed — the
canonical bytes of the parsed document (or, for binary formats where every byte is covered, the input itself)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from doorkeep.device.errors import FormatError, ReleaseError
from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.vault.audit import AuditLog, parse_record, verify_bytes
from doorkeep.device.vault.bundle_chunks import parse_chunk
from doorkeep.device.vault.bundle_open import open_bundle
from doorkeep.device.vault.clips import decrypt_clip, parse_header
from doorkeep.device.vault.codec import canonical
from doorkeep.device.vault.grants import Grant, ReplaySet, check_grant, issue_grant
from doorkeep.device.vault.keys import MIN, PassphraseError, PublicKeys, SecretKeys
from doorkeep.device.vault.manifest import Manifest
from doorkeep.device.vault.requests import Request, make_request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vault_support import make_device, make_packets, release, sealed_keys, write_clip

T = TypeVar("T")
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


def refused_unless_unchanged(accept: Callable[[bytes], T], data: bytes, signed: Callable[[T], bytes], original: bytes,
                             allowed: tuple[type[Exception], ...] = (FormatError,)) -> bool:
    """Run the full check ``accept`` (parse + verify) on ``data``. It may refuse (a typed error) or accept; an
    accepted input must carry exactly the original signed content (``signed(result) == original``). Returns
    whether it was accepted."""
    try:
        got = accept(data)
    except allowed:
        return False
    assert signed(got) == original, f"a mutated signed document was accepted: {data[:300]!r}"
    return True


def signed_json(doc: Grant | Request | Manifest) -> bytes:
    """What a signature covers: the canonical body, plus the signature itself."""
    return canonical(doc.to_json())


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
    replay = ReplaySet(dev.state / "fuzz.replay")  # never spent: an unchanged grant is accepted every time
    original = signed_json(grant)

    def device_check(d: bytes) -> Grant:
        return check_grant(d, owner=dev.owner.public, device_id=dev.identity.device_id, existing=["clipA"],
                           replay=replay, now=time.time())

    assert refused_unless_unchanged(device_check, grant.to_bytes(), signed_json, original, (ReleaseError,))

    @FUZZ
    @given(inputs(grant.to_bytes()))
    def run(data: bytes) -> None:
        clean(Grant.from_bytes, data)
        accepted = refused_unless_unchanged(device_check, data, signed_json, original, (ReleaseError,))
        # and the converse: a grant that parses to the signed content is not refused for its spelling
        try:
            same = signed_json(Grant.from_bytes(data)) == original
        except FormatError:
            same = False
        assert accepted == same
    run()


def test_fuzz_request(world) -> None:
    dev, *_ = world
    request = make_request(dev.recipient, requester="PD", incident="i", purpose="p", window=(1.0, 2.0))
    original = signed_json(request)
    assert refused_unless_unchanged(Request.from_bytes, request.to_bytes(), signed_json, original)

    @FUZZ
    @given(inputs(request.to_bytes()))
    def run(data: bytes) -> None:  # Request.from_bytes parses and verifies the requester's signature
        refused_unless_unchanged(Request.from_bytes, data, signed_json, original)
    run()


def test_fuzz_bundle(world) -> None:
    dev, _, bundle, *_ = world
    # Every byte of a bundle is covered (signed index, manifest hashes, manifest-pinned chunks, AEAD): any change
    # is refused.
    assert refused_unless_unchanged(lambda d: (open_bundle(d, dev.recipient), d)[1], bundle, bytes, bundle,
                                    (ReleaseError,))

    @FUZZ
    @given(inputs(bundle, is_json=False))
    def run(data: bytes) -> None:
        refused_unless_unchanged(lambda d: (open_bundle(d, dev.recipient), d)[1], data, bytes, bundle, (ReleaseError,))
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
        # the device signs the index's bytes as they are: even a re-spelling of the same JSON is refused
        refused_unless_unchanged(lambda d: (open_bundle(d, dev.recipient), d)[1], framed, bytes, bundle,
                                 (ReleaseError,))
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

    assert refused_unless_unchanged(lambda d: (decrypt_clip(d, key), d)[1], clip, bytes, clip)

    @FUZZ
    @given(inputs(clip[:600], is_json=False) | inputs(clip, is_json=False))
    def run(data: bytes) -> None:
        clean(parse_header, data)
        # the header is every chunk's additional data and the stream ends with a FINAL chunk: any change is refused
        refused_unless_unchanged(lambda d: (decrypt_clip(d, key), d)[1], data, bytes, clip)
    run()


def test_fuzz_manifest(world) -> None:
    dev, _, _, clip, manifest = world
    original = signed_json(Manifest.from_bytes(manifest))

    def check(d: bytes) -> Manifest:
        m = Manifest.from_bytes(d).verify(dev.identity.verify_key)
        m.check_clip(clip)
        return m

    assert refused_unless_unchanged(check, manifest, signed_json, original)

    @FUZZ
    @given(inputs(manifest.strip()))
    def run(data: bytes) -> None:
        refused_unless_unchanged(check, data, signed_json, original)
    run()


def test_fuzz_audit_record(tmp_path: Path) -> None:
    ident = DeviceIdentity.generate()
    path = tmp_path / "a.log"
    with AuditLog.open(path, ident) as log:
        log.append("boot")
        rec = log.append("grant_refused", reason="expired", detail="x")
    valid = rec.to_line().strip()
    prefix = path.read_bytes().split(b"\n")[0] + b"\n"

    assert verify_bytes(prefix + valid + b"\n", ident.verify_key).records == 2

    @FUZZ
    @given(inputs(valid))
    def run(data: bytes) -> None:
        clean(parse_record, data)
        r = verify_bytes(prefix + data + b"\n", ident.verify_key)  # never raises: reports
        assert r.ok or r.first_bad in (1, 2)
        if r.ok:  # accepted: the second record is the signed original (the chain hash covers its canonical body)
            assert r.records == 2 and parse_record(data).to_line() == rec.to_line(), \
                f"a mutated audit record verified: {data!r}"
    run()


def test_fuzz_key_files(world) -> None:
    dev, *_ = world
    pub = dev.owner.public.to_bytes()
    secret = SecretKeys.generate("recipient").to_file_bytes(b"pw", limits=MIN)

    keys = SecretKeys.from_file_bytes(secret, b"pw")

    @FUZZ
    @given(inputs(pub.strip()) | inputs(secret.strip()))
    def run(data: bytes) -> None:
        clean(PublicKeys.from_bytes, data)  # not signed: the device pins it out of band
        # the secret file is authenticated (SecretBox under the passphrase) and its public keys must match it
        refused_unless_unchanged(lambda d: SecretKeys.from_file_bytes(d, b"pw"), data,
                                 lambda k: k.public.to_bytes() + k.sign(b"probe"),
                                 keys.public.to_bytes() + keys.sign(b"probe"),
                                 (FormatError, PassphraseError))
    run()
