#!/usr/bin/python3
"""scp throughput and store growth through a recorded session. Needs root.

    /usr/bin/python3 tools/bench/scp.py --build build [--size-mib N] [--rounds N]

Uploads one file of random bytes (default 1024 MiB) with `scp` to a test
user's home through a private sshd on loopback (selftests/lib/sshlab.py), in
two protocols:

sftp    plain `scp` (OpenSSH 9.2 speaks SFTP): a `subsystem` session
legacy  `scp -O` (the old rcp protocol, `scp -t` on the server): an `exec`
        session

and two configurations, interleaved round by round (the order rotates) and
reported as the median of --rounds samples each:

unrecorded  no sealtraild running (checked: no foreign BPF programs attached)
recorded    a fresh sealtraild (harness.Daemon) on a fresh temporary store,
            started before and stopped after each sample

Issue target for the recorded runs: throughput >= 0.90x unrecorded, and the
store grows by <= 1 MiB for the transfer. For every recorded sample the run
also reports sealtraild's CPU time (utime+stime of all its threads, from
/proc/PID/stat) while scp ran and until the file record was there, the
session's lost_events/lost_bytes, the time from scp's exit to the session's
end, and checks that `sealtrail --json events ID` has a `file` record for the
upload whose sha256 is the SHA-256 of the source file.

Throughput is file bytes / wall time of the whole `scp` command (connection
and login included), in MB/s (10^6 bytes per second). CPU seconds are
accounted per side: the client (scp and its ssh: this process's reaped
children), the server (the lab's sshd listener sits in a cgroup-v1 cpuacct
group, so every process of the connection is charged to it, including the
time BPF programs take inside their syscalls), sealtraild, and the whole
machine (/proc/stat); "other" is what none of them used, i.e. noise from
someone else. Store growth is
`du -s -B1` (allocated bytes) and `du -s -b` (apparent bytes) of the store
directory once the session has ended (`end` != null), its file record is
there and the store has stopped changing, minus the same before the upload.

Before every sample the run waits (bounded by --quiet-wait and
--quiet-budget) until no other process has BPF programs attached and the
CPUs are idle; samples taken anyway, or during which another recorder
appeared or the store also got other labs' sessions (sealtraild follows every
/usr/sbin/sshd listener on the machine), are marked with * and explained.

Disk use is bounded: the source file plus one uploaded copy (deleted after
every sample). Everything lives under one temporary directory in /tmp (plus
the test user's home and the cpuacct group), removed at the end, on Ctrl-C
and on SIGTERM; a SIGKILLed run is cleaned up by the next one. Holds
the same lock as tools/bench/run.py (flock on tools/bench), so two
benchmarks never measure each other. Only the Python 3 standard library.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import hashlib
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "selftests", "lib"))

import harness  # noqa: E402  (selftests/lib)
import sshlab  # noqa: E402
from common import (QuietBench, cpu_times as _cpu_times, fmt, foreign_bpf, log, median,
                    reset_autogroup, table, wait_bench_lock)

MiB = 1 << 20
MB = 1_000_000
CLK_TCK = os.sysconf("SC_CLK_TCK")
TMP_PREFIX = "st-scpbench-"  # not run.py's "st-bench-": its repair removes those
USER = "stscpbench"
REMOTE_NAME = "scpbench-upload.bin"
GROWTH_TARGET = 1 * MiB
RATIO_TARGET = 0.90
MODES = {"sftp": [], "legacy": ["-O"]}
CONFIGS = ("unrecorded", "recorded")


def cpu_split(pid):
    """(utime, stime) of pid (all threads) in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    rest = data[data.rfind(b")") + 2:].split()
    return int(rest[11]) / CLK_TCK, int(rest[12]) / CLK_TCK


def cpu_seconds(pid):
    """utime + stime of pid (all threads) in seconds, or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rfind(b")") + 2:].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


class BpfStats:
    """Kernel BPF run-time statistics while this object is open, through the
    BPF_ENABLE_STATS file descriptor (not the sysctl): the kernel turns them
    off again when the fd is closed or this process dies. They cost every BPF
    program run on the machine two clock reads, so they are opt-in."""

    NR_BPF = 321  # x86_64
    BPF_ENABLE_STATS = 32
    BPF_STATS_RUN_TIME = 0

    def __init__(self):
        import ctypes
        attr = ctypes.create_string_buffer(8)  # union bpf_attr { __u32 type; }
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.syscall(self.NR_BPF, self.BPF_ENABLE_STATS, attr, 8)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "bpf(BPF_ENABLE_STATS)")

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    @staticmethod
    def snapshot(pid):
        """{program name: (run_time_ns, run_cnt)} of the programs pid attached."""
        p = subprocess.run(["bpftool", "-j", "perf"], capture_output=True, text=True)
        ids = {it["prog_id"] for it in json.loads(p.stdout or "[]") if it.get("pid") == pid}
        p = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True)
        out = {}
        for prog in json.loads(p.stdout or "[]"):
            if prog.get("id") in ids:
                t, n = out.get(prog["name"], (0, 0))
                out[prog["name"]] = (t + prog.get("run_time_ns", 0), n + prog.get("run_cnt", 0))
        return out


class CpuAcct:
    """A cgroup-v1 cpuacct group (accounting only, no limits) holding the
    lab's sshd listener, so every process of every connection -- including
    ones that exit unreaped or get reparented -- is charged to it. None of
    this is available on every machine: .ok says whether it is."""

    ROOT = "/sys/fs/cgroup/cpuacct"

    def __init__(self):
        self.path = os.path.join(self.ROOT, f"{TMP_PREFIX}{os.getpid()}")
        self.ok = False

    def start(self, pid):
        for d in glob.glob(os.path.join(self.ROOT, TMP_PREFIX + "*")):  # SIGKILLed runs
            with contextlib.suppress(OSError):
                os.rmdir(d)
        try:
            os.mkdir(self.path)
            with open(os.path.join(self.path, "cgroup.procs"), "w") as f:
                f.write(str(pid))
            self.ok = True
        except OSError as exc:
            log(f"no cpuacct cgroup ({exc}): server CPU is not measured")
            self.close()
        return self.ok

    def procs(self):
        with open(os.path.join(self.path, "cgroup.procs")) as f:
            return [int(x) for x in f.read().split()]

    def read(self):
        """(user, system) CPU seconds charged to the group so far."""
        if not self.ok:
            return None, None
        with open(os.path.join(self.path, "cpuacct.stat")) as f:
            v = dict(line.split() for line in f)
        return int(v["user"]) / CLK_TCK, int(v["system"]) / CLK_TCK

    def close(self):
        if not os.path.isdir(self.path):
            return
        with contextlib.suppress(OSError):
            for pid in self.procs():
                with contextlib.suppress(OSError):
                    with open(os.path.join(self.ROOT, "cgroup.procs"), "w") as f:
                        f.write(str(pid))
        with contextlib.suppress(OSError):
            os.rmdir(self.path)


def machine_cpu():
    """(busy, kernel) CPU seconds of the whole machine since boot: busy is
    user+nice+system+irq+softirq+steal, kernel is system+irq+softirq."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = v
    return ((user + nice + system + irq + softirq + steal) / CLK_TCK,
            (system + irq + softirq) / CLK_TCK)


def du(path):
    """(allocated bytes, apparent bytes) of a directory tree, as du says."""
    def one(flag):
        p = subprocess.run(["du", "-s", flag, path], capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"du {flag} {path}: {p.stderr.strip()}")
        return int(p.stdout.split()[0])
    return one("-B1"), one("-b")


def other_cpu(s):
    """Machine CPU while scp ran that none of the measured processes used."""
    parts = [s["client_user_s"], s["client_sys_s"], s["server_user_s"], s["server_sys_s"],
             s.get("cpu_transfer_s", 0.0)]
    if None in parts:
        return None
    return s["machine_busy_s"] - sum(parts)


def make_source(path, size):
    """size bytes from the kernel's CSPRNG; returns the SHA-256 hex digest."""
    h = hashlib.sha256()
    chunk = 4 * MiB
    with open(path, "wb") as f:
        left = size
        while left:
            data = os.urandom(min(chunk, left))
            f.write(data)
            h.update(data)
            left -= len(data)
    os.chmod(path, 0o644)
    return h.hexdigest()


class Bench(QuietBench):
    def __init__(self, args):
        super().__init__(args)
        self.build = os.path.abspath(args.build)
        self.stack = contextlib.ExitStack()
        self.samples = []
        self.lab = self.user = None
        self.src = self.digest = None

    # -- setup / teardown ------------------------------------------------

    def __enter__(self):
        wait_bench_lock(self.stack, self.args.lock_wait, "scp.py")
        for d in glob.glob(f"/tmp/{TMP_PREFIX}*"):  # SIGKILLed earlier runs (we hold the lock)
            shutil.rmtree(d, ignore_errors=True)
        self.tmp = tempfile.mkdtemp(prefix=TMP_PREFIX, dir="/tmp")
        os.chmod(self.tmp, 0o755)  # sshd reads the authorized keys as the user
        self.stack.callback(shutil.rmtree, self.tmp, ignore_errors=True)
        # harness.Daemon makes its work dir (and store) with tempfile: inside ours.
        tempfile.tempdir = self.tmp
        self.stack.callback(setattr, tempfile, "tempdir", None)
        return self

    def __exit__(self, *exc):
        self.stack.close()
        return False

    def check_after(self, what, s):
        """Flag a sample if another recorder appeared while it ran, or if
        other processes used more than --other-max of the CPUs meanwhile."""
        foreign = foreign_bpf(self.own_pids)
        if foreign:
            s["quiet"] = False
            self.note(f"{what}: other processes attached BPF programs during the "
                      f"sample: {foreign}")
        other = s.get("other_s")
        limit = self.args.other_max * (os.cpu_count() or 1) * s["seconds"]
        if other is not None and other > limit:
            s["quiet"] = False
            self.note(f"{what}: other processes used {other:.2f} CPU s while scp ran "
                      f"({other / s['seconds'] / (os.cpu_count() or 1):.0%} of the CPUs)")

    def setup(self):
        self.lab = self.stack.enter_context(sshlab.SshLab(self.mkdir("lab")))
        self.user = self.lab.add_user(USER)
        self.acct = CpuAcct()
        self.stack.callback(self.acct.close)
        self.acct.start(self.lab.pid)
        if self.args.bpf_stats:
            stats = BpfStats()
            self.stack.callback(stats.close)
        size = self.args.size_mib * MiB
        self.src = os.path.join(self.mkdir("src", 0o700), "payload.bin")
        log(f"writing {self.args.size_mib} MiB of random bytes to {self.src}")
        self.digest = make_source(self.src, size)
        self.size = size
        self.remote = os.path.join(self.user.home, REMOTE_NAME)
        os.sync()

    # -- one sample ------------------------------------------------------

    def scp_argv(self, mode):
        # fmt: off
        return ["scp", *MODES[mode],
                "-P", str(self.lab.port), "-i", self.user.key_path, "-F", "/dev/null",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR",
                self.src, f"{self.user.name}@{self.lab.host}:{REMOTE_NAME}"]
        # fmt: on

    def remove_upload(self):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.remote)

    def run_scp(self, mode, s, daemon_pid=None):
        """Upload once; fills s with wall time, throughput and CPU accounting:
        client = scp + its ssh (reaped children of this process), server =
        every process of the connection (reaped by the lab's sshd listener:
        per-connection sshd, its privsep children, sftp-server or scp -t, and
        the BPF programs' work done in their syscalls), machine = all CPUs."""
        argv = self.scp_argv(mode)
        lst0 = self.acct.read()
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        m0 = machine_cpu()
        t0 = time.monotonic()
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=self.args.scp_timeout)
        secs = time.monotonic() - t0
        m1 = machine_cpu()
        if daemon_pid:
            s["_cpu_at_exit"] = cpu_split(daemon_pid)
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        if p.returncode != 0:
            raise RuntimeError(f"scp {mode} exited {p.returncode}: "
                               f"{p.stderr.decode(errors='replace').strip()}")
        got = os.path.getsize(self.remote)
        if got != self.size:
            raise RuntimeError(f"scp {mode}: uploaded file has {got} bytes, not {self.size}")
        # everything of the connection has exited: only the listener is left
        if self.acct.ok:
            harness.wait_for(lambda: self.acct.procs() == [self.lab.pid], 30,
                             "the connection's processes to exit")
        lst1 = self.acct.read()
        s["seconds"] = secs
        s["mbps"] = self.size / secs / MB
        s["machine_busy_s"], s["machine_kernel_s"] = m1[0] - m0[0], m1[1] - m0[1]
        s["client_user_s"] = ru1.ru_utime - ru0.ru_utime
        s["client_sys_s"] = ru1.ru_stime - ru0.ru_stime
        if self.acct.ok:
            s["server_user_s"] = lst1[0] - lst0[0]
            s["server_sys_s"] = lst1[1] - lst0[1]
        else:
            s["server_user_s"] = s["server_sys_s"] = None
        return secs

    def sample(self, s):
        mode, config = s["mode"], s["config"]
        what = f"round {s['round']} {mode} {config}"
        self.remove_upload()
        os.sync()  # no writeback of earlier samples during this one
        if config == "unrecorded":
            s["quiet"] = self.gate(what)
            secs = self.run_scp(mode, s)
            s["other_s"] = other_cpu(s)
            self.check_after(what, s)
            log(f"{what}: {s['mbps']:.1f} MB/s ({secs:.2f} s), CPU s: client "
                f"{s['client_user_s'] + s['client_sys_s']:.2f}, server "
                f"{s['server_user_s'] + s['server_sys_s']:.2f}, machine {s['machine_busy_s']:.2f}")
            self.remove_upload()
            return s
        harness.BUILD = self.build
        d = harness.Daemon()
        try:
            d.start()
            pid = d.proc.pid
            self.own_pids.add(pid)
            d.wait_listener(self.lab.pid)
            s["quiet"] = self.gate(what)
            before_ids = {x["id"] for x in d.sessions()}
            du0 = self.settled_du(d.store)
            cpu0 = cpu_split(pid)
            bpf0 = BpfStats.snapshot(pid) if self.args.bpf_stats else None
            t_start = time.monotonic()
            secs = self.run_scp(mode, s, daemon_pid=pid)
            if bpf0 is not None:
                bpf1 = BpfStats.snapshot(pid)
                s["bpf"] = {k: (v[0] - bpf0.get(k, (0, 0))[0], v[1] - bpf0.get(k, (0, 0))[1])
                            for k, v in bpf1.items()}
            t_exit = t_start + secs
            # sealtraild's CPU while scp ran: sampled right at scp's exit
            at_exit = s.pop("_cpu_at_exit")
            s["daemon_user_s"] = at_exit[0] - cpu0[0]
            s["daemon_sys_s"] = at_exit[1] - cpu0[1]
            s["cpu_transfer_s"] = s["daemon_user_s"] + s["daemon_sys_s"]
            s["other_s"] = other_cpu(s)

            def ended():
                new = [x for x in d.sessions() if x["user"] == self.user.name
                       and x["id"] not in before_ids]
                return new if new and all(x["end"] is not None for x in new) else None
            sessions = harness.wait_for(ended, self.args.end_timeout,
                                        f"{what}: the session to end")
            s["end_after_s"] = time.monotonic() - t_exit
            if len(sessions) != 1:
                self.note(f"{what}: {len(sessions)} new sessions, expected 1: "
                          f"{[(x['id'], x['kind'], x['command']) for x in sessions]}")
            sess = sessions[0]
            s.update(session=sess["id"], kind=sess["kind"], command=sess["command"],
                     lost_events=sess["lost_events"], lost_bytes=sess["lost_bytes"],
                     bytes_in=sess["bytes_in"], bytes_out=sess["bytes_out"],
                     end_reason=sess["end_reason"])

            def file_records():
                evs = d.events(sess["id"])
                files = [e for e in evs if e["type"] == "file"]
                return (evs, files) if files else None
            try:
                evs, files = harness.wait_for(file_records, self.args.end_timeout,
                                              f"{what}: a file record")
            except harness.Failure:
                evs, files = d.events(sess["id"]), []
            s["file_after_s"] = time.monotonic() - t_exit
            s["cpu_total_s"] = cpu_seconds(pid) - sum(cpu0)
            s["event_types"] = {}
            for e in evs:
                s["event_types"][e["type"]] = s["event_types"].get(e["type"], 0) + 1
            s["files"] = files
            ok = [f for f in files if f.get("path") == self.remote
                  and f.get("direction") == "upload" and f.get("sha256") == self.digest]
            s["file_ok"] = bool(ok)
            if ok:
                s["file_bytes"] = ok[0].get("bytes")
                s["file_size"] = ok[0].get("size")
                if ok[0].get("bytes") != self.size or ok[0].get("size") != self.size:
                    self.note(f"{what}: file record bytes/size {ok[0].get('bytes')}/"
                              f"{ok[0].get('size')}, expected {self.size}")
            else:
                self.note(f"{what}: no file record with the upload's SHA-256; file "
                          f"records: {files}")
            if "gap" in s["event_types"]:
                gaps = [e for e in evs if e["type"] == "gap"]
                self.note(f"{what}: {len(gaps)} gap records, first: {gaps[0]}")
            if sess["lost_events"] or sess["lost_bytes"]:
                self.note(f"{what}: session lost {sess['lost_events']} events / "
                          f"{sess['lost_bytes']} bytes")
            du1 = self.settled_du(d.store)
            others = [x for x in d.sessions() if x["id"] not in before_ids
                      and x["id"] != sess["id"]]
            s["other_sessions"] = len(others)
            if others:
                s["quiet"] = False
                self.note(f"{what}: the store also got {len(others)} sessions of other "
                          f"sshd listeners (concurrent test runs; sealtraild follows every "
                          f"/usr/sbin/sshd): store growth includes them: "
                          f"{[(x['user'], x['kind']) for x in others][:5]}")
            self.check_after(what, s)
            s["growth_alloc"] = du1[0] - du0[0]
            s["growth_apparent"] = du1[1] - du0[1]
            s["store_after"] = du1
            st = d.status()
            s["status"] = {k: v for k, v in st.items() if k not in ("listeners", "programs")}
            s["listeners"] = len(st.get("listeners", []))
            s["ringbuf_events"] = st.get("events")
            self.remove_upload()
            log(f"{what}: {s['mbps']:.1f} MB/s ({secs:.2f} s), store +{s['growth_alloc']} B "
                f"(apparent +{s['growth_apparent']} B), sealtraild CPU "
                f"{s['cpu_transfer_s']:.2f} s during / {s['cpu_total_s']:.2f} s until file "
                f"record, lost {sess['lost_events']}, file record "
                f"{'ok' if s['file_ok'] else 'MISSING'}")
        finally:
            try:
                rc = d.stop() if d.proc else None
                if rc not in (0, None):
                    self.note(f"{what}: sealtraild exited with status {rc}")
                text = ""
                with contextlib.suppress(OSError):
                    with open(d.log_path, "rb") as f:
                        text = f.read().decode(errors="replace")
                s["daemon_log_lines"] = len(text.splitlines())
                s["daemon_log_tail"] = text.splitlines()[-20:]
                bad = [ln for ln in text.splitlines()
                       if any(w in ln.lower() for w in ("error", "warn", "lost", "libbpf",
                                                        "fail", "drop"))]
                if bad:
                    s["daemon_log_bad"] = bad[:20]
                    self.note(f"{what}: sealtraild log: " + " | ".join(bad[:10]) +
                              (f" (+{len(bad) - 10} more)" if len(bad) > 10 else ""))
            finally:
                if d.proc:
                    self.own_pids.discard(d.proc.pid)
                d.close()
                self.remove_upload()
        return s

    def settled_du(self, store, timeout=15.0):
        """du of the store once it stops changing (records are flushed once a
        second; status.json is rewritten every second at a near-constant size)."""
        deadline = time.monotonic() + timeout
        last = du(store)
        while True:
            time.sleep(1.2)
            cur = du(store)
            if cur[1] == last[1] or time.monotonic() > deadline:
                return cur
            last = cur

    # -- the run ------------------------------------------------------------

    def run(self):
        self.setup()
        modes = self.args.modes
        for rnd in range(self.args.rounds):
            for mode in modes:
                order = CONFIGS if (rnd + modes.index(mode)) % 2 == 0 else CONFIGS[::-1]
                for config in order:
                    s = {"mode": mode, "config": config, "round": rnd + 1}
                    self.samples.append(s)
                    try:
                        self.sample(s)
                    except (KeyboardInterrupt, SystemExit):
                        s["failed"] = "interrupted"
                        raise
                    except Exception as exc:
                        msg = (str(exc) if isinstance(exc, (harness.Failure, RuntimeError))
                               else traceback.format_exc())
                        s["failed"] = msg
                        tail = " | ".join(s.get("daemon_log_tail", [])[-5:])
                        self.note(f"round {rnd + 1} {mode} {config} FAILED: {msg}" +
                                  (f"; sealtraild log: {tail}" if tail else ""))


def report(bench, header):
    a = bench.args
    out = [header, ""]
    rows, cpu_rows, checks = [], [], []

    def mark(s):  # samples not taken on a quiet machine
        return "" if s.get("quiet", True) else "*"

    for mode in a.modes:
        label = f"scp {MODES[mode][0] + ' ' if MODES[mode] else ''}({mode})"
        unrec = [s for s in bench.samples if s["mode"] == mode and s["config"] == "unrecorded"
                 and "failed" not in s]
        rec = [s for s in bench.samples if s["mode"] == mode and s["config"] == "recorded"
               and "failed" not in s]
        base = median([s["mbps"] for s in unrec])
        for config, ss in (("unrecorded", unrec), ("recorded", rec)):
            m = median([s["mbps"] for s in ss])
            ratio = m / base if m and base else None
            paired = [r["mbps"] / u["mbps"] for r in rec for u in unrec
                      if r["round"] == u["round"]]
            row = [label, config, fmt(m), " ".join(fmt(s["mbps"]) + mark(s) for s in ss)]
            if config == "recorded":
                growth = max((s["growth_alloc"] for s in ss), default=None)
                row += [fmt(ratio, 3), " ".join(fmt(x, 3) for x in paired),
                        " ".join(str(s["growth_alloc"]) for s in ss),
                        " ".join(str(s["growth_apparent"]) for s in ss),
                        " ".join(f"{s['lost_events']}/{s['lost_bytes']}" for s in ss),
                        " ".join("yes" if s["file_ok"] else "NO" for s in ss)]
                checks.append((f"{mode}: recorded throughput >= {RATIO_TARGET:.2f}x unrecorded "
                               f"(median {fmt(ratio, 3)})",
                               ratio is not None and ratio >= RATIO_TARGET))
                checks.append((f"{mode}: store growth <= 1 MiB (max {growth} B allocated)",
                               growth is not None and growth <= GROWTH_TARGET))
                checks.append((f"{mode}: file record with the right SHA-256 in every "
                               "recorded sample", bool(ss) and all(s["file_ok"] for s in ss)))
                checks.append((f"{mode}: 0 lost events", bool(ss) and
                               all(s["lost_events"] == 0 and s["lost_bytes"] == 0 for s in ss)))
            else:
                row += ["1"] + ["-"] * 5
            rows.append(row)

            def med(f):
                return median([f(s) for s in ss])
            cpu_rows.append([
                label, config,
                fmt(med(lambda s: s["seconds"]), 2),
                f"{fmt(med(lambda s: s['client_user_s']), 2)} / "
                f"{fmt(med(lambda s: s['client_sys_s']), 2)}",
                f"{fmt(med(lambda s: s['server_user_s']), 2)} / "
                f"{fmt(med(lambda s: s['server_sys_s']), 2)}",
                (f"{fmt(med(lambda s: s['cpu_transfer_s']), 2)} = "
                 f"{fmt(med(lambda s: s['daemon_user_s']), 2)} / "
                 f"{fmt(med(lambda s: s['daemon_sys_s']), 2)}") if config == "recorded" else "-",
                fmt(med(lambda s: s["cpu_total_s"]), 2) if config == "recorded" else "-",
                fmt(med(lambda s: s["machine_busy_s"]), 2),
                fmt(med(lambda s: s["machine_kernel_s"]), 2),
                fmt(med(lambda s: s["other_s"]), 2),
            ])
    out.append(table(["transfer", "config", "MB/s median", "samples MB/s (round order)",
                      "ratio of medians", "ratio per round", "store growth B (du -B1)",
                      "apparent B (du -b)", "lost events/bytes", "file record sha256 ok"],
                     rows))
    out.append("")
    out.append(table(["transfer", "config", "scp s", "client CPU s user / sys",
                      "server CPU s user / sys", "sealtraild CPU s during scp = user / sys",
                      "sealtraild CPU s until file record", "machine busy CPU s",
                      "machine kernel CPU s", "other CPU s"], cpu_rows))
    out.append("")
    rows3 = []
    for s in bench.samples:
        if s["config"] != "recorded" or "failed" in s:
            continue
        rows3.append([s["round"], s["mode"], s["kind"], fmt(s["seconds"], 2),
                      s["bytes_in"], s["bytes_out"], s["ringbuf_events"],
                      " ".join(f"{k}:{v}" for k, v in sorted(s["event_types"].items())),
                      fmt(s["end_after_s"], 2), fmt(s["file_after_s"], 2),
                      s["store_after"][0]])
    if rows3:
        out.append(table(["round", "transfer", "kind", "scp s", "bytes_in", "bytes_out",
                          "ring-buffer events", "records (sealtrail events)",
                          "end s after scp", "file record s after scp",
                          "store du B at end"], rows3))
        out.append("")
    bpf_rows = []
    for mode in a.modes:
        ss = [s for s in bench.samples if s["mode"] == mode and "bpf" in s
              and "failed" not in s]
        if not ss:
            continue
        names = sorted({k for s in ss for k in s["bpf"]},
                       key=lambda k: -median([s["bpf"].get(k, (0, 0))[0] for s in ss]))
        total = median([sum(v[0] for v in s["bpf"].values()) for s in ss])
        top = [f"{k} {fmt(median([s['bpf'].get(k, (0, 0))[0] for s in ss]) / 1e9, 3)} s / "
               f"{median([s['bpf'].get(k, (0, 0))[1] for s in ss]):.0f} runs"
               for k in names[:5]]
        bpf_rows.append([mode, fmt(total / 1e9, 3), "; ".join(top)])
    if bpf_rows:
        out.append(table(["transfer", "BPF programs' run time s while scp ran (median)",
                          "largest programs (median run time / runs)"], bpf_rows))
        out.append("")
        out.append("(--bpf-stats: kernel BPF run-time statistics were on in this run, "
                   "which itself slows every BPF program run a little)")
        out.append("")
    out.append(
        f"{a.size_mib} MiB file of random bytes, {a.rounds} rounds, configurations "
        "interleaved (order rotates); MB/s = 10^6 B/s over the whole scp command (login "
        "included). All CPU figures are medians in CPU seconds: client = scp and its ssh; "
        "server = every process of the connection (sshd, sftp-server / scp -t), including "
        "the BPF programs' work inside their syscalls; sealtraild = its utime+stime; "
        "machine = all CPUs from /proc/stat while scp ran (kernel = system+irq+softirq); "
        "other = machine - client - server - sealtraild (load nobody here caused). "
        "* = sample not taken on a quiet machine (see notes).")
    out.append("")
    for what, ok in checks:
        out.append(f"- {'MET' if ok else 'MISSED'}: {what}")
    failed = [s for s in bench.samples if "failed" in s]
    if failed:
        out.append(f"- {len(failed)} samples FAILED to run (see notes)")
    noisy = [s for s in bench.samples if not s.get("quiet", True)]
    if noisy:
        out.append(f"- {len(noisy)} samples were taken on a machine that was not "
                   "quiet (marked *, see notes)")
    if bench.waited >= 1:
        out.append(f"- waited {bench.waited:.0f} s in total for a quiet machine")
    if bench.notes:
        out += ["", "notes:"] + [f"- {n}" for n in bench.notes]
    return "\n".join(out), bool(failed)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--modes", default="sftp,legacy",
                    help="comma-separated: sftp (plain scp), legacy (scp -O)")
    ap.add_argument("--json", help="also write every sample to this file")
    ap.add_argument("--scp-timeout", type=float, default=1800)
    ap.add_argument("--end-timeout", type=float, default=300,
                    help="seconds to wait for the session end and the file record")
    ap.add_argument("--quiet-wait", type=float, default=60,
                    help="seconds to wait, per sample, for other BPF programs to go "
                         "away and the CPUs to be idle (default 60)")
    ap.add_argument("--quiet-budget", type=float, default=600,
                    help="total seconds the run may wait for a quiet machine (default 600)")
    ap.add_argument("--busy-max", type=float, default=0.25,
                    help="CPU busy fraction above which the machine is not quiet")
    ap.add_argument("--other-max", type=float, default=0.10,
                    help="flag a sample when processes outside the benchmark used more "
                         "than this fraction of all CPUs while scp ran (default 0.10)")
    ap.add_argument("--bpf-stats", action="store_true",
                    help="diagnostic: turn on kernel BPF run-time statistics for the run "
                         "and report the time sealtraild's programs took per transfer")
    ap.add_argument("--lock-wait", type=float, default=1800,
                    help="seconds to wait for another benchmark's lock on tools/bench")
    args = ap.parse_args()
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for m in args.modes:
        if m not in MODES:
            ap.error(f"unknown mode {m!r}: choose from {', '.join(MODES)}")
    if args.size_mib <= 0 or args.rounds <= 0:
        ap.error("--size-mib and --rounds must be positive")
    if os.geteuid() != 0:
        sys.exit("scp.py: needs root (BPF, test users, sshd)")
    for b in ("sealtraild", "sealtrail"):
        if not os.access(os.path.join(args.build, b), os.X_OK):
            sys.exit(f"scp.py: {args.build}/{b} missing: run `make` first")
    sshlab.cleanup_on_signals()
    signal.signal(signal.SIGINT, signal.default_int_handler)

    started = time.time()
    was_nice = reset_autogroup()
    ver = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
    header = (f"scp benchmark {time.strftime('%Y-%m-%d %H:%M:%S %Z')}: "
              f"{os.cpu_count()} CPUs, kernel {platform.release()}, {ver}, "
              f"command: {' '.join([sys.executable] + sys.argv)}")
    rev = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                         capture_output=True, text=True).stdout.strip()
    header += f", tree {rev or '?'}"
    if was_nice:
        header += f" (this session's autogroup had nice {was_nice}: reset to 0)"
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.split("\n")
    dirty = [ln[3:] for ln in dirty if ln.strip()]
    if dirty:
        header += f" (uncommitted changes in: {', '.join(dirty)})"
    try:
        built = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(
            os.stat(os.path.join(args.build, "sealtraild")).st_mtime))
        header += f", {args.build}/sealtraild built {built}"
    except OSError:
        pass
    with Bench(args) as bench:
        try:
            bench.run()
        finally:
            text, failed = report(bench, header)
            print("\n" + text)
            print(f"\ntotal {time.time() - started:.0f} s")
            if args.json:
                with open(args.json, "w") as f:
                    json.dump({"header": header, "samples": bench.samples,
                               "notes": bench.notes}, f, indent=1, default=str)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
