#!/usr/bin/python3
"""Write the seed corpora of the store fuzzers, so fuzzing starts from real
records (userspace/store/record.h) and real sealed segments
(userspace/store/seal.h, store.h).

  fuzz_record/   record streams, as rec_parse reads them in a loop
  fuzz_segment/  segment bodies (what follows the 128-byte v2 header)

The record streams are a session as the daemon writes it, every record type
alone, a torn tail, a corrupt record in the middle. For fuzz_record each file
starts with the target's mode byte: 1 = make the CRCs right before parsing
(most seeds, so mutations reach the field parser), 0 = take the bytes as they
are (the corrupt ones).

For fuzz_segment the streams go through a real store: the fuzzer itself,
started with SEALTRAIL_FUZZ_SEEDS=DIR, appends each one with store_append
(closing epochs where the stream has a REC_EPOCH record) and writes segment
1's body twice: as sealed (AES-256-GCM under that store's key: it does not
open in the fuzzer's store, only the plain seals do) and with every envelope
opened (header, record, tag). The seeds are the opened ones with mode byte 7
(seal, fix CRCs, fix the hash chain, see fuzz_segment.c), a torn tail and a
corrupt record made from them, and a few sealed bodies with mode byte 0.

Run it again after a format change, after `make fuzz` (it needs
build/fuzz/fuzz_segment, or --fuzzer PATH); the files it writes are
committed. The sealed seeds differ at every run (random keys and nonces).
"""

import argparse
import os
import shutil
import subprocess
import struct
import tempfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))

# record.h
(REC_DAEMON, REC_SESSION_START, REC_SESSION_ATTR, REC_SESSION_END, REC_TTY, REC_EXEC,
 REC_FORK, REC_EXIT, REC_GAP) = range(1, 10)
(TAG_HOST, TAG_BOOT_ID, TAG_VERSION, TAG_EVENT, TAG_USER, TAG_LOGINUID, TAG_UID, TAG_EUID,
 TAG_GID, TAG_SESSIONID, TAG_SOURCE_IP, TAG_SOURCE_PORT, TAG_LOCAL_IP, TAG_LOCAL_PORT,
 TAG_TTY, TAG_LEADER_PID, TAG_LISTENER_PID, TAG_ADOPTED, TAG_PID, TAG_PPID, TAG_CHILD_PID,
 TAG_FILENAME, TAG_ARGV, TAG_ARGV_TOTAL, TAG_ARGV_TRUNCATED, TAG_STREAM, TAG_DATA,
 TAG_OFFSET, TAG_STATUS, TAG_LOST_EVENTS, TAG_LOST_BYTES, TAG_REASON, TAG_BYTES_IN,
 TAG_BYTES_OUT, TAG_FILE, TAG_FILE_OFFSET, TAG_KIND, TAG_COMMAND, TAG_CONN_ID, TAG_DEST_IP,
 TAG_DEST_PORT, TAG_BYTES_SENT, TAG_BYTES_RECV, TAG_BYTES, TAG_STORED, TAG_SHA256, TAG_CAP,
 TAG_TTY_INDEX) = range(1, 49)
REC_CHANNEL_OPEN, REC_CHANNEL_CLOSE, REC_CAPPED, REC_STREAM_END = range(10, 14)
REC_EPOCH = 15

# seal.h
SEAL_HEADER_LEN, SEAL_TAG_LEN = 116, 16
# fuzz_segment.c modes
MODE_SEAL, MODE_CRC, MODE_CHAIN = 1, 2, 4

SID = bytes(range(0x10, 0x20))
T0 = 1700000000 * 10**9


def record(rtype, seq, fields, session=SID, wall=T0, mono=10**9):
    body = b""
    for tag, value in fields:
        if isinstance(value, int):
            value = struct.pack(">Q", value)
        elif isinstance(value, str):
            value = value.encode()
        body += struct.pack(">HI", tag, len(value)) + value
    length = 48 + len(body) + 4
    head = struct.pack(">IHHQQQ", length, rtype, 0, seq, wall, mono) + session
    rec = head + body
    return rec + struct.pack(">I", zlib.crc32(rec))


def session(first_seq=1):
    s = first_seq
    recs = [
        record(REC_DAEMON, s, [(TAG_EVENT, "start"), (TAG_HOST, "web1"),
                               (TAG_BOOT_ID, "0f1e2d3c"), (TAG_VERSION, "0.1.0")],
               session=bytes(16)),
        record(REC_SESSION_START, s + 1, [
            (TAG_HOST, "web1"), (TAG_BOOT_ID, "0f1e2d3c"), (TAG_USER, "alice"),
            (TAG_LOGINUID, 1000), (TAG_UID, 1000), (TAG_SOURCE_IP, "192.0.2.10"),
            (TAG_SOURCE_PORT, 50022), (TAG_LOCAL_IP, "192.0.2.1"), (TAG_LOCAL_PORT, 22),
            (TAG_TTY, "pts/3"), (TAG_LEADER_PID, 4242), (TAG_LISTENER_PID, 800),
            (TAG_ADOPTED, 0)]),
        record(REC_TTY, s + 2, [(TAG_STREAM, 0), (TAG_TTY_INDEX, 3), (TAG_PID, 4242),
                                (TAG_DATA, "ls -la\r")]),
        record(REC_TTY, s + 3, [(TAG_STREAM, 1), (TAG_TTY_INDEX, 3), (TAG_PID, 4242),
                                (TAG_DATA, b"\x1b[01;34mdir\x1b[0m  file\r\n")]),
        record(REC_EXEC, s + 4, [
            (TAG_PID, 5000), (TAG_PPID, 4242), (TAG_UID, 1000), (TAG_EUID, 1000),
            (TAG_GID, 1000), (TAG_LOGINUID, 1000), (TAG_SESSIONID, 7),
            (TAG_FILENAME, "/usr/bin/ls"), (TAG_ARGV, b"ls\0-la\0"), (TAG_ARGV_TOTAL, 7),
            (TAG_ARGV_TRUNCATED, 0)]),
        record(REC_FORK, s + 5, [(TAG_PID, 4242), (TAG_CHILD_PID, 5001)]),
        record(REC_EXIT, s + 6, [(TAG_PID, 5000), (TAG_STATUS, 0x100)]),
        record(REC_SESSION_ATTR, s + 7, [(TAG_USER, "root"), (TAG_UID, 0), (TAG_TTY, "pts/4")]),
        record(REC_GAP, s + 8, [(TAG_LOST_EVENTS, 3), (TAG_LOST_BYTES, 100),
                                (TAG_REASON, "ring buffer full")]),
        record(REC_CHANNEL_OPEN, s + 9, [(TAG_CONN_ID, 1), (TAG_DEST_IP, "10.0.0.5"),
                                         (TAG_DEST_PORT, 5432), (TAG_PID, 4243)]),
        record(REC_CHANNEL_CLOSE, s + 10, [(TAG_CONN_ID, 1), (TAG_BYTES_SENT, 1200),
                                           (TAG_BYTES_RECV, 34000)]),
        record(REC_CAPPED, s + 11, [(TAG_STREAM, 3), (TAG_CAP, 1 << 20)]),
        record(REC_STREAM_END, s + 12, [(TAG_STREAM, 3), (TAG_BYTES, 5 << 20),
                                        (TAG_STORED, 1 << 20), (TAG_SHA256, "ab" * 32)]),
        record(REC_SESSION_END, s + 13, [(TAG_REASON, "logout"), (TAG_STATUS, 0)]),
    ]
    return recs


def seeds():
    recs = session()
    out = {"session": b"".join(recs)}
    for r in recs:
        out["type-%d" % struct.unpack(">H", r[4:6])[0]] = r
    out["empty-record"] = record(REC_DAEMON, 1, [], session=bytes(16))
    out["torn-tail"] = b"".join(recs[:4]) + recs[4][:len(recs[4]) // 2]
    bad = bytearray(recs[3])
    bad[60] ^= 0xff
    out["corrupt-middle"] = b"".join(recs[:3]) + bytes(bad) + b"".join(recs[4:])
    out["recovery-gap"] = record(REC_GAP, 11, [
        (TAG_REASON, "record of 116 bytes but only 58 left (torn write)"),
        (TAG_FILE, "/var/lib/sealtrail/segments/seg-00000001.log"),
        (TAG_FILE_OFFSET, 412), (TAG_LOST_BYTES, 58)], session=bytes(16))
    out["64-fields"] = record(REC_SESSION_ATTR, 1, [(TAG_PID, i) for i in range(64)])
    return out


RAW = {"corrupt-middle"}  # seeds whose bad CRC is the point
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))


def envelopes(body):
    """Split an opened segment body into its envelopes."""
    out = []
    while body:
        n = struct.unpack(">I", body[:4])[0]
        out.append(body[:n])
        body = body[n:]
    return out


def segment_seeds(fuzzer):
    """Seal the record streams in real stores; make fuzz_segment's seeds of them."""
    recs = session()
    epoch = record(REC_EPOCH, 1, [], session=bytes(16))  # "close an epoch here"
    streams = {name: data for name, data in seeds().items()
               if name not in ("torn-tail", "corrupt-middle")}
    streams["session-epochs"] = b"".join(recs[:5]) + epoch + epoch + b"".join(recs[5:]) + epoch
    streams["epoch-only"] = epoch
    tmp = tempfile.mkdtemp(prefix="sealtrail-seeds-")
    try:
        for name, data in streams.items():
            with open(os.path.join(tmp, name + ".rec"), "wb") as f:
                f.write(data)
        env = dict(os.environ, SEALTRAIL_FUZZ_SEEDS=tmp)
        subprocess.run([fuzzer, "-runs=0"], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        opened, sealed = {}, {}
        for name in streams:
            with open(os.path.join(tmp, name + ".open"), "rb") as f:
                opened[name] = f.read()
            with open(os.path.join(tmp, name + ".sealed"), "rb") as f:
                sealed[name] = f.read()
    finally:
        shutil.rmtree(tmp)

    full = MODE_SEAL | MODE_CRC | MODE_CHAIN
    out = {name: bytes([full]) + body for name, body in opened.items()}
    envs = envelopes(opened["session"])
    out["torn-tail"] = bytes([full]) + b"".join(envs[:4]) + envs[4][:len(envs[4]) // 2]
    bad = bytearray(envs[3])
    bad[SEAL_HEADER_LEN + 60] ^= 0xff  # in the record: its CRC no longer matches
    out["corrupt-middle"] = (bytes([MODE_SEAL | MODE_CHAIN]) + b"".join(envs[:3]) + bytes(bad)
                             + b"".join(envs[4:]))
    out["broken-chain"] = bytes([MODE_SEAL | MODE_CRC]) + opened["session"]
    for name in ("session", "session-epochs", "epoch-only"):
        out[name + "-sealed"] = b"\0" + sealed[name]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fuzzer", default=os.path.join(REPO, "build/fuzz/fuzz_segment"),
                    help="the fuzz_segment binary that seals the segment seeds")
    args = ap.parse_args()
    if not os.access(args.fuzzer, os.X_OK):
        raise SystemExit("%s: not found: run `make fuzz` first" % args.fuzzer)

    d = os.path.join(HERE, "fuzz_record")
    os.makedirs(d, exist_ok=True)
    for name, data in seeds().items():
        with open(os.path.join(d, name), "wb") as f:
            f.write((b"\0" if name in RAW else b"\1") + data)

    segment = segment_seeds(args.fuzzer)
    d = os.path.join(HERE, "fuzz_segment")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for name, data in segment.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
