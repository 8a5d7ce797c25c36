"""What the benchmark scripts share: the repository root, free loopback ports, waiting
for a listener, and stopping the processes a run started."""

import os
import signal
import socket
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, what=None, timeout=30.0):
    """Returns once something accepts connections on loopback `port`."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not start" if what else f"nothing listening on {port}")


def stop(procs, timeout=10):
    """SIGTERM to every process, then waits for each, killing what outlives `timeout`."""
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
