"""Helpers the benchmarks in tools/bench share: logging, medians, tables."""

import contextlib
import fcntl
import json
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, nd=1):
    if x is None or (isinstance(x, float) and x != x):
        return "n/a"
    return f"{x:.{nd}f}"


def table(headers, rows):
    cols = [[str(h)] + [str(r[i]) for r in rows] for i, h in enumerate(headers)]
    widths = [max(len(c) for c in col) for col in cols]

    def line(cells):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    out = [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line([str(c) for c in r]) for r in rows]
    return "\n".join(out)


def rotate(seq, r):
    r %= len(seq)
    return list(seq[r:]) + list(seq[:r])


def cpu_times():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]  # idle + iowait
    return sum(v[:8]) - idle, sum(v[:8])


def cpu_by_comm():
    """{pid: (comm, user_ticks, system_ticks)} of every process, children
    already reaped included (cutime, cstime)."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        comm = data[data.find(b"(") + 1:data.rfind(b")")].decode(errors="replace")
        rest = data[data.rfind(b")") + 2:].split()
        # init reaps orphans of every earlier round: only its own time
        reaped = d != "1"
        out[int(d)] = (comm, int(rest[11]) + reaped * int(rest[13]),
                       int(rest[12]) + reaped * int(rest[14]))
    return out


def cpu_delta_by_comm(before, after, clk_tck):
    """{comm: [user_s, system_s]} used between two cpu_by_comm() snapshots
    (processes gone by the second one are not counted)."""
    def norm(comm):  # kworker/u8:4-events_unbound -> kworker/u8
        return re.sub(r":\d+.*$|-\d+$", "", comm)

    out = {}
    for pid, (comm, u, s) in after.items():
        c0, u0, s0 = before.get(pid, (comm, 0, 0))
        if norm(c0) != norm(comm):
            u0 = s0 = 0
        d = out.setdefault(norm(comm), [0.0, 0.0])
        d[0] += (u - u0) / clk_tck
        d[1] += (s - s0) / clk_tck
    return {k: [round(u, 2), round(s, 2)] for k, (u, s) in out.items() if u + s >= 0.02}


def reset_autogroup():
    """Put this process's autogroup back to nice 0 and return what it was.

    A sealtraild started in our session (an older harness did) sets its
    autogroup's nice, which then also ranks the benchmark's ssh clients and
    readers: unrecorded and recorded samples would not compete alike."""
    try:
        with open("/proc/self/autogroup") as f:
            was = int(f.read().split()[-1])
        if was:
            with open("/proc/self/autogroup", "w") as f:
                f.write("0")
        return was
    except (OSError, ValueError, IndexError):
        return None


def foreign_bpf(own_pids):
    """'comm[pid]: N programs' for processes other than ours with BPF
    programs attached to (raw) tracepoints/kprobes (bpftool perf)."""
    p = subprocess.run(["bpftool", "-j", "perf"], capture_output=True, text=True)
    try:
        items = json.loads(p.stdout or "[]")
    except ValueError:
        return []
    out = {}
    for it in items:
        pid = it.get("pid")
        if pid in own_pids:
            continue
        try:
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
        except OSError:
            comm = "?"
        out[f"{comm}[{pid}]"] = out.get(f"{comm}[{pid}]", 0) + 1
    return [f"{k}: {v} programs" for k, v in sorted(out.items())]


def wait_bench_lock(stack, wait_s, who):
    """One benchmark at a time: flock tools/bench, waiting at most wait_s
    seconds for another run to finish; released when stack closes."""
    lock_fd = os.open(HERE, os.O_RDONLY | os.O_DIRECTORY)
    stack.callback(os.close, lock_fd)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log("another benchmark holds the lock on tools/bench; waiting for it "
            f"(at most {wait_s:.0f} s)")
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{who}: tools/bench lock still held, giving up")
                time.sleep(2)


def cpu_busy(interval):
    """Fraction of all CPUs busy over interval seconds."""
    b0, t0 = cpu_times()
    time.sleep(interval)
    b1, t1 = cpu_times()
    return (b1 - b0) / max(1, t1 - t0)


def top_cpu(own_pids, n=3):
    """The processes that used the most CPU time in the last ~0.3 s."""
    def snap():
        out = {}
        for d in os.listdir("/proc"):
            if d.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    with open(f"/proc/{d}/stat", "rb") as f:
                        data = f.read()
                    rest = data[data.rfind(b")") + 2:].split()
                    comm = data[data.find(b"(") + 1:data.rfind(b")")].decode(errors="replace")
                    out[int(d)] = (comm, int(rest[11]) + int(rest[12]))
        return out
    a = snap()
    time.sleep(0.3)
    b = snap()
    use = sorted(((v[1] - a[p][1], f"{v[0]}[{p}]") for p, v in b.items()
                  if p in a and p not in own_pids), reverse=True)
    return ", ".join(name for ticks, name in use[:n] if ticks > 0) or "?"

class QuietBench:
    """What run.py's and scp.py's Bench share: a temp dir (self.tmp), notes,
    and the wait for a quiet machine before each sample. Needs self.args
    (quiet_wait, quiet_budget, busy_max), self.own_pids, and sets
    self.notes, self.waited, self.contaminated."""

    def __init__(self, args):
        self.args = args
        self.tmp = None
        self.notes = []
        self.waited = 0.0
        self.contaminated = 0
        self.own_pids = set()

    def mkdir(self, name, mode=0o755):
        path = os.path.join(self.tmp, name)
        os.makedirs(path, exist_ok=True)
        os.chmod(path, mode)
        return path

    def note(self, msg):
        log("NOTE: " + msg)
        self.notes.append(msg)

    def gate(self, what):
        """Wait until no foreign BPF tracepoint programs are attached and the
        machine is idle (this run is idle between samples, so the load is
        someone else's). Returns True if the sample starts clean."""
        budget = max(0.0, self.args.quiet_budget - self.waited)
        deadline = time.monotonic() + min(self.args.quiet_wait, budget)
        t0 = time.monotonic()
        last, last_t = None, 0.0
        while True:
            foreign = foreign_bpf(self.own_pids)
            busy = cpu_busy(0.5)
            why = []
            if foreign:
                why.append(f"other processes' BPF programs attached: {foreign}")
            if busy > self.args.busy_max:
                why.append(f"CPUs {busy:.0%} busy with other work: {top_cpu(self.own_pids)}")
            if not why:
                if last:
                    self.waited += time.monotonic() - t0
                return True
            if time.monotonic() >= deadline:
                self.waited += time.monotonic() - t0
                self.contaminated += 1
                self.note(f"{what}: measured anyway after waiting "
                          f"{time.monotonic() - t0:.0f} s: {'; '.join(why)}")
                return False
            kinds = (bool(foreign), busy > self.args.busy_max)
            if kinds != last or time.monotonic() - last_t > 15:
                log(f"waiting for a quiet machine: {'; '.join(why)}")
                last, last_t = kinds, time.monotonic()

    # -- sealtraild --------------------------------------------------------
