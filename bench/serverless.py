#!/usr/bin/env python3
"""Serverless backends benchmark; see bench/README.md. Needs wrk, python3 and a release
build of Weir (`cargo build --release -p weir`); `wasmtime` (the CLI, for
`wasmtime serve`) on PATH or given with --wasmtime.

1. function: the Rust component of examples/function as a `type = "function"` route,
   against `wasmtime serve` running the same file; both take a fresh instance per
   request. wrk -t2 -c16, interleaved rounds, medians; req/s and CPU per request (the
   server process, from /proc) as ratios.
2. lambda: a Python hello handler under the real awslambdaric as a `type = "lambda"`
   route at concurrency 2 (two processes, wrk -c2), against the same handler called by
   a Python ThreadingHTTPServer directly; CPU includes the function processes ("own":
   the gateway process alone).
3. cold start: the first request to a function with `min_warm = 0` (a process is
   started, awslambdaric imported, the handler loaded) against the second, fresh
   gateways each time.
Each Weir process is checked for leaks across the run: open descriptors, resident
memory and child processes after the first round and at the end, with the number of
requests between them."""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from common import ROOT, free_port, wait_port

WEIR = os.path.join(ROOT, "target", "release", "weir")
AWSLAMBDARIC = "awslambdaric==4.2.2"  # as tests/src/lambda.rs
TICKS = os.sysconf("SC_CLK_TCK")

HANDLER = '''
def handler(event, context):
    return {"statusCode": 200, "headers": {"content-type": "text/plain"}, "body": "hello"}
'''

DIRECT = '''
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
sys.path.insert(0, sys.argv[2])
from bench_hello import handler

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # One write per answer, sent at once: unbuffered writes and Nagle's algorithm
    # would cost a delayed ACK (about 40 ms) per request.
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True
    def do_GET(self):
        event = {"version": "2.0", "rawPath": self.path, "headers": dict(self.headers)}
        answer = handler(event, None)
        body = answer["body"].encode()
        self.send_response(answer["statusCode"])
        for k, v in answer["headers"].items():
            self.send_header(k, v)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass

class Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # wrk resets its connections at the end of a run

Server(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
'''


def weir(args, work, name, body, wait_path=None):
    port = free_port()
    conf = os.path.join(work, f"{name}.toml")
    with open(conf, "w") as f:
        f.write(f'[server]\nlisten = "127.0.0.1:{port}"\n{body}')
    proc = subprocess.Popen([args.weir, "serve", "--config", conf], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=dict(os.environ, RUST_LOG="warn"))
    wait_port(port, f"weir {name}")
    if wait_path:
        get(port, wait_path)
    return proc, port


def get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as r:
        r.read()
        return r.status


def descendants(pid):
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = open(f"/proc/{entry}/stat").read()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(")") + 1:].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        try:
            stat = open(f"/proc/{pid}/stat").read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def footprint(pid):
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    rss = next(int(line.split()[1]) for line in open(f"/proc/{pid}/status") if line.startswith("VmRSS:"))
    return fds, rss, len(descendants(pid))


def wrk(port, path, conns, duration, pid):
    pids = [pid, *descendants(pid)]
    before = cpu_seconds(pids)
    own_before = cpu_seconds([pid])
    out = subprocess.run(["wrk", "-t2", f"-c{conns}", f"-d{duration}s", "--latency",
                          f"http://127.0.0.1:{port}{path}"],
                         capture_output=True, text=True, check=True).stdout
    cpu = cpu_seconds([pid, *descendants(pid)]) - before
    own = cpu_seconds([pid]) - own_before
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors or "Socket errors" in out:
        print(f"  warning: {path} on {port}: {errors.group(0) if errors else 'socket errors'}",
              file=sys.stderr)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 1e-3, "ms": 1, "s": 1e3}[p99.group(2)]
    return rps, cpu / max(requests, 1) * 1e6, float(p99.group(1)) * scale, requests, own / max(requests, 1) * 1e6


def compare(title, targets, conns, args):
    """Interleaved rounds over {name: (pid, port, path, leak-checked)}; prints medians."""
    results = {name: [] for name in targets}
    served = {name: 0 for name in targets}
    first = {}
    for rnd in range(args.rounds):
        for name, (pid, port, path, checked) in targets.items():
            rps, cpu, p99, n, own = wrk(port, path, conns, args.duration, pid)
            results[name].append((rps, cpu, p99, own))
            served[name] += n
            if checked and rnd == 0:
                first[name] = footprint(pid)
    print(f"\n{title} (wrk -t2 -c{conns}, {args.rounds} rounds x {args.duration} s, medians)")
    print(f"  {'target':<22} {'req/s':>9} {'CPU µs/req':>11} {'(own)':>8} {'p99 ms':>8}")
    med = {}
    for name, rows in results.items():
        med[name] = tuple(statistics.median(r[i] for r in rows) for i in range(4))
        print(f"  {name:<22} {med[name][0]:>9.0f} {med[name][1]:>11.1f} {med[name][3]:>8.1f} "
              f"{med[name][2]:>8.2f}")
    names = list(targets)
    a, b = med[names[0]], med[names[1]]
    print(f"  {names[0]} / {names[1]}: req/s {a[0] / b[0]:.2f}x, CPU per request {a[1] / b[1]:.2f}x, "
          f"p99 {a[2] / b[2]:.2f}x")
    for name, (pid, _, _, checked) in targets.items():
        if checked:
            fds0, rss0, kids0 = first[name]
            fds1, rss1, kids1 = footprint(pid)
            print(f"  leaks, {name}: over the {served[name]} requests after round 1: fds {fds0} -> {fds1}, "
                  f"RSS {rss0} -> {rss1} KiB, child processes {kids0} -> {kids1}")


def awslambdaric_site():
    site = os.path.join(ROOT, "target", f"awslambdaric-{AWSLAMBDARIC.split('==')[1]}")
    if not os.path.isdir(os.path.join(site, "awslambdaric")):
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "--target", site, AWSLAMBDARIC], check=True)
    return site


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=6)
    ap.add_argument("--cold-starts", type=int, default=5)
    ap.add_argument("--weir", default=WEIR, help="the weir binary (default: release build)")
    ap.add_argument("--wasmtime", default=shutil.which("wasmtime"), help="the wasmtime CLI")
    ap.add_argument("--only", default="function,lambda,cold", help="parts to run")
    args = ap.parse_args()
    parts = args.only.split(",")
    work = tempfile.mkdtemp(prefix="weir-serverless-bench-")
    procs = []
    try:
        if "function" in parts:
            if not args.wasmtime:
                sys.exit("wasmtime (the CLI) not found: pass --wasmtime PATH")
            fn_dir = os.path.join(work, "fn")
            subprocess.run(["bash", os.path.join(ROOT, "examples/function/build.sh"), fn_dir], check=True,
                           env=dict(os.environ, WEIR_SKIP_POLYGLOT="1"), stdout=subprocess.DEVNULL)
            wasm = os.path.join(fn_dir, "hello-rust.wasm")
            # The account bucket (10,000/s by default) would refuse most of the load;
            # wasmtime serve has none.
            gw, gw_port = weir(args, work, "function", f'''
[throttle]
rate = 1000000000
burst = 1000000000
[plugins.hello]
file = "{wasm}"
world = "function"
[[routes]]
key = "GET /rs/{{proxy+}}"
integration = {{ type = "function", plugin = "hello" }}
''', "/rs/hello")
            procs.append(gw)
            wt_port = free_port()
            wt = subprocess.Popen([args.wasmtime, "serve", "-Scli", "--addr", f"127.0.0.1:{wt_port}", wasm],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(wt)
            wait_port(wt_port, "wasmtime serve")
            compare("function: a wasi:http component, fresh instance per request", {
                "weir function route": (gw.pid, gw_port, "/rs/hello?name=bench", True),
                "wasmtime serve": (wt.pid, wt_port, "/rs/hello?name=bench", False),
            }, 16, args)

        if "lambda" in parts or "cold" in parts:
            site = awslambdaric_site()
            fn_dir = os.path.join(work, "lambda")
            os.makedirs(fn_dir, exist_ok=True)
            with open(os.path.join(fn_dir, "bench_hello.py"), "w") as f:
                f.write(HANDLER)

            def function(extra):
                return f'''
[functions.hello]
command = ["{sys.executable}", "-m", "awslambdaric", "bench_hello.handler"]
dir = "{fn_dir}"
env = {{ PYTHONPATH = "{site}" }}
{extra}
[[routes]]
key = "GET /hello"
integration = {{ type = "lambda", function = "hello" }}
'''

        if "lambda" in parts:
            gw, gw_port = weir(args, work, "lambda", function("concurrency = 2\nmin_warm = 2"), "/hello")
            procs.append(gw)
            direct_port = free_port()
            direct_py = os.path.join(work, "direct.py")
            with open(direct_py, "w") as f:
                f.write(DIRECT)
            direct = subprocess.Popen([sys.executable, direct_py, str(direct_port), fn_dir])
            procs.append(direct)
            wait_port(direct_port, "the direct Python server")
            compare("lambda: a Python handler, concurrency 2", {
                "weir lambda route": (gw.pid, gw_port, "/hello", True),
                "python http.server": (direct.pid, direct_port, "/hello", False),
            }, 2, args)

        if "cold" in parts:
            cold, warm = [], []
            for i in range(args.cold_starts):
                gw, port = weir(args, work, f"cold{i}", function("concurrency = 1\nmin_warm = 0"))
                try:
                    t0 = time.perf_counter()
                    get(port, "/hello")
                    t1 = time.perf_counter()
                    get(port, "/hello")
                    t2 = time.perf_counter()
                    cold.append((t1 - t0) * 1e3)
                    warm.append((t2 - t1) * 1e3)
                finally:
                    gw.terminate()
                    gw.wait()
            print(f"\ncold start ({args.cold_starts} fresh gateways, min_warm = 0): first request "
                  f"{statistics.median(cold):.0f} ms (min {min(cold):.0f}, max {max(cold):.0f}), "
                  f"second {statistics.median(warm):.1f} ms")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
