// The example mapper in JavaScript: renames and adds headers from the plugin's config,
// sets top-level fields of a JSON body, answers 400 for a malformed JSON body, and adds
// headers to the response. Same behaviour as examples/plugins/rust/mapper.
import { config, log } from 'weir:plugin/host@0.1.5';
import { indexObject } from 'weir:plugin/json@0.1.5';

// QuickJS components have no `console`: this one sends console.log/info/warn/error to
// the gateway's log, tagged with the plugin's name (`plugin=NAME`).
globalThis.console = Object.fromEntries(
  [['log', 'info'], ['info', 'info'], ['debug', 'debug'], ['warn', 'warn'], ['error', 'error']].map(
    ([fn, level]) => [fn, (...args) => log(level, args.map((a) => (typeof a === 'string' ? a : JSON.stringify(a))).join(' '))],
  ),
);

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

function sameBytes(b, start, end, want) {
  if (end - start !== want.length) return false;
  for (let k = 0; k < want.length; k++) if (b[start + k] !== want[k]) return false;
  return true;
}

// The body with each field set, or null when it is not a JSON object.
export function setFields(body, fields) {
  // The gateway checks the body and finds its top-level members natively
  // (`weir:plugin/json`, since WIT 0.1.1): far cheaper than checking it in JavaScript.
  const index = indexObject(body);
  if (index == null) return null;
  const { members, close: closeAt } = index;
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
  console.log(`map-request ${req.method} ${req.path} (${req.body.length} body bytes)`);

  const headers = [];
  for (const [name, value] of req.headers) {
    const rename = cfg.renameHeaders.find(([from]) => from.toLowerCase() === name.toLowerCase());
    headers.push([(rename ? rename[1] : name).toLowerCase(), value]);
  }
  for (const [name, value] of cfg.addHeaders) headers.push([name.toLowerCase(), value]);
  // An absent option<string> is `null` with this toolchain; `!= null` covers undefined too.
  if (ctx.principalId != null) {
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
