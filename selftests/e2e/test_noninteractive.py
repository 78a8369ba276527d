"""Logins without a pty are sessions too: `ssh host cmd`, `ssh -T host bash`,
sftp/scp, rsync, and port forwards, with UsePAM yes and no."""

import contextlib
import hashlib
import os
import select
import shutil
import socket
import subprocess
import threading

from harness import Daemon, check, check_eq, scratch_dir, test, wait_for
from sshlab import SshLab

CAP = 8 << 20


def for_both_pam_modes(name):
    def register(fn):
        for use_pam in (True, False):
            test(f"e2e/{'pam' if use_pam else 'nopam'}/{name}")(
                lambda fn=fn, use_pam=use_pam: fn(use_pam))
        return fn
    return register


def random_file(work, name, size):
    """A file of size random bytes in work: (path, bytes, SHA-256 hex)."""
    data = os.urandom(size)
    path = os.path.join(work, name)
    with open(path, "wb") as f:
        f.write(data)
    return path, data, hashlib.sha256(data).hexdigest()


def client_opts(u):
    """ssh, scp, sftp and rsync -e options: u's key, no config, no questions."""
    return ["-i", u.key_path, "-F", "/dev/null", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
            "-o", "LogLevel=ERROR"]


@contextlib.contextmanager
def recording(use_pam, user, daemon_args=(), sftp=None, extra_config=()):
    """A lab sshd with one user, and sealtraild recording it."""
    lab = SshLab(None, use_pam=use_pam, extra_config=extra_config,
                 **({"sftp": sftp} if sftp else {}))
    with lab, Daemon(daemon_args) as d:
        u = lab.add_user(user)
        d.wait_listener(lab.pid)
        yield lab, d, u


def ended_session_of(d, user, **match):
    def pred(s):
        return (s["user"] == user and s["end"] is not None and
                all(s.get(k) == v for k, v in match.items()))
    return d.wait_session(f"ended session of {user} {match}", pred, timeout=60)


@for_both_pam_modes("exec_command_output_and_exit_code")
def exec_command(use_pam):
    with recording(use_pam, "stexec") as (lab, d, u):
        cmd = "echo MARK; id; echo oops >&2; exit 3"
        p = subprocess.run(lab.ssh_argv(u, cmd, tty=False), capture_output=True, timeout=60)
        check_eq(p.returncode, 3, "ssh exit status", stderr=p.stderr)
        sess = ended_session_of(d, u.name)
        check_eq(sess["kind"], "exec", "kind", session=sess)
        check_eq(sess["command"], cmd, "command", session=sess)
        check_eq(sess["uid"], u.uid, "person", session=sess)
        check_eq(sess["term"], None, "no terminal, no TERM", session=sess)
        check_eq(d.export(sess["id"], "--format", "raw", "--stream", "stdout"), p.stdout,
                 "stdout byte-exact")
        check_eq(d.export(sess["id"], "--format", "raw", "--stream", "stderr"), p.stderr,
                 "stderr byte-exact")
        check_eq(d.cli("replay", sess["id"], "--speed", "0", binary=True).stdout,
                 p.stdout + p.stderr, "replay prints the command's output")
        events = d.events(sess["id"])
        shell = [e for e in events if e["type"] == "exec" and e.get("argv", [])[1:] == ["-c", cmd]]
        check_eq(len(shell), 1, "the login shell's exec with the command")
        exits = {e["pid"]: e["status"] for e in events if e["type"] == "exit"}
        check_eq(exits.get(shell[0]["pid"]), 3 << 8, "exit status 3 recorded")
        def mine(kind):  # other sshds on this machine may be recorded too
            return [x for x in d.sessions("--kind", kind) if x["user"] == u.name]
        check_eq(len(mine("exec")), 1, "--kind exec")
        check_eq(len(mine("shell")), 0, "--kind shell")


@for_both_pam_modes("big_output_capped_with_sha256")
def big_output(use_pam):
    with recording(use_pam, "stbig") as (lab, d, u):
        size = 50 << 20
        p = subprocess.run(lab.ssh_argv(u, f"head -c {size} /dev/urandom", tty=False),
                           capture_output=True, timeout=300)
        check_eq(len(p.stdout), size, "client got 50 MiB")
        sess = ended_session_of(d, u.name)
        check_eq(sess["bytes_out"], size, "bytes_out counts the whole stream", session=sess)
        check_eq(sess["lost_events"], 0, "no losses", session=sess)
        events = d.events(sess["id"])
        ends = [e for e in events if e["type"] == "stream_end" and e["stream"] == 3]
        check_eq(len(ends), 1, "one stream_end for stdout")
        check_eq(ends[0]["bytes"], size, "stream size")
        all_ends = [e for e in events if e["type"] == "stream_end"]
        check_eq(sum(e["stored"] for e in all_ends), CAP, "stored up to the session's cap",
                 streams=all_ends)
        check_eq(ends[0]["sha256"], hashlib.sha256(p.stdout).hexdigest(), "SHA-256 of the stream")
        capped = [e for e in events if e["type"] == "capped"]
        check_eq(len(capped), 1, "one capped record")
        stored = d.export(sess["id"], "--format", "raw", "--stream", "stdout")
        check_eq(len(stored), ends[0]["stored"], "stored stdout bytes")
        check(stored == p.stdout[:len(stored)], "the stored part is the stream's beginning")


@for_both_pam_modes("bash_fed_on_stdin")
def bash_stdin(use_pam):
    with recording(use_pam, "ststdin") as (lab, d, u):
        script = b"echo one\nenv ST_MARK=stdin true\nexit 0\n"
        p = subprocess.run(lab.ssh_argv(u, "bash", tty=False), input=script,
                           capture_output=True, timeout=60)
        check_eq(p.returncode, 0, "exit status", stderr=p.stderr)
        sess = ended_session_of(d, u.name)
        check_eq(sess["kind"], "exec", "kind", session=sess)
        check_eq(d.export(sess["id"], "--format", "raw", "--stream", "stdin"), script,
                 "stdin byte-exact")
        check_eq(d.export(sess["id"], "--format", "raw", "--stream", "stdout"), p.stdout,
                 "stdout byte-exact")
        execs = [e["argv"] for e in d.events(sess["id"]) if e["type"] == "exec"]
        check(["env", "ST_MARK=stdin", "true"] in execs, "commands from stdin as execs",
              execs=execs)


@for_both_pam_modes("sftp_and_scp_are_subsystem_sessions")
def sftp(use_pam):
    with recording(use_pam, "stsftp") as (lab, d, u):
        work = scratch_dir("st-sftp-")
        src = os.path.join(work, "up.bin")
        with open(src, "wb") as f:
            f.write(os.urandom(300000))
        os.chmod(work, 0o755)
        batch = os.path.join(work, "batch")
        with open(batch, "w") as f:
            f.write(f"put {src} up.bin\nget up.bin {work}/down.bin\n")
        ssh = lab.ssh_argv(u, tty=False)
        # sftp and scp take the ssh options, not the ssh command line
        opts = [a for a in ssh[1:-1] if a not in ("-T", "-e", "none")]
        opts = [o for i, o in enumerate(opts) if not (opts[i - 1:i] == ["-e"])]
        p = subprocess.run(["sftp", "-b", batch, "-P", str(lab.port)] +
                           [o for o in opts if o not in ("-p", str(lab.port))] +
                           [f"{u.name}@{lab.host}"], capture_output=True, timeout=60)
        check_eq(p.returncode, 0, "sftp batch", stderr=p.stderr)
        with open(src, "rb") as a, open(os.path.join(work, "down.bin"), "rb") as b:
            check(a.read() == b.read(), "round trip")
        sess = ended_session_of(d, u.name)
        check_eq(sess["kind"], "subsystem", "sftp session kind", session=sess)
        check(sess["bytes_in"] >= 300000 and sess["bytes_out"] >= 300000,
              "bytes each way counted", session=sess)
        p = subprocess.run(["scp", "-P", str(lab.port)] +
                           [o for o in opts if o not in ("-p", str(lab.port))] +
                           [src, f"{u.name}@{lab.host}:scp.bin"], capture_output=True,
                           timeout=60)
        check_eq(p.returncode, 0, "scp upload", stderr=p.stderr)
        wait_for(lambda: len([s for s in d.sessions("--kind", "subsystem")
                              if s["user"] == u.name and s["end"]]) == 2, 60,
                 "scp (sftp protocol) recorded as a second subsystem session")


@for_both_pam_modes("port_forward_channels")
def forward(use_pam):
    with recording(use_pam, "stfwd") as (lab, d, u), socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        target = srv.getsockname()[1]
        got = []

        def serve():
            c, _ = srv.accept()
            data = b""
            while len(data) < 5000:
                chunk = c.recv(65536)
                if not chunk:
                    break
                data += chunk
            got.append(data)
            c.sendall(b"R" * 12345)
            c.close()

        srv.settimeout(60)
        t = threading.Thread(target=serve, daemon=True)
        t.start()
        from sshlab import free_port
        local = free_port()
        ssh = subprocess.Popen(lab.ssh_argv(u, tty=False, extra=(
            "-N", "-L", f"{local}:127.0.0.1:{target}", "-o", "ExitOnForwardFailure=yes")),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        live = d.wait_session("live forward session of kind forward",
                              lambda s: s["user"] == u.name and s["end"] is None and
                              s["kind"] == "forward", 30)
        check_eq(live["uid"], u.uid, "person of a login that runs no program", session=live)

        def connect():
            try:
                return socket.create_connection(("127.0.0.1", local), timeout=5)
            except OSError:
                return None
        c = wait_for(connect, 20, "the forward to accept")
        c.sendall(b"S" * 5000)
        received = b""
        while True:
            chunk = c.recv(65536)
            if not chunk:
                break
            received += chunk
        c.close()
        t.join(10)
        check_eq(len(received), 12345, "bytes back through the forward")
        ssh.terminate()
        ssh.wait(20)
        sess = ended_session_of(d, u.name)
        events = d.events(sess["id"])
        opens = [e for e in events if e["type"] == "channel_open"]
        closes = [e for e in events if e["type"] == "channel_close"]
        check_eq(len(opens), 1, "one channel", events=[e["type"] for e in events])
        check_eq((opens[0]["dest_ip"], opens[0]["dest_port"]), ("127.0.0.1", target),
                 "destination")
        check_eq(len(closes), 1, "channel closed")
        check_eq(closes[0]["bytes_sent"], 5000, "bytes to the destination")
        check_eq(closes[0]["bytes_recv"], 12345, "bytes from the destination")
        check_eq(sess["kind"], "forward", "kind at the end", session=sess)


def file_records(d, sid):
    return [e for e in d.events(sid) if e["type"] == "file"]


@for_both_pam_modes("transfers_summarised_per_file")
def transfers(use_pam):
    """scp (SFTP protocol and legacy -O), sftp and rsync: one record per
    file with direction, size and SHA-256, and no payload in the store."""
    with recording(use_pam, "stxfer") as (lab, d, u):
        work = scratch_dir("st-xfer-", 0o755)
        src, data, digest = random_file(work, "payload.bin", 2 << 20)
        ssh = lab.ssh_argv(u, tty=False)
        opts = ["-P", str(lab.port)] + client_opts(u)
        del ssh
        target = f"{u.name}@{lab.host}"

        def run(argv, what):
            p = subprocess.run(argv, capture_output=True, timeout=120)
            check_eq(p.returncode, 0, what, stderr=p.stderr)

        def session_files(before, want):
            sessions = wait_for(lambda: [s for s in d.sessions() if s["user"] == u.name and
                                         s["end"] and s["id"] not in before] or None,
                                60, "the transfer session to end")
            check_eq(len(sessions), 1, "one new session", sessions=sessions)
            # file records follow once their hash is done, possibly after the end
            files = wait_for(lambda: [f for f in file_records(d, sessions[0]["id"])
                                      if f["path"] in want] and
                             file_records(d, sessions[0]["id"]), 60, f"file records for {want}")
            return sessions[0], files

        def ids():
            return {s["id"] for s in d.sessions()}

        before = ids()
        run(["scp"] + opts + [src, f"{target}:up-sftp.bin"], "scp upload (SFTP protocol)")
        sess, files = session_files(before, {f"{u.home}/up-sftp.bin"})
        check_eq(sess["kind"], "subsystem", "scp uses the sftp subsystem", session=sess)
        up = [f for f in files if f["path"] == f"{u.home}/up-sftp.bin"]
        check_eq(len(up), 1, "file record for the upload", files=files)
        check_eq((up[0]["direction"], up[0]["bytes"], up[0]["size"], up[0]["sha256"]),
                 ("upload", len(data), len(data), digest), "upload summary")
        check(sess["bytes_in"] >= len(data), "stream bytes counted", session=sess)
        stored = d.export(sess["id"], "--format", "raw", "--stream", "stdin")
        check_eq(len(stored), 0, "no payload stored for a transfer")

        before = ids()
        run(["scp", "-O"] + opts + [f"{target}:up-sftp.bin", os.path.join(work, "down.bin")],
            "legacy scp download")
        sess, files = session_files(before, {f"{u.home}/up-sftp.bin"})
        check_eq(sess["kind"], "exec", "legacy scp runs scp -f", session=sess)
        down = [f for f in files if f["path"] == f"{u.home}/up-sftp.bin"]
        check_eq(len(down), 1, "file record for the download", files=files)
        check_eq((down[0]["direction"], down[0]["bytes"], down[0]["sha256"]),
                 ("download", len(data), digest), "download summary")
        # a transfer's stream is counted in the kernel, not copied to the collector
        ends = {e["stream"]: e for e in d.events(sess["id"]) if e["type"] == "stream_end"}
        check(3 in ends and ends[3]["bytes"] >= len(data), "stdout size counted", ends=ends)
        check("sha256" not in ends[3] and "counted in the kernel" in ends[3].get("reason", ""),
              "no stream hash for a transfer, and why", end=ends[3])
        check(sess["bytes_out"] >= len(data), "session bytes_out counted", session=sess)

        tree = os.path.join(work, "tree")
        os.makedirs(os.path.join(tree, "sub"))
        for name, size in (("a.txt", 1000), ("sub/b.bin", 70000)):
            with open(os.path.join(tree, name), "wb") as f:
                f.write(os.urandom(size))
        before = ids()
        rsh = "ssh " + " ".join(o if o != "-P" else "-p" for o in opts)
        run(["rsync", "-a", "-e", rsh, tree + "/", f"{target}:tree/"], "rsync upload")
        want = {f"{u.home}/tree/a.txt", f"{u.home}/tree/sub/b.bin"}
        sess, files = session_files(before, want)
        files = wait_for(lambda: (lambda fs: fs if want <= {f["path"] for f in fs} else None)(
            file_records(d, sess["id"])), 60, "both rsync file records")
        check(sess["command"].startswith("rsync --server"), "rsync command", session=sess)
        got = {f["path"]: f for f in files if f["direction"] == "upload"}
        for name, size in (("a.txt", 1000), ("sub/b.bin", 70000)):
            with open(os.path.join(tree, name), "rb") as f:
                want = hashlib.sha256(f.read()).hexdigest()
            rec = got.get(f"{u.home}/tree/{name}")
            check(rec is not None, f"rsync file record for {name}", files=sorted(got))
            check_eq((rec["bytes"], rec["sha256"]), (size, want), f"rsync summary of {name}")


def sftp_round_trip(lab, d, u, use_pam, remote, bastion_path, listing=None):
    """Upload a file with `sftp` to remote (its name as the sftp user sees
    it), download it again, and check the session the collector recorded:
    an internal-sftp subsystem session of u, with an upload and a download
    record of bastion_path (where the file lies on the bastion)."""
    work = scratch_dir("st-isftp-", 0o755)
    src, data, digest = random_file(work, "up.bin", (1 << 20) + 4321)
    batch = os.path.join(work, "batch")
    with open(batch, "w") as f:
        f.write(f"put {src} {remote}\nget {remote} {work}/down.bin\n")
        if listing:
            f.write(f"ls -l {listing}\n")
    opts = ["-P", str(lab.port)] + client_opts(u)
    p = subprocess.run(["sftp", "-b", batch] + opts + [f"{u.name}@{lab.host}"],
                       capture_output=True, timeout=120)
    check_eq(p.returncode, 0, "sftp batch through internal-sftp", stderr=p.stderr)
    with open(os.path.join(work, "down.bin"), "rb") as f:
        check(f.read() == data, "round trip")
    check(os.path.isfile(bastion_path), f"the upload lies at {bastion_path}")

    sess = ended_session_of(d, u.name)
    execs = [e.get("filename") for e in d.events(sess["id"]) if e["type"] == "exec"]
    check(not [f for f in execs if f and "sftp" in f], "sshd exec'd no sftp-server",
          execs=execs)
    check_eq(sess["kind"], "subsystem", "internal-sftp session kind", session=sess)
    check_eq(sess["command"], "internal-sftp", "command", session=sess)
    check_eq(sess["uid"], u.uid, "person", session=sess)
    if use_pam:
        check_eq(sess["loginuid"], u.uid, "loginuid", session=sess)

    def both():
        fs = [f for f in file_records(d, sess["id"]) if f["path"] == bastion_path]
        return fs if {f["direction"] for f in fs} == {"upload", "download"} else None
    files = wait_for(both, 60, f"upload and download records of {bastion_path}")
    check_eq(len(files), 2, "one record per transfer", files=files,
             all_files=file_records(d, sess["id"]))
    by_dir = {f["direction"]: f for f in files}
    up, down = by_dir["upload"], by_dir["download"]
    check_eq((up["bytes"], up["size"], up["sha256"]), (len(data), len(data), digest),
             "upload summary", file=up)
    check_eq((down["bytes"], down["size"], down["sha256"]), (len(data), len(data), digest),
             "download summary", file=down)
    check(sess["bytes_in"] >= len(data) and sess["bytes_out"] >= len(data),
          "stream bytes counted each way", session=sess)
    for stream in ("stdin", "stdout"):
        check_eq(len(d.export(sess["id"], "--format", "raw", "--stream", stream)), 0,
                 f"no {stream} payload stored for a transfer")


@for_both_pam_modes("internal_sftp_is_a_subsystem_with_file_records")
def internal_sftp(use_pam):
    """`Subsystem sftp internal-sftp`: sshd execs nothing, a forked sshd
    child serves SFTP in-process. The login is still a `subsystem` session of
    its person, with one record per file like an exec'd sftp-server's."""
    with recording(use_pam, "stisftp", sftp="internal-sftp") as (lab, d, u):
        sftp_round_trip(lab, d, u, use_pam, "isftp-up.bin", f"{u.home}/isftp-up.bin")


@for_both_pam_modes("internal_sftp_in_a_chroot_names_files_where_they_lie")
def internal_sftp_chroot(use_pam):
    """The usual bastion set-up, ChrootDirectory and ForceCommand
    internal-sftp: the user sees /drop/f.bin, the file records name the file
    where it lies on the bastion (the kernel walks the path past the chroot),
    and that is the file the collector hashes."""
    # sshd wants every component of the chroot root-owned and not writable
    # by others: /run is, /tmp is not
    root = scratch_dir("st-chroot-", 0o755, parent="/run")
    with recording(use_pam, "stchroot", sftp="internal-sftp",
                      extra_config=(f"ChrootDirectory {root}", "ForceCommand internal-sftp")) as (lab, d, u):
        drop = os.path.join(root, "drop")
        os.mkdir(drop)
        os.chown(drop, u.uid, u.gid)
        # names for `ls -l` inside the chroot: the library reads the chroot's files
        os.mkdir(os.path.join(root, "etc"))
        for name in ("passwd", "group"):
            shutil.copy(f"/etc/{name}", os.path.join(root, "etc", name))
        sftp_round_trip(lab, d, u, use_pam, "/drop/f.bin", f"{drop}/f.bin", listing="/drop")
        sess = ended_session_of(d, u.name)
        inside = [f["path"] for f in file_records(d, sess["id"])
                  if f["path"].startswith(os.path.join(root, "etc"))]
        check_eq(inside, [], "the chroot's own /etc/passwd read for `ls -l` is no transfer")


@test("e2e/file_paths_resolved_in_the_kernel_when_the_collector_lags")
def paths_when_lagging():
    """The collector reads events late (here: 300 ms after each drain), when
    rsync and scp have long exited and their /proc entries are gone: the
    paths of their files and renames come from the kernel's walk of the
    dentries at the time of the call."""
    with recording(True, "stlag", ("--consumer-delay-ms", "300")) as (lab, d, u):
        work = scratch_dir("st-lag-", 0o755)
        opts = client_opts(u)
        target = f"{u.name}@{lab.host}"
        tree = os.path.join(work, "tree")
        os.makedirs(os.path.join(tree, "deep", "er"))
        for name in ("top.txt", "deep/er/leaf.bin"):
            with open(os.path.join(tree, name), "wb") as f:
                f.write(os.urandom(5000))
        rsh = "ssh -p %d %s" % (lab.port, " ".join(opts))
        p = subprocess.run(["rsync", "-a", "-e", rsh, tree + "/", f"{target}:lagtree/"],
                           capture_output=True, timeout=120)
        check_eq(p.returncode, 0, "rsync upload", stderr=p.stderr)
        p = subprocess.run(["scp", "-O", "-P", str(lab.port)] + opts +
                           [os.path.join(tree, "top.txt"), f"{target}:lagtree/deep/copy.txt"],
                           capture_output=True, timeout=120)
        check_eq(p.returncode, 0, "legacy scp upload", stderr=p.stderr)
        want = {f"{u.home}/lagtree/top.txt", f"{u.home}/lagtree/deep/er/leaf.bin",
                f"{u.home}/lagtree/deep/copy.txt"}

        def paths():
            got = set()
            for s in d.sessions():
                if s["user"] == u.name:
                    got |= {f["path"] for f in file_records(d, s["id"])}
            return got if want <= got else None
        wait_for(paths, 60, f"file records for {sorted(want)}")
        got = paths()
        check(not [x for x in got if not x.startswith("/")], "every path is absolute",
              paths=sorted(got))


@test("e2e/transfer_past_the_file_limit_leaves_a_gap")
def many_files():
    """rsync of more files than the collector follows at once (4096): the
    ones past the limit are not summarised, and a gap record says how many."""
    with recording(True, "stmany") as (lab, d, u):
        work = scratch_dir("st-many-", 0o755)
        tree = os.path.join(work, "tree")
        os.makedirs(tree)
        n = 4200
        for i in range(n):
            with open(os.path.join(tree, f"f{i:05d}"), "wb") as f:
                f.write(b"x%d\n" % i)
        opts = client_opts(u)
        rsh = "ssh -p %d %s" % (lab.port, " ".join(opts))
        p = subprocess.run(["rsync", "-a", "-e", rsh, tree + "/", f"{u.name}@{lab.host}:many/"],
                           capture_output=True, timeout=300)
        check_eq(p.returncode, 0, "rsync upload", stderr=p.stderr)
        sess = ended_session_of(d, u.name)

        def gap():
            gs = [e for e in d.events(sess["id"])
                  if e["type"] == "gap" and "files of a transfer" in e.get("reason", "")]
            return gs or None
        gaps = wait_for(gap, 60, "the gap record of the files not followed")
        dropped = sum(g["lost_events"] for g in gaps)
        files = [f for f in file_records(d, sess["id"]) if f["path"].startswith(f"{u.home}/many/")]
        # 4200 files make ~20 MB of open, close and rename events within a
        # second; when the 16 MiB ring buffer overflows (seen about once in
        # ten runs), the events it could not take are counted in a gap of
        # their own, and a file whose events were lost is counted there
        all_gaps = [e for e in d.events(sess["id"]) if e["type"] == "gap"]
        ring_lost = sum(g["lost_events"] for g in all_gaps
                        if g.get("reason") == "ring buffer full")
        check(dropped >= 1, "files past the limit are counted in a gap", gaps=gaps)
        check(len(files) <= 4096, "at most 4096 files followed", files=len(files))
        check(len(files) + dropped + ring_lost >= n, "every file is summarised or counted",
              files=len(files), dropped=dropped, ring_lost=ring_lost, gaps=all_gaps)
        if ring_lost:
            print(f"    note: the ring buffer lost {ring_lost} events (counted)")


@test("e2e/file_swapped_after_its_upload_is_not_hashed")
def swapped_file():
    """Files are hashed as root, by the path the user gave, when the
    transfer program exits. Upload d/shadow, then (same sftp session) move
    d away and make d a symlink to /etc: the hasher must not hash
    /etc/shadow, and the record says why."""
    with recording(True, "stswap") as (lab, d, u):
        work = scratch_dir("st-swap-", 0o755)
        src, data, digest = random_file(work, "shadow", 4096)
        batch = os.path.join(work, "batch")
        with open(batch, "w") as f:
            f.write(f"mkdir d\nput {src} d/shadow\nrename d d.moved\nsymlink /etc d\nbye\n")
        p = subprocess.run(["sftp", "-b", batch, "-P", str(lab.port)] + client_opts(u) +
                           [f"{u.name}@{lab.host}"], capture_output=True, timeout=120)
        check_eq(p.returncode, 0, "sftp upload, then the swap", stderr=p.stderr)
        check(os.path.islink(os.path.join(u.home, "d")), "d is a symlink to /etc now")
        sess = ended_session_of(d, u.name)
        files = wait_for(lambda: [f for f in file_records(d, sess["id"])
                                  if f["path"] == f"{u.home}/d/shadow"] or None,
                         60, "the file record of d/shadow")
        check_eq(len(files), 1, "one record for the upload", files=files)
        check("sha256" not in files[0], "no hash of what the path names now", file=files[0])
        check_eq(files[0].get("reason"),
                 "not hashed: the path names another file than the one transferred",
                 "and why", file=files[0])
        check_eq((files[0]["direction"], files[0]["bytes"]), ("upload", len(data)),
                 "what was moved is still counted")


@for_both_pam_modes("remote_forward_channels")
def remote_forward(use_pam):
    """ssh -N -R: sshd listens on the bastion; connections to that port are
    channels too (who connected, to which port, bytes each way)."""
    with recording(use_pam, "strfwd") as (lab, d, u), socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        srv.settimeout(60)
        target = srv.getsockname()[1]

        def serve():
            try:
                c, _ = srv.accept()
            except OSError:
                return
            data = b""
            while len(data) < 3000:
                chunk = c.recv(65536)
                if not chunk:
                    break
                data += chunk
            c.sendall(b"Q" * 7000)
            c.close()

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        from sshlab import free_port
        rport = free_port()
        ssh = subprocess.Popen(lab.ssh_argv(u, tty=False, extra=(
            "-N", "-R", f"127.0.0.1:{rport}:127.0.0.1:{target}",
            "-o", "ExitOnForwardFailure=yes")),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

        def connect():
            try:
                return socket.create_connection(("127.0.0.1", rport), timeout=5)
            except OSError:
                return None
        c = wait_for(connect, 20, "the remote forward to listen")
        peer_port = c.getsockname()[1]
        c.sendall(b"P" * 3000)
        received = b""
        while True:
            chunk = c.recv(65536)
            if not chunk:
                break
            received += chunk
        c.close()
        check_eq(len(received), 7000, "bytes back through the remote forward")
        ssh.terminate()
        ssh.wait(20)
        sess = ended_session_of(d, u.name)
        check_eq(sess["kind"], "forward", "kind", session=sess)
        events = d.events(sess["id"])
        opens = [e for e in events if e["type"] == "channel_open"]
        closes = [e for e in events if e["type"] == "channel_close"]
        check_eq(len(opens), 1, "one channel", events=[e["type"] for e in events])
        check_eq((opens[0]["direction"], opens[0]["local_port"], opens[0]["source_ip"],
                  opens[0]["source_port"]), ("accepted", rport, "127.0.0.1", peer_port),
                 "who connected to which forwarded port")
        check_eq(len(closes), 1, "channel closed")
        check_eq((closes[0]["bytes_recv"], closes[0]["bytes_sent"]), (3000, 7000),
                 "bytes each way (recv: from the connecting peer)")


@test("e2e/capture_cap_is_configurable")
def capture_cap_option():
    lab = SshLab(None, use_pam=False)
    with lab, Daemon(["--capture-cap-bytes", "1000"]) as d:
        u = lab.add_user("stcap")
        d.wait_listener(lab.pid)
        p = subprocess.run(lab.ssh_argv(u, "head -c 5000 /dev/zero | tr '\\\\0' z", tty=False),
                           capture_output=True, timeout=60)
        check_eq(len(p.stdout), 5000, "client output")
        sess = ended_session_of(d, u.name)
        ends = [e for e in d.events(sess["id"]) if e["type"] == "stream_end"]
        check_eq(sum(e["stored"] for e in ends), 1000, "--capture-cap-bytes 1000 honoured",
                 streams=ends)
        check_eq(sum(e["bytes"] for e in ends if e["stream"] == 3), 5000, "whole stream counted")


def wait_output(p, want, what, timeout=30):
    """Read p's stdout until want appears (never blocking past timeout)."""
    seen = bytearray()

    def more():
        if select.select([p.stdout], [], [], 0.2)[0]:
            seen.extend(p.stdout.read1(4096) or b"")
        return want in seen or None
    wait_for(more, timeout, what)


def say(p, line, want, what):
    """Send line to p's stdin and wait for want on its stdout."""
    p.stdin.write(line)
    p.stdin.flush()
    wait_output(p, want, what)


@contextlib.contextmanager
def adopting(lab, u, what):
    """Start sealtraild now, with a login of u open: (d, its adopted session)."""
    with Daemon() as d:
        d.wait_listener(lab.pid)
        yield d, d.wait_session(what, lambda s: s["user"] == u.name and s["end"] is None)


def sftp_adopted(use_pam, server):
    """sealtraild (re)starts while an sftp session is open, as a WinSCP or
    FileZilla session often is all day: the session is adopted as a
    transfer, and files moved after that get their records, with the
    protocol counted, not stored."""
    lab = SshLab(None, use_pam=use_pam, **({"sftp": server} if server else {}))
    with lab:
        u = lab.add_user("stsftpad")
        work = scratch_dir("st-sftpad-", 0o755)
        src, data, digest = random_file(work, "up.bin", (1 << 20) + 777)
        opts = ["-P", str(lab.port)] + client_opts(u)
        # commands come on stdin, one at a time: the session stays open between them
        p = subprocess.Popen(["sftp", "-b", "-"] + opts + [f"{u.name}@{lab.host}"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        try:
            say(p, b"pwd\n", b"Remote working directory", "sftp logged in")
            with adopting(lab, u, "the open sftp session, adopted") as (d, sess):
                check_eq(sess["kind"], "subsystem", "adopted as a subsystem session",
                         session=sess)
                out, err = p.communicate(
                    f"put {src} up.bin\nget up.bin {work}/down.bin\n".encode(), timeout=120)
                check_eq(p.returncode, 0, "sftp batch", stderr=err)
                sess = ended_session_of(d, u.name)
                bastion = f"{u.home}/up.bin"

                def both():
                    fs = [f for f in file_records(d, sess["id"]) if f["path"] == bastion]
                    return fs if {f["direction"] for f in fs} == {"upload", "download"} else None
                files = wait_for(both, 60, f"upload and download records of {bastion}")
                for f in files:
                    check_eq((f["bytes"], f["sha256"]), (len(data), digest),
                             f"{f['direction']} summary", file=f)
                for stream in ("stdin", "stdout"):
                    check_eq(len(d.export(sess["id"], "--format", "raw", "--stream", stream)),
                             0, f"no {stream} payload stored for a transfer")
                check(sess["bytes_in"] >= len(data) and sess["bytes_out"] >= len(data),
                      "the protocol counted each way", session=sess)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()


@for_both_pam_modes("open_internal_sftp_session_adopted_as_a_transfer")
def internal_sftp_adopted(use_pam):
    sftp_adopted(use_pam, "internal-sftp")


@for_both_pam_modes("open_sftp_server_session_adopted_as_a_transfer")
def sftp_server_adopted(use_pam):
    sftp_adopted(use_pam, None)


@for_both_pam_modes("running_command_adopted_with_its_pipes")
def command_adopted(use_pam):
    """`ssh host cmd` running when sealtraild starts: its pipes to sshd are
    found in /proc, so what it reads and writes from then on is recorded."""
    adopted_command(use_pam, "read a; echo GOT$a; read b; echo GOT$b")


@for_both_pam_modes("running_shell_without_a_pty_adopted")
def shell_adopted(use_pam):
    """`ssh -T host`, a login shell reading commands from a pipe: no command,
    and its streams recorded from the adoption on."""
    adopted_command(use_pam, None)


def adopted_command(use_pam, cmd):
    lab = SshLab(None, use_pam=use_pam)
    with lab:
        u = lab.add_user("stcmdad")
        argv = lab.ssh_argv(u, cmd, tty=False) if cmd else lab.ssh_argv(u, tty=False)
        p = subprocess.Popen(argv, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            say(p, b"one\n" if cmd else b"a=one; echo GOT$a\n", b"GOTone", "the command runs")
            with adopting(lab, u, "the running command, adopted") as (d, sess):
                check_eq((sess["kind"], sess["command"]), ("exec", cmd), "kind and command",
                         session=sess)
                if not cmd:
                    p.stdin.write(b"b=two; echo GOT$b\n")
                    p.stdin.flush()
                    out, err = p.communicate(b"exit\n", timeout=60)
                    check_eq(p.returncode, 0, "ssh exit status", stderr=err)
                    sess = ended_session_of(d, u.name)
                    stdout = d.export(sess["id"], "--format", "raw", "--stream", "stdout")
                    check(stdout == b"GOTtwo\n", "stdout from the adoption on", stdout=stdout)
                    return
                out, err = p.communicate(b"two\n", timeout=60)
                check_eq(p.returncode, 0, "ssh exit status", stderr=err)
                sess = ended_session_of(d, u.name)
                stdout = d.export(sess["id"], "--format", "raw", "--stream", "stdout")
                stdin = d.export(sess["id"], "--format", "raw", "--stream", "stdin")
                check(stdout.endswith(b"GOTtwo\n") and b"GOTone" not in stdout,
                      "stdout from the adoption on", stdout=stdout)
                check_eq(stdin, b"two\n", "stdin from the adoption on")
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()


def lookups_are_not_transfers(server):
    """`ls -l` in sftp makes the server look up user and group names (and
    the time zone): the C library reads /etc/passwd and /etc/group, which
    must not read as downloads. A real download of /etc/passwd still does."""
    with recording(True, "stlookup", sftp=server) as (lab, d, u):
        work = scratch_dir("st-lookup-", 0o755)
        batch = os.path.join(work, "batch")
        with open(batch, "w") as f:
            f.write(f"ls -l /etc\nls -l\nget /etc/passwd {work}/passwd\nls -l /etc\n")
        opts = ["-P", str(lab.port)] + client_opts(u)
        p = subprocess.run(["sftp", "-b", batch] + opts + [f"{u.name}@{lab.host}"],
                           capture_output=True, timeout=120)
        check_eq(p.returncode, 0, "sftp batch", stderr=p.stderr)
        sess = ended_session_of(d, u.name)
        size = os.path.getsize("/etc/passwd")

        def downloaded():
            fs = file_records(d, sess["id"])
            return fs if any(f["path"] == "/etc/passwd" for f in fs) else None
        files = wait_for(downloaded, 60, "the download of /etc/passwd")
        check(len(files) == 1 and files[0]["direction"] == "download" and
              files[0]["bytes"] == size, "one record: the real download, none for lookups",
              files=files)


@test("e2e/sftp_server_lookups_are_not_transfers")
def lookups_sftp_server():
    lookups_are_not_transfers(None)


@test("e2e/internal_sftp_lookups_are_not_transfers")
def lookups_internal_sftp():
    lookups_are_not_transfers("internal-sftp")
