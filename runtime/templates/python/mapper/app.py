"""{{name}}: a Weir mapper. It adds `x-hello` to each request (the config's `greeting`,
or "hello from {{name}}") and `x-mapped-by` to each response. The logic is in
logic.py, which test_logic.py tests on this machine."""

import json

import wit_world
from wit_world.imports import host
from wit_world.imports.outcomes import RequestOutcome_Forward

import logic


class WitWorld(wit_world.WitWorld):
    def map_request(self, req, ctx):
        # The config table from weir.toml, as JSON ("{}" when there is none).
        config = json.loads(host.config())
        host.log(host.LogLevel.INFO, f"map-request {req.method} {req.path} ({ctx.route_key})")
        req.headers = logic.greet(list(req.headers), config.get("greeting"))
        return RequestOutcome_Forward(req)

    def map_response(self, resp, ctx):
        resp.headers = list(resp.headers) + [("x-mapped-by", "{{name}}")]
        return resp
