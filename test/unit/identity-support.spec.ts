import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  decodeJwt,
  generateSigningKey,
  getJson,
  httpFetch,
  jwksOf,
  OIDC_PROVIDER_SCRIPT,
  signJwt,
  startJwksServer,
  startOidcProvider,
  verifyJwtSignature,
  type Jwks,
  type OidcProvider,
  type ProviderAlg,
  type SigningAlg,
} from '../support/identity';

/** The test support for JWKS / OIDC: a real oidc-provider in a child process, and a JWKS server the test drives. */

const AUDIENCE = 'realtime-gateway';
const CLIENTS = [
  { id: 'svc-alerts', secret: 'alerts-secret-0123456789', role: 'authority' },
  { id: 'svc-viewer', secret: 'viewer-secret-0123456789', role: 'viewer', sub: 'viewer-user' },
];

const jwkFor = (jwks: Jwks, kid: unknown) => jwks.keys.find((key) => key.kid === kid);

const ALGS: ProviderAlg[] = ['RS256', 'ES256', 'EdDSA'];
const providers = new Map<ProviderAlg, OidcProvider>();

// Started side by side: each takes a few hundred ms (loading oidc-provider, generating a key).
beforeAll(async () => {
  const started = await Promise.allSettled(ALGS.map((alg) => startOidcProvider({ alg, audience: AUDIENCE, clients: CLIENTS })));
  started.forEach((result, i) => result.status === 'fulfilled' && providers.set(ALGS[i], result.value));
  const failed = started.find((result) => result.status === 'rejected');
  if (failed) throw (failed as PromiseRejectedResult).reason;
});
afterAll(() => Promise.all([...providers.values()].map((idp) => idp.stop())));

describe.each(ALGS)('oidc-provider signing with %s', (alg) => {
  let idp: OidcProvider;
  beforeAll(() => {
    idp = providers.get(alg)!;
  });

  test('its discovery document names the issuer, the jwks_uri and the token endpoint', async () => {
    expect(idp.issuer).toBe(`http://127.0.0.1:${idp.port}`);
    const discovery = await getJson(idp.discoveryUrl);
    expect(discovery).toMatchObject({
      issuer: idp.issuer,
      jwks_uri: `${idp.issuer}/jwks`,
      token_endpoint: `${idp.issuer}/token`,
    });
    expect(discovery.grant_types_supported).toContain('client_credentials');
    const jwks = await getJson<Jwks>(idp.jwksUri);
    expect(jwks.keys.map((key) => key.kid)).toEqual(idp.kids);
  });

  test('token() returns a JWT signed with a published key, with the chosen sub, role and aud', async () => {
    const token = await idp.token('svc-alerts');
    const { header, payload } = decodeJwt(token);
    expect(header).toEqual({ alg, typ: 'at+jwt', kid: idp.signingKid });
    expect(payload).toMatchObject({ iss: idp.issuer, sub: 'svc-alerts', client_id: 'svc-alerts', role: 'authority', aud: AUDIENCE });
    expect(payload.exp).toBe((payload.iat as number) + 3600);

    const jwk = jwkFor(await getJson<Jwks>(idp.jwksUri), header.kid);
    expect(jwk).toMatchObject({ kid: header.kid, alg, use: 'sig' });
    expect(jwk).not.toHaveProperty('d');
    expect(verifyJwtSignature(token, jwk!)).toBe(true);
    const [h, , s] = token.split('.');
    const forged = `${h}.${Buffer.from(JSON.stringify({ ...payload, role: 'admin' })).toString('base64url')}.${s}`;
    expect(verifyJwtSignature(forged, jwk!)).toBe(false);

    const viewer = decodeJwt(await idp.token('svc-viewer', { auth: 'basic' })).payload;
    expect(viewer).toMatchObject({ sub: 'viewer-user', client_id: 'svc-viewer', role: 'viewer', aud: AUDIENCE });
    expect(decodeJwt(await idp.token('svc-viewer', { audience: 'https://elsewhere.example/api' })).payload.aud).toBe('https://elsewhere.example/api');
    expect((await idp.tokenResponse('svc-alerts', 'wrong')).status).toBe(401);
  });

  test("rotate() publishes a new signing key beside the old; replace() publishes only a new one", async () => {
    const first = idp.signingKid;
    const before = await idp.token('svc-alerts');

    const rotated = await idp.rotate('rotate');
    expect(rotated).toHaveLength(2);
    expect(rotated[1]).toBe(first);
    const afterRotate = await idp.token('svc-alerts');
    expect(decodeJwt(afterRotate).header.kid).toBe(rotated[0]);
    let jwks = await getJson<Jwks>(idp.jwksUri);
    expect(jwks.keys.map((key) => key.kid)).toEqual(rotated);
    expect(verifyJwtSignature(before, jwkFor(jwks, first)!)).toBe(true);
    expect(verifyJwtSignature(afterRotate, jwkFor(jwks, rotated[0])!)).toBe(true);

    const replaced = await idp.rotate('replace');
    expect(replaced).toHaveLength(1);
    expect(rotated).not.toContain(replaced[0]);
    const afterReplace = await idp.token('svc-alerts');
    expect(decodeJwt(afterReplace).header.kid).toBe(replaced[0]);
    jwks = await getJson<Jwks>(idp.jwksUri);
    expect(jwks.keys.map((key) => key.kid)).toEqual(replaced);
    expect(jwkFor(jwks, first)).toBeUndefined();
    expect(verifyJwtSignature(afterReplace, jwkFor(jwks, replaced[0])!)).toBe(true);
    // Same issuer and endpoints after the swap.
    expect((await getJson(idp.discoveryUrl)).jwks_uri).toBe(idp.jwksUri);
    expect(decodeJwt(afterReplace).payload.iss).toBe(idp.issuer);
  });
});

test('an ES256 provider can also publish an RSA key that signs nothing; a rotation may change the alg', async () => {
  const idp = await startOidcProvider({ alg: 'ES256', audience: AUDIENCE, clients: CLIENTS, alsoRsa: true });
  try {
    const jwks = await getJson<Jwks>(idp.jwksUri);
    expect(jwks.keys.map((key) => key.kty)).toEqual(['EC', 'RSA']);
    expect(decodeJwt(await idp.token('svc-alerts')).header).toMatchObject({ alg: 'ES256', kid: jwks.keys[0].kid });
    await idp.rotate('replace', 'EdDSA');
    const token = await idp.token('svc-alerts');
    expect(decodeJwt(token).header).toMatchObject({ alg: 'EdDSA', kid: idp.signingKid });
    expect(verifyJwtSignature(token, jwkFor(await getJson<Jwks>(idp.jwksUri), idp.signingKid)!)).toBe(true);
  } finally {
    await idp.stop();
  }
});

test('the provider process exits when the process that started it dies', async () => {
  // A parent that starts the script as identity.ts does (stdin a pipe), says the child's pid, then is SIGKILLed
  // (as a crashed jest worker would be); the script sees its stdin close and exits.
  const parent = spawn(
    process.execPath,
    [
      '-e',
      `const c = require('node:child_process').spawn(process.execPath, [${JSON.stringify(OIDC_PROVIDER_SCRIPT)}],
         { env: { ...process.env, OIDC_ALG: 'EdDSA', OIDC_AUDIENCE: 'a', OIDC_CLIENTS: '[]' }, stdio: ['pipe', 'pipe', 'ignore'] });
       c.stdout.once('data', () => console.log(c.pid));`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const [chunk] = (await once(parent.stdout!, 'data')) as [Buffer];
  const pid = Number(chunk.toString().trim());
  expect(isAlive(pid)).toBe(true);
  parent.kill('SIGKILL');
  await once(parent, 'exit');
  // Not our child, so no exit event to wait for: poll, briefly.
  for (const deadline = Date.now() + 5000; isAlive(pid) && Date.now() < deadline; ) await sleep(10);
  expect(isAlive(pid)).toBe(false);
});

/** Running, and not a zombie (an orphan is reaped by whatever PID 1 is here, which may take its time). */
function isAlive(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0] !== 'Z';
  } catch {
    try {
      process.kill(pid, 0);
      return process.platform !== 'linux';
    } catch {
      return false;
    }
  }
}

describe('generateSigningKey / signJwt', () => {
  test.each<SigningAlg>(['RS256', 'RS384', 'ES256', 'ES384', 'EdDSA'])('%s: a compact JWS that verifies against the public JWK', (alg) => {
    const key = generateSigningKey(alg, `k-${alg}`);
    const other = generateSigningKey(alg, 'other');
    const token = signJwt(key, { sub: 'alice', role: 'authority', exp: 2_000_000_000 }, { cty: 'x' });
    expect(decodeJwt(token)).toEqual({ header: { alg, typ: 'JWT', kid: `k-${alg}`, cty: 'x' }, payload: { sub: 'alice', role: 'authority', exp: 2_000_000_000 } });
    expect(key.publicJwk).toMatchObject({ kid: `k-${alg}`, alg, use: 'sig' });
    expect(key.publicJwk).not.toHaveProperty('d');
    expect(verifyJwtSignature(token, key.publicJwk)).toBe(true);
    expect(verifyJwtSignature(token, other.publicJwk)).toBe(false);
    const signatureBytes = Buffer.from(token.split('.')[2], 'base64url').length;
    const expected: Record<SigningAlg, number> = { RS256: 256, RS384: 256, ES256: 64, ES384: 96, EdDSA: 64 };
    expect(signatureBytes).toBe(expected[alg]); // ES in IEEE P1363 (r||s), not DER
  });

  test('headerExtras may override or drop header fields', () => {
    const key = generateSigningKey('ES256', 'k1');
    expect(decodeJwt(signJwt(key, {}, { kid: undefined, typ: 'at+jwt' })).header).toEqual({ alg: 'ES256', typ: 'at+jwt' });
  });
});

describe('startJwksServer', () => {
  const a = generateSigningKey('RS256', 'a');
  const b = generateSigningKey('EdDSA', 'b');

  test('serves the JWKS and a discovery document; counts fetches; set() and setCacheControl() apply to the next fetch', async () => {
    const server = await startJwksServer(jwksOf(a), { issuer: 'https://idp.test/realms/main' });
    try {
      expect(await getJson(server.discoveryUrl)).toEqual({ issuer: 'https://idp.test/realms/main', jwks_uri: server.jwksUri });
      expect(server.fetches).toBe(0);

      const fetched = server.nextFetch();
      let res = await httpFetch(server.jwksUri);
      await fetched;
      expect(server.fetches).toBe(1);
      expect(res.status).toBe(200);
      expect(res.headers['cache-control']).toBeUndefined();
      expect(JSON.parse(res.body)).toEqual(jwksOf(a));

      server.set(jwksOf(a, b));
      server.setCacheControl('max-age=300');
      res = await httpFetch(server.jwksUri);
      expect(res.headers['cache-control']).toBe('max-age=300');
      expect(JSON.parse(res.body).keys.map((k: { kid: string }) => k.kid)).toEqual(['a', 'b']);
      server.setCacheControl(undefined);
      expect((await httpFetch(server.jwksUri)).headers['cache-control']).toBeUndefined();
      await server.untilFetches(3);
      expect(server.fetches).toBe(3);
    } finally {
      await server.close();
    }
  });

  test('down(status), down("reset"), down("hang") and up()', async () => {
    const server = await startJwksServer(jwksOf(a));
    try {
      server.down(503);
      expect((await httpFetch(server.jwksUri)).status).toBe(503);
      expect((await httpFetch(server.discoveryUrl)).status).toBe(503);

      server.down('reset');
      await expect(httpFetch(server.jwksUri)).rejects.toThrow(/ECONNRESET|socket hang up/);

      server.down('hang');
      const fetched = server.nextFetch();
      const hanging = httpFetch(server.jwksUri, { timeoutMs: 10_000 });
      await fetched; // the request arrived and is left without an answer
      expect(server.fetches).toBe(3);
      server.up(); // lets it go: its socket is destroyed
      await expect(hanging).rejects.toThrow(/socket hang up|ECONNRESET/);

      const res = await httpFetch(server.jwksUri);
      expect(res.status).toBe(200);
      expect(server.fetches).toBe(4);
    } finally {
      await server.close();
    }
  });

  test('close() does not wait for a hanging request', async () => {
    const server = await startJwksServer(jwksOf(a));
    server.down('hang');
    const fetched = server.nextFetch();
    const hanging = httpFetch(server.jwksUri, { timeoutMs: 10_000 });
    await fetched;
    await server.close();
    await expect(hanging).rejects.toThrow(/socket hang up|ECONNRESET/);
  });
});
