"""{{name}}: a Weir CORS policy. Origins listed in the config's `allow_origins` (default
["https://app.example"]) may call with GET and POST. The logic is in logic.py, which
test_logic.py tests on this machine."""

import json

import wit_world
from wit_world.imports import host
from wit_world.imports.types import Response

import logic


def origins():
    config = json.loads(host.config())
    allowed = config.get("allow_origins")
    return allowed if isinstance(allowed, list) else ["https://app.example"]


class WitWorld(wit_world.WitWorld):
    def preflight(self, req):
        origin = logic.allowed_origin(req.headers, origins())
        if origin is None:
            return Response(status=403, headers=[], body=b"")
        headers = [
            ("access-control-allow-origin", origin),
            ("access-control-allow-methods", "GET, POST"),
            ("access-control-max-age", "600"),
            ("vary", "Origin"),
        ]
        return Response(status=204, headers=headers, body=b"")

    def decorate(self, req, headers):
        origin = logic.allowed_origin(req.headers, origins())
        if origin is None:
            return headers
        kept = [(n, v) for n, v in headers if n != "access-control-allow-origin"]
        return kept + [("access-control-allow-origin", origin), ("vary", "Origin")]
