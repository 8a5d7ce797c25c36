#!/usr/bin/env python3
"""Upstream pools and streamed answers, measured side by side in one Weir process (see
bench/README.md):

- `single`: a route with one `url` to upstream A;
- `pool1`: the same upstream as a pool of one target (the cost of the pool itself);
- `pool2`: a round-robin pool over upstreams A and B (each nginx, one worker);
- `buffered` / `stream`: a 8 MiB answer read whole, or passed on as it arrives
  (`stream = true`), with Weir's resident memory sampled during the load.

Rounds are interleaved; medians are reported with ratios to `single` (and `buffered`).
"""

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from common import ROOT, free_port, stop, wait_port



def nginx(work, port, big):
    conf = os.path.join(work, f"nginx-{port}.conf")
    with open(conf, "w") as f:
        f.write(f"""
worker_processes 1;
daemon off;
pid {work}/nginx-{port}.pid;
error_log /dev/null crit;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {work}/body-{port};
    proxy_temp_path {work}/proxy-{port};
    fastcgi_temp_path {work}/fcgi-{port};
    uwsgi_temp_path {work}/uwsgi-{port};
    scgi_temp_path {work}/scgi-{port};
    server {{
        listen 127.0.0.1:{port};
        location /big {{ alias {big}; }}
        location / {{ default_type application/json; return 200 '{{"ok":true,"from":"upstream"}}'; }}
    }}
}}
""")
    return subprocess.Popen(["nginx", "-c", conf], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def wrk(url, seconds, connections):
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, int(errors.group(1)) if errors else 0


def cpu_seconds(pid):
    """User + system CPU time of `pid`."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weir", default=os.path.join(ROOT, "target", "release", "weir"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="weir-pool-bench-")
    big = os.path.join(work, "big.bin")
    with open(big, "wb") as f:
        f.write(os.urandom(8 << 20))
    # nginx's workers run as another user.
    os.chmod(work, 0o755)
    os.chmod(big, 0o644)
    procs = []
    try:
        a, b, gw = free_port(), free_port(), free_port()
        procs += [nginx(work, a, big), nginx(work, b, big)]
        wait_port(a)
        wait_port(b)
        config = os.path.join(work, "weir.toml")
        with open(config, "w") as f:
            f.write(f"""
[server]
listen = "127.0.0.1:{gw}"
[throttle]
rate = 1000000
burst = 1000000
[limits]
max_response_body = "16MiB"
[upstreams.one]
targets = [{{ url = "http://127.0.0.1:{a}" }}]
[upstreams.two]
targets = [{{ url = "http://127.0.0.1:{a}" }}, {{ url = "http://127.0.0.1:{b}" }}]
[[routes]]
key = "GET /single/{{proxy+}}"
integration = {{ type = "http", url = "http://127.0.0.1:{a}/{{proxy+}}" }}
[[routes]]
key = "GET /pool1/{{proxy+}}"
integration = {{ type = "http", upstream = "one", path = "/{{proxy+}}" }}
[[routes]]
key = "GET /pool2/{{proxy+}}"
integration = {{ type = "http", upstream = "two", path = "/{{proxy+}}" }}
[[routes]]
key = "GET /buffered/{{proxy+}}"
integration = {{ type = "http", url = "http://127.0.0.1:{a}/{{proxy+}}" }}
[[routes]]
key = "GET /stream/{{proxy+}}"
integration = {{ type = "http", url = "http://127.0.0.1:{a}/{{proxy+}}" }}
stream = true
""")
        def start_weir():
            proc = subprocess.Popen([args.weir, "serve", "--config", config],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    env={**os.environ, "RUST_LOG": "warn"})
            procs.append(proc)
            wait_port(gw)
            return proc

        def stop_weir(proc):
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
            procs.remove(proc)

        weir = None

        small = {"single": "/single/x", "pool1": "/pool1/x", "pool2": "/pool2/x"}
        large = {"buffered": "/buffered/big", "stream": "/stream/big"}
        weir = start_weir()
        for path in [*small.values(), *large.values()]:
            out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                  f"http://127.0.0.1:{gw}{path}"], capture_output=True, text=True)
            if out.stdout != "200":
                sys.exit(f"{path}: status {out.stdout}, not 200")
        results = {name: [] for name in [*small, *large]}
        rss = {name: [] for name in large}
        cpu_per_request = {name: [] for name in small}
        for r in range(args.rounds):
            if weir is None:
                weir = start_weir()
            for name, path in small.items():
                cpu = cpu_seconds(weir.pid)
                rps, errors = wrk(f"http://127.0.0.1:{gw}{path}", args.duration, 64)
                us = (cpu_seconds(weir.pid) - cpu) / (rps * args.duration) * 1e6
                results[name].append(rps)
                cpu_per_request[name].append(us)
                print(f"round {r + 1} {name:8} {rps:10.0f} req/s  {us:6.1f} us CPU/req"
                      f"  non-2xx {errors}", flush=True)
            stop_weir(weir)
            weir = None
            for name, path in large.items():
                # A fresh process each time: memory a process once used stays counted.
                own = start_weir()
                peak = [0]
                sampler = subprocess.Popen(
                    [sys.executable, "-c",
                     "import re,sys,time\n"
                     "pid=int(sys.argv[1]);end=time.time()+float(sys.argv[2]);m=0\n"
                     "while time.time()<end:\n"
                     " s=open(f'/proc/{pid}/status').read()\n"
                     " m=max(m,int(re.search(r'VmRSS:\\s+(\\d+)',s).group(1)));time.sleep(0.05)\n"
                     "print(m)",
                     str(own.pid), str(args.duration)],
                    stdout=subprocess.PIPE, text=True)
                rps, errors = wrk(f"http://127.0.0.1:{gw}{path}", args.duration, 16)
                peak[0] = int(sampler.communicate()[0])
                results[name].append(rps)
                rss[name].append(peak[0])
                stop_weir(own)
                print(f"round {r + 1} {name:8} {rps * 8:10.0f} MiB/s  peak RSS {peak[0] // 1024} MiB"
                      f"  non-2xx {errors}", flush=True)
        med = {k: statistics.median(v) for k, v in results.items()}
        print("\nmedians")
        for name in small:
            cpu = statistics.median(cpu_per_request[name])
            base = statistics.median(cpu_per_request["single"])
            print(f"{name:8} {med[name]:10.0f} req/s   {med[name] / med['single']:.2f}x single"
                  f"   {cpu:6.1f} us CPU/req   {cpu / base:.2f}x single")
        for name in large:
            print(f"{name:8} {med[name] * 8:10.0f} MiB/s   {med[name] / med['buffered']:.2f}x buffered"
                  f"   peak RSS {statistics.median(rss[name]) // 1024} MiB")
    finally:
        stop(procs)


if __name__ == "__main__":
    main()
