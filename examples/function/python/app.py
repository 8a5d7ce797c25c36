"""A `wasi:http/proxy` component in Python (componentize-py), served by Weir's
`type = "function"` routes. One fresh instance per request: nothing is kept between
requests.

GET  /py/hello?name=NAME   {"message": "hello, NAME", ...} with what the request carried
POST /py/words             counts the words of the body: {"words": N}
anything else              404 {"message": "Not Found"}
"""

import json
from urllib.parse import parse_qs

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    Method_Other,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)


def method_name(request: IncomingRequest) -> str:
    m = request.method()
    if isinstance(m, Method_Other):
        return m.value
    return type(m).__name__.removeprefix("Method_").upper()


def read_body(request: IncomingRequest) -> bytes:
    data = bytearray()
    body = request.consume()
    with body.stream() as stream:
        while True:
            try:
                data += stream.blocking_read(64 * 1024)
            except Err:
                # The stream is closed: the whole body has been read.
                return bytes(data)


def respond(out: ResponseOutparam, status: int, payload: object) -> None:
    data = json.dumps(payload).encode()
    resp = OutgoingResponse(Fields.from_list([("content-type", b"application/json")]))
    resp.set_status_code(status)
    body = resp.body()
    ResponseOutparam.set(out, Ok(resp))
    with body.write() as stream:
        # One write carries at most 4096 bytes.
        for i in range(0, len(data), 4096):
            stream.blocking_write_and_flush(data[i : i + 4096])
    OutgoingBody.finish(body, None)


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        method = method_name(request)
        path, _, query = (request.path_with_query() or "/").partition("?")
        headers = {k: v.decode(errors="replace") for k, v in request.headers().entries()}
        if method == "GET" and path == "/py/hello":
            name = parse_qs(query).get("name", ["world"])[0]
            respond(
                response_out,
                200,
                {
                    "message": f"hello, {name}",
                    "language": "python",
                    "forwardedFor": headers.get("x-forwarded-for"),
                    "requestId": headers.get("x-request-id"),
                },
            )
        elif method == "POST" and path == "/py/words":
            text = read_body(request).decode(errors="replace")
            respond(response_out, 200, {"words": len(text.split())})
        else:
            respond(response_out, 404, {"message": "Not Found"})
