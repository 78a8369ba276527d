"""Test helpers for sealtrail end-to-end tests: the daemon under test, the
CLI, waiting on conditions with deadlines, and a small test registry.

Tests read like the investigator's story: start sshd and sealtraild, log in,
type, then ask `sealtrail` what it recorded and compare with what the ssh
client really sent and received.
"""

from __future__ import annotations

import calendar
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("SEALTRAIL_BUILD", os.path.join(ROOT, "build"))


class Failure(AssertionError):
    pass


def check(cond, what, **details):
    """Assert with the label and the values that matter printed on failure."""
    if not cond:
        lines = [what] + [f"  {k}: {v!r}"[:2000] for k, v in details.items()]
        raise Failure("\n".join(lines))


def check_eq(got, want, what, **details):
    if got != want:
        lines = [what, f"  got:  {got!r}"[:3000], f"  want: {want!r}"[:3000]]
        lines += [f"  {k}: {v!r}"[:2000] for k, v in details.items()]
        raise Failure("\n".join(lines))


def wait_for(cond, timeout, what, interval=0.05):
    """Poll cond() until it returns a truthy value; fail after timeout s."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise Failure(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def parse_rfc3339(t):
    """Nanoseconds since the epoch of a time as sealtrail prints it
    (2026-11-25T06:56:20.641393695Z)."""
    base, _, frac = t.rstrip("Z").partition(".")
    secs = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
    return secs * 10**9 + int(frac.ljust(9, "0")[:9] or 0)


def client_port(pid):
    """Local TCP port of the established connection of process pid (the
    ssh client), looked up in its own network namespace."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    for table in ("tcp", "tcp6"):
        with open(f"/proc/{pid}/net/{table}") as f:
            next(f)
            for line in f:
                cols = line.split()
                if cols[3] == "01" and cols[9] in inodes:
                    return int(cols[1].split(":")[1], 16)
    return None


SANITIZER = re.compile(r"ERROR: (AddressSanitizer|LeakSanitizer)[^\n]*|[^\n]*runtime error:[^\n]*")
# reports a sanitizer build (make asan) left in this test's logs and stderr
_SANITIZER_REPORTS = []


def sanitizer_check(what, text):
    """Remember a sanitizer report in text: run_tests fails the test with it."""
    m = SANITIZER.search(text or "")
    if m:
        _SANITIZER_REPORTS.append(f"{what}: {m.group(0).strip()}\n"
                                  + text[m.start():m.start() + 3000])


class Daemon:
    """sealtraild on a temporary store, stopped with SIGTERM at the end."""

    def __init__(self, extra=(), store=None, env=None, wrap=()):
        self.workdir = tempfile.mkdtemp(prefix="st-daemon-")
        self.store = store or os.path.join(self.workdir, "store")
        self.log_path = os.path.join(self.workdir, "sealtraild.log")
        self.extra = list(extra)
        # never the system's /run/sealtrail.sock: a test serves one only if it says where
        if not any(a.startswith("--socket") or a == "--no-socket" for a in self.extra):
            self.extra.append("--no-socket")
        self.env = dict(os.environ, **env) if env else None
        self.wrap = list(wrap)  # a command that ends by exec'ing the rest
        self.proc = None

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.close()  # __exit__ is not called when __enter__ raises
            raise
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def start(self):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.wrap + [os.path.join(BUILD, "sealtraild"), "--store", self.store] + self.extra,
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=self.env,
            # its own session, hence its own autogroup, as under systemd:
            # --nice sets the autogroup's nice, which must not reach ours
            start_new_session=True)
        log.close()
        # recording, not merely holding the store ("starting")
        wait_for(lambda: self.status().get("state") == "recording" or
                 self.proc.poll() is not None, 30, "sealtraild to start")
        check(self.proc.poll() is None, "sealtraild exited at start", log=self.log())

    def status(self):
        try:
            with open(os.path.join(self.store, "status.json")) as f:
                st = json.load(f)
            if self.proc and st.get("pid") != self.proc.pid:
                return {}
            return st
        except (OSError, ValueError):
            return {}

    def wait_listener(self, pid, timeout=15):
        wait_for(lambda: pid in self.status().get("listeners", []), timeout,
                 f"sealtraild to follow sshd listener {pid}")

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")[-4000:]

    def stop(self):
        """SIGTERM and wait; returns the exit code."""
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise Failure("sealtraild did not exit within 30 s of SIGTERM")

    def close(self):
        try:
            self.stop()
        finally:
            with contextlib.suppress(OSError), open(self.log_path, "rb") as f:
                sanitizer_check("sealtraild", f.read().decode(errors="replace"))
            shutil.rmtree(self.workdir, ignore_errors=True)

    def cli(self, *args, check_rc=True, binary=False):
        p = subprocess.run([os.path.join(BUILD, "sealtrail"), "--store", self.store] + list(args),
                           capture_output=True, timeout=120)
        sanitizer_check("sealtrail " + " ".join(args), p.stderr.decode(errors="replace"))
        if check_rc:
            check(p.returncode == 0, f"sealtrail {' '.join(args)} failed ({p.returncode})",
                  stderr=p.stderr.decode(errors="replace"))
        if binary:
            return p
        return p.stdout.decode(errors="replace")

    def verify(self, *args, timeout=300):
        """`sealtrail --json verify ARGS`: (exit status, its JSON object or {},
        stderr). A failing verify is for the caller to judge."""
        p = subprocess.run([os.path.join(BUILD, "sealtrail"), "--store", self.store, "--json",
                            "verify", *args], capture_output=True, text=True, timeout=timeout)
        sanitizer_check("sealtrail verify " + " ".join(args), p.stderr)
        try:
            out = json.loads(p.stdout) if p.stdout.strip() else {}
        except ValueError:
            out = {"not_json": p.stdout[-2000:]}
        return p.returncode, out, p.stderr

    def cli_json(self, *args):
        out = self.cli("--json", *args)
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def sessions(self, *args):
        return self.cli_json("sessions", *args)

    def wait_session(self, what, pred, timeout=30):
        """The one session matching pred, once it exists."""
        found = []

        def find():
            found[:] = [s for s in self.sessions() if pred(s)]
            return found[0] if len(found) == 1 else None
        try:
            return wait_for(find, timeout, what)
        except Failure as e:
            raise Failure(f"{e}\n  matching: {found!r}"[:3000]
                          + f"\n  status: {self.status()!r}"[:3000]
                          + f"\n  log: {self.log()[-1500:]!r}") from None

    def session_of_port(self, port, ended=True, timeout=60):
        return self.wait_session(
            f"session from client port {port}{' to end' if ended else ''}",
            lambda s: s["source_port"] == port and (s["end"] is not None or not ended),
            timeout)

    def events(self, sid):
        return self.cli_json("events", sid)

    def export(self, sid, *args):
        return self.cli("export", sid, *args, binary=True).stdout


# ---- registry -----------------------------------------------------------

TESTS = []
_SCRATCH = []


def scratch_dir(prefix, mode=None, parent=None):
    """A temporary directory removed when the running test ends, pass or fail
    (in parent, default the system's temporary directory)."""
    path = tempfile.mkdtemp(prefix=prefix, dir=parent)
    if mode is not None:
        os.chmod(path, mode)
    _SCRATCH.append(path)
    return path


def test(name):
    def register(fn):
        TESTS.append((name, fn))
        return fn
    return register


def run_tests(tests, only=None, prefix=""):
    passed = failed = 0
    for name, fn in tests:
        if only and only not in name:
            continue
        name = prefix + name
        start = time.monotonic()
        _SANITIZER_REPORTS.clear()
        try:
            fn()
            if _SANITIZER_REPORTS:
                raise Failure("\n".join(_SANITIZER_REPORTS))
        except Exception as e:  # a failing test must not stop the suite
            failed += 1
            detail = str(e) if isinstance(e, Failure) else traceback.format_exc()
            print(f"FAIL {name} ({time.monotonic() - start:.1f}s)\n" +
                  "\n".join("    " + line for line in detail.splitlines()), flush=True)
        else:
            passed += 1
            print(f"PASS {name} ({time.monotonic() - start:.1f}s)", flush=True)
        while _SCRATCH:
            shutil.rmtree(_SCRATCH.pop(), ignore_errors=True)
    return passed, failed
