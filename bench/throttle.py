#!/usr/bin/env python3
"""Throttle benchmark; see bench/README.md. Needs wrk and a release build of Weir
(`cargo build --release -p weir`).

1. Accuracy: a mock route with `throttle = { rate = R, burst = B }` is driven at about
   3 x R for D seconds by paced wrk connections; admitted / min(sent, B + R*t) is
   reported, and admitted must never exceed B + R*t.
2. Cost: wrk flat out (-t2 -c64) on the same mock route with only the account bucket
   (every request pays that one), with a route bucket too, and with an API key whose
   plan has a bucket and a quota; interleaved rounds, medians, ratios to the first."""

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from common import ROOT, free_port, stop

WEIR = os.path.join(ROOT, "target", "release", "weir")
LUA = os.path.join(ROOT, "bench", "throttle.lua")
KEY = "bench-key-0123456789abcdef"
ARGS = None
BIG = 'rate = 1000000000, burst = 1000000000'


def start(work, name, body):
    port = free_port()
    conf = os.path.join(work, f"{name}.toml")
    with open(conf, "w") as f:
        f.write(f'[server]\nlisten = "127.0.0.1:{port}"\n{body}')
    proc = subprocess.Popen([ARGS.weir, "serve", "--config", conf], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=dict(os.environ, RUST_LOG="warn"))
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"weir {name} did not start")


ACCOUNT = "[throttle]\nrate = 1000000000\nburst = 1000000000\n"


def route(extra=""):
    return f'[[routes]]\nkey = "GET /t"\nintegration = {{ type = "mock", body = "ok" }}\n{extra}\n'


def wrk(port, args, delay_ms, key=None):
    cmd = ["wrk", *args, "-s", LUA, f"http://127.0.0.1:{port}/t"]
    if key:
        cmd[1:1] = ["-H", f"x-api-key: {key}"]
    env = dict(os.environ, WEIR_DELAY_MS=str(delay_ms))
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
    ok, limited, other, micros = map(int, re.search(r"COUNTS (\d+) (\d+) (\d+) (\d+)", out).groups())
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return ok, limited, other, micros / 1e6, rps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=1000)
    ap.add_argument("--burst", type=int, default=200)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--weir", default=WEIR, help="the weir binary (default: release build)")
    args = ap.parse_args()
    global ARGS
    ARGS = args
    work = tempfile.mkdtemp(prefix="weir-throttle-bench-")
    procs = []
    try:
        # 1. Accuracy at ~3x the rate: 30 connections, each waiting 10 ms between requests.
        proc, port = start(work, "accuracy", route(f"throttle = {{ rate = {args.rate}, burst = {args.burst} }}"))
        procs.append(proc)
        conns = 30
        delay = max(1, round(conns * 1000 / (3 * args.rate)))
        ok, limited, other, t, _ = wrk(port, ["-t2", f"-c{conns}", f"-d{args.duration}s"], delay)
        sent = ok + limited + other
        ceiling = args.burst + args.rate * t
        expected = min(sent, ceiling)
        print(f"accuracy: sent {sent} in {t:.2f} s ({sent / t:.0f}/s, {sent / t / args.rate:.2f}x the rate), "
              f"admitted {ok}, 429 {limited}, other {other}")
        print(f"  admitted / expected = {ok / expected:.4f} (expected {expected:.0f}; "
              f"ceiling burst + rate*t = {ceiling:.0f}; within ceiling: {ok <= ceiling})")

        # 2. Cost of throttling, flat out.
        targets = {
            "account only": start(work, "plain", ACCOUNT + route()),
            "+ route bucket": start(work, "route", ACCOUNT + route(f"throttle = {{ {BIG} }}")),
            "+ key, plan bucket, quota": start(work, "key", ACCOUNT + f"""
[usage_plans.p]
throttle = {{ {BIG} }}
quota = {{ limit = 1000000000000, period = "MONTH" }}
[[api_keys]]
name = "bench"
value = "{KEY}"
plan = "p"
""" + route(f"throttle = {{ {BIG} }}\napi_key_required = true")),
        }
        procs += [p for p, _ in targets.values()]
        results = {name: [] for name in targets}
        for rnd in range(args.rounds):
            for name, (_, port) in targets.items():
                key = KEY if "key" in name else None
                ok, limited, other, t, rps = wrk(port, ["-t2", "-c64", "-d5s"], 0, key)
                if limited or other:
                    print(f"  warning: {name}: {limited} x 429, {other} other", file=sys.stderr)
                results[name].append(rps)
                print(f"round {rnd + 1} {name:28} {rps:>9.0f} req/s", file=sys.stderr)
        base = statistics.median(results["account only"])
        print(f"\ncost ({args.rounds} interleaved rounds of wrk -t2 -c64 -d5s, medians):")
        for name, rs in results.items():
            med = statistics.median(rs)
            print(f"  {name:28} {med:>9.0f} req/s  {med / base:.3f}x")
    finally:
        stop(procs)


if __name__ == "__main__":
    main()
