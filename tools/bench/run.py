#!/usr/bin/python3
"""sealtrail benchmarks. Needs root (BPF, test users, a private sshd).

    /usr/bin/python3 tools/bench/run.py --build build [PART ...]

PART is one or more of ``syscall``, ``throughput``, ``collector`` (default:
all three, in that order). Every number is printed next to a baseline
measured in the same run, as a ratio, because the machine is noisy:

syscall     ns per write(1 B)+read(1 B) on a pipe for a process outside any
            session: nothing attached (baseline) / empty BPF programs on
            the attach points of build/sealtrail.bpf.o (read from the
            object) / sealtraild running; for comparison, empty programs on
            raw_tp/sys_enter + raw_tp/sys_exit.
            Target: added(sealtraild) / added(empty) <= 1.25.
throughput  `cat` of a 256 MiB text file inside an interactive `ssh -tt`
            session: unrecorded (baseline) / sealtraild / tlog-rec-session
            as login shell / `sudo -i` with sudoers `log_output`.
            Target: sealtraild >= 0.90x unrecorded with 0 lost bytes.
collector   100 concurrent interactive sessions each `cat`ting 2 MB of text:
            sealtraild's CPU seconds per MB recorded and peak RSS (VmHWM);
            aggregate throughput unrecorded (baseline) vs recorded.
            Target: VmHWM <= 64 MiB, 0 lost bytes.

Configurations are interleaved round by round (the order rotates) and the
median of each is reported. Before every sample the run waits (bounded by
--quiet-wait per sample and --quiet-budget per run) until no BPF program of
another process is attached to a tracepoint and the CPUs are idle, since a
second recorder (a concurrently running test suite) or a fuzzer would
distort every number; samples taken anyway are flagged in the notes.

A full run measures for about 5 minutes on a quiet 2-CPU machine, plus at
most --quiet-budget (600 s) of waiting. --quick runs everything small
(seconds) to check the benchmark itself;
--json FILE keeps every sample. sealtraild runs as shipped unless
--ringbuf-size or --daemon-nice say otherwise (for experiments).

Everything is created under one temporary directory in /tmp (deleted at the
end) and undone on exit, Ctrl-C or SIGTERM: test users, the private sshd,
daemons, the sudoers drop-in, /etc/tlog/tlog-rec-session.conf (backed up and
restored), /run/utmp if this run created it. A run killed with SIGKILL is
repaired by the next one (stale users/sshd by selftests/lib/sshlab.py, the
rest at start-up here). Only the Python 3 standard library is used.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import glob
import hashlib
import json
import shlex
import os
import platform
import re
import selectors
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
import traceback

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "selftests", "lib"))

import harness  # noqa: E402  (selftests/lib)
import sshlab  # noqa: E402
from common import (QuietBench, cpu_busy, reset_autogroup, cpu_by_comm, cpu_delta_by_comm,
                    cpu_times as _cpu_times, fmt, foreign_bpf, log, rotate, table)

MiB = 1 << 20
PROMPT = b"$ "
ROOT_PROMPT = b"# "
# The typed command is echoed by the remote pty; only its *output* contains
# the evaluated mark.
END_CMD = "echo BENCH_END_$((40+2))"
END_MARK = b"BENCH_END_42"

TLOG_CONF = "/etc/tlog/tlog-rec-session.conf"
TLOG_BACKUP = TLOG_CONF + ".sealtrail-bench-orig"  # never read by tlog (not its name)
TLOG_ABSENT = TLOG_CONF + ".sealtrail-bench-absent"  # marker: there was no config
SUDOERS_DROPIN = "/etc/sudoers.d/sealtrail-bench-iolog"  # no '.': sudo reads it
UTMP = "/run/utmp"
UTMP_MARKER = "/run/.sealtrail-bench-created-utmp"
TMP_PREFIX = "st-bench-"

CLK_TCK = os.sysconf("SC_CLK_TCK")


def loadavg():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def run(argv, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    p = subprocess.run(argv, **kw)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {p.returncode}:\n{p.stderr}")
    return p


# --------------------------------------------------------------------------
# process accounting
# --------------------------------------------------------------------------


def cpu_seconds(pid):
    """utime + stime of pid in seconds (clock-tick resolution), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rfind(b")") + 2:].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def proc_status_kb(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


# --------------------------------------------------------------------------
# the run: temp dir, lock, undo list
# --------------------------------------------------------------------------


class Bench(QuietBench):
    def __init__(self, args):
        super().__init__(args)
        self.build = os.path.abspath(args.build)
        self.build_desc = self.build
        self.stack = contextlib.ExitStack()
        self._lock_fd = None

    def __enter__(self):
        # One bench at a time: it changes machine-wide config (tlog, sudoers).
        self._lock_fd = os.open(HERE, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            sys.exit("run.py: another benchmark run holds the lock on tools/bench")
        self.repair_stale()
        self.tmp = tempfile.mkdtemp(prefix=TMP_PREFIX, dir="/tmp")
        # sshd reads authorized keys and test users read the data files
        # with their own uid: the tree must be searchable.
        os.chmod(self.tmp, 0o755)
        # harness.Daemon puts its store under tempfile's directory: keep it
        # inside ours so one rmtree removes everything.
        tempfile.tempdir = self.tmp
        self.stack.callback(self._remove_tmp)
        self.snapshot_build()
        return self

    def snapshot_build(self):
        """Copy the binaries under test: the tree is rebuilt by others while
        this runs, and every sample must measure the same daemon."""
        src, self.build = self.build, self.mkdir("build", 0o755)
        for name in ("sealtraild", "sealtrail", "sealtrail.bpf.o"):
            shutil.copy2(os.path.join(src, name), os.path.join(self.build, name))
        with open(os.path.join(self.build, "sealtraild"), "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()[:16]
        self.build_desc = f"{src} (sealtraild sha256 {digest}..., copied at start)"
        harness.BUILD = self.build

    def __exit__(self, *exc):
        try:
            self.stack.close()
        finally:
            tempfile.tempdir = None
            os.close(self._lock_fd)
        return False

    def _remove_tmp(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def repair_stale(self):
        """Undo what a SIGKILLed earlier run left (we hold the lock)."""
        if os.path.exists(TLOG_BACKUP):
            os.replace(TLOG_BACKUP, TLOG_CONF)
            log(f"restored {TLOG_CONF} left modified by an earlier run")
        if os.path.exists(TLOG_ABSENT):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(TLOG_CONF)
            os.unlink(TLOG_ABSENT)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(SUDOERS_DROPIN)
        if os.path.exists(UTMP_MARKER):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(UTMP)
            os.unlink(UTMP_MARKER)
        for d in glob.glob(f"/tmp/{TMP_PREFIX}*"):
            shutil.rmtree(d, ignore_errors=True)

    def check_after(self, what):
        """Flag a sample if a foreign recorder appeared while it ran."""
        foreign = foreign_bpf(self.own_pids)
        if foreign:
            self.contaminated += 1
            self.note(f"{what}: other processes attached BPF programs during the "
                      f"sample: {foreign}")
            return False
        return True

    @contextlib.contextmanager
    def daemon(self, extra=()):
        extra = list(extra)
        if self.args.ringbuf_size:
            extra += ["--ringbuf-size", str(self.args.ringbuf_size)]
        extra += shlex.split(self.args.daemon_args or "")
        d = harness.Daemon(extra)
        try:
            d.start()
            self.own_pids.add(d.proc.pid)
            if self.args.daemon_nice is not None:
                # nice is per thread on Linux
                for tid in os.listdir(f"/proc/{d.proc.pid}/task"):
                    os.setpriority(os.PRIO_PROCESS, int(tid), self.args.daemon_nice)
            yield d
        finally:
            try:
                rc = d.stop() if d.proc else None
                if rc not in (0, None):
                    self.note(f"sealtraild exited with status {rc}")
                text = ""
                with contextlib.suppress(OSError):
                    with open(d.log_path, "rb") as f:
                        text = f.read().decode(errors="replace")
                if self.args.keep_log:
                    with open(self.args.keep_log, "a") as f:
                        f.write(text)
                bad = [ln for ln in text.splitlines()
                       if ": error" in ln or ": warning" in ln or "libbpf" in ln]
                if bad:
                    self.note("sealtraild log: " + " | ".join(bad[:10]) +
                              (f" (+{len(bad) - 10} more)" if len(bad) > 10 else ""))
            finally:
                if d.proc:
                    self.own_pids.discard(d.proc.pid)
                d.close()

    def lab(self, stack, name, users):
        """A private sshd with these users, closed (users deleted) by stack."""
        lab = stack.enter_context(sshlab.SshLab(self.mkdir(name)))
        made = [lab.add_user(u) for u in users]
        return lab, made


# --------------------------------------------------------------------------
# a lean pty client: counts output instead of keeping it
# --------------------------------------------------------------------------


def _make_ctty():
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class LeanPty:
    """``ssh -tt`` on a pty whose output is counted (and optionally hashed),
    not stored: PtySession keeps every byte and re-scans it on each
    expect(), which is quadratic for a 256 MiB stream. The local slave keeps
    cooked modes, so the remote pty is a normal terminal (echo, ONLCR) as
    for a real user; send nothing before the first prompt."""

    WINDOW_CAP = 1 << 20

    def __init__(self, argv, stderr_path, hash_output=False):
        master, slave = os.openpty()
        try:
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
            with open(stderr_path, "ab") as err:
                self.proc = subprocess.Popen(
                    argv, stdin=slave, stdout=slave, stderr=err, start_new_session=True,
                    preexec_fn=_make_ctty, close_fds=True)
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        self.master = master
        self.pid = self.proc.pid
        self.stderr_path = stderr_path
        self.total = 0
        self.reads = 0
        self.window = bytearray()
        self.expecting = None
        self.eof = False
        self.hasher = hashlib.sha256() if hash_output else None
        self.matches = []  # (monotonic time, total bytes read) at each match

    def send(self, data):
        view = memoryview(data)
        deadline = time.monotonic() + 20
        while view:
            try:
                n = os.write(self.master, view)
                view = view[n:]
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError("pty not writable for 20 s")
                time.sleep(0.005)

    def expect(self, pattern):
        """Start waiting for pattern (after the previous match)."""
        self.expecting = pattern
        return self._check()

    def _check(self):
        pat = self.expecting
        if pat is None:
            return False
        i = self.window.find(pat)
        if i >= 0:
            del self.window[:i + len(pat)]
            self.expecting = None
            self.matches.append((time.monotonic(), self.total))
            return True
        keep = len(pat) - 1
        if len(self.window) > keep:
            del self.window[:len(self.window) - keep]
        return False

    def on_readable(self):
        """Drain what is there; returns False at EOF."""
        while True:
            try:
                data = os.read(self.master, 1 << 16)
            except BlockingIOError:
                return True
            except OSError as exc:
                if exc.errno == errno.EIO:  # every slave fd closed
                    self.eof = True
                    return False
                raise
            if not data:
                self.eof = True
                return False
            self.total += len(data)
            self.reads += 1
            if self.hasher:
                self.hasher.update(data)
            self.window += data
            if self.expecting is not None:
                self._check()
            elif len(self.window) > self.WINDOW_CAP:
                del self.window[:len(self.window) - self.WINDOW_CAP]

    def stderr_text(self):
        with contextlib.suppress(OSError):
            with open(self.stderr_path, "rb") as f:
                return f.read()[-500:].decode(errors="replace")
        return ""

    def close(self):
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        if self.master is not None:
            os.close(self.master)
            self.master = None


def pump(sessions, done, timeout, what):
    """Read from every session until done() is true."""
    sel = selectors.DefaultSelector()
    for s in sessions:
        if not s.eof:
            sel.register(s.master, selectors.EVENT_READ, s)
    deadline = time.monotonic() + timeout
    try:
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                stuck = [s for s in sessions if s.expecting is not None or not s.eof][:3]
                detail = "; ".join(
                    f"pid {s.pid} rc={s.proc.poll()} eof={s.eof} total={s.total} "
                    f"expecting={s.expecting!r} tail={bytes(s.window[-200:])!r} "
                    f"stderr={s.stderr_text()!r}" for s in stuck)
                raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}: {detail}")
            if not sel.get_map():
                if done():
                    break
                raise RuntimeError(f"all sessions at EOF while waiting for {what}")
            for key, _ in sel.select(min(left, 0.5)):
                s = key.data
                if not s.on_readable():
                    sel.unregister(s.master)
    finally:
        sel.close()


def expect_all(sessions, pattern, timeout, what):
    for s in sessions:
        s.expect(pattern)
    pump(sessions, lambda: all(s.expecting is None for s in sessions), timeout, what)


def eof_all(sessions, timeout, what):
    pump(sessions, lambda: all(s.eof for s in sessions), timeout, what)
    for s in sessions:
        try:
            s.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"{what}: ssh {s.pid} still running") from None


def text_file(path, size):
    """size bytes of printable ASCII text in ~80-byte lines."""
    block = bytearray()
    i = 0
    while len(block) < MiB:
        block += (f"{i:08d} sealtrail benchmark: the quick brown fox jumps over the "
                  f"lazy dog {i * 7919 % 100000:05d}\n").encode()
        i += 1
    block = bytes(block[:MiB - 1]) + b"\n"
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, len(block))
            f.write(block[:n - 1] + b"\n" if n < len(block) else block)
            left -= n
    os.chmod(path, 0o644)


# --------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------


def verdict(ok):
    return "MET" if ok else "MISSED"


# --------------------------------------------------------------------------
# part 1: syscall overhead outside sessions
# --------------------------------------------------------------------------


def build_syscall_tools(bench, sections):
    """Compile empty.bpf.c (plus an empty program for every attach point of
    sealtrail that the file lacks, so the baseline always mirrors the object
    under test), its skeleton, the loader and sysloop. Returns the paths and
    the list of attach points that had to be added."""
    out = bench.mkdir("syscall-tools", 0o700)
    arch = platform.machine().replace("x86_64", "x86").replace("aarch64", "arm64")
    with open(os.path.join(HERE, "empty.bpf.c")) as f:
        src = f.read()
    have = set(re.findall(r'EMPTY\("([^"]+)"', src))
    added = [sec for sec in sections if sec not in have]
    if added:
        src += "\n/* added by run.py: attach points of sealtrail.bpf.o missing above */\n"
        for i, sec in enumerate(added):
            src += f'EMPTY("{sec}", empty_auto_{i})\n'
    csrc = os.path.join(out, "empty.bpf.c")
    with open(csrc, "w") as f:
        f.write(src)
    obj = os.path.join(out, "empty.bpf.o")
    run(["clang", "-g", "-O2", "-target", "bpf", f"-D__TARGET_ARCH_{arch}",
         "-I", os.path.join(ROOT, "vmlinux"), "-c", csrc, "-o", obj])
    skel = run(["bpftool", "gen", "skeleton", obj, "name", "empty_bpf"]).stdout
    with open(os.path.join(out, "empty.skel.h"), "w") as f:
        f.write(skel)
    loader = os.path.join(out, "empty_loader")
    run(["gcc", "-O2", "-Wall", "-I", out, os.path.join(HERE, "empty_loader.c"),
         "-o", loader, "-lbpf", "-lelf", "-lz"])
    loop = os.path.join(out, "sysloop")
    run(["gcc", "-O2", "-Wall", os.path.join(HERE, "sysloop.c"), "-o", loop])
    return loader, loop, added


PROG_SECTION_PREFIXES = ("tp/", "tracepoint/", "raw_tp/", "raw_tracepoint/", "uprobe",
                         "uretprobe", "kprobe", "kretprobe", "fentry/", "fexit/", "tp_btf/",
                         "socket", "cgroup", "sk_msg", "sk_skb", "lsm/", "usdt")


def sealtrail_sections(build):
    """Program sections of the sealtrail BPF object that sealtraild embeds."""
    obj = os.path.join(build, "sealtrail.bpf.o")
    out = run(["readelf", "-SW", obj]).stdout
    secs = set()
    for line in out.splitlines():
        m = re.search(r"\]\s+(\S+)\s+PROGBITS", line)
        if m and m.group(1).startswith(PROG_SECTION_PREFIXES):
            secs.add(m.group(1))
    if not secs:
        raise RuntimeError(f"no program sections found in {obj}")
    tps = sorted(x for x in secs if x.startswith(("tp/", "tracepoint/", "raw_tp/",
                                                   "raw_tracepoint/")))
    return tps, sorted(secs - set(tps))


@contextlib.contextmanager
def empty_programs(bench, loader, sections):
    want = 5 if sections == ["raw"] else len(sections)
    argv = [loader] + sections
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, text=True)
    bench.own_pids.add(p.pid)
    try:
        sel = selectors.DefaultSelector()
        sel.register(p.stdout, selectors.EVENT_READ)
        line = p.stdout.readline().strip() if sel.select(30) else ""
        if line != f"ready {want}":
            if p.poll() is None:
                p.kill()
            p.wait()
            raise RuntimeError(f"empty_loader did not start ({line!r}, rc={p.returncode}): "
                               f"{p.stderr.read().strip()}"
                               + (" -- add that attach point to tools/bench/empty.bpf.c"
                                  if p.returncode == 3 else ""))
        sel.close()
        yield p
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        p.stdout.close()
        p.stderr.close()
        bench.own_pids.discard(p.pid)


def part_syscall(bench):
    a = bench.args
    sections, unmirrored = sealtrail_sections(bench.build)
    loader, loop, generated = build_syscall_tools(bench, sections)
    log(f"syscall: sealtrail attach points: {' '.join(sections)}")
    if generated:
        log(f"syscall: not in tools/bench/empty.bpf.c, added for this run: {' '.join(generated)}")
    cpu = None if a.cpu == -2 else (os.cpu_count() - 1 if a.cpu == -1 else a.cpu)

    def sample(label):
        pre = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
        clean = bench.gate(f"syscall/{label}")
        p = subprocess.run([loop, str(a.iters)], capture_output=True, text=True,
                           preexec_fn=pre)
        if p.returncode != 0:
            raise RuntimeError(f"sysloop failed: {p.stderr}")
        clean = bench.check_after(f"syscall/{label}") and clean
        return float(p.stdout), clean

    configs = ["detached", "empty", "sealtraild"] + (["raw"] if a.raw_tp else [])
    samples = {c: [] for c in configs}
    clean = {c: 0 for c in configs}
    events = []
    for r in range(a.syscall_rounds):
        for c in rotate(configs, r):
            if c == "detached":
                v, ok = sample(c)
            elif c in ("empty", "raw"):
                with empty_programs(bench, loader, ["raw"] if c == "raw" else sections):
                    v, ok = sample(c)
            else:
                with bench.daemon() as d:
                    nprogs = len(d.status().get("programs", []))
                    if nprogs != len(sections) + len(unmirrored):
                        bench.note(f"sealtraild attached {nprogs} programs, "
                                   f"{len(sections) + len(unmirrored)} in "
                                   f"{bench.build}/sealtrail.bpf.o: is the build stale?")
                    before = d.status().get("events", 0)
                    v, ok = sample(c)
                    time.sleep(0.3)  # one status refresh (written every 200 ms)
                    events.append(d.status().get("events", 0) - before)
            samples[c].append(v)
            clean[c] += ok
            log(f"syscall round {r + 1}/{a.syscall_rounds} {c}: {v:.1f} ns/iter")

    med = {c: median(samples[c]) for c in configs}
    base = med["detached"]
    added = {c: med[c] - base for c in configs}
    ratio_added = added["sealtraild"] / added["empty"] if added["empty"] > 0 else float("nan")
    # per-round paired differences, less sensitive to drift over the run
    paired = [(s - d) / (e - d) for d, e, s in
              zip(samples["detached"], samples["empty"], samples["sealtraild"]) if e > d]
    rows = []
    for c, label in (("detached", "(a) nothing attached"),
                     ("empty", f"(b) empty programs, same {len(sections)} attach points"),
                     ("sealtraild", "(c) sealtraild running (filter fast path)"),
                     ("raw", "(d) for comparison: empty raw_tp/sys_enter+sys_exit")):
        if c not in configs:
            continue
        rows.append([label, fmt(med[c]), fmt(med[c] / base, 3), fmt(added[c]),
                     " ".join(fmt(x) for x in samples[c])])
    text = table(["configuration", "ns/iter (median)", "ratio vs (a)", "added ns/iter",
                  "samples ns/iter"], rows)
    text += (f"\n\nadded(c)/added(b) = {fmt(ratio_added, 2)} (target <= 1.25: "
             f"{verdict(ratio_added <= 1.25)}); per-round paired ratios: "
             f"{' '.join(fmt(x, 2) for x in paired)}"
             f"\nattach points (from {bench.build}/sealtrail.bpf.o): {' '.join(sections)}"
             + (f"\nNOT mirrored by (b): {' '.join(unmirrored)}" if unmirrored else "")
             + (f"\n(b) programs generated by run.py because tools/bench/empty.bpf.c lacks "
                f"them: {' '.join(generated)}" if generated else "")
             + f"\none iteration = write(1 B) + read(1 B) on a pipe = 2 syscalls = 4 tracepoint hits; "
             f"{a.iters} iterations per sample, {a.syscall_rounds} rounds"
             f"{f', pinned to CPU {cpu}' if cpu is not None else ''}"
             f"\nring-buffer events emitted by sealtraild during its samples: {events} "
             f"(the benchmark is outside every session: expected ~0; sealtraild also "
             f"follows any other sshd on the machine)"
             + ("\n(d) is not a sealtrail configuration: it shows the alternative attach "
                "design (one hook per syscall direction, paid by every syscall, not only "
                "read/write) on the same loop" if a.raw_tp else ""))
    return {
        "title": "1. syscall overhead outside sessions",
        "text": text,
        "data": {"attach_points": sections, "added_to_empty": generated, "samples": samples, "median": med, "added": added,
                 "added_ratio": ratio_added, "paired_ratios": paired,
                 "clean_samples": clean, "daemon_events": events},
        "checks": [("syscall: added(sealtraild)/added(empty) <= 1.25", ratio_added <= 1.25)],
    }


# --------------------------------------------------------------------------
# part 2: single-session throughput
# --------------------------------------------------------------------------


@contextlib.contextmanager
def tlog_config(bench, log_path):
    """Point tlog-rec-session's file writer at log_path; restore afterwards."""
    existed = os.path.exists(TLOG_CONF)
    if existed:
        shutil.copy2(TLOG_CONF, TLOG_BACKUP)
    else:
        os.makedirs(os.path.dirname(TLOG_CONF), exist_ok=True)
        open(TLOG_ABSENT, "w").close()
    created_utmp = False
    try:
        conf = {"shell": "/bin/bash", "writer": "file", "file": {"path": log_path}}
        tmp = TLOG_CONF + ".sealtrail-bench-new"
        with open(tmp, "w") as f:
            f.write("// written by sealtrail tools/bench/run.py; the original is restored "
                    "at the end of the run\n" + json.dumps(conf, indent=4) + "\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, TLOG_CONF)
        if not os.path.exists(UTMP):
            open(UTMP_MARKER, "w").close()
            run(["install", "-m", "0664", "-o", "root", "-g", "utmp", "/dev/null", UTMP])
            created_utmp = True
        yield
    finally:
        if existed:
            os.replace(TLOG_BACKUP, TLOG_CONF)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(TLOG_CONF)
            os.unlink(TLOG_ABSENT)
        if created_utmp:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(UTMP)
            os.unlink(UTMP_MARKER)


@contextlib.contextmanager
def sudo_iolog(user, iolog_dir):
    body = f"Defaults:{user} log_output, iolog_dir={iolog_dir}\n"
    tmp = os.path.join(os.path.dirname(SUDOERS_DROPIN), ".sealtrail-bench-iolog.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o440)
        with os.fdopen(fd, "w") as f:
            f.write(body)
        run(["visudo", "-cf", tmp])
        os.rename(tmp, SUDOERS_DROPIN)
        yield
    finally:
        for p in (tmp, SUDOERS_DROPIN):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)


def du(path):
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for fn in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, fn)).st_size
    return total


def clear_dir(path):
    for name in os.listdir(path):
        p = os.path.join(path, name)
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)


def bpf_prog_stats(pid):
    """Run count and run time of each BPF program pid holds (kernel.bpf_stats_enabled=1)."""
    ids = set()
    for fd in os.listdir(f"/proc/{pid}/fdinfo"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/fdinfo/{fd}") as f:
            for line in f:
                if line.startswith("prog_id:"):
                    ids.add(int(line.split()[1]))
    out = run(["bpftool", "-j", "prog", "show"]).stdout
    stats = {}
    for p in json.loads(out or "[]"):
        if p["id"] in ids:
            stats[p.get("name", str(p["id"]))] = (p.get("run_cnt", 0), p.get("run_time_ns", 0))
    return stats


def bpf_stats_delta(before, after):
    """{program: {runs, ns_per_run, cpu_s}} between two bpf_prog_stats() snapshots."""
    d = {}
    for name, (cnt, ns) in after.items():
        c0, n0 = before.get(name, (0, 0))
        if cnt > c0:
            d[name] = {"runs": cnt - c0, "ns_per_run": round((ns - n0) / (cnt - c0)),
                       "cpu_s": round((ns - n0) / 1e9, 4)}
    return d


@contextlib.contextmanager
def bpf_stats_enabled(on):
    """kernel.bpf_stats_enabled for the duration (the stats cost ~20 ns per run)."""
    path = "/proc/sys/kernel/bpf_stats_enabled"
    if not on:
        yield
        return
    with open(path) as f:
        old = f.read().strip()
    with open(path, "w") as f:
        f.write("1")
    try:
        yield
    finally:
        with open(path, "w") as f:
            f.write(old)


def stream_session(bench, lab, user, path, size, sudo=False, daemon_pid=None, verify=False):
    """One login, `cat path`, logout. Returns a dict of timings."""
    errp = os.path.join(bench.tmp, "ssh-stderr.txt")
    s = LeanPty(lab.ssh_argv(user), errp, hash_output=verify)
    try:
        expect_all([s], PROMPT, 60, "login prompt")
        port = harness.client_port(s.pid)
        if sudo:
            s.send(b"sudo -i\n")
            expect_all([s], ROOT_PROMPT, 60, "root prompt after sudo -i")
        stats = daemon_pid and bench.args.bpf_stats
        bpf0 = bpf_prog_stats(daemon_pid) if stats else None
        cpu0 = cpu_seconds(daemon_pid) if daemon_pid else None
        csw0 = proc_status_kb(daemon_pid, "voluntary_ctxt_switches") if daemon_pid else None
        total0 = s.total
        procs0 = cpu_by_comm()
        busy0 = _cpu_times()[0]
        t0 = time.monotonic()
        s.send(f"cat {path}; {END_CMD}\n".encode())
        expect_all([s], END_MARK, bench.args.stream_timeout, "end of cat")
        t1 = time.monotonic()
        busy1 = _cpu_times()[0]
        procs1 = cpu_by_comm()
        cpu1 = cpu_seconds(daemon_pid) if daemon_pid else None
        csw1 = proc_status_kb(daemon_pid, "voluntary_ctxt_switches") if daemon_pid else None
        bpf = bpf_stats_delta(bpf0, bpf_prog_stats(daemon_pid)) if stats else None
        got = s.total - total0
        if got < size:
            raise RuntimeError(f"client received {got} bytes < {size} during cat")
        if sudo:
            s.send(b"exit\n")
            expect_all([s], PROMPT, 60, "user prompt after leaving sudo -i")
        s.send(b"exit\n")
        eof_all([s], 60, "logout")
        rc = s.proc.returncode
        if rc != 0:
            bench.note(f"ssh exited {rc} after logout: {s.stderr_text()}")
        return {"seconds": t1 - t0, "port": port, "received": got, "total": s.total,
                "reads": s.reads, "machine_cpu_s": (busy1 - busy0) / CLK_TCK,
                "cpu_by_comm": cpu_delta_by_comm(procs0, procs1, CLK_TCK),
                "cpu": (cpu1 - cpu0) if daemon_pid else None,
                "daemon_wakeups": (csw1 - csw0) if daemon_pid else None,
                "bpf": bpf,
                "sha256": s.hasher.hexdigest() if verify else None}
    finally:
        s.close()


def export_sha256(d, sid):
    p = subprocess.Popen([os.path.join(bench_build(), "sealtrail"), "--store", d.store,
                          "export", str(sid), "--format", "raw"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    h = hashlib.sha256()
    n = 0
    while True:
        chunk = p.stdout.read(1 << 20)
        if not chunk:
            break
        h.update(chunk)
        n += len(chunk)
    err = p.stderr.read().decode(errors="replace")
    p.wait()
    if p.returncode:
        raise RuntimeError(f"sealtrail export {sid} failed: {err}")
    return h.hexdigest(), n


_BUILD = None


def bench_build():
    return _BUILD or harness.BUILD


def part_throughput(bench):
    with contextlib.ExitStack() as stack:
        return _part_throughput(bench, stack)


def _part_throughput(bench, stack):
    a = bench.args
    size = a.size_mib * MiB
    data = bench.mkdir("data")
    path = os.path.join(data, f"text-{a.size_mib}MiB.txt")
    log(f"throughput: writing {a.size_mib} MiB of text to {path}")
    text_file(path, size)
    stack.callback(os.unlink, path)
    configs = [c for c in ("unrecorded", "sealtraild", "sealtraild-sync", "tlog", "sudo")
               if c in a.configs]
    if "unrecorded" not in configs:
        raise RuntimeError("throughput needs the unrecorded baseline")
    lab, (plain, tlogu) = bench.lab(stack, "lab-throughput", ["stbenchu", "stbencht"])
    tlog_dir = bench.mkdir("tlog", 0o755)
    os.chown(tlog_dir, tlogu.uid, tlogu.gid)
    tlog_log = os.path.join(tlog_dir, "tlog.log")
    iolog_dir = os.path.join(bench.tmp, "sudo-io")
    if "tlog" in configs:
        run(["usermod", "-s", "/usr/bin/tlog-rec-session", tlogu.name])
        stack.enter_context(tlog_config(bench, tlog_log))
    if "sudo" in configs:
        stack.enter_context(sudo_iolog(plain.name, iolog_dir))
        stack.callback(shutil.rmtree, iolog_dir, True)

    res = {c: [] for c in configs}
    extra = {c: [] for c in configs}
    for r in range(a.rounds):
        for c in rotate(configs, r):
            clean = bench.gate(f"throughput/{c}")
            info = {"clean": clean}
            if c.startswith("sealtraild"):
                # -sync: the same binary sealing every record at once (no backlog)
                sync = ["--backlog", "0"] if c == "sealtraild-sync" else []
                with bpf_stats_enabled(a.bpf_stats), bench.daemon(sync) as d:
                    d.wait_listener(lab.pid)
                    m = stream_session(bench, lab, plain, path, size,
                                       daemon_pid=d.proc.pid, verify=a.verify)
                    cpu_stream = m["cpu"]
                    t_end = time.monotonic()
                    sess = d.session_of_port(m["port"], timeout=300)
                    info["drain_s"] = time.monotonic() - t_end
                    info["daemon_cpu_s"] = cpu_seconds(d.proc.pid)
                    info["daemon_cpu_stream_s"] = cpu_stream
                    info["daemon_wakeups"] = m["daemon_wakeups"]
                    if m["bpf"] is not None:
                        info["bpf"] = m["bpf"]
                    info["hwm_kib"] = proc_status_kb(d.proc.pid, "VmHWM")
                    st = d.status()
                    info.update(bytes_out=sess["bytes_out"], bytes_in=sess["bytes_in"],
                                lost_bytes=sess["lost_bytes"], lost_events=sess["lost_events"],
                                status_lost_bytes=st.get("lost_bytes"),
                                backlog_peak=st.get("backlog_peak", 0),
                                client_total=m["total"], store_bytes=du(d.store))
                    if sess["lost_bytes"] or sess["lost_events"]:
                        bench.note(f"throughput round {r + 1}: sealtraild lost "
                                   f"{sess['lost_bytes']} bytes in {sess['lost_events']} "
                                   f"events of session {sess['id']}")
                    if sess["bytes_out"] < size:
                        bench.note(f"throughput round {r + 1}: bytes_out {sess['bytes_out']} "
                                   f"< {size}")
                    if sess["bytes_out"] != m["total"]:
                        bench.note(f"throughput round {r + 1}: bytes_out {sess['bytes_out']} "
                                   f"!= {m['total']} bytes the client received")
                    if a.verify:
                        h, n = export_sha256(d, sess["id"])
                        info["export_matches"] = h == m["sha256"]
                        if h != m["sha256"]:
                            bench.note(f"throughput round {r + 1}: exported output ({n} B) "
                                       f"differs from what the client received "
                                       f"({m['total']} B)")
            elif c == "tlog":
                m = stream_session(bench, lab, tlogu, path, size, verify=a.verify)
                # tlog flushes on exit; give it a moment to finish writing
                time.sleep(0.5)
                info["log_bytes"] = du(tlog_dir)
                clear_dir(tlog_dir)
            elif c == "sudo":
                m = stream_session(bench, lab, plain, path, size, sudo=True, verify=a.verify)
                info["log_bytes"] = du(iolog_dir) if os.path.isdir(iolog_dir) else 0
                shutil.rmtree(iolog_dir, ignore_errors=True)
            else:
                m = stream_session(bench, lab, plain, path, size, verify=a.verify)
            info["clean"] = bench.check_after(f"throughput/{c}") and clean
            if c in ("tlog", "sudo") and info["log_bytes"] == 0:
                bench.note(f"throughput round {r + 1}: {c} wrote no log at all")
            mbs = size / m["seconds"] / 1e6
            info["client_reads"] = m["reads"]
            info["machine_cpu_s"] = m["machine_cpu_s"]
            info["cpu_by_comm"] = m["cpu_by_comm"]
            res[c].append(mbs)
            extra[c].append(info)
            log(f"throughput round {r + 1}/{a.rounds} {c}: {m['seconds']:.2f} s, "
                f"{mbs:.1f} MB/s {json.dumps(info)}")

    base = median(res["unrecorded"])
    rows = []
    for c in configs:
        med = median(res[c])
        ex = extra[c]
        if c.startswith("sealtraild"):
            lost = sum(e["lost_bytes"] for e in ex)
            detail = (f"lost bytes {lost} (per round {[e['lost_bytes'] for e in ex]}); "
                      f"bytes_out {[e['bytes_out'] for e in ex]}; "
                      f"daemon CPU during cat {[fmt(e['daemon_cpu_stream_s'], 2) for e in ex]} s; "
                      f"daemon wakeups (voluntary context switches) during cat "
                      f"{[e['daemon_wakeups'] for e in ex]}; "
                      f"store {[round(e['store_bytes'] / MiB) for e in ex]} MiB; "
                      f"backlog peak {[round(e['backlog_peak'] / MiB) for e in ex]} MiB; "
                      f"recorded+ended {[fmt(e['drain_s'], 1) for e in ex]} s after the mark")
            if a.verify:
                detail += f"; export == client bytes {[e.get('export_matches') for e in ex]}"
            if a.bpf_stats:
                progs = sorted({p for e in ex for p in e.get("bpf", {})})
                per = {p: (median([e["bpf"][p]["ns_per_run"] for e in ex if p in e.get("bpf", {})]),
                           median([e["bpf"][p]["cpu_s"] for e in ex if p in e.get("bpf", {})]))
                       for p in progs}
                top = sorted(per.items(), key=lambda kv: -kv[1][1])[:6]
                detail += ("; BPF during cat (median ns/run, CPU-s): "
                           + ", ".join(f"{p} {ns} ns {cpu:.3f} s" for p, (ns, cpu) in top)
                           + f"; all programs {median([sum(v['cpu_s'] for v in e.get('bpf', {}).values()) for e in ex]):.3f} CPU-s")
        elif c in ("tlog", "sudo"):
            detail = f"log size {[round(e['log_bytes'] / MiB, 1) for e in ex]} MiB"
        else:
            detail = ""
        cpu = median([e["machine_cpu_s"] for e in ex])
        rows.append([c, fmt(med), fmt(med / base, 3), " ".join(fmt(x) for x in res[c]),
                     fmt(cpu, 2), fmt(cpu / (size / 1e6) * 1000, 1), detail])
    text = table(["configuration", "MB/s (median)", "ratio vs unrecorded",
                  "samples MB/s", "machine CPU s during cat", "CPU ms per MB", "notes"], rows)
    checks = []
    if "sealtraild" in configs:
        ratio = median(res["sealtraild"]) / base
        lost = sum(e["lost_bytes"] for e in extra["sealtraild"])
        short = [e["bytes_out"] for e in extra["sealtraild"] if e["bytes_out"] < size]
        ok = ratio >= 0.90 and lost == 0 and not short
        text += (f"\n\nsealtraild {fmt(ratio, 3)}x unrecorded, {lost} lost bytes "
                 f"(target >= 0.90x with 0 lost: {verdict(ok)})")
        checks.append(("throughput: sealtraild >= 0.90x unrecorded, 0 lost bytes", ok))
    text += (f"\n`cat` of {a.size_mib} MiB ({size} B) of ~80-byte text lines through "
             f"`ssh -tt` (cooked remote pty), MB = 10^6 B, {a.rounds} rounds interleaved"
             f"\nmachine CPU = busy time of all {os.cpu_count()} CPUs (/proc/stat) between "
             f"sending the command and seeing the end mark: client, sshd, shell, recorder, "
             f"kernel workers; {os.cpu_count()} x the wall time means the box was saturated")
    return {"title": "2. throughput of one interactive session",
            "text": text, "data": {"mbs": res, "extra": extra, "baseline": base},
            "checks": checks}


# --------------------------------------------------------------------------
# part 3: the collector under 100 concurrent sessions
# --------------------------------------------------------------------------


class MemSampler:
    """Polls /proc/PID/status every 50 ms for the peaks VmHWM cannot split:
    anonymous memory, and RSS minus the ring-buffer mapping (the kernel maps
    its data pages twice, for wrap-around, and all pages count in RSS from
    the mmap() on, whatever the daemon does)."""

    def __init__(self, pid):
        self.pid = pid
        self.peak_anon = 0
        self.peak_rss = 0
        self.ringbuf_kib = ringbuf_rss_kib(pid)
        self.states = {}  # "S do_epoll_wait" -> samples: where the daemon spends its time
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)
        self._t.start()

    def _loop(self):
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(0.05)

    def sample(self):
        try:
            with open(f"/proc/{self.pid}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0].decode()
            with open(f"/proc/{self.pid}/wchan") as f:
                wchan = f.read().strip() or "-"
            key = f"{state} {wchan if state != 'R' else ''}".strip()
            self.states[key] = self.states.get(key, 0) + 1
        except OSError:
            pass
        anon = proc_status_kb(self.pid, "RssAnon")
        rss = proc_status_kb(self.pid, "VmRSS")
        if anon is not None:
            self.peak_anon = max(self.peak_anon, anon)
        if rss is not None:
            self.peak_rss = max(self.peak_rss, rss)

    def stop(self):
        self._stop.set()
        self._t.join(2)
        self.sample()


def ringbuf_rss_kib(pid):
    """RSS of the daemon's BPF map mappings (the ring buffer), from smaps."""
    total, in_map = 0, False
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                first = line.split(None, 1)[0]
                if "-" in first and not first.endswith(":"):
                    in_map = "anon_inode:bpf-map" in line or "bpf-ringbuf" in line
                elif in_map and line.startswith("Rss:"):
                    total += int(line.split()[1])
    except OSError:
        pass
    return total


def collector_round(bench, lab, users, path, d=None):
    a = bench.args
    n = a.sessions
    pid = d.proc.pid if d else None
    cpu_start = cpu_seconds(pid) if pid else None
    csw_start = proc_status_kb(pid, "voluntary_ctxt_switches") if pid else None
    mem = MemSampler(pid) if pid else None
    errdir = bench.mkdir("collector-stderr", 0o700)
    clear_dir(errdir)
    sessions = []
    try:
        t_login = time.monotonic()
        for i in range(n):
            sessions.append(LeanPty(lab.ssh_argv(users[i % len(users)]),
                                    os.path.join(errdir, f"{i}.txt")))
        expect_all(sessions, PROMPT, 180, f"{n} login prompts")
        login_s = time.monotonic() - t_login
        ports = {harness.client_port(s.pid) for s in sessions}
        cpu0 = cpu_seconds(pid) if pid else None
        base_tot = [s.total for s in sessions]
        t0 = time.monotonic()
        cmd = f"cat {path}; {END_CMD}\n".encode()
        for s in sessions:
            s.send(cmd)
        expect_all(sessions, END_MARK, a.stream_timeout, f"{n} sessions to finish cat")
        t1 = max(s.matches[-1][0] for s in sessions)
        cpu1 = cpu_seconds(pid) if pid else None
        got = sum(s.matches[-1][1] - b for s, b in zip(sessions, base_tot))
        for s in sessions:
            s.send(b"exit\n")
        eof_all(sessions, 120, f"{n} logouts")
        out = {"login_s": login_s, "stream_s": t1 - t0, "received": got,
               "payload": n * a.session_bytes}
    finally:
        for s in sessions:
            s.close()
    if d:
        t_end = time.monotonic()

        def recorded():
            ss = [x for x in d.sessions() if x["source_port"] in ports]
            return ss if len(ss) == n and all(x["end"] is not None for x in ss) else None

        try:
            ss = harness.wait_for(recorded, 300, f"{n} sessions recorded and ended",
                                  interval=0.5)
        finally:
            mem.stop()
        out["drain_s"] = time.monotonic() - t_end
        cpu_end = cpu_seconds(pid)
        out.update(
            cpu_total_s=cpu_end - cpu_start, cpu_stream_s=cpu1 - cpu0,
            wakeups=proc_status_kb(pid, "voluntary_ctxt_switches") - csw_start,
            bytes_out=sum(x["bytes_out"] for x in ss), bytes_in=sum(x["bytes_in"] for x in ss),
            lost_bytes=sum(x["lost_bytes"] for x in ss),
            lost_events=sum(x["lost_events"] for x in ss),
            short=sum(1 for x in ss if x["bytes_out"] < a.session_bytes),
            hwm_kib=proc_status_kb(pid, "VmHWM"), rss_kib=proc_status_kb(pid, "VmRSS"),
            peak_anon_kib=mem.peak_anon, ringbuf_kib=mem.ringbuf_kib,
            peak_rss_sampled_kib=mem.peak_rss,
            states=dict(sorted(mem.states.items(), key=lambda kv: -kv[1])[:6]),
            store_bytes=du(d.store), status=d.status())
    return out


def part_collector(bench):
    with contextlib.ExitStack() as stack:
        return _part_collector(bench, stack)


def _part_collector(bench, stack):
    a = bench.args
    data = bench.mkdir("data")
    path = os.path.join(data, f"text-{a.session_bytes}B.txt")
    text_file(path, a.session_bytes)
    stack.callback(os.unlink, path)
    lab, users = bench.lab(stack, "lab-collector", [f"stbench{i}" for i in range(a.users)])
    configs = ["unrecorded", "sealtraild"]
    res = {c: [] for c in configs}
    for r in range(a.collector_rounds):
        for c in rotate(configs, r):
            clean = bench.gate(f"collector/{c}")
            if c == "sealtraild":
                # the daemon must not record a ~200 MB store per round on
                # top of the next: each round gets a fresh one (deleted)
                with bench.daemon() as d:
                    d.wait_listener(lab.pid)
                    o = collector_round(bench, lab, users, path, d)
                    if o["lost_bytes"] or o["lost_events"] or o["short"]:
                        bench.note(f"collector round {r + 1}: lost {o['lost_bytes']} bytes in "
                                   f"{o['lost_events']} events; {o['short']} sessions with "
                                   f"bytes_out < {a.session_bytes}; daemon status: " +
                                   json.dumps({k: o['status'].get(k) for k in (
                                       'events', 'lost_events', 'lost_bytes', 'read_failed',
                                       'bad_events', 'ringbuf_bytes', 'ringbuf_peak_used',
                                       'longest_drain_ms')}))
            else:
                o = collector_round(bench, lab, users, path)
            o["mbs"] = o["payload"] / o["stream_s"] / 1e6
            o["clean"] = bench.check_after(f"collector/{c}") and clean
            res[c].append(o)
            log(f"collector round {r + 1}/{a.collector_rounds} {c}: login {o['login_s']:.1f} s, "
                f"stream {o['stream_s']:.1f} s = {o['mbs']:.1f} MB/s"
                + (f", daemon CPU {o['cpu_total_s']:.2f} s, VmHWM {o['hwm_kib']} KiB, "
                   f"lost {o['lost_bytes']}, drain {o['drain_s']:.1f} s, daemon states "
                   f"(50 ms samples) {o['states']}" if c == "sealtraild" else ""))

    def med(c, k):
        return median([o[k] for o in res[c]])

    base = med("unrecorded", "mbs")
    rec = res["sealtraild"]
    mb_rec = [(o["bytes_out"] + o["bytes_in"]) / 1e6 for o in rec]
    cpu_per_mb = [o["cpu_total_s"] / m for o, m in zip(rec, mb_rec)]
    hwm = max(o["hwm_kib"] for o in rec)
    lost = sum(o["lost_bytes"] for o in rec)
    rows = [
        ["unrecorded", fmt(base), "1.000", fmt(med("unrecorded", "login_s")),
         " ".join(fmt(o["mbs"]) for o in res["unrecorded"]), ""],
        ["sealtraild", fmt(med("sealtraild", "mbs")), fmt(med("sealtraild", "mbs") / base, 3),
         fmt(med("sealtraild", "login_s")), " ".join(fmt(o["mbs"]) for o in rec),
         f"lost bytes {lost}"],
    ]
    text = table(["configuration", "aggregate MB/s (median)", "ratio vs unrecorded",
                  "login phase s (median)", "samples MB/s", "notes"], rows)
    rows2 = [
        ["CPU s per MB recorded (utime+stime, whole round)",
         fmt(median(cpu_per_mb), 4), " ".join(fmt(x, 4) for x in cpu_per_mb)],
        ["CPU s while the sessions streamed", fmt(med("sealtraild", "cpu_stream_s"), 2),
         " ".join(fmt(o["cpu_stream_s"], 2) for o in rec)],
        ["CPU s whole round (logins to drained)", fmt(med("sealtraild", "cpu_total_s"), 2),
         " ".join(fmt(o["cpu_total_s"], 2) for o in rec)],
        ["MB recorded (bytes_out + bytes_in)", fmt(median(mb_rec)), " ".join(fmt(x) for x in mb_rec)],
        ["daemon wakeups (voluntary context switches), whole round",
         fmt(med("sealtraild", "wakeups"), 0), " ".join(str(o["wakeups"]) for o in rec)],
        ["peak RSS VmHWM MiB", fmt(hwm / 1024), " ".join(fmt(o["hwm_kib"] / 1024) for o in rec)],
        ["RSS at end VmRSS MiB", fmt(max(o["rss_kib"] for o in rec) / 1024),
         " ".join(fmt(o["rss_kib"] / 1024) for o in rec)],
        ["  of which ring-buffer mapping (smaps Rss) MiB",
         fmt(max(o["ringbuf_kib"] for o in rec) / 1024),
         " ".join(fmt(o["ringbuf_kib"] / 1024) for o in rec)],
        ["peak RSS without the ring-buffer mapping MiB (sampled every 50 ms)",
         fmt(max(o["peak_rss_sampled_kib"] - o["ringbuf_kib"] for o in rec) / 1024),
         " ".join(fmt((o["peak_rss_sampled_kib"] - o["ringbuf_kib"]) / 1024) for o in rec)],
        ["peak RssAnon MiB (sampled every 50 ms)", fmt(max(o["peak_anon_kib"] for o in rec) / 1024),
         " ".join(fmt(o["peak_anon_kib"] / 1024) for o in rec)],
        ["backlog peak MiB (records waiting to be sealed: a memfd, not in RSS)",
         fmt(max(o["status"].get("backlog_peak", 0) for o in rec) / MiB),
         " ".join(fmt(o["status"].get("backlog_peak", 0) / MiB) for o in rec)],
        ["store size MiB", fmt(median([o["store_bytes"] / MiB for o in rec])),
         " ".join(fmt(o["store_bytes"] / MiB) for o in rec)],
        ["last session recorded+ended, s after logouts", fmt(med("sealtraild", "drain_s")),
         " ".join(fmt(o["drain_s"]) for o in rec)],
    ]
    text += "\n\n" + table(["sealtraild", "median / max", "per round"], rows2)
    ok_rss = hwm <= 64 * 1024
    bl = max(o["status"].get("backlog_peak", 0) for o in rec) / MiB
    text += (f"\n\npeak RSS {fmt(hwm / 1024)} MiB (target <= 64 MiB: {verdict(ok_rss)}), "
             f"plus up to {fmt(bl)} MiB of records waiting in the backlog; "
             f"lost bytes {lost} ({verdict(lost == 0)})"
             f"\n{a.sessions} concurrent `ssh -tt` logins ({a.users} users), each "
             f"`cat` of {a.session_bytes} B of text lines; {a.collector_rounds} rounds "
             f"interleaved; aggregate MB/s = {a.sessions} x {a.session_bytes} B / "
             f"(first command sent .. last end mark seen)")
    return {"title": f"3. collector under {a.sessions} concurrent sessions", "text": text,
            "data": res,
            "checks": [("collector: peak RSS <= 64 MiB", ok_rss),
                       ("collector: 0 lost bytes", lost == 0)]}


# --------------------------------------------------------------------------


PARTS = {"syscall": part_syscall, "throughput": part_throughput, "collector": part_collector}


def main():
    global _BUILD
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("parts", nargs="*", metavar="PART",
                    help=f"{', '.join(PARTS)} or all (default: all)")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--json", help="also write all samples to this file")
    ap.add_argument("--quick", action="store_true",
                    help="small sizes, to check that the benchmark itself works")
    ap.add_argument("--quiet-wait", type=float, default=60,
                    help="seconds to wait, per sample, for other processes' BPF "
                         "programs to go away and the CPUs to be idle (default 60)")
    ap.add_argument("--quiet-budget", type=float, default=600,
                    help="total seconds the whole run may spend waiting for a quiet "
                         "machine (default 600); after that samples are only flagged")
    ap.add_argument("--busy-max", type=float, default=0.25,
                    help="CPU busy fraction (all CPUs) above which the machine is "
                         "not quiet (default 0.25)")
    g = ap.add_argument_group("sealtraild (default: as shipped)")
    g.add_argument("--ringbuf-size", type=int,
                   help="pass --ringbuf-size BYTES to sealtraild")
    g.add_argument("--daemon-args", help="more sealtraild arguments, e.g. '--log-level debug'")
    g.add_argument("--keep-log", help="append every sealtraild log to this file")
    g.add_argument("--daemon-nice", type=int,
                   help="renice sealtraild (all threads) to this value after start")
    g = ap.add_argument_group("syscall")
    g.add_argument("--iters", type=int, default=5_000_000)
    g.add_argument("--syscall-rounds", type=int, default=5)
    g.add_argument("--no-raw-tp", dest="raw_tp", action="store_false",
                   help="skip the informational raw_tp/sys_enter+sys_exit row")
    g.add_argument("--cpu", type=int, default=-1,
                   help="pin sysloop to this CPU (default: the last one; -2: no pinning)")
    g = ap.add_argument_group("throughput")
    g.add_argument("--size-mib", type=int, default=256)
    g.add_argument("--rounds", type=int, default=3)
    g.add_argument("--configs", default="unrecorded,sealtraild,tlog,sudo",
                   help="of unrecorded, sealtraild, sealtraild-sync (--backlog 0: "
                        "every record sealed at once), tlog, sudo")
    g.add_argument("--verify", action="store_true",
                   help="hash the client's output (in every configuration, to keep them "
                        "comparable) and compare it with `sealtrail export`")
    g.add_argument("--stream-timeout", type=float, default=600)
    g.add_argument("--bpf-stats", action="store_true",
                   help="in sealtraild rounds, record each program's runs and ns per run "
                        "during the cat (kernel.bpf_stats_enabled=1, which slows them a "
                        "little: compare ns per run, not throughput)")
    g = ap.add_argument_group("collector")
    g.add_argument("--sessions", type=int, default=100)
    g.add_argument("--users", type=int, default=4)
    g.add_argument("--session-bytes", type=int, default=2_000_000)
    g.add_argument("--collector-rounds", type=int, default=3)
    args = ap.parse_args()
    if args.quick:
        args.iters, args.syscall_rounds = 500_000, 2
        args.size_mib, args.rounds = 16, 1
        args.sessions, args.session_bytes, args.collector_rounds = 10, 200_000, 1
    args.configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    bad = [p for p in args.parts if p not in PARTS and p != "all"]
    if bad:
        ap.error(f"unknown part {bad[0]!r}: choose from {', '.join(PARTS)}, all")
    parts = [p for p in PARTS if not args.parts or "all" in args.parts or p in args.parts]
    if os.geteuid() != 0:
        sys.exit("run.py: needs root (BPF, test users, sshd)")
    for b in ("sealtraild", "sealtrail"):
        if not os.access(os.path.join(args.build, b), os.X_OK):
            sys.exit(f"run.py: {args.build}/{b} missing: run `make` first")
    sshlab.cleanup_on_signals()
    signal.signal(signal.SIGINT, signal.default_int_handler)

    started = time.time()
    was_nice = reset_autogroup()
    header = (f"sealtrail benchmarks {time.strftime('%Y-%m-%d %H:%M:%S %Z')}: "
              f"{os.cpu_count()} CPUs, kernel {platform.release()}, "
              f"command: {' '.join([sys.executable] + sys.argv)}")
    try:
        rev = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                             capture_output=True, text=True).stdout.strip()
        header += f", tree {rev or '?'}"
    except OSError:
        pass
    if was_nice:
        header += f"\n(this session's autogroup had nice {was_nice}: reset to 0)"
    results, failed = [], []
    with Bench(args) as bench:
        _BUILD = bench.build
        header += f"\nbinaries: {bench.build_desc}"
        for name in parts:
            log(f"=== {name}")
            t = time.monotonic()
            load0 = loadavg()
            try:
                r = PARTS[name](bench)
                r["seconds"] = time.monotonic() - t
                r["text"] += (f"\nload average (1 min) at start/end of the part: "
                              f"{load0} / {loadavg()}")
                # print now too: a later part may take long or be interrupted
                print(f"\n## {r['title']} ({r['seconds']:.0f} s)\n\n{r['text']}", flush=True)
                results.append(r)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception:
                failed.append(name)
                print(f"\nPART {name} FAILED:\n{traceback.format_exc()}", flush=True)
        notes, contaminated, waited = bench.notes, bench.contaminated, bench.waited
    print("\n" + "=" * 78 + "\n" + header)
    for r in results:
        print(f"\n## {r['title']} ({r['seconds']:.0f} s)\n\n{r['text']}")
    print("\n## summary\n")
    for r in results:
        for what, ok in r["checks"]:
            print(f"- {verdict(ok)}: {what}")
    for name in failed:
        print(f"- FAILED TO RUN: {name}")
    if contaminated:
        print(f"- {contaminated} samples were taken on a machine that was not quiet "
              "(other recorders or other CPU load, see notes): treat those numbers with care")
    if waited >= 1:
        print(f"- waited {waited:.0f} s in total for a quiet machine")
    if notes:
        print("\nnotes:")
        for n in notes:
            print(f"- {n}")
    print(f"\ntotal {time.time() - started:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"header": header, "results": results, "failed": failed,
                       "notes": notes}, f, indent=1, default=str)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
