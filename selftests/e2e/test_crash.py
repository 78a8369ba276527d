"""Crash consistency: kill -9 of sealtraild in the middle of heavy output,
then a power cut's torn write at the tail of the log. The store must open,
report the torn tail as a gap, keep appending, verify, and never use an
AES-GCM nonce twice under one key."""

import os
import shutil
import signal
import tempfile

import storefmt
from harness import Daemon, check, check_eq, client_port, test, wait_for
from sshlab import PtySession, SshLab

PROMPT = b"$ "


def store_bytes(store):
    d = os.path.join(store, "segments")
    return sum(os.path.getsize(os.path.join(d, n)) for n in os.listdir(d))


def tear_tail(store):
    """What a power cut does to the write in flight: the last segment ends
    inside an envelope. Cut the last envelope in half, unless it is a seal
    (an epoch record is synced before its key is replaced, so no crash can
    tear it): then leave half of a copy of the envelope before it, as a
    write that had just begun. If the kill interrupted a write (the kernel
    stops a write to a file at a page when a fatal signal is pending), the
    tail is torn already. Returns (segment path, offset of the torn
    envelope, bytes of it left on disk)."""
    seg = storefmt.read_store(store)[-1]
    check(seg.envelopes, "envelopes in the last segment", segment=seg.path, size=seg.size)
    if seg.torn:
        return seg.path, seg.tail_off, seg.size - seg.tail_off
    last = seg.envelopes[-1]
    if last.type != storefmt.REC_EPOCH:
        keep = last.len // 2
        os.truncate(seg.path, last.off + keep)
        return seg.path, last.off, keep
    src = next(e for e in reversed(seg.envelopes) if e.type != storefmt.REC_EPOCH)
    with open(seg.path, "rb") as f:
        f.seek(src.off)
        half = f.read(src.len // 2)
    with open(seg.path, "ab") as f:
        f.write(half)
    return seg.path, seg.size, len(half)


@test("e2e/crash_kill9_and_torn_tail_recover")
def crash():
    work = tempfile.mkdtemp(prefix="st-crash-")
    try:
        crash_story(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def crash_story(work):
    with SshLab(None, use_pam=True) as lab, Daemon() as d:
        u = lab.add_user("stcrash")
        d.wait_listener(lab.pid)
        pinned = os.path.join(work, "first.pub")
        with open(os.path.join(d.store, "keys", "first.pub")) as f, open(pinned, "w") as g:
            g.write(f.read())
        stop_flag = os.path.join(u.home, "stop")

        # 1. heavy, incompressible output until the test says stop
        s = PtySession(lab.ssh_argv(u))
        try:
            s.expect(PROMPT)
            port = client_port(s.pid)
            s.send(b"while [ ! -e stop ]; do head -c 1000000 /dev/urandom | base64; done;"
                   b" echo STOPPED$((6*7))\n")
            base = store_bytes(d.store)
            wait_for(lambda: store_bytes(d.store) > base + (6 << 20), 120,
                     "6 MiB of output in the store")
            live = d.session_of_port(port, ended=False)

            # 2. kill -9 while the output streams in
            os.kill(d.proc.pid, signal.SIGKILL)
            d.proc.wait(10)
            open(stop_flag, "w").close()
            s.expect(b"STOPPED42", timeout=120)
            s.expect(PROMPT)

            # 3. and a power cut's torn write on top
            torn_file, torn_off, torn_bytes = tear_tail(d.store)
            rc, out, err = d.verify("--pubkey", pinned)
            check(rc == 1 and "torn write" in out.get("reason", ""),
                  "before a writer acknowledges it, verify reports the torn tail", out=out,
                  stderr=err)
            check_eq((out["file"], out["offset"]), (torn_file, torn_off),
                     "verify names the torn file and offset", out=out)

            # 4. the store opens again; the live login is adopted
            d.start()
            d.wait_listener(lab.pid)
            s.send(b"echo ADOPTED$((2+3))\n")
            s.expect(b"ADOPTED5")
            s.send(b"exit\n")
            check_eq(s.wait_exit(), 0, "ssh exit status")
        finally:
            s.close()

        # 5. a new session after the crash is recorded in full
        marker = b"NEWSESSION" + os.urandom(4).hex().encode()
        with PtySession(lab.ssh_argv(u)) as s2:
            s2.expect(PROMPT)
            port2 = client_port(s2.pid)
            s2.send(b"echo " + marker + b"\n")
            s2.expect(marker + b"\n")
            s2.send(b"exit\n")
            check_eq(s2.wait_exit(), 0, "ssh exit status of the new session")
        new = d.session_of_port(port2)
        check(marker in d.export(new["id"], "--format", "raw"), "new session's output stored")
        adopted = d.wait_session("the adopted continuation of the crashed login to end",
                                 lambda x: x["source_port"] == port and x["id"] != live["id"]
                                 and x["end"] is not None, 60)
        check(b"ADOPTED5" in d.export(adopted["id"], "--format", "raw"),
              "output after the restart stored in the adopted session")
        check_eq(d.stop(), 0, "clean stop", log=d.log())

        # the seal holds: the torn bytes are acknowledged by the gap
        rc, out, err = d.verify("--pubkey", pinned)
        check_eq(rc, 0, "verify passes after the crash", out=out, stderr=err)
        check_eq(out["uncovered"], 1, "the clean stop signed everything but its own seal",
                 out=out)

        # no nonce twice under one key, across every segment of the store
        checked, problems = storefmt.nonce_reuse(d.store)
        check(checked > 100, "envelopes checked", checked=checked)
        check_eq(problems, [], "every envelope opens; no (key, nonce) repeats")

        # the torn tail is a gap, for the store and for the login it cut into
        gaps = d.cli_json("gaps")
        torn = [g for g in gaps if g.get("file") == torn_file]
        check_eq(len(torn), 2, "a store gap and the crashed session's gap name the torn file",
                 gaps=gaps)
        store_gap = [g for g in torn if g["session"] is None]
        check_eq(len(store_gap), 1, "one store-level gap", gaps=torn)
        check_eq((store_gap[0]["file_offset"], store_gap[0]["lost_bytes"]),
                 (torn_off, torn_bytes), "gap says where and how much", gap=store_gap[0])
        check("torn" in store_gap[0]["reason"], "reason says torn write", gap=store_gap[0])
        crashed = [x for x in d.sessions() if x["id"] == live["id"]]
        check_eq(len(crashed), 1, "the crashed session is still listed")
        check(crashed[0]["end"] is not None and crashed[0]["gaps"] >= 1,
              "the crashed session is closed and shows its gap", session=crashed[0])
        ev = [e for e in d.events(live["id"]) if e["type"] == "gap"]
        check(any(e.get("file") == torn_file and e.get("file_offset") == torn_off for e in ev),
              "the gap is in the crashed session's timeline", gaps=ev)
        check_eq(new["gaps"], 0, "the new session has no gap", session=new)


def restart_during_login(lab, d, u, word, kill):
    """Log in, then stop sealtraild (kill -9 or SIGTERM) and start it again
    while the login goes on; log out. Returns the session as it began."""
    with PtySession(lab.ssh_argv(u)) as s:
        s.expect(PROMPT)
        port = client_port(s.pid)
        s.send(b"echo " + word + b"$((1+1))\n")
        s.expect(word + b"2")
        sess = d.session_of_port(port, ended=False)
        if kill:
            os.kill(d.proc.pid, signal.SIGKILL)
            d.proc.wait(10)
        else:
            check_eq(d.stop(), 0, "clean stop", log=d.log())
        d.start()
        d.wait_listener(lab.pid)
        s.send(b"exit\n")
        check_eq(s.wait_exit(), 0, "ssh exit status")
    return sess


@test("e2e/kill9_without_torn_tail_marks_a_gap")
def kill9_gap():
    """kill -9 that tears nothing still loses what the collector held in
    memory: each session open then gets a gap; a clean stop gives none."""
    with SshLab(None, use_pam=True) as lab, Daemon() as d:
        u = lab.add_user("stkill")
        d.wait_listener(lab.pid)
        killed = restart_during_login(lab, d, u, b"KILLED", kill=True)
        with open(d.log_path, errors="replace") as f:
            log = f.read()
        check("did not stop cleanly" in log, "the restart says so in its log", log=log[-2000:])
        gaps = [g for g in d.cli_json("gaps") if g["session"] == killed["id"]]
        check_eq(len(gaps), 1, "one gap for the session open at the kill", gaps=gaps)
        check("did not stop cleanly" in gaps[0]["reason"], "the gap says why", gap=gaps[0])
        ended = [x for x in d.sessions() if x["id"] == killed["id"]]
        check(ended and ended[0]["end"] is not None and ended[0]["gaps"] == 1
              and ended[0]["lost_events"] >= 1,
              "the session is closed and counts the gap", session=ended)

        # a clean stop and start: the open session is closed, with no gap
        clean = restart_during_login(lab, d, u, b"CLEAN", kill=False)
        gaps = [g for g in d.cli_json("gaps") if g["session"] == clean["id"]]
        check_eq(gaps, [], "a clean stop leaves no gap")
        rc, out, err = d.verify()
        check_eq(rc, 0, "verify passes", out=out, stderr=err)
