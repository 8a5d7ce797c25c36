"""The example token authorizer in Python: `Authorization: Bearer <token>` with the
tokens listed in the plugin's config (`tokens = { "<token>" = "<principal>" }`).
Same behaviour as examples/plugins/rust/authorizer."""

import json

import wit_world
from wit_world.imports import host
from wit_world.imports.outcomes import Allow, Decision_Allow, Decision_Deny, Deny


class ConfigError(Exception):
    pass


def read_tokens():
    root = json.loads(host.config())
    if not isinstance(root, dict):
        raise ConfigError("config is not a table")
    tokens = root.get("tokens")
    if tokens is None:
        return {}
    if not isinstance(tokens, dict):
        raise ConfigError("`tokens` must be a table of strings")
    for k, v in tokens.items():
        if not isinstance(v, str):
            raise ConfigError(f"`tokens.{k}` must be a string")
    return tokens


def deny(status, message):
    return Decision_Deny(Deny(status=status, message=message))


def decide(tokens, identity):
    if identity is None:
        return deny(401, "missing token")
    if len(identity) < 7 or identity[:7].lower() != "bearer ":
        return deny(401, "expected a bearer token")
    token = identity[7:].strip(" ")
    if not token:
        return deny(401, "expected a bearer token")
    principal = tokens.get(token)
    if principal is None:
        return deny(403, "unknown token")
    return Decision_Allow(
        Allow(principal_id=principal, context=[("scheme", "bearer")], usage_identifier_key=None)
    )


class WitWorld(wit_world.WitWorld):
    def authorize(self, req, ctx):
        try:
            tokens = read_tokens()
        except (ConfigError, ValueError) as e:
            host.log(host.LogLevel.ERROR, f"bad config: {e}")
            return deny(403, "authorizer misconfigured")
        decision = decide(tokens, req.identity[0] if req.identity else None)
        if isinstance(decision, Decision_Allow):
            host.log(host.LogLevel.INFO, f"allow {decision.value.principal_id}")
        else:
            host.log(host.LogLevel.WARN, f"deny {decision.value.status}: {decision.value.message}")
        return decision
