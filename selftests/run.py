#!/usr/bin/python3
"""Run the whole sealtrail test suite: C unit tests, end-to-end tests against
a real sshd with sealtraild recording, the same again against a build with
ASan/UBSan/LeakSanitizer (--asan-build), and bounded fuzz runs under
ASan/UBSan. Needs root. The last line is "N passed, N failed"."""

import argparse
import glob
import importlib.util
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "lib"))


SUMMARY = re.compile(r"^(\d+) passed, (\d+) failed\s*$")


def prefixed(text, prefix):
    """PASS/FAIL lines with the test names under prefix."""
    return re.sub(r"^(PASS|FAIL) ", lambda m: f"{m.group(1)} {prefix}", text, flags=re.M)


def run_unit(build, prefix=""):
    p = subprocess.run([os.path.join(build, "unit-tests")], capture_output=True, text=True)
    sys.stdout.write(prefixed(p.stdout, prefix))
    sys.stdout.write(p.stderr)
    m = re.search(r"(\d+) passed, (\d+) failed\s*$", p.stdout)
    if not m:
        print("FAIL unit-tests: no summary line (crashed?)")
        return 0, 1
    return int(m.group(1)), int(m.group(2)) + (1 if p.returncode and not int(m.group(2)) else 0)


def run_fuzz(build, seconds):
    passed = failed = 0
    for target in sorted(glob.glob(os.path.join(build, "fuzz", "*"))):
        name = os.path.basename(target)
        corpus = os.path.join(HERE, "fuzz", "corpus", name)
        work = os.path.join(build, "fuzz-corpus", name)
        os.makedirs(work, exist_ok=True)
        args = [target, f"-max_total_time={seconds}", "-rss_limit_mb=2048",
                f"-artifact_prefix={build}/fuzz-{name}-", work]
        if os.path.isdir(corpus):
            args.append(corpus)
        p = subprocess.run(args, capture_output=True, text=True)
        if p.returncode == 0:
            passed += 1
            last = [l for l in p.stderr.splitlines() if l.startswith("#")][-1:]
            print(f"PASS fuzz/{name} ({seconds}s{', ' + last[0] if last else ''})")
        else:
            failed += 1
            print(f"FAIL fuzz/{name}\n" + "\n".join("    " + l for l in p.stderr.splitlines()[-40:]))
    return passed, failed


def run_sanitized(build, only=None):
    """The unit and end-to-end tests again, against the sanitizer build, in a
    child run: any ASan, UBSan or LeakSanitizer report fails the test that
    caused it (harness.Daemon reads the daemon's log for them)."""
    # its options are selftests/lib/sanitizer_options.c, linked into that build
    p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--build", build,
                          "--skip-fuzz", "--prefix", "asan/"] + (["--only", only] if only else []),
                         stdout=subprocess.PIPE,
                         text=True)
    counts = last = None
    for line in p.stdout:
        last = line
        m = SUMMARY.match(line)
        if m:  # the unit tests' own, or the run's last line
            counts = int(m.group(1)), int(m.group(2))
        else:
            sys.stdout.write(line)
            sys.stdout.flush()
    p.wait()
    # only the child's very last line is its total, and a clean one exits 0
    if not counts or not SUMMARY.match(last or "") or (p.returncode and not counts[1]):
        print(f"FAIL asan/suite: the sanitizer run did not finish (exit status "
              f"{p.returncode})")
        return (counts[0] if counts else 0), (counts[1] if counts else 0) + 1
    return counts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(os.path.dirname(HERE), "build"))
    ap.add_argument("--only", help="run only tests whose name contains this")
    ap.add_argument("--fuzz-seconds", type=int, default=int(os.environ.get("FUZZ_SECONDS", "60")))
    ap.add_argument("--skip-fuzz", action="store_true")
    ap.add_argument("--asan-build",
                    help="also run the unit and end-to-end tests against the sanitizer build "
                         "in this directory (make asan)")
    ap.add_argument("--prefix", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("the suite needs root (BPF, test users, sshd)")
    build = os.path.abspath(args.build)
    os.environ["SEALTRAIL_BUILD"] = build

    import harness
    import sshlab
    sshlab.cleanup_on_signals()

    passed = failed = 0
    if not args.only:
        p, f = run_unit(build, args.prefix)
        passed += p
        failed += f
    for path in sorted(glob.glob(os.path.join(HERE, "e2e", "test_*.py"))):
        spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    p, f = harness.run_tests(harness.TESTS, args.only, args.prefix)
    passed += p
    failed += f
    if args.asan_build:
        p, f = run_sanitized(os.path.abspath(args.asan_build), args.only)
        passed += p
        failed += f
    if not args.only and not args.skip_fuzz:
        p, f = run_fuzz(build, args.fuzz_seconds)
        passed += p
        failed += f
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
