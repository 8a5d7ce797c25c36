#!/usr/bin/env python3
"""Soak: minutes of mixed traffic against one Weir process; see bench/README.md.

Traffic, all at once: HTTP routes with plugins (plain proxy, param-mapping, the JWT +
mapping + CORS chain, a plugin that loops past its deadline, one that sleeps past it in
a host call), throttled bursts, WebSocket connections that come and go with messages,
long-lived WebSocket clients receiving @connections posts, plugin replacement through
the admin API when Weir has it, and hostile clients: connections that never send a
byte (closed at header_read_timeout) and WebSocket clients that flood pings and never
read (closed at send_timeout).
Every 10 s (5 s with --short) it samples Weir's RSS and open descriptors. At the end it
prints requests sent / succeeded / failed by cause, the samples, and the number of
crashes. It exits 1 on a crash, on any outcome outside EXPECTED, when a kind of traffic
never succeeded, or when descriptors or memory grew (see `flat`).

Usage: bench/soak.sh [--minutes M] [--weir PATH] [--plugins DIR]
       python3 bench/soak.py --short --weir target/debug/weir --plugins DIR   (CI)"""

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

TOKEN = "soak-admin-token-soak-admin-token"

# Every outcome the soak may see, by kind of traffic; anything else is a failure.
EXPECTED = {
    "/plain": {"200"},
    "/mapped": {"200"},
    "/chain": {"200"},
    "/spin": {"500"},  # the plugin loops past its deadline on purpose
    "/sleep": {"500"},  # the plugin sleeps past its deadline on purpose
    "idle connection": {"closed"},
    "ping flood": {"closed"},
    "/throttled": {"200", "429"},
    "ws connect": {"101"},
    "ws message": {"reply"},
    "ws push received": {"text"},
    "@connections POST": {"200", "410"},  # 410: the connection closed meanwhile
    "plugin reload": {"200"},
}
# Outcomes each kind of traffic must have had at least once.
SUCCESS = {"/plain": "200", "/mapped": "200", "/chain": "200", "/spin": "500",
           "/sleep": "500", "idle connection": "closed", "ping flood": "closed",
           "/throttled": "429", "ws connect": "101", "ws message": "reply",
           "ws push received": "text", "@connections POST": "200", "plugin reload": "200"}

counts = collections.Counter()
unexpected = []  # the first few unexpected outcomes, with details
lock = threading.Lock()
stop = threading.Event()
ws_ids = set()
handling = threading.local()  # the backend's request in progress, per thread


def count(what, outcome, detail=""):
    with lock:
        counts[(what, outcome)] += 1
        if outcome not in EXPECTED.get(what, ()) and len(unexpected) < 10:
            unexpected.append(f"{what}: {outcome} {detail}".strip())


class Upstream(http.server.BaseHTTPRequestHandler):
    """The backend: answers everything; remembers open WebSocket connection ids."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        handling.path = self.path
        self.answer(b'{"ok":true}')

    def do_POST(self):
        handling.path = self.path
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
        handling.path = None


class QuietServer(http.server.ThreadingHTTPServer):
    """The backend's server. A failed exchange (Weir closed the connection while the
    backend was reading a request or writing its answer) is counted by cause."""

    daemon_threads = True

    def handle_error(self, request, client_address):
        e = sys.exc_info()[1]
        path = getattr(handling, "path", None)
        count("backend", f"{type(e).__name__} {'answering ' + path if path else 'reading'}")
        handling.path = None


def config(port, admin, upstream, p):
    # Plugin deadlines are wall-clock time. The soak is about staying up and flat, not
    # latency, so the plugins that must succeed get 2 s: on a starved 2-core machine
    # (load average 12) `params` once missed the 100 ms default 3 times in 3,800 calls,
    # which is its documented 500. The looping plugin keeps a 20 ms deadline.
    return f"""
[server]
listen = "127.0.0.1:{port}"
header_read_timeout = "2s"
[admin]
listen = "127.0.0.1:{admin}"
token = "{TOKEN}"
[access_log]
enabled = false

[plugins.params]
file = "{p}/param_mapping.wasm"
world = "mapper"
deadline = "2s"
[plugins.params.config.request]
"overwrite:header.x-user" = "$context.authorizer.principalId"
[plugins.jwt]
file = "{p}/jwt_authorizer.wasm"
world = "authorizer"
deadline = "2s"
config = {{ issuer = "bench", audience = ["bench"], hs256_secret = "{run.SECRET}" }}
[plugins.cors]
file = "{p}/cors.wasm"
world = "cors"
deadline = "2s"
config = {{ allow_origins = ["https://app.example"], allow_methods = ["GET"] }}
[plugins.spin]
file = "{p}/spin.wasm"
world = "mapper"
deadline = "20ms"
smoke_test = false              # it loops on purpose
[plugins.hostile]
file = "{p}/hostile.wasm"
world = "mapper"

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
key = "GET /sleep"
integration = {{ type = "http", url = "http://127.0.0.1:{upstream}/sleep" }}
request_mapping = "hostile"
[[routes]]
key = "GET /throttled"
integration = {{ type = "http", url = "http://127.0.0.1:{upstream}/throttled" }}
throttle = {{ rate = 20, burst = 5 }}

[websocket.soak]
path = "/ws"
limits = {{ send_timeout = "2s" }}
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
             ("/spin", {}), ("/sleep", {}), ("/throttled", {})]
    conn = None
    while not stop.is_set():
        path, headers = random.choice(paths)
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            count(path, str(resp.status), body[:200])
        except Exception as e:  # noqa: BLE001 - every failure is counted by its cause
            count(path, type(e).__name__, str(e))
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
                msg = json.dumps({"action": "echo", "i": i})
                ws.send(msg)
                # @connections posts reach these clients too; wait for the reply.
                while True:
                    op, data = ws.frame()
                    if op == 1 and data == b"pushed":
                        count("ws push received", "text")
                        continue
                    ok = op == 1 and data == msg.encode()
                    count("ws message", "reply" if ok else f"opcode {op}", data[:200])
                    break
            ws.close()
        except Exception as e:  # noqa: BLE001
            count("ws connect", type(e).__name__, str(e))
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
            count("ws listener", type(e).__name__, str(e))
            time.sleep(0.2)


def idle_connections(port):
    """Holds connections that never send a byte; the gateway must close each."""
    while not stop.is_set():
        socks = []
        try:
            for _ in range(20):
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
                socks.append(s)
            for s in socks:
                try:
                    closed = s.recv(1) == b""
                except ConnectionResetError:
                    closed = True
                except socket.timeout:
                    closed = False
                count("idle connection", "closed" if closed else "still open after 10 s")
        except Exception as e:  # noqa: BLE001
            count("idle connection", type(e).__name__, str(e))
            time.sleep(0.2)
        finally:
            for s in socks:
                s.close()


def ping_flood(port):
    """A WebSocket client that sends pings and reads nothing; the gateway must close it
    rather than queue its pongs."""
    mask = b"\x01\x02\x03\x04"
    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(b"p" * 125))
    batch = (b"\x89" + bytes([0x80 | 125]) + mask + payload) * 512
    while not stop.is_set():
        try:
            ws = Ws(port)
            started = time.time()
            outcome = "still open after 30 s"
            while not stop.is_set() and time.time() - started < 30:
                try:
                    ws.s.sendall(batch)
                except socket.timeout:
                    outcome = "send blocked for 10 s"
                    break
                except OSError:
                    outcome = "closed"
                    break
                time.sleep(0.01)
            ws.s.close()
            if not stop.is_set():
                count("ping flood", outcome)
        except Exception as e:  # noqa: BLE001
            count("ping flood", type(e).__name__, str(e))
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
            count("admin", type(e).__name__, str(e))
            conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=30)
            time.sleep(0.2)


def sample(pid):
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def flat(samples, interval):
    """Whether descriptors and memory stayed flat: the last sample against the first one
    taken after 10 s of load (the warm-up: pools, plugin instances and allocator arenas
    fill up). Descriptors may end at most 8 above it: up to 12 client connections and the
    pooled backend connections come and go between samples, so the count wobbles by a
    few (49-54 in a 3-minute probe) while a leak of one per request or per WebSocket
    connection would add thousands. RSS may end at most 25% above it: the allocator
    keeps freed memory and the debug build's samples wobble by up to 8%. In 45 s the
    short soak makes about 11,000 requests, messages and posts, so it catches a leak of
    roughly 3 KiB or more per exchange; smaller ones are for the ten-minute soak, whose
    figures are in bench/README.md. Returns (ok, summary)."""
    warm = [s for s in samples if s[0] >= 10]
    if len(warm) < 2:
        return False, f"too few samples ({len(samples)}) to judge"
    (_, rss0, fds0), (_, rss1, fds1) = warm[0], warm[-1]
    ok = fds1 <= fds0 + 8 and rss1 <= rss0 * 1.25
    return ok, (f"RSS {rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MiB "
                f"({(rss1 - rss0) / rss0 * 100:+.1f}%, limit +25%), "
                f"fds {fds0} -> {fds1} (limit +8), samples every {interval} s")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--short", action="store_true",
                    help="45 s, samples every 5 s: the version CI runs")
    ap.add_argument("--weir", default=run.WEIR)
    ap.add_argument("--plugins", default=run.PLUGINS,
                    help="folder of the built plugins (param_mapping.wasm, spin.wasm, ...)")
    args = ap.parse_args()
    args.plugins = os.path.abspath(args.plugins)  # the config's paths are relative to it
    duration = 45 if args.short else args.minutes * 60
    interval = 5 if args.short else 10

    upstream = QuietServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    port, admin = run.free_port(), run.free_port()
    with tempfile.TemporaryDirectory() as work:
        cfg = os.path.join(work, "weir.toml")
        with open(cfg, "w") as f:
            f.write(config(port, admin, upstream.server_address[1], args.plugins))
        # Weir's output goes to a file, shown when something went wrong.
        log = open(os.path.join(work, "weir.log"), "w+")
        weir = subprocess.Popen([args.weir, "serve", "--config", cfg], stdout=log, stderr=log)
        try:
            run.wait_port(port)
            run.wait_port(admin)
        except RuntimeError:
            weir.kill()
            log.seek(0)
            print(log.read()[-4000:])
            raise
        # Plugin replacement needs the admin plugin API; without it, skip that load.
        probe = http.client.HTTPConnection("127.0.0.1", admin, timeout=5)
        probe.request("GET", "/admin/plugins", headers={"authorization": f"Bearer {TOKEN}"})
        has_reload = probe.getresponse().status == 200
        reload_bytes = None
        if has_reload:
            with open(os.path.join(args.plugins, "param_mapping.wasm"), "rb") as f:
                reload_bytes = f.read()
        threads = [threading.Thread(target=http_worker, args=(port, run.token())) for _ in range(6)]
        threads += [threading.Thread(target=ws_churn, args=(port,)) for _ in range(3)]
        threads += [threading.Thread(target=ws_listener, args=(port,)) for _ in range(2)]
        threads.append(threading.Thread(target=admin_worker, args=(admin, reload_bytes)))
        threads.append(threading.Thread(target=idle_connections, args=(port,)))
        threads.append(threading.Thread(target=ping_flood, args=(port,)))
        for t in threads:
            t.daemon = True
            t.start()
        samples = []
        crashes = 0
        end = time.time() + duration
        try:
            while time.time() < end:
                time.sleep(min(interval, max(0.1, end - time.time())))
                if weir.poll() is not None:
                    crashes += 1
                    print(f"weir exited with {weir.returncode}")
                    break
                rss, fds = sample(weir.pid)
                samples.append((round(duration - (end - time.time())), rss, fds))
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
        if crashes:
            log.seek(0)
            print(log.read()[-4000:])
        log.close()

    print("\n| traffic | outcome | count |\n|---|---|---|")
    for (what, outcome), n in sorted(counts.items()):
        print(f"| {what} | {outcome} | {n} |")
    failures = []
    if crashes:
        failures.append(f"{crashes} crash(es)")
    bad = {k: n for k, n in counts.items() if k[1] not in EXPECTED.get(k[0], ())}
    if bad:
        failures.append(f"{sum(bad.values())} unexpected outcome(s): " + "; ".join(unexpected))
    for what, outcome in SUCCESS.items():
        if counts[(what, outcome)] == 0 and (what != "plugin reload" or has_reload):
            failures.append(f"no {what} ever gave {outcome}")
    steady, summary = flat(samples, interval)
    print(f"\n{summary}")
    if not steady:
        failures.append("descriptors or memory grew: " + summary)
    print(f"plugin reloads: {'on' if has_reload else 'off (no admin plugin API)'}")
    print(f"crashes: {crashes}")
    for f in failures:
        print(f"soak FAILED: {f}")
    if not failures:
        print("soak passed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
