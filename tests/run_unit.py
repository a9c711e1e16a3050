#!/usr/bin/python3
"""Runs every GoogleTest executable of a meson build dir and counts test cases.

Usage: run_unit.py BUILD_DIR LABEL --json OUT

Each executable runs with --gtest_output=json so the totals are the real
number of test cases, not of executables. A binary that crashes or exits
non-zero without writing its report counts as one failed test.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build_dir")
    ap.add_argument("label")
    ap.add_argument("--json", required=True)
    args = ap.parse_args()

    tests = json.loads(subprocess.check_output(
        ["meson", "introspect", "--tests", args.build_dir]))
    passed = failed = 0
    names = []
    for t in tests:
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
            report = f.name
        cmd = t["cmd"] + [f"--gtest_output=json:{report}", "--gtest_brief=1"]
        env = dict(os.environ, **t.get("env", {}))
        proc = subprocess.run(cmd, env=env, cwd=t.get("workdir") or None,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, errors="replace")
        try:
            with open(report) as f:
                data = json.load(f)
            p = f_ = 0
            for suite in data.get("testsuites", []):
                for case in suite.get("testsuite", []):
                    name = f'{args.label}/{suite["name"]}.{case["name"]}'
                    if case.get("failures"):
                        f_ += 1
                        names.append(("FAIL", name))
                    elif case.get("result") == "SKIPPED" or case.get("status") == "NOTRUN":
                        names.append(("SKIP", name))
                    else:
                        p += 1
            if proc.returncode != 0 and f_ == 0:
                f_ = 1
                names.append(("FAIL", f'{args.label}/{t["name"]} (exit {proc.returncode})'))
        except (OSError, ValueError):
            p, f_ = 0, 1
            names.append(("FAIL", f'{args.label}/{t["name"]} (no report, exit {proc.returncode})'))
        finally:
            if os.path.exists(report):
                os.unlink(report)
        if f_:
            sys.stdout.write(proc.stdout[-20000:])
        print(f'{args.label}: {t["name"]}: {p} passed, {f_} failed', flush=True)
        passed += p
        failed += f_
    for status, name in names:
        if status == "FAIL":
            print(f"FAIL {name}")
    with open(args.json, "w") as f:
        json.dump({"passed": passed, "failed": failed}, f)
    print(f"{args.label}: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
