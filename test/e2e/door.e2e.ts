import { createHmac, generateKeyPairSync, sign as cryptoSign } from 'node:crypto';
import { connect as netConnect } from 'node:net';
import { connect, refusal } from '../support/clients';
import { startTestGateway, type TestGateway } from '../support/gateway';
import { plainRequest, rawExchange, upgradeRequest, type RawAnswer } from '../support/raw-http';
import { TEST_SECRET, token } from '../support/tokens';

// The attack suite of the door: every hostile request an attacker's tour found, and the earlier corpus, each
// answered with the documented status and error code, in the one JSON form, counted, and without echoing the
// URL, a header or the token anywhere in the answer.

const ALERTS = '/api/alerts/subscribe';
const ORIGIN = 'https://app.example.com';
const now = () => Math.floor(Date.now() / 1000);
const b64 = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

/** An HS256 token over a payload given as raw JSON text (so it can hold 1e400, which JSON.stringify cannot). */
function hs256Raw(payloadJson: string, header: Record<string, unknown> = {}): string {
  const input = `${b64({ alg: 'HS256', typ: 'JWT', ...header })}.${b64(payloadJson)}`;
  return `${input}.${createHmac('sha256', TEST_SECRET).update(input).digest('base64url')}`;
}
const claimsWith = (extra: string) => `{"sub":"mallory","role":"authority","iat":${now()}${extra}}`;

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const rsaPem = rsa.publicKey.export({ type: 'spki', format: 'pem' }).toString();
const p256 = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const p256Pem = p256.publicKey.export({ type: 'spki', format: 'pem' }).toString();

/** An ES256 token whose signature is re-shaped by `mangle` (JOSE wants exactly 64 bytes r||s). */
function es256(mangle: (signature: Buffer, input: string) => Buffer): string {
  const input = `${b64({ alg: 'ES256', typ: 'JWT' })}.${b64({ sub: 'mallory', role: 'authority', exp: now() + 60 })}`;
  const signature = cryptoSign('sha256', Buffer.from(input), { key: p256.privateKey, dsaEncoding: 'ieee-p1363' });
  return `${input}.${mangle(signature, input).toString('base64url')}`;
}

/** HS256 signed with the RSA public key's PEM as the secret: algorithm confusion. */
function confused(): string {
  const input = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub: 'mallory', role: 'admin', exp: now() + 60 })}`;
  return `${input}.${createHmac('sha256', rsaPem).update(input).digest('base64url')}`;
}

type Server = 'hs' | 'rsa' | 'ec';

interface Case {
  name: string;
  server: Server;
  /** The raw request; `secret` is what must never come back (the token, or the URL's distinctive part). */
  build: () => { request: string; secret: string };
  status: number;
  error: string;
  /** The gateway label it is counted under in ws_upgrades_rejected_total; undefined: not a WebSocket request. */
  counted?: string;
}

const valid = () => token({ sub: 'alice', role: 'authority' });
const service = (claims = {}) => token({ sub: 'svc', role: 'service', ...claims });
const huge = (bytes: number) => `${valid()}${'A'.repeat(bytes)}`;
const upgradeWith = (t: string, headers: Record<string, string> = {}) => ({ request: upgradeRequest(`${ALERTS}?token=${t}`, headers), secret: t });
const viaHeader = (t: string) => ({ request: upgradeRequest(ALERTS, { Authorization: `Bearer ${t}` }), secret: t });
const viaProtocol = (t: string) => ({ request: upgradeRequest(ALERTS, { 'Sec-WebSocket-Protocol': `bearer, ${t}` }), secret: t });

const cases: Case[] = [
  // A proxy that drops the Upgrade header, and unknown paths: the URL (with its token) is never echoed.
  { name: 'plain GET of a WebSocket path with a valid token', server: 'hs', build: () => { const t = valid(); return { request: plainRequest('GET', `${ALERTS}?token=${t}`), secret: t }; }, status: 426, error: 'upgrade_required', counted: 'alerts' },
  { name: 'plain GET of a WebSocket path without a token', server: 'hs', build: () => ({ request: plainRequest('GET', `${ALERTS}?x=marker-zq81`), secret: 'marker-zq81' }), status: 426, error: 'upgrade_required', counted: 'alerts' },
  { name: 'plain GET of a WebSocket path with a forged token', server: 'hs', build: () => { const t = token({}, { secret: 'x'.repeat(40) }); return { request: plainRequest('GET', `${ALERTS}?token=${t}`), secret: t }; }, status: 401, error: 'token_invalid', counted: 'alerts' },
  { name: 'GET of an unknown path with a token', server: 'hs', build: () => { const t = valid(); return { request: plainRequest('GET', `/api/alerts/subscribe-nope?token=${t}`), secret: t }; }, status: 404, error: 'unknown_path' },
  { name: 'POST to an unknown path', server: 'hs', build: () => ({ request: plainRequest('POST', '/admin/marker-zq82', { 'Content-Length': '2' }, '{}'), secret: 'marker-zq82' }), status: 404, error: 'unknown_path' },
  { name: 'upgrade of an unknown path with a token', server: 'hs', build: () => { const t = valid(); return { request: upgradeRequest(`/ws/nothing?token=${t}`), secret: t }; }, status: 404, error: 'unknown_path', counted: 'unknown' },
  // Claims that are not finite numbers, and extensions we do not understand.
  { name: 'exp -1e20 (upgrade)', server: 'hs', build: () => upgradeWith(hs256Raw(claimsWith(',"exp":-1e20'))), status: 401, error: 'token_expired', counted: 'alerts' },
  { name: 'exp -1e400 (upgrade)', server: 'hs', build: () => upgradeWith(hs256Raw(claimsWith(',"exp":-1e400'))), status: 401, error: 'token_invalid', counted: 'alerts' },
  { name: 'exp 1e400: a token that would never expire', server: 'hs', build: () => upgradeWith(hs256Raw(claimsWith(',"exp":1e400'))), status: 401, error: 'token_invalid', counted: 'alerts' },
  { name: 'nbf -1e400', server: 'hs', build: () => upgradeWith(hs256Raw(claimsWith(',"nbf":-1e400'))), status: 401, error: 'token_invalid', counted: 'alerts' },
  { name: 'iat that is not a number', server: 'hs', build: () => upgradeWith(hs256Raw('{"sub":"mallory","role":"authority","iat":"yesterday"}')), status: 401, error: 'token_invalid', counted: 'alerts' },
  { name: 'crit header naming an extension', server: 'hs', build: () => upgradeWith(hs256Raw(claimsWith(`,"exp":${now() + 60}`), { crit: ['x'], x: 1 })), status: 401, error: 'token_invalid', counted: 'alerts' },
  { name: 'exp -1e20 (POST /api/alerts)', server: 'hs', build: () => { const t = hs256Raw('{"sub":"svc","role":"service","exp":-1e20}'); return { request: plainRequest('POST', '/api/alerts', { Authorization: `Bearer ${t}`, 'Content-Type': 'application/json', 'Content-Length': '12' }, '{"data":{}}\n'), secret: t }; }, status: 401, error: 'token_expired' },
  // What ws itself would have answered in plain text.
  { name: 'the bearer subprotocol twice', server: 'hs', build: () => { const t = valid(); return { request: upgradeRequest(ALERTS, { 'Sec-WebSocket-Protocol': `bearer, ${t}, bearer` }), secret: t }; }, status: 400, error: 'bad_request', counted: 'alerts' },
  { name: 'a subprotocol list with a character outside the token alphabet', server: 'hs', build: () => ({ request: upgradeRequest(ALERTS, { 'Sec-WebSocket-Protocol': 'bearer, marker{zq83}' }), secret: 'marker{zq83}' }), status: 400, error: 'bad_request', counted: 'alerts' },
  { name: 'headers over 16 KB (token in Authorization)', server: 'hs', build: () => viaHeader(huge(20_000)), status: 431, error: 'headers_too_large', counted: 'unknown' },
  { name: 'headers over 16 KB (token in the subprotocols)', server: 'hs', build: () => viaProtocol(huge(20_000)), status: 431, error: 'headers_too_large', counted: 'unknown' },
  { name: 'request line over 16 KB (token in the query)', server: 'hs', build: () => upgradeWith(huge(20_000)), status: 431, error: 'headers_too_large', counted: 'unknown' },
  { name: 'a 12 KB token in Authorization', server: 'hs', build: () => viaHeader(huge(12_000)), status: 401, error: 'token_invalid', counted: 'alerts' },
  { name: 'a 12 KB token in the subprotocols', server: 'hs', build: () => viaProtocol(huge(12_000)), status: 401, error: 'token_invalid', counted: 'alerts' },
  { name: 'a 12 KB token in the query', server: 'hs', build: () => upgradeWith(huge(12_000)), status: 401, error: 'token_invalid', counted: 'alerts' },
  { name: 'a request line that is not HTTP', server: 'hs', build: () => ({ request: 'GET /api/alerts/subscribe?marker-zq84 HTTP/9\r\n\r\n', secret: 'marker-zq84' }), status: 400, error: 'bad_request', counted: 'unknown' },
  { name: 'an upgrade with method POST', server: 'hs', build: () => { const t = valid(); return { request: upgradeRequest(`${ALERTS}?token=${t}`).replace(/^GET/, 'POST'), secret: t }; }, status: 400, error: 'bad_request', counted: 'alerts' },
  // Found by an attacker's tour after the first round of this suite.
  { name: 'an upgrade over HTTP/1.0', server: 'hs', build: () => { const t = valid(); return { request: upgradeRequest(`${ALERTS}?token=${t}`).replace('HTTP/1.1', 'HTTP/1.0'), secret: t }; }, status: 400, error: 'bad_request', counted: 'alerts' },
  { name: 'an Expect the server does not understand', server: 'hs', build: () => ({ request: plainRequest('GET', '/healthz?marker-zq87', { Expect: 'zz' }), secret: 'marker-zq87' }), status: 417, error: 'expectation_failed' },
  { name: 'Expect: 100-continue with a body over MAX_PUBLISH_BYTES: refused before it is invited', server: 'hs', build: () => { const t = service(); return { request: plainRequest('POST', '/api/alerts', { Authorization: `Bearer ${t}`, 'Content-Type': 'application/json', 'Content-Length': '9999999', Expect: '100-continue' }), secret: t }; }, status: 413, error: 'too_large' },
  // The earlier corpus.
  { name: 'alg none', server: 'hs', build: () => upgradeWith(`${b64({ alg: 'none', typ: 'JWT' })}.${b64({ sub: 'mallory', role: 'admin', exp: now() + 60 })}.`), status: 401, error: 'token_invalid', counted: 'alerts' },
  { name: 'alg none with a signature', server: 'hs', build: () => { const [, p, s] = valid().split('.'); return upgradeWith(`${b64({ alg: 'none' })}.${p}.${s}`); }, status: 401, error: 'token_invalid', counted: 'alerts' },
  { name: 'algorithm confusion: HS256 with the RSA public key as the secret', server: 'rsa', build: () => upgradeWith(confused()), status: 401, error: 'token_invalid', counted: 'alerts' },
  { name: 'ES256 signature one byte short', server: 'ec', build: () => upgradeWith(es256((s) => s.subarray(0, 63))), status: 401, error: 'token_invalid', counted: 'alerts' },
  { name: 'ES256 signature one byte long', server: 'ec', build: () => upgradeWith(es256((s) => Buffer.concat([s, Buffer.from([0])]))), status: 401, error: 'token_invalid', counted: 'alerts' },
  { name: 'ES256 signature in DER form', server: 'ec', build: () => upgradeWith(es256((_s, input) => cryptoSign('sha256', Buffer.from(input), p256.privateKey))), status: 401, error: 'token_invalid', counted: 'alerts' },
  { name: 'ES256 signature of zeros (r = s = 0)', server: 'ec', build: () => upgradeWith(es256(() => Buffer.alloc(64))), status: 401, error: 'token_invalid', counted: 'alerts' },
  { name: 'Origin null', server: 'hs', build: () => upgradeWith(valid(), { Origin: 'null' }), status: 403, error: 'forbidden_origin', counted: 'alerts' },
  { name: 'Origin with the allowed one as a prefix', server: 'hs', build: () => upgradeWith(valid(), { Origin: `${ORIGIN}.evil.example` }), status: 403, error: 'forbidden_origin', counted: 'alerts' },
  { name: 'Origin with a trailing slash', server: 'hs', build: () => upgradeWith(valid(), { Origin: `${ORIGIN}/` }), status: 403, error: 'forbidden_origin', counted: 'alerts' },
  { name: 'Origin over http', server: 'hs', build: () => upgradeWith(valid(), { Origin: ORIGIN.replace('https', 'http') }), status: 403, error: 'forbidden_origin', counted: 'alerts' },
  { name: 'Origin with another port', server: 'hs', build: () => upgradeWith(valid(), { Origin: `${ORIGIN}:8443` }), status: 403, error: 'forbidden_origin', counted: 'alerts' },
  { name: 'path in upper case', server: 'hs', build: () => { const t = valid(); return { request: upgradeRequest(`/API/alerts/subscribe?token=${t}`), secret: t }; }, status: 404, error: 'unknown_path', counted: 'unknown' },
  { name: 'path with a NUL escape', server: 'hs', build: () => { const t = valid(); return { request: upgradeRequest(`${ALERTS}%00?token=${t}`), secret: t }; }, status: 404, error: 'unknown_path', counted: 'unknown' },
  { name: 'path starting with //', server: 'hs', build: () => { const t = valid(); return { request: upgradeRequest(`/${ALERTS}?token=${t}`), secret: t }; }, status: 404, error: 'unknown_path', counted: 'unknown' },
  { name: 'path escaping upwards', server: 'hs', build: () => { const t = valid(); return { request: upgradeRequest(`/../../etc/passwd?token=${t}`), secret: t }; }, status: 404, error: 'unknown_path', counted: 'unknown' },
  { name: 'a malformed since', server: 'hs', build: () => ({ request: upgradeRequest(`${ALERTS}?since=marker-zq85&token=${valid()}`), secret: 'marker-zq85' }), status: 400, error: 'bad_request', counted: 'alerts' },
  // Hostile bodies.
  { name: 'POST /api/alerts nested deeper than MAX_JSON_DEPTH', server: 'hs', build: () => { const t = service(); const body = `{"data":${'['.repeat(40)}${']'.repeat(40)}}`; return { request: plainRequest('POST', '/api/alerts', { Authorization: `Bearer ${t}`, 'Content-Type': 'application/json', 'Content-Length': String(body.length) }, body), secret: t }; }, status: 400, error: 'bad_request' },
  { name: 'POST /api/alerts with a body that is not JSON', server: 'hs', build: () => { const t = service(); const body = '{"data": marker-zq86'; return { request: plainRequest('POST', '/api/alerts', { Authorization: `Bearer ${t}`, 'Content-Type': 'application/json', 'Content-Length': String(body.length) }, body), secret: 'marker-zq86' }; }, status: 400, error: 'bad_request' },
  {
    name: 'POST /api/alerts chunked past MAX_PUBLISH_BYTES',
    server: 'hs',
    build: () => {
      const t = service();
      const chunk = 'a'.repeat(300 * 1024);
      return { request: `${plainRequest('POST', '/api/alerts', { Authorization: `Bearer ${t}`, 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked', Connection: 'keep-alive' })}${chunk.length.toString(16)}\r\n${chunk}\r\n0\r\n\r\n`, secret: t };
    },
    status: 413,
    error: 'too_large',
  },
];

describe('the door answers every hostile request in one form', () => {
  const servers = {} as Record<Server, TestGateway>;
  beforeAll(async () => {
    servers.hs = await startTestGateway({ ALLOWED_ORIGINS: ORIGIN });
    servers.rsa = await startTestGateway({ JWT_SECRET: '', JWT_PUBLIC_KEY: rsaPem });
    servers.ec = await startTestGateway({ JWT_SECRET: '', JWT_PUBLIC_KEY: p256Pem });
  });
  afterAll(() => Promise.all(Object.values(servers).map((gw) => gw.close())));

  it.each(cases.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const gw = servers[c.server];
    const counter = c.counted && { gateway: c.counted, status: String(c.status), error: c.error };
    const before = counter ? ((await gw.metric('ws_upgrades_rejected_total', counter)) ?? 0) : 0;
    const { request, secret } = c.build();
    // The server API lives on the internal port; everything else here is the public port's.
    const answer = await rawExchange(/^POST \/api\/(?!alerts\/subscribe)/.test(request) ? gw.internalPort : gw.port, request, { closeWithinMs: 1000 });
    const body = JSON.parse(answer.body) as { error: string; message: string };
    expect([answer.status, body.error]).toEqual([c.status, c.error]);
    expect(Object.keys(body).sort()).toEqual(['error', 'message']);
    expect(answer.headers['content-type']).toMatch(/^application\/json/);
    expect(answer.headers['x-powered-by']).toBeUndefined();
    expect(answer.raw).not.toContain(secret);
    if (c.status === 401) expect(answer.headers['www-authenticate']).toBe('Bearer error="invalid_token"');
    if (counter) expect(await gw.metric('ws_upgrades_rejected_total', counter)).toBe(before + 1);
    // Neither the token nor the URL reaches a log line.
    expect(gw.rawLogs.join('\n')).not.toContain(secret);
  });

  it('still serves a valid client after the whole corpus, and a listed Origin is accepted', async () => {
    const client = await connect(servers.hs.ws(`${ALERTS}?token=${valid()}`), { headers: { Origin: ORIGIN } });
    client.send({ type: 'ping' });
    expect(await client.ofType('pong')).toMatchObject({ type: 'pong' });
    await client.close();
  });

  it('no response of any kind, on either port, carries X-Powered-By', async () => {
    for (const path of ['/healthz', '/readyz', '/metrics', '/nothing', '/demo', '/api/nodes', '/api/openapi.json']) {
      for (const url of [servers.hs.http(path), servers.hs.internal(path)]) {
        const res = await fetch(url);
        expect([url, res.headers.get('x-powered-by')]).toEqual([url, null]);
      }
    }
  });

  it('answers the CORS preflight of a browser asking why its upgrade failed, for allowed origins only', async () => {
    const preflight = await fetch(servers.hs.http(ALERTS), {
      method: 'OPTIONS',
      headers: { Origin: ORIGIN, 'Access-Control-Request-Method': 'GET', 'Access-Control-Request-Headers': 'authorization' },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe(ORIGIN);
    expect(preflight.headers.get('access-control-allow-headers')).toMatch(/authorization/i);
    const bad = await fetch(servers.hs.http(ALERTS), { headers: { Origin: ORIGIN, Authorization: 'Bearer nope' } });
    expect([bad.status, bad.headers.get('access-control-allow-origin')]).toEqual([401, ORIGIN]);
    const stranger = await fetch(servers.hs.http(ALERTS), { headers: { Origin: 'https://evil.example', Authorization: `Bearer ${valid()}` } });
    expect([stranger.status, stranger.headers.get('access-control-allow-origin')]).toEqual([403, null]);
    // A mistyped path, asked the way the SDK asks: a 404 the page can read, naming the doubled prefix.
    const mistyped = await fetch(servers.hs.http(`/api${ALERTS}`), { headers: { Origin: ORIGIN, Authorization: `Bearer ${valid()}` } });
    expect([mistyped.status, mistyped.headers.get('access-control-allow-origin')]).toEqual([404, ORIGIN]);
    expect(await mistyped.json()).toMatchObject({ error: 'unknown_path', message: expect.stringMatching(/repeats the prefix/) });
    const mistypedPreflight = await fetch(servers.hs.http(`/api${ALERTS}`), { method: 'OPTIONS', headers: { Origin: ORIGIN, 'Access-Control-Request-Method': 'GET' } });
    expect([mistypedPreflight.status, mistypedPreflight.headers.get('access-control-allow-origin')]).toEqual([204, ORIGIN]);
  });
});

describe('pipelined requests', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway();
  });
  afterAll(() => gw.close());

  it('answers a request pipelined before an upgrade first: the 101 never jumps ahead of it', async () => {
    const request = `${plainRequest('GET', '/healthz', { Connection: 'keep-alive' })}${upgradeRequest(`${ALERTS}?token=${valid()}`)}`;
    const raw = await new Promise<string>((resolve, reject) => {
      const socket = netConnect(gw.port, '127.0.0.1', () => socket.write(request));
      let got = '';
      socket.setEncoding('latin1');
      socket.on('data', (chunk: string) => {
        got += chunk;
        if (got.includes('HTTP/1.1 101') && got.includes('"welcome"') && got.includes('HTTP/1.1 200')) {
          socket.destroy();
          resolve(got);
        }
      });
      socket.on('error', reject);
      socket.on('close', () => resolve(got));
    });
    expect(raw.indexOf('HTTP/1.1 200')).toBeGreaterThanOrEqual(0);
    expect(raw.indexOf('HTTP/1.1 200')).toBeLessThan(raw.indexOf('HTTP/1.1 101'));
  });
});

describe('a refused request cannot hold its socket', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway();
  });
  afterAll(() => gw.close());

  it.each([
    ['a 401 on POST /api/alerts', '/api/alerts', 401],
    ['a 404 on an unknown path', '/nothing', 404],
  ])('after %s, a client trickling a declared 10 MB body is closed within seconds', async (_what, path, status) => {
    const head = plainRequest('POST', path, { 'Content-Type': 'application/json', 'Content-Length': '10000000', Connection: 'keep-alive' });
    const answer = await rawExchange(path.startsWith('/api/') ? gw.internalPort : gw.port, `${head}${'a'.repeat(1024)}`, { trickle: { everyMs: 50 }, closeWithinMs: 5000 });
    expect(answer.status).toBe(status);
    expect(answer.closedAfterMs).toBeDefined();
    expect(answer.closedAfterMs!).toBeLessThan(3000);
  });

  it('after a 413 on a chunked body, the client reads the 413 before the socket closes', async () => {
    const head = plainRequest('POST', '/api/alerts', { Authorization: `Bearer ${service()}`, 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked', Connection: 'keep-alive' });
    const chunk = 'a'.repeat(64 * 1024);
    const body = Array.from({ length: 8 }, () => `${chunk.length.toString(16)}\r\n${chunk}\r\n`).join('');
    const answer = await rawExchange(gw.internalPort, `${head}${body}`, { trickle: { everyMs: 50, data: '1\r\na\r\n' }, closeWithinMs: 5000 });
    expect([answer.status, JSON.parse(answer.body).error]).toEqual([413, 'too_large']);
    expect(answer.closedAfterMs!).toBeLessThan(3000);
  });
});

describe('pressure from strangers does not reach users', () => {
  it('refuses one address past MAX_UPGRADES_PER_IP_PER_SEC with 429 too_many_upgrades before any token work, and does not trust X-Forwarded-For from untrusted peers', async () => {
    const gw = await startTestGateway({ MAX_UPGRADES_PER_IP_PER_SEC: '5' });
    try {
      const answers: RawAnswer[] = [];
      // Each claims another address; the peer is not a trusted proxy, so all count as 127.0.0.1.
      for (let i = 0; i < 8; i++) answers.push(await rawExchange(gw.port, upgradeRequest(ALERTS, { 'X-Forwarded-For': `10.9.0.${i}` })));
      const statuses = answers.map((a) => a.status);
      const limited = answers.filter((a) => a.status === 429);
      expect(limited.length).toBeGreaterThanOrEqual(3);
      expect(statuses.filter((s) => s === 401).length).toBeLessThanOrEqual(5);
      for (const a of limited) {
        expect(JSON.parse(a.body).error).toBe('too_many_upgrades');
        expect(Number(a.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      }
      expect(await gw.metric('ws_upgrades_rejected_total', { status: '429', error: 'too_many_upgrades' })).toBe(limited.length);
    } finally {
      await gw.close();
    }
  });

  it('a flood of tokenless upgrades from one address leaves the node budget to 20 users behind the same trusted proxy', async () => {
    const gw = await startTestGateway({ MAX_UPGRADES_PER_IP_PER_SEC: '5', MAX_UPGRADES_PER_SEC: '50', TRUSTED_PROXIES: '127.0.0.1/32, ::1' });
    try {
      const flood = Array.from({ length: 400 }, () => rawExchange(gw.port, upgradeRequest(ALERTS, { 'X-Forwarded-For': '203.0.113.66' })));
      const users = Array.from({ length: 20 }, (_, i) =>
        connect(gw.ws(`${ALERTS}?token=${token({ sub: `user${i}` })}`), { headers: { 'X-Forwarded-For': `198.51.100.${i}, 127.0.0.1` } }),
      );
      const clients = await Promise.all(users);
      const floodAnswers = await Promise.all(flood);
      expect(clients).toHaveLength(20);
      const byStatus = new Map<number, number>();
      for (const a of floodAnswers) byStatus.set(a.status, (byStatus.get(a.status) ?? 0) + 1);
      expect(byStatus.get(429)!).toBeGreaterThanOrEqual(390);
      expect(byStatus.get(503)).toBeUndefined();
      // Every refusal is counted, but the flood does not flood the logs: one line per kind per 10 s.
      expect(await gw.metric('ws_upgrades_rejected_total', { status: '429', error: 'too_many_upgrades' })).toBe(byStatus.get(429));
      expect(gw.logs.filter((l) => l.event === 'upgrade_refused' && l.error === 'too_many_upgrades').length).toBe(1);
      await Promise.all(clients.map((c) => c.close()));
      // The users' address is read from X-Forwarded-For only because the peer is trusted.
      const spoofed = await refusal(gw.ws(ALERTS), { headers: { 'X-Forwarded-For': '203.0.113.66' } });
      expect([spoofed.status, spoofed.body.error]).toEqual([429, 'too_many_upgrades']);
    } finally {
      await gw.close();
    }
  });
});
