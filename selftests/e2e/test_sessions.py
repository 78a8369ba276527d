"""Interactive ssh sessions recorded by sealtraild, checked against what the
ssh client really sent and received. Each test runs with UsePAM yes (the
person comes from pam_loginuid) and UsePAM no (from sshd's process tree)."""

import contextlib
import json
import os
import signal
import threading
import time

from harness import (BUILD, Daemon, check, check_eq, client_port, parse_rfc3339, scratch_dir,
                     test, wait_for)
from sshlab import NetLab, PtySession, SshLab

PROMPT = b"$ "
ROOT_PROMPT = b"# "


def lab_and_daemon(use_pam, daemon_args=()):
    lab = SshLab(None, use_pam=use_pam)
    daemon = Daemon(daemon_args)
    return lab, daemon


@contextlib.contextmanager
def recorded_user(name, use_pam, daemon_args=()):
    """A private sshd, sealtraild following it and a test user: (lab, d, u)."""
    lab, d = lab_and_daemon(use_pam, daemon_args)
    with lab, d:
        u = lab.add_user(name)
        d.wait_listener(lab.pid)
        yield lab, d, u


def login(lab, user):
    s = PtySession(lab.ssh_argv(user))
    s.expect(PROMPT)
    return s


def logout(s):
    s.send(b"exit\n")
    check_eq(s.wait_exit(), 0, "ssh client exit status after logout")


def for_both_pam_modes(name):
    def register(fn):
        for use_pam in (True, False):
            test(f"e2e/{'pam' if use_pam else 'nopam'}/{name}")(
                lambda fn=fn, use_pam=use_pam: fn(use_pam))
        return fn
    return register


@for_both_pam_modes("byte_exact_streams_and_attribution")
def byte_exact(use_pam):
    """The investigator's story: alice logs in, becomes root with sudo -i,
    then another user with su -, runs commands; everything is attributed to
    alice, both streams are byte-exact, execs carry argv and exit codes."""
    lab, d = lab_and_daemon(use_pam)
    with lab, d:
        alice = lab.add_user("stalice")
        bob = lab.add_user("stbob")
        d.wait_listener(lab.pid)
        with login(lab, alice) as s:
            port = client_port(s.pid)
            # escape sequences, binary garbage and UTF-8 through the pty
            s.send(b"printf '\\033[31mred\\033[0m \\xe2\\x82\\xac \\x00\\x01\\xff\\n'; echo MARK1\n")
            s.expect(b"MARK1\n")
            s.send(b"sudo -i\n")
            s.expect(ROOT_PROMPT)
            s.send(b"env ST_MARK=1 id -u; bash -c 'exit 7' st-mark; echo rc=$?\n")
            s.expect(b"rc=7")
            s.send(b"su - stbob\n")
            s.expect(PROMPT)
            s.send(b"env ST_MARK=2 whoami; bash -c 'exit 5' st-su; exit 0\n")
            s.expect(ROOT_PROMPT)
            s.send(b"exit\n")
            s.expect(PROMPT)
            logout(s)
            sent, received = s.sent, s.received

        sess = d.session_of_port(port)
        check_eq(sess["user"], "stalice", "session user after sudo -i and su -", session=sess)
        check_eq(sess["uid"], alice.uid, "login uid", session=sess)
        if use_pam:
            check_eq(sess["loginuid"], alice.uid, "loginuid", session=sess)
        check_eq(sess["source_ip"], "127.0.0.1", "source ip", session=sess)
        check_eq(sess["local_port"], lab.port, "local port", session=sess)
        check(sess["tty"] and sess["tty"].startswith("pts/"), "tty", session=sess)
        check_eq(sess["end_reason"], "logout", "end reason", session=sess)
        check_eq(sess["lost_events"], 0, "lost events", session=sess)
        check_eq(sess["bytes_out"], len(received), "bytes_out", session=sess)
        check_eq(sess["bytes_in"], len(sent), "bytes_in", session=sess)
        out = d.export(sess["id"], "--format", "raw")
        check_eq(out, received, "recorded output == what the client received", id=sess["id"])
        inp = d.export(sess["id"], "--format", "raw", "--stream", "in")
        check_eq(inp, sent, "recorded input == what the client sent", id=sess["id"])

        events = d.events(sess["id"])
        execs = [e for e in events if e["type"] == "exec"]
        exits = {e["pid"]: e["status"] for e in events if e["type"] == "exit"}
        ids = [e for e in execs if e["argv"] == ["env", "ST_MARK=1", "id", "-u"]]
        check_eq(len(ids), 1, "one exec of `env ST_MARK=1 id -u`",
                 execs=[e["argv"] for e in execs][-40:])
        check_eq(ids[0]["euid"], 0, "`id -u` ran as root")
        if use_pam:
            check_eq(ids[0]["loginuid"], alice.uid, "`id -u` still carries alice's loginuid")
        seven = [e for e in execs if e["argv"] == ["bash", "-c", "exit 7", "st-mark"]]
        check_eq(len(seven), 1, "one exec of bash -c 'exit 7'")
        check_eq(exits.get(seven[0]["pid"]), 7 << 8, "wait status of bash -c 'exit 7'")
        whoami = [e for e in execs if e["argv"] == ["env", "ST_MARK=2", "whoami"]]
        check_eq(len(whoami), 1, "one exec of whoami after su - stbob")
        check_eq(whoami[0]["uid"], bob.uid, "whoami ran as stbob")
        five = [e for e in execs if e["argv"] == ["bash", "-c", "exit 5", "st-su"]]
        check_eq(len(five), 1, "one exec of bash -c 'exit 5' after su - stbob")
        check_eq(exits.get(five[0]["pid"]), 5 << 8, "wait status after su -")
        if not use_pam:
            check_eq(ids[0]["loginuid"], None, "no loginuid without PAM: null")
        # the human timeline names the right pid for each exec
        human = d.cli("events", sess["id"])
        line = f"exec   pid {ids[0]['pid']:<7} env ST_MARK=1 id -u"
        check(line in human, "human events line of `id -u`", want=line,
              got=[x for x in human.splitlines() if "ST_MARK=1" in x])
        check_eq(events[0]["type"], "session_start", "timeline starts with the session start")
        check(any(e["type"] == "session_end" for e in events), "timeline has the end")


@for_both_pam_modes("concurrent_sessions_do_not_mix")
def concurrent(use_pam):
    lab, d = lab_and_daemon(use_pam)
    n = 20
    with lab, d:
        users = [lab.add_user(f"stc{i:02d}") for i in range(4)]
        d.wait_listener(lab.pid)
        results = [None] * n
        errors = []

        def one(i):
            try:
                with PtySession(lab.ssh_argv(users[i % len(users)])) as s:
                    s.expect(PROMPT)
                    port = client_port(s.pid)
                    for k in range(5):
                        s.send(f"echo S{i:02d}-{k}-$((6*7))\n".encode())
                        s.expect(f"S{i:02d}-{k}-42".encode())
                    logout(s)
                    results[i] = (port, s.sent, s.received)
            except Exception as e:  # reported below with the session number
                errors.append(f"session {i}: {e}")

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        check(not errors, "all 20 sessions ran", errors=errors)
        for i, (port, sent, received) in enumerate(results):
            sess = d.session_of_port(port)
            out = d.export(sess["id"], "--format", "raw")
            check_eq(out, received, f"session {i}: output byte-exact", id=sess["id"])
            inp = d.export(sess["id"], "--format", "raw", "--stream", "in")
            check_eq(inp, sent, f"session {i}: input byte-exact", id=sess["id"])
            others = [f"S{j:02d}-".encode() for j in range(n) if j != i]
            check(not any(o in out for o in others), f"session {i}: no bytes of other sessions")


@for_both_pam_modes("end_on_kill9_of_sshd")
def end_on_kill9(use_pam):
    """kill -9 of the monitor leaves the user's connection working, so the
    session goes on; kill -9 of the sshd that serves the user's pty ends it."""
    with recorded_user("stkill", use_pam) as (lab, d, u):
        with login(lab, u) as s:
            port = client_port(s.pid)
            live = d.session_of_port(port, ended=False)
            check(live["end"] is None, "session is live while logged in", session=live)
            shell = wait_for(lambda: [e for e in d.events(live["id"])
                                      if e["type"] == "exec" and e["argv"] == ["-bash"]],
                             10, "login shell exec")[0]
            os.kill(live["leader_pid"], signal.SIGKILL)
            s.send(b"echo STILL$((3*3))\n")
            s.expect(b"STILL9")
            os.kill(shell["ppid"], signal.SIGKILL)
            s.wait_exit()
        sess = d.session_of_port(port)
        check_eq(sess["end_reason"], "sshd killed by signal 9", "end reason", session=sess)
        out = d.export(sess["id"], "--format", "raw")
        check(b"STILL9" in out, "output after the monitor died is recorded")


@for_both_pam_modes("end_on_network_drop")
def end_on_network_drop(use_pam):
    with NetLab() as net:
        lab = net.ssh_lab(None, use_pam=use_pam)
        with lab, Daemon() as d:
            u = lab.add_user("stdrop")
            d.wait_listener(lab.pid)
            with login(lab, u) as s:
                port = client_port(s.pid)
                d.session_of_port(port, ended=False)
                net.drop()
                sess = d.session_of_port(port, timeout=40)
                s.kill()
            check(sess["end_reason"].startswith("connection closed"), "end reason after drop",
                  session=sess)


@for_both_pam_modes("ringbuf_overflow_becomes_gaps")
def overflow(use_pam):
    """A tiny ring buffer and a slow consumer force losses: they must show
    up as gap records and counters, and every stored byte must be right."""
    args = ["--ringbuf-size", "16384", "--consumer-delay-ms", "100"]
    with recorded_user("stflood", use_pam, args) as (lab, d, u):
        with login(lab, u) as s:
            port = client_port(s.pid)
            s.send(b"seq 1 400000; echo DONE$((1+1))\n")
            s.expect(b"DONE2", timeout=120)
            logout(s)
            received = s.received
        sess = d.session_of_port(port, timeout=60)
        check(sess["lost_events"] > 0, "losses were counted", session=sess)
        # every byte the client got was either stored or counted as lost (sshd may
        # read a few bytes more from the pty than reach the client at logout)
        total = sess["bytes_out"] + sess["lost_bytes"]
        check(len(received) <= total <= len(received) + 64,
              "stored + lost output bytes account for what the client received",
              session=sess, received=len(received))
        gaps = [e for e in d.events(sess["id"]) if e["type"] == "gap"]
        check(gaps, "gap records in the timeline")
        wait_for(lambda: d.status().get("lost_events", 0) >= sess["lost_events"], 10,
                 "daemon status to count the losses")
        # what was stored is the output with whole pieces missing: each stored
        # piece is found in what the client got, after the previous one
        out = d.export(sess["id"], "--format", "raw")
        check(len(out) > 4096, "some of the output was stored", stored=len(out))
        i = p = 0
        while i < len(out):
            for width in (32, 8, 1):
                k = received.find(out[i:i + width], p)
                if k >= 0:
                    break
            check(k >= 0, "stored bytes appear in order in what the client received",
                  at=i, stored=out[i:i + 40])
            j = 0
            while i + j < len(out) and k + j < len(received) and out[i + j] == received[k + j]:
                j += 1
            i, p = i + j, k + j
        check(d.proc.poll() is None, "daemon survived", log=d.log())


@for_both_pam_modes("garbage_and_huge_argv")
def garbage(use_pam):
    with recorded_user("stgarb", use_pam) as (lab, d, u):
        with login(lab, u) as s:
            port = client_port(s.pid)
            # a 10 MB burst of binary garbage and escape sequences
            s.send(b"head -c 10000000 /dev/urandom; echo; echo END$((2+2))\n")
            s.expect(b"END4", timeout=60)
            s.send(b"/bin/true $(head -c 100000 /dev/zero | tr '\\0' a); echo OK$((3+3))\n")
            s.expect(b"OK6")
            logout(s)
            received = s.received
        sess = d.session_of_port(port)
        check_eq(d.export(sess["id"], "--format", "raw"), received, "garbage output byte-exact")
        big = [e for e in d.events(sess["id"]) if e["type"] == "exec" and e.get("filename") == "/bin/true"]
        check_eq(len(big), 1, "exec of /bin/true with a 100 kB argument recorded")
        check_eq(big[0]["argv_truncated"], 1, "argv marked truncated", exec=big[0])
        check_eq(big[0]["argv_bytes"], len(b"/bin/true\0") + 100001, "full argv size kept")
        check_eq(sess["lost_events"], 0, "10 MB burst: no losses", session=sess)
        human = [x for x in d.cli("events", sess["id"]).splitlines() if "/bin/true aaa" in x]
        check(len(human) == 1 and f"exec   pid {big[0]['pid']:<7}" in human[0] and
              human[0].endswith(f" [argv truncated]  (in {big[0]['cwd']})"),
              "human events: pid, truncation, directory",
              lines=[x[:60] + "..." + x[-30:] for x in human])
        check(d.proc.poll() is None, "daemon survived", log=d.log())


@test("e2e/readv_and_writev_on_a_pty_are_recorded")
def vectored_io():
    """A program of the session drives a pty of its own with writev and
    readv: each piece of a writev to the master is input of that tty, and
    what readv takes from the master is its output."""
    script = (b"import os; m, s = os.openpty(); "
              b"os.writev(m, [b'VEC-in-', b'one\\n']); "
              b"os.writev(s, [b'VEC-out-', b'two\\n']); "
              b"got = b''\n"
              b"while len(got) < 25:\n"
              b" a = bytearray(5); b = bytearray(100); n = os.readv(m, [a, b]); "
              b"got += bytes(a + b)[:n]\n"
              b"print('GOT', len(got))")
    with recorded_user("stvec", True) as (lab, d, u):
        with login(lab, u) as s:
            port = client_port(s.pid)
            s.send(b"python3 -c \"" + script + b"\"; echo VEC$((4+4))\n")
            s.expect(b"GOT 25")
            s.expect(b"VEC8")
            logout(s)
            received = s.received
        sess = d.session_of_port(port)
        check_eq(d.export(sess["id"], "--format", "raw"), received, "login tty byte-exact")
        ttys = [e for e in d.events(sess["id"]) if e["type"] == "tty"]
        other = [e for e in ttys if e["tty_index"] != ttys[0]["tty_index"]]
        ins = [e for e in other if e["stream"] == 0]
        outs = [e for e in other if e["stream"] == 1]
        check_eq((sum(e["bytes"] for e in ins), sum(e.get("writes", 1) for e in ins)),
                 (len(b"VEC-in-one\n"), 2), "writev of two pieces to the master", records=other)
        # the slave's echo of that input, then what was written to the slave, after onlcr
        check_eq(sum(e["bytes"] for e in outs), len(b"VEC-in-one\r\nVEC-out-two\r\n"),
                 "readv of the master", records=other)


@test("e2e/replay_keeps_the_timing_and_starts_at")
def replay_timing():
    """replay waits as the session did (scaled by --speed), and --at skips
    to a point: what came before is written at once."""
    with recorded_user("streplay", True) as (lab, d, u):
        with login(lab, u) as s:
            port = client_port(s.pid)
            s.send(b"echo A$((1+1)); sleep 2; echo B$((2+2))\n")
            s.expect(b"B4")
            s.expect(PROMPT)
            logout(s)
            received = s.received
        sess = d.session_of_port(port)
        sid = sess["id"]
        # the record holding B4 comes >= 2 s after the one holding A2
        outs = [e for e in d.events(sid) if e["type"] == "tty" and e["stream"] == 1]
        start_ns = parse_rfc3339(sess["start"])
        times = [parse_rfc3339(e["time"]) for e in outs]
        gaps = [b - a for a, b in zip(times, times[1:])]
        check(max(gaps) >= 1.9e9, "a 2 s pause between output records", gaps=gaps)
        after = times[gaps.index(max(gaps)) + 1]  # B4's record

        def timed(*args):
            t0 = time.monotonic()
            p = d.cli("replay", sid, *args, binary=True)
            return time.monotonic() - t0, p

        took, p = timed("--speed", "4")
        check_eq(p.stdout, received, "replay --speed 4 prints the output")
        check(took >= 2.0 / 4 * 0.95, "--speed 4 keeps a quarter of the pause", took=took)
        # half a second before B4: its pause is cut to that half second
        at = (after - start_ns) / 1e9 - 0.5
        took, p = timed("--at", f"{at:.3f}")
        check_eq(p.stdout, received, "replay --at prints all of the output")
        check(took >= 0.45, "--at waits the rest of the pause", took=took, at=at)
        check(took < 1.9, "--at skipped the pause before it", took=took, at=at)
        for late in ("9999", "2e10"):
            took, p = timed("--at", late)
            check_eq(p.stdout, received, f"--at {late}: everything at once")
            check(b"has no output after" in p.stderr and took < 1.9,
                  f"--at {late} past the end says so", stderr=p.stderr, took=took)
        for bad in ("inf", "nan", "-1", ""):
            p = d.cli("replay", sid, "--at", bad, check_rc=False, binary=True)
            check(p.returncode == 2 and b"--at" in p.stderr, f"--at {bad!r} refused",
                  stderr=p.stderr)
        for bad in ("nan", "inf", "1e-300", "-2"):
            p = d.cli("replay", sid, "--speed", bad, check_rc=False, binary=True)
            check(p.returncode == 2 and b"--speed" in p.stderr, f"--speed {bad!r} refused",
                  stderr=p.stderr)


@test("e2e/mounts_tracefs_and_bpffs_when_missing")
def mounts_missing_fs():
    """Started where tracefs and bpffs are not mounted (here: a private
    mount namespace without them), sealtraild mounts both and records."""
    wrap = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'for m in /sys/kernel/tracing /sys/fs/bpf; do'
            ' ! mountpoint -q $m || umount $m || exit 1; done; exec "$0" "$@"']
    with SshLab(None, use_pam=True) as lab, Daemon(wrap=wrap) as d:
        u = lab.add_user("stmount")
        d.wait_listener(lab.pid)
        log = d.log()
        check("mounted tracefs on /sys/kernel/tracing" in log and
              "mounted bpf on /sys/fs/bpf" in log, "both mounted by sealtraild", log=log)
        with login(lab, u) as s:
            port = client_port(s.pid)
            s.send(b"echo MOUNTED$((1+1))\n")
            s.expect(b"MOUNTED2")
            logout(s)
            received = s.received
        sess = d.session_of_port(port)
        check_eq(d.export(sess["id"], "--format", "raw"), received, "recorded byte-exact")


@for_both_pam_modes("adopts_sessions_started_before_the_daemon")
def adoption(use_pam):
    with SshLab(None, use_pam=use_pam) as lab:
        u = lab.add_user("stadopt")
        with PtySession(lab.ssh_argv(u), env=dict(os.environ, TERM="vt220")) as s:
            s.expect(PROMPT)
            port = client_port(s.pid)
            with Daemon() as d:
                d.wait_listener(lab.pid)
                sess = d.session_of_port(port, ended=False)
                check_eq(sess["user"], "stadopt", "adopted session attributed", session=sess)
                check_eq(sess["term"], "vt220", "TERM of the adopted shell", session=sess)
                s.send(b"echo AFTER$((40+2))\n")
                s.expect(b"AFTER42")
                logout(s)
                sess = d.session_of_port(port)
                out = d.export(sess["id"], "--format", "raw")
                check(b"AFTER42" in out, "output after adoption recorded", out=out[-200:])
                check_eq(sess["end_reason"], "logout", "adopted session end", session=sess)


@test("e2e/sigterm_flushes_and_restart_continues")
def sigterm():
    with recorded_user("stterm", True) as (lab, d, u):
        with login(lab, u) as s:
            port = client_port(s.pid)
            s.send(b"echo BEFORE$((1+1))\n")
            s.expect(b"BEFORE2")
            wait_for(lambda: d.session_of_port(port, ended=False)["bytes_out"] > 0, 10,
                     "output indexed")
            check_eq(d.stop(), 0, "exit status after SIGTERM", log=d.log())
            st = d.cli("status", check_rc=False)
            check("not running" in st and "before it stopped" in st,
                  "status says not running, and that the rest is its last word", status=st)
            st = json.loads(d.cli("--json", "status", check_rc=False))
            check(not st["running"] and st["daemon_stale"], "status --json: stale", status=st)
            d.start()
            d.wait_listener(lab.pid)
            s.send(b"echo AFTER$((1+2))\n")
            s.expect(b"AFTER3")
            logout(s)
        def both_ended():
            ours = [x for x in d.sessions() if x["source_port"] == port]
            return ours if len(ours) == 2 and all(x["end"] for x in ours) else None
        ours = wait_for(both_ended, 30, "the old session closed and the adopted one ended")
        outs = b"".join(d.export(x["id"], "--format", "raw") for x in ours)
        check(b"BEFORE2" in outs and b"AFTER3" in outs, "output on both sides of the restart")
        d.stop()
        before = d.cli("sessions", "--json")
        os.unlink(os.path.join(d.store, "index.sqlite"))
        for suffix in ("-wal", "-shm"):
            try:
                os.unlink(os.path.join(d.store, "index.sqlite" + suffix))
            except FileNotFoundError:
                pass
        d.cli("reindex")
        after = d.cli("sessions", "--json")
        diff = [(a, b) for a, b in zip(before.splitlines(), after.splitlines()) if a != b]
        check(not diff and len(before) == len(after), "sessions identical after reindex",
              first_difference=diff[:1])


@test("e2e/events_reads_the_session_only_and_goes_on_past_damage")
def events_by_location():
    """`events` reads a session's records where the index places them: an
    old session's timeline does not depend on (or scan) the log written
    since, and a damaged record is named, skipped and makes the exit 1."""
    with recorded_user("stevloc", True) as (lab, d, u):
        with login(lab, u) as s:
            first = client_port(s.pid)
            s.send(b"sleep 0.2; /bin/true st-first; echo DONE$((0+1))\n")
            s.expect(b"DONE1")
            logout(s)
        old = d.session_of_port(first)
        d.stop()
        d.start()  # a new segment for what follows
        d.wait_listener(lab.pid)
        with login(lab, u) as s:
            second = client_port(s.pid)
            # incompressible output: the middle of this segment is its chunks
            s.send(b"head -c 3000000 /dev/urandom | base64 -w 0; echo; echo DONE$((1+1))\n")
            s.expect(b"DONE2", timeout=120)
            logout(s)
        new = d.session_of_port(second)
        d.stop()

        before = d.cli("--json", "events", old["id"])
        times = [parse_rfc3339(json.loads(x)["time"]) for x in before.splitlines()]
        check_eq(times, sorted(times), "the timeline is in time order")
        check(any('"st-first"' in x for x in before.splitlines()), "old session's exec",
              events=before[-2000:])
        human = d.cli("events", old["id"]).splitlines()
        start = [x for x in human if "  session_start " in x]
        check(len(start) == 1 and f" user={u.name} " in start[0] and
              f" source_port={first}" in start[0], "human session_start line", lines=start)
        check(any("  session_end reason=logout " in x for x in human),
              "human session_end line", lines=[x for x in human if "session_end" in x])
        check(not any("{" in x for x in human if "  exec " not in x), "no JSON in the human form",
              lines=[x for x in human if "{" in x][:5])
        segs = sorted(os.listdir(os.path.join(d.store, "segments")))
        last = os.path.join(d.store, "segments", segs[-1])
        size = os.path.getsize(last)
        with open(last, "r+b") as f:
            f.seek(size // 2)
            b = f.read(1)
            f.seek(size // 2)
            f.write(bytes([b[0] ^ 0x40]))

        p = d.cli("--json", "events", old["id"], binary=True)
        check_eq(p.returncode, 0, "old session's events after damage elsewhere",
                 stderr=p.stderr.decode(errors="replace"))
        check_eq(p.stdout.decode(), before, "old session's timeline unchanged")
        check_eq(p.stderr, b"", "nothing to say about another session's damage")

        p = d.cli("--json", "events", new["id"], check_rc=False, binary=True)
        err = p.stderr.decode(errors="replace")
        check_eq(p.returncode, 1, "events of the damaged session", stderr=err)
        check(segs[-1] in err and "byte offset" in err and "goes on without it" in err,
              "the error names the segment and the byte offset", stderr=err)
        types = [json.loads(x)["type"] for x in p.stdout.decode().splitlines()]
        check("session_start" in types and "session_end" in types and "exec" in types,
              "the rest of the timeline is still shown", types=sorted(set(types)))


@test("e2e/exec_records_the_working_directory")
def exec_cwd():
    """Each exec says where the command ran (relative paths in its argv
    start there), as the kernel walked it, spaces and all."""
    base = scratch_dir("st-cwd-", mode=0o755)
    deep = os.path.join(base, "with space", "deep")
    os.makedirs(deep)
    os.chmod(os.path.join(base, "with space"), 0o755)
    with recorded_user("stcwd", True) as (lab, d, u):
        with login(lab, u) as s:
            port = client_port(s.pid)
            s.send(f"cd '{deep}' && /bin/true st-cwd1; cd / && /bin/true st-cwd2;"
                   " echo DONE$((1+2))\n".encode())
            s.expect(b"DONE3")
            logout(s)
        sess = d.session_of_port(port)
        execs = {tuple(e["argv"]): e for e in d.events(sess["id"]) if e["type"] == "exec"}
        one, two = execs.get(("/bin/true", "st-cwd1")), execs.get(("/bin/true", "st-cwd2"))
        check(one and two, "both execs recorded", execs=list(execs)[-10:])
        check_eq(one.get("cwd"), deep, "cwd of the first")
        check_eq(two.get("cwd"), "/", "cwd of the second")
        shell = [e for e in execs.values() if e["pid"] == one["ppid"]]
        check(shell and shell[0].get("cwd") == u.home, "the login shell starts at home",
              shell=shell[:1], home=u.home)
        human = [x for x in d.cli("events", sess["id"]).splitlines() if "st-cwd1" in x]
        check(len(human) == 1 and human[0].endswith(f"/bin/true st-cwd1  (in {deep})"),
              "human line ends with the directory", lines=human)


@test("e2e/status_while_the_daemon_starts")
def status_starting():
    """Between taking the store's lock and recording (reading the log back,
    rebuilding an index from another schema, loading the programs) the
    daemon says it is starting, and status shows that, not the numbers
    the previous run left in status.json."""
    import fcntl
    d = Daemon()
    with d:
        check_eq(d.status().get("state"), "recording", "a started daemon records")
        d.stop()
        stale = d.status()
        check_eq(stale.get("state"), "stopped", "a stopped daemon says so")
        # a daemon that holds the lock and wrote only its first status
        lock = os.open(os.path.join(d.store, "LOCK"), os.O_RDWR)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            first = {"running": True, "state": "starting", "pid": 424242, "version": "x",
                     "started": "2026-11-25T09:00:00.000000000Z",
                     "updated": "2026-11-25T09:00:00.000000000Z"}
            with open(os.path.join(d.store, "status.json"), "w") as f:
                f.write(json.dumps(first, separators=(",", ":")) + "\n")
            p = d.cli("status", binary=True)
            out = p.stdout.decode()
            check(out.startswith("sealtraild:     starting\n") and "424242" in out and
                  "\nprograms:" not in out and "\nopen sessions:" not in out,
                  "status: starting, nothing of the last run", out=out)
            st = json.loads(d.cli("--json", "status"))
            check(st["running"] and st["state"] == "starting" and not st["daemon_stale"],
                  "status --json while starting", status=st)
        finally:
            os.close(lock)
        st = json.loads(d.cli("--json", "status", check_rc=False))
        check(not st["running"] and st["state"] == "stopped", "lock released: stopped",
              status=st)


@test("e2e/cli_filters_replay_and_asciicast")
def cli():
    with recorded_user("stcli", True) as (lab, d, u):
        with login(lab, u) as s:
            port = client_port(s.pid)
            s.send("echo 'grüße €' MARK$((5*5))\n".encode())
            s.expect(b"MARK25")
            logout(s)
            received = s.received
        sess = d.session_of_port(port)
        sid = sess["id"]
        def count(*args):  # other sshds on this machine may be recorded too
            return len([x for x in d.sessions(*args) if x["local_port"] == lab.port])
        check_eq(count("--since", "2h"), 1, "--since 2h finds it")
        check_eq(count("--since", "2099-01-01T00:00:00Z"), 0, "--since future")
        check_eq(count("--since", "2300-01-01T00:00:00Z"), 0, "--since past 2262, no --until")
        check_eq(count("--until", "2000-01-01T00:00:00+02:00"), 0, "--until past")
        check_eq(count("--user", "stcli"), 1, "--user")
        check_eq(count("--user", "nobody"), 0, "--user other")
        bad = d.cli("sessions", "--since", "yesterday", check_rc=False, binary=True)
        check(bad.returncode != 0 and b"--since" in bad.stderr, "bad time is an error")
        for cmd in ("sessions", "gaps", "access-log"):
            bad = d.cli(cmd, "--since", "1h", "--until", "2h", check_rc=False, binary=True)
            check(bad.returncode == 2 and b"is after --until" in bad.stderr,
                  f"{cmd}: a window ending before it starts is an error", stderr=bad.stderr)
        cut = d.cli("export", sid, "--format", "mp4", check_rc=False, binary=True)
        check(cut.returncode == 2 and b"--format mp4" in cut.stderr, "bad --format named",
              stderr=cut.stderr)
        replay = d.cli("replay", sid[:8], "--speed", "0", binary=True).stdout
        check_eq(replay, received, "replay --speed 0 prints the output")
        out_file = os.path.join(d.workdir, "cast.json")
        d.cli("export", sid, "--format", "asciicast", "--output", out_file)
        with PtySession(["asciinema", "cat", out_file]) as cat:  # it wants a tty
            check_eq(cat.wait_exit(), 0, "asciinema accepts the export", stderr=cat.stderr)
            check_eq(cat.received, received, "asciinema cat of the export == output")
        table = d.cli("sessions")
        check(sid in table and "stcli" in table, "human table lists the session", table=table)
        st = d.cli("status")
        check("sealtraild:     running" in st and "handle_exec" in st, "status", status=st)
        # the event loop is realtime (and says so), its other threads are not
        check("scheduling:     fifo" in st, "status shows SCHED_FIFO", status=st)
        tids = [int(t) for t in os.listdir(f"/proc/{d.proc.pid}/task")]
        policies = {t: os.sched_getscheduler(t) & 0xff for t in tids}
        check_eq(policies[d.proc.pid], os.SCHED_FIFO, "event loop is SCHED_FIFO")
        check(len(tids) > 1 and all(p == os.SCHED_OTHER for t, p in policies.items()
                                    if t != d.proc.pid),
              "other threads are not realtime", policies=policies)
        missing = d.cli("replay", "ffffffff", check_rc=False, binary=True)
        check(missing.returncode != 0 and b"not found" in missing.stderr, "unknown session")


@test("e2e/output_coalesced_into_records_keeps_each_write_time")
def coalesced():
    """Bursts of output are stored as few records holding many writes, and
    replay/export still see every write at its own time."""
    with recorded_user("stcoal", True) as (lab, d, u):
        with login(lab, u) as s:
            port = client_port(s.pid)
            s.send(b"seq 1 100000; echo BURST$((2*3))\n")
            s.expect(b"BURST6")
            # five lines 20 ms apart: close enough to share a record
            s.send(b"for i in 1 2 3 4 5; do echo TICK$i; sleep 0.02; done\n")
            s.expect(b"TICK5\n")
            s.expect(PROMPT)
            # lines typed one after the other, each echoed and answered: the
            # input and output streams gather in records of their own
            # instead of cutting each other's short
            for i in range(6):
                s.send(b"echo TYPED$((%d*7))\n" % i)
                s.expect(b"TYPED%d\n" % (i * 7))
            s.expect(PROMPT)
            logout(s)
            received = s.received
        sess = d.session_of_port(port)
        sid = sess["id"]
        check_eq(d.export(sid, "--format", "raw"), received, "raw export == output")
        ttys = [e for e in d.events(sid) if e["type"] == "tty" and e["stream"] == 1]
        check(any(e.get("writes", 1) > 1 for e in ttys), "some record holds several writes",
              records=[(e["bytes"], e.get("writes")) for e in ttys][:20])
        check(max(e["bytes"] for e in ttys) > 4096, "records larger than the kernel's 4 KiB",
              sizes=[e["bytes"] for e in ttys][:20])
        check(len(ttys) * 4096 < len(received), "fewer records than 4 KiB pieces",
              records=len(ttys), bytes=len(received))
        typed = [e for e in d.events(sid) if e["type"] == "tty" and e["stream"] == 0]
        check(any(e.get("writes", 1) >= 2 for e in typed), "typed lines share records",
              records=[(e["bytes"], e.get("writes")) for e in typed])
        check_eq(d.export(sid, "--format", "raw", "--stream", "in"), s.sent,
                 "raw input export == what was typed")
        cast = os.path.join(d.workdir, "coal.cast")
        d.cli("export", sid, "--format", "asciicast", "--output", cast)
        with open(cast) as f:
            frames = [json.loads(line) for line in f.read().splitlines()[1:]]
        ticks = [(t, data) for t, kind, data in frames if "TICK" in data and "echo" not in data]
        # (sshd may read two echoes at once on a loaded machine: one frame then)
        check(len(ticks) >= 3, "the loop's echoes are frames of their own", frames=ticks)
        check_eq("".join(d for _, d in ticks).count("TICK"), 5, "all five echoes", frames=ticks)
        gaps = [b[0] - a[0] for a, b in zip(ticks, ticks[1:])]
        check(all(g >= 0.015 for g in gaps), "frames keep the 20 ms between the writes",
              gaps=gaps)


def tracked_tgids(daemon_pid):
    """Keys of the daemon's `procs` BPF map (the tracked processes)."""
    import json
    import subprocess
    for fd in os.listdir(f"/proc/{daemon_pid}/fdinfo"):
        with open(f"/proc/{daemon_pid}/fdinfo/{fd}") as f:
            info = dict(line.split(":", 1) for line in f if ":" in line)
        if "map_id" not in info:
            continue
        map_id = info["map_id"].strip()
        show = json.loads(subprocess.run(["bpftool", "-j", "map", "show", "id", map_id],
                                         capture_output=True, text=True).stdout)
        if show.get("name") != "procs":
            continue
        dump = json.loads(subprocess.run(["bpftool", "-j", "map", "dump", "id", map_id],
                                         capture_output=True, text=True).stdout)
        return {int.from_bytes(bytes(int(b, 16) for b in e["key"]), "little") for e in dump}
    raise AssertionError(f"no procs map among the fds of {daemon_pid}")


@test("e2e/daemon_started_inside_a_session_never_records_itself")
def self_exclusion():
    """An admin starts sealtraild from their own ssh session, its log going to
    that pty: the daemon adopts the session but never tracks itself, and its
    own output does not feed back into the store."""
    store = scratch_dir("st-selfstore-")
    with SshLab(None, use_pam=True) as lab:
        u = lab.add_user("stself")
        with login(lab, u) as s:
            port = client_port(s.pid)
            binary = os.path.join(os.environ["SEALTRAIL_BUILD"], "sealtraild")
            s.send(f"sudo {binary} --store {store} &\n".encode())
            d = Daemon(store=store)
            status = wait_for(lambda: d.status().get("state") == "recording" and d.status(), 30,
                              "sealtraild started from the session")
            daemon_pid = status["pid"]
            wait_for(lambda: lab.pid in d.status().get("listeners", []), 15, "listener followed")
            sess = d.session_of_port(port, ended=False)
            s.send(b"echo INSIDE$((6+1))\n")
            s.expect(b"INSIDE7")
            tracked = wait_for(lambda: tracked_tgids(daemon_pid) or None, 10, "tracked set")
            check(daemon_pid not in tracked, "the daemon is not tracked", tracked=sorted(tracked))
            shells = lab.user_processes(u, comm="bash")
            check(shells and all(p in tracked for p in shells),
                  "the session's shell is tracked", tracked=sorted(tracked), shells=shells)
            os.kill(daemon_pid, signal.SIGTERM)
            wait_for(lambda: not os.path.exists(f"/proc/{daemon_pid}"), 30, "daemon exit")
            logout(s)
        events = d.events(sess["id"])
        check(not any(e.get("pid") == daemon_pid for e in events),
              "no record about the daemon's own process", pids={e.get("pid") for e in events})
        out = d.export(sess["id"], "--format", "raw")
        check(b"INSIDE7" in out, "the session was recorded", out=out[-300:])
        # other sshds on the machine may be recorded too: judge this session only
        final = d.session_of_port(port, ended=False)
        check(final["bytes_out"] < 64 << 10 and len(events) < 2000,
              "no feedback loop: the daemon's own output does not grow the session",
              bytes_out=final["bytes_out"], records=len(events))
        d.close()  # its work directory; the daemon itself is already gone


@for_both_pam_modes("attribution_through_tmux_and_nested_shells")
def tmux_nested(use_pam):
    """Programs run in a tmux server started in the session, and in nested
    shells, belong to the session and its person."""
    with recorded_user("sttmux", use_pam) as (lab, d, u):
        with login(lab, u) as s:
            port = client_port(s.pid)
            s.send(b"bash -c 'bash -c \"env ST_MARK=nested true\"'; echo N$((1+1))\n")
            s.expect(b"N2")
            s.send(b"tmux -L sttest new-session -d 'env ST_MARK=tmux true; sleep 30'; echo T$((2+2))\n")
            s.expect(b"T4")
            live = d.session_of_port(port, ended=False)
            wait_for(lambda: any(e.get("argv") == ["env", "ST_MARK=tmux", "true"]
                                 for e in d.events(live["id"])), 15, "exec inside tmux recorded")
            s.send(b"tmux -L sttest kill-server; exit\n")
            s.wait_exit()
        sess = d.session_of_port(port)
        check_eq(sess["user"], "sttmux", "person", session=sess)
        execs = [e for e in d.events(sess["id"]) if e["type"] == "exec"]
        for mark in ("nested", "tmux"):
            found = [e for e in execs if e["argv"] == ["env", f"ST_MARK={mark}", "true"]]
            check_eq(len(found), 1, f"exec in {mark} recorded in the session")
            check_eq(found[0]["uid"], u.uid, f"{mark} exec runs as the user")
            if use_pam:
                check_eq(found[0]["loginuid"], u.uid, f"{mark} exec carries the loginuid")


@test("e2e/term_known_when_the_collector_lags")
def term_when_lagging():
    """TERM is copied in the kernel at the shell's exec: a collector that
    reads the event after the shell is gone still knows it."""
    with recorded_user("stterm2", True, ("--consumer-delay-ms", "300")) as (lab, d, u):
        with PtySession(lab.ssh_argv(u), env=dict(os.environ, TERM="vt220")) as s:
            s.expect(PROMPT)
            port = client_port(s.pid)
            logout(s)
        sess = d.session_of_port(port)
        check_eq(sess["term"], "vt220", "the client's TERM", session=sess)


@test("e2e/window_size_and_resizes_in_asciicast")
def window_size():
    """The pty's window size is recorded when it changes: the asciicast
    export starts at the first size and has an "r" event for a resize. The
    terminal type the client sent is the session's `term` and the cast's
    TERM."""
    with recorded_user("stwin", True) as (lab, d, u):
        with PtySession(lab.ssh_argv(u), env=dict(os.environ, TERM="vt220")) as s:
            s.expect(PROMPT)
            port = client_port(s.pid)
            s.send(b"stty rows 43 cols 132; echo SIZED$((1+1))\n")
            s.expect(b"SIZED2")
            s.expect(PROMPT)
            logout(s)
        sess = d.session_of_port(port)
        sid = sess["id"]
        check_eq(sess["term"], "vt220", "the client's TERM", session=sess)
        lines = d.export(sid, "--format", "asciicast").decode().splitlines()
        header = json.loads(lines[0])
        check_eq(header.get("env"), {"TERM": "vt220"}, "TERM in the cast's header")
        events = [json.loads(line) for line in lines[1:]]
        check(header["width"] > 0 and header["height"] > 0, "a size in the header",
              header=header)
        resizes = [i for i, e in enumerate(events) if e[1] == "r"]
        check(resizes and events[resizes[-1]][2] == "132x43", "the resize is an r event",
              resizes=[events[i] for i in resizes], cast=lines[:2] + lines[-8:])
        after = "".join(e[2] for e in events[resizes[-1]:] if e[1] == "o") if resizes else ""
        check("SIZED2" in after, "output after the resize comes after it", after=after[-200:])
        check_eq(sum(1 for e in events if e[1] == "r" and e[2] == "132x43"), 1,
                 "said once, not per record")
        sized = [e["winsize"] for e in d.events(sid) if e["type"] == "tty" and "winsize" in e]
        check_eq(sized[-1:], ["132x43"], "events shows the size as COLSxROWS", sized=sized)
        # replay in a terminal smaller than the recorded one says so first
        cols, rows = (int(x) for x in sized[0].split("x"))

        class SmallPty(PtySession):
            ROWS, COLS = rows - 1, cols - 1

        with SmallPty([os.path.join(BUILD, "sealtrail"), "--store", d.store, "replay", sid,
                       "--speed", "0"]) as small:
            check_eq(small.wait_exit(), 0, "replay", stderr=small.stderr)
        check(f"recorded in a {sized[0]} terminal".encode() in small.stderr,
              "replay warns of the smaller terminal", stderr=small.stderr)
