// {{name}}: a Weir authorizer. It allows `Authorization: Bearer <token>` when the token
// is the config's `token` (default "let-me-in"), as the principal "user"; anything else
// is 401.
import { config, log } from 'weir:plugin/host@{{wit_version}}';

// QuickJS components have no `console`: this one sends console.log/info/warn/error to
// the gateway's log, tagged with the plugin's name (`plugin=NAME`).
globalThis.console = Object.fromEntries(
  [['log', 'info'], ['info', 'info'], ['debug', 'debug'], ['warn', 'warn'], ['error', 'error']].map(
    ([fn, level]) => [fn, (...args) => log(level, args.map((a) => (typeof a === 'string' ? a : JSON.stringify(a))).join(' '))],
  ),
);

export function authorize(req, _ctx) {
  const root = JSON.parse(config());
  const token = typeof root.token === 'string' ? root.token : 'let-me-in';
  const presented = (req.identity[0] ?? '').replace(/^Bearer /, '').trim();
  if (req.identity.length > 0 && req.identity[0].startsWith('Bearer ') && presented === token) {
    console.log(`allow ${req.method} ${req.path}`);
    return { tag: 'allow', val: { principalId: 'user', context: [['scheme', 'bearer']], usageIdentifierKey: undefined } };
  }
  console.warn(`deny ${req.method} ${req.path}`);
  return { tag: 'deny', val: { status: 401, message: 'Unauthorized' } };
}
