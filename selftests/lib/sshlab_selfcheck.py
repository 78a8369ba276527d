#!/usr/bin/python3
"""Exercise selftests/lib/sshlab.py for real (root only).

Prints one PASS/FAIL line per check and exits non-zero if any check failed.

  (a) UsePAM yes: interactive ``ssh -tt`` login shell on a raw pty, byte-exact
      sent/received, loginuid of the remote bash == the user's uid.
  (b) UsePAM no: the same, loginuid of the remote bash is *not* set by the
      login (inherited from the listener: 4294967295 when unset).
  (c) non-tty ``ssh -T``: exit status and stdout are passed through; the
      sudoers drop-in works (``sudo -n``).
  (d) NetLab: session across two netns, silent drop(), the server-side
      per-connection sshd gives up within 15 s via ClientAlive*, while the
      client (no keepalive) is still hanging and is then killed.
  (f) a child process builds labs and is SIGKILLed (no cleanup at all);
      reap_stale() then removes its orphaned sshds, users, sessions, netns.
  (e) after every lab is closed: no test users, sudoers drop-ins, st- netns,
      listeners, sshd processes or /run/sshd left over (runs last).

Usage: sudo /usr/bin/python3 selftests/lib/sshlab_selfcheck.py
"""

import fcntl
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import sshlab  # noqa: E402
from sshlab import NetLab, PtySession, SshLab  # noqa: E402

# Everything the checks create, for the leak check (e).
CREATED = {
    "users": set(),
    "ports": set(),
    "listeners": set(),
    "netns": set(),
    "workdirs": set(),
}
UIDS = {}  # user name -> uid, remembered for the lastlog check after userdel
RESULTS = []


def uname(letter):
    """Per-process user names, so concurrent runs never share (and delete)
    each other's accounts."""
    return f"stsc{os.getpid()}{letter}"


def check(name):
    def deco(fn):
        def run(*args):
            t0 = time.monotonic()
            try:
                detail = fn(*args)
            except Exception as exc:
                RESULTS.append((name, False))
                print(f"FAIL {name}: {exc.__class__.__name__}: {exc}")
                traceback.print_exc(file=sys.stdout)
            else:
                RESULTS.append((name, True))
                print(f"PASS {name} ({time.monotonic() - t0:.2f}s): {detail}")
            sys.stdout.flush()

        run.__name__ = fn.__name__
        return run

    return deco


def track(lab, *users):
    CREATED["ports"].add(lab.port)
    CREATED["listeners"].add(lab.pid)
    CREATED["workdirs"].add(lab.workdir)
    CREATED["users"].update(u.name for u in users)
    UIDS.update((u.name, u.uid) for u in users)



def lastlog_record(name):
    """Non-zero lastlog bytes for the (deleted) user's uid, or b''."""
    uid, size = UIDS[name], 4 + 32 + 256  # struct lastlog on x86_64
    try:
        with open("/var/log/lastlog", "rb") as f:
            f.seek(uid * size)
            rec = f.read(size)
    except FileNotFoundError:
        return b""
    return rec if any(rec) else b""


def read_loginuid(pid):
    with open(f"/proc/{pid}/loginuid") as f:
        return int(f.read())


def remote_shell(lab, user):
    """The user's login bash, which must descend from this lab's listener."""
    tree = set(sshlab.proc_descendants(lab.pid))
    shells = [p for p in lab.user_processes(user, comm="bash") if p in tree]
    assert len(shells) == 1, f"expected one remote bash, found {shells}"
    return shells[0]


def interactive_roundtrip(lab, user):
    """Log in with a tty, run one command, log out. Returns (loginuid, session)."""
    with PtySession(lab.ssh_argv(user)) as s:
        s.send(b"echo hel''lo\n")
        s.expect(b"hello")
        # The *output* line, not the remote pty echoing our input: the echo
        # contains hel''lo, so a bare "hello" can only come from bash.
        shell = remote_shell(lab, user)
        loginuid = read_loginuid(shell)
        s.send(b"exit\n")
        rc = s.wait_exit(timeout=30)
        assert rc == 0, f"ssh exited {rc}; stderr={s.stderr!r}"
        assert s.sent == b"echo hel''lo\nexit\n", f"sent={s.sent!r}"
        assert s.received, "nothing received"
        # Raw local pty => ssh forwards raw modes => the remote pty does not
        # echo and does not map "\n" to "\r\n" (see PtySession docstring).
        assert b"hello\n" in s.received and b"hello\r\n" not in s.received
        return loginuid, s


def cooked_roundtrip(lab, user):
    """PtySession(raw=False): the remote pty gets cooked modes like a real xterm."""
    with PtySession(lab.ssh_argv(user), raw=False) as s:
        s.expect(re.compile(rb"\$ $", re.M))  # prompt => ssh is in raw mode now
        s.send(b"echo hel''lo\n")
        s.expect(b"hello\r\n")
        assert b"echo hel''lo" in s.received, f"no remote echo: {s.received[-200:]!r}"
        s.send(b"exit\n")
        assert s.wait_exit(timeout=30) == 0
        assert s.sent == b"echo hel''lo\nexit\n", f"sent={s.sent!r}"
        return s


@check("a-usepam-yes-tty")
def check_pam_tty():
    with tempfile.TemporaryDirectory(prefix="sshlab-a-") as wd:
        with SshLab(wd, use_pam=True) as lab:
            user = lab.add_user(uname("a"))
            track(lab, user)
            loginuid, s = interactive_roundtrip(lab, user)
            assert loginuid == user.uid, f"loginuid {loginuid} != uid {user.uid}"
            cooked = cooked_roundtrip(lab, user)
            return (
                f"port={lab.port} uid={user.uid} bash loginuid={loginuid} "
                f"sent={s.sent!r} received={len(s.received)}B "
                f"tail={s.received[-60:]!r}; raw=False tail={cooked.received[-40:]!r}"
            )


@check("b-usepam-no-tty")
def check_nopam_tty():
    with tempfile.TemporaryDirectory(prefix="sshlab-b-") as wd:
        with SshLab(wd, use_pam=False) as lab:
            user = lab.add_user(uname("b"))
            track(lab, user)
            listener_luid = read_loginuid(lab.pid)
            loginuid, s = interactive_roundtrip(lab, user)
            # Without pam_loginuid nothing writes /proc/self/loginuid, so the
            # shell inherits the listener's value -- 4294967295 when this
            # script itself runs without a login uid (the normal CI case).
            assert loginuid != user.uid, "loginuid set without PAM?"
            assert loginuid == listener_luid, f"{loginuid} != listener {listener_luid}"
            return (
                f"port={lab.port} uid={user.uid} bash loginuid={loginuid} "
                f"(unset={loginuid == sshlab.UNSET_LOGINUID}) sent={s.sent!r} "
                f"received={len(s.received)}B"
            )


@check("c-notty-exit-status")
def check_notty():
    with tempfile.TemporaryDirectory(prefix="sshlab-c-") as wd:
        with SshLab(wd) as lab:
            user = lab.add_user(uname("c"))
            track(lab, user)
            res = subprocess.run(
                lab.ssh_argv(user, "echo MARK; exit 3", tty=False),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=30,
            )
            assert res.returncode == 3, f"rc={res.returncode} err={res.stderr!r}"
            assert res.stdout == b"MARK\n", f"stdout={res.stdout!r}"
            sudo = subprocess.run(
                lab.ssh_argv(user, "sudo -n id -u", tty=False),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=30,
            )
            assert sudo.returncode == 0 and sudo.stdout == b"0\n", (
                f"sudo rc={sudo.returncode} out={sudo.stdout!r} err={sudo.stderr!r}"
            )
            return (
                f"rc={res.returncode} stdout={res.stdout!r} "
                f"sudo -n id -u={sudo.stdout!r}"
            )


@check("d-netns-silent-drop")
def check_netlab():
    with NetLab() as net, tempfile.TemporaryDirectory(prefix="sshlab-d-") as wd:
        CREATED["netns"].update((net.server_ns, net.client_ns))
        with net.ssh_lab(wd) as lab:
            user = lab.add_user(uname("d"))
            track(lab, user)
            with PtySession(lab.ssh_argv(user)) as s:
                s.send(b"echo hel''lo\n")
                s.expect(b"hello")
                # `ip netns exec` execs without forking: the pid is ssh itself.
                assert os.readlink(f"/proc/{s.pid}/exe") == "/usr/bin/ssh"
                assert os.readlink(f"/proc/{s.pid}/ns/net") != os.readlink(
                    f"/proc/{lab.pid}/ns/net"
                ), "client and server share a netns"
                conns = lab.session_pids()
                assert len(conns) == 1, f"expected 1 per-connection sshd, got {conns}"
                conn = conns[0]

                net.drop()
                t0 = time.monotonic()
                deadline = t0 + 15
                while sshlab.pid_alive(conn) and time.monotonic() < deadline:
                    time.sleep(0.05)
                took = time.monotonic() - t0
                assert not sshlab.pid_alive(conn), f"sshd {conn} still alive after 15s"
                assert not lab.session_pids(), f"sessions left: {lab.session_pids()}"
                # Nothing reached the client: it must still be waiting.
                assert s.returncode is None, f"client exited early rc={s.returncode}"
                log = lab.log_text()
                assert re.search(r"Timeout, client not responding", log), log[-2000:]

                s.kill(signal.SIGKILL)
                rc = s.wait_exit(timeout=10)
                assert rc == -signal.SIGKILL, f"client rc={rc}"
                return (
                    f"{net.server_ns}/{net.server_ip}:{lab.port} <- {net.client_ns}; "
                    f"per-connection sshd {conn} exited {took:.1f}s after drop, "
                    f"client still alive then, killed rc={rc}"
                )


# The victim for check (f): builds two labs (one across a NetLab), logs in,
# leaves a setsid'ed daemon behind, reports what it made, then waits for the
# SIGKILL that denies it any cleanup.
ORPHAN_CHILD = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
from sshlab import NetLab, PtySession, SshLab
wd, tag = sys.argv[2], sys.argv[3]
net = NetLab().start()
labs = [SshLab(os.path.join(wd, "l1")), net.ssh_lab(os.path.join(wd, "l2"))]
info = {"users": [], "ports": [], "listeners": [], "workdirs": [],
        "netns": [net.server_ns, net.client_ns], "sessions": []}
for i, lab in enumerate(labs):
    os.makedirs(lab.workdir)
    lab.start()
    user = lab.add_user(f"{tag}{i}")
    s = PtySession(lab.ssh_argv(user))
    s.send(b"setsid sleep 1000 </dev/null >/dev/null 2>&1 & echo ST-UP\n")
    s.expect(b"ST-UP")
    info["users"].append(user.name)
    info["ports"].append(lab.port)
    info["listeners"].append(lab.pid)
    info["workdirs"].append(lab.workdir)
    info["sessions"].append(s.pid)
print(json.dumps(info), flush=True)
sys.stdin.read()
"""


def leftover_processes():
    """Live processes that belong to this run's labs or users.

    Identified by content, not uid (uids are recycled by concurrent runs):
    an sshd started with one of our config files, an sshd session titled
    "sshd: <our user>...", or anything whose environment says it runs for
    one of our users (USER/LOGNAME, or SUDO_USER for sudo children).
    """
    keys = [
        f"{k}={u}".encode()
        for u in CREATED["users"]
        for k in ("USER", "LOGNAME", "SUDO_USER")
    ]
    found = []
    for pid in sshlab._all_pids():
        if pid == os.getpid() or not sshlab.pid_alive(pid):
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        text = cmd.replace(b"\0", b" ").decode(errors="replace")
        if (
            any(w in text for w in CREATED["workdirs"])
            or any(text.startswith(f"sshd: {u}") for u in CREATED["users"])
            or any(k in env for k in keys)
        ):
            found.append((pid, text.strip()))
    return found


@check("f-reap-after-sigkill")
def check_reap_stale():
    wd = tempfile.mkdtemp(prefix="sshlab-f-")
    os.chmod(wd, 0o755)  # the labs live in subdirectories: must be searchable
    try:
        child = subprocess.Popen(
            [
                sys.executable,
                "-c",
                ORPHAN_CHILD,
                os.path.dirname(sshlab.__file__),
                wd,
                uname("f"),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        try:
            line = child.stdout.readline()
            info = json.loads(line)
        finally:
            child.kill()
            child.wait()
        CREATED["users"].update(info["users"])
        CREATED["ports"].update(info["ports"])
        CREATED["listeners"].update(info["listeners"])
        CREATED["netns"].update(info["netns"])
        CREATED["workdirs"].update(info["workdirs"])
        for name in info["users"]:
            UIDS[name] = pwd.getpwnam(name).pw_uid
        # Without its owner nothing was cleaned: prove the leak is real.
        assert all(sshlab.pid_alive(p) for p in info["listeners"]), "no orphans?"
        assert set(info["netns"]) <= set(sshlab._netns_list())
        reaped = sshlab.reap_stale()
        # Judge by state, not by the returned list: a concurrent run's reaper
        # may legitimately have removed some of these first.
        left = [p for p in info["listeners"] + info["sessions"] if sshlab.pid_alive(p)]
        assert not left, f"orphans still alive: {left}"
        users = [u for u in info["users"] if sshlab._user_exists(u)]
        assert not users, f"users left: {users}"
        netns = set(info["netns"]) & set(sshlab._netns_list())
        assert not netns, f"netns left: {netns}"
        ours = {f"sshd[{p}]" for p in info["listeners"]}
        ours |= {f"user {u}" for u in info["users"]}
        ours |= {f"netns {n}" for n in info["netns"]}
        again = sshlab.reap_stale()
        assert not ours & set(again), f"second reap found {again}"
        return f"child SIGKILLed with {info}; reap_stale(): {reaped}"
    finally:
        shutil.rmtree(wd, ignore_errors=True)


def lab_owned_paths():
    """Paths some lab process created (recorded in sshlab's state file)."""
    try:
        with open(sshlab._STATE_FILE) as f:
            return {sshlab.PRIVSEP_DIR} | {ln.strip() for ln in f if ln.strip()}
    except FileNotFoundError:
        return set()


def artifacts_in_use():
    """Why lab artifacts may legitimately still exist, or '' if they may not."""
    sshds = [p for p in sshlab._all_pids() if sshlab._proc_exe(p) == sshlab.SSHD]
    if sshds:
        return f"sshd running: {sshds}"
    try:
        fd = os.open(sshlab._STATE_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return ""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return ""
    except BlockingIOError:
        return "another process holds a lab"
    finally:
        os.close(fd)


@check("e-no-leftovers")
def check_leftovers(baseline):
    problems, notes = [], []
    if not CREATED["users"]:
        problems.append("no users were recorded (did the checks run?)")
    with open("/etc/passwd") as f:
        names = {line.split(":", 1)[0] for line in f}
    if CREATED["users"] & names:
        problems.append(f"users left: {sorted(CREATED['users'] & names)}")
    with open("/etc/group") as f:
        groups = {line.split(":", 1)[0] for line in f}
    if CREATED["users"] & groups:
        problems.append(f"groups left: {sorted(CREATED['users'] & groups)}")
    with open("/etc/subuid") as f:
        subuid = [ln for ln in f if ln.split(":", 1)[0] in CREATED["users"]]
    if subuid:
        problems.append(f"/etc/subuid entries left: {subuid}")
    homes = [u for u in CREATED["users"] if os.path.exists(f"/home/{u}")]
    if homes:
        problems.append(f"home dirs left: {homes}")
    drop_ins = [n for n in os.listdir("/etc/sudoers.d") if "sealtrail-test-" in n]
    ours = [n for n in drop_ins if n.split("sealtrail-test-")[1] in CREATED["users"]]
    if ours:
        problems.append(f"sudoers drop-ins left: {ours}")
    elif drop_ins:
        notes.append(f"foreign drop-ins {drop_ins}")
    st_ns = [n for n in sshlab._netns_list() if n.startswith("st-")]
    if set(st_ns) & CREATED["netns"]:
        problems.append(f"netns left: {sorted(set(st_ns) & CREATED['netns'])}")
    elif st_ns:
        notes.append(f"foreign st- netns {st_ns}")
    ports = {p for _, p in sshlab.listening_sockets("self")} & CREATED["ports"]
    if ports:
        problems.append(f"still listening on {sorted(ports)}")
    alive = [p for p in CREATED["listeners"] if sshlab.pid_alive(p)]
    if alive:
        problems.append(f"listeners alive: {alive}")
    procs = leftover_processes()
    if procs:
        problems.append(f"processes left: {procs}")
    for name in CREATED["users"]:
        uid = UIDS[name]
        try:
            pwd.getpwuid(uid)
            continue  # uid already recycled by someone else: cannot judge
        except KeyError:
            pass
        if lastlog_record(name):
            problems.append(f"lastlog record left for uid {uid}")
    # /run/sshd and /run/motd.dynamic: whatever belonged to the system
    # before must still be there; whatever the labs created must be gone,
    # unless another process still runs a lab (or any sshd runs), in which
    # case the last one out removes it.
    busy = artifacts_in_use()
    if not busy and sshlab.artifacts_status.startswith("kept: sshd running"):
        # Another sshd (e.g. a concurrent test run) was up when our last lab
        # closed, and has gone since: a legitimate, logged decision.
        busy = f"library {sshlab.artifacts_status}"
    for path, (existed, lab_owned) in baseline.items():
        now = os.path.lexists(path)
        if existed and not lab_owned and not now:
            problems.append(f"{path} (not ours) was removed")
        elif now and not (existed and not lab_owned):
            if busy:
                notes.append(f"{path} kept: {busy}")
            else:
                problems.append(f"{path} left behind")
    if problems:
        raise AssertionError("; ".join(problems))
    return (
        f"users {sorted(CREATED['users'])} gone, ports {sorted(CREATED['ports'])} "
        f"closed, netns {sorted(CREATED['netns'])} gone, no drop-ins, "
        f"no processes; /run/sshd, /run/motd.dynamic, /root/.ssh as before"
        + (f"; notes: {notes}" if notes else "")
    )


def main():
    if os.geteuid() != 0:
        print("FAIL setup: must run as root")
        return 2
    sshlab.cleanup_on_signals()
    baseline = {
        p: (os.path.lexists(p), p in lab_owned_paths())
        for p in (sshlab.PRIVSEP_DIR, "/run/motd.dynamic", "/root/.ssh")
    }
    check_pam_tty()
    check_nopam_tty()
    check_notty()
    check_netlab()
    check_reap_stale()
    check_leftovers(baseline)
    failed = [n for n, ok in RESULTS if not ok]
    summary = f"{len(RESULTS) - len(failed)}/{len(RESULTS)} passed"
    print(summary + (f"; failed: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
