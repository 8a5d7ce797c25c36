#!/usr/bin/env python3
"""Upstream faults at volume: 10,000 broken exchanges through one Weir process, with
its descriptors and memory before and after; see bench/README.md.

The routes point at a faulty upstream (in this process) and at a closed port:

  refused    nothing listens                                     -> 502
  reset      half a body, then a TCP reset                       -> 502
  malformed  `HTTP/1.1 abc`                                      -> 502
  hang       reads the request, never answers                    -> 504
  drip       headers, then one body byte every 100 ms            -> 504
  close      a good answer, then closes the keep-alive connection -> 200

Every route has `timeout = "300ms"`. The kinds take turns; --concurrency clients with
keep-alive connections send --requests in all. First a warm-up round (100 per kind),
then, with the clients' connections closed and 2 s to settle, RSS and open descriptors
("before"); then the run and the same measurement ("after"). It exits 1 if any answer
had another status, or came later than the timeout plus 1 s.

Usage: cargo build --release -p weir && python3 bench/faults.py [--requests N]
       [--concurrency C] [--weir PATH] [--log FILE]"""

import argparse
import asyncio
import collections
import http.client
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (shared helpers: ports, the release binary's path)

KINDS = {"refused": 502, "reset": 502, "malformed": 502, "hang": 504, "drip": 504,
         "close": 200}
TIMEOUT = 0.3


async def faulty(reader, writer):
    """One upstream connection: answers each request by the fault its path names."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            kind = head.split(b" ", 2)[1].rsplit(b"/", 1)[-1].decode()
            if kind == "reset":
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\nhalf")
                await writer.drain()
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                break
            if kind == "malformed":
                writer.write(b"HTTP/1.1 abc\r\n\r\n")
                break
            if kind == "hang":
                await asyncio.wait_for(reader.read(), 30)  # until Weir gives up and closes
                break
            if kind == "drip":
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n")
                for _ in range(100):
                    await asyncio.sleep(0.1)
                    writer.write(b"d")
                    await writer.drain()
                continue
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            break  # "close": the answer is good, then the connection goes
    except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
        pass
    finally:
        writer.close()


def start_upstream():
    """The faulty upstream on its own event loop thread; its port."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    port = []

    async def serve():
        server = await asyncio.start_server(faulty, "127.0.0.1", 0, backlog=1024)
        port.append(server.sockets[0].getsockname()[1])
        ready.set()
        await server.serve_forever()

    threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True).start()
    ready.wait(10)
    return port[0]


def config(port, upstream, refused, access_log):
    routes = ""
    for kind in KINDS:
        target = refused if kind == "refused" else upstream
        routes += f"""
[[routes]]
key = "GET /{kind}"
integration = {{ type = "http", url = "http://127.0.0.1:{target}/{kind}" }}
timeout = "{int(TIMEOUT * 1000)}ms"
"""
    return f"""
[server]
listen = "127.0.0.1:{port}"
[access_log]
enabled = {"true" if access_log else "false"}
{routes}"""


def sample(pid):
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def drive(port, total, concurrency):
    """Sends `total` requests, kinds in turn, from `concurrency` keep-alive clients.
    Returns outcomes by (kind, status) and the slowest answer by kind."""
    outcomes = collections.Counter()
    slowest = collections.defaultdict(float)
    late = collections.Counter()
    lock = threading.Lock()
    kinds = list(KINDS)
    next_index = iter(range(total))

    def client():
        conn = None
        while True:
            with lock:
                i = next(next_index, None)
            if i is None:
                break
            kind = kinds[i % len(kinds)]
            started = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("GET", f"/{kind}")
                resp = conn.getresponse()
                resp.read()
                status = str(resp.status)
            except Exception as e:  # noqa: BLE001 - counted by cause
                status = type(e).__name__
                conn = None
            took = time.monotonic() - started
            with lock:
                outcomes[(kind, status)] += 1
                slowest[kind] = max(slowest[kind], took)
                if took > TIMEOUT + 1:
                    late[kind] += 1
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes, slowest, late


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--settle", type=float, default=2.0)
    ap.add_argument("--weir", default=run.WEIR)
    ap.add_argument("--log", help="write Weir's output, access log included, to this file")
    args = ap.parse_args()

    upstream = start_upstream()
    port, refused = run.free_port(), run.free_port()  # nothing listens on `refused`
    with tempfile.TemporaryDirectory() as work:
        cfg = os.path.join(work, "weir.toml")
        with open(cfg, "w") as f:
            f.write(config(port, upstream, refused, args.log))
        out = open(args.log, "w") if args.log else subprocess.DEVNULL
        weir = subprocess.Popen([args.weir, "serve", "--config", cfg], stdout=out, stderr=out)
        run.wait_port(port)
        try:
            idle = sample(weir.pid)
            drive(port, 100 * len(KINDS), args.concurrency)
            time.sleep(args.settle)
            before = sample(weir.pid)
            started = time.monotonic()
            outcomes, slowest, late = drive(port, args.requests, args.concurrency)
            took = time.monotonic() - started
            time.sleep(args.settle)
            after = sample(weir.pid)
            crashed = weir.poll() is not None
        finally:
            weir.terminate()
            weir.wait(timeout=30)

    print(f"{args.requests} requests, {args.concurrency} clients, {took:.1f} s "
          f"({args.requests / took:.0f}/s), route timeout {TIMEOUT * 1000:.0f} ms\n")
    print("| fault | expected | outcomes | slowest | later than timeout + 1 s |")
    print("|---|---|---|---|---|")
    wrong = 0
    for kind, status in KINDS.items():
        got = {s: n for (k, s), n in outcomes.items() if k == kind}
        wrong += sum(n for s, n in got.items() if s != str(status))
        shown = ", ".join(f"{s}: {n}" for s, n in sorted(got.items()))
        print(f"| {kind} | {status} | {shown} | {slowest[kind] * 1000:.0f} ms | {late[kind]} |")
    for name, (rss, fds) in (("idle", idle), ("before (after warm-up)", before),
                             ("after", after)):
        print(f"{name:>24}: RSS {rss / 1024:.1f} MiB, {fds} descriptors")
    print(f"RSS {(after[0] - before[0]) / 1024:+.1f} MiB "
          f"({(after[0] - before[0]) / before[0] * 100:+.1f}%), "
          f"descriptors {after[1] - before[1]:+d}")
    failed = wrong or sum(late.values()) or crashed
    if crashed:
        print("weir exited during the run")
    print("FAILED" if failed else "ok")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
