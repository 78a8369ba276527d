"""The auditor's key, end to end: the auditor makes a key pair off-host, the
bastion wraps every segment key to its public half, and a copy of the store
without keys/kek and without the index opens with the private half alone:
the exported output is what the ssh client received. Another key opens
nothing and says whose key it would take; the bastion does not drop or
swap the auditor's key on a restart unless told to."""

import glob
import json
import os
import shutil
import stat
import subprocess
import tempfile

from harness import BUILD, Daemon, check, check_eq, client_port, sanitizer_check, test
from sshlab import PtySession, SshLab

SEALTRAIL = os.path.join(BUILD, "sealtrail")
SEALTRAILD = os.path.join(BUILD, "sealtraild")


def sealtrail(*args):
    p = subprocess.run([SEALTRAIL, *args], capture_output=True, timeout=120)
    sanitizer_check("sealtrail " + " ".join(args), p.stderr.decode(errors="replace"))
    return p


def keygen(out):
    p = sealtrail("--json", "auditor-keygen", "--out", out)
    check_eq(p.returncode, 0, "sealtrail auditor-keygen", stderr=p.stderr)
    return json.loads(p.stdout)


def daemon_refuses(store, *args):
    """sealtraild on store must exit at start with status 78 (EX_CONFIG: the
    unit file does not restart on it); its log."""
    p = subprocess.Popen([SEALTRAILD, "--store", store, *args], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        out, _ = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        p.terminate()
        out, _ = p.communicate(timeout=30)
        raise AssertionError(f"sealtraild {' '.join(args)} started instead of refusing:\n"
                             + out.decode(errors="replace")[-2000:])
    check_eq(p.returncode, 78, f"sealtraild {' '.join(args) or '(no auditor key)'} exit status",
             log=out.decode(errors="replace")[-2000:])
    return out.decode(errors="replace")


@test("e2e/auditor_key_reads_a_copy_off_host")
def auditor_story():
    work = tempfile.mkdtemp(prefix="st-auditor-")
    try:
        # off-host: the auditor's key pair, and a stranger's
        aud = keygen(os.path.join(work, "auditor"))
        other = keygen(os.path.join(work, "other"))
        check_eq(stat.S_IMODE(os.stat(aud["private_key"]).st_mode), 0o600,
                 "the private key is the auditor's alone")
        check(aud["fingerprint"].startswith("SHA256:") and
              aud["fingerprint"] != other["fingerprint"], "fingerprints", aud=aud, other=other)

        with SshLab(None, use_pam=True) as lab, \
                Daemon(["--auditor-pubkey", aud["public_key"]]) as d:
            u = lab.add_user("staudit")
            d.wait_listener(lab.pid)
            with PtySession(lab.ssh_argv(u)) as s:
                s.expect(b"$ ")
                port = client_port(s.pid)
                s.send(b"echo AUDIT-$((6*7)); printf '\\xe2\\x82\\xac \\x01\\xff\\n'\n")
                s.expect(b"AUDIT-42")
                s.send(b"exit\n")
                check_eq(s.wait_exit(), 0, "ssh client exit status")
                received = s.received
            sess = d.session_of_port(port)
            check_eq(d.stop(), 0, "clean stop")

            # verify (no key) names the auditor key every segment is wrapped to
            v = json.loads(d.cli("--json", "verify"))
            check(v["ok"], "verify passes", out=v)
            check_eq([w["fingerprint"] for w in v["auditor_keys"]], [aud["fingerprint"]],
                     "segments wrapped to the auditor's key", out=v)
            text = d.cli("verify")
            check(f"data keys wrapped to auditor key {aud['fingerprint']}" in text,
                  "verify says so in words too", out=text)
            keys = json.loads(d.cli("--json", "keys"))
            check_eq(keys["auditor_key"], aud["fingerprint"], "keys names it too", out=keys)
            check(keys["checkpoint"] and keys["checkpoint"]["epoch"] + 1 == keys["epoch"],
                  "the latest checkpoint is the last closed epoch's", out=keys)

            # the bastion keeps the key: no silent drop, no silent swap
            log = daemon_refuses(d.store)
            check(aud["fingerprint"] in log and "--auditor-key-change" in log,
                  "started without the key: refused, naming it and the way out", log=log)
            log = daemon_refuses(d.store, "--auditor-pubkey", other["public_key"])
            check(aud["fingerprint"] in log and other["fingerprint"] in log,
                  "started with another key: refused, naming both", log=log)
            log = daemon_refuses(d.store, "--auditor-pubkey", aud["private_key"])
            check("private key" in log, "the private key given to the bastion: refused", log=log)

            # the evidence leaves: a copy of the whole store, then without
            # keys/kek, the epoch key and the index
            copy = os.path.join(work, "copy")
            shutil.copytree(d.store, copy)
        for name in ["keys/kek", "keys/epoch"] + [os.path.relpath(p, copy) for p in
                                                  glob.glob(os.path.join(copy, "index.sqlite*"))]:
            os.unlink(os.path.join(copy, name))
        check_eq(sorted(os.listdir(os.path.join(copy, "keys"))), ["first.pub"],
                 "of the keys only the public first.pub is left in the copy")
        p = sealtrail("--store", copy, "--json", "verify", "--pubkey",
                      os.path.join(copy, "keys", "first.pub"))
        check_eq(p.returncode, 0, "the copy verifies (no key needed)", out=p.stdout)

        p = sealtrail("--store", copy, "export", sess["id"], "--format", "raw")
        check(p.returncode != 0 and b"--auditor-key" in p.stderr,
              "without a key the copy does not open, and the error says what would",
              rc=p.returncode, stderr=p.stderr)

        p = sealtrail("--store", copy, "--auditor-key", aud["private_key"], "--json", "sessions")
        check_eq(p.returncode, 0, "sessions with the auditor's key", stderr=p.stderr)
        ids = [json.loads(line)["id"] for line in p.stdout.decode().splitlines()]
        check(sess["id"] in ids, "the session is listed from the copy", ids=ids)
        p = sealtrail("--store", copy, "export", sess["id"], "--format", "raw",
                      "--auditor-key", aud["private_key"])
        check_eq(p.returncode, 0, "export with the auditor's key", stderr=p.stderr)
        check_eq(p.stdout, received, "exported output == what the client received",
                 id=sess["id"])
        p = sealtrail("--store", copy, "--auditor-key", aud["private_key"], "--json", "events",
                      sess["id"])
        check_eq(p.returncode, 0, "events with the auditor's key", stderr=p.stderr)
        check(b'"session_start"' in p.stdout, "the timeline", out=p.stdout[-500:])

        p = sealtrail("--store", copy, "--auditor-key", other["private_key"], "export",
                      sess["id"], "--format", "raw")
        err = p.stderr.decode(errors="replace")
        check(p.returncode != 0 and not p.stdout, "another key exports nothing",
              rc=p.returncode, out=p.stdout[:200])
        check(aud["fingerprint"] in err and "none of its" in err,
              "and says which key the segments are wrapped to", stderr=err)
        check(not os.path.exists(os.path.join(copy, "index.sqlite")),
              "reading the copy left no index in it")
    finally:
        shutil.rmtree(work, ignore_errors=True)
