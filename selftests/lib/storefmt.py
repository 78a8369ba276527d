"""Read a sealtrail store's segment files from Python, independently of the
C code: segment headers and sealed envelopes as docs/STORE.md and
userspace/store/seal.h lay them out. For tests that look at what is on
disk (torn tails, nonces) rather than at what `sealtrail` reports."""

from __future__ import annotations

import os
import struct

SEG_MAGIC = b"STRLSEG2"
SEG_HEADER_LEN = 128
SEG_HEADER_AAD = 48
ENV_HEADER_LEN = 116
TAG_LEN = 16
NONCE_OFF = 104
SEAL_PLAIN = 1
REC_EPOCH = 15
REC_GAP = 9


class Envelope:
    def __init__(self, seg, off, raw):
        self.seg = seg
        self.off = off
        self.len, self.type, self.flags, self.seq, self.epoch, self.segment = \
            struct.unpack_from(">IHHQII", raw, 0)
        self.header = raw[:ENV_HEADER_LEN]
        self.nonce = raw[NONCE_OFF:NONCE_OFF + 12]
        self.ciphertext = raw[ENV_HEADER_LEN:self.len]  # payload and tag
        self.plain = bool(self.flags & SEAL_PLAIN)

    def __repr__(self):
        return (f"Envelope(seg {self.seg} off {self.off} len {self.len} type {self.type}"
                f" seq {self.seq})")


class Segment:
    def __init__(self, number, path, header, envelopes, tail_off, size):
        self.number = number
        self.path = path
        self.header = header
        self.envelopes = envelopes
        self.tail_off = tail_off  # where the bytes no envelope accounts for start
        self.size = size

    @property
    def torn(self):
        return self.tail_off < self.size

    @property
    def wrapped_key(self):
        return self.header[SEG_HEADER_AAD:SEG_HEADER_AAD + 60] if self.header else None


def segment_paths(store):
    d = os.path.join(store, "segments")
    names = sorted(n for n in os.listdir(d) if n.startswith("seg-") and n.endswith(".log"))
    return [(int(n[4:12]), os.path.join(d, n)) for n in names]


def read_segment(number, path):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < SEG_HEADER_LEN or data[:8] != SEG_MAGIC:
        return Segment(number, path, None, [], 0, len(data))
    envs = []
    off = SEG_HEADER_LEN
    while off + 4 <= len(data):
        n = struct.unpack_from(">I", data, off)[0]
        if n < ENV_HEADER_LEN + TAG_LEN or off + n > len(data):
            break
        envs.append(Envelope(number, off, data[off:off + n]))
        off += n
    return Segment(number, path, data[:SEG_HEADER_LEN], envs, off, len(data))


def read_store(store):
    return [read_segment(n, p) for n, p in segment_paths(store)]


def segment_keys(store, segments):
    """Each segment's data key, unwrapped with DIR/keys/kek (root only)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    with open(os.path.join(store, "keys", "kek"), "rb") as f:
        kek = AESGCM(f.read())
    keys = {}
    for s in segments:
        if s.header is None:
            continue
        w = s.wrapped_key
        keys[s.number] = kek.decrypt(w[:12], w[12:], s.header[:SEG_HEADER_AAD])
    return keys


def nonce_reuse(store):
    """Check every encrypted envelope of the store: its tag verifies under its
    segment's key with the nonce read here (so the parse is right), and no
    (key, nonce) pair appears twice. Returns (envelopes checked, problems)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    segments = read_store(store)
    keys = segment_keys(store, segments)
    seen = {}
    problems = []
    checked = 0
    if len(set(keys.values())) != len(keys):
        problems.append("two segments share a data key")
    for s in segments:
        key = keys.get(s.number)
        for e in s.envelopes:
            if e.plain:
                continue
            checked += 1
            try:
                AESGCM(key).decrypt(e.nonce, e.ciphertext, e.header)
            except Exception:
                problems.append(f"{e!r} does not open with its segment key")
            k = (key, e.nonce)
            if k in seen:
                problems.append(f"nonce {e.nonce.hex()} reused under one key: {seen[k]!r} "
                                f"and {e!r}")
            seen[k] = e
    return checked, problems
