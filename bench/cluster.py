#!/usr/bin/env python3
"""`[cluster]` benchmark; see bench/README.md. Needs wrk, redis-server and a Weir build
(`--weir`, default the release build). Everything runs on this machine, in one run:

1. Accuracy: two nodes share one account bucket (`rate = R`, `burst = B`) through one
   redis-server; each node is driven by paced wrk connections at 1.5 x R, so 3 x R in
   all, for D seconds. Reported: admitted / allowed, where allowed = B + R * t, for
   `mode = "exact"` and `mode = "lease"`.
2. Cost: one node flat out (wrk -t2 -c32) on a mock route, with `[cluster]` off, on in
   lease mode and on in exact mode (limits far above the load, so every request takes
   its tokens and none is refused): requests/s and p50/p99, interleaved rounds,
   medians, ratios to "off".
3. `@connections` across nodes: a WebSocket client on node A; N sequential
   `POST /@connections/{id}` on node A's admin listener (local) and on node B's (the
   post crosses the store's pub/sub to A and back): p50/p99 of each, and the ratio."""

import argparse
import base64
import http.client
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from common import ROOT, free_port, wait_port

WEIR = os.path.join(ROOT, "target", "release", "weir")
LUA = os.path.join(ROOT, "bench", "throttle.lua")
ARGS = None
PROCS = []


def redis_server():
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(port),
                             "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    PROCS.append(proc)
    wait_port(port)
    return proc, port


def weir(work, name, body, admin=False):
    port = free_port()
    admin_port = free_port() if admin else None
    conf = os.path.join(work, f"{name}.toml")
    with open(conf, "w") as f:
        f.write(f'[server]\nlisten = "127.0.0.1:{port}"\n')
        if admin:
            f.write(f'[admin]\nlisten = "127.0.0.1:{admin_port}"\n')
        f.write(body)
    proc = subprocess.Popen([ARGS.weir, "serve", "--config", conf], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=dict(os.environ, RUST_LOG="warn"))
    PROCS.append(proc)
    wait_port(port)
    if admin:
        wait_port(admin_port)
    return proc, port, admin_port


def stop(proc):
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def cluster(redis_port, node, mode):
    return (f'[cluster]\nredis = "redis://127.0.0.1:{redis_port}/0"\nnode_id = "{node}"\n'
            f'mode = "{mode}"\n')


ROUTE = '[[routes]]\nkey = "GET /t"\nintegration = { type = "mock", body = "ok" }\n'


def wrk(port, args, delay_ms=0):
    cmd = ["wrk", *args, "--latency", "-s", LUA, f"http://127.0.0.1:{port}/t"]
    env = dict(os.environ, WEIR_DELAY_MS=str(delay_ms))
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=env)


def wrk_result(proc):
    out = proc.communicate()[0]
    ok, limited, other, micros = map(int, re.search(r"COUNTS (\d+) (\d+) (\d+) (\d+)", out).groups())
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def pct(p):
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            return float("nan")
        return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]

    return {"ok": ok, "limited": limited, "other": other, "rps": rps,
            "p50": pct(50), "p99": pct(99)}


def accuracy(work, redis_port, mode):
    rate, burst, secs = ARGS.rate, ARGS.burst, ARGS.duration
    body = f"[throttle]\nrate = {rate}\nburst = {burst}\n{ROUTE}"
    nodes = [weir(work, f"acc-{mode}-{n}", cluster(redis_port, f"acc-{mode}-{n}", mode) + body)
             for n in ("a", "b")]
    # 1.5 x R per node: c connections, each pausing `delay` ms between requests.
    conns = 8
    delay = max(1, round(conns * 1000 / (1.5 * rate)))
    start = time.time()
    runs = [wrk(port, ["-t1", f"-c{conns}", f"-d{secs}s"], delay) for _, port, _ in nodes]
    results = [wrk_result(r) for r in runs]
    elapsed = time.time() - start
    for proc, _, _ in nodes:
        stop(proc)
    admitted = sum(r["ok"] for r in results)
    sent = sum(r["ok"] + r["limited"] + r["other"] for r in results)
    allowed = burst + rate * elapsed
    return admitted, allowed, sent, elapsed, [r["ok"] for r in results], sum(r["other"] for r in results)


def cost(work, redis_port):
    big = "[throttle]\nrate = 1000000000\nburst = 1000000000\n"
    setups = {
        "off": big + ROUTE,
        "lease": cluster(redis_port, "cost-lease", "lease") + big + ROUTE,
        "exact": cluster(redis_port, "cost-exact", "exact") + big + ROUTE,
    }
    rounds = {name: [] for name in setups}
    for _ in range(ARGS.rounds):
        for name, body in setups.items():
            proc, port, _ = weir(work, f"cost-{name}", body)
            wrk_result(wrk(port, ["-t2", "-c32", "-d2s"]))  # warm-up
            rounds[name].append(wrk_result(wrk(port, ["-t2", "-c32", f"-d{ARGS.duration}s"])))
            stop(proc)
    return {name: {k: statistics.median(r[k] for r in rs) for k in ("rps", "p50", "p99", "other")}
            for name, rs in rounds.items()}


def ws_connect(port):
    s = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /chat HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(4096)
    assert b" 101 " in head.split(b"\r\n")[0], head
    return s, head.split(b"\r\n\r\n", 1)[1]


def ws_frame(s, buf):
    """Reads one server frame (unmasked, short); returns (payload, rest)."""
    while True:
        if len(buf) >= 2:
            n = buf[1] & 0x7F
            off = 2
            if n == 126:
                if len(buf) < 4:
                    buf += s.recv(65536)
                    continue
                n = int.from_bytes(buf[2:4], "big")
                off = 4
            if len(buf) >= off + n:
                return buf[off:off + n], buf[off + n:]
        buf += s.recv(65536)


def connections(work, redis_port):
    api = ('[websocket.chat]\npath = "/chat"\n'
           '[[websocket.chat.routes]]\nkey = "$default"\n'
           'integration = { type = "mock", body = "" }\n')
    a, a_port, a_admin = weir(work, "ws-a", cluster(redis_port, "ws-a", "lease") + api, admin=True)
    b, _, b_admin = weir(work, "ws-b", cluster(redis_port, "ws-b", "lease") + api, admin=True)
    s, buf = ws_connect(a_port)
    deadline = time.time() + 5
    conn_id = None
    while conn_id is None and time.time() < deadline:
        keys = subprocess.run(["redis-cli", "-p", str(redis_port), "--raw", "KEYS", "weir:conn:*"],
                              capture_output=True, text=True).stdout.split()
        conn_id = keys[0].split(":", 2)[2] if keys else None
        time.sleep(0.02)
    assert conn_id, "the connection was not registered"
    results = {}
    for name, admin in (("local", a_admin), ("cross-node", b_admin)):
        c = http.client.HTTPConnection("127.0.0.1", admin)
        lat = []
        for i in range(ARGS.posts):
            t = time.perf_counter()
            c.request("POST", f"/@connections/{conn_id}", body=f"m{i}")
            r = c.getresponse()
            r.read()
            assert r.status == 200, r.status
            payload, buf = ws_frame(s, buf)
            lat.append((time.perf_counter() - t) * 1000)
            assert payload == f"m{i}".encode(), payload
        lat.sort()
        results[name] = (lat[len(lat) // 2], lat[int(len(lat) * 0.99) - 1])
    s.close()
    stop(a)
    stop(b)
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=500)
    ap.add_argument("--burst", type=int, default=250)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--posts", type=int, default=500)
    ap.add_argument("--weir", default=WEIR, help="the weir binary (default: release build)")
    ap.add_argument("--only", default="accuracy,cost,connections")
    global ARGS
    ARGS = ap.parse_args()
    only = ARGS.only.split(",")
    work = tempfile.mkdtemp(prefix="weir-cluster-bench-")
    redis, redis_port = redis_server()
    try:
        if "accuracy" in only:
            print(f"accuracy: two nodes, 3 x the account limit (rate {ARGS.rate:g}, burst "
                  f"{ARGS.burst}) for {ARGS.duration} s")
            for mode in ("exact", "lease"):
                admitted, allowed, sent, t, per_node, other = accuracy(work, redis_port, mode)
                print(f"  {mode:5}  admitted {admitted} of {sent} sent (a/b {per_node[0]}/"
                      f"{per_node[1]}, other {other}), allowed {allowed:.0f} over {t:.1f} s: "
                      f"admitted / allowed = {admitted / allowed:.3f}")
        if "cost" in only:
            print(f"cost: one node flat out (wrk -t2 -c32, {ARGS.duration} s, median of "
                  f"{ARGS.rounds} rounds)")
            res = cost(work, redis_port)
            base = res["off"]
            for name, r in res.items():
                print(f"  {name:5}  {r['rps']:9.0f} req/s ({r['rps'] / base['rps']:.2f}x)  "
                      f"p50 {r['p50']:.2f} ms ({r['p50'] / base['p50']:.2f}x)  "
                      f"p99 {r['p99']:.2f} ms ({r['p99'] / base['p99']:.2f}x)  non-2xx {r['other']:.0f}")
        if "connections" in only:
            print(f"@connections: {ARGS.posts} sequential POSTs, until the client has the message")
            res = connections(work, redis_port)
            for name, (p50, p99) in res.items():
                print(f"  {name:10}  p50 {p50:.2f} ms  p99 {p99:.2f} ms")
            print(f"  cross-node / local p50: {res['cross-node'][0] / res['local'][0]:.2f}x")
    finally:
        for p in PROCS:
            if p.poll() is None:
                p.kill()
                p.wait()


if __name__ == "__main__":
    sys.exit(main())
