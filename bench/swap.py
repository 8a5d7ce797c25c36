#!/usr/bin/env python3
"""Hot swap under load; see bench/README.md.

Weir proxies every request to an nginx upstream through a mapper plugin. wrk drives it
for a baseline period without swaps, then for the swap period while this script
replaces the plugin through the admin API every 500 ms, alternating two versions
(`stamp-v1`, `stamp-v2` from tests/plugins). Reports failed requests (must be 0), p50
and p99 with and without swaps, and the gateway's RSS before and after."""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (free_port, wait_port, nginx_conf, start)

ROOT = run.ROOT
STAMPS = os.path.join(ROOT, "target", "wasm-plugins", "wasm32-wasip2", "release")
TOKEN = "bench-admin-token-0123456789"
# Seconds without load before RSS is read at the start and at the end.
SETTLE = 12


def build_stamps():
    if all(os.path.exists(os.path.join(STAMPS, f"stamp_v{v}.wasm")) for v in (1, 2)):
        return
    subprocess.run(["cargo", "build", "--release", "--target", "wasm32-wasip2",
                    "--manifest-path", os.path.join(ROOT, "tests", "plugins", "Cargo.toml"),
                    "-p", "stamp-v1", "-p", "stamp-v2"],
                   env={**os.environ, "CARGO_TARGET_DIR": os.path.join(ROOT, "target", "wasm-plugins")},
                   check=True)


def rss_kib(pid, field="VmRSS"):
    """One of the RSS figures in /proc/PID/status, KiB: VmRSS (the whole), RssAnon (heap,
    stacks, plugin memory) or RssFile (pages of the mapped binary and files)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def rss_parts(pid):
    return f"anon {rss_kib(pid, 'RssAnon') / 1024:.1f}, file {rss_kib(pid, 'RssFile') / 1024:.1f}"


def wrk(port, seconds, connections):
    # wrk's own 2 s timeout would count a slow answer as failed; a shared machine can
    # stall a response that long. Failures are requests not answered with a 2xx.
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s",
           f"http://127.0.0.1:{port}/bench/item"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    lat = {}
    for pct, val, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M):
        lat[pct] = float(val) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    socket = dict(zip(("connect", "read", "write", "timeout"), map(int, sock.groups()))) if sock else {}
    non2xx = int(non2xx.group(1)) if non2xx else 0
    return {"requests": total, "failed": non2xx + sum(socket.values()), "non2xx": non2xx,
            "socket": socket, "p50": lat.get("50"), "p99": lat.get("99")}


def put(admin_port, body):
    req = urllib.request.Request(f"http://127.0.0.1:{admin_port}/admin/plugins/m", data=body,
                                 method="PUT", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status


def statuses(admin_port):
    """Requests Weir answered, by status code, from its metrics."""
    out = {}
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            m = re.match(r'weir_requests_total\{.*status="(\d+)".*\} (\d+)', line)
            if m:
                out[m.group(1)] = out.get(m.group(1), 0) + int(m.group(2))
    return out


def metric(admin_port, name):
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", type=int, default=20, help="seconds of load without swaps")
    ap.add_argument("--duration", type=int, default=60, help="seconds of load with swaps")
    ap.add_argument("--every", type=float, default=0.5, help="seconds between swaps")
    ap.add_argument("--connections", type=int, default=32)
    args = ap.parse_args()

    build_stamps()
    versions = [open(os.path.join(STAMPS, f"stamp_v{v}.wasm"), "rb").read() for v in (1, 2)]
    work = tempfile.mkdtemp(prefix="weir-swap-")
    procs = []
    try:
        run.UPSTREAM_PORT = run.free_port()
        up_conf = os.path.join(work, "upstream.conf")
        with open(up_conf, "w") as f:
            body = "default_type application/json; return 200 '{\"ok\":true,\"from\":\"upstream\"}';"
            f.write(run.nginx_conf(work, run.UPSTREAM_PORT, body))
        procs.append(run.start(["nginx", "-c", up_conf], run.UPSTREAM_PORT))

        with open(os.path.join(work, "m.wasm"), "wb") as f:
            f.write(versions[0])
        port, admin_port = run.free_port(), run.free_port()
        config = os.path.join(work, "weir.toml")
        with open(config, "w") as f:
            f.write(f"""
[server]
listen = "127.0.0.1:{port}"
[admin]
listen = "127.0.0.1:{admin_port}"
token = "{TOKEN}"
[access_log]
enabled = false
[throttle]
rate = 1000000
burst = 1000000
[plugins.m]
file = "m.wasm"
world = "mapper"
[[routes]]
key = "ANY /{{proxy+}}"
integration = {{ type = "http", url = "http://127.0.0.1:{run.UPSTREAM_PORT}" }}
request_mapping = "m"
""")
        log_path = os.path.join(work, "weir.log")
        log = open(log_path, "w")
        weir = run.start([run.WEIR, "serve", "--config", config], port, stderr=log,
                         env=dict(os.environ, RUST_LOG="warn"))
        procs.append(weir)
        run.wait_port(admin_port)

        wrk(port, 3, args.connections)  # warm-up
        time.sleep(SETTLE)
        rss_warm = rss_kib(weir.pid)
        # RSS under load without swaps, sampled as it is while swapping below.
        base_samples, sampling = [], threading.Event()

        def sampler():
            while not sampling.wait(5):
                base_samples.append(rss_kib(weir.pid) / 1024)

        t = threading.Thread(target=sampler)
        t.start()
        base = wrk(port, args.baseline, args.connections)
        sampling.set()
        t.join()
        # RSS at the start of the swap run, read as the end is: after load without swaps
        # (here the baseline) and a pause. The baseline's own load still raises RSS a
        # little over the short warm-up; that is not the swaps' doing.
        time.sleep(SETTLE)
        rss_start = rss_kib(weir.pid)
        parts_start = rss_parts(weir.pid)

        swaps, refused, stop = [0], [0], threading.Event()

        samples = []

        def swapper():
            i = 1
            while not stop.wait(args.every):
                if i % round(10 / args.every) == 0:
                    samples.append(rss_kib(weir.pid) / 1024)
                try:
                    ok = put(admin_port, versions[i % 2]) == 200
                except Exception:  # noqa: BLE001 - a refused swap is counted, not fatal
                    ok = False
                swaps[0] += ok
                refused[0] += not ok
                i += 1

        t = threading.Thread(target=swapper)
        t.start()
        during = wrk(port, args.duration, args.connections)
        stop.set()
        t.join()
        # Read the end in the state the start was read in: after a few seconds of load
        # without swaps, then a pause. (The allocator returns freed pages lazily, on
        # later allocations; read straight after the last swap, RSS still holds the last
        # compiles' scratch memory, whatever its long-run level.)
        wrk(port, 3, args.connections)
        time.sleep(SETTLE)
        rss_end = rss_kib(weir.pid)
        parts_end = rss_parts(weir.pid)
        alive = metric(admin_port, "weir_plugin_versions_alive")

        print(f"baseline {args.baseline}s: {base['requests']} requests, {base['failed']} failed, "
              f"p50 {base['p50']:.3f} ms, p99 {base['p99']:.3f} ms")
        print(f"swapping {args.duration}s: {during['requests']} requests, {during['failed']} failed, "
              f"p50 {during['p50']:.3f} ms, p99 {during['p99']:.3f} ms; "
              f"{swaps[0]} swaps, {refused[0]} refused")
        print(f"p99 during swaps / without: {during['p99'] / base['p99']:.2f}")
        print(f"RSS: {rss_warm / 1024:.1f} MiB after the warm-up, {rss_start / 1024:.1f} MiB at the "
              f"start of swapping, {rss_end / 1024:.1f} MiB at end ({rss_end / rss_start:.2f}x start, "
              f"{rss_end / rss_warm:.2f}x after the warm-up); plugin versions alive at end: {alive:.0f}")
        print(f"RSS by kind (MiB): start {parts_start}; end {parts_end}")
        print("RSS every 5 s of the baseline (MiB): " + ", ".join(f"{x:.1f}" for x in base_samples))
        print("RSS every 10 s of swapping (MiB): " + ", ".join(f"{x:.1f}" for x in samples))
        if base_samples and samples:
            print(f"RSS under load, highest sample while swapping / without: "
                  f"{max(samples) / max(base_samples):.2f}x")
        for name, r in (("baseline", base), ("swapping", during)):
            if r["failed"]:
                print(f"{name} failures: non-2xx {r['non2xx']}, socket errors {r['socket']}")
        print(f"Weir's answers by status: {statuses(admin_port)}")
        log.flush()
        with open(log_path) as f:
            errors = [line.rstrip() for line in f if "ERROR" in line or "WARN" in line]
        print(f"warnings and errors in Weir's log: {len(errors)}")
        for line in errors[:10]:
            print("  " + line)
        if during["failed"] or base["failed"] or refused[0]:
            sys.exit(1)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()


if __name__ == "__main__":
    main()
