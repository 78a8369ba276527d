"""Access control: only root reads the store; auditors and admins named in
the roles file ask sealtraild over its socket, every request is stored as a
sealed access record, and a recorded user cannot read any recording, not
even their own."""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile

from harness import BUILD, Daemon, check, check_eq, test, wait_for
from sshlab import SshLab

DENIED = 77


class Access:
    """A socket and a roles file in a directory every test user can reach,
    and a copy of the sealtrail client they may run."""

    def __init__(self, roles):
        self.dir = tempfile.mkdtemp(prefix="st-access-")
        os.chmod(self.dir, 0o755)
        self.sock = os.path.join(self.dir, "sealtrail.sock")
        self.roles = os.path.join(self.dir, "roles")
        with open(self.roles, "w") as f:
            f.write(roles)
        os.chmod(self.roles, 0o644)
        self.client = os.path.join(self.dir, "sealtrail")
        shutil.copy(os.path.join(BUILD, "sealtrail"), self.client)
        os.chmod(self.client, 0o755)

    def daemon_args(self):
        return ["--socket", self.sock, "--roles", self.roles,
                "--cli", os.path.join(BUILD, "sealtrail")]

    def run_as(self, user, *args):
        """sealtrail ARGS as user (not root: the request goes to the socket)."""
        return subprocess.run(
            ["runuser", "-u", user.name, "--", "env", f"SEALTRAIL_SOCKET={self.sock}",
             self.client, *args], capture_output=True, timeout=120, cwd="/")

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def replay_child(daemon_pid, sid):
    """pid of the daemon's child running `sealtrail ... replay sid`, if any."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(") ", 1)[1].split()[1])
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == daemon_pid and b"replay" in argv and sid.encode() in argv:
            return int(pid)
    return None


def raw_request(path, args, with_fds=True):
    """Send a request frame the way a hostile client could, return the status."""
    body = len(args).to_bytes(2, "big") + b"".join(
        len(a).to_bytes(2, "big") + a for a in args)
    frame = len(body).to_bytes(4, "big") + body
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(60)
        s.connect(path)
        if with_fds:
            with open(os.devnull, "wb") as null:
                socket.send_fds(s, [frame[:1]], [null.fileno(), null.fileno()])
            s.sendall(frame[1:])
        else:
            s.sendall(frame)
        got = b""
        while len(got) < 4:
            chunk = s.recv(4 - len(got))
            if not chunk:
                break
            got += chunk
    return int.from_bytes(got, "big") if len(got) == 4 else None


@test("e2e/access_roles_socket_and_access_log")
def access_story():
    lab = SshLab(None, use_pam=True)
    lab.__enter__()
    acc = None
    d = None
    try:
        alice = lab.add_user("stacca")  # recorded, no role
        bob = lab.add_user("staccb")  # auditor by name
        carol = lab.add_user("staccc")  # admin through her group
        acc = Access("# test roles\nauditor: staccb\nadmin: @staccc\n")
        d = Daemon(acc.daemon_args())
        d.start()
        d.wait_listener(lab.pid)
        check(os.path.exists(acc.sock), "sealtraild listens on --socket", log=d.log())
        check_eq(os.stat(acc.sock).st_mode & 0o777, 0o666, "anyone may connect")

        # alice logs in and works; her session is recorded
        marker = "RBAC-" + os.urandom(4).hex()
        p = subprocess.run(lab.ssh_argv(alice, f"echo {marker}; sleep 1; id -un", tty=False),
                           capture_output=True, timeout=60)
        check_eq(p.returncode, 0, "ssh as alice", stderr=p.stderr)
        sess = d.wait_session("alice's ended session",
                              lambda s: s["user"] == alice.name and s["end"] is not None,
                              timeout=60)
        sid = sess["id"]

        # bob, an auditor, lists the sessions and exports hers through the socket
        r = acc.run_as(bob, "--json", "sessions")
        check_eq(r.returncode, 0, "auditor lists sessions", stderr=r.stderr)
        ids = [json.loads(l)["id"] for l in r.stdout.decode().splitlines() if l.strip()]
        check(sid in ids, "alice's session in bob's list", ids=ids, session=sid)
        r = acc.run_as(bob, "export", sid, "--format", "raw", "--stream", "stdout")
        check_eq(r.returncode, 0, "auditor exports", stderr=r.stderr)
        check_eq(r.stdout, p.stdout, "exported output is what alice saw", session=sid)

        # a caller that goes away (Ctrl-C) stops its command in the daemon
        client = subprocess.Popen(
            # setpriv execs the client itself (runuser would stay its parent)
            ["setpriv", f"--reuid={bob.uid}", f"--regid={bob.gid}", "--init-groups",
             acc.client, "--socket", acc.sock, "replay", sid, "--speed", "0.01"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            child = wait_for(lambda: replay_child(d.proc.pid, sid), 15,
                             "the replay running in a child of sealtraild")
        finally:
            client.send_signal(signal.SIGINT)
            client.wait()
        wait_for(lambda: replay_child(d.proc.pid, sid) is None, 15,
                 "the replay to stop (and be reaped) once its caller is gone")

        # alice has no role: refused everywhere, her own session included
        for args in (["sessions"], ["export", sid], ["replay", sid, "--speed", "0"],
                     ["events", sid], ["access-log"]):
            r = acc.run_as(alice, *args)
            check_eq(r.returncode, DENIED, f"alice: sealtrail {' '.join(args)} refused",
                     stdout=r.stdout, stderr=r.stderr)
            want = (f"user {alice.name} (uid {alice.uid}) has no sealtrail role; "
                    f"see {acc.roles}")
            check(want.encode() in r.stderr, "a clear reason", stderr=r.stderr, want=want)
            check_eq(r.stdout, b"", "nothing of the store on stdout", args=args)
        # nor can she reach the files: the store is root's alone
        check_eq(os.stat(d.store).st_mode & 0o077, 0, "store directory closed to others")
        r = subprocess.run(["runuser", "-u", alice.name, "--", "ls", d.store],
                           capture_output=True)
        check(r.returncode != 0, "alice cannot list the store", stdout=r.stdout)

        # verify is for admins: bob is refused, carol (group @staccc) may
        r = acc.run_as(bob, "verify")
        check_eq(r.returncode, DENIED, "auditor cannot verify", stderr=r.stderr)
        check(b"needs the admin role" in r.stderr, "says which role", stderr=r.stderr)
        r = acc.run_as(carol, "--json", "verify")
        check(r.returncode in (0, 1), "admin runs verify", rc=r.returncode, stderr=r.stderr)
        check("ok" in json.loads(r.stdout), "verify's report reaches carol", out=r.stdout)

        # against checkpoints she saved: her client opens her file, as her,
        # and passes it on; the daemon never opens a path for a caller
        r = acc.run_as(carol, "checkpoint")
        check_eq(r.returncode, 0, "the latest checkpoint over the socket", stderr=r.stderr)
        saved = os.path.join(carol.home, "saved.note")
        with open(saved, "wb") as f:
            f.write(r.stdout)
        os.chown(saved, carol.uid, carol.gid)
        os.chmod(saved, 0o600)
        r = acc.run_as(carol, "--json", "verify", "--against", saved)
        out = json.loads(r.stdout) if r.stdout.strip() else {}
        check(r.returncode in (0, 1) and out.get("checkpoints") == 1,
              "admin verifies against her own saved checkpoint", rc=r.returncode, out=out,
              stderr=r.stderr)
        r = acc.run_as(carol, "checkpoint", "--decode", saved)
        check(r.returncode == 0 and r.stdout.startswith(b"sealtrail"),
              "checkpoint --decode of her file", rc=r.returncode, out=r.stdout, stderr=r.stderr)
        r = acc.run_as(carol, "verify", "--against", "/etc/shadow")
        check(r.returncode == 2 and b"/etc/shadow: Permission denied" in r.stderr,
              "a file she may not read stays closed (her client opens it, not root)",
              rc=r.returncode, stderr=r.stderr)

        # keys and config are for admins too
        for args in (["keys"], ["config"]):
            r = acc.run_as(bob, *args)
            check_eq(r.returncode, DENIED, f"auditor: sealtrail {args[0]} refused",
                     stderr=r.stderr)
        r = acc.run_as(carol, "--json", "keys")
        keys = json.loads(r.stdout) if r.stdout.strip() else {}
        with open(os.path.join(d.store, "store-id")) as f:
            store_id = f.read().strip()
        with open(os.path.join(d.store, "keys", "first.pub")) as f:
            first = f.read().split()[3]
        check(r.returncode == 0 and keys.get("store") == store_id and
              keys.get("first_key") == first and keys.get("epoch") is not None and
              all(x["problem"] is None for x in keys.get("files", [])),
              "admin sees the store's keys: id, pinned first key, epoch, safe modes",
              rc=r.returncode, keys=keys, stderr=r.stderr)
        with open(os.path.join(d.store, "keys", "kek"), "rb") as f:
            kek_hex = f.read().hex().encode()
        with open(os.path.join(d.store, "keys", "epoch"), "rb") as f:
            epoch_sk_hex = f.read()[4:36].hex().encode()
        check(kek_hex not in r.stdout and epoch_sk_hex not in r.stdout,
              "no secret key bytes in it", out=r.stdout)
        r = acc.run_as(carol, "--json", "config")
        cfg = json.loads(r.stdout) if r.stdout.strip() else {}
        check(r.returncode == 0 and cfg.get("store") == d.store and
              cfg.get("socket") == acc.sock and cfg.get("roles") == acc.roles and
              cfg.get("pid") == d.proc.pid,
              "admin sees what sealtraild runs with", rc=r.returncode, cfg=cfg,
              stderr=r.stderr)
        r = acc.run_as(carol, "config")
        check(r.returncode == 0 and b"admin                @staccc" in r.stdout and
              b"auditor              staccb" in r.stdout,
              "and who has which role now", out=r.stdout, stderr=r.stderr)
        # root reads them directly; an unsafe key file mode is an error
        kek = os.path.join(d.store, "keys", "kek")
        os.chmod(kek, 0o640)
        try:
            r = d.cli("keys", check_rc=False, binary=True)
            check(r.returncode == 1 and b"keys/kek           0640 uid 0: group or others"
                  in r.stdout, "keys flags a key file others may read", rc=r.returncode,
                  out=r.stdout, stderr=r.stderr)
        finally:
            os.chmod(kek, 0o600)

        r = acc.run_as(carol, "access-log")
        check_eq(r.returncode, 0, "admin reads the access log", stderr=r.stderr)
        check(f"denied   {alice.uid:>6} {alice.name}".encode() in r.stdout,
              "with alice's refusals in it", out=r.stdout)

        # the daemon reads its own store only, whatever the client says
        other = tempfile.mkdtemp(prefix="st-other-")
        try:
            r = acc.run_as(bob, "sessions", "--store", other)
            check_eq(r.returncode, DENIED, "--store after the command refused",
                     stderr=r.stderr)
            check(b"--store is not available over the socket" in r.stderr, "why",
                  stderr=r.stderr)
            r = acc.run_as(bob, "--socket", acc.sock, "--store", other, "sessions")
            check_eq(r.returncode, 2, "client refuses --store with --socket", stderr=r.stderr)
            r = acc.run_as(bob, "export", sid, "-o", os.path.join(other, "x"))
            check_eq(r.returncode, DENIED, "export -o FILE refused (root would write it)",
                     stderr=r.stderr)
            check(not os.listdir(other), "nothing written to the other directory")
        finally:
            shutil.rmtree(other, ignore_errors=True)
        # hostile frames: a --store, and a request without stdout and stderr
        check_eq(raw_request(acc.sock, [b"sessions", b"--st=/tmp"]), DENIED, "abbreviated --store")
        check_eq(raw_request(acc.sock, [b"sessions"], with_fds=False), DENIED, "no fds passed")

        check_eq(d.stop(), 0, "sealtraild exits cleanly")
        check(not os.path.exists(acc.sock), "socket removed at shutdown")

        # root reads the access log directly: every request, allowed or not
        log = d.cli_json("access-log")
        seen = [(e["uid"], e["user"], e["command"], e["decision"]) for e in log]
        for want in [(bob.uid, bob.name, "sessions", "allowed"),
                     (bob.uid, bob.name, "export", "allowed"),
                     (alice.uid, alice.name, "sessions", "denied"),
                     (alice.uid, alice.name, "export", "denied"),
                     (alice.uid, alice.name, "replay", "denied"),
                     (alice.uid, alice.name, "access-log", "denied"),
                     (bob.uid, bob.name, "verify", "denied"),
                     (carol.uid, carol.name, "verify", "allowed")]:
            check(want in seen, f"access log has {want}", log=seen)
        exports = [e for e in log if e["command"] == "export" and e["uid"] == bob.uid
                   and e["decision"] == "allowed"]
        check_eq(exports[0]["argv"], ["export", sid, "--format", "raw", "--stream", "stdout"],
                 "the whole request is recorded")
        check_eq(exports[0]["role"], "auditor", "with the role it was allowed by")
        refused = [e for e in log if "--store" in e["argv"]]
        check(refused and all(e["decision"] == "denied" for e in refused),
              "--store requests recorded as denied", log=refused)
        table = d.cli("access-log")
        check(f"denied   {alice.uid:>6} {alice.name}" in table, "table shows the refusal",
              table=table)

        # the access records are sealed: verify covers them all
        rc, out, err = d.verify()
        check_eq(rc, 0, "verify passes over the access records", out=out, stderr=err)
        # (the shutdown's own epoch record is the one not under a tree head)
        check(max(e["seq"] for e in log) <= out["covered"],
              "every access record under a signed tree head", out=out)
    finally:
        if d:
            d.close()
        if acc:
            acc.close()
        lab.__exit__(None, None, None)


@test("e2e/access_refusals_past_the_rate_limit_are_counted")
def access_flood():
    """Anyone may connect: a flood of refused requests is recorded one by
    one only up to the burst, then counted, and the count is sealed too."""
    acc = Access("admin: nosuchuser\n")
    d = Daemon(acc.daemon_args())
    try:
        d.start()
        n = 60
        for _ in range(n):
            # root over the socket, refused for --store: a refusal each time
            check_eq(raw_request(acc.sock, [b"sessions", b"--store=/tmp"]), DENIED,
                     "refused")
        check_eq(d.stop(), 0, "sealtraild exits cleanly", log=d.log())
        with open(d.log_path, errors="replace") as f:
            full = f.read()
        check("counting them" in full, "the daemon says it counts", log=full[-2000:])
        log = [e for e in d.cli_json("access-log") if e["uid"] == 0]
        single = [e for e in log if "requests" not in e]
        summed = [e for e in log if "requests" in e]
        check(20 <= len(single) < n, "the burst is recorded one by one, not all of it",
              single=len(single))
        check(summed and all(e["decision"] == "denied" and "not recorded one by one"
                             in e["reason"] for e in summed),
              "the rest is summed up in denied records that say so", summed=summed)
        check_eq(len(single) + sum(e["requests"] for e in summed), n,
                 "every refused request is accounted for")
        rc, out, err = d.verify()
        check_eq(rc, 0, "verify passes", out=out, stderr=err)
    finally:
        d.close()
        acc.close()
