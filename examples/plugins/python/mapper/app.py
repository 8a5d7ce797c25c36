"""The example mapper in Python: renames and adds headers from the plugin's config,
sets top-level fields of a JSON body, answers 400 for a malformed JSON body, and adds
headers to the response. Same behaviour as examples/plugins/rust/mapper."""

import json
import re

import wit_world
from wit_world.imports import host
from wit_world.imports.outcomes import RequestOutcome_Forward, RequestOutcome_Respond
from wit_world.imports.types import Response

MAX_DEPTH = 64

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

WS = re.compile(rb"[ \t\n\r]*")
STRING = re.compile(rb'"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"')
NUMBER = re.compile(rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
LITERALS = (b"true", b"false", b"null")


class Malformed(Exception):
    pass


class Scanner:
    """A strict RFC 8259 scanner that records the top-level members' byte spans."""

    def __init__(self, b):
        self.b = b
        self.i = 0

    def ws(self):
        self.i = WS.match(self.b, self.i).end()

    def peek(self):
        return self.b[self.i : self.i + 1]

    def eat(self, c):
        if self.peek() != c:
            raise Malformed
        self.i += 1

    def try_eat(self, c):
        if self.peek() == c:
            self.i += 1
            return True
        return False

    def token(self, pattern):
        m = pattern.match(self.b, self.i)
        if m is None:
            raise Malformed
        self.i = m.end()

    def value(self, depth):
        c = self.peek()
        if c == b"{":
            self.object(depth + 1, None)
        elif c == b"[":
            if depth + 1 > MAX_DEPTH:
                raise Malformed
            self.i += 1
            self.ws()
            if self.try_eat(b"]"):
                return
            while True:
                self.ws()
                self.value(depth + 1)
                self.ws()
                if self.try_eat(b"]"):
                    return
                self.eat(b",")
        elif c == b'"':
            self.token(STRING)
        elif c in (b"t", b"f", b"n"):
            for word in LITERALS:
                if self.b.startswith(word, self.i):
                    self.i += len(word)
                    return
            raise Malformed
        else:
            self.token(NUMBER)

    def object(self, depth, members):
        if depth > MAX_DEPTH:
            raise Malformed
        self.eat(b"{")
        self.ws()
        if self.try_eat(b"}"):
            return
        while True:
            self.ws()
            key_start = self.i + 1
            if self.peek() != b'"':
                raise Malformed
            self.token(STRING)
            key = self.b[key_start : self.i - 1]
            self.ws()
            self.eat(b":")
            self.ws()
            value_start = self.i
            self.value(depth)
            if members is not None:
                members.append((key, value_start, self.i))
            self.ws()
            if self.try_eat(b"}"):
                return
            self.eat(b",")


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


def scan_members(body):
    """(members, non_empty, close) with every top-level member as (key bytes, value start,
    value end), or None when the body is not a JSON object: with the scanner above."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    s = Scanner(body)
    members = []
    try:
        s.ws()
        if s.peek() != b"{":
            return None
        s.object(1, members)
        close = s.i - 1
        s.ws()
        if s.i != len(body):
            return None
    except Malformed:
        return None
    return members, bool(members), close


# ---- the same, with the json module ---------------------------------------------
#
# Scanning token by token in Python is slow. For an ASCII body, the json module (C)
# checks the grammar; then only the places where a configured field's key appears are
# looked at, with regular expressions, and the json module finds where their values
# end. Whatever this way cannot settle cheaply (non-ASCII, a field whose key appears
# many times) gives None, and the scanner decides. Answers are the same either way.
#
# It allocates little on purpose: objects are checked, not built (every page a fresh
# instance touches for the first time costs a page fault, several µs here).

STRINGS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
NOT_BRACKETS = re.compile(rb"[^\[\]{}]+")
INNERMOST = re.compile(rb"\[\]|\{\}")
COLON = re.compile(rb"[ \t\n\r]*:[ \t\n\r]*")
EMPTY = re.compile(rb"[ \t\n\r]*\{[ \t\n\r]*\}")
MAX_OCCURRENCES = 8


def _refuse(name):
    raise ValueError(f"{name} is not JSON")


# Python's json accepts NaN and Infinity unless told otherwise. Objects decode to their
# member count (`len`, a builtin: cheap to call, nothing to allocate), since only the
# grammar matters here.
CHECKER = json.JSONDecoder(parse_constant=_refuse, object_pairs_hook=len)
BLANK = b" \t\n\r"


def unmatched(b):
    """`b` (brackets only) without its pairs that match within MAX_DEPTH levels."""
    for _ in range(MAX_DEPTH):
        rest = INNERMOST.sub(b"", b)
        if len(rest) == len(b):
            break
        b = rest
    return b


def depth_ok(b):
    """Whether no value in the valid JSON text `b` is nested deeper than MAX_DEPTH."""
    # Deeper than MAX_DEPTH takes more opening brackets than that.
    if b.count(b"{") + b.count(b"[") <= MAX_DEPTH:
        return True
    return not unmatched(NOT_BRACKETS.sub(b"", STRINGS.sub(b"", b)))


def top_level_token(b, at):
    """Whether a string token starting at `at` in the valid JSON text `b` (no deeper
    than MAX_DEPTH) is directly inside the top-level object."""
    before = STRINGS.sub(b"", b[:at])
    if b'"' in before:
        return False
    return unmatched(NOT_BRACKETS.sub(b"", before)) == b"{"


def native_members(body, fields):
    """Like scan_members, but only the members whose key is one of `fields`; None when
    this way cannot tell."""
    if not body.isascii():
        return None
    text = body.decode("ascii")
    if not body.lstrip(BLANK).startswith(b"{"):
        return None
    try:
        CHECKER.decode(text)
    except (ValueError, RecursionError):
        return None
    if not depth_ok(body):
        return None
    members = []
    seen = 0
    for field, _ in fields:
        quoted = b'"' + field.encode() + b'"'
        at = body.find(quoted)
        while at != -1:
            seen += 1
            if seen > MAX_OCCURRENCES:
                return None
            token = STRINGS.match(body, at)
            colon = token and token.end() == at + len(quoted) and COLON.match(body, token.end())
            if colon and top_level_token(body, at):
                _, end = CHECKER.raw_decode(text, colon.end())
                members.append((body[at + 1 : token.end() - 1], colon.end(), end))
            at = body.find(quoted, at + 1)
    return members, not EMPTY.match(body), body.rindex(b"}")


def set_fields(body, fields):
    """The body with each field set, or None when it is not a JSON object."""
    try:
        scanned = native_members(body, fields)
    except ValueError:
        scanned = None
    if scanned is None:
        scanned = scan_members(body)
    if scanned is None:
        return None
    members, non_empty, close = scanned
    edits = []
    added = []
    count = 1 if non_empty else 0
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

