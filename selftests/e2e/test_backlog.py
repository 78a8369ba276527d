"""The backlog: during a burst of output sealtraild queues records in
memory and seals them after it (store/backlog.h). What ends up in the
store is the same, byte for byte; a clean stop seals what waits; a crash
loses it, and the restart marks the loss as a gap of the session."""

import os
import signal
import subprocess

from harness import (BUILD, Daemon, check, check_eq, client_port, sanitizer_check,
                     scratch_dir, test, wait_for)
import storefmt
from sshlab import PtySession, SshLab

PROMPT = b"$ "

REC_DAEMON = 1
# 60 MB of 100-byte lines from `yes`: as fast as the pty carries them
# (~65 MB/s here), far more than the 4 MiB in 200 ms that make a burst
# (`seq` makes only ~23 MB/s, too close to that under load)
BYTES = 60_000_000


class Burst:
    """ssh -tt writing nbytes of text lines in a pty, its output into a file
    at full speed; then the login waits for go() before it ends."""

    def __init__(self, lab, u, nbytes, keep=True):
        work = scratch_dir("st-burst-", 0o777)
        self.out_path = os.path.join(work, "received") if keep else os.devnull
        self.go_path = os.path.join(work, "go")
        self.done_path = os.path.join(work, "done")  # the remote side is through
        cmd = (f"yes {'x' * 99} | head -c {nbytes}; touch {self.done_path}; "
               f"echo BURST$((2+3)); "
               f"while [ ! -e {self.go_path} ]; do sleep 0.05; done")
        self.out = open(self.out_path, "wb")
        self.proc = subprocess.Popen(lab.ssh_argv(u, cmd), stdin=subprocess.DEVNULL,
                                     stdout=self.out, stderr=subprocess.PIPE)
        self.port = wait_for(lambda: client_port(self.proc.pid), 30, "the ssh connection")

    def wait_output(self, timeout=300):
        def done():
            if self.out_path == os.devnull:
                return os.path.exists(self.done_path)
            with open(self.out_path, "rb") as f:
                f.seek(max(0, os.path.getsize(self.out_path) - 16))
                return b"BURST5" in f.read()
        wait_for(done, timeout, "the whole burst at the client")

    def go(self):
        open(self.go_path, "w").close()
        rc = self.proc.wait(60)
        self.out.close()
        check_eq(rc, 0, "ssh exit status", stderr=self.proc.stderr.read())
        with open(self.out_path, "rb") as f:
            return f.read()


def status_line(d, key):
    out = d.cli("status", check_rc=False)
    return next((x for x in out.splitlines() if x.startswith(key + ":")), "")


@test("e2e/burst_sealed_after_it_byte_exact")
def burst_after():
    with SshLab(None, use_pam=True) as lab, Daemon() as d:
        u = lab.add_user("stburst")
        d.wait_listener(lab.pid)
        check(status_line(d, "backlog").startswith("backlog:        0.0 MiB in 0 records"),
              "status shows an empty backlog", line=status_line(d, "backlog"))
        b = Burst(lab, u, BYTES)
        b.wait_output()
        # the burst went through the backlog, which empties after it while
        # the session goes on
        wait_for(lambda: d.status().get("backlog_queued_records", 0) > 0, 10,
                 "status to count records queued in the backlog")
        wait_for(lambda: d.status().get("backlog_bytes") == 0, 30,
                 "the backlog to be sealed after the burst")
        st = d.status()
        check(st["backlog_peak"] > 4 << 20, "megabytes waited in it", status=st)
        check_eq(st["backlog_dropped"], 0, "none of it lost", status=st)
        live = d.session_of_port(b.port, ended=False)
        check(live["bytes_out"] >= BYTES, "sealed and indexed before the logout",
              session=live)
        received = b.go()
        sess = d.session_of_port(b.port)
        check_eq(sess["lost_events"], 0, "no losses", session=sess)
        check_eq(sess["bytes_out"], len(received), "bytes_out is what the client received")
        check(d.export(sess["id"], "--format", "raw") == received,
              "the output, byte for byte", received=len(received))
        rc, out, err = d.verify()
        check_eq(rc, 0, "verify passes", out=out, stderr=err[-2000:])
        line = status_line(d, "backlog")
        check("0 records waiting to be sealed" in line and " MiB" in line,
              "status shows the backlog", line=line)


@test("e2e/burst_with_backlog_0_seals_at_once")
def burst_sync():
    with SshLab(None, use_pam=True) as lab, Daemon(["--backlog", "0"]) as d:
        u = lab.add_user("stburst0")
        d.wait_listener(lab.pid)
        b = Burst(lab, u, BYTES)
        b.wait_output()
        received = b.go()
        sess = d.session_of_port(b.port)
        check(d.export(sess["id"], "--format", "raw") == received,
              "the output, byte for byte", received=len(received))
        st = d.status()
        check(st["backlog_limit"] == 0 and st["backlog_peak"] == 0 and
              st["backlog_queued_records"] == 0, "nothing ever queued", status=st)
        check("none (--backlog 0" in status_line(d, "backlog"), "status says so",
              line=status_line(d, "backlog"))
    for bad in ("-1", "x", ""):
        p = subprocess.run([os.path.join(BUILD, "sealtraild"), "--backlog", bad],
                           capture_output=True, text=True, timeout=30)
        sanitizer_check("sealtraild --backlog " + bad, p.stderr)
        check(p.returncode == 2 and "--backlog" in p.stderr, "a bad --backlog is refused",
              arg=bad, rc=p.returncode, stderr=p.stderr)


@test("e2e/kill9_with_a_backlog_marks_the_gap")
def kill9_backlog():
    """What waits in the backlog is in memory only: kill -9 loses it, and
    the next start says so with a gap in the session, as for any crash."""
    with SshLab(None, use_pam=True) as lab, Daemon() as d:
        u = lab.add_user("stburstk")
        d.wait_listener(lab.pid)
        # long enough for status.json (written every second) to show it
        b = Burst(lab, u, 5 * BYTES)
        sess = d.session_of_port(b.port, ended=False)
        wait_for(lambda: d.status().get("backlog_bytes", 0) > 0, 60,
                 "status to show records waiting in the backlog")
        os.kill(d.proc.pid, signal.SIGKILL)
        d.proc.wait(10)
        d.start()
        d.wait_listener(lab.pid)
        b.wait_output()
        received = b.go()
        # the restart closed the session and adopted the login as a new one
        adopted = d.wait_session("the adopted session to end",
                                 lambda x: x["source_port"] == b.port and x["id"] != sess["id"]
                                 and x["end"] is not None)
        gaps = [g for g in d.cli_json("gaps") if g["session"] == sess["id"]]
        check_eq(len(gaps), 1, "one gap for the session open at the kill", gaps=gaps)
        check("did not stop cleanly" in gaps[0]["reason"], "the gap says why", gap=gaps[0])
        old = [x for x in d.sessions() if x["id"] == sess["id"]]
        check(old and old[0]["gaps"] == 1 and
              old[0]["bytes_out"] + adopted["bytes_out"] < len(received),
              "what waited is missing, and the session counts the gap",
              session=old, adopted=adopted, received=len(received))
        rc, out, err = d.verify()
        check_eq(rc, 0, "verify passes", out=out, stderr=err[-2000:])


@test("e2e/logout_during_a_burst_is_sealed_soon")
def logout_during_burst():
    """A session that ends while another one's burst fills the backlog:
    its end does not wait for the burst to be over."""
    with SshLab(None, use_pam=True) as lab, Daemon() as d:
        ua, ub = lab.add_user("stbursta"), lab.add_user("stburstb")
        d.wait_listener(lab.pid)
        with PtySession(lab.ssh_argv(ub)) as s:
            s.expect(PROMPT)
            port = client_port(s.pid)
            # ~0.5 GB, ~7 s here: far longer than sealing what waits at the
            # logout takes, even for a sanitizer build (~1 s)
            a = Burst(lab, ua, 8 * BYTES, keep=False)
            wait_for(lambda: d.status().get("backlog_bytes", 0) > 0, 60,
                     "status to show records waiting in the backlog")
            check(not os.path.exists(a.done_path), "the burst goes on")
            s.send(b"exit\n")
            check_eq(s.wait_exit(), 0, "ssh exit status")
        ended = d.session_of_port(port, timeout=30)
        check(not os.path.exists(a.done_path),
              "the logout was sealed and indexed while the burst went on", session=ended)
        a.wait_output()
        a.go()
        d.session_of_port(a.port)
        rc, out, err = d.verify()
        check_eq(rc, 0, "verify passes", out=out, stderr=err[-2000:])


@test("e2e/stop_during_a_burst_seals_it_before_the_last_epoch")
def stop_during_burst():
    """SIGTERM while records wait: they, and the daemon's "stop", are sealed
    before the shutdown epoch, which is the last envelope of the log."""
    with SshLab(None, use_pam=True) as lab, Daemon() as d:
        u = lab.add_user("stburstt")
        d.wait_listener(lab.pid)
        b = Burst(lab, u, 5 * BYTES, keep=False)
        wait_for(lambda: d.status().get("backlog_bytes", 0) > 0, 60,
                 "status to show records waiting in the backlog")
        queued = d.status()["backlog_bytes"]
        check_eq(d.stop(), 0, "clean stop", log=d.log())
        envs = storefmt.read_store(d.store)[-1].envelopes
        check(len(envs) >= 2 and envs[-1].type == storefmt.REC_EPOCH and
              envs[-2].type == REC_DAEMON, "the shutdown epoch comes last, the stop before it",
              last=envs[-3:])
        st = d.status()
        check_eq(st.get("backlog_bytes"), 0, "nothing left waiting", status=st, queued=queued)
        d.start()
        d.wait_listener(lab.pid)
        b.wait_output()
        b.go()
        gaps = [g for g in d.cli_json("gaps") if "did not stop cleanly" in g["reason"]]
        check_eq(gaps, [], "a clean stop leaves no gap")
        rc, out, err = d.verify()
        check_eq(rc, 0, "verify passes", out=out, stderr=err[-2000:])


class MemoryCgroup:
    """A memory cgroup of its own with a limit (v2, or v1's memory
    controller on a hybrid hierarchy), removed at the end; wrap() starts a
    command in it."""

    def __init__(self, limit):
        if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
            self.v2 = True
            base = "/sys/fs/cgroup"
        else:
            self.v2 = False
            base = "/sys/fs/cgroup/memory"
        self.path = os.path.join(base, f"st-test-{os.getpid()}-{limit}")
        os.mkdir(self.path)
        name = "memory.max" if self.v2 else "memory.limit_in_bytes"
        with open(os.path.join(self.path, name), "w") as f:
            f.write(str(limit))

    def wrap(self):
        procs = os.path.join(self.path, "cgroup.procs")
        return ["sh", "-c", f'echo $$ > {procs} && exec "$@"', "sh"]

    def peak(self):
        name = "memory.peak" if self.v2 else "memory.max_usage_in_bytes"
        with open(os.path.join(self.path, name)) as f:
            return int(f.read())

    def oom_kills(self):
        name = "memory.events" if self.v2 else "memory.oom_control"
        with open(os.path.join(self.path, name)) as f:
            for line in f:
                k, _, v = line.partition(" ")
                if k == "oom_kill":
                    return int(v)
        return 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        wait_for(lambda: self._rmdir(), 10, f"{self.path} to be empty and removed")
        return False

    def _rmdir(self):
        try:
            os.rmdir(self.path)
            return True
        except OSError:
            return False


CGROUP_LIMIT = 320 << 20


@test("e2e/backlog_fits_the_cgroup_memory_limit")
def backlog_cgroup():
    """The backlog's memfd is charged to sealtraild's cgroup: under a memory
    limit (systemd's MemoryMax) the default backlog is a quarter of it, and a
    burst larger than the limit is recorded without the daemon being killed."""
    with MemoryCgroup(CGROUP_LIMIT) as cg, SshLab(None, use_pam=True) as lab, \
            Daemon(wrap=cg.wrap()) as d:
        check_eq(d.status()["backlog_limit"], CGROUP_LIMIT // 4,
                 "the default backlog is a quarter of the cgroup's limit")
        u = lab.add_user("stburstc")
        d.wait_listener(lab.pid)
        b = Burst(lab, u, 6 * BYTES)  # 360 MB: more than the whole limit
        b.wait_output()
        received = b.go()
        check(d.proc.poll() is None, "sealtraild is alive", log=d.log(), peak=cg.peak())
        check_eq(cg.oom_kills(), 0, "no OOM kill in its cgroup", peak=cg.peak())
        sess = d.session_of_port(b.port)
        check_eq(sess["lost_events"], 0, "no losses", session=sess)
        check(d.export(sess["id"], "--format", "raw") == received,
              "the output, byte for byte", received=len(received))
        st = d.status()
        check(4 << 20 < st["backlog_peak"] <= CGROUP_LIMIT // 4,
              "the burst went through the backlog, within its limit", status=st)
        check_eq(d.stop(), 0, "clean stop", log=d.log())
    # asked for more than half of the limit: started, and warned
    with MemoryCgroup(CGROUP_LIMIT) as cg, Daemon(["--backlog", "256"], wrap=cg.wrap()) as d:
        check_eq(d.status()["backlog_limit"], 256 << 20, "--backlog is obeyed")
        check("more than half of this cgroup's memory limit (320 MiB)" in d.log(),
              "and the log warns", log=d.log())
