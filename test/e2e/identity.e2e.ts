import { constants, randomUUID, sign } from 'node:crypto';
import { JwtVerifier } from '../../src/auth/jwt-verifier';
import { connect, refusal } from '../support/clients';
import { eventually, startTestGateway, type TestGateway } from '../support/gateway';
import { generateSigningKey, jwksOf, signJwt, startJwksServer, startOidcProvider, type OidcProvider, type ProviderAlg, type SigningKey } from '../support/identity';
import { token } from '../support/tokens';

// Keys from an identity provider: a real OpenID Provider (oidc-provider, certified) through discovery, and a
// plain JWKS server the test controls for rotation, outages and floods of unknown kids.

const ALERTS = '/api/alerts/subscribe';
const AUDIENCE = 'realtime-gateway';
const now = () => Math.floor(Date.now() / 1000);

const fetchesOf = (gw: TestGateway) => gw.app.get(JwtVerifier).keyFetches;

/** RS256 keys can sign PS256 too (RSASSA-PSS, salt = digest length, RFC 7518 §3.5). */
function signPs256(key: SigningKey, claims: object): string {
  const input = `${Buffer.from(JSON.stringify({ alg: 'PS256', typ: 'JWT', kid: key.kid })).toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
  const signature = sign('sha256', Buffer.from(input), { key: key.privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 });
  return `${input}.${signature.toString('base64url')}`;
}

async function ready(gw: TestGateway): Promise<void> {
  await eventually(async () => (await fetch(gw.http('/readyz'))).status === 200, 10_000, 'readiness');
}

async function accepted(gw: TestGateway, jwt: string): Promise<void> {
  const client = await connect(gw.ws(`${ALERTS}?token=${jwt}`));
  expect(await client.ofType('welcome')).toMatchObject({ type: 'welcome' });
  await client.close();
}

describe.each<ProviderAlg>(['RS256', 'ES256', 'EdDSA'])('a real OpenID Provider signing with %s, through OIDC_ISSUER_URL', (alg) => {
  let provider: OidcProvider;
  let gw: TestGateway;
  beforeAll(async () => {
    provider = await startOidcProvider({
      alg,
      audience: AUDIENCE,
      alsoRsa: alg !== 'RS256',
      clients: [
        { id: 'dashboard', secret: 'dashboard-secret', role: 'authority', sub: 'alice' },
        { id: 'billing', secret: 'billing-secret', role: 'service' },
      ],
    });
    gw = await startTestGateway({ JWT_SECRET: '', OIDC_ISSUER_URL: provider.issuer, JWT_AUDIENCE: AUDIENCE });
    await ready(gw);
  });
  afterAll(async () => {
    await gw?.close();
    await provider?.stop();
  });

  it('accepts the tokens it issues (client credentials) on the WebSocket and on POST /api/alerts', async () => {
    const client = await connect(gw.ws(`${ALERTS}?token=${await provider.token('dashboard')}`));
    await client.ofType('welcome');
    const res = await fetch(gw.internal('/api/alerts'), {
      method: 'POST',
      headers: { authorization: `Bearer ${await provider.token('billing')}`, 'content-type': 'application/json' },
      body: JSON.stringify({ data: { via: 'oidc' } }),
    });
    expect(res.status).toBe(202);
    expect(await client.ofType('alert')).toMatchObject({ type: 'alert', data: { via: 'oidc' } });
    await client.close();
  });

  it('picks up a rotated key set when the first token signed with the new key arrives', async () => {
    const before = fetchesOf(gw);
    const old = await provider.token('dashboard');
    await provider.rotate('replace');
    await accepted(gw, await provider.token('dashboard'));
    expect(fetchesOf(gw)).toBe(before + 1);
    // The old key is no longer published: its tokens are refused (no second fetch within 10 s).
    const r = await refusal(gw.ws(`${ALERTS}?token=${old}`));
    expect([r.status, r.body.error]).toEqual([401, 'token_invalid']);
    expect(r.body.message).toMatch(/kid/);
    expect(fetchesOf(gw)).toBe(before + 1);
  });

  it('refuses a token signed by a key the provider never published, under its own kid or another', async () => {
    const forger = generateSigningKey(alg === 'EdDSA' ? 'EdDSA' : alg, provider.signingKid);
    const claims = { sub: 'mallory', role: 'admin', iss: provider.issuer, aud: AUDIENCE, exp: now() + 60 };
    for (const forged of [signJwt(forger, claims), signJwt({ ...forger, kid: `forged-${randomUUID()}` }, claims)]) {
      const r = await refusal(gw.ws(`${ALERTS}?token=${forged}`));
      expect([r.status, r.body.error]).toEqual([401, 'token_invalid']);
    }
  });

  it('refuses HS256 tokens outright: no provider key is ever an HMAC secret', async () => {
    const r = await refusal(gw.ws(`${ALERTS}?token=${token({}, { issuer: provider.issuer, audience: AUDIENCE })}`));
    expect([r.status, r.body.error, r.body.message]).toEqual([401, 'token_invalid', expect.stringMatching(/algorithm/)]);
  });
});

describe('a second issuer', () => {
  it("never validates another issuer's token, not even one signed under a kid both publish", async () => {
    const a = generateSigningKey('RS256', 'shared-kid');
    const b = generateSigningKey('RS256', 'shared-kid');
    const server = await startJwksServer(jwksOf(a));
    const gw = await startTestGateway({ JWT_SECRET: '', JWT_JWKS_URL: server.jwksUri, JWT_ISSUER: 'https://a.example' });
    try {
      await ready(gw);
      const claims = { sub: 'u', role: 'authority', exp: now() + 60 };
      await accepted(gw, signJwt(a, { ...claims, iss: 'https://a.example' }));
      for (const foreign of [signJwt(b, { ...claims, iss: 'https://b.example' }), signJwt(b, { ...claims, iss: 'https://a.example' }), signJwt(a, { ...claims, iss: 'https://b.example' })]) {
        const r = await refusal(gw.ws(`${ALERTS}?token=${foreign}`));
        expect([r.status, r.body.error]).toEqual([401, 'token_invalid']);
      }
    } finally {
      await gw.close();
      await server.close();
    }
  });
});

describe('a JWKS the test controls (JWT_JWKS_URL)', () => {
  const claims = () => ({ sub: 'u', role: 'authority', exp: now() + 60 });

  it('is not ready until a first key set is loaded, says why at warn, then serves', async () => {
    const key = generateSigningKey('ES256', 'k1');
    const server = await startJwksServer(jwksOf(key));
    server.down(500);
    const gw = await startTestGateway({ JWT_SECRET: '', JWT_JWKS_URL: `${server.jwksUri}?api_key=hush-123` });
    try {
      await server.nextFetch();
      await eventually(() => gw.logs.some((l) => l.event === 'jwks_unreachable'), 5000, 'the warn line');
      const res = await fetch(gw.http('/readyz'));
      expect([res.status, await res.json()]).toEqual([503, { status: 'keys_unavailable' }]);
      const r = await refusal(gw.ws(`${ALERTS}?token=${signJwt(key, claims())}`));
      expect([r.status, r.body.error, r.headers['retry-after']]).toEqual([503, 'keys_unavailable', '2']);
      const warn = gw.logs.find((l) => l.event === 'jwks_unreachable')!;
      expect(warn).toMatchObject({ level: 40, url: server.jwksUri, reason: 'HTTP 500' });
      expect(gw.rawLogs.join('\n')).not.toContain('hush-123');
      server.up();
      await ready(gw);
      await accepted(gw, signJwt(key, claims()));
    } finally {
      await gw.close();
      await server.close();
    }
  });

  it('keeps the last good key set while the provider is down, and warns', async () => {
    const key = generateSigningKey('RS256', 'k1');
    const server = await startJwksServer(jwksOf(key));
    const gw = await startTestGateway({ JWT_SECRET: '', JWT_JWKS_URL: server.jwksUri });
    try {
      await ready(gw);
      server.down('reset');
      // A token under a new kid makes the gateway try the provider (and fail).
      const stranger = generateSigningKey('RS256', 'k2');
      const r = await refusal(gw.ws(`${ALERTS}?token=${signJwt(stranger, claims())}`));
      expect([r.status, r.body.error]).toEqual([401, 'token_invalid']);
      expect(gw.logs.find((l) => l.event === 'jwks_unreachable')).toMatchObject({ level: 40, url: server.jwksUri });
      await accepted(gw, signJwt(key, claims()));
      expect((await fetch(gw.http('/readyz'))).status).toBe(200);
    } finally {
      await gw.close();
      await server.close();
    }
  });

  it('refuses a key set that streams without end, or that redirects, and says why', async () => {
    const { createServer } = await import('node:http');
    const endless = createServer((req, res) => {
      if (req.url === '/redirect') {
        res.writeHead(302, { Location: 'http://127.0.0.2:1/elsewhere' }).end();
        return;
      }
      // Chunked, no Content-Length, never ending: a stand-in that must not be buffered whole.
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.write('{"keys":[');
      const filler = ' '.repeat(64 * 1024);
      const pump = () => {
        while (res.write(filler)) if (res.destroyed) return;
        res.once('drain', pump);
      };
      pump();
      res.on('close', () => res.removeAllListeners('drain'));
    });
    await new Promise<void>((resolve) => endless.listen(0, '127.0.0.1', resolve));
    const port = (endless.address() as { port: number }).port;
    const streaming = await startTestGateway({ JWT_SECRET: '', JWT_JWKS_URL: `http://127.0.0.1:${port}/jwks.json` });
    const redirecting = await startTestGateway({ JWT_SECRET: '', JWT_JWKS_URL: `http://127.0.0.1:${port}/redirect` });
    try {
      await eventually(() => streaming.logs.some((l) => l.event === 'jwks_unreachable'), 10_000, 'the warn line');
      expect(streaming.logs.find((l) => l.event === 'jwks_unreachable')).toMatchObject({ reason: 'document larger than 1048576 bytes' });
      await eventually(() => redirecting.logs.some((l) => l.event === 'jwks_unreachable'), 10_000, 'the warn line');
      expect(redirecting.logs.find((l) => l.event === 'jwks_unreachable')!.reason).toMatch(/^HTTP 302: redirects are not followed/);
      expect((await fetch(redirecting.http('/readyz'))).status).toBe(503);
    } finally {
      await streaming.close();
      await redirecting.close();
      endless.closeAllConnections();
      endless.close();
    }
  });

  it('fetches at most once per 10 s however many unknown kids arrive', async () => {
    const key = generateSigningKey('ES256', 'k1');
    const server = await startJwksServer(jwksOf(key));
    const gw = await startTestGateway({ JWT_SECRET: '', JWT_JWKS_URL: server.jwksUri });
    try {
      await ready(gw);
      const before = server.fetches;
      const flood = Array.from({ length: 300 }, () => refusal(gw.ws(`${ALERTS}?token=${signJwt({ ...key, kid: randomUUID() }, claims())}`)));
      const answers = await Promise.all(flood);
      expect(answers.every((r) => r.status === 401 && r.body.error === 'token_invalid')).toBe(true);
      expect(server.fetches - before).toBe(1);
      await accepted(gw, signJwt(key, claims()));
    } finally {
      await gw.close();
      await server.close();
    }
  });

  it('accepts a rotated key at once (first token under the new kid refreshes), EdDSA and RSA-PSS included', async () => {
    const old = generateSigningKey('RS256', 'old');
    const server = await startJwksServer(jwksOf(old));
    const gw = await startTestGateway({ JWT_SECRET: '', JWT_JWKS_URL: server.jwksUri });
    try {
      await ready(gw);
      const ed = generateSigningKey('EdDSA', 'ed');
      const pss = generateSigningKey('RS256', 'pss');
      server.set({ keys: [old.publicJwk, ed.publicJwk, { ...pss.publicJwk, alg: 'PS256' }] });
      await accepted(gw, signJwt(ed, claims()));
      await accepted(gw, signJwt(old, claims()));
      await accepted(gw, signPs256(pss, claims()));
    } finally {
      await gw.close();
      await server.close();
    }
  });
});

describe('HMAC rotation (JWT_SECRET_PREVIOUS)', () => {
  it('accepts tokens of the current and the previous secret, and no other', async () => {
    const current = 'the-new-secret-the-new-secret-the-new-secret';
    const previous = 'the-old-secret-the-old-secret-the-old-secret';
    const gw = await startTestGateway({ JWT_SECRET: current, JWT_SECRET_PREVIOUS: previous });
    try {
      await accepted(gw, token({}, { secret: current }));
      await accepted(gw, token({}, { secret: previous }));
      const r = await refusal(gw.ws(`${ALERTS}?token=${token({}, { secret: 'a-third-secret-a-third-secret-a-third!' })}`));
      expect([r.status, r.body.error]).toEqual([401, 'token_invalid']);
    } finally {
      await gw.close();
    }
  });
});
