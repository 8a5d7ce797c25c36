// The example token authorizer in JavaScript: `Authorization: Bearer <token>` with the
// tokens listed in the plugin's config (`tokens = { "<token>" = "<principal>" }`).
// Same behaviour as examples/plugins/rust/authorizer.
import { config, log } from 'weir:plugin/host@0.1.5';

// QuickJS components have no `console`: this one sends console.log/info/warn/error to
// the gateway's log, tagged with the plugin's name (`plugin=NAME`).
globalThis.console = Object.fromEntries(
  [['log', 'info'], ['info', 'info'], ['debug', 'debug'], ['warn', 'warn'], ['error', 'error']].map(
    ([fn, level]) => [fn, (...args) => log(level, args.map((a) => (typeof a === 'string' ? a : JSON.stringify(a))).join(' '))],
  ),
);

const deny = (status, message) => ({ tag: 'deny', val: { status, message } });

function readTokens() {
  const root = JSON.parse(config());
  if (root === null || typeof root !== 'object' || Array.isArray(root)) {
    throw new Error('config is not a table');
  }
  const t = root.tokens;
  if (t === undefined) return [];
  if (t === null || typeof t !== 'object' || Array.isArray(t)) {
    throw new Error('`tokens` must be a table of strings');
  }
  return Object.entries(t).map(([k, v]) => {
    if (typeof v !== 'string') throw new Error(`\`tokens.${k}\` must be a string`);
    return [k, v];
  });
}

function trimSpaces(s) {
  let a = 0, b = s.length;
  while (a < b && s[a] === ' ') a++;
  while (b > a && s[b - 1] === ' ') b--;
  return s.slice(a, b);
}

function decide(tokens, identity) {
  if (identity === undefined) return deny(401, 'missing token');
  if (identity.length < 7 || identity.slice(0, 7).toLowerCase() !== 'bearer ') {
    return deny(401, 'expected a bearer token');
  }
  const token = trimSpaces(identity.slice(7));
  if (token === '') return deny(401, 'expected a bearer token');
  const hit = tokens.find(([t]) => t === token);
  if (hit === undefined) return deny(403, 'unknown token');
  return {
    tag: 'allow',
    val: { principalId: hit[1], context: [['scheme', 'bearer']], usageIdentifierKey: undefined },
  };
}

export function authorize(req, _ctx) {
  let tokens;
  try {
    tokens = readTokens();
  } catch (e) {
    log('error', `bad config: ${e.message}`);
    return deny(403, 'authorizer misconfigured');
  }
  const decision = decide(tokens, req.identity[0]);
  if (decision.tag === 'allow') log('info', `allow ${decision.val.principalId}`);
  else log('warn', `deny ${decision.val.status}: ${decision.val.message}`);
  return decision;
}
