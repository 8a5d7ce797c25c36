// The example mapper in JavaScript: renames and adds headers from the plugin's config,
// sets top-level fields of a JSON body, answers 400 for a malformed JSON body, and adds
// headers to the response. Same behaviour as examples/plugins/rust/mapper.
import { config, log } from 'weir:plugin/host@0.1.0';

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

function readConfig() {
  const root = JSON.parse(config());
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

// The body with each field set, or null when it is not a JSON object.
export function setFields(body, fields) {
  if (!validUtf8(body)) return null;
  const s = new Scanner(body);
  const members = [];
  let closeAt;
  try {
    s.ws();
    if (s.peek() !== 0x7b) return null;
    s.object(1, members);
    closeAt = s.i - 1;
    s.ws();
    if (s.i !== body.length) return null;
  } catch (e) {
    if (e instanceof Malformed) return null;
    throw e;
  }
  const edits = [];
  let added = '';
  let count = members.length;
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
