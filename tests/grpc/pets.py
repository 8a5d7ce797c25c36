"""A gRPC service and its client on Python's grpcio, for the end-to-end tests: messages
are raw bytes (no protobuf), methods are registered by name.

    python3 pets.py serve          # prints the port it listens on (h2c, 127.0.0.1)
    python3 pets.py call HOST:PORT # calls every method, prints what came back as JSON

Service `pets.Pets`:
- `Get` (unary): `pet:` + the request; `missing` is NOT_FOUND "no such pet"; trailing
  metadata `x-trailer: kept`.
- `List` (server streaming): the request is a count N; N messages `pet-I`, 150 ms apart.
- `Count` (client streaming): how many messages came and their total size, `N/BYTES`.
- `Remaining` (unary): the seconds left of the call's deadline (`none` without one).
- `Slow` (unary): answers after 2 s.
"""

import json
import sys
import time
from concurrent import futures

import grpc


def get(request, context):
    context.set_trailing_metadata((("x-trailer", "kept"),))
    if request == b"missing":
        context.abort(grpc.StatusCode.NOT_FOUND, "no such pet")
    return b"pet:" + request


def list_pets(request, context):
    for i in range(int(request)):
        if i:
            time.sleep(0.15)
        yield f"pet-{i}".encode()


def count(requests, context):
    n = size = 0
    for message in requests:
        n += 1
        size += len(message)
    return f"{n}/{size}".encode()


def remaining(request, context):
    left = context.time_remaining()
    return b"none" if left is None else f"{left:.3f}".encode()


def slow(request, context):
    time.sleep(2)
    return b"late"


def serve(tls=None):
    handlers = {
        "Get": grpc.unary_unary_rpc_method_handler(get),
        "List": grpc.unary_stream_rpc_method_handler(list_pets),
        "Count": grpc.stream_unary_rpc_method_handler(count),
        "Remaining": grpc.unary_unary_rpc_method_handler(remaining),
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("pets.Pets", handlers),)
    )
    if tls:
        cert, key = (open(path, "rb").read() for path in tls)
        credentials = grpc.ssl_server_credentials([(key, cert)])
        port = server.add_secure_port("127.0.0.1:0", credentials)
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    # Until the test closes stdin (or kills the process).
    sys.stdin.read()
    server.stop(0)


def call(target):
    out = {}
    with grpc.insecure_channel(target) as channel:
        get_rpc = channel.unary_unary("/pets.Pets/Get")
        answer, call_ = get_rpc.with_call(b"rex", timeout=10)
        out["get"] = answer.decode()
        out["get_trailers"] = dict(call_.trailing_metadata())
        try:
            get_rpc(b"missing", timeout=10)
            out["missing"] = "no error"
        except grpc.RpcError as e:
            out["missing"] = [e.code().name, e.details()]

        started = time.monotonic()
        stamps = []
        for message in channel.unary_stream("/pets.Pets/List")(b"4", timeout=10):
            stamps.append([message.decode(), round(time.monotonic() - started, 3)])
        out["list"] = stamps

        def messages():
            for i in range(5):
                time.sleep(0.05)
                yield b"x" * (1000 * (i + 1))

        out["count"] = channel.stream_unary("/pets.Pets/Count")(messages(), timeout=10).decode()
        out["remaining"] = channel.unary_unary("/pets.Pets/Remaining")(b"", timeout=5).decode()

        started = time.monotonic()
        try:
            channel.unary_unary("/pets.Pets/Slow")(b"", timeout=0.5)
            out["slow"] = "no error"
        except grpc.RpcError as e:
            out["slow"] = [e.code().name, round(time.monotonic() - started, 3)]

        try:
            channel.unary_unary("/pets.Nowhere/Get")(b"", timeout=5)
            out["nowhere"] = "no error"
        except grpc.RpcError as e:
            out["nowhere"] = e.code().name
    print(json.dumps(out))


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        # serve [CERT KEY]: over TLS (ALPN h2) with that certificate, else h2c.
        serve(sys.argv[2:4] or None)
    else:
        call(sys.argv[2])
