"""Mutation check: hand-made mutants of the frame ring, the motion gate and the vault, each run against the tests that
guard it.

A mutant is one small, deliberate bug (a check removed, a bound moved, a wipe skipped) in a copy of the code; the
tests that guard that code must fail on it ("killed"). A mutant the tests pass is a gap: it is killed by a new test
or explained (``equivalent``: no observable behaviour changes). Kill rate and survivors are recorded in
BENCHMARKS.md ("Mutation check").

Each run works on a temporary copy of the repository (never on your files): the copy's packages come first on
PYTHONPATH through a shadow ``doorkeep`` package, bytecode is not written, so a mutant is never hidden by a stale
``.pyc``. The unmutated copy is run first (baseline): a test that fails without any mutant makes the run invalid.

    .venv/bin/python tests/mutation_check.py              # every mutant (~15 min on a quiet 2-core machine)
    .venv/bin/python tests/mutation_check.py --fast       # the fast subset (rings, gate, grant checks)
    .venv/bin/python tests/mutation_check.py --only grant  # names containing "grant" (repeatable)
    .venv/bin/python tests/mutation_check.py --list

Exit status 0 when every non-equivalent mutant was killed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"device": "device", "provisioning": "provisioning", "tools": "tools", "models": "models"}

RINGS = ("tests/test_foundation_rings.py",)
GRANTS = ("tests/test_vault_grant_bounds.py", "tests/test_vault_release.py", "tests/test_release_owner_limits.py",
          "tests/test_release_export_lock.py")
GATE = ("tests/test_foundation_gate.py",)
GATE_PIPE = ("tests/test_foundation_gate.py", "tests/test_foundation_loop.py", "tests/test_detection_scene.py")
AUDIT = ("tests/test_vault_audit_segments.py", "tests/test_vault_release.py", "tests/test_vault_vectors.py",
         "tests/test_vault_fuzz.py::test_fuzz_audit_record")
VAULT = ("tests/test_vault_chunking.py", "tests/test_vault_key_refusals.py", "tests/test_vault_grant_bounds.py",
         "tests/test_vault_release.py", "tests/test_vault_roundtrip.py", "tests/test_vault_vectors.py",
         "tests/test_vault_store.py", "tests/test_vault_streams.py", "tests/test_release_key_memory.py",
         "tests/test_release_export_lock.py", "tests/test_release_owner_limits.py",
         "tests/test_vault_fuzz.py")


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]
    #: Set when the mutant cannot change observable behaviour; says why (it is then expected to survive).
    equivalent: str = ""
    fast: bool = False


def _m(name: str, path: str, old: str, new: str, tests: tuple[str, ...], *, equivalent: str = "",
       fast: bool = False) -> Mutant:
    return Mutant(name, path, old, new, tests, equivalent, fast)


OFF = "if False:"
MUTANTS: tuple[Mutant, ...] = (
    # ------------------------------------------------------------------------------------------ device/rings.py
    _m("ring: seqlock check removed (a frame rewritten mid-copy is returned)", "device/rings.py",
       "if self._seq[i] == seq:  # the seqlock check", "if True:  # the seqlock check", RINGS, fast=True),
    _m("ring: slot not invalidated before the producer rewrites it (begin_write)", "device/rings.py",
       "self._seq[i] = -1  # readers that copy", "pass  # readers that copy", RINGS, fast=True),
    _m("ring: slot not invalidated before the producer rewrites it (push)", "device/rings.py",
       "self._seq[i] = -1  # as in begin_write", "pass  # as in begin_write", RINGS, fast=True),
    _m("ring: overrun not counted when push laps a reader", "device/rings.py",
       "        if self._reading[i]:\n            self.overruns += 1\n        self._seq[i] = -1  # as in",
       "        if False:\n            self.overruns += 1\n        self._seq[i] = -1  # as in", RINGS, fast=True),
    _m("ring: lores filters (privacy masks) skipped", "device/rings.py",
       "            for f in self.lores_filters:\n                f(slot)",
       "            for f in ():\n                f(slot)", RINGS, fast=True),
    _m("ring: reader gets the previous slot, not the latest", "device/rings.py",
       "                i = self._latest\n", "                i = (self._latest - 1) % self.size\n", RINGS, fast=True),
    _m("ring: latest-wins skips not counted", "device/rings.py",
       "                    self.skipped += skipped", "                    pass", RINGS, fast=True),
    _m("ring: overrun not counted when begin_write laps a reader", "device/rings.py",
       "        if self._reading[i]:\n            self.overruns += 1\n        self._seq[i] = -1  # readers",
       "        if False:\n            self.overruns += 1\n        self._seq[i] = -1  # readers", RINGS, fast=True),
    _m("ring: after_seq ignored (a reader gets the same frame again)", "device/rings.py",
       "while self._next_seq - 1 <= after_seq or self._latest < 0:", "while self._latest < 0:", RINGS, fast=True),
    _m("ring: a blocked reader is never woken by commit", "device/rings.py",
       "            if self._waiting:\n                self._cond.notify_all()",
       "            if False:\n                self._cond.notify_all()", RINGS, fast=True),
    _m("ring: commit without begin_write accepted", "device/rings.py",
       "        if i < 0:\n            raise UsageError", "        if False:\n            raise UsageError", RINGS,
       fast=True),
    _m("ring: fps off by one frame", "device/rings.py",
       "return (len(t) - 1) / span", "return len(t) / span", RINGS, fast=True),
    # ------------------------------------------------------------------------------------------- device/gate.py
    _m("gate: learns while a person is tracked", "device/gate.py",
       "        alpha = 0.0 if not learn else 1.0", "        alpha = 1.0", GATE, fast=True),
    _m("gate: restlessness learned while a person is tracked", "device/gate.py",
       "if self.restless_s > 0 and learn else 0.0", "if self.restless_s > 0 else 0.0", GATE, fast=True),
    _m("gate: no restlessness (foliage counts as motion)", "device/gate.py",
       "        thr = np.multiply(var, self.restless_k ** 2, out=self._thr)",
       "        thr = np.multiply(var, 0.0, out=self._thr)", GATE, fast=True),
    _m("gate: no light compensation", "device/gate.py",
       "        d -= self._blur(d)\n", "        d -= 0.0\n", GATE, fast=True),
    _m("gate: restlessness learned without a bound", "device/gate.py",
       "        np.minimum(sq, thr, out=sq)\n", "        pass\n", GATE, fast=True),
    _m("gate: the pipeline (device loop, scan, eval) lets the gate learn while tracking", "device/detect/pipeline.py",
       "learn=not tracking)", "learn=True)", GATE_PIPE, fast=True),
    # ------------------------------------------------------------------------------------ device/vault/keypage.py
    _m("keypage: closing a clip does not wipe its key page", "device/vault/keypage.py",
       "lib.sodium_munlock(self.page, PAGE)  # zeroes, then munlock", "pass", VAULT),
    _m("keypage: only the key is wiped, the secretstream state stays", "device/vault/keypage.py",
       "lib.sodium_munlock(self.page, PAGE)  # zeroes, then munlock", "lib.sodium_memzero(self.page, KEY_BYTES)",
       VAULT),
    _m("keypage: the key page is never locked in RAM", "device/vault/keypage.py",
       "self.locked = lib.sodium_mlock(self.page, PAGE) == 0", "self.locked = False", VAULT),
    # -------------------------------------------------------------------------------------- device/vault/clips.py
    _m("clips: chunks not bound to the header (no additional data)", "device/vault/clips.py",
       "                                                          self._ad, len(self._ad), tag) != 0:",
       "                                                          ffi.NULL, 0, tag) != 0:", VAULT),
    _m("clips: close writes no FINAL chunk", "device/vault/clips.py",
       "            self._push(TAG_FINAL)", "            self._push(TAG_MESSAGE)", VAULT),
    _m("clips: a clip without its FINAL chunk decrypts as complete", "device/vault/clips.py",
       "        if require_final and not self.final:", "        " + OFF, VAULT),
    _m("clips: data after the FINAL chunk accepted", "device/vault/clips.py",
       "        if self.final:\n            raise FormatError", "        " + OFF + "\n            raise FormatError",
       VAULT,
       equivalent="after FINAL no frame can authenticate: the secretstream state has moved on and the writer never "
                  "encrypts past FINAL, so the explicit check only names the error earlier"),
    _m("clips: chunks no longer start at keyframes", "device/vault/clips.py",
       "if self._buf and (packet.keyframe or len(self._buf) >= self._chunk_bytes):",
       "if self._buf and len(self._buf) >= self._chunk_bytes:", VAULT),
    _m("clips: chunks not fsynced with fsync_chunks=True", "device/vault/clips.py",
       "        if self._fsync:\n            self._io.fsync(self._fd)",
       "        " + OFF + "\n            self._io.fsync(self._fd)", VAULT),
    _m("clips: a chunk's plaintext buffer dropped without zeroing", "device/vault/clips.py",
       "        _wipe(self._buf)  # zero the plaintext we own before dropping it", "        self._buf.clear()", VAULT),
    _m("clips: clip ids may start with '.'", "device/vault/clips.py",
       'or not CLIP_ID_RE.match(clip_id) or clip_id.startswith("."):', "or not CLIP_ID_RE.match(clip_id):", VAULT),
    # --------------------------------------------------------------------------------------- device/vault/keys.py
    _m("keys: a secret key file whose public keys do not match its secret is accepted", "device/vault/keys.py",
       "        if keys.public != claimed:", "        " + OFF, VAULT),
    _m("keys: a different owner silently replaces the pinned one", "device/vault/keys.py",
       '            return path\n        raise VaultError(f"{path}: a different owner is already pinned")',
       "            return path\n        return path", VAULT),
    _m("keys: a recipient key can be pinned as the owner", "device/vault/keys.py",
       '    if owner.role != "owner":\n        raise KeyRoleError', "    " + OFF + "\n        raise KeyRoleError",
       VAULT),
    _m("keys: PublicKeys.load ignores the expected role", "device/vault/keys.py",
       "        keys = cls.from_bytes(data, what=str(p))\n        if role is not None and keys.role != role:",
       "        keys = cls.from_bytes(data, what=str(p))\n        " + OFF, VAULT),
    _m("keys: a key file may ask argon2 for unbounded memory", "device/vault/keys.py",
       'mem = kdf.integer("mem", lo=nacl.pwhash.argon2id.MEMLIMIT_MIN, hi=MAX_MEMLIMIT)',
       'mem = kdf.integer("mem", lo=nacl.pwhash.argon2id.MEMLIMIT_MIN, hi=1 << 62)', VAULT),
    # ------------------------------------------------------------------------------------- device/vault/grants.py
    _m("grants: owner signature not checked", "device/vault/grants.py",
       "            owner.verify_key.verify(signed_message(SIG_DOMAIN, canonical(self.body())), self.sig)",
       "            pass", (*GRANTS, "tests/test_vault_fuzz.py::test_fuzz_grant"), fast=True),
    _m("grants: a grant for another device accepted", "device/vault/grants.py",
       "    if grant.device_id != device_id:", "    " + OFF, GRANTS, fast=True),
    _m("grants: a grant not yet valid accepted", "device/vault/grants.py",
       "    if now < grant.issued_at - GRANT_SKEW_S:", "    " + OFF, GRANTS, fast=True),
    _m("grants: an expired grant accepted", "device/vault/grants.py",
       "    if now >= grant.expires_at + GRANT_SKEW_S:", "    " + OFF, GRANTS, fast=True),
    _m("grants: expiry off by one second (> instead of >=)", "device/vault/grants.py",
       "    if now >= grant.expires_at + GRANT_SKEW_S:", "    if now > grant.expires_at + GRANT_SKEW_S:", GRANTS,
       fast=True),
    _m("grants: clock skew allowance 10x the documented one", "device/vault/grants.py",
       "GRANT_SKEW_S = 300", "GRANT_SKEW_S = 3000", GRANTS, fast=True),
    _m("grants: the device skips the lifetime check", "device/vault/grants.py",
       "    check_lifetime(grant.issued_at, grant.expires_at)\n    if grant.grant_id in replay:",
       "    if grant.grant_id in replay:", GRANTS, fast=True),
    _m("grants: a used grant id passes the check", "device/vault/grants.py",
       "    if grant.grant_id in replay:", "    " + OFF, GRANTS, fast=True),
    _m("grants: the replay set records a used id twice", "device/vault/grants.py",
       "                if grant_id in self._parse(data):", "                " + OFF, GRANTS, fast=True),
    _m("grants: a grant naming a clip that does not exist accepted", "device/vault/grants.py",
       "    missing = [c for c in grant.clip_ids if c not in have]", "    missing: list[str] = []", GRANTS, fast=True),
    _m("grants: a request for clips outside the grant accepted", "device/vault/grants.py",
       "        extra = sorted(set(requested) - set(grant.clip_ids))", "        extra: list[str] = []", GRANTS,
       fast=True),
    _m("grants: a clip listed twice accepted", "device/vault/grants.py",
       "        if len({c.clip_id for c in clips}) != len(clips):", "        " + OFF, GRANTS, fast=True),
    _m("grants: an owner key accepted as the recipient", "device/vault/grants.py",
       '        if recipient.role != "recipient":\n            raise FormatError',
       "        " + OFF + "\n            raise FormatError", GRANTS, fast=True),
    _m("grants: the owner's tool signs over-long purposes", "device/vault/grants.py",
       '("purpose", purpose, MAX_PURPOSE)', '("purpose", purpose, 10 * MAX_PURPOSE)', GRANTS, fast=True),
    # ------------------------------------------------------------------------------------ device/vault/bundles.py
    _m("bundles: the device signs less than the whole head", "device/vault/bundles.py",
       "identity.sign(signed_message(SIG_DOMAIN, head))", "identity.sign(signed_message(SIG_DOMAIN, head[:-1]))",
       VAULT),
    _m("bundles: a manifest changed after the index was signed is shipped", "device/vault/bundles.py",
       '            if manifest_hash(raw) != entry["manifest_hash"]:', "            " + OFF, VAULT),
    _m("bundles: a clip whose size differs from its manifest is indexed", "device/vault/bundles.py",
       "            if size != m.size:", "            " + OFF, VAULT),
    # -------------------------------------------------------------------------------- device/vault/bundle_open.py
    _m("bundle_open: the expected owner is not compared", "device/vault/bundle_open.py",
       "        if owner is not None and owner != self.owner:", "        " + OFF, VAULT),
    _m("bundle_open: the grant's owner signature not checked", "device/vault/bundle_open.py",
       "        self.grant.verify(self.owner)\n", "        pass\n", VAULT),
    _m("bundle_open: the recipient is not compared", "device/vault/bundle_open.py",
       "        if self.grant.recipient.box != recipient.public.box:", "        " + OFF, VAULT),
    _m("bundle_open: clips outside the grant accepted", "device/vault/bundle_open.py",
       "        if [e.clip_id for e in self._entries] != list(self.grant.clip_ids):", "        " + OFF, VAULT),
    _m("bundle_open: bundle length not checked", "device/vault/bundle_open.py",
       "        if len(head) + 64 + sum(e.manifest_size + e.size for e in self._entries) != length:",
       "        " + OFF, VAULT),
    _m("bundle_open: device key and device id not tied", "device/vault/bundle_open.py",
       "        if device_id_for(device_key) != self.device_id or self.grant.device_id != self.device_id:",
       "        " + OFF, VAULT),
    _m("bundle_open: manifest signature not checked", "device/vault/bundle_open.py",
       "        return m.verify(self._vk)", "        return m", VAULT),
    _m("bundle_open: manifest naming another clip accepted", "device/vault/bundle_open.py",
       "        if m.clip_id != entry.clip_id or m.device_id != self.device_id:", "        " + OFF, VAULT),
    # ----------------------------------------------------------------------------------- device/vault/manifest.py
    _m("manifest: chunk hashes not compared", "device/vault/manifest.py",
       "            if len(frame) != n or chunk_hash(frame) != h:", "            " + OFF, VAULT),
    _m("manifest: header hash not compared", "device/vault/manifest.py",
       "        if header.hash.hex() != self.header_hash:", "        " + OFF, VAULT),
    _m("manifest: a truncated or extended clip passes", "device/vault/manifest.py",
       "        if i != len(self.chunks) or pos != size or size != self.size:", "        " + OFF, VAULT),
    # ------------------------------------------------------------------------------ device/vault/audit*.py
    _m("audit: a record's signature not checked", "device/vault/audit_verify.py",
       "                self.vk.verify(signed_message(SIG_DOMAIN, h), rec.sig)", "                pass", AUDIT),
    _m("audit: the chain link (prev) not compared", "device/vault/audit_verify.py",
       "            if rec.prev != self.prev.hex():", "            " + OFF, AUDIT),
    _m("audit: the record hash not compared", "device/vault/audit_verify.py",
       "            if h.hex() != rec.hash:", "            " + OFF, AUDIT),
    _m("audit: record indexes not checked", "device/vault/audit_verify.py",
       "            if rec.index != self.next:", "            " + OFF, AUDIT),
    _m("audit: missing history accepted", "device/vault/audit_verify.py",
       "        if self.start > self.dropped_to:", "        " + OFF, AUDIT),
    _m("audit: an expected head missing from the log accepted (rollback)", "device/vault/audit_verify.py",
       "        if not self.seen_expected:", "        " + OFF, AUDIT),
    _m("audit: a forged checkpoint accepted", "device/vault/audit_format.py",
       '    if set(f) != set(CHECKPOINT_FIELDS) or f["head"] != rec.prev or f["count"] != rec.index:',
       "    " + OFF, AUDIT),
    _m("audit: appends not fsynced", "device/vault/audit.py",
       "            write_all(self._fd, line)\n            os.fsync(self._fd)", "            write_all(self._fd, line)",
       AUDIT),
    _m("audit: a failed append is not cut back", "device/vault/audit.py",
       "        except OSError:\n            self._cut_back()\n            raise",
       "        except OSError:\n            raise", AUDIT),
    _m("audit: a torn tail is not cut off at open", "device/vault/audit.py",
       "        if torn:  # a crash mid-append: part of one record\n            self._truncate(end)",
       "        " + OFF + "  # a crash mid-append: part of one record\n            self._truncate(end)", AUDIT),
    _m("audit: retention drops a segment the next one does not checkpoint", "device/vault/audit.py",
       "            if total <= self.max_bytes or rec is None or rec.kind != CHECKPOINT:",
       "            if total <= self.max_bytes:", AUDIT),
)


# ---------------------------------------------------------------------------------------------------- running

def _copy_repo(dest: Path) -> None:
    """Tracked and new (not ignored) files of the repository, plus a shadow ``doorkeep`` package over them."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    shadow = dest / "_shadow" / "doorkeep"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("")
    for name, rel in PACKAGES.items():
        (shadow / name).symlink_to(dest / rel, target_is_directory=True)


def _pytest(copy: Path, tests: tuple[str, ...], timeout: float) -> tuple[int, float, str]:
    env = {**os.environ, "PYTHONPATH": str(copy / "_shadow"), "PYTHONDONTWRITEBYTECODE": "1"}
    t0 = time.monotonic()
    try:
        out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
                             cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
        rc, text = out.returncode, out.stdout + out.stderr
    except subprocess.TimeoutExpired:
        rc, text = -1, "timeout"
    return rc, time.monotonic() - t0, text


def _check_shadow(copy: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(copy / "_shadow"), "PYTHONDONTWRITEBYTECODE": "1"}
    out = subprocess.run([sys.executable, "-c", "import doorkeep.device.rings as r; print(r.__file__)"], cwd=copy,
                         env=env, capture_output=True, text=True, check=True).stdout.strip()
    if not Path(out).resolve().is_relative_to(copy.resolve()):
        raise SystemExit(f"mutation_check: the copy is not what gets imported ({out})")


def _last_line(text: str) -> str:
    lines = [x for x in text.strip().splitlines() if x.strip()]
    return lines[-1][:160] if lines else ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fast", action="store_true", help="only the fast subset")
    ap.add_argument("--only", action="append", default=[], metavar="TEXT",
                    help="mutants whose name contains this text (repeatable: any of them)")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per pytest run")
    ap.add_argument("--markdown", action="store_true", help="print the result table as Markdown")
    args = ap.parse_args(argv)
    chosen = [m for m in MUTANTS
              if (m.fast or not args.fast) and (not args.only or any(o in m.name for o in args.only))]
    if args.list:
        for m in chosen:
            n = (ROOT / m.path).read_text().count(m.old)
            print(f"{m.name}  [{m.path}]{'  (equivalent)' if m.equivalent else ''}{'' if n == 1 else f'  BAD: {n}x'}")
        return 0
    with tempfile.TemporaryDirectory(prefix="dk-mutants-") as d:
        copy = Path(d)
        _copy_repo(copy)
        _check_shadow(copy)
        for m in chosen:
            text = (copy / m.path).read_text()
            if text.count(m.old) != 1:
                raise SystemExit(f"mutation_check: {m.name}: the text to mutate occurs {text.count(m.old)} times "
                                 f"in {m.path} (the code changed: update the mutant)")
        union = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
        rc, dt, out = _pytest(copy, union, args.timeout)
        print(f"baseline (no mutant, {len(union)} test targets): rc={rc} in {dt:.0f} s", flush=True)
        if rc != 0:
            print(out[-3000:])
            raise SystemExit("mutation_check: the tests fail without any mutant; fix that first")
        rows = []
        for k, m in enumerate(chosen, 1):
            path = copy / m.path
            original = path.read_text()
            path.write_text(original.replace(m.old, m.new))
            try:
                rc, dt, out = _pytest(copy, m.tests, args.timeout)
            finally:
                path.write_text(original)
            # pytest exits 1 when tests failed; anything else (2: a collection or import error, 3/4: internal or
            # usage error, 5: nothing collected, -1: timeout) says nothing about the tests, so it is no kill.
            if rc == 1:
                verdict = "killed"
            elif rc != 0:
                verdict = f"ERROR (pytest exit {rc})"
            else:
                verdict = "survived (equivalent)" if m.equivalent else "SURVIVED"
            rows.append((m, verdict, dt, _last_line(out)))
            print(f"[{k}/{len(chosen)}] {verdict:<22} {dt:5.0f} s  {m.name}", flush=True)
    killed = sum(v == "killed" for _, v, _, _ in rows)
    equivalent = sum(v.startswith("survived") for _, v, _, _ in rows)
    gaps = [m for m, v, _, _ in rows if v == "SURVIVED" or v.startswith("ERROR")]
    scored = len(rows) - equivalent
    print(f"\nkilled {killed} of {len(rows)} mutants ({equivalent} equivalent); kill rate "
          f"{killed}/{scored} = {killed / max(1, scored):.0%} of the non-equivalent ones")
    if args.markdown:
        print("\n| mutant | file | result |\n|---|---|---|")
        for m, v, _, _ in rows:
            print(f"| {m.name} | `{m.path}` | {v}{': ' + m.equivalent if m.equivalent else ''} |")
    for m, v, _, last in rows:
        if v == "SURVIVED" or v.startswith("ERROR"):
            print(f"{v}: {m.name} ({m.path}){'  -- ' + last if v.startswith('ERROR') else ''}")
    return 1 if gaps else 0


if __name__ == "__main__":
    sys.exit(main())
