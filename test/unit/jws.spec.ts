import { createHmac, createSecretKey, generateKeyPairSync, sign as cryptoSign, type KeyObject } from 'node:crypto';
import jwt, { type Algorithm as JwtAlgorithm } from 'jsonwebtoken';
import { hmacSigner, JwsVerifier, type Algorithm } from '../../src/auth/jws';

// The gateway's verifier against jsonwebtoken (what it replaced on the upgrade path) on the same corpus: every
// token must get the same verdict (accepted with the same claims, expired, not yet valid, or refused).

const now = Math.floor(Date.now() / 1000);
const b64 = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

const secret = 'differential-secret-differential-secret!';
const otherSecret = 'another-secret-another-secret-another-secret';
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const otherRsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const p256 = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' });

interface Setup {
  name: string;
  key: KeyObject;
  algorithms: Algorithm[];
  issuer?: string;
  audience?: string;
  sign: (payload: object, alg?: JwtAlgorithm) => string;
  /** Signs any payload (jsonwebtoken's sign refuses malformed claims). */
  signRaw: (payload: object) => string;
}

const DIGESTS = { '256': 'sha256', '384': 'sha384', '512': 'sha512' } as const;

function rawSigner(alg: Algorithm, key: KeyObject | string): (payload: object) => string {
  return (payload) => {
    const input = `${b64({ alg, typ: 'JWT' })}.${b64(payload)}`;
    const digest = DIGESTS[alg.slice(2) as '256'];
    const signature =
      typeof key === 'string'
        ? createHmac(digest, key).update(input).digest()
        : cryptoSign(digest, Buffer.from(input), alg.startsWith('ES') ? { key, dsaEncoding: 'ieee-p1363' } : key);
    return `${input}.${signature.toString('base64url')}`;
  };
}

const claims = { sub: 'alice', role: 'authority', iat: now, exp: now + 60 };

const setups: Setup[] = [
  { name: 'HS256', key: createSecretKey(Buffer.from(secret)), algorithms: ['HS256'], sign: (p, alg = 'HS256') => jwt.sign(p, secret, { algorithm: alg }), signRaw: rawSigner('HS256', secret) },
  {
    name: 'HS256 with issuer and audience',
    key: createSecretKey(Buffer.from(secret)),
    algorithms: ['HS256'],
    issuer: 'https://idp.test',
    audience: 'gateway',
    sign: (p, alg = 'HS256') => jwt.sign(p, secret, { algorithm: alg }),
    signRaw: rawSigner('HS256', secret),
  },
  { name: 'RS256', key: rsa.publicKey, algorithms: ['RS256', 'RS384', 'RS512'], sign: (p, alg = 'RS256') => jwt.sign(p, rsa.privateKey, { algorithm: alg }), signRaw: rawSigner('RS256', rsa.privateKey) },
  { name: 'ES256', key: p256.publicKey, algorithms: ['ES256'], sign: (p, alg = 'ES256') => jwt.sign(p, p256.privateKey, { algorithm: alg }), signRaw: rawSigner('ES256', p256.privateKey) },
  { name: 'ES384', key: p384.publicKey, algorithms: ['ES384'], sign: (p, alg = 'ES384') => jwt.sign(p, p384.privateKey, { algorithm: alg }), signRaw: rawSigner('ES384', p384.privateKey) },
];

function corpus(setup: Setup): [string, string][] {
  const valid = setup.sign({ ...claims, iss: 'https://idp.test', aud: 'gateway' });
  const [h, p, s] = valid.split('.');
  const hs256 = (payload: object, key: string | Buffer) => jwt.sign(payload, key, { algorithm: 'HS256' });
  const pem = setup.key.type === 'public' ? setup.key.export({ type: 'spki', format: 'pem' }) : Buffer.from('x');
  const flip = (str: string, at: number) => str.slice(0, at) + (str[at] === 'A' ? 'B' : 'A') + str.slice(at + 1);
  return [
    ['valid', valid],
    ['valid, other alg of the family', setup.sign({ ...claims, iss: 'https://idp.test', aud: 'gateway' }, setup.algorithms[setup.algorithms.length - 1] as JwtAlgorithm)],
    ['no exp', setup.sign({ sub: 'a', role: 'r', iss: 'https://idp.test', aud: 'gateway' })],
    ['expired', setup.sign({ ...claims, exp: now - 1, iss: 'https://idp.test', aud: 'gateway' })],
    ['expires this second', setup.sign({ ...claims, exp: now, iss: 'https://idp.test', aud: 'gateway' })],
    ['exp as a string', setup.signRaw({ ...claims, exp: String(now + 60) })],
    ['nbf in the future', setup.sign({ ...claims, nbf: now + 30, iss: 'https://idp.test', aud: 'gateway' })],
    ['nbf in the past', setup.sign({ ...claims, nbf: now - 30, iss: 'https://idp.test', aud: 'gateway' })],
    ['nbf as a string', setup.signRaw({ ...claims, nbf: 'soon' })],
    ['wrong issuer', setup.sign({ ...claims, iss: 'https://evil', aud: 'gateway' })],
    ['no issuer', setup.sign({ ...claims, aud: 'gateway' })],
    ['wrong audience', setup.sign({ ...claims, iss: 'https://idp.test', aud: 'other' })],
    ['audience list containing ours', setup.sign({ ...claims, iss: 'https://idp.test', aud: ['x', 'gateway'] })],
    ['audience list without ours', setup.sign({ ...claims, iss: 'https://idp.test', aud: ['x', 'y'] })],
    ['alg none', `${b64({ alg: 'none', typ: 'JWT' })}.${p}.`],
    ['alg none with a signature', `${b64({ alg: 'none', typ: 'JWT' })}.${p}.${s}`],
    ['signature stripped', `${h}.${p}.`],
    ['payload swapped', `${h}.${b64({ ...claims, role: 'admin' })}.${s}`],
    ['signature altered', `${h}.${p}.${flip(s, 5)}`],
    ['signature with an extra character', `${h}.${p}.${s}A`],
    ['signature truncated', `${h}.${p}.${s.slice(0, -2)}`],
    ['other secret, HS256', hs256(claims, otherSecret)],
    ['HS256 signed with the public key as the secret (algorithm confusion)', hs256({ ...claims, iss: 'https://idp.test', aud: 'gateway' }, pem)],
    ['other RSA key', jwt.sign(claims, otherRsa.privateKey, { algorithm: 'RS256' })],
    ['ES256 claimed by a P-384 signature', `${b64({ alg: 'ES256', typ: 'JWT' })}.${p}.${jwt.sign(claims, p384.privateKey, { algorithm: 'ES384' }).split('.')[2]}`],
    ['unknown alg', `${b64({ alg: 'HS999', typ: 'JWT' })}.${p}.${s}`],
    ['two segments', `${h}.${p}`],
    ['four segments', `${h}.${p}.${s}.x`],
    ['empty', ''],
    ['padded base64', `${h}=.${p}.${s}`],
    ['standard base64 alphabet', `${h.replace(/-/g, '+')}+.${p}.${s}`],
    ['whitespace', ` ${valid}`],
    ['header not JSON', `${b64('not json')}.${p}.${s}`],
    ['header without alg', `${b64({ typ: 'JWT' })}.${p}.${s}`],
    ['payload not base64url JSON', `${h}.${b64('{"sub":')}.${s}`],
    ['empty payload', `${h}..${s}`],
    ['payload a JSON array', setup.signRaw(['sub', 'alice'])],
    ['payload JSON null', `${setup.signRaw({}).split('.')[0]}.${b64('null')}.${s}`],
    ['raw-signed valid claims', setup.signRaw({ ...claims, iss: 'https://idp.test', aud: 'gateway' })],
  ];
}

type Verdict = { ok: true; claims: unknown } | { ok: false; kind: 'expired' | 'not_before' | 'invalid' };

function reference(setup: Setup, token: string): Verdict {
  try {
    const options = {
      algorithms: setup.algorithms as JwtAlgorithm[],
      ...(setup.issuer ? { issuer: setup.issuer } : {}),
      ...(setup.audience ? { audience: setup.audience } : {}),
    };
    const result = jwt.verify(token, setup.key, options);
    // jsonwebtoken returns a non-object payload as is; the gateway needs claims, so it refuses those.
    if (result === null || typeof result !== 'object' || Array.isArray(result)) return { ok: false, kind: 'invalid' };
    return { ok: true, claims: result };
  } catch (error) {
    const name = (error as Error).name;
    return { ok: false, kind: name === 'TokenExpiredError' ? 'expired' : name === 'NotBeforeError' ? 'not_before' : 'invalid' };
  }
}

function ours(setup: Setup, token: string): Verdict {
  const verifier = new JwsVerifier(setup);
  try {
    return { ok: true, claims: verifier.verify(token, Math.floor(Date.now() / 1000)) };
  } catch (error) {
    const failure = (error as { failure?: string }).failure;
    if (!failure) throw error;
    return { ok: false, kind: failure === 'expired' ? 'expired' : failure === 'not_before' ? 'not_before' : 'invalid' };
  }
}

describe.each(setups)('JwsVerifier agrees with jsonwebtoken: $name', (setup) => {
  it.each(corpus(setup))('%s', (_what, token) => {
    expect(ours(setup, token)).toEqual(reference(setup, token));
  });

  it('accepts the valid token and refuses each forgery (the corpus is not all one verdict)', () => {
    const verdicts = corpus(setup).map(([, token]) => ours(setup, token));
    expect(verdicts.filter((v) => v.ok).length).toBeGreaterThanOrEqual(3);
    expect(verdicts.filter((v) => !v.ok).length).toBeGreaterThanOrEqual(25);
  });

  it('keeps its verdict when the header is already cached', () => {
    const verifier = new JwsVerifier(setup);
    const valid = setup.sign({ ...claims, iss: 'https://idp.test', aud: 'gateway' });
    const [h, p] = valid.split('.');
    expect(verifier.verify(valid)).toMatchObject({ sub: 'alice' });
    expect(() => verifier.verify(`${h}.${p}.`)).toThrow('unsigned');
    expect(() => verifier.verify(`${h}.${b64({ ...claims, role: 'admin' })}.${valid.split('.')[2]}`)).toThrow('signature');
  });
});

describe('hmacSigner (the precomputed-pad HMAC of the HS* fast path)', () => {
  // Keys shorter than, equal to and longer than both block sizes (64 and 128 bytes), and inputs of any length.
  const keys = [1, 32, 64, 65, 128, 129, 300].map((n) => Buffer.from('k'.repeat(n - 1) + String.fromCharCode(32 + n % 90)));
  const inputs = ['', 'a', 'x'.repeat(63), 'y'.repeat(64), 'z'.repeat(1000), `${b64({ alg: 'HS256' })}.${b64(claims)}`];
  it.each(['sha256', 'sha384', 'sha512'] as const)('equals createHmac for %s', (digest) => {
    for (const key of keys) {
      const signer = hmacSigner(digest, createSecretKey(key));
      expect(signer).toBeDefined(); // Node >= 20.12 (crypto.hash)
      for (const input of inputs) expect(signer!(input)).toBe(createHmac(digest, key).update(input).digest('base64url'));
    }
  });
});
