"""Helpers shared by the Python benchmark scripts in bench/ (standard library
only, Debian's /usr/bin/python3): free ports, waiting for a listener,
stopping a process, the tail of a log."""
import signal
import socket
import subprocess
import time


class Failure(Exception):
    """A run or a system failed; the message says what happened."""


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
