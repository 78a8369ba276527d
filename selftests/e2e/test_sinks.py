"""Checkpoints leave the host (issue #3 item 4): sealtraild gives every
signed checkpoint to commands, to syslog and to files, and the auditor's
`sealtrail verify --against` accepts what each of them received. A
command that fails or hangs is logged with what happened and never stops
recording; it leaves neither zombies nor descriptors behind."""

import os
import shutil
import socket
import tempfile
import threading

from harness import Daemon, check, check_eq, client_port, test, wait_for
from sshlab import PtySession, SshLab

DASH = "\u2014 "


class SyslogListener:
    """A datagram socket where sealtraild's syslog sink is pointed for the
    test (SEALTRAIL_SYSLOG_SOCKET): the system logger is left alone."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.messages = []
        self.stopped = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopped:
            try:
                self.messages.append(self.sock.recv(65536).decode())
            except socket.timeout:
                continue
            except OSError:
                break

    def close(self):
        self.stopped = True
        self.thread.join(5)
        self.sock.close()


def notes_in(text):
    """The signed notes in a file of appended notes, in order."""
    notes, cur = [], []
    for line in text.splitlines(keepends=True):
        cur.append(line)
        if line.startswith(DASH):
            notes.append("".join(cur))
            cur = []
    return notes


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def children_of(pid):
    """(pid, state, comm) of pid's child processes."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid:
            found.append((int(entry), fields[0], stat[stat.index("(") + 1:stat.rindex(")")]))
    return found


def zombies_of(pid):
    return [c for c in children_of(pid) if c[1] == "Z"]


def fds_of(pid):
    try:
        return {int(n): os.readlink(f"/proc/{pid}/fd/{n}") for n in os.listdir(f"/proc/{pid}/fd")}
    except OSError:
        return None




def record_session(lab, d, u, marker):
    with PtySession(lab.ssh_argv(u)) as s:
        s.expect(b"$ ")
        port = client_port(s.pid)
        s.send(b"echo " + marker + b"\n")
        s.expect(marker + b"\n")
        s.send(b"exit\n")
        check_eq(s.wait_exit(), 0, "ssh exit status")
    sess = d.session_of_port(port)
    check(marker in d.export(sess["id"], "--format", "raw"), "session output stored",
          session=sess)
    return sess


@test("e2e/checkpoint_sinks_command_syslog_file")
def sinks():
    work = tempfile.mkdtemp(prefix="st-sinks-")
    try:
        sinks_story(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def sinks_story(work):
    cmd_notes = os.path.join(work, "command.notes")
    files = [os.path.join(work, "a.notes"), os.path.join(work, "b.notes")]
    syslog = SyslogListener(os.path.join(work, "log"))
    args = ["--checkpoint-command", f"cat >> {cmd_notes}",
            "--checkpoint-command", "cat > /dev/null; exit 7",
            "--checkpoint-command", "sleep 60",
            "--checkpoint-syslog",
            "--checkpoint-file", files[0], "--checkpoint-file", files[1]]
    try:
        with SshLab(None, use_pam=True) as lab, \
                Daemon(args, env={"SEALTRAIL_SYSLOG_SOCKET": syslog.path}) as d:
            u = lab.add_user("stsinks")
            d.wait_listener(lab.pid)
            pinned = os.path.join(work, "first.pub")
            shutil.copy(os.path.join(d.store, "keys", "first.pub"), pinned)

            record_session(lab, d, u, b"FIRST" + os.urandom(4).hex().encode())
            # the session end closed an epoch: its checkpoint went to every sink
            wait_for(lambda: notes_in(read(cmd_notes)), 15, "a note from the command")
            wait_for(lambda: "exited with status 7" in d.log(), 15,
                     "the failing command logged with its exit status")
            # the hanging one while it runs, sh and sleep: their descriptors
            def hanging():
                for pid, state, comm in children_of(d.proc.pid):
                    sleeps = [c for c in children_of(pid) if c[2] == "sleep"]
                    got = [(p, fds_of(p)) for p in (pid, sleeps[0][0])] if sleeps else []
                    if comm == "sh" and got and all(f is not None for _, f in got):
                        return got
                return None
            for pid, got in wait_for(hanging, 15, "the hanging command to run"):
                check_eq(sorted(got), [0, 1, 2],
                         "a command gets stdin, stdout and stderr, no other descriptor",
                         pid=pid, fds=got)
                check(got[0].startswith("pipe:"), "the note comes on a pipe", fds=got)
            wait_for(lambda: "still ran at its timeout: killed" in d.log(), 15,
                     "the hanging command killed at its 5 s timeout")

            # recording goes on after them, and no zombie stays behind
            record_session(lab, d, u, b"SECOND" + os.urandom(4).hex().encode())
            wait_for(lambda: not zombies_of(d.proc.pid), 5, "no zombie children")
            check(d.proc.poll() is None, "daemon running", log=d.log())

            check_eq(d.stop(), 0, "clean stop", log=d.log())
            latest = d.cli("checkpoint")
            notes = notes_in(read(files[0]))
            check(len(notes) >= 3, "session ends and shutdown: several notes", notes=notes)
            check_eq(notes[-1], latest, "the last note in the file is the latest checkpoint")
            check_eq(notes_in(read(files[1])), notes, "the second file holds the same notes")
            # a burst of checkpoints may find every run of a command busy: then the
            # newest waits and replaces older waiting ones, so the latest always arrives
            cmd = notes_in(read(cmd_notes))
            check(set(cmd) <= set(notes), "the command got notes of this store",
                  extra=set(cmd) - set(notes))
            check(latest in cmd, "the shutdown checkpoint reached the command before exit",
                  latest=latest)

            for path, n in ((cmd_notes, len(cmd)), (files[0], len(notes))):
                rc, out, err = d.verify("--pubkey", pinned, "--against", path)
                check_eq(rc, 0, f"verify --against {os.path.basename(path)}", out=out,
                         stderr=err)
                check_eq(out["checkpoints"], n, "every note checked", out=out)

            # syslog: one message per checkpoint, pasted back as they are
            syslog_file = os.path.join(work, "syslog.txt")
            wait_for(lambda: len(syslog.messages) >= len(notes), 5, "syslog messages")
            msgs = list(syslog.messages)
            check_eq(len(msgs), len(notes), "one syslog message per checkpoint")
            check(all(m.startswith("<85>") and " sealtraild[" in m and
                      " sealtrail-checkpoint store=" in m and "\n" not in m for m in msgs),
                  "authpriv.notice, one line, tagged", first=msgs[0])
            with open(syslog_file, "w") as f:
                f.write("".join(m + "\n" for m in msgs))
            rc, out, err = d.verify("--pubkey", pinned, "--against", syslog_file)
            check_eq(rc, 0, "verify --against the syslog lines", out=out, stderr=err)
            check_eq(out["checkpoints"], len(notes), "every syslog line checked", out=out)
            decoded = d.cli("checkpoint", "--decode", syslog_file)
            check_eq(sorted(notes_in(decoded)), sorted(notes),
                     "checkpoint --decode turns the lines back into the notes")
    finally:
        syslog.close()
