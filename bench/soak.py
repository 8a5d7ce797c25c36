#!/usr/bin/env python3
"""Soak: minutes of mixed traffic against one Weir process; see bench/README.md.

Traffic, all at once: HTTP routes with plugins (plain proxy, param-mapping, the JWT +
mapping + CORS chain, a plugin that loops past its deadline), throttled bursts, WebSocket
connections that come and go with messages, long-lived WebSocket clients receiving
@connections posts, and plugin replacement through the admin API when Weir has it.
Every 10 s it samples Weir's RSS and open descriptors. At the end it prints requests
sent / succeeded / failed by cause, the samples, and the number of crashes.

Usage: bench/soak.sh [--minutes M] [--weir PATH]"""

import argparse
import base64
import collections
import http.client
import http.server
import json
import os
import random
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (shared helpers: ports, JWTs, plugin paths)

TESTS = run.PLUGINS
TOKEN = "soak-admin-token-soak-admin-token"

counts = collections.Counter()
lock = threading.Lock()
stop = threading.Event()
ws_ids = set()


def count(what, outcome):
    with lock:
        counts[(what, outcome)] += 1


class Upstream(http.server.BaseHTTPRequestHandler):
    """The backend: answers everything; remembers open WebSocket connection ids."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.answer(b'{"ok":true}')

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        conn = self.headers.get("connectionid")
        if self.path.endswith("/connect") and conn:
            with lock:
                ws_ids.add(conn)
        elif self.path.endswith("/disconnect") and conn:
            with lock:
                ws_ids.discard(conn)
        self.answer(body or b'{"ok":true}')

    def answer(self, body):
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class QuietServer(http.server.ThreadingHTTPServer):
    """The backend's server; a client that went away (Weir at shutdown) is no news."""

    daemon_threads = True

    def handle_error(self, request, client_address):
        count("backend", "client went away")


def config(port, admin, upstream):
    p = run.PLUGINS
    return f"""
[server]
listen = "127.0.0.1:{port}"
[admin]
listen = "127.0.0.1:{admin}"
token = "{TOKEN}"
[access_log]
enabled = false

[plugins.params]
file = "{p}/param_mapping.wasm"
world = "mapper"
[plugins.params.config.request]
"overwrite:header.x-user" = "$context.authorizer.principalId"
[plugins.jwt]
file = "{p}/jwt_authorizer.wasm"
world = "authorizer"
config = {{ issuer = "bench", audience = ["bench"], hs256_secret = "{run.SECRET}" }}
[plugins.cors]
file = "{p}/cors.wasm"
world = "cors"
config = {{ allow_origins = ["https://app.example"], allow_methods = ["GET"] }}
[plugins.spin]
file = "{TESTS}/spin.wasm"
world = "mapper"
deadline = "20ms"
smoke_test = false              # it loops on purpose

[api]
cors = "cors"

[[routes]]
key = "GET /plain"
integration = {{ type = "http", url = "http://127.0.0.1:{upstream}/plain" }}
[[routes]]
key = "GET /mapped"
integration = {{ type = "http", url = "http://127.0.0.1:{upstream}/mapped" }}
request_mapping = "params"
[[routes]]
key = "GET /chain"
integration = {{ type = "http", url = "http://127.0.0.1:{upstream}/chain" }}
authorizer = {{ plugin = "jwt" }}
request_mapping = "params"
[[routes]]
key = "GET /spin"
integration = {{ type = "http", url = "http://127.0.0.1:{upstream}/spin" }}
request_mapping = "spin"
[[routes]]
key = "GET /throttled"
integration = {{ type = "http", url = "http://127.0.0.1:{upstream}/throttled" }}
throttle = {{ rate = 20, burst = 5 }}

[websocket.soak]
path = "/ws"
[[websocket.soak.routes]]
key = "$connect"
integration = {{ type = "http", url = "http://127.0.0.1:{upstream}/ws/connect" }}
[[websocket.soak.routes]]
key = "$disconnect"
integration = {{ type = "http", url = "http://127.0.0.1:{upstream}/ws/disconnect" }}
[[websocket.soak.routes]]
key = "$default"
integration = {{ type = "http", url = "http://127.0.0.1:{upstream}/ws/echo" }}
route_response = true
"""


def http_worker(port, token):
    paths = [("/plain", {}), ("/mapped", {}), ("/chain", {"authorization": f"Bearer {token}",
                                                          "origin": "https://app.example"}),
             ("/spin", {}), ("/throttled", {})]
    conn = None
    while not stop.is_set():
        path, headers = random.choice(paths)
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            resp.read()
            count(path, str(resp.status))
        except Exception as e:  # noqa: BLE001 - every failure is counted by its cause
            count(path, type(e).__name__)
            conn = None


class Ws:
    """A minimal WebSocket client: handshake, masked text frames, frame reader."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        self.s.sendall((f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                        f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                        f"Sec-WebSocket-Key: {key}\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.s.recv(1)
            if not chunk:
                raise ConnectionError("handshake cut short")
            head += chunk
        status = head.split(b" ", 2)[1]
        if status != b"101":
            raise ConnectionError(f"handshake {status.decode()}")

    def send(self, text, opcode=1):
        data = text.encode()
        mask = os.urandom(4)
        n = len(data)
        header = bytes([0x80 | opcode])
        if n < 126:
            header += bytes([0x80 | n])
        else:
            header += bytes([0x80 | 126]) + struct.pack(">H", n)
        self.s.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def recv_exact(self, n):
        out = b""
        while len(out) < n:
            chunk = self.s.recv(n - len(out))
            if not chunk:
                raise ConnectionError("closed")
            out += chunk
        return out

    def frame(self):
        b0, b1 = self.recv_exact(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", self.recv_exact(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", self.recv_exact(8))[0]
        return b0 & 0x0F, self.recv_exact(n)

    def close(self):
        try:
            self.send("", opcode=8)
            self.s.close()
        except OSError:
            pass


def ws_churn(port):
    while not stop.is_set():
        try:
            ws = Ws(port)
            count("ws connect", "101")
            for i in range(random.randint(1, 20)):
                ws.send(json.dumps({"action": "echo", "i": i}))
                op, _ = ws.frame()
                count("ws message", "reply" if op == 1 else f"opcode {op}")
            ws.close()
        except Exception as e:  # noqa: BLE001
            count("ws connect", type(e).__name__)
            time.sleep(0.1)


def ws_listener(port):
    while not stop.is_set():
        try:
            ws = Ws(port)
            ws.s.settimeout(1)
            while not stop.is_set():
                try:
                    op, _ = ws.frame()
                except socket.timeout:
                    continue
                count("ws push received", "text" if op == 1 else f"opcode {op}")
                if op == 8:
                    break
        except Exception as e:  # noqa: BLE001
            count("ws listener", type(e).__name__)
            time.sleep(0.2)


def admin_worker(admin, reload_bytes):
    conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=30)
    auth = {"authorization": f"Bearer {TOKEN}"}
    last_reload = time.time()
    while not stop.is_set():
        try:
            with lock:
                ids = list(ws_ids)
            if ids:
                conn.request("POST", f"/@connections/{random.choice(ids)}", body=b"pushed",
                             headers=auth)
                resp = conn.getresponse()
                resp.read()
                count("@connections POST", str(resp.status))
            if reload_bytes and time.time() - last_reload > 5:
                last_reload = time.time()
                conn.request("PUT", "/admin/plugins/params", body=reload_bytes, headers=auth)
                resp = conn.getresponse()
                resp.read()
                count("plugin reload", str(resp.status))
            time.sleep(0.02)
        except Exception as e:  # noqa: BLE001
            count("admin", type(e).__name__)
            conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=30)
            time.sleep(0.2)


def sample(pid):
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--weir", default=run.WEIR)
    args = ap.parse_args()

    upstream = QuietServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    port, admin = run.free_port(), run.free_port()
    with tempfile.TemporaryDirectory() as work:
        cfg = os.path.join(work, "weir.toml")
        with open(cfg, "w") as f:
            f.write(config(port, admin, upstream.server_address[1]))
        weir = run.start([args.weir, "serve", "--config", cfg], port)
        run.wait_port(admin)
        # Plugin replacement needs the admin plugin API; without it, skip that load.
        probe = http.client.HTTPConnection("127.0.0.1", admin, timeout=5)
        probe.request("GET", "/admin/plugins", headers={"authorization": f"Bearer {TOKEN}"})
        has_reload = probe.getresponse().status == 200
        reload_bytes = None
        if has_reload:
            with open(os.path.join(run.PLUGINS, "param_mapping.wasm"), "rb") as f:
                reload_bytes = f.read()
        threads = [threading.Thread(target=http_worker, args=(port, run.token())) for _ in range(6)]
        threads += [threading.Thread(target=ws_churn, args=(port,)) for _ in range(3)]
        threads += [threading.Thread(target=ws_listener, args=(port,)) for _ in range(2)]
        threads.append(threading.Thread(target=admin_worker, args=(admin, reload_bytes)))
        for t in threads:
            t.daemon = True
            t.start()
        samples = []
        crashes = 0
        end = time.time() + args.minutes * 60
        try:
            while time.time() < end:
                time.sleep(min(10, max(0.1, end - time.time())))
                if weir.poll() is not None:
                    crashes += 1
                    print(f"weir exited with {weir.returncode}")
                    break
                rss, fds = sample(weir.pid)
                samples.append((round(args.minutes * 60 - (end - time.time())), rss, fds))
                print(f"t={samples[-1][0]:>4}s  rss={rss / 1024:.1f} MiB  fds={fds}", flush=True)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=15)
            weir.terminate()
            try:
                weir.wait(timeout=30)
            except subprocess.TimeoutExpired:
                weir.kill()
        if weir.returncode not in (0, -15) and crashes == 0:
            crashes += 1
            print(f"weir exited with {weir.returncode} at shutdown")

    print("\n| traffic | outcome | count |\n|---|---|---|")
    for (what, outcome), n in sorted(counts.items()):
        print(f"| {what} | {outcome} | {n} |")
    if len(samples) >= 3:
        first, last = samples[1], samples[-1]  # skip the warm-up sample
        print(f"\nRSS {first[1] / 1024:.1f} -> {last[1] / 1024:.1f} MiB "
              f"({(last[1] - first[1]) / first[1] * 100:+.1f}%), "
              f"fds {first[2]} -> {last[2]}")
    print(f"plugin reloads: {'on' if has_reload else 'off (no admin plugin API)'}")
    print(f"crashes: {crashes}")
    sys.exit(1 if crashes else 0)


if __name__ == "__main__":
    main()
