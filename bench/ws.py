#!/usr/bin/env python3
"""WebSocket benchmark; see bench/README.md.

1. Idle connections: opens COUNT WebSocket connections to Weir and holds them; reports
   Weir's resident memory per connection (RSS after minus RSS before, over COUNT).
2. Message round trips: CONNECTIONS clients each send a message, wait for the route
   response (client -> Weir -> backend -> Weir -> client), and repeat for SECONDS;
   reports messages/s and p50/p99 latency. The backend is nginx answering every POST.

Usage: bench/ws.sh [--count N] [--connections C] [--seconds S] [--size B]"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (shared helpers: ports, nginx config, process start)

LOAD = os.path.join(run.ROOT, "target", "release", "examples", "ws_load")


def config(port, upstream):
    return f"""
[server]
listen = "127.0.0.1:{port}"
[access_log]
enabled = false
[throttle]
rate = 1000000
burst = 1000000

[websocket.bench]
path = "/ws"
limits = {{ connect_rate = 1000000 }}
[[websocket.bench.routes]]
key = "$connect"
integration = {{ type = "mock" }}
[[websocket.bench.routes]]
key = "echo"
integration = {{ type = "http", url = "http://127.0.0.1:{upstream}/echo" }}
route_response = true
"""


def main():
    ap = argparse.ArgumentParser()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ap.add_argument("--count", type=int, default=min(50_000, hard - 1000))
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args()
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.count > hard - 1000:
        print(f"note: open files are limited to {hard} per process here; holding {hard - 1000}")
        args.count = hard - 1000

    procs = []
    with tempfile.TemporaryDirectory() as work:
        try:
            run.UPSTREAM_PORT = run.free_port()
            up_conf = os.path.join(work, "upstream.conf")
            with open(up_conf, "w") as f:
                f.write(run.nginx_conf(work, run.UPSTREAM_PORT,
                                       "default_type application/json; return 200 '{\"ok\":true}';"))
            procs.append(run.start(["nginx", "-c", up_conf], run.UPSTREAM_PORT))
            port = run.free_port()
            cfg = os.path.join(work, "weir.toml")
            with open(cfg, "w") as f:
                f.write(config(port, run.UPSTREAM_PORT))
            weir = run.start([run.WEIR, "serve", "--config", cfg], port)
            procs.append(weir)
            url = f"ws://127.0.0.1:{port}/ws"

            out = subprocess.run([LOAD, "echo", url, str(args.connections), str(args.seconds),
                                  str(args.size)], check=True, capture_output=True, text=True)
            echo = json.loads(out.stdout)
            print(f"round trips: {args.connections} connections, {args.size}-byte messages, "
                  f"{args.seconds} s: {echo['per_second']:.0f} msg/s, p50 {echo['p50_us']} us, "
                  f"p99 {echo['p99_us']} us, errors {echo['errors']}")

            time.sleep(1)
            out = subprocess.run([LOAD, "hold", url, str(args.count), str(weir.pid)],
                                 check=True, capture_output=True, text=True)
            hold = json.loads(out.stdout)
            print(f"idle connections: held {hold['held']} (failed {hold['failed']}) in "
                  f"{hold['open_seconds']:.1f} s; Weir RSS {hold['rss_before_kib'] / 1024:.1f} MiB -> "
                  f"{hold['rss_after_kib'] / 1024:.1f} MiB = {hold['bytes_per_connection'] / 1024:.1f} KiB "
                  f"per connection")
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()


if __name__ == "__main__":
    main()
