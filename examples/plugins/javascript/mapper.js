// The example mapper in JavaScript: renames and adds headers from the plugin's config,
// sets top-level fields of a JSON body, answers 400 for a malformed JSON body, and adds
// headers to the response. Same behaviour as examples/plugins/rust/mapper.
import { config, log } from 'weir:plugin/host@0.1.1';

const MAX_DEPTH = 64;

// ---- config ----------------------------------------------------------------------

// A table of strings from the config as [key, value] pairs (in order), or throws.
function table(root, key) {
  const t = root[key];
  if (t === undefined) return [];
  if (t === null || typeof t !== 'object' || Array.isArray(t)) {
    throw new Error(`\`${key}\` must be a table of strings`);
  }
  return Object.entries(t).map(([k, v]) => {
    if (typeof v !== 'string') throw new Error(`\`${key}.${k}\` must be a string`);
    return [k, v];
  });
}

// The parsed config, kept for the next call on a reused instance (`reuse = N`): the
// config of an instance never changes, so it is parsed once per instance.
let cached = null;

function readConfig() {
  const text = config();
  if (cached !== null && cached.text === text) return cached.value;
  const value = parseConfig(text);
  cached = { text, value };
  return value;
}

function parseConfig(text) {
  const root = JSON.parse(text);
  if (root === null || typeof root !== 'object' || Array.isArray(root)) {
    throw new Error('config is not a table');
  }
  return {
    renameHeaders: table(root, 'rename_headers'),
    addHeaders: table(root, 'add_headers'),
    jsonFields: table(root, 'json_fields'),
    responseHeaders: table(root, 'response_headers'),
  };
}

// ---- bytes -----------------------------------------------------------------------

function utf8(s) {
  const out = [];
  for (const ch of s) {
    const c = ch.codePointAt(0);
    if (c < 0x80) out.push(c);
    else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
    else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
  }
  return out;
}

// Whether `b` is valid UTF-8 (no overlong forms, surrogates or code points past U+10FFFF).
function validUtf8(b) {
  let i = 0;
  while (i < b.length) {
    const c = b[i];
    let n, min;
    if (c < 0x80) { i++; continue; }
    else if ((c & 0xe0) === 0xc0) { n = 1; min = 0x80; }
    else if ((c & 0xf0) === 0xe0) { n = 2; min = 0x800; }
    else if ((c & 0xf8) === 0xf0) { n = 3; min = 0x10000; }
    else return false;
    let cp = c & (0x3f >> n);
    for (let k = 1; k <= n; k++) {
      const d = b[i + k];
      if (d === undefined || (d & 0xc0) !== 0x80) return false;
      cp = (cp << 6) | (d & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += n + 1;
  }
  return true;
}

// ---- JSON ------------------------------------------------------------------------

// `s` as a JSON string, escaped the way every example language escapes it.
function quote(s) {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0);
    if (ch === '"') out += '\\"';
    else if (ch === '\\') out += '\\\\';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (c < 0x20) out += '\\u' + c.toString(16).padStart(4, '0');
    else out += ch;
  }
  return out + '"';
}

const isDigit = (c) => c >= 0x30 && c <= 0x39;
const isHex = (c) => isDigit(c) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);

class Malformed extends Error {}

// A strict RFC 8259 scanner over bytes that records the top-level members' spans.
class Scanner {
  constructor(b) { this.b = b; this.i = 0; }
  peek() { return this.b[this.i]; }
  fail() { throw new Malformed(); }
  ws() { let c; while ((c = this.b[this.i]) === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) this.i++; }
  eat(c) { if (this.b[this.i] !== c) this.fail(); this.i++; }
  tryEat(c) { if (this.b[this.i] === c) { this.i++; return true; } return false; }

  value(depth) {
    const c = this.peek();
    if (c === 0x7b) this.object(depth + 1, null);
    else if (c === 0x5b) {
      if (depth + 1 > MAX_DEPTH) this.fail();
      this.i++; this.ws();
      if (this.tryEat(0x5d)) return;
      for (;;) {
        this.ws(); this.value(depth + 1); this.ws();
        if (this.tryEat(0x5d)) return;
        this.eat(0x2c);
      }
    } else if (c === 0x22) this.string();
    else if (c === 0x74) this.literal('true');
    else if (c === 0x66) this.literal('false');
    else if (c === 0x6e) this.literal('null');
    else this.number();
  }

  object(depth, members) {
    if (depth > MAX_DEPTH) this.fail();
    this.eat(0x7b); this.ws();
    if (this.tryEat(0x7d)) return;
    for (;;) {
      this.ws();
      const keyStart = this.i + 1;
      this.string();
      const keyEnd = this.i - 1;
      this.ws(); this.eat(0x3a); this.ws();
      const valueStart = this.i;
      this.value(depth);
      if (members) members.push({ keyStart, keyEnd, valueStart, valueEnd: this.i });
      this.ws();
      if (this.tryEat(0x7d)) return;
      this.eat(0x2c);
    }
  }

  string() {
    this.eat(0x22);
    for (;;) {
      const c = this.peek();
      if (c === undefined || c < 0x20) this.fail();
      this.i++;
      if (c === 0x22) return;
      if (c === 0x5c) {
        const e = this.peek();
        if (e === 0x75) {
          for (let k = 1; k <= 4; k++) if (!isHex(this.b[this.i + k] ?? -1)) this.fail();
          this.i += 5;
        } else if ([0x22, 0x5c, 0x2f, 0x62, 0x66, 0x6e, 0x72, 0x74].includes(e)) this.i++;
        else this.fail();
      }
    }
  }

  literal(word) {
    for (let k = 0; k < word.length; k++) if (this.b[this.i + k] !== word.charCodeAt(k)) this.fail();
    this.i += word.length;
  }

  digits() { const s = this.i; while (isDigit(this.peek() ?? -1)) this.i++; return this.i - s; }

  number() {
    this.tryEat(0x2d);
    if (!this.tryEat(0x30) && this.digits() === 0) this.fail();
    if (this.tryEat(0x2e) && this.digits() === 0) this.fail();
    if (this.peek() === 0x65 || this.peek() === 0x45) {
      this.i++;
      if (this.peek() === 0x2b || this.peek() === 0x2d) this.i++;
      if (this.digits() === 0) this.fail();
    }
  }
}

function sameBytes(b, start, end, want) {
  if (end - start !== want.length) return false;
  for (let k = 0; k < want.length; k++) if (b[start + k] !== want[k]) return false;
  return true;
}

// The top-level members' spans and the offset of the closing brace, or null when the
// body is not a JSON object: byte by byte with the scanner above.
function scanMembers(body) {
  if (!validUtf8(body)) return null;
  const s = new Scanner(body);
  const members = [];
  try {
    s.ws();
    if (s.peek() !== 0x7b) return null;
    s.object(1, members);
    const closeAt = s.i - 1;
    s.ws();
    if (s.i !== body.length) return null;
    return { members, nonEmpty: members.length > 0, closeAt };
  } catch (e) {
    if (e instanceof Malformed) return null;
    throw e;
  }
}

// ---- the same, with the engine's native JSON ------------------------------------
//
// Byte-by-byte scanning is what an interpreter does slowest. For an ASCII body (where
// characters are bytes) the engine's own JSON.parse checks the grammar; then only the
// places where a configured field's key appears are looked at, with regular
// expressions (native code too). Whatever this way cannot settle cheaply (non-ASCII,
// a field whose key appears many times, an object or array value not written the way
// JSON.stringify writes it) gives `undefined`, and the scanner decides. Answers are the
// same either way.

// A search for one byte, not a match of the whole body: nothing to backtrack over.
const NON_ASCII = /[^\x00-\x7f]/;
const EMPTY = /^[ \t\n\r]*\{[ \t\n\r]*\}/;
const COLON = /[ \t\n\r]*:[ \t\n\r]*/y;
const STRING = /"[^"\\]*(?:\\.[^"\\]*)*"/y;
const SCALAR = /"[^"\\]*(?:\\.[^"\\]*)*"|-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|true|false|null/y;
const STRINGS = /"[^"\\]*(?:\\.[^"\\]*)*"/g;
const NOT_BRACKETS = /[^[\]{}]+/g;
const INNERMOST = /\[\]|\{\}/g;
const MAX_OCCURRENCES = 8;

function latin1(body) {
  let s = '';
  for (let at = 0; at < body.length; at += 16384) {
    s += String.fromCharCode.apply(null, body.subarray(at, at + 16384));
  }
  return s;
}

// `b` (brackets only) without its pairs that match within MAX_DEPTH levels.
function unmatched(b) {
  for (let depth = 0; depth < MAX_DEPTH; depth++) {
    const rest = b.replace(INNERMOST, '');
    if (rest.length === b.length) break;
    b = rest;
  }
  return b;
}

// Whether no value in the valid JSON text `s` is nested deeper than MAX_DEPTH.
function depthOk(s) {
  // Deeper than MAX_DEPTH takes more opening brackets than that (split is the
  // cheapest way to count them in QuickJS).
  if (s.split('{').length + s.split('[').length - 2 <= MAX_DEPTH) return true;
  return unmatched(s.replace(STRINGS, '').replace(NOT_BRACKETS, '')) === '';
}

// Whether a string token starts at `at` in the valid JSON text `s` (no deeper than
// MAX_DEPTH), directly inside the top-level object.
function topLevelToken(s, at) {
  const before = s.slice(0, at).replace(STRINGS, '');
  if (before.includes('"')) return false;
  return unmatched(before.replace(NOT_BRACKETS, '')) === '{';
}

// The end of the value that starts at `at`, or undefined.
function valueEnd(s, at, root, key) {
  SCALAR.lastIndex = at;
  if (SCALAR.test(s)) return SCALAR.lastIndex;
  if (!Object.prototype.hasOwnProperty.call(root, key)) return undefined;
  const text = JSON.stringify(root[key]);
  return s.startsWith(text, at) ? at + text.length : undefined;
}

// Like scanMembers, but only the members whose key is one of `fields`; undefined when
// this way cannot tell.
function nativeMembers(body, fields) {
  const s = latin1(body);
  if (NON_ASCII.test(s)) return undefined;
  let root;
  try {
    root = JSON.parse(s);
  } catch {
    return undefined;
  }
  if (root === null || typeof root !== 'object' || Array.isArray(root)) return undefined;
  if (!depthOk(s)) return undefined;
  const members = [];
  let seen = 0;
  for (const [field] of fields) {
    const quoted = '"' + field + '"';
    for (let at = s.indexOf(quoted); at !== -1; at = s.indexOf(quoted, at + 1)) {
      if (++seen > MAX_OCCURRENCES) return undefined;
      STRING.lastIndex = at;
      if (!STRING.test(s) || STRING.lastIndex !== at + quoted.length) continue;
      COLON.lastIndex = STRING.lastIndex;
      if (!COLON.test(s) || !topLevelToken(s, at)) continue;
      const valueStart = COLON.lastIndex;
      const end = valueEnd(s, valueStart, root, JSON.parse(quoted));
      if (end === undefined) return undefined;
      members.push({ keyStart: at + 1, keyEnd: at + quoted.length - 1, valueStart, valueEnd: end });
    }
  }
  return { members, nonEmpty: !EMPTY.test(s), closeAt: s.lastIndexOf('}') };
}

// The body with each field set, or null when it is not a JSON object.
export function setFields(body, fields) {
  let scanned;
  try {
    scanned = nativeMembers(body, fields);
  } catch {
    scanned = undefined;
  }
  if (scanned === undefined) scanned = scanMembers(body);
  if (scanned === null) return null;
  const { members, nonEmpty, closeAt } = scanned;
  const edits = [];
  let added = '';
  let count = nonEmpty ? 1 : 0;
  for (const [field, value] of fields) {
    const want = utf8(field);
    let found = false;
    for (const m of members) {
      if (sameBytes(body, m.keyStart, m.keyEnd, want)) {
        edits.push([m.valueStart, m.valueEnd, utf8(quote(value))]);
        found = true;
      }
    }
    if (!found) {
      if (count > 0) added += ',';
      added += quote(field) + ':' + quote(value);
      count++;
    }
  }
  edits.sort((a, b) => a[0] - b[0]);
  // Copy unchanged runs with subarray/set: far cheaper in QuickJS than byte by byte.
  const addedBytes = utf8(added);
  let size = body.length + addedBytes.length;
  for (const [start, end, bytes] of edits) size += bytes.length - (end - start);
  const out = new Uint8Array(size);
  let at = 0;
  let pos = 0;
  const copy = (from, to) => { out.set(body.subarray(from, to), pos); pos += to - from; };
  const put = (bytes) => { out.set(bytes, pos); pos += bytes.length; };
  for (const [start, end, bytes] of edits) {
    copy(at, start);
    put(bytes);
    at = end;
  }
  copy(at, closeAt);
  put(addedBytes);
  copy(closeAt, body.length);
  return out;
}

// ---- the plugin ------------------------------------------------------------------

function jsonResponse(status, message) {
  return {
    status,
    headers: [['content-type', 'application/json']],
    body: new Uint8Array(utf8(JSON.stringify({ message }))),
  };
}

function isJson(headers) {
  const ct = headers.find(([n]) => n.toLowerCase() === 'content-type');
  return ct !== undefined && ct[1].split(';')[0].trim().toLowerCase() === 'application/json';
}

export function mapRequest(req, ctx) {
  let cfg;
  try {
    cfg = readConfig();
  } catch (e) {
    log('error', `bad config: ${e.message}`);
    return { tag: 'respond', val: jsonResponse(500, 'plugin misconfigured') };
  }
  log('info', `map-request ${req.method} ${req.path} (${req.body.length} body bytes)`);

  const headers = [];
  for (const [name, value] of req.headers) {
    const rename = cfg.renameHeaders.find(([from]) => from.toLowerCase() === name.toLowerCase());
    headers.push([(rename ? rename[1] : name).toLowerCase(), value]);
  }
  for (const [name, value] of cfg.addHeaders) headers.push([name.toLowerCase(), value]);
  if (ctx.principalId !== undefined && ctx.principalId !== null) {
    headers.push(['x-principal', ctx.principalId]);
  }
  headers.push(['x-body-bytes', String(req.body.length)]);

  let body = req.body;
  if (body.length > 0 && isJson(req.headers)) {
    body = setFields(body, cfg.jsonFields);
    if (body === null) {
      log('warn', 'malformed JSON body');
      return { tag: 'respond', val: jsonResponse(400, 'malformed JSON body') };
    }
  }
  return { tag: 'forward', val: { ...req, headers, body } };
}

export function mapResponse(resp, _ctx) {
  let cfg;
  try {
    cfg = readConfig();
  } catch (e) {
    log('error', `bad config: ${e.message}`);
    return jsonResponse(500, 'plugin misconfigured');
  }
  const headers = resp.headers.slice();
  for (const [name, value] of cfg.responseHeaders) headers.push([name.toLowerCase(), value]);
  return { ...resp, headers };
}
