#!/usr/bin/python3
"""Write the seed corpus of fuzz_events (selftests/fuzz/fuzz_events.c): the
ring-buffer events of real kinds of logins, laid out as
include/sealtrail/events.h says, so fuzzing starts from events that reach
the tracker's handlers instead of being refused for their size.

  terminal     a login shell on a pty: fork, exec, environment, output and
               input, a command, a resize, logout
  exec         `ssh host cmd`: the command's pipes
  forward      `ssh -L`: a forwarded connection opened and closed
  sftp         internal-sftp: a file opened, read and closed
  lost-start   events of a session whose start the ring buffer lost
  pty-*        mode 1: pty reads and writes of one login, checked byte for byte
  pipes        mode 2: a command's stdin, stdout and stderr, checked the same way

Run it again after a change to events.h; the files it writes are committed
and are the same at every run.
"""

import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

# events.h
(SESSION_START, SESSION_END, FORK, EXEC, EXIT, TTY, CONNECT, CLOSE, FILE_OPEN, FILE_CLOSE,
 FILE_RENAME, INTERNAL_SFTP, ENV) = range(1, 14)
TTY_IN, TTY_OUT, PIPE_STDIN, PIPE_STDOUT, PIPE_STDERR = range(5)
EXEC_FROM_SSHD, EXEC_STDIN_TTY = 4, 16
DIR_OK = 1
NATURAL = 16  # fuzz_events.c: the event has its type's size

MS = 1000000


def hdr(etype, pid, step_ns=MS, key=1):
    # the fuzzer fixes type and size, maps pid and key, and takes ts as a step
    return struct.pack("<IIQQII", etype, 0, step_ns, key, pid, pid)


def event(etype, body, pid, step_ns=MS, key=1):
    data = hdr(etype, pid, step_ns, key) + body
    return bytes([etype | NATURAL]) + struct.pack("<H", len(data)) + data


def session(etype, pid, key=1, exit_code=0):
    return event(etype, struct.pack("<IiQQ", 7, exit_code, 0, 0), pid, key=key)


def exec_(pid, ppid, path, argv, uid=1000, flags=EXEC_FROM_SSHD, stdio=(0, 0, 0)):
    args = b"".join(a + b"\0" for a in argv)
    cwd = b"u\0home\0"
    body = struct.pack("<10I3QHB5x", ppid, uid, uid, uid, uid, 3, len(args), len(args), flags, 0,
                       *stdio, len(cwd), DIR_OK)
    body += path.ljust(256, b"\0") + cwd.ljust(512, b"\0") + args
    return event(EXEC, body, pid)


def tty(pid, direction, data, rows=24, cols=80, index=3, obj=0, step_ns=MS):
    body = struct.pack("<IIIHHQQ", direction, index, len(data), rows, cols, 0, obj) + data
    return event(TTY, body, pid, step_ns)


def fork(pid, child):
    return event(FORK, struct.pack("<II", child, 0), pid)


def exit_(pid, status):
    return event(EXIT, struct.pack("<iI", status, 0), pid)


def env(pid, entries):
    data = b"".join(e + b"\0" for e in entries)
    return event(ENV, struct.pack("<II", len(data), 0) + data, pid)


def connect(pid, conn_id, port):
    body = struct.pack("<iiHHHBB16sQ", 9, 0, 2, port, 0, 0, 0, bytes([127, 0, 0, 1]), conn_id)
    return event(CONNECT, body, pid)


def close(pid, conn_id, sent, recv):
    return event(CLOSE, struct.pack("<QQQ", conn_id, sent, recv), pid)


def file_event(etype, pid, file_id, path, read=0, written=0):
    d = b"u\0home\0"
    body = struct.pack("<QiIQQii", file_id, 5, 0, read, written, -100, -100)
    body += path.ljust(256, b"\0") + b"".ljust(256, b"\0") + d.ljust(512, b"\0")
    body += b"".ljust(512, b"\0") + struct.pack("<HHBBH", len(d), 0, DIR_OK, 0, 0)
    body += struct.pack("<QII", 1234567 if etype == FILE_OPEN else 0, 27, 0)
    return event(etype, body, pid)


def sftp(pid, ppid):
    return event(INTERNAL_SFTP, struct.pack("<6I3Q", ppid, 1000, 1000, 3, 3, 0, 11, 12, 13), pid)


def seeds():
    sshd, shell, cmd = 0, 1, 2
    out = {}
    out["terminal"] = b"\0" + b"".join([
        session(SESSION_START, sshd),
        fork(sshd, shell),
        exec_(shell, sshd, b"/bin/bash", [b"-bash"], flags=EXEC_FROM_SSHD | EXEC_STDIN_TTY),
        env(shell, [b"TERM=xterm-256color", b"HOME=/home/u", b"LANG=C.UTF-8"]),
        tty(sshd, TTY_OUT, b"u@bastion:~$ "),
        tty(sshd, TTY_IN, b"l"), tty(sshd, TTY_OUT, b"l"),
        tty(sshd, TTY_IN, b"s"), tty(sshd, TTY_OUT, b"s"),
        tty(sshd, TTY_IN, b"\r"),
        fork(shell, cmd),
        exec_(cmd, shell, b"/bin/ls", [b"ls", b"--color=auto"], flags=0),
        tty(sshd, TTY_OUT, b"\r\n\x1b[0m\x1b[01;34mdir\x1b[0m  f\xc3\xa9\r\n"),
        exit_(cmd, 0),
        tty(sshd, TTY_OUT, b"\x1b[?1049h\x1b[H\x1b[2J", rows=50, cols=132),
        tty(sshd, TTY_OUT, b"x" * 4096, rows=50, cols=132, step_ns=2000 * MS),
        tty(sshd, TTY_IN, b"exit\r"),
        exit_(shell, 0),
        session(SESSION_END, sshd, exit_code=255 << 8),
    ])
    out["exec"] = b"\0" + b"".join([
        session(SESSION_START, sshd),
        fork(sshd, shell),
        exec_(shell, sshd, b"/bin/bash", [b"bash", b"-c", b"tar cf - /etc | gzip"],
              stdio=(21, 22, 23)),
        tty(sshd, PIPE_STDIN, b"input", rows=0, cols=0, obj=21),
        tty(sshd, PIPE_STDOUT, b"\x1f\x8b\x08\x00" + bytes(range(256)), rows=0, cols=0, obj=22),
        tty(sshd, PIPE_STDERR, b"tar: Removing leading '/'\n", rows=0, cols=0, obj=23),
        tty(sshd, 6, b"before the exec told which pipe", rows=0, cols=0, obj=24),
        exit_(shell, 2 << 8),
        session(SESSION_END, sshd),
    ])
    out["forward"] = b"\0" + b"".join([
        session(SESSION_START, sshd),
        connect(sshd, 4242, 5432),
        close(sshd, 4242, 1000, 2000),
        connect(sshd, 4343, 22),
        session(SESSION_END, sshd, exit_code=9),
    ])
    out["sftp"] = b"\0" + b"".join([
        session(SESSION_START, sshd),
        fork(sshd, shell),
        sftp(shell, sshd),
        file_event(FILE_OPEN, shell, 0xffff8880deadbeef, b"report.csv"),
        file_event(FILE_CLOSE, shell, 0xffff8880deadbeef, b"report.csv", read=12345),
        file_event(FILE_RENAME, shell, 0, b"a.tmp"),
        exit_(shell, 0),
        session(SESSION_END, sshd),
    ])
    # key 2 is session 3 for the fuzzer, which the fake kernel map knows
    out["lost-start"] = b"\0" + b"".join([
        event(TTY, struct.pack("<IIIHHQQ", TTY_OUT, 3, 13, 24, 80, 0, 0) + b"no start seen",
              sshd, key=2),
        event(EXIT, struct.pack("<iI", 0, 0), cmd, key=2),
        session(SESSION_END, sshd, key=2),
    ])

    def pty(flags, rows, cols, data):
        return bytes([flags, rows, cols]) + struct.pack("<H", len(data)) + data

    out["pty-typing"] = b"\1" + b"".join([
        pty(1 | 4, 24, 80, b"$ "),
        pty(0 | 8, 0, 0, b"e"), pty(1 | 4, 24, 80, b"e"),
        pty(0 | 8, 0, 0, b"\r"), pty(1 | 4, 24, 80, b"\r\nhello\r\n$ "),
        pty(1 | (60 << 2), 40, 100, b"\x1b[8;40;100t"),
        pty(1 | 2 | 4, 40, 100, b"clock went back"),
    ])
    def pipe(flags, data):
        return bytes([flags]) + struct.pack("<H", len(data)) + data

    # mode 2: fd 0/1/2 in bits 0-1 (0 and 1 are stdin), 4: pipe unknown, 8: exec now
    out["pipes"] = b"\2" + b"".join([
        pipe(0 | 0x10, b"stdin before the exec, held\n"),
        pipe(2 | 0x10, b"stdout before the exec\n"),
        pipe(2 | 8 | 0x20, b"after the exec\n"),
        pipe(3 | 0x10, b"an error\n"),
        pipe(2 | 4 | 0x10, b"still unknown to the kernel, known to the collector\n"),
        pipe(2 | 0xf0, bytes(range(256)) * 16),
        pipe(1 | 0x10, b"more stdin"),
    ])
    out["pty-burst"] = b"\1" + b"".join(
        pty(1 | 4, 24, 80, bytes((i + j) % 256 for j in range(4096))) for i in range(20))
    return out


def main():
    d = os.path.join(HERE, "fuzz_events")
    os.makedirs(d, exist_ok=True)
    for name, data in seeds().items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
