"""{{name}}: a Weir authorizer. It allows `Authorization: Bearer <token>` when the token
is the config's `token` (default "let-me-in"), as the principal "user"; anything else
is 401. The logic is in logic.py, which test_logic.py tests on this machine."""

import json

import wit_world
from wit_world.imports import host
from wit_world.imports.outcomes import Allow, Decision_Allow, Decision_Deny, Deny

import logic


class WitWorld(wit_world.WitWorld):
    def authorize(self, req, ctx):
        config = json.loads(host.config())
        token = config.get("token") if isinstance(config.get("token"), str) else "let-me-in"
        if logic.allowed(req.identity, token):
            host.log(host.LogLevel.INFO, f"allow {req.method} {req.path}")
            return Decision_Allow(Allow(principal_id="user", context=[("scheme", "bearer")], usage_identifier_key=None))
        host.log(host.LogLevel.WARN, f"deny {req.method} {req.path}")
        return Decision_Deny(Deny(status=401, message="Unauthorized"))
