// A real OpenID Provider (panva's `oidc-provider`, ESM-only) for tests, run as a child process because jest here
// runs CommonJS. Driven by test/support/identity.ts; usable by hand too:
//
//   OIDC_CLIENTS='[{"id":"svc","secret":"s3cret","role":"authority"}]' OIDC_AUDIENCE=realtime-gateway \
//     node test/support/oidc-provider.mjs [--alg RS256|ES256|EdDSA] [--audience A] [--clients JSON] [--ttl S] [--port N] [--also-rsa]
//
// Options come from argv, else from env (OIDC_ALG, OIDC_AUDIENCE, OIDC_CLIENTS, OIDC_TOKEN_TTL, OIDC_PORT,
// OIDC_ALSO_RSA=1 for --also-rsa).
// Clients: [{ id, secret, role?, sub?, authMethod? }]; each may use the client_credentials grant. They are
// registered with token_endpoint_auth_method authMethod (default client_secret_post); oidc-provider accepts
// client_secret_basic from such a client as well. Access tokens are JWTs (RFC 9068, header typ "at+jwt") for the audience,
// with `role` (and `sub`, if given; otherwise sub is the client_id) from the client's entry.
//
// stdout, one JSON line each:  {"issuer":"http://127.0.0.1:N","port":N,"kids":[...],"signingKid":"..."} once ready;
// stdin, one command a line:   `rotate [ALG]`  new signing key, the old ones stay published
//                              `replace [ALG]` new signing key, published alone
//                              answered by {"rotated":true,"mode":"...","kids":[...],"signingKid":"..."}
//                              (or {"error":"..."}).
// The HTTP server (and so the port and the issuer) stays; only the Provider behind it is swapped for one with the
// new key set. The process exits when stdin closes (its parent is gone), on SIGTERM/SIGINT, or on `exit`.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    alg: { type: 'string' },
    audience: { type: 'string' },
    clients: { type: 'string' },
    ttl: { type: 'string' },
    port: { type: 'string' },
    'also-rsa': { type: 'boolean' },
  },
});

const SIGNING_ALGS = new Set(['RS256', 'ES256', 'EdDSA']);
const alg = args.alg ?? process.env.OIDC_ALG ?? 'RS256';
const audience = args.audience ?? process.env.OIDC_AUDIENCE;
const clients = JSON.parse(args.clients ?? process.env.OIDC_CLIENTS ?? '[]');
const ttl = Number(args.ttl ?? process.env.OIDC_TOKEN_TTL ?? 3600);
const port = Number(args.port ?? process.env.OIDC_PORT ?? 0);
const alsoRsa = args['also-rsa'] ?? ['1', 'true'].includes(process.env.OIDC_ALSO_RSA ?? '');
if (!SIGNING_ALGS.has(alg)) fail(`unsupported alg ${alg} (one of ${[...SIGNING_ALGS].join(', ')})`);
if (!audience) fail('an audience is required (--audience or OIDC_AUDIENCE)');
if (!Array.isArray(clients) || clients.some((c) => !c || typeof c.id !== 'string' || typeof c.secret !== 'string')) {
  fail('clients must be a JSON array of { id, secret, role?, sub? }');
}

// A resource indicator must be an absolute URI; an audience that is not one is carried inside a URN.
const AUDIENCE_URN = 'urn:x-test-audience:';
const resourceFor = (aud) => (URL.parse(aud) && !aud.includes('#') ? aud : AUDIENCE_URN + encodeURIComponent(aud));
const audienceOf = (resource) => (resource.startsWith(AUDIENCE_URN) ? decodeURIComponent(resource.slice(AUDIENCE_URN.length)) : resource);

let serial = 0;
function generateKey(keyAlg) {
  const kid = `${keyAlg.toLowerCase()}-${++serial}-${randomBytes(4).toString('hex')}`;
  const { privateKey } =
    keyAlg === 'RS256'
      ? generateKeyPairSync('rsa', { modulusLength: 2048 })
      : keyAlg === 'ES256'
        ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
        : generateKeyPairSync('ed25519');
  return { ...privateKey.export({ format: 'jwk' }), kid, alg: keyAlg, use: 'sig' };
}

function buildProvider(issuer, keys, signing) {
  const provider = new Provider(issuer, {
    jwks: { keys },
    // Clients default to RS256 ID tokens, which would demand an RSA key; sign everything with the current key.
    clientDefaults: { id_token_signed_response_alg: signing.alg },
    clients: clients.map((c) => ({
      client_id: c.id,
      client_secret: c.secret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: c.authMethod ?? 'client_secret_post',
      ...(c.role !== undefined ? { role: String(c.role) } : {}),
      ...(c.sub !== undefined ? { token_sub: String(c.sub) } : {}),
    })),
    extraClientMetadata: { properties: ['role', 'token_sub'] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => resourceFor(audience),
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx, resource) => ({
          scope: '',
          audience: audienceOf(resource),
          accessTokenFormat: 'jwt',
          accessTokenTTL: ttl,
          jwt: { sign: { alg: signing.alg, kid: signing.kid } },
        }),
      },
    },
    // `sub` here would be overwritten by the provider (it sets sub = accountId || client_id after the extras),
    // so a chosen sub is applied by the JWT customizer below.
    extraTokenClaims: async (ctx) => {
      const role = ctx.oidc.client?.metadata().role;
      return role !== undefined ? { role } : undefined;
    },
    formats: {
      customizers: {
        jwt: async (ctx, _token, jwt) => {
          const sub = ctx.oidc.client?.metadata().token_sub;
          if (sub !== undefined) jwt.payload.sub = sub;
        },
      },
    },
    ttl: { ClientCredentials: ttl },
  });
  provider.on('server_error', (_ctx, error) => process.stderr.write(`oidc-provider server_error: ${error?.stack ?? error}\n`));
  return provider;
}

let handler = (_req, res) => {
  res.statusCode = 503;
  res.end();
};
const server = createServer((req, res) => handler(req, res));
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(port, '127.0.0.1', resolve);
});
const issuer = `http://127.0.0.1:${server.address().port}`;

let signing = generateKey(alg);
// With --also-rsa (OIDC_ALSO_RSA=1) an RS256 key that signs nothing is published beside an ES256/EdDSA one,
// so that a verifier has to pick the key by kid.
let keys = alsoRsa && alg !== 'RS256' ? [signing, generateKey('RS256')] : [signing];
handler = buildProvider(issuer, keys, signing).callback();
emit({ issuer, port: server.address().port, kids: keys.map((k) => k.kid), signingKid: signing.kid });

const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  const [command, nextAlg = signing.alg] = line.trim().split(/\s+/);
  if (!command) return;
  if (command === 'exit') return shutdown(0);
  if (command !== 'rotate' && command !== 'replace') return emit({ error: `unknown command ${command}` });
  if (!SIGNING_ALGS.has(nextAlg)) return emit({ error: `unsupported alg ${nextAlg}` });
  try {
    const next = generateKey(nextAlg);
    const nextKeys = command === 'rotate' ? [next, ...keys] : [next];
    handler = buildProvider(issuer, nextKeys, next).callback();
    signing = next;
    keys = nextKeys;
    emit({ rotated: true, mode: command, kids: keys.map((k) => k.kid), signingKid: signing.kid });
  } catch (error) {
    emit({ error: String(error?.message ?? error) });
  }
});
// The parent holds the other end of stdin: when it goes (test done, or the jest worker crashed), so do we.
lines.on('close', () => shutdown(0));
process.on('SIGTERM', () => shutdown(0));
process.on('SIGINT', () => shutdown(0));

function emit(object) {
  process.stdout.write(`${JSON.stringify(object)}\n`);
}

function fail(message) {
  process.stderr.write(`oidc-provider.mjs: ${message}\n`);
  process.exit(2);
}

function shutdown(code) {
  server.closeAllConnections();
  server.close(() => process.exit(code));
  setTimeout(() => process.exit(code), 500).unref();
}
