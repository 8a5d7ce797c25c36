// {{name}}: a Weir mapper. It adds `x-hello` to each request (the config's `greeting`,
// or "hello from {{name}}") and `x-mapped-by` to each response.
import { config, log } from 'weir:plugin/host@{{wit_version}}';

// QuickJS components have no `console`: this one sends console.log/info/warn/error to
// the gateway's log, tagged with the plugin's name (`plugin=NAME`).
globalThis.console = Object.fromEntries(
  [['log', 'info'], ['info', 'info'], ['debug', 'debug'], ['warn', 'warn'], ['error', 'error']].map(
    ([fn, level]) => [fn, (...args) => log(level, args.map((a) => (typeof a === 'string' ? a : JSON.stringify(a))).join(' '))],
  ),
);

function settings() {
  // The config table from weir.toml, as JSON (`{}` when there is none).
  const root = JSON.parse(config());
  return { greeting: typeof root.greeting === 'string' ? root.greeting : 'hello from {{name}}' };
}

// Absent `option<T>` values (here `ctx.principalId` when no authorizer ran) are `null`
// with this toolchain: test them with `== null`, which also covers `undefined`.
export function mapRequest(req, ctx) {
  console.log(`map-request ${req.method} ${req.path} (${ctx.routeKey}, principal ${ctx.principalId})`);
  const headers = [...req.headers, ['x-hello', settings().greeting]];
  if (ctx.principalId != null) headers.push(['x-principal', ctx.principalId]);
  return { tag: 'forward', val: { ...req, headers } };
}

export function mapResponse(resp, _ctx) {
  return { ...resp, headers: [...resp.headers, ['x-mapped-by', '{{name}}']] };
}
