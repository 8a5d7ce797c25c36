"""The example mapper in Python: renames and adds headers from the plugin's config,
sets top-level fields of a JSON body, answers 400 for a malformed JSON body, and adds
headers to the response. Same behaviour as examples/plugins/rust/mapper."""

import json

import wit_world
from wit_world.imports import host
from wit_world.imports import json as host_json
from wit_world.imports.outcomes import RequestOutcome_Forward, RequestOutcome_Respond
from wit_world.imports.types import Response

# ---- config ---------------------------------------------------------------------


class ConfigError(Exception):
    pass


def table(root, key):
    t = root.get(key)
    if t is None:
        return []
    if not isinstance(t, dict):
        raise ConfigError(f"`{key}` must be a table of strings")
    for k, v in t.items():
        if not isinstance(v, str):
            raise ConfigError(f"`{key}.{k}` must be a string")
    return list(t.items())


# (config text, parsed), kept for the next call on a reused instance (`reuse = N`): the
# config of an instance never changes, so it is parsed once per instance.
_cached = None


def read_config():
    global _cached
    text = host.config()
    if _cached is None or _cached[0] != text:
        _cached = (text, parse_config(text))
    return _cached[1]


def parse_config(text):
    root = json.loads(text)
    if not isinstance(root, dict):
        raise ConfigError("config is not a table")
    return {
        key: table(root, key)
        for key in ("rename_headers", "add_headers", "json_fields", "response_headers")
    }


# ---- JSON -----------------------------------------------------------------------
#
# The gateway checks the body and indexes its top-level members natively
# (`weir:plugin/json`, since WIT 0.1.1): building Python objects for every value of a
# body, only to check it, is most of what a JSON rewrite costs in CPython.


def quote(s):
    """`s` as a JSON string, escaped the way every example language escapes it."""
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def set_fields(body, fields):
    """The body with each field set, or None when it is not a JSON object."""
    index = host_json.index_object(body)
    if index is None:
        return None
    members = [(body[m.key_start : m.key_end], m.value_start, m.value_end) for m in index.members]
    close = index.close
    edits = []
    added = []
    count = len(members)
    for field, value in fields:
        want = field.encode()
        found = False
        for key, start, end in members:
            if key == want:
                edits.append((start, end, quote(value).encode()))
                found = True
        if not found:
            added.append(("," if count > 0 else "") + quote(field) + ":" + quote(value))
            count += 1
    edits.sort(key=lambda e: e[0])
    out = bytearray()
    at = 0
    for start, end, text in edits:
        out += body[at:start]
        out += text
        at = end
    out += body[at:close]
    out += "".join(added).encode()
    out += body[close:]
    return bytes(out)


# ---- the plugin -----------------------------------------------------------------


def json_response(status, message):
    body = json.dumps({"message": message}, separators=(",", ":")).encode()
    return Response(status=status, headers=[("content-type", "application/json")], body=body)


def is_json(headers):
    for name, value in headers:
        if name.lower() == "content-type":
            return value.split(";")[0].strip().lower() == "application/json"
    return False


class WitWorld(wit_world.WitWorld):
    def map_request(self, req, ctx):
        try:
            cfg = read_config()
        except (ConfigError, ValueError) as e:
            host.log(host.LogLevel.ERROR, f"bad config: {e}")
            return RequestOutcome_Respond(json_response(500, "plugin misconfigured"))
        host.log(host.LogLevel.INFO, f"map-request {req.method} {req.path} ({len(req.body)} body bytes)")

        renames = {k.lower(): v for k, v in reversed(cfg["rename_headers"])}
        headers = [(renames.get(n.lower(), n).lower(), v) for n, v in req.headers]
        headers += [(n.lower(), v) for n, v in cfg["add_headers"]]
        if ctx.principal_id is not None:
            headers.append(("x-principal", ctx.principal_id))
        headers.append(("x-body-bytes", str(len(req.body))))

        body = req.body
        if body and is_json(req.headers):
            body = set_fields(body, cfg["json_fields"])
            if body is None:
                host.log(host.LogLevel.WARN, "malformed JSON body")
                return RequestOutcome_Respond(json_response(400, "malformed JSON body"))
        req.headers = headers
        req.body = body
        return RequestOutcome_Forward(req)

    def map_response(self, resp, ctx):
        try:
            cfg = read_config()
        except (ConfigError, ValueError) as e:
            host.log(host.LogLevel.ERROR, f"bad config: {e}")
            return json_response(500, "plugin misconfigured")
        resp.headers = list(resp.headers) + [(n.lower(), v) for n, v in cfg["response_headers"]]
        return resp

