"""Helpers shared by the Python benchmark scripts in bench/ (standard library
only, Debian's /usr/bin/python3): the binaries of a build, the relay's
configuration, free ports, waiting for a listener, stopping a process, the
tail of a log."""
import json
import os
import signal
import socket
import subprocess
import time


class Failure(Exception):
    """A run or a system failed; the message says what happened."""


def build_tools(root, build):
    """(ringrelay, ringbench) of meson build directory `build` (relative to
    the checkout `root` unless absolute); ValueError saying how to build
    them when one is missing."""
    build = build if os.path.isabs(build) else os.path.join(root, build)
    tools = (os.path.join(build, "src/app/ringrelay"),
             os.path.join(build, "tools/ringbench/ringbench"))
    for path in tools:
        if not os.access(path, os.X_OK):
            raise ValueError(f"{path} is missing: build it (meson setup {build} "
                             f"--buildtype=release, once; then ninja -C {build} "
                             f"src/app/ringrelay tools/ringbench/ringbench) or pass --build DIR")
    return tools


def write_relay_config(directory, hostname, address, sink_address, **extra):
    """Writes DIRECTORY/ringrelay.json for a benchmark run and returns its
    path: built-in defaults (one shard per CPU, 250 after fdatasync) but for
    one plain listener on `address`, a trusted 127.0.0.0/8, the spool in
    DIRECTORY/spool, the sink as relay host, no sender checks; `extra`
    top-level keys are added or replaced."""
    config = {
        "hostname": hostname,
        "listeners": [{"address": address[0], "port": address[1], "tls": "none"}],
        "trusted_networks": ["127.0.0.0/8"],
        "spool": {"dir": os.path.join(directory, "spool")},
        "delivery": {"relayhost": f"{sink_address[0]}:{sink_address[1]}"},
        # The load's sender domains are in no DNS here: no sender checks.
        "sender_verify": {"enabled": False},
        "control": {"socket": "control.sock"},
        "shutdown_grace": "2s",
        **extra,
    }
    path = os.path.join(directory, "ringrelay.json")
    with open(path, "w") as f:
        json.dump(config, f, indent=2)
    return path


def free_port(host):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_port(host, port, proc, what, timeout=15):
    """Returns once host:port accepts a connection; Failure if `proc` exits
    first or `timeout` seconds pass."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise Failure(f"{what} exited with status {proc.returncode} while starting")
        try:
            socket.create_connection((host, port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise Failure(f"{what} did not accept connections on {host}:{port} within {timeout} s")


def stop_process(proc, timeout):
    """SIGTERM, then SIGKILL after `timeout` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def tail(path, lines=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""
