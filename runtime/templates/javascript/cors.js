// {{name}}: a Weir CORS policy. Origins listed in the config's `allow_origins` (default
// ["https://app.example"]) may call with GET and POST.
import { config, log } from 'weir:plugin/host@{{wit_version}}';

// QuickJS components have no `console`: this one sends console.log/info/warn/error to
// the gateway's log, tagged with the plugin's name (`plugin=NAME`).
globalThis.console = Object.fromEntries(
  [['log', 'info'], ['info', 'info'], ['debug', 'debug'], ['warn', 'warn'], ['error', 'error']].map(
    ([fn, level]) => [fn, (...args) => log(level, args.map((a) => (typeof a === 'string' ? a : JSON.stringify(a))).join(' '))],
  ),
);

function allowedOrigin(headers) {
  const root = JSON.parse(config());
  const allowed = Array.isArray(root.allow_origins) ? root.allow_origins : ['https://app.example'];
  const origin = headers.find(([n]) => n === 'origin');
  return origin !== undefined && allowed.includes(origin[1]) ? origin[1] : null;
}

export function preflight(req) {
  const origin = allowedOrigin(req.headers);
  if (origin === null) return { status: 403, headers: [], body: new Uint8Array() };
  return {
    status: 204,
    headers: [
      ['access-control-allow-origin', origin],
      ['access-control-allow-methods', 'GET, POST'],
      ['access-control-max-age', '600'],
      ['vary', 'Origin'],
    ],
    body: new Uint8Array(),
  };
}

export function decorate(req, headers) {
  const origin = allowedOrigin(req.headers);
  if (origin === null) return headers;
  return [...headers.filter(([n]) => n !== 'access-control-allow-origin'), ['access-control-allow-origin', origin], ['vary', 'Origin']];
}
