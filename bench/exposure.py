#!/usr/bin/env python3
"""What one hostile client or plugin does to the gateway, measured; see bench/README.md.

Four attacks, each against a fresh gateway, with `--weir` and (optionally) a
`--baseline` build measured the same way in one run:

  silent   N connections that never send a byte (header_read_timeout 2s): how long the
           first stays open, and how long a new client then waits for an answer.
  pings    one WebSocket client that sends pings and reads nothing, for 10 s: the
           gateway's RSS before, at its peak and after the client left; the worst
           latency of a plain route meanwhile.
  sleep    a mapper that sleeps 5 s in a host call (deadline 100 ms): one call's
           duration; then 1,000 such requests at once and what another plugin's route
           answers meanwhile.
  busy     clients looping on a mapper that burns 90 ms of CPU (inside its 100 ms
           deadline), 2 and 16 of them: p50/p99 of a plugin-free route meanwhile.

Usage: python3 bench/exposure.py --plugins DIR [--weir PATH] [--baseline PATH]
       [--only silent,pings,sleep,busy]
DIR holds hostile.wasm and echo_mapper.wasm (target/wasm-plugins/wasm32-wasip2/release
after a test build)."""

import argparse
import http.client
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (ports)


class Upstream(threading.Thread):
    """A tiny HTTP/1.1 keep-alive upstream answering `ok`."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.port = self.sock.getsockname()[1]

    def run(self):
        while True:
            conn, _ = self.sock.accept()
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    @staticmethod
    def serve(conn):
        buf = b""
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
                while b"\r\n\r\n" in buf:
                    _, buf = buf.split(b"\r\n\r\n", 1)
                    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        except OSError:
            return


def start_weir(weir, config_text):
    d = tempfile.mkdtemp(prefix="weir-exposure-")
    path = os.path.join(d, "weir.toml")
    port = run.free_port()
    with open(path, "w") as f:
        f.write(config_text.replace("LISTEN", f"127.0.0.1:{port}"))
    proc = subprocess.Popen([weir, "serve", "--config", path], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "warn"})
    run.wait_port(port, timeout=120)
    return proc, port


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def get(port, path, timeout=30):
    started = time.perf_counter()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        return r.status, time.perf_counter() - started
    except OSError:
        return None, time.perf_counter() - started
    finally:
        c.close()


def silent(weir, plugins, upstream):
    limit = 1000
    n = 1600  # past the limit: both workers' slots are full, the rest wait in the backlog
    proc, port = start_weir(weir, f"""
[server]
listen = "LISTEN"
workers = 2
max_connections = {limit}
header_read_timeout = "2s"
[[routes]]
key = "GET /plain"
integration = {{ type = "http", url = "http://127.0.0.1:{upstream.port}/plain" }}
""")
    try:
        socks = []
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port))
            socks.append(s)
        started = time.time()
        # A new client, while every slot is held by a silent connection.
        status, waited = get(port, "/plain", timeout=40)
        first = socks[0]
        first.settimeout(40)
        try:
            first.recv(1)
        except OSError:
            pass
        open_for = time.time() - started
        for s in socks:
            s.close()
        return {"silent connection open (s)": round(open_for, 1),
                "new client waited (s)": round(waited, 1),
                "new client status": status}
    finally:
        proc.kill()


def ws_ping_flood(weir, plugins, upstream):
    proc, port = start_weir(weir, f"""
[server]
listen = "LISTEN"
[websocket.chat]
path = "/chat"
[[websocket.chat.routes]]
key = "$default"
integration = {{ type = "mock", body = "x" }}
[[routes]]
key = "GET /plain"
integration = {{ type = "http", url = "http://127.0.0.1:{upstream.port}/plain" }}
""")
    try:
        before = rss_mib(proc.pid)
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /chat HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
                  b"sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(1)
        mask = b"\x01\x02\x03\x04"
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(b"p" * 125))
        frame = b"\x89" + bytes([0x80 | 125]) + mask + payload
        batch = frame * 1024
        worst = [0.0]
        stop = threading.Event()

        def probe():
            while not stop.is_set():
                _, took = get(port, "/plain")
                worst[0] = max(worst[0], took)
                time.sleep(0.01)

        t = threading.Thread(target=probe, daemon=True)
        t.start()
        peak = before
        s.settimeout(0.2)
        started = time.time()
        while time.time() - started < 10:
            try:
                s.sendall(batch)
            except socket.timeout:
                pass
            except OSError:
                break
            peak = max(peak, rss_mib(proc.pid))
        s.close()
        stop.set()
        t.join()
        time.sleep(2)
        return {"RSS before (MiB)": round(before, 1), "RSS peak (MiB)": round(peak, 1),
                "RSS after (MiB)": round(rss_mib(proc.pid), 1),
                "plain route worst (ms)": round(worst[0] * 1000, 1)}
    finally:
        proc.kill()


def plugin_config(plugins, upstream, extra=""):
    return f"""
[server]
listen = "LISTEN"
workers = 2
[plugins.hostile]
file = "{plugins}/hostile.wasm"
world = "mapper"
{extra}
[plugins.echo]
file = "{plugins}/echo_mapper.wasm"
world = "mapper"
[[routes]]
key = "GET /in/{{kind}}"
integration = {{ type = "http", url = "http://127.0.0.1:{upstream.port}/in" }}
request_mapping = "hostile"
[[routes]]
key = "GET /other"
integration = {{ type = "http", url = "http://127.0.0.1:{upstream.port}/other" }}
request_mapping = "echo"
[[routes]]
key = "GET /plain"
integration = {{ type = "http", url = "http://127.0.0.1:{upstream.port}/plain" }}
"""


def sleeping(weir, plugins, upstream):
    proc, port = start_weir(weir, plugin_config(plugins, upstream))
    try:
        status, one = get(port, "/in/sleep")
        results = []

        def flood():
            results.append(get(port, "/in/sleep")[0])

        threads = [threading.Thread(target=flood) for _ in range(1000)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        other = [get(port, "/other")[0] for _ in range(20)]
        for t in threads:
            t.join()
        return {"one call (ms)": round(one * 1000), "one call status": status,
                "other plugin's route, 20 requests during the flood":
                    {str(k): other.count(k) for k in sorted(set(other), key=str)}}
    finally:
        proc.kill()


def busy(weir, plugins, upstream):
    out = {}
    for clients in (0, 2, 16):
        proc, port = start_weir(weir, plugin_config(plugins, upstream))
        try:
            stop = threading.Event()

            def loop():
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                while not stop.is_set():
                    try:
                        c.request("GET", "/in/busy")
                        c.getresponse().read()
                    except OSError:
                        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            threads = [threading.Thread(target=loop, daemon=True) for _ in range(clients)]
            for t in threads:
                t.start()
            time.sleep(1)
            lat = []
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            started = time.time()
            while time.time() - started < 8:
                t0 = time.perf_counter()
                c.request("GET", "/plain")
                c.getresponse().read()
                lat.append(time.perf_counter() - t0)
                time.sleep(0.005)
            stop.set()
            lat.sort()
            out[f"{clients} busy clients"] = {
                "plain p50 (ms)": round(statistics.median(lat) * 1000, 2),
                "plain p99 (ms)": round(lat[int(len(lat) * 0.99)] * 1000, 2)}
        finally:
            proc.kill()
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--weir", default=run.WEIR)
    p.add_argument("--baseline")
    p.add_argument("--plugins", required=True)
    p.add_argument("--only", default="silent,pings,sleep,busy")
    a = p.parse_args()
    a.plugins = os.path.abspath(a.plugins)  # the configs live in temporary directories
    upstream = Upstream()
    upstream.start()
    attacks = {"silent": silent, "pings": ws_ping_flood, "sleep": sleeping, "busy": busy}
    builds = [("this build", a.weir)] + ([("baseline", a.baseline)] if a.baseline else [])
    for name in a.only.split(","):
        for label, weir in builds:
            print(f"{name} [{label}]: {attacks[name](weir, a.plugins, upstream)}", flush=True)


if __name__ == "__main__":
    main()
