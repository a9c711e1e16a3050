#!/usr/bin/python3
"""Runs the ringrelay integration tests.

Usage: /usr/bin/python3 tests/integration/run.py [-k SUBSTRING]... [--json FILE]
                                                  [--timeout S] [-v] [--list] [--keep]

Discovers tests/integration/test_*.py and runs every `test_*` function, each
in its own process group (so a hung test, and any ringrelay it started, can be
killed) with its own TMPDIR (removed afterwards). Prints one line per test,
`PASS module::name (1.2s)` or `FAIL module::name (1.2s)` followed by the
assertion, traceback, relay log tails and sink summaries, and ends with
`integration: N passed, N failed`. Exit code 1 if any test failed.
--json FILE writes {"passed": N, "failed": N, "tests": [...]}.
A test's timeout is its `timeout` attribute (harness.timeout decorator) or
--timeout (default 60 s).
"""
import argparse
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_TIMEOUT = 60.0
sys.dont_write_bytecode = True


def discover(filters):
    """[(name, timeout or None, import_error or None)] in file/definition order."""
    sys.path.insert(0, str(HERE))
    found = []
    for path in sorted(HERE.glob("test_*.py")):
        try:
            mod = importlib.import_module(path.stem)
        except Exception:
            name = f"{path.stem}::<import>"
            if not filters or any(f in name for f in filters):
                found.append((name, None, traceback.format_exc()))
            continue
        for attr, fn in vars(mod).items():
            if attr.startswith("test_") and callable(fn) and getattr(fn, "__module__", None) == mod.__name__:
                name = f"{path.stem}::{attr}"
                if not filters or any(f in name for f in filters):
                    found.append((name, getattr(fn, "timeout", None), None))
    return found


def run_child(spec: str, result_path: str) -> int:
    """Runs one test in this process (called by the parent with --child)."""
    sys.path.insert(0, str(HERE))
    import harness
    module, func = spec.split("::")
    ok, error = False, ""
    try:
        fn = getattr(importlib.import_module(module), func)
        fn()
        ok = True
    except BaseException as e:  # noqa: BLE001 - report everything, including SystemExit
        error = f"{type(e).__name__}: {e}".splitlines()[0][:500] if str(e) else type(e).__name__
        print(f"{type(e).__name__}: {e}", flush=True)
        traceback.print_exc(file=sys.stdout)
    finally:
        # Collect diagnostics before the atexit cleanup removes anything.
        diag = harness.dump_diagnostics() if not ok else ""
    if diag:
        print(diag, flush=True)
    with open(result_path, "w") as f:
        json.dump({"ok": ok, "error": error, "notes": harness._notes}, f)
    sys.stdout.flush()
    return 0 if ok else 1


def log_tails(directory: Path, lines: int = 40) -> str:
    out = []
    for log in sorted(directory.rglob("relay.log")):
        try:
            text = log.read_text("utf-8", "replace").splitlines()[-lines:]
        except OSError:
            continue
        out.append(f"--- {log}")
        out.extend(text)
    return "\n".join(out)


def kill_group(pgid: int):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def indent(text: str, max_lines: int = 250) -> str:
    lines = text.rstrip().splitlines()
    if len(lines) > max_lines:
        lines = [f"... ({len(lines) - max_lines} lines cut)"] + lines[-max_lines:]
    return "\n".join("    " + l for l in lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-k", action="append", default=[], metavar="SUBSTRING",
                    help="run only tests whose module::name contains SUBSTRING (repeatable)")
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--timeout", type=float, default=None, help="override every test's timeout (s)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print output of passing tests too")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep each test's temporary directory")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        return run_child(args.child, args.result)

    tests = discover(args.k)
    if args.list:
        for name, t, _ in tests:
            print(f"{name} (timeout {t or DEFAULT_TIMEOUT:.0f}s)")
        return 0

    root = Path(tempfile.mkdtemp(prefix="ringrelay-integration-"))
    results, passed, failed = [], 0, 0
    t_all = time.monotonic()
    try:
        for name, t_out, import_error in tests:
            t0 = time.monotonic()
            notes, output, error = [], "", ""
            if import_error:
                ok, output, error = False, import_error, "import failed"
            else:
                limit = args.timeout or t_out or DEFAULT_TIMEOUT
                work = root / name.replace("::", "__")
                work.mkdir()
                result_path = work / "result.json"
                out_path = work / "output.txt"
                env = dict(os.environ, TMPDIR=str(work), PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1")
                with open(out_path, "wb") as out:
                    proc = subprocess.Popen(
                        [sys.executable, str(Path(__file__).resolve()), "--child", name,
                         "--result", str(result_path)],
                        stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                        env=env, cwd=str(work), start_new_session=True)
                    timed_out = False
                    try:
                        proc.wait(limit)
                    except subprocess.TimeoutExpired:
                        timed_out = True
                        kill_group(proc.pid)
                        proc.wait()
                kill_group(proc.pid)  # anything the test left running
                output = out_path.read_text("utf-8", "replace")
                ok = False
                try:
                    res = json.loads(result_path.read_text())
                    ok, error, notes = bool(res["ok"]) and proc.returncode == 0, res["error"], res["notes"]
                except (OSError, ValueError, KeyError):
                    error = f"no result (exit {proc.returncode})"
                if timed_out:
                    ok = False
                    error = f"timeout after {limit:.0f}s"
                    output += f"\nTIMEOUT after {limit:.0f}s; relay logs:\n{log_tails(work)}\n"
                if not args.keep:
                    shutil.rmtree(work, ignore_errors=True)
            dt = time.monotonic() - t0
            if ok:
                passed += 1
                print(f"PASS {name} ({dt:.1f}s)", flush=True)
                if args.verbose and output.strip():
                    print(indent(output), flush=True)
                else:
                    for n in notes:
                        print(f"    note: {n}", flush=True)
            else:
                failed += 1
                print(f"FAIL {name} ({dt:.1f}s)", flush=True)
                print(indent(output), flush=True)
            results.append({"name": name, "status": "pass" if ok else "fail",
                            "seconds": round(dt, 2), "error": error, "notes": notes})
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"kept test directories under {root}")

    print(f"integration: total {time.monotonic() - t_all:.1f}s", flush=True)
    print(f"integration: {passed} passed, {failed} failed", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"passed": passed, "failed": failed, "tests": results}, f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
