"""Throw-away OpenSSH lab for sealtrail end-to-end tests.

Everything here runs as root on a Debian 12 box with the stock OpenSSH 9.2p1
server binary.  The lab never touches the system sshd, its config or its host
keys: it starts a private ``sshd -D`` with its own config, host key and
authorized-keys directory, all inside a caller-provided work directory, and
creates short-lived local users whose names start with ``st``.

Pieces:

* :func:`free_port` -- pick an unused TCP port.
* :class:`SshLab` -- private sshd + test users + sudoers drop-ins.
* :class:`PtySession` -- run a client (``ssh -tt``) on a raw pty and record
  exactly the bytes it read from stdin and wrote to stdout.
* :class:`NetLab` -- two network namespaces joined by a veth pair, with a
  ``drop()`` that silently cuts the path (for dead-peer tests).

Every object is a context manager and also registers itself for an ``atexit``
cleanup, so users, sudoers drop-ins, namespaces and daemons disappear even when
a test forgets a ``with`` block or dies with an exception.  Call
:func:`cleanup_on_signals` once in a test driver to make SIGTERM/SIGHUP unwind
through the same path (``atexit`` alone does not run on a fatal signal).

Only the Python 3 standard library is used.

Pitfalls this module handles (details at the code):

* /run/sshd (privsep chroot) does not exist on a box where the ssh service
  never started; sshd refuses to run without it.
* useradd leaves the account locked ('!'); with UsePAM no sshd rejects
  locked accounts even for pubkey auth, hence ``usermod -p '*'``.
* sshd opens AuthorizedKeysFile with the *user's* uid, so the work dir must
  be world-searchable (mkdtemp() creates it 0700).
* ``ssh -tt`` forwards the termios of its stdin to the server: a raw local
  pty means a raw remote pty (no echo, "\n" not "\r\n"); see PtySession.
* OpenSSH 9.2 sends a ClientAlive probe only every ~2 s with
  ClientAliveInterval 1, so a dead peer is detected after ~8 s, not ~4 s.
* The system PAM stack and sshd's login accounting have side effects
  outside the work dir (wtmp, lastlog, /run/motd.dynamic); lastlog records
  and /run/motd.dynamic are undone, wtmp (an append-only audit log) is not.
* Killed sessions are reparented to PID 1, which may reap them lazily:
  treat zombies as dead (pid_alive() does).
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import os
import pwd
import grp
import random
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
import tty

__all__ = [
    "free_port",
    "SshLab",
    "User",
    "PtySession",
    "NetLab",
    "cleanup_on_signals",
    "listening_sockets",
    "proc_children",
    "proc_descendants",
    "pid_alive",
]

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = "ssh-keygen"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"
PRIVSEP_DIR = "/run/sshd"
SUDOERS_DIR = "/etc/sudoers.d"
SUDOERS_PREFIX = "sealtrail-test-"
USER_PREFIX = "st"
# GECOS marker: only accounts carrying it are ever deleted as "stale".
USER_COMMENT = "sealtrail selftest user"
NETNS_PREFIX = "st-"
UNSET_LOGINUID = 4294967295

# Poll interval for every "wait until" loop below.  Synchronisation is always
# "poll a condition until a deadline", never a bare sleep.
_POLL = 0.02


# --------------------------------------------------------------------------
# small process / procfs helpers
# --------------------------------------------------------------------------


def _run(argv, check=True, **kw):
    """Run a short helper command, capturing output; raise with its stderr."""
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    kw.setdefault("stdin", subprocess.DEVNULL)
    res = subprocess.run(argv, **kw)
    if check and res.returncode != 0:
        raise RuntimeError(
            f"{' '.join(map(str, argv))} exited {res.returncode}: "
            f"{(res.stderr or b'').decode(errors='replace').strip()}"
        )
    return res


def _keygen(path, comment):
    """Unencrypted ed25519 key pair at ``path`` / ``path.pub``."""
    _run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path])


def _wait_for(cond, timeout, what):
    """Poll ``cond()`` until it returns a truthy value or ``timeout`` expires."""
    deadline = time.monotonic() + timeout
    while True:
        val = cond()
        if val:
            return val
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(_POLL)


def _read_stat(pid):
    """Return (ppid, state) from /proc/PID/stat, or None if the pid is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm may contain spaces and parentheses; it ends at the *last* ')'.
    rest = data[data.rfind(b")") + 2 :].split()
    return int(rest[1]), rest[0].decode()


def _all_pids():
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def pid_alive(pid):
    """True if ``pid`` exists and is not a zombie (or already being reaped)."""
    st = _read_stat(pid)
    return st is not None and st[1] not in ("Z", "X", "x")


def proc_children(pid):
    """Live (non-zombie) direct children of ``pid``, from /proc/*/stat."""
    out = []
    for p in _all_pids():
        st = _read_stat(p)
        if st and st[0] == pid and st[1] not in ("Z", "X", "x"):
            out.append(p)
    return sorted(out)


def proc_descendants(pid):
    """Live descendants of ``pid`` (children, grandchildren, ...)."""
    parent = {}
    for p in _all_pids():
        st = _read_stat(p)
        if st and st[1] not in ("Z", "X", "x"):
            parent[p] = st[0]
    kids = {}
    for p, pp in parent.items():
        kids.setdefault(pp, []).append(p)
    out, todo = [], list(kids.get(pid, []))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return sorted(out)


def _proc_uids(pid):
    """(real, effective) uid of pid, or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Uid:"):
                    fields = line.split()
                    return int(fields[1]), int(fields[2])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return None


def _proc_loginuid(pid):
    try:
        with open(f"/proc/{pid}/loginuid") as f:
            return int(f.read().strip())
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return None


def _proc_comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except (FileNotFoundError, ProcessLookupError):
        return None


def _proc_exe(pid):
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


def _kill(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def listening_sockets(pid="self"):
    """Set of (ip, port) TCP/IPv4 sockets in LISTEN state.

    Reads /proc/PID/net/tcp, which shows the network namespace *of that
    process*: pass the sshd pid to look inside a netns without entering it.
    """
    out = set()
    try:
        with open(f"/proc/{pid}/net/tcp") as f:
            next(f)
            for line in f:
                fields = line.split()
                if fields[3] != "0A":  # TCP_LISTEN
                    continue
                hexip, hexport = fields[1].split(":")
                ip = socket.inet_ntoa(struct.pack("<I", int(hexip, 16)))
                out.add((ip, int(hexport, 16)))
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


def free_port(host="127.0.0.1"):
    """Return a TCP port that is currently free on ``host``.

    There is an unavoidable window between closing the probe socket and the
    daemon binding the port; :class:`SshLab` retries with a fresh port if
    sshd reports a bind failure.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------
# global cleanup registry
# --------------------------------------------------------------------------

_registry = []  # live objects with a close() method, in creation order
_registry_lock = threading.Lock()


def _register(obj):
    with _registry_lock:
        _registry.append(obj)


def _unregister(obj):
    with _registry_lock:
        if obj in _registry:
            _registry.remove(obj)


@atexit.register
def _cleanup_all():
    """Close whatever is still open, newest first (sessions before labs)."""
    while True:
        with _registry_lock:
            if not _registry:
                return
            obj = _registry[-1]
        try:
            obj.close()
        except Exception as exc:  # pragma: no cover - best effort at exit
            print(f"sshlab: cleanup of {obj!r} failed: {exc}", file=sys.stderr)
        _unregister(obj)


def cleanup_on_signals(signals=(signal.SIGTERM, signal.SIGHUP)):
    """Turn SIGTERM/SIGHUP into SystemExit so ``with`` blocks and atexit run.

    Only replaces handlers that are still at their default; call it from the
    main thread of a test driver, not from library code.
    """

    def handler(signum, _frame):
        raise SystemExit(128 + signum)

    for sig in signals:
        if signal.getsignal(sig) == signal.SIG_DFL:
            signal.signal(sig, handler)


# Paths outside the work dir that a lab run creates as a side effect:
#
# * /run/sshd is sshd's privilege-separation chroot and must exist before any
#   connection is accepted.  Debian normally creates it from the systemd
#   unit / init script, which never ran here, so we mkdir it.
# * /run/motd.dynamic is (re)generated by pam_motd from /etc/update-motd.d on
#   every UsePAM=yes login, even with "PrintMotd no" (that only affects
#   sshd's own motd printing).
#
# Several test processes may run labs at the same time, so ownership is
# shared across processes: whoever creates /run/sshd drops a state file into
# it listing the artifacts that did not exist yet; every process using a lab
# holds a shared flock on that file; the last one out (exclusive lock
# succeeds) removes the listed paths -- unless some other sshd, e.g. the
# system's, is running and might need them.  A /run/sshd without our state
# file belongs to the system and is never removed.  The lock on /run itself
# (a directory flock, nothing is created) serialises these transitions.
_ARTIFACT_FILES = ("/run/motd.dynamic", "/run/motd.dynamic.new")
_STATE_FILE = os.path.join(PRIVSEP_DIR, ".sealtrail-sshlab")
_artifacts_lock = threading.Lock()
_artifacts_users = 0  # labs alive in this process
_state_fd = None  # our shared lock on _STATE_FILE, if the dir is lab-owned


class _RunLock:
    """Exclusive flock on the /run directory: a machine-wide mutex."""

    def __enter__(self):
        self.fd = os.open("/run", os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        os.close(self.fd)  # releases the lock


def _artifacts_acquire():
    global _artifacts_users, _state_fd
    with _artifacts_lock:
        if _artifacts_users == 0:
            with _RunLock():
                if not os.path.lexists(PRIVSEP_DIR):
                    absent = [p for p in _ARTIFACT_FILES if not os.path.lexists(p)]
                    os.mkdir(PRIVSEP_DIR, 0o755)
                    os.chmod(PRIVSEP_DIR, 0o755)  # mkdir mode is umask-filtered
                    fd = os.open(_STATE_FILE, os.O_WRONLY | os.O_CREAT, 0o600)
                    with os.fdopen(fd, "w") as f:
                        f.write("".join(p + "\n" for p in absent))
                try:
                    _state_fd = os.open(_STATE_FILE, os.O_RDONLY)
                    fcntl.flock(_state_fd, fcntl.LOCK_SH)
                except FileNotFoundError:
                    _state_fd = None  # system-owned /run/sshd
        _artifacts_users += 1


def _artifacts_release():
    global _artifacts_users, _state_fd
    with _artifacts_lock:
        _artifacts_users -= 1
        if _artifacts_users > 0 or _state_fd is None:
            return
        fd, _state_fd = _state_fd, None
        with _RunLock():
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return  # another process still has labs; it cleans up
                if any(_proc_exe(p) == SSHD for p in _all_pids()):
                    return  # a non-lab sshd might need /run/sshd
                with open(fd, closefd=False) as f:
                    f.seek(0)
                    listed = [ln.strip() for ln in f if ln.strip()]
                for path in listed:
                    if path in _ARTIFACT_FILES:  # never trust it blindly
                        try:
                            os.unlink(path)
                        except FileNotFoundError:
                            pass
                os.unlink(_STATE_FILE)
                try:
                    os.rmdir(PRIVSEP_DIR)
                except OSError:
                    pass  # something else put files there: leave it
            finally:
                os.close(fd)


# --------------------------------------------------------------------------
# SshLab
# --------------------------------------------------------------------------


class _BindRace(Exception):
    """sshd could not bind the port picked by free_port(); pick another."""


class User:
    """A throw-away login created by :meth:`SshLab.add_user`."""

    def __init__(self, name, uid, gid, home, key_path):
        self.name = name
        self.uid = uid
        self.gid = gid
        self.home = home
        self.key_path = key_path
        self.pub_key_path = key_path + ".pub"

    def __repr__(self):
        return f"User({self.name!r}, uid={self.uid})"


_DEFAULT = object()


class SshLab:
    """A private sshd on 127.0.0.1 (or inside a netns) plus test users.

    >>> with SshLab(tmpdir) as lab:
    ...     u = lab.add_user("stalice")
    ...     subprocess.run(lab.ssh_argv(u, "id", tty=False))

    ``netns``: run sshd under ``ip netns exec NETNS`` (``listen`` must then be
    an address inside that namespace).  ``client_ns``: default namespace for
    the clients built by :meth:`ssh_argv` (see :meth:`NetLab.ssh_lab`).
    """

    START_TIMEOUT = 15.0
    STOP_TIMEOUT = 10.0

    def __init__(
        self,
        workdir,
        use_pam=True,
        netns=None,
        listen="127.0.0.1",
        client_ns=None,
    ):
        self.workdir = os.path.abspath(workdir)
        self.use_pam = bool(use_pam)
        self.netns = netns
        self.host = listen
        self.client_ns = client_ns
        self.port = None
        self.pid = None
        self.proc = None
        self.users = []
        self.config_path = os.path.join(self.workdir, "sshd_config")
        self.log_path = os.path.join(self.workdir, "sshd.log")
        self.host_key_path = os.path.join(self.workdir, "ssh_host_ed25519_key")
        self.authkeys_dir = os.path.join(self.workdir, "authorized_keys")
        self.pid_file = os.path.join(self.workdir, "sshd.pid")
        self._closed = False
        self._artifacts = False
        self._log_fh = None

    # -- lifecycle --------------------------------------------------------

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(raise_errors=exc_type is None)
        return False

    def __repr__(self):
        return f"SshLab({self.host}:{self.port}, pid={self.pid}, pam={self.use_pam})"

    def start(self):
        _register(self)
        try:
            self._prepare_workdir()
            _artifacts_acquire()
            self._artifacts = True
            if not os.path.exists(self.host_key_path):
                _keygen(self.host_key_path, "sealtrail-lab-host")
            last_err = None
            for _attempt in range(5):
                try:
                    self._start_sshd()
                    return self
                except _BindRace as err:  # free_port() lost a race; retry
                    last_err = err
            raise RuntimeError(f"could not bind sshd: {last_err}")
        except BaseException:
            self.close(raise_errors=False)
            raise

    def _prepare_workdir(self):
        os.makedirs(self.authkeys_dir, exist_ok=True)
        os.chmod(self.authkeys_dir, 0o755)
        # sshd reads AuthorizedKeysFile with the *user's* uid (it calls
        # temporarily_use_uid() first), so every directory on the way to it
        # must be searchable by others.  The work dir is ours to chmod;
        # anything above it we only check, with a clear message.
        st = os.stat(self.workdir)
        if not st.st_mode & 0o001:
            os.chmod(self.workdir, (st.st_mode & 0o7777) | 0o755)
        parent = os.path.dirname(self.workdir)
        while True:
            if not os.stat(parent).st_mode & 0o001:
                raise RuntimeError(
                    f"{parent} is not searchable by other users; test users "
                    f"could not read {self.authkeys_dir}. Use a workdir under "
                    "/tmp or similar."
                )
            if parent == "/":
                break
            parent = os.path.dirname(parent)

    def _write_config(self):
        cfg = f"""\
# Generated by selftests/lib/sshlab.py -- private test sshd, not the system one.
Port {self.port}
ListenAddress {self.host}
HostKey {self.host_key_path}
UsePAM {'yes' if self.use_pam else 'no'}
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AuthorizedKeysFile {self.authkeys_dir}/%u
StrictModes no
PermitRootLogin no
ClientAliveInterval 1
ClientAliveCountMax 3
PidFile {self.pid_file}
LogLevel VERBOSE
Subsystem sftp {SFTP_SERVER}
AcceptEnv LANG
PrintMotd no
PrintLastLog no
X11Forwarding no
AllowTcpForwarding yes
"""
        with open(self.config_path, "w") as f:
            f.write(cfg)
        # Fail early with sshd's own message on a config error.
        _run([SSHD, "-t", "-f", self.config_path])

    def _start_sshd(self):
        self.port = free_port("127.0.0.1")
        self._write_config()
        argv = [SSHD, "-D", "-e", "-f", self.config_path]
        if self.netns:
            # `ip netns exec` setns()es and then execs sshd directly (no
            # fork), so Popen.pid is the listening sshd itself.
            argv = ["ip", "netns", "exec", self.netns] + argv
        try:
            log_start = os.path.getsize(self.log_path)
        except FileNotFoundError:
            log_start = 0
        if self._log_fh is None:
            self._log_fh = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log_fh,
            stderr=self._log_fh,
            close_fds=True,
        )
        self.pid = self.proc.pid
        # sshd logs "Server listening on ADDR port PORT." right after
        # listen() succeeded; we also confirm the LISTEN socket through
        # /proc/<sshd>/net/tcp, which works inside a netns without opening
        # a probe connection (a probe would leave a spurious
        # "Connection closed ... [preauth]" child and log noise).
        want = f"Server listening on {self.host} port {self.port}"

        def ready():
            log = self._log_since(log_start)
            if self.proc.poll() is not None:
                if "Bind to port" in log or "Cannot bind any address" in log:
                    raise _BindRace(log.strip())
                raise RuntimeError(
                    f"sshd exited with {self.proc.returncode} during startup:\n{log}"
                )
            return want in log and (self.host, self.port) in listening_sockets(self.pid)

        try:
            _wait_for(ready, self.START_TIMEOUT, f"sshd on {self.host}:{self.port}")
        except TimeoutError:
            raise TimeoutError(
                f"sshd did not start listening within {self.START_TIMEOUT}s:\n"
                + self._log_since(log_start)
            ) from None
        exe = _proc_exe(self.pid)
        assert exe == SSHD, f"listener pid {self.pid} is {exe}, expected {SSHD}"

    def _log_since(self, offset):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def log_text(self):
        """Whole sshd log so far (for assertions and failure messages)."""
        return self._log_since(0)

    # -- users --------------------------------------------------------------

    def add_user(self, name):
        assert name.startswith(USER_PREFIX), f"user {name!r} must start with 'st'"
        assert re.fullmatch(r"[a-z_][a-z0-9_-]{0,30}", name), f"bad user {name!r}"
        assert self.proc is not None, "lab not started"
        _delete_stale_user(name)
        _run(["useradd", "-m", "-s", "/bin/bash", "-c", USER_COMMENT, name])
        user = None
        try:
            pw = pwd.getpwnam(name)
            # useradd leaves '!' in shadow.  With UsePAM no, sshd itself
            # refuses accounts whose hash starts with '!' ("User ... not
            # allowed because account is locked").  '*' can never match a
            # password but is not a lock marker, so pubkey login works in
            # both modes and password login stays impossible.
            _run(["usermod", "-p", "*", name])
            key_path = os.path.join(self.workdir, f"id_ed25519_{name}")
            for p in (key_path, key_path + ".pub"):
                if os.path.exists(p):
                    os.unlink(p)
            _keygen(key_path, f"{name}@sealtrail-lab")
            user = User(name, pw.pw_uid, pw.pw_gid, pw.pw_dir, key_path)
            self.users.append(user)

            ak = os.path.join(self.authkeys_dir, name)
            shutil.copyfile(key_path + ".pub", ak)
            os.chmod(ak, 0o644)

            self._install_sudoers(name)
        except BaseException:
            if user is None:
                _delete_user(name)
            raise
        return user

    def _install_sudoers(self, name):
        final = os.path.join(SUDOERS_DIR, SUDOERS_PREFIX + name)
        # sudo ignores files in sudoers.d whose name contains a '.', so the
        # temp file is never live, and rename() makes the switch atomic.
        tmp = os.path.join(SUDOERS_DIR, f".{SUDOERS_PREFIX}{name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o440)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(f"{name} ALL=(ALL) NOPASSWD: ALL\n")
            os.chmod(tmp, 0o440)
            _run(["visudo", "-cf", tmp])
            os.rename(tmp, final)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    # -- clients ------------------------------------------------------------

    def ssh_argv(self, user, *remote_cmd, tty=True, extra=(), client_ns=_DEFAULT):
        """argv for an ``ssh`` client logging in as ``user`` to this lab.

        ``-F /dev/null`` keeps root's ~/.ssh/config and /etc/ssh/ssh_config
        (ControlMaster, SendEnv, ...) from leaking into tests; pass options
        such as ``("-o", "SendEnv=LANG")`` through ``extra``.
        """
        ns = self.client_ns if client_ns is _DEFAULT else client_ns
        # fmt: off
        argv = [
            "ssh",
            "-tt" if tty else "-T",
            "-F", "/dev/null",
            "-e", "none",
            "-i", user.key_path,
            "-p", str(self.port),
            "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR",
            "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes",
            "-o", "ConnectTimeout=10",
            *extra,
            f"{user.name}@{self.host}",
            *remote_cmd,
        ]
        # fmt: on
        if ns:
            argv = ["ip", "netns", "exec", ns] + argv
        return argv

    def session_pids(self):
        """Live children of the listener: one per-connection sshd each."""
        if self.pid is None:
            return []
        return proc_children(self.pid)

    def user_processes(self, user, comm=None):
        """Live pids running with ``user``'s real uid (optionally by comm)."""
        out = []
        for p in _all_pids():
            ids = _proc_uids(p)
            if ids and ids[0] == user.uid and pid_alive(p):
                if comm is None or _proc_comm(p) == comm:
                    out.append(p)
        return sorted(out)

    # -- teardown -------------------------------------------------------------

    def close(self, raise_errors=False):
        if self._closed:
            return
        self._closed = True
        errors = []

        def step(fn, *args):
            try:
                fn(*args)
            except Exception as exc:
                errors.append(f"{fn.__name__}{args}: {exc}")

        if self.proc is not None:
            step(self._stop_sshd)
        for user in reversed(self.users):
            step(_delete_user, user.name, user.uid)
        self.users = []
        if self._artifacts:
            self._artifacts = False
            step(_artifacts_release)
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None
        _unregister(self)
        if errors:
            msg = "SshLab cleanup problems:\n  " + "\n  ".join(errors)
            if raise_errors:
                raise RuntimeError(msg)
            print(msg, file=sys.stderr)

    def _stop_sshd(self):
        """Stop the listener and everything it ever spawned.

        Once the listener dies its children are reparented and can no longer
        be found through it, so the tree is frozen first: SIGSTOP the
        listener and every descendant until the set is stable (a stopped
        process cannot fork), then SIGKILL the sessions and finally terminate
        the listener itself (SIGTERM, then SIGKILL after a deadline).
        """
        pid = self.pid
        if self.proc.poll() is None:
            _kill(pid, signal.SIGSTOP)
        frozen = set()
        while True:
            tree = set(proc_descendants(pid))
            new = tree - frozen
            if not new:
                break
            for p in new:
                _kill(p, signal.SIGSTOP)
            frozen |= new
        # Processes that escaped the tree (daemonised via setsid, or started
        # through sudo) are caught by user name / loginuid in _delete_user().
        for p in frozen:
            _kill(p, signal.SIGKILL)
        if self.proc.poll() is None:
            _kill(pid, signal.SIGTERM)
            _kill(pid, signal.SIGCONT)
            try:
                self.proc.wait(timeout=self.STOP_TIMEOUT / 2)
            except subprocess.TimeoutExpired:
                _kill(pid, signal.SIGKILL)
                self.proc.wait(timeout=self.STOP_TIMEOUT / 2)
        _wait_for(
            lambda: not any(pid_alive(p) for p in frozen),
            self.STOP_TIMEOUT,
            f"sshd session processes {sorted(frozen)} to die",
        )


def _delete_stale_user(name):
    """Remove leftovers of an earlier, killed run -- but never a real account.

    An existing account is only deleted if it carries our GECOS marker, so a
    test asking for "steve" cannot wipe a real user of that name.
    """
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        pass
    else:
        if pw.pw_gecos != USER_COMMENT:
            raise RuntimeError(
                f"user {name!r} exists and was not created by sshlab "
                f"(GECOS {pw.pw_gecos!r}); refusing to delete it"
            )
    _delete_user(name)


def _delete_user(name, uid=None):
    """Kill every process of ``name`` and remove it with its home/mail spool.

    Also removes its sudoers drop-in.  Safe to call for a user that does not
    exist.  Only ever used on ``st*`` names we create ourselves.
    """
    assert name.startswith(USER_PREFIX)
    try:
        pw = pwd.getpwnam(name)
        uid = pw.pw_uid
    except KeyError:
        pw = None
    systemd = os.path.isdir("/run/systemd/system") and shutil.which("loginctl")
    if pw is not None and systemd:
        # On a systemd host pam_systemd registers the login with logind,
        # which also starts a per-user "systemd --user" manager that is not
        # a descendant of sshd.  Let logind tear that down properly instead
        # of just SIGKILLing it behind logind's back.  (Not exercised on the
        # non-systemd CI VM; there pam_systemd fails quietly and fast.)
        try:
            _run(["loginctl", "terminate-user", name], check=False, timeout=15)
        except subprocess.TimeoutExpired:
            pass  # the SIGKILL sweep below still applies
    if uid is not None:

        def victims():
            out = []
            for p in _all_pids():
                if not pid_alive(p):
                    continue
                ids = _proc_uids(p)
                # Real/effective uid catches the shell and everything it
                # started; loginuid additionally catches root processes it
                # launched through sudo (pam_loginuid sets it for the whole
                # session with UsePAM yes).
                if (ids and uid in ids) or _proc_loginuid(p) == uid:
                    out.append(p)
            return out

        def all_dead():
            pids = victims()
            for p in pids:
                _kill(p, signal.SIGKILL)
            return not pids

        _wait_for(all_dead, 10.0, f"processes of {name} (uid {uid}) to die")
    if pw is not None:
        # sshd writes a lastlog record for every login (PrintLastLog only
        # controls printing it) and userdel leaves it behind; zero it so a
        # later user with the same uid does not inherit a "last login".
        _run(["lastlog", "--clear", "--user", name], check=False)
        res = _run(["userdel", "-r", name], check=False)
        # userdel exits 12 when only the home/mail removal failed (e.g. no
        # mail spool); anything else with the user still present is fatal.
        if res.returncode not in (0, 12) or _user_exists(name):
            res = _run(["userdel", "-r", "-f", name], check=False)
            if _user_exists(name):
                raise RuntimeError(
                    f"userdel {name} failed: {res.stderr.decode(errors='replace')}"
                )
    # USERGROUPS_ENAB creates a same-name group; userdel normally removes it,
    # but a half-finished earlier run can leave it behind and make useradd
    # fail with "group exists".
    try:
        grp.getgrnam(name)
        _run(["groupdel", name], check=False)
    except KeyError:
        pass
    for path in (
        os.path.join(SUDOERS_DIR, SUDOERS_PREFIX + name),
        os.path.join(SUDOERS_DIR, f".{SUDOERS_PREFIX}{name}.tmp"),
    ):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _user_exists(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


# --------------------------------------------------------------------------
# PtySession
# --------------------------------------------------------------------------


class PtySession:
    r"""Run ``argv`` with stdin/stdout on a raw pty and record the byte streams.

    ``.sent`` is exactly what was written to the master (= what the client
    read from its stdin); ``.received`` is exactly what was read from the
    master (= what the client wrote to its stdout).  The *slave* is put in raw
    mode, so the line discipline neither echoes, translates CR/LF, nor
    generates signals: the two streams are byte-exact in both directions.
    stderr goes to a separate pipe and is collected in ``.stderr``.

    Caveat for ``ssh -tt``: the client copies the termios of its stdin *as it
    found it* into the pty-req, so with a raw slave the remote pty starts raw
    too: no remote echo of typed input, no ONLCR ("\n" instead of "\r\n"),
    no ISIG.  Pass ``raw=False`` to keep the kernel's default cooked modes on
    the slave instead: ssh then forwards cooked modes (the remote pty behaves
    like a real terminal) and switches the local pty to raw itself.  In that
    mode send nothing until the remote has printed something (e.g. expect the
    prompt first); before ssh enters raw mode the local line discipline would
    echo and translate input.
    """

    ROWS, COLS = 24, 80

    def __init__(self, argv, env=None, raw=True):
        self.argv = list(argv)
        self.env = env
        self.raw = raw
        self.sent = b""
        self._received = bytearray()
        self._stderr = bytearray()
        self._cond = threading.Condition()
        self._eof = False
        self._stop = threading.Event()
        self._cursor = 0
        self.proc = None
        self.pid = None
        self.master = None
        self._closed = False
        self._threads = []
        self.start()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()
        return False

    def __repr__(self):
        return f"PtySession(pid={self.pid}, argv={self.argv[:3]}...)"

    def start(self):
        _register(self)
        master, slave = os.openpty()  # both O_CLOEXEC, slave opened O_NOCTTY
        try:
            if self.raw:
                tty.setraw(slave)
            winsize = struct.pack("HHHH", self.ROWS, self.COLS, 0, 0)
            fcntl.ioctl(slave, termios.TIOCSWINSZ, winsize)
            self.master = master
            # start_new_session=True makes the child a session leader without
            # a controlling tty; TIOCSCTTY then adopts the pty (stdin).  The
            # preexec_fn does a single ioctl and takes no Python-level locks,
            # which keeps it safe even with other reader threads running.
            self.proc = subprocess.Popen(
                self.argv,
                stdin=slave,
                stdout=slave,
                stderr=subprocess.PIPE,
                env=self.env,
                start_new_session=True,
                preexec_fn=_make_ctty,
                close_fds=True,
            )
        except BaseException:
            os.close(master)
            self.master = None
            _unregister(self)
            raise
        finally:
            # The parent must not keep the slave open, or the master would
            # never see EIO once the client exits.
            os.close(slave)
        self.pid = self.proc.pid
        for target in (self._read_master, self._read_stderr):
            t = threading.Thread(target=target, daemon=True, name=f"pty-{self.pid}")
            t.start()
            self._threads.append(t)

    # -- readers --------------------------------------------------------------

    def _read_master(self):
        fd = self.master
        try:
            while not self._stop.is_set():
                # select with a timeout so close() can always stop the thread
                # (closing an fd does not wake a blocked read on Linux).
                r, _, _ = select.select([fd], [], [], 0.1)
                if not r:
                    continue
                try:
                    data = os.read(fd, 65536)
                except OSError as exc:
                    if exc.errno == errno.EIO:  # all slave fds closed
                        break
                    raise
                if not data:
                    break
                with self._cond:
                    self._received += data
                    self._cond.notify_all()
        finally:
            with self._cond:
                self._eof = True
                self._cond.notify_all()

    def _read_stderr(self):
        fd = self.proc.stderr.fileno()
        while not self._stop.is_set():
            r, _, _ = select.select([fd], [], [], 0.1)
            if not r:
                continue
            data = os.read(fd, 65536)
            if not data:
                break
            with self._cond:
                self._stderr += data
                self._cond.notify_all()

    # -- public API -----------------------------------------------------------

    @property
    def received(self):
        with self._cond:
            return bytes(self._received)

    @property
    def stderr(self):
        with self._cond:
            return bytes(self._stderr)

    @property
    def returncode(self):
        return self.proc.poll()

    def send(self, data, timeout=20):
        """Write all of ``data`` to the pty master; record it in ``.sent``."""
        data = bytes(data)
        view = memoryview(data)
        deadline = time.monotonic() + timeout
        while view:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"send: pty not writable for {timeout}s; "
                    f"{len(data) - len(view)}/{len(data)} bytes written"
                )
            _, w, _ = select.select([], [self.master], [], min(left, 0.5))
            if not w:
                continue
            n = os.write(self.master, view)
            self.sent += bytes(view[:n])
            view = view[n:]

    def expect(self, pattern, timeout=20):
        """Wait for ``pattern`` in the output after the previous match.

        ``pattern`` is bytes (literal) or a compiled bytes regex.  Returns the
        absolute offset in ``.received`` where the match ends; the next
        ``expect`` searches from there.
        """
        if isinstance(pattern, str):
            pattern = pattern.encode()
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if isinstance(pattern, (bytes, bytearray)):
                    i = self._received.find(pattern, self._cursor)
                    end = i + len(pattern) if i >= 0 else None
                else:
                    m = pattern.search(self._received, self._cursor)
                    end = m.end() if m else None
                if end is not None:
                    self._cursor = end
                    return end
                left = deadline - time.monotonic()
                if left <= 0 or self._eof:
                    why = "EOF" if self._eof else f"timeout ({timeout}s)"
                    raise AssertionError(
                        f"expect({pattern!r}) failed: {why}; cursor={self._cursor}; "
                        f"process rc={self.proc.poll()}\n"
                        f"last 500 bytes received: {bytes(self._received[-500:])!r}\n"
                        f"stderr: {bytes(self._stderr)!r}"
                    )
                self._cond.wait(min(left, 0.5))

    def wait_exit(self, timeout=30):
        """Wait for the process to exit and the pty to be drained; return rc."""
        deadline = time.monotonic() + timeout
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"process {self.pid} still running after {timeout}s\n"
                f"last 500 bytes received: {self.received[-500:]!r}\n"
                f"stderr: {self.stderr!r}"
            ) from None
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()) + 1.0)
            if t.is_alive():
                raise AssertionError(
                    f"{t.name}: output not drained (a leftover process may "
                    "still hold the pty slave or stderr pipe)"
                )
        return rc

    def kill(self, sig=signal.SIGKILL):
        if self.proc.poll() is None:
            _kill(self.pid, sig)

    def close(self):
        if self._closed:
            return
        self._closed = True
        try:
            if self.proc is not None and self.proc.poll() is None:
                _kill(self.pid, signal.SIGKILL)
            if self.proc is not None:
                self.proc.wait(timeout=10)
            # Give the readers a moment to drain what is left, then stop them.
            for t in self._threads:
                t.join(2.0)
            self._stop.set()
            for t in self._threads:
                t.join(2.0)
        finally:
            if self.master is not None:
                os.close(self.master)
                self.master = None
            if self.proc is not None and self.proc.stderr:
                self.proc.stderr.close()
            _unregister(self)


def _make_ctty():
    # Runs in the child between fork and exec, after setsid().
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


# --------------------------------------------------------------------------
# NetLab
# --------------------------------------------------------------------------


class NetLab:
    """Two netns (server/client) joined by a veth pair on 10.213.X.0/30.

    ``drop()`` brings the *client* end of the veth administratively down.
    Why that end:

    * Nothing is sent to the server: no RST, no FIN, no ICMP.  The server
      end stays UP with its address and connected route; it merely loses
      carrier (no LOWER_UP), and whatever it transmits is silently discarded
      -- what a pulled cable / dead NAT / vanished laptop looks like.  The
      server's sshd only notices through its ClientAlive probes going
      unanswered.
    * Taking the *server* end down instead would remove the server's own
      connected route, so its kernel fails route lookups locally -- a local
      error path, not a silent loss on the wire.
    * tc/netem or nftables would also work but need extra kernel modules or
      packages (nft is not installed on the target box).

    The client's ssh keeps running after the drop (it has no keepalive), so
    tests can assert the server side gave up first and then kill the client.
    """

    SRV_DEV = "st-veth-srv"
    CLI_DEV = "st-veth-cli"

    def __init__(self):
        self.server_ns = self.client_ns = None
        self.server_ip = self.client_ip = None
        self._created = []
        self._closed = False
        self.dropped = False

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(raise_errors=exc_type is None)
        return False

    def __repr__(self):
        return (
            f"NetLab({self.server_ns} {self.server_ip} <-> "
            f"{self.client_ns} {self.client_ip})"
        )

    def start(self):
        _register(self)
        try:
            existing = set(_netns_list())
            for _ in range(20):
                suffix = f"{random.randrange(16**4):04x}"
                srv, cli = f"{NETNS_PREFIX}srv-{suffix}", f"{NETNS_PREFIX}cli-{suffix}"
                if srv not in existing and cli not in existing:
                    break
            else:
                raise RuntimeError("could not pick unused netns names")
            x = random.randint(1, 250)
            _run(["ip", "netns", "add", srv])
            self._created.append(srv)
            _run(["ip", "netns", "add", cli])
            self._created.append(cli)
            self.server_ns, self.client_ns = srv, cli
            self.server_ip, self.client_ip = f"10.213.{x}.1", f"10.213.{x}.2"
            # Create the pair directly inside the namespaces: the host's own
            # link list is never touched, and device names cannot clash.
            _run(["ip", "-n", srv, "link", "add", self.SRV_DEV, "type", "veth",
                  "peer", "name", self.CLI_DEV, "netns", cli])
            ends = (
                (srv, self.SRV_DEV, self.server_ip),
                (cli, self.CLI_DEV, self.client_ip),
            )
            for ns, dev, ip in ends:
                _run(["ip", "-n", ns, "addr", "add", f"{ip}/30", "dev", dev])
                _run(["ip", "-n", ns, "link", "set", "lo", "up"])
                _run(["ip", "-n", ns, "link", "set", dev, "up"])
            # Wait for the link to come up (carrier on both ends) so the first
            # SYN does not race the veth becoming operational.
            _wait_for(self._link_ready, 10.0, "veth pair to come up")
        except BaseException:
            self.close(raise_errors=False)
            raise
        return self

    def _link_ready(self):
        for ns, dev in ((self.server_ns, self.SRV_DEV), (self.client_ns, self.CLI_DEV)):
            out = _run(["ip", "-n", ns, "-o", "link", "show", dev]).stdout.decode()
            if "LOWER_UP" not in out:
                return False
        return True

    def ssh_lab(self, workdir, **kw):
        """An :class:`SshLab` serving in the server netns, clients in the client one."""
        return SshLab(
            workdir,
            netns=self.server_ns,
            listen=self.server_ip,
            client_ns=self.client_ns,
            **kw,
        )

    def drop(self):
        """Silently cut the path (see class docstring)."""
        _run(["ip", "-n", self.client_ns, "link", "set", "dev", self.CLI_DEV, "down"])
        self.dropped = True

    def restore(self):
        _run(["ip", "-n", self.client_ns, "link", "set", "dev", self.CLI_DEV, "up"])
        self.dropped = False

    def close(self, raise_errors=False):
        if self._closed:
            return
        self._closed = True
        errors = []
        for ns in reversed(self._created):
            # Processes still inside a namespace would keep it (and the
            # veth) alive after the name is gone; kill them first.  SshLab
            # normally did that already when it closed.
            try:
                pids = _run(["ip", "netns", "pids", ns], check=False).stdout.split()
                for p in pids:
                    _kill(int(p), signal.SIGKILL)
                _run(["ip", "netns", "del", ns])
            except Exception as exc:
                errors.append(f"netns {ns}: {exc}")
        self._created = []
        _unregister(self)
        if errors:
            msg = "NetLab cleanup problems:\n  " + "\n  ".join(errors)
            if raise_errors:
                raise RuntimeError(msg)
            print(msg, file=sys.stderr)


def _netns_list():
    out = _run(["ip", "netns", "list"], check=False).stdout.decode()
    return [line.split()[0] for line in out.splitlines() if line.strip()]
