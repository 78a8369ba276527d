"""The sealed store, end to end: what sealtraild writes verifies offline,
checkpoints leave the store, restarts keep the chain, and what a user types,
runs or uploads is not readable in the store's files, the index included."""

import os
import subprocess

from harness import Daemon, check, check_eq, client_port, scratch_dir, test, wait_for
from sshlab import PtySession, SshLab



@test("e2e/seal_verify_checkpoints_and_restart")
def seal_story():
    work = scratch_dir("st-seal-")
    sink = os.path.join(work, "checkpoints.txt")
    with SshLab(None, use_pam=True) as lab, \
            Daemon(["--checkpoint-file", sink]) as d:
        u = lab.add_user("stseal")
        d.wait_listener(lab.pid)
        marker = b"TOPSECRET" + os.urandom(4).hex().encode()
        m = marker.decode()
        with PtySession(lab.ssh_argv(u)) as s:
            s.expect(b"$ ")
            port = client_port(s.pid)
            s.send(b"echo " + marker + b"\n")
            s.expect(marker + b"\n")
            # and in an exec's argv, which the index holds
            s.send(b"env " + marker + b"=1 true; echo done\n")
            s.expect(b"done\n")
            s.send(b"exit\n")
            s.wait_exit()
        sess = d.session_of_port(port)
        # in a session's command, and in the path of an uploaded file
        p = subprocess.run(lab.ssh_argv(u, f"echo {m}-cmd", tty=False), capture_output=True,
                           timeout=60)
        check_eq(p.returncode, 0, "ssh host command", stderr=p.stderr)
        src = os.path.join(work, "upload.bin")
        with open(src, "wb") as f:
            f.write(os.urandom(4096))
        os.chmod(work, 0o755)
        p = subprocess.run(["scp", "-P", str(lab.port), "-i", u.key_path, "-F", "/dev/null",
                            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                            "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
                            src, f"{u.name}@{lab.host}:{m}.bin"], capture_output=True, timeout=60)
        check_eq(p.returncode, 0, "scp upload", stderr=p.stderr)
        # all of it in the index, found by substring
        cmd = wait_for(lambda: [x for x in d.sessions("--user", u.name)
                                if x["command"] == f"echo {m}-cmd" and x["end"]], 60,
                       "the command's session in the index")
        argv = [e["argv"] for e in d.events(sess["id"]) if e["type"] == "exec"]
        check(any(a == ["env", f"{m}=1", "true"] for a in argv), "the argv in the index",
              argv=argv[-10:])
        files = wait_for(lambda: [f for x in d.sessions("--user", u.name)
                                  for f in d.events(x["id"])
                                  if f["type"] == "file" and m in f["path"]] or None, 60,
                         "the upload's file record")
        check(files[0]["path"].endswith(f"/{m}.bin"), "the path in the index", files=files)
        check_eq(len(cmd), 1, "the command's session", sessions=cmd)
        # the session end closed an epoch (just after the end reached the
        # index): a checkpoint left the store
        notes = wait_for(lambda: os.path.exists(sink) and open(sink).read().count("\u2014 "), 15,
                         "a checkpoint in the sink")
        check(notes >= 1, "checkpoint in the sink")
        pinned = os.path.join(work, "first.pub")
        with open(os.path.join(d.store, "keys", "first.pub")) as f, open(pinned, "w") as g:
            g.write(f.read())
        rc, out, err = d.verify("--pubkey", pinned)
        check_eq(rc, 0, "verify passes", out=out, stderr=err)
        check(out["pinned"] and out["epochs"] >= 1, "epochs signed, key pinned", out=out)
        first_note = os.path.join(work, "first.note")
        text = open(sink).read()
        with open(first_note, "w") as f:
            f.write(text[:text.index("\n\n") + 2] + text[text.index("\n\n") + 2:].split("\n")[0] + "\n")
        latest = d.cli("checkpoint")
        check(latest.startswith("sealtrail/") and "\u2014 sealtrail-" in latest,
              "sealtrail checkpoint prints a signed note", note=latest)
        rc, out, err = d.verify("--pubkey", pinned, "--against", first_note)
        check_eq(rc, 0, "consistent with the first checkpoint", out=out, stderr=err)
        check(out["checkpoint_ok"], "checkpoint checked", out=out)
        # the content is encrypted: the marker is in no file, the index and its
        # WAL (not checkpointed yet while sealtraild runs) included
        def marker_files():
            names = sorted(os.listdir(d.store))
            hits = subprocess.run(["grep", "-rl", m, d.store], capture_output=True,
                                  text=True).stdout.split()
            return names, hits

        names, hits = marker_files()
        check("index.sqlite" in names and "index.sqlite-wal" in names,
              "the index and its WAL are there to look at", files=names)
        check_eq(hits, [], "the marker is in no file of the store")
        out_bytes = d.export(sess["id"], "--format", "raw")
        check(marker in out_bytes, "yet root reads it back through sealtrail")
        # a restart continues the same chain and epochs
        check_eq(d.stop(), 0, "clean stop")
        names, hits = marker_files()
        check_eq(hits, [], "the marker is in no file of the store once the WAL is checkpointed",
                 files=names)
        d.start()
        d.wait_listener(lab.pid)
        check_eq(d.stop(), 0, "clean stop again")
        # each start after a clean stop went on from DIR/resume, without
        # reading the log before it
        resumed = [ln for ln in d.log().splitlines() if "went on from" in ln]
        check_eq(len(resumed), 1, "the restart resumed from the shutdown's epoch close",
                 log=d.log()[-3000:])
        rc, out, err = d.verify("--pubkey", pinned, "--against", first_note)
        check_eq(rc, 0, "verify after restarts", out=out, stderr=err)
        check_eq(out["records"], out["covered"] + out["uncovered"], "counts add up", out=out)
        # tampering with one byte of a segment is detected, with file and offset
        segs = sorted(os.listdir(os.path.join(d.store, "segments")))
        path = os.path.join(d.store, "segments", segs[0])
        with open(path, "r+b") as f:
            f.seek(300)
            b = f.read(1)
            f.seek(300)
            f.write(bytes([b[0] ^ 0x01]))
        rc, out, err = d.verify("--pubkey", pinned)
        check(rc != 0 and not out["ok"], "a flipped byte fails verification", out=out)
        check(out["file"].endswith(segs[0]) and out["offset"] > 0, "failure names file and offset",
              out=out)
