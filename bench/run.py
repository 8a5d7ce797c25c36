#!/usr/bin/env python3
"""Drives the load benchmark; see bench/README.md.

Every target proxies to the same upstream (nginx, one worker, a 36-byte JSON answer)
and gets the same wrk load. Rounds are interleaved so that drift on a shared machine
hits every target alike; the medians of the rounds are reported, with ratios."""

import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from common import ROOT, free_port, stop, wait_port

PLUGINS = os.path.join(ROOT, "plugins", "target", "wasm32-wasip2", "release")
WEIR = os.path.join(ROOT, "target", "release", "weir")
SECRET = "bench-secret-bench-secret-bench!"


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token():
    now = int(time.time())
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = b64(json.dumps({"iss": "bench", "aud": "bench", "sub": "bench-user", "iat": now,
                             "exp": now + 86400}).encode())
    sig = hmac.new(SECRET.encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
    return f"{header}.{claims}.{b64(sig)}"


IDP_PORT = 0
RSA_KEY = None


def rsa_key():
    """An RSA key for the jwt-* scenarios (Python's `cryptography`, imported only then)."""
    global RSA_KEY
    if RSA_KEY is None:
        from cryptography.hazmat.primitives.asymmetric import rsa
        RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return RSA_KEY


def issuer():
    return f"http://127.0.0.1:{IDP_PORT}"


def jwks():
    numbers = rsa_key().public_key().public_numbers()
    as_b64 = lambda n: b64(n.to_bytes((n.bit_length() + 7) // 8, "big"))
    return {"keys": [{"kty": "RSA", "alg": "RS256", "use": "sig", "kid": "bench",
                      "n": as_b64(numbers.n), "e": as_b64(numbers.e)}]}


def rs256_token():
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    now = int(time.time())
    header = b64(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "bench"}).encode())
    claims = b64(json.dumps({"iss": issuer(), "aud": "bench", "sub": "bench-user", "iat": now,
                             "exp": now + 86400}).encode())
    sig = rsa_key().sign(f"{header}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{header}.{claims}.{b64(sig)}"


def start_idp():
    """An OpenID provider stand-in for `jwt-discovery`: discovery and a JWKS (no max-age,
    so the gateway keeps the keys for an hour), counting requests."""
    global IDP_PORT
    IDP_PORT = free_port()
    counts = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            counts[self.path] = counts.get(self.path, 0) + 1
            if self.path == "/.well-known/openid-configuration":
                doc = {"issuer": issuer(), "jwks_uri": issuer() + "/jwks"}
            elif self.path == "/jwks":
                doc = jwks()
            else:
                self.send_error(404)
                return
            body = json.dumps(doc).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", IDP_PORT), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, counts


def nginx_conf(workdir, listen, body):
    return f"""
worker_processes {"1" if body else "auto"};
daemon off;
pid {workdir}/nginx-{listen}.pid;
error_log /dev/null crit;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {workdir}/body-{listen};
    proxy_temp_path {workdir}/proxy-{listen};
    fastcgi_temp_path {workdir}/fcgi-{listen};
    uwsgi_temp_path {workdir}/uwsgi-{listen};
    scgi_temp_path {workdir}/scgi-{listen};
    upstream backend {{ server 127.0.0.1:{UPSTREAM_PORT}; keepalive 128; }}
    server {{
        listen 127.0.0.1:{listen} reuseport;
        location / {{
            {body}
        }}
    }}
}}
"""


UPSTREAM_PORT = 0


def cpu_seconds(pid):
    """User + system CPU time of `pid` and its child processes (nginx's workers)."""
    return sum(cpu_times(pid))


def cpu_times(pid):
    """(user, system) CPU time of `pid` and its child processes, in seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    user = system = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry) == pid or int(fields[1]) == pid:
            user += int(fields[11]) / tick
            system += int(fields[12]) / tick
    return user, system


def start(cmd, port, **kw):
    stderr = kw.pop("stderr", subprocess.DEVNULL)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr, **kw)
    wait_port(port)
    return proc


def weir_config(scenario, port, plugin_dir=PLUGINS):
    up = f"http://127.0.0.1:{UPSTREAM_PORT}/"
    plugins = ""
    route_extra = ""
    api = ""
    integration = f'{{ type = "http", url = "http://127.0.0.1:{UPSTREAM_PORT}" }}'
    if scenario == "mock":
        integration = '{ type = "mock", body = \'{"ok":true,"from":"upstream"}\' }'
    # `full-no-mapping`: the full chain without its mapper (the authorizer's and the CORS
    # policy's answers come from their caches after the first request): what the chain
    # costs besides its one mapper call.
    full = ("full", "full-cors-cache", "full-reuse", "full-no-mapping")
    # `full-reuse`: the full chain with opt-in instance reuse on every plugin.
    reuse = "reuse = 1000\n" if scenario == "full-reuse" else ""
    if scenario in ("mapping",) + full and scenario != "full-no-mapping":
        plugins += f"""
[plugins.params]
file = "{plugin_dir}/param_mapping.wasm"
world = "mapper"
{reuse}[plugins.params.config.request]
"overwrite:header.x-user" = "$context.authorizer.principalId"
"append:header.x-request" = "$context.requestId"
"remove:header.x-debug" = "''"
"""
        route_extra += 'request_mapping = "params"\n'
    if scenario in full:
        plugins += f"""
[plugins.jwt]
file = "{plugin_dir}/jwt_authorizer.wasm"
world = "authorizer"
{reuse}config = {{ issuer = "bench", audience = ["bench"], hs256_secret = "{SECRET}" }}
[plugins.cors]
file = "{plugin_dir}/cors.wasm"
world = "cors"
{reuse}config = {{ allow_origins = ["https://app.example"], allow_methods = ["GET", "POST"] }}
"""
        route_extra += 'authorizer = { plugin = "jwt" }\n'
        api = '[api]\ncors = "cors"\n'
        if scenario == "full-cors-cache":
            api += 'cors_cache = "5m"\n'
    if scenario in ("jwt-inline", "jwt-discovery"):
        # The same RS256 token checked on every request (ttl 0s: no decision cache), keys
        # inline or from discovery (kept by the gateway's host after the first call).
        keys = (f"jwks = '{json.dumps(jwks())}'" if scenario == "jwt-inline"
                else "")
        plugins += f"""
[plugins.jwt]
file = "{plugin_dir}/jwt_authorizer.wasm"
world = "authorizer"
deadline = "4s"
allow_outbound = ["{issuer()}"]
[plugins.jwt.config]
issuer = "{issuer()}"
audience = ["bench"]
{keys}
"""
        route_extra += ('authorizer = { plugin = "jwt", identity_source = '
                        '["$request.header.x-jwt"], ttl = "0s" }\n')
    # AWS's default account quota (10,000 req/s) would throttle the load itself.
    return f"""
[server]
listen = "127.0.0.1:{port}"
[throttle]
rate = 1000000
burst = 1000000
{plugins}
{api}
[[routes]]
key = "ANY /{{proxy+}}"
integration = {integration}
{route_extra}
"""


def wrk(port, seconds, headers):
    cmd = ["wrk", "-t2", "-c64", f"-d{seconds}s", "--latency"]
    for h in headers:
        cmd += ["-H", h]
    cmd.append(f"http://127.0.0.1:{port}/bench/item?x=1")
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    lat = {}
    for pct, val, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M):
        lat[pct] = float(val) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    return rps, lat.get("50"), lat.get("99"), int(errors.group(1)) if errors else 0, requests


def main():
    global UPSTREAM_PORT
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--scenarios", default="bare,mapping,full,mock")
    ap.add_argument("--baseline", metavar="WEIR",
                    help="another weir binary (e.g. the last release) run through the same "
                         "scenarios in the same rounds: prints new / baseline per scenario")
    ap.add_argument("--baseline-plugins", metavar="DIR",
                    help="the plugin components the baseline loads (default: the same as "
                         "this build's); with no --baseline, this binary runs again on them")
    args = ap.parse_args()
    scenarios = args.scenarios.split(",")
    idp = (start_idp() if any(sc.startswith("jwt-") for sc in scenarios) else None)

    work = tempfile.mkdtemp(prefix="weir-bench-")
    procs = []
    try:
        UPSTREAM_PORT = free_port()
        up_conf = os.path.join(work, "upstream.conf")
        with open(up_conf, "w") as f:
            body = "default_type application/json; return 200 '{\"ok\":true,\"from\":\"upstream\"}';"
            f.write(nginx_conf(work, UPSTREAM_PORT, body))
        procs.append(start(["nginx", "-c", up_conf], UPSTREAM_PORT))

        targets = {"direct": UPSTREAM_PORT}
        pids = {}
        if shutil.which("nginx"):
            port = free_port()
            conf = os.path.join(work, "proxy.conf")
            with open(conf, "w") as f:
                f.write(nginx_conf(work, port, "proxy_pass http://backend; proxy_http_version 1.1; "
                                               "proxy_set_header Connection \"\";"))
            procs.append(start(["nginx", "-c", conf], port))
            targets["nginx"] = port
            pids["nginx"] = procs[-1].pid
        if shutil.which("haproxy"):
            port = free_port()
            conf = os.path.join(work, "haproxy.cfg")
            with open(conf, "w") as f:
                f.write(f"""global
    nbthread 2
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    http-reuse always
frontend fe
    bind 127.0.0.1:{port}
    default_backend be
backend be
    server s1 127.0.0.1:{UPSTREAM_PORT}
""")
            procs.append(start(["haproxy", "-f", conf], port))
            targets["haproxy"] = port
            pids["haproxy"] = procs[-1].pid
        binaries = [("weir", WEIR, PLUGINS)]
        if args.baseline or args.baseline_plugins:
            binaries.append(("baseline", args.baseline or WEIR,
                             args.baseline_plugins or PLUGINS))
        for sc in scenarios:
            for label, binary, plugins in binaries:
                port = free_port()
                conf = os.path.join(work, f"{label}-{sc}.toml")
                with open(conf, "w") as f:
                    f.write(weir_config(sc, port, plugins))
                env = dict(os.environ, RUST_LOG="warn")
                procs.append(start([binary, "serve", "--config", conf], port, env=env))
                targets[f"{label} {sc}"] = port
                pids[f"{label} {sc}"] = procs[-1].pid

        headers = ["Authorization: Bearer " + token(), "Origin: https://app.example",
                   "x-debug: 1", "Accept: application/json"]
        if idp:
            headers.append("x-jwt: " + rs256_token())
        results = {name: [] for name in targets}
        for rnd in range(args.rounds):
            # Every other round runs the targets in reverse order: a target's place in
            # the round moves its figures (two copies of one build, always run one
            # after the other, differ by 4-5%), so each gets both places.
            order = list(targets.items())
            if rnd % 2:
                order.reverse()
            for name, port in order:
                before = cpu_times(pids[name]) if name in pids else None
                r = wrk(port, args.duration, headers)
                # CPU time of the target's processes per request served, in µs, and
                # the part of it spent in user space (the rest is the kernel's).
                cpu = user = None
                if before is not None:
                    after = cpu_times(pids[name])
                    served = max(r[4], 1)
                    cpu = (sum(after) - sum(before)) / served * 1e6
                    user = (after[0] - before[0]) / served * 1e6
                r = r[:4] + (cpu, user)
                results[name].append(r)
                cpu_text = "-" if cpu is None else f"{cpu:.1f} µs (user {user:.1f})"
                print(f"round {rnd + 1} {name:14} {r[0]:>10.0f} req/s  p50 {r[1]:.2f} ms  "
                      f"p99 {r[2]:.2f} ms  non-2xx {r[3]}  cpu/req {cpu_text}", file=sys.stderr)

        med = {n: (statistics.median(x[0] for x in rs), statistics.median(x[1] for x in rs),
                   statistics.median(x[2] for x in rs), sum(x[3] for x in rs),
                   statistics.median(x[4] for x in rs) if rs[0][4] is not None else None,
                   statistics.median(x[5] for x in rs) if rs[0][5] is not None else None)
               for n, rs in results.items()}
        print(f"\n{args.rounds} interleaved rounds of wrk -t2 -c64 -d{args.duration}s, medians\n")
        print("| target | req/s | p50 ms | p99 ms | non-2xx | CPU µs/req | of it user | vs direct "
              "| vs nginx |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for name, (rps, p50, p99, errs, cpu, user) in med.items():
            vs_direct = rps / med["direct"][0]
            vs_nginx = f"{rps / med['nginx'][0]:.2f}x" if "nginx" in med else "-"
            cpu_text = "-" if cpu is None else f"{cpu:.1f}"
            user_text = "-" if user is None else f"{user:.1f}"
            print(f"| {name} | {rps:.0f} | {p50:.2f} | {p99:.2f} | {errs} | {cpu_text} "
                  f"| {user_text} | {vs_direct:.2f}x | {vs_nginx} |")
        if "weir bare" in med and "weir full" in med:
            print(f"\nfull plugin chain / bare proxy: {med['weir full'][0] / med['weir bare'][0]:.2f}x")
        for sc in ("full-reuse", "full-cors-cache", "full-no-mapping"):
            if "weir bare" in med and f"weir {sc}" in med:
                print(f"{sc} / bare proxy: {med[f'weir {sc}'][0] / med['weir bare'][0]:.2f}x")
        if "weir jwt-inline" in med and "weir jwt-discovery" in med:
            print(f"\nJWT keys by discovery / inline: "
                  f"{med['weir jwt-discovery'][0] / med['weir jwt-inline'][0]:.2f}x req/s; "
                  f"CPU per request {med['weir jwt-discovery'][4] / med['weir jwt-inline'][4]:.2f}x; "
                  f"the provider saw {idp[1]} (once per key set: later calls read the "
                  f"set the plugin kept)")
        if len(binaries) > 1:
            print("\nweir / baseline per scenario, each round then the median:")
            for sc in scenarios:
                new, old = results[f"weir {sc}"], results[f"baseline {sc}"]
                for what, i in (("req/s", 0), ("CPU/req", 4)):
                    rounds = [a[i] / b[i] for a, b in zip(new, old)]
                    print(f"  {sc:8} {what:8} " + " ".join(f"{r:.2f}" for r in rounds)
                          + f"  median {statistics.median(rounds):.2f}x")
    finally:
        if idp:
            idp[0].shutdown()
        stop(procs)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
