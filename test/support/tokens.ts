import jwt from 'jsonwebtoken';

export const TEST_SECRET = 'test-secret-of-at-least-thirty-two-bytes!!';

export interface Claims {
  sub?: string;
  role?: string;
  email?: string;
  [claim: string]: unknown;
}

/** A valid HS256 token for the test secret; `ttl` seconds (negative: already expired). */
export function token(claims: Claims = {}, options: { ttl?: number; secret?: string; issuer?: string; audience?: string } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const body = { sub: 'alice', role: 'authority', ...claims, iat: now, exp: now + (options.ttl ?? 3600) };
  return jwt.sign(body, options.secret ?? TEST_SECRET, {
    algorithm: 'HS256',
    ...(options.issuer ? { issuer: options.issuer } : {}),
    ...(options.audience ? { audience: options.audience } : {}),
  });
}

/** An unsigned token (`alg: none`). */
export function unsignedToken(claims: Claims = { sub: 'mallory', role: 'admin' }): string {
  const part = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${part({ alg: 'none', typ: 'JWT' })}.${part({ ...claims, exp: Math.floor(Date.now() / 1000) + 60 })}.`;
}
