import { parseArgs } from 'node:util';
import jwt from 'jsonwebtoken';
import { subProblem } from '../auth/principal';
import { ConfigError, loadConfig } from '../config/config';

const USAGE = `Usage: realtime-gateway token --role <role> [--sub <id>] [--email <e>] [--ttl <seconds>] [--channel <c>]... [--jti <id>]
       (or, in a clone: npm run token -- --role <role> ...)

Prints a JWT signed with the configured key (JWT_SECRET, or the development key when unset).
Roles: authority | admin (subscribe to alerts), service | admin (the server API on the internal port, /admin
takes admin), doctor | patient (signaling), any (chat).
--channel (repeatable) adds a channel, or a prefix ending in *, to the token's "channels" claim: namespaces
whose subscribe mode is "claim" admit only the channels it names. Signaling is such a namespace:
  npm run token -- --role doctor --channel signaling:c-123
--jti sets the token's id, so that POST /api/revoke {"jti":"<id>"} can revoke this one token. Every token
carries "iat" (issued at), which POST /api/revoke {"user":"<sub>","issued_before":<unix s>} compares.`;

function fail(message: string): never {
  process.stderr.write(`token: ${message}\n\n${USAGE}\n`);
  process.exit(2);
}

function main(): void {
  let values: Record<string, string | boolean | string[] | undefined>;
  try {
    ({ values } = parseArgs({
      options: {
        role: { type: 'string' },
        sub: { type: 'string' },
        email: { type: 'string' },
        ttl: { type: 'string', default: '3600' },
        channel: { type: 'string', multiple: true },
        jti: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (error) {
    fail((error as Error).message);
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const role = values.role as string | undefined;
  if (!role) fail('--role is required');
  const ttl = Number(values.ttl);
  if (!Number.isInteger(ttl) || ttl <= 0) fail('--ttl must be a positive number of seconds');
  let config;
  try {
    ({ config } = loadConfig());
  } catch (error) {
    if (error instanceof ConfigError) fail(`invalid configuration: ${error.message}`);
    throw error;
  }
  const secret = config.jwt.signingSecret;
  if (!secret) {
    // No HMAC secret: the gateway only verifies. Name the variable that says so, and where tokens come from.
    const source = config.jwt.jwksUrl ? 'JWT_JWKS_URL' : config.jwt.oidcIssuerUrl ? 'OIDC_ISSUER_URL' : undefined;
    fail(
      source
        ? `this gateway verifies tokens with your identity provider's keys (${source}): get tokens from it, with the role claim (service, admin, ...) it maps`
        : 'this gateway verifies tokens with a public key (JWT_PUBLIC_KEY): sign them with its private key, where your tokens are issued',
    );
  }
  if (config.jwt.usingDevKey) process.stderr.write('token: signed with the development key (JWT_SECRET is not set)\n');
  if (values.sub !== undefined) {
    // The door's rule for a sub: a token it would refuse (an unset $USER gives --sub '') is never printed.
    const problem = subProblem(values.sub as string);
    if (problem) fail(`--sub ${problem}`);
  }
  const claims: Record<string, unknown> = { sub: (values.sub as string | undefined) ?? `dev-${role}`, role };
  if (values.email) claims.email = values.email;
  if (values.jti !== undefined) {
    const problem = subProblem(values.jti as string);
    // The server API's rule for a jti it can revoke: a token with any other jti could only be revoked by its user.
    if (problem) fail(`--jti ${problem}`);
    claims.jti = values.jti;
  }
  const channels = values.channel as string[] | undefined;
  if (channels) {
    const bad = channels.find((c) => c.length === 0 || c.length > 256);
    if (bad !== undefined) fail('--channel takes a channel name or a prefix ending in * (1-256 characters), e.g. signaling:c-123 or chat:ward-7-*');
    claims.channels = channels;
  }
  const token = jwt.sign(claims, secret, {
    algorithm: 'HS256',
    expiresIn: ttl,
    ...(config.jwt.issuer ? { issuer: config.jwt.issuer } : {}),
    ...(config.jwt.audience ? { audience: config.jwt.audience } : {}),
  });
  process.stdout.write(`${token}\n`);
}

main();
