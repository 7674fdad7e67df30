import { createHmac, createSecretKey, generateKeyPairSync } from 'node:crypto';
import { JwsVerifier, StaticKeys } from '../../src/auth/jws';
import { keysFromJwks, maxAgeOf, MAX_REFRESH_MS, MIN_REFRESH_MS, DEFAULT_REFRESH_MS, refreshDelay } from '../../src/auth/remote-keys';

const b64 = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
const secret = 'unit-secret-unit-secret-unit-secret-unit!';
function hs256(payload: string, header: object = {}): string {
  const input = `${b64({ alg: 'HS256', typ: 'JWT', ...header })}.${b64(payload)}`;
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
}
const failureOf = (fn: () => unknown) => {
  try {
    fn();
  } catch (error) {
    return (error as { failure?: string }).failure;
  }
  return 'accepted';
};

describe('JwsVerifier where it is stricter than jsonwebtoken', () => {
  const verifier = new JwsVerifier({ key: createSecretKey(Buffer.from(secret)), algorithms: ['HS256'] });
  it.each([
    ['exp 1e400 (Infinity: would never expire)', '{"sub":"a","exp":1e400}', 'malformed'],
    ['exp -1e400', '{"sub":"a","exp":-1e400}', 'malformed'],
    ['nbf 1e400', '{"sub":"a","nbf":1e400}', 'malformed'],
    ['iat as a string', '{"sub":"a","iat":"now"}', 'malformed'],
    ['exp -1e20: expired, with no date in the message', '{"sub":"a","exp":-1e20}', 'expired'],
  ])('%s', (_what, payload, failure) => {
    expect(failureOf(() => verifier.verify(hs256(payload)))).toBe(failure);
  });

  it('refuses any crit header (RFC 7515 §4.1.11), even on an otherwise valid token', () => {
    expect(failureOf(() => verifier.verify(hs256('{"sub":"a"}', { crit: ['exp'] })))).toBe('critical');
    expect(failureOf(() => verifier.verify(hs256('{"sub":"a"}')))).toBe('accepted');
  });

  it('tries the previous secret after the current one (JWT_SECRET_PREVIOUS)', () => {
    const rotated = new JwsVerifier({
      keys: new StaticKeys([
        { key: createSecretKey(Buffer.from('the-new-one-the-new-one-the-new-one!!')), algorithms: ['HS256'] },
        { key: createSecretKey(Buffer.from(secret)), algorithms: ['HS256'] },
      ]),
      algorithms: ['HS256'],
    });
    expect(rotated.verify(hs256('{"sub":"a"}'))).toEqual({ sub: 'a' });
  });
});

describe('key sets from an identity provider', () => {
  it('reads max-age, and no-cache/no-store as 0', () => {
    expect(maxAgeOf('public, max-age=300, must-revalidate')).toBe(300_000);
    expect(maxAgeOf('no-store')).toBe(0);
    expect(maxAgeOf('private, no-cache')).toBe(0);
    expect(maxAgeOf(null)).toBeUndefined();
    expect(maxAgeOf('public')).toBeUndefined();
  });

  it('refreshes within 1 min – 24 h whatever the provider says, and after 10 min when it says nothing', () => {
    expect(refreshDelay(0)).toBe(MIN_REFRESH_MS);
    expect(refreshDelay(5_000)).toBe(MIN_REFRESH_MS);
    expect(refreshDelay(3_600_000)).toBe(3_600_000);
    expect(refreshDelay(10 * 86_400_000)).toBe(MAX_REFRESH_MS);
    expect(refreshDelay(undefined)).toBe(DEFAULT_REFRESH_MS);
  });

  it('keeps signature keys and says why it skipped the others', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const ed = generateKeyPairSync('ed25519');
    const jwk = (k: { export(o: { format: 'jwk' }): object }) => k.export({ format: 'jwk' });
    const { keys, skipped } = keysFromJwks({
      keys: [
        { ...jwk(rsa.publicKey), kid: 'rsa', use: 'sig' },
        { ...jwk(ec.publicKey), kid: 'ec', alg: 'ES256' },
        { ...jwk(ed.publicKey), kid: 'ed' },
        { ...jwk(rsa.publicKey), kid: 'enc', use: 'enc' },
        { ...jwk(ec.publicKey), kid: 'wrong-alg', alg: 'RS256' },
        { kty: 'oct', k: 'c2VjcmV0', kid: 'oct' },
        { ...jwk(ec.privateKey), kid: 'private' },
        { kty: 'RSA', n: 'zz', e: 'AQAB', kid: 'broken' },
        'not a key',
      ],
    });
    expect(keys.map((k) => [k.kid, k.algorithms])).toEqual([
      ['rsa', ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512']],
      ['ec', ['ES256']],
      ['ed', ['EdDSA']],
    ]);
    expect(skipped.map((s) => s.split(':')[0])).toEqual(['kid "enc"', 'kid "wrong-alg"', 'kid "oct"', 'kid "private"', 'kid "broken"', 'key #8']);
  });

  it('refuses a document that is not a key set', () => {
    expect(() => keysFromJwks({ issuer: 'x' })).toThrow(/no "keys" array/);
  });
});
