#!/usr/bin/python3
"""Sealing and verify throughput, and the storage ratio, of the store (issue #3).

    /usr/bin/python3 tools/bench/seal.py --build build [--size-mib N] [--rounds N]

No root, no BPF, no sshd: this measures the store alone, on one CPU.

1. Builds a corpus once: the raw terminal bytes of --sessions interactive
   logins (--concurrent at a time, their commands interleaved), each typing
   commands (short input writes of 1-10 bytes, echoed) whose output comes
   from real sources on this machine, in these shares of output bytes:
     source    cat of /usr/include headers and Python modules, `git log -p
               --color=always` of this repository, `grep -rn --color=always`
     logs      dmesg, /var/log/{dpkg,alternatives}.log, apt logs: tail,
               grep --color, and paged through less
     listings  ls -l, ls --color=always (long and columns), ps aux/auxf,
               top -b, df, free, ip -c addr, ss, mount
     man       `man -P cat` of installed pages, overstrike turned into the
               bold/underline escapes less sends, paged through less
     screens   full-screen programs: vim (redraws, cursor moves, scrolling,
               insert mode), top (a redraw every 3 s), less paging
   Cooked output gets CR LF as a pty's onlcr makes it; a colored bash prompt
   follows every command. corpus.bin holds the bytes, plan.txt what they are
   (tools/bench/seal_bench.c documents the format).
2. Per round, --chunks size (the longest terminal output record) and
   --modes (order rotates): build/seal-bench replays the plan through the
   store API on one CPU -- the daemon's records, store_sync every 200 ms and
   at each session end, an epoch per session end -- into a fresh store,
   timing append+sync (wall and CPU time). Modes: "mix" is the whole
   corpus, a record per input write and per echo as sealtraild writes them;
   "output" all of it but the typed input (the terminal's output, echo,
   prompts, exec and exit records: the target's "terminal output");
   "bulk" only its output writes of at least 4 KiB (cat, ls, logs,
   full-screen redraws) and the session starts and ends: terminal output
   alone, the best case for sealing. Then `sealtrail verify`
   (the real CLI, offline) on that store, pinned to the same CPU, twice:
   page cache warm, and cold (the segments dropped from the cache with
   posix_fadvise). Then the store is deleted.
3. Per round, as the physical limits, on the same CPU: `openssl speed -evp
   aes-256-gcm -bytes 16384`, `sha256sum` and `openssl dgst -sha256` of the
   corpus (raw bytes) and of the last store's segments (stored bytes), and
   `zstd -b1 -B<chunk>` (level 1 on independent blocks of the chunk size,
   the compression seal.c does per record) of the corpus.

Targets (issue #3): sealing >= 300 MB/s of raw session bytes on one core;
verify >= 1 GB/s of stored bytes; stored / raw <= 0.35. MB = 10^6 bytes.
Sealing and verify rates are given by wall time (pinned, the target) and by
CPU time (what the process itself used; robust when others share the CPU).

Before every sample the run waits (bounded by --quiet-wait and
--quiet-budget) until one CPU is idle, and pins to the idlest; samples
taken anyway, or whose process got less than --oncpu-min of its wall time
on the CPU (someone else ran there meanwhile), are marked * and explained. Holds the same lock as run.py and
scp.py (flock on tools/bench). Disk use: the corpus (--size-mib) plus one
store (about --size-mib x the storage ratio) under one temporary directory
in /tmp, removed at the end, on Ctrl-C and on SIGTERM; a SIGKILLed run is
cleaned up by the next one. --keep DIR keeps the corpus there and reuses it.
Only the Python 3 standard library.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import platform
import random
import re
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from common import fmt, log, median, rotate, table, wait_bench_lock

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

MiB = 1 << 20
MB = 1_000_000
TMP_PREFIX = "st-sealbench-"  # not run.py's "st-bench-": its repair removes those
SEAL_TARGET = 300.0  # MB/s of raw bytes
VERIFY_TARGET = 1.0  # GB/s of stored bytes
RATIO_TARGET = 0.35
BULK_MIN = 4096  # --modes bulk: output writes of at least this many bytes
COLS, ROWS = 120, 40
SHARES = {"source": 0.30, "logs": 0.20, "listings": 0.15, "man": 0.10, "screens": 0.25}
MAN_PAGES = ["ls", "cp", "find", "grep", "sed", "tar", "ssh", "ssh_config", "sshd_config",
             "scp", "sftp", "ps", "top", "kill", "chmod", "mount", "sudo", "sudoers", "bash",
             "git", "git-log", "openssl", "ip", "ss", "systemctl", "journalctl", "less",
             "vim", "rsync", "curl", "awk", "xargs", "sort", "du", "df", "crontab", "passwd",
             "useradd", "tcpdump", "iptables", "psql", "gcc", "make", "perf", "strace"]
PROMPT = "\x1b[01;32malice@bastion\x1b[00m:\x1b[01;34m~\x1b[00m$ ".encode()


# --------------------------------------------------------------------------
# the corpus
# --------------------------------------------------------------------------

def sh(argv, limit=4 * MiB, env=None):
    """stdout of a command (bytes, cut at limit), b"" if it cannot run."""
    e = dict(os.environ, COLUMNS=str(COLS), LINES=str(ROWS), TERM="xterm-256color",
             MANWIDTH=str(min(COLS, 100)), LC_ALL="C.UTF-8")
    e.update(env or {})
    try:
        p = subprocess.run(argv, capture_output=True, env=e, timeout=60,
                           shell=isinstance(argv, str))
    except (OSError, subprocess.TimeoutExpired):
        return b""
    return p.stdout[:limit]


def onlcr(data):
    """What a pty in cooked mode sends for a program's output."""
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def overstrike_to_sgr(data):
    """less shows man's overstrike (X BS X bold, _ BS X underline) as SGR."""
    data = re.sub(rb"((?:(.)\x08\2)+)",
                  lambda m: b"\x1b[1m" + m.group(1)[::3] + b"\x1b[0m", data)
    return re.sub(rb"((?:_\x08[^\x08])+)",
                  lambda m: b"\x1b[4m" + m.group(1)[2::3] + b"\x1b[24m", data)


C_KEYWORDS = re.compile(rb"\b(struct|int|char|void|unsigned|long|return|if|else|for|while|"
                        rb"static|const|typedef|enum|union|extern|define|include|def|class|"
                        rb"import|from|self|None|True|False)\b")


def highlight(line):
    """Roughly what vim's syntax highlighting sends for one line."""
    s = line.rstrip(b"\n")[:COLS - 5]
    if s.lstrip().startswith((b"/*", b"*", b"//", b"#")):
        return b"\x1b[38;5;81m" + s + b"\x1b[m"
    s = C_KEYWORDS.sub(lambda m: b"\x1b[38;5;130m" + m.group(0) + b"\x1b[m", s)
    return re.sub(rb'"[^"]*"', lambda m: b"\x1b[38;5;161m" + m.group(0) + b"\x1b[m", s)


class Sources:
    """Real outputs from this machine, gathered once per corpus."""

    def __init__(self, rng):
        self.rng = rng
        log("corpus: gathering outputs (ls, ps, top, logs, man pages, headers)")
        self.headers = []
        for base in ("/usr/include", "/usr/lib/python3"):
            for d in sorted(glob.glob(base + "*")):
                for dirpath, _, files in os.walk(d):
                    for f in files:
                        if f.endswith((".h", ".py")):
                            p = os.path.join(dirpath, f)
                            with contextlib.suppress(OSError):
                                if 200 <= os.path.getsize(p) <= 512 * 1024:
                                    self.headers.append(p)
        self.headers.sort()
        logs = ["/var/log/dpkg.log", "/var/log/alternatives.log", "/var/log/apt/history.log",
                "/var/log/apt/term.log"]
        self.logs = {p: data for p in logs if (data := self.read(p))}
        dmesg = sh(["dmesg"])
        if dmesg:
            self.logs["dmesg"] = dmesg
        self.listings = {}
        for cmd in ["ls -l /usr/bin", "ls -la --color=always /usr/bin",
                    "ls -l --color=always /usr/lib/x86_64-linux-gnu",
                    "ls --color=always -C -w 120 /usr/share/doc", "ls -l /etc",
                    "ps aux", "ps auxf", "ps -ef", "top -b -n1 -w 120", "df -h", "free -m",
                    "ip -c addr", "ss -tan", "mount", "ls -la --color=always /etc",
                    "du -sh /usr/share/*"]:
            out = sh(cmd if "*" in cmd else shlex.split(cmd))
            if out:
                self.listings[cmd] = out
        self.git = sh(["git", "-C", ROOT, "log", "-p", "--color=always", "-n", "300"],
                      limit=16 * MiB)
        self.grep = sh("grep -rn --color=always -e 'struct' /usr/include/linux | head -n 3000")
        self.man = {}
        for page in MAN_PAGES:
            out = sh(["man", "-P", "cat", page], env={"MAN_KEEP_FORMATTING": "1"})
            if len(out) > 2000:
                self.man[page] = overstrike_to_sgr(out)
        frames = sh(["top", "-b", "-n", "4", "-d", "0.3", "-w", str(COLS)])
        self.top_frames = [b"top - " + f for f in frames.split(b"top - ") if f.strip()]
        if not self.headers or not self.listings or not self.logs or not self.top_frames:
            raise SystemExit("seal.py: this machine lacks the corpus sources (headers in "
                             "/usr/include, logs in /var/log, ls/ps/top)")
        log(f"corpus: {len(self.headers)} source files, {len(self.logs)} logs, "
            f"{len(self.listings)} listings, {len(self.man)} man pages, "
            f"git log -p {len(self.git) // 1024} KiB")

    @staticmethod
    def read(path, limit=4 * MiB):
        try:
            with open(path, "rb") as f:
                return f.read(limit)
        except OSError:
            return b""

    def source_file(self):
        path = self.rng.choice(self.headers)
        return path, self.read(path)

    def lines_slice(self, data, n):
        lines = data.splitlines(keepends=True)
        if len(lines) <= n:
            return b"".join(lines)
        start = self.rng.randrange(len(lines) - n)
        return b"".join(lines[start:start + n])


class Activity:
    """One command: the line typed, the program run, and what happened."""

    def __init__(self, line, events, category, argv=None):
        self.line = line
        self.argv = argv or shlex.split(line.split("|")[0])
        self.events = events  # [("in"|"out", bytes)]
        self.category = category


def pager(rng, text, screens):
    """less: the first screen, then a screen per space, then q."""
    lines = onlcr(text).split(b"\r\n")
    out = [("out", b"\x1b[?1049h\x1b[22;0;0t\x1b[?1h\x1b=\r")]
    pos = 0
    for i in range(screens):
        page = lines[pos:pos + ROWS - 1]
        if not page:
            break
        if i:
            out.append(("in", b" "))
        out.append(("out", b"".join(b"\r\x1b[K" + ln + b"\r\n" for ln in page) +
                    b"\x1b[7m:\x1b[27m\x1b[K"))
        pos += ROWS - 1
    out += [("in", b"q"), ("out", b"\r\x1b[K\x1b[?1l\x1b>\x1b[?1049l\x1b[23;0;0t")]
    return out


def vim(rng, name, text):
    """vim on a file: a full redraw, then cursor moves, scrolling, paging and
    insert-mode typing, each keystroke followed by what vim sends back."""
    lines = text.splitlines() or [b""]
    rows = ROWS - 1
    top, row = 0, 1

    def status(r):
        return f"\x1b[{ROWS};{COLS - 18}H{top + r},1".ljust(12).encode() + b"\x1b[K"

    def redraw():
        body = [b"\x1b[?25l\x1b[H\x1b[2J"]
        for r in range(rows):
            n = top + r
            body.append(f"\x1b[{r + 1};1H".encode())
            if n < len(lines):
                body.append(f"\x1b[33m{n + 1:4d} \x1b[m".encode() + highlight(lines[n]))
            else:
                body.append(b"\x1b[94m~\x1b[m")
            body.append(b"\x1b[K")
        body.append(f"\x1b[{ROWS};1H\"{name}\" {len(lines)}L, {len(text)}B".encode())
        body.append(status(row) + f"\x1b[{row};6H\x1b[?25h".encode())
        return b"".join(body)

    ev = [("out", b"\x1b[?1049h\x1b[>4;2m\x1b[?1h\x1b=\x1b[?2004h\x1b[1;40r\x1b[?12h"
           b"\x1b[?12l\x1b[22;2t\x1b[22;1t\x1b[27m\x1b[23m\x1b[29m\x1b[m\x1b[H\x1b[2J"),
          ("out", redraw())]
    for _ in range(rng.randint(20, 120)):
        r = rng.random()
        if r < 0.55:  # j / k
            key = rng.choice([b"j", b"j", b"j", b"k"])
            if key == b"j" and row == rows and top + rows < len(lines):
                top += 1
                n = top + rows - 1
                ev += [("in", key), ("out", b"\x1b[?25l\x1b[1;39r\x1b[39;1H\n\x1b[1;40r" +
                                     f"\x1b[39;1H\x1b[33m{n + 1:4d} \x1b[m".encode() +
                                     highlight(lines[n]) + status(row) +
                                     f"\x1b[{row};6H\x1b[?25h".encode())]
            else:
                row = min(rows, row + 1) if key == b"j" else max(1, row - 1)
                ev += [("in", key), ("out", b"\x1b[?25l" + status(row) +
                                     f"\x1b[{row};6H\x1b[?25h".encode())]
        elif r < 0.75:  # ctrl-f / ctrl-b: a page, a full redraw
            key = rng.choice([b"\x06", b"\x06", b"\x02"])
            top = (min(max(0, len(lines) - rows), top + rows - 2) if key == b"\x06"
                   else max(0, top - rows + 2))
            ev += [("in", key), ("out", redraw())]
        else:  # insert a few words
            ev += [("in", b"i"), ("out", b"\x1b[?25l" + f"\x1b[{ROWS};1H\x1b[1m-- INSERT --"
                                  "\x1b[m\x1b[K".encode() + status(row) +
                                  f"\x1b[{row};6H\x1b[?25h".encode())]
            for ch in rng.choice([b"fixme ", b"return 0;", b"TODO: check this", b"x = 1"]):
                c = bytes([ch])
                ev += [("in", c), ("out", b"\x1b[?25l" + c + status(row) +
                                   f"\x1b[{row};8H\x1b[?25h".encode())]
            ev += [("in", b"\x1b"), ("out", f"\x1b[{ROWS};1H\x1b[K".encode() + status(row) +
                                     f"\x1b[{row};6H".encode())]
    ev += [("in", b":"), ("out", f"\x1b[{ROWS};1H\x1b[K:".encode())]
    for ch in b"q!\r":
        ev.append(("in", bytes([ch])))
        ev.append(("out", bytes([ch]) if ch != 13 else b"\r"))
    ev.append(("out", b"\x1b[?2004l\x1b[?1l\x1b>\x1b[?1049l\x1b[23;2t\x1b[23;1t"))
    return ev


def top_interactive(rng, frames):
    """top: a full screen every 3 s for a while, then q."""
    ev = [("out", b"\x1b[?1049h\x1b[?1h\x1b=\x1b[?25l\x1b[H\x1b[2J")]
    for _ in range(rng.randint(5, 40)):
        f = rng.choice(frames).splitlines()[:ROWS]
        scr = b"\x1b[H" + b"".join(
            (b"\x1b[7m" + ln + b"\x1b[m" if ln.lstrip().startswith(b"PID") else ln) +
            b"\x1b[K\r\n" for ln in f) + b"\x1b[J"
        ev.append(("out", scr))
    ev += [("in", b"q"), ("out", b"\x1b[?25h\x1b[?1l\x1b>\x1b[?1049l")]
    return ev


def pick_activity(src, rng, category):
    out = lambda data: [("out", onlcr(data))]  # noqa: E731
    if category == "source":
        r = rng.random()
        if r < 0.7:
            path, data = src.source_file()
            return Activity(f"cat {path}", out(data), category)
        if r < 0.85 and src.git:
            return Activity("git log -p --color=always | head -n 2000",
                            out(src.lines_slice(src.git, 2000)), category)
        return Activity("grep -rn --color=always struct /usr/include/linux | head -n 500",
                        out(src.lines_slice(src.grep, 500)), category)
    if category == "logs":
        name = rng.choice(sorted(src.logs))
        data = src.logs[name]
        shown = "sudo dmesg" if name == "dmesg" else name
        r = rng.random()
        if r < 0.4:
            n = rng.choice([50, 200, 1000])
            return Activity(f"tail -n {n} {shown}" if name != "dmesg" else "sudo dmesg",
                            out(src.lines_slice(data, n)), category)
        if r < 0.7:
            word = rng.choice([b"install", b"status", b"error", b"usb", b"Setting", b"net"])
            lines = [re.sub(rb"(?i)" + word, lambda m: b"\x1b[01;31m\x1b[K" + m.group(0) +
                            b"\x1b[m\x1b[K", ln)
                     for ln in data.splitlines(keepends=True) if word.lower() in ln.lower()]
            text = b"".join(lines[:rng.choice([100, 500, 2000])])
            return Activity(f"grep --color=always -i {word.decode()} {shown}", out(text),
                            category)
        return Activity(f"less {shown}", pager(rng, src.lines_slice(data, 2000),
                                               rng.randint(3, 30)), category)
    if category == "listings":
        cmd = rng.choice(sorted(src.listings))
        return Activity(cmd, out(src.listings[cmd]), category)
    if category == "man" and src.man:
        page = rng.choice(sorted(src.man))
        return Activity(f"man {page}", pager(rng, src.man[page], rng.randint(2, 40)), category)
    if category == "screens" or category == "man":
        r = rng.random()
        if r < 0.6:
            path, data = src.source_file()
            return Activity(f"vim {path}", vim(rng, os.path.basename(path), data), category)
        if r < 0.8:
            return Activity("top", top_interactive(rng, src.top_frames), category)
        name = rng.choice(sorted(src.logs))
        return Activity(f"less {name}", pager(rng, src.lines_slice(src.logs[name], 3000),
                                              rng.randint(5, 60)), category)
    raise ValueError(category)


def keystrokes(rng, text):
    """Typed input as sshd writes it to the pty: mostly a byte per write,
    sometimes a few (fast typing, a paste)."""
    out, i = [], 0
    while i < len(text):
        r = rng.random()
        n = 1 if r < 0.7 else rng.randint(2, 3) if r < 0.9 else rng.randint(4, 10)
        out.append(text[i:i + n])
        i += n
    return out


def build_corpus(args, src_rng, tmp):
    """Writes corpus.bin and plan.txt; returns a summary dict."""
    rng = random.Random(args.seed)
    src = Sources(src_rng)
    corpus_path = os.path.join(tmp, "corpus.bin")
    plan_path = os.path.join(tmp, "plan.txt")
    budget = args.size_mib * MiB // args.sessions
    cat_bytes = {c: 0 for c in SHARES}
    summary = {"sessions": args.sessions, "commands": 0, "in_bytes": 0, "echo_bytes": 0,
               "out_bytes": 0, "in_writes": 0, "echo_writes": 0, "out_bursts": 0,
               "bulk_bytes": 0, "bulk_bursts": 0,
               "category_bytes": cat_bytes}

    def session_blocks(sid):
        """Yields the plan lines + bytes of one session, a command at a time."""
        shell = 50000 + sid * 100
        pid = shell
        size = 0
        yield [f"S {sid} {sid % 64}"], [b"\x1b]0;alice@bastion: ~\x07" + PROMPT]
        while size < budget:
            # the category furthest below its share of output bytes
            total = sum(cat_bytes.values()) or 1
            category = min(SHARES, key=lambda c: cat_bytes[c] / total - SHARES[c])
            act = pick_activity(src, rng, category)
            pid += 1
            lines, chunks = [], []
            for k in keystrokes(rng, act.line.encode() + b"\r"):
                echo = k.replace(b"\r", b"\r\n")
                lines += [f"I {sid} {len(k)}", f"K {sid} {len(echo)}"]
                chunks += [k, echo]
            argv = b"\0".join(a.encode() for a in act.argv) + b"\0"
            path = shutil.which(act.argv[0]) or f"/usr/bin/{act.argv[0]}"
            lines.append(f"X {sid} {pid} {shell} {path} {argv.hex()}")
            for kind, data in act.events + [("out", PROMPT)]:
                if not data:
                    continue
                lines.append(f"{'I' if kind == 'in' else 'O'} {sid} {len(data)}")
                chunks.append(data)
                if kind == "out" and data is not PROMPT:
                    cat_bytes[act.category] += len(data)
            # the exit comes before the prompt in a real session; the bytes do not care
            lines.insert(len(lines) - 1, f"Q {sid} {pid} 0")
            size += sum(len(c) for c in chunks)
            summary["commands"] += 1
            yield lines, chunks
        yield [f"E {sid} 0"], [b"logout\r\n"]

    log(f"corpus: {args.sessions} sessions of ~{budget / MiB:.1f} MiB, "
        f"{args.concurrent} at a time")
    with open(corpus_path, "wb") as cf, open(plan_path, "w") as pf:
        pf.write(f"# seal.py corpus: seed {args.seed}, {args.sessions} sessions\n")
        pending = list(range(args.sessions))
        active = []
        while pending or active:
            while pending and len(active) < args.concurrent:
                active.append(session_blocks(pending.pop(0)))
            gen = active[rng.randrange(len(active))]
            try:
                lines, chunks = next(gen)
            except StopIteration:
                active.remove(gen)
                continue
            # the logout echo belongs to the end record's session: write it first
            if lines[0].startswith("E"):
                sid = lines[0].split()[1]
                pf.write(f"O {sid} {len(chunks[0])}\n{lines[0]}\n")
                cf.write(chunks[0])
                summary["out_bytes"] += len(chunks[0])
                summary["out_bursts"] += 1
                continue
            if lines[0].startswith("S"):
                sid = lines[0].split()[1]
                pf.write(f"{lines[0]}\nO {sid} {len(chunks[0])}\n")
                cf.write(chunks[0])
                summary["out_bytes"] += len(chunks[0])
                summary["out_bursts"] += 1
                continue
            data_lines = [ln for ln in lines if ln[0] in "IKO"]
            assert len(data_lines) == len(chunks)
            for ln, c in zip(data_lines, chunks):
                assert int(ln.split()[2]) == len(c), (ln, len(c))
                if ln[0] == "I":
                    summary["in_bytes"] += len(c)
                    summary["in_writes"] += 1
                elif ln[0] == "K":
                    summary["echo_bytes"] += len(c)
                    summary["echo_writes"] += 1
                else:
                    summary["out_bytes"] += len(c)
                    summary["out_bursts"] += 1
                    if len(c) >= BULK_MIN:
                        summary["bulk_bytes"] += len(c)
                        summary["bulk_bursts"] += 1
            pf.write("\n".join(lines) + "\n")
            cf.write(b"".join(chunks))
    summary["raw_bytes"] = summary["in_bytes"] + summary["echo_bytes"] + summary["out_bytes"]
    summary["corpus"], summary["plan"] = corpus_path, plan_path
    return summary


# --------------------------------------------------------------------------
# measuring
# --------------------------------------------------------------------------

def cpu_times():
    """{cpu: (busy, total)} jiffies from /proc/stat."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            m = re.match(r"cpu(\d+) (.*)", line)
            if m:
                v = [int(x) for x in m.group(2).split()[:8]]
                out[int(m.group(1))] = (sum(v) - v[3] - v[4], sum(v))
    return out


def idlest_cpu(interval):
    """(cpu, busy fraction) of the least busy CPU we may run on."""
    allowed = os.sched_getaffinity(0)
    a = cpu_times()
    time.sleep(interval)
    b = cpu_times()
    busy = {c: (b[c][0] - a[c][0]) / max(1, b[c][1] - a[c][1]) for c in a if c in allowed}
    cpu = min(busy, key=busy.get)
    return cpu, busy[cpu], sum(busy.values()) / len(busy)


class Timed:
    """Runs a command pinned to one CPU; wall and CPU seconds of the child."""

    def __init__(self, argv, cpu, **kw):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        self.p = subprocess.run(argv, capture_output=True, text=True,
                                preexec_fn=lambda: os.sched_setaffinity(0, {cpu}), **kw)
        self.wall = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.user = r1.ru_utime - r0.ru_utime
        self.sys = r1.ru_stime - r0.ru_stime
        self.cpu = self.user + self.sys
        if self.p.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: exit {self.p.returncode}: "
                               f"{self.p.stderr.strip()[-500:]}")


def drop_from_cache(paths):
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def openssl_speed(cpu, seconds):
    t = Timed(["openssl", "speed", "-evp", "aes-256-gcm", "-bytes", "16384", "-seconds",
               str(seconds)], cpu)
    m = re.search(r"^AES-256-GCM\s+([\d.]+)k", t.p.stdout, re.M | re.I)
    if not m:
        raise RuntimeError(f"openssl speed: no AES-256-GCM line in {t.p.stdout[-300:]!r}")
    return float(m.group(1)) * 1000 / MB


def zstd_bench(cpu, path, block):
    t = Timed(["zstd", "-b1", f"-B{block}", "-i3", path], cpu)
    text = (t.p.stdout + t.p.stderr).replace("\r", "\n")
    m = re.findall(r"(\d+) ->\s+(\d+) \(x?([\d.]+)\),\s+([\d.]+) MB/s", text)
    if not m:
        raise RuntimeError(f"zstd -b: cannot read {text[-300:]!r}")
    raw, packed, _, speed = m[-1]
    return float(speed), int(packed) / int(raw)


def hash_rate(cpu, argv, paths, nbytes):
    """MB/s (wall, cpu) of a hashing command over files already in the cache."""
    t = Timed(argv + paths, cpu)
    return nbytes / MB / t.wall, nbytes / MB / max(t.cpu, 1e-9)


class Bench:
    def __init__(self, args):
        self.args = args
        self.build = os.path.abspath(args.build)
        self.stack = contextlib.ExitStack()
        self.tmp = None
        self.notes = []
        self.waited = 0.0
        self.samples = []  # seal + verify, per chunk size
        self.refs = []  # physical limits, per round
        self.corpus = None

    def __enter__(self):
        wait_bench_lock(self.stack, self.args.lock_wait, "seal.py")
        for d in glob.glob(f"/tmp/{TMP_PREFIX}*"):  # SIGKILLed earlier runs (we hold the lock)
            shutil.rmtree(d, ignore_errors=True)
        self.tmp = tempfile.mkdtemp(prefix=TMP_PREFIX, dir="/tmp")
        self.stack.callback(shutil.rmtree, self.tmp, ignore_errors=True)
        return self

    def __exit__(self, *exc):
        self.stack.close()
        return False

    def note(self, msg):
        log("NOTE: " + msg)
        self.notes.append(msg)

    def gate(self, what):
        """Wait (bounded) until one CPU is idle; returns (cpu, quiet)."""
        if self.args.cpu >= 0:
            return self.args.cpu, True
        budget = max(0.0, self.args.quiet_budget - self.waited)
        t0 = time.monotonic()
        deadline = t0 + min(self.args.quiet_wait, budget)
        said = 0.0
        while True:
            cpu, busy, _ = idlest_cpu(0.5)
            if busy <= self.args.busy_max:
                self.waited += time.monotonic() - t0
                return cpu, True
            if time.monotonic() >= deadline:
                self.waited += time.monotonic() - t0
                self.note(f"{what}: measured anyway after waiting {time.monotonic() - t0:.0f} s:"
                          f" the idlest CPU ({cpu}) was {busy:.0%} busy with other work")
                return cpu, False
            if time.monotonic() - said > 15:
                log(f"waiting for a quiet CPU: the idlest ({cpu}) is {busy:.0%} busy")
                said = time.monotonic()

    def check_cpu(self, what, s, cpu_s, wall_s):
        """Flag a sample whose process was off its CPU much of the time: others
        ran there (the wait before a sample cannot promise the CPU stays idle)."""
        if cpu_s < self.args.oncpu_min * wall_s:
            s["quiet"] = False
            self.note(f"{what}: on CPU only {cpu_s / wall_s:.0%} of the wall time "
                      f"({cpu_s:.2f} of {wall_s:.2f} s): other work shared the CPU")

    def make_corpus(self):
        a = self.args
        where = a.keep or self.tmp
        os.makedirs(where, exist_ok=True)
        meta = os.path.join(where, "corpus.json")
        key = {"size_mib": a.size_mib, "sessions": a.sessions, "concurrent": a.concurrent,
               "seed": a.seed, "version": 3}
        if a.keep and os.path.exists(meta):
            with open(meta) as f:
                old = json.load(f)
            if old.get("key") == key and os.path.exists(old["corpus"]):
                log(f"corpus: reusing {old['corpus']}")
                self.corpus = old
                return
        t0 = time.monotonic()
        self.corpus = build_corpus(a, random.Random(a.seed + 1), where)
        self.corpus["key"] = key
        self.corpus["build_s"] = time.monotonic() - t0
        with open(meta, "w") as f:
            json.dump(self.corpus, f, indent=1)
        log(f"corpus: {self.corpus['raw_bytes'] / MiB:.1f} MiB in "
            f"{self.corpus['build_s']:.0f} s")

    def seal_sample(self, rnd, chunk, mode):
        a, c = self.args, self.corpus
        s = {"round": rnd + 1, "chunk": chunk, "mode": mode}
        what = f"round {rnd + 1} {chunk // 1024} KiB {mode}"
        cpu, s["quiet"] = self.gate(what)
        s["cpu"] = cpu
        store = os.path.join(self.tmp, "store")
        shutil.rmtree(store, ignore_errors=True)
        t = Timed([os.path.join(self.build, "seal-bench"), "--plan", c["plan"], "--corpus",
                   c["corpus"], "--store", store, "--chunk", str(chunk), "--cpu", str(cpu),
                   # 4 KiB records: the daemon before coalescing, a record per write
                   "--keys-per-record", "1" if chunk <= 4096 else "7",
                   "--tick-ms", str(a.tick_ms)] +
                  (["--min-output", str(BULK_MIN)] if mode == "bulk" else []) +
                  (["--no-input"] if mode == "output" else []), cpu)
        s.update(json.loads(t.p.stdout))
        want = {"bulk": c["bulk_bytes"],
                "output": c["raw_bytes"] - c["in_bytes"]}.get(mode, c["raw_bytes"])
        if s["raw_bytes"] != want:
            raise RuntimeError(f"seal-bench replayed {s['raw_bytes']} bytes, {want} expected")
        self.check_cpu(what + " seal-bench", s, s["cpu_s"], s["wall_s"])
        s["seal_mbps_wall"] = s["raw_bytes"] / MB / s["wall_s"]
        s["seal_mbps_cpu"] = s["raw_bytes"] / MB / s["cpu_s"]
        s["ratio_segments"] = s["segment_bytes"] / s["raw_bytes"]
        s["ratio_store"] = s["store_bytes"] / s["raw_bytes"]
        segs = sorted(glob.glob(os.path.join(store, "segments", "seg-*.log")))
        for label, cold in (("warm", False), ("cold", True)):
            if cold:
                drop_from_cache(segs)
            v = Timed([os.path.join(self.build, "sealtrail"), "--store", store, "--json",
                       "verify"], cpu)
            res = json.loads(v.p.stdout)
            if not cold:
                self.check_cpu(what + " verify", s, v.cpu, v.wall)
            if not res.get("ok") or res.get("records") != s["records"]:
                raise RuntimeError(f"verify ({label}): {v.p.stdout.strip()} "
                                   f"(seal-bench wrote {s['records']} records)")
            s[f"verify_{label}_wall_s"] = v.wall
            s[f"verify_{label}_cpu_s"] = v.cpu
            s[f"verify_{label}_gbps_wall"] = s["segment_bytes"] / 1e9 / v.wall
            s[f"verify_{label}_gbps_cpu"] = s["segment_bytes"] / 1e9 / max(v.cpu, 1e-9)
        s["verify_epochs"] = res["epochs"]
        self.samples.append(s)
        log(f"{what}: seal {s['seal_mbps_wall']:.0f} MB/s wall, "
            f"{s['seal_mbps_cpu']:.0f} MB/s CPU; verify "
            f"{s['verify_warm_gbps_wall']:.2f} GB/s warm, {s['verify_cold_gbps_wall']:.2f} cold;"
            f" stored/raw {s['ratio_segments']:.3f} (segments) "
            f"{s['ratio_store']:.3f} (store) on CPU {cpu}{'' if s['quiet'] else ' *'}")
        return store, segs, s

    def ref_sample(self, rnd, segs, seg_bytes):
        a, c = self.args, self.corpus
        r = {"round": rnd + 1}
        cpu, r["quiet"] = self.gate(f"round {rnd + 1} physical limits")
        r["cpu"] = cpu
        r["aes_gcm_mbps"] = openssl_speed(cpu, a.openssl_seconds)
        # from the page cache, as the store's bytes were for seal-bench and verify
        subprocess.run(["cat", c["corpus"]] + segs, stdout=subprocess.DEVNULL, check=True)
        raw = c["raw_bytes"]
        r["sha256sum_raw_mbps"], r["sha256sum_raw_mbps_cpu"] = hash_rate(
            cpu, ["sha256sum"], [c["corpus"]], raw)
        r["dgst_raw_mbps"], r["dgst_raw_mbps_cpu"] = hash_rate(
            cpu, ["openssl", "dgst", "-sha256"], [c["corpus"]], raw)
        r["sha256sum_stored_mbps"], r["sha256sum_stored_mbps_cpu"] = hash_rate(
            cpu, ["sha256sum"], segs, seg_bytes)
        r["dgst_stored_mbps"], r["dgst_stored_mbps_cpu"] = hash_rate(
            cpu, ["openssl", "dgst", "-sha256"], segs, seg_bytes)
        if shutil.which("zstd"):
            for chunk in a.chunks:
                r[f"zstd_mbps_{chunk}"], r[f"zstd_ratio_{chunk}"] = zstd_bench(
                    cpu, c["corpus"], chunk)
        self.refs.append(r)
        log(f"round {rnd + 1} limits: aes-256-gcm {r['aes_gcm_mbps']:.0f} MB/s, sha256sum "
            f"{r['sha256sum_raw_mbps']:.0f} MB/s, openssl dgst -sha256 "
            f"{r['dgst_raw_mbps']:.0f} MB/s on CPU {cpu}")

    def run(self):
        self.make_corpus()
        configs = [(chunk, mode) for chunk in self.args.chunks for mode in self.args.modes]
        keep = os.path.join(self.tmp, "ref-store")
        for rnd in range(self.args.rounds):
            segs = seg_bytes = None
            for chunk, mode in rotate(configs, rnd):
                store, s_segs, s = self.seal_sample(rnd, chunk, mode)
                if (chunk, mode) == configs[0]:
                    # hash the same bytes verify read, then let the store go
                    shutil.rmtree(keep, ignore_errors=True)
                    os.rename(store, keep)
                    segs = [os.path.join(keep, "segments", os.path.basename(p))
                            for p in s_segs]
                    seg_bytes = s["segment_bytes"]
                else:
                    shutil.rmtree(store, ignore_errors=True)
            self.ref_sample(rnd, segs, seg_bytes)
            shutil.rmtree(keep, ignore_errors=True)


MODE_NAMES = {"mix": "session mix", "output": "terminal output", "bulk": "bulk output"}


def report(bench, header):
    a, c = bench.args, bench.corpus
    out = [header, ""]

    def mark(x):
        return "" if x.get("quiet", True) else "*"

    def cell(ss, key, nd):
        vals = [s.get(key) for s in ss]
        return (f"{fmt(median(vals), nd)} (" +
                " ".join(fmt(s.get(key), nd) + mark(s) for s in ss) + ")")

    rf = bench.refs
    aes = median([r["aes_gcm_mbps"] for r in rf])
    dgst_st = median([r["dgst_stored_mbps"] for r in rf])
    rows, det, checks = [], [], []
    for chunk in a.chunks:
        for mode in a.modes:
            ss = [s for s in bench.samples if s["chunk"] == chunk and s["mode"] == mode]
            if not ss:
                continue
            name = f"{chunk // 1024} KiB, {MODE_NAMES[mode]}"
            seal_w = median([s["seal_mbps_wall"] for s in ss])
            seal_c = median([s["seal_mbps_cpu"] for s in ss])
            ver_w = median([s["verify_warm_gbps_wall"] for s in ss])
            ratio = median([s["ratio_segments"] for s in ss])
            ratio_all = median([s["ratio_store"] for s in ss])
            rows.append([name, cell(ss, "seal_mbps_wall", 0), cell(ss, "seal_mbps_cpu", 0),
                         cell(ss, "verify_warm_gbps_wall", 2),
                         cell(ss, "verify_warm_gbps_cpu", 2),
                         cell(ss, "verify_cold_gbps_wall", 2),
                         fmt(ratio, 3), fmt(ratio_all, 3)])
            s0 = ss[0]

            def med(key):
                return median([s[key] for s in ss])
            typed = s0["sealed_in"] + s0["sealed_echo"]
            det.append([
                name, s0["records"], f"{s0['tty_in_records']} / {s0['tty_echo_records']} / "
                f"{s0['tty_out_records']}",
                fmt(med("wall_s"), 2), f"{fmt(med('user_s'), 2)} / {fmt(med('sys_s'), 2)}",
                f"{fmt(med('sync_s'), 2)} ({s0['syncs']})",
                f"{fmt(med('seal_s'), 2)} ({s0['epochs']})",
                fmt(med("wall_s") / s0["records"] * 1e6, 2),
                fmt(s0["sealed_out"] / s0["raw_out"], 3),
                f"{typed} ({typed / s0['raw_bytes']:.3f})",
                f"{s0['sealed_other'] + s0['sealed_epochs']} "
                f"({(s0['sealed_other'] + s0['sealed_epochs']) / s0['raw_bytes']:.3f})",
                f"{s0['index_bytes']} ({s0['index_bytes'] / s0['raw_bytes']:.3f})",
            ])
            checks.append((f"{name}: sealing >= {SEAL_TARGET:.0f} MB/s of raw bytes on one core "
                           f"(median {fmt(seal_w, 0)} wall, {fmt(seal_c, 0)} by CPU time)",
                           seal_w is not None and seal_w >= SEAL_TARGET))
            checks.append((f"{name}: verify >= {VERIFY_TARGET:.0f} GB/s of stored bytes "
                           f"(median {fmt(ver_w, 2)}, warm cache)",
                           ver_w is not None and ver_w >= VERIFY_TARGET))
            if mode == "mix":
                checks.append((f"{name}: stored / raw <= {RATIO_TARGET} (median "
                               f"{fmt(ratio, 3)} segments, {fmt(ratio_all, 3)} with the index)",
                               ratio is not None and ratio <= RATIO_TARGET))
    out.append(table(["records, corpus", "sealing MB/s raw (wall)", "sealing MB/s raw (CPU)",
                      "verify GB/s stored (warm, wall)", "verify GB/s (warm, CPU)",
                      "verify GB/s (cold, wall)", "stored / raw (segments)",
                      "stored / raw (store dir)"], rows))
    out.append("")
    out.append(f"targets: sealing >= {SEAL_TARGET:.0f} MB/s, verify >= {VERIFY_TARGET:.0f} "
               f"GB/s, stored / raw <= {RATIO_TARGET}; cells: median (samples in round order)")
    out.append("")

    lim = [["openssl speed -evp aes-256-gcm -bytes 16384", "MB/s", fmt(aes),
            " ".join(fmt(r["aes_gcm_mbps"], 0) + mark(r) for r in rf)]]
    for key, what in (("sha256sum_raw_mbps", "sha256sum of the corpus (raw bytes)"),
                      ("dgst_raw_mbps", "openssl dgst -sha256 of the corpus"),
                      ("sha256sum_stored_mbps",
                       f"sha256sum of the {a.chunks[0] // 1024} KiB {MODE_NAMES[a.modes[0]]} "
                       "store's segments (stored bytes)"),
                      ("dgst_stored_mbps", "openssl dgst -sha256 of those segments")):
        lim.append([what, "MB/s", fmt(median([r[key] for r in rf])),
                    " ".join(fmt(r[key], 0) + mark(r) for r in rf)])
    for chunk in a.chunks:
        if f"zstd_mbps_{chunk}" in (rf[0] if rf else {}):
            lim.append([f"zstd -b1 -B{chunk} of the corpus (level 1, independent "
                        f"{chunk // 1024} KiB blocks)", "MB/s",
                        fmt(median([r[f"zstd_mbps_{chunk}"] for r in rf])),
                        " ".join(fmt(r[f"zstd_mbps_{chunk}"], 0) + mark(r) for r in rf)])
            lim.append(["  its compressed / raw", "ratio",
                        fmt(median([r[f"zstd_ratio_{chunk}"] for r in rf]), 3), ""])
    for chunk in a.chunks:
        ss = [s for s in bench.samples if s["chunk"] == chunk and s["mode"] == a.modes[0]]
        ratio = median([s["ratio_segments"] for s in ss])
        if aes and dgst_st and ratio:
            lim.append([f"AES-GCM + SHA-256 alone over the {chunk // 1024} KiB "
                        f"{MODE_NAMES[a.modes[0]]} store's bytes, per raw byte", "MB/s raw",
                        fmt(1 / (ratio / aes + ratio / dgst_st)), ""])
    out.append(table(["physical limits, same CPU, same run", "unit", "median",
                      "samples (round order)"], lim))
    out.append("")
    out.append(table(["records, corpus", "records (all)", "tty in / echo / out records",
                      "seal wall s", "CPU s user / sys", "store_sync s (calls)",
                      "store_seal_epoch s (calls)", "us per record (wall)",
                      "output: sealed / raw", "typed + echo sealed B (/ raw)",
                      "other records B (/ raw)", "index B (/ raw)"], det))
    out.append("")
    cb = c["category_bytes"]
    tot = sum(cb.values()) or 1
    out.append(
        f"corpus: {c['raw_bytes']} bytes ({c['raw_bytes'] / MiB:.1f} MiB) of terminal I/O, "
        f"{c['sessions']} sessions ({a.concurrent} at a time), {c['commands']} commands; "
        f"typed {c['in_bytes']} bytes in {c['in_writes']} writes and their echo "
        f"{c['echo_bytes']} bytes ({(c['in_bytes'] + c['echo_bytes']) / c['raw_bytes']:.2%} "
        f"of the bytes); other output {c['out_bytes']} bytes in {c['out_bursts']} bursts, "
        "by source: " + ", ".join(f"{k} {v / tot:.0%}" for k, v in cb.items()) + ". "
        "\"terminal output\" replays the mix without what was typed (its echo, all "
        "output, prompts, exec and exit records stay): the sealing target's \"terminal "
        "output\"; typing makes records at human speed, a few per second per session. "
        f"\"bulk output\" replays only the output writes of at least {BULK_MIN} bytes "
        f"({c['bulk_bytes']} bytes in {c['bulk_bursts']} writes: cat, ls, logs, full-screen "
        "redraws) and the session start and end records.")
    out.append(
        "MB/s = 10^6 B/s. Sealing wall = seal-bench's append+sync loop pinned to one CPU, "
        "first record to last epoch (store creation and close excluded); CPU = that "
        "process's user+system time in it. Verify = the whole `sealtrail --store DIR --json "
        "verify` process, pinned to the same CPU; cold = segments dropped from the page "
        "cache first. Stored bytes = segment files; store dir adds the SQLite index and "
        "keys. * = sample not taken on a quiet CPU (see notes).")
    out.append("")
    for what, ok in checks:
        out.append(f"- {'MET' if ok else 'MISSED'}: {what}")
    noisy = [s for s in bench.samples + bench.refs if not s.get("quiet", True)]
    if noisy:
        out.append(f"- {len(noisy)} samples were taken on a CPU that was not quiet "
                   "(marked *, see notes)")
    if bench.waited >= 1:
        out.append(f"- waited {bench.waited:.0f} s in total for a quiet CPU")
    if bench.notes:
        out += ["", "notes:"] + [f"- {n}" for n in bench.notes]
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--size-mib", type=int, default=256,
                    help="raw terminal bytes of the corpus (default 256)")
    ap.add_argument("--sessions", type=int, default=32)
    ap.add_argument("--concurrent", type=int, default=4,
                    help="sessions open at a time, their commands interleaved (default 4)")
    ap.add_argument("--chunks", default="65536,4096",
                    help="record sizes for terminal output, comma-separated (default "
                         "65536,4096: the coalescing daemon, and the 4 KiB events of before)")
    ap.add_argument("--modes", default="mix,output,bulk",
                    help="mix: the whole session mix; output: all of it but the typed "
                         "input; bulk: only its output writes of at least "
                         f"{BULK_MIN} bytes (default: all three)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--tick-ms", type=int, default=200,
                    help="store_sync period, as the daemon's TICK_NS (default 200)")
    ap.add_argument("--openssl-seconds", type=int, default=3)
    ap.add_argument("--cpu", type=int, default=-1,
                    help="pin everything to this CPU (default: the idlest, per sample)")
    ap.add_argument("--keep", metavar="DIR",
                    help="build the corpus in DIR and keep it (reused while the corpus "
                         "options are the same)")
    ap.add_argument("--json", help="also write every sample to this file")
    ap.add_argument("--quiet-wait", type=float, default=60,
                    help="seconds to wait, per sample, for an idle CPU (default 60)")
    ap.add_argument("--quiet-budget", type=float, default=600,
                    help="total seconds the run may wait for an idle CPU (default 600)")
    ap.add_argument("--busy-max", type=float, default=0.10,
                    help="busy fraction of the idlest CPU above which it is not quiet "
                         "(default 0.10)")
    ap.add_argument("--oncpu-min", type=float, default=0.80,
                    help="flag a sample whose CPU time is below this fraction of its wall "
                         "time (default 0.80)")
    ap.add_argument("--lock-wait", type=float, default=1800,
                    help="seconds to wait for another benchmark's lock on tools/bench")
    args = ap.parse_args()
    try:
        args.chunks = [int(x, 0) for x in args.chunks.split(",") if x.strip()]
    except ValueError:
        ap.error("--chunks: comma-separated byte counts")
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not args.modes or any(m not in MODE_NAMES for m in args.modes):
        ap.error(f"--modes: choose from {', '.join(MODE_NAMES)}")
    if not args.chunks or min(args.chunks) <= 0 or max(args.chunks) > 1 << 20:
        ap.error("--chunks: sizes between 1 and 1048576")
    if args.size_mib <= 0 or args.rounds <= 0 or args.sessions <= 0 or args.concurrent <= 0:
        ap.error("--size-mib, --rounds, --sessions and --concurrent must be positive")
    for b in ("seal-bench", "sealtrail"):
        if not os.access(os.path.join(args.build, b), os.X_OK):
            sys.exit(f"seal.py: {args.build}/{b} missing: run `make {args.build}/seal-bench "
                     f"{args.build}/sealtrail` first")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    started = time.time()
    ossl = subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout.strip()
    model = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                     "?")
    header = (f"sealing benchmark {time.strftime('%Y-%m-%d %H:%M:%S %Z')}: "
              f"{os.cpu_count()} CPUs ({model}), kernel {platform.release()}, {ossl}, "
              f"command: {' '.join([sys.executable] + sys.argv)}")
    rev = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                         capture_output=True, text=True).stdout.strip()
    header += f", tree {rev or '?'}"
    with Bench(args) as bench:
        try:
            bench.run()
        finally:
            if bench.samples:
                text = report(bench, header)
                print("\n" + text)
            print(f"\ntotal {time.time() - started:.0f} s")
            if args.json:
                with open(args.json, "w") as f:
                    json.dump({"header": header, "corpus": bench.corpus,
                               "samples": bench.samples, "refs": bench.refs,
                               "notes": bench.notes}, f, indent=1, default=str)


if __name__ == "__main__":
    main()
