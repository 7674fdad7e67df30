import jwt from 'jsonwebtoken';
import { connect, refusal, type Closed, type TestClient } from '../support/clients';
import { Replica } from '../support/cluster';
import { clusterDeployment, embeddedDeployment, type Deployment } from '../support/deployment';
import { eventually } from '../support/gateway';
import { EVENTS_OUT, type EventsOut } from '../../src/events/events-out';
import { TEST_SECRET, token } from '../support/tokens';

jest.setTimeout(60_000);

/**
 * POST /api/revoke (SPEC v3): a revoked token is refused at the door (401 token_revoked) and every live connection
 * opened with it closes 4001 `token revoked` within 1 s, cluster-wide; a user's revocation covers tokens issued
 * before `issued_before` (and those without `iat`); revocations lapse after `ttl_s` and survive a Redis restarted
 * empty. Before this endpoint existed every request here was 404 unknown_path.
 */
type Deployed = Deployment & { internal(i: number, path: string): string };
const modes: [string, (env?: Record<string, string>) => Promise<Deployed>][] = [
  ['embedded', async (env = {}) => {
    const d = await embeddedDeployment(env);
    return { ...d, internal: (_i: number, path: string) => d.gateway.internal(path) };
  }],
  ['cluster (the revocation through the other replica)', async (env = {}) => {
    const d = await clusterDeployment(env);
    return { ...d, internal: (i: number, path: string) => d.replicas[i].internal(path) };
  }],
];

const now = () => Math.floor(Date.now() / 1000);

/** A token with exactly these claims (`iat` as given, or none), for the test secret. */
function tokenWith(claims: Record<string, unknown>, { iat = true } = {}): string {
  return jwt.sign({ role: 'authority', exp: now() + 3600, ...claims }, TEST_SECRET, { algorithm: 'HS256', noTimestamp: !iat });
}

function revoke(d: Deployed, i: number, body: unknown, caller = token({ sub: 'ops', role: 'admin' })) {
  return fetch(d.internal(i, '/api/revoke'), {
    method: 'POST',
    headers: { authorization: `Bearer ${caller}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
}

const alerts = (d: Deployed, i: number, bearer: string) => connect(d.ws(i, '/api/alerts/subscribe'), { protocols: ['bearer', bearer] });

async function refusedAs(d: Deployed, i: number, bearer: string): Promise<string | undefined> {
  try {
    const client = await alerts(d, i, bearer);
    await client.close();
    return undefined;
  } catch (error) {
    const e = error as { status?: number; body?: { error: string }; headers?: Record<string, string> };
    if (e.status === 401) expect(e.headers?.['www-authenticate']).toBe('Bearer error="invalid_token"');
    return e.body?.error;
  }
}

/** The close within `ms`, or code -1. */
function closedWithin(client: TestClient, ms: number): Promise<Closed> {
  return Promise.race([client.closed, new Promise<Closed>((resolve) => setTimeout(() => resolve({ code: -1, reason: 'still open' }), ms))]);
}

describe.each(modes)('POST /api/revoke, %s', (_mode, deploy) => {
  let d: Deployed;
  const open: TestClient[] = [];

  beforeAll(async () => {
    d = await deploy();
  });

  afterAll(async () => {
    for (const client of open) client.ws.terminate();
    await d?.close();
  });

  async function live(i: number, bearer: string): Promise<TestClient> {
    const client = await alerts(d, i, bearer);
    open.push(client);
    await client.ofType('welcome');
    return client;
  }

  it('by jti: closes the connections opened with that token 4001 within 1 s and refuses it everywhere; other tokens stay', async () => {
    const stolen = tokenWith({ sub: 'dana', jti: 'stolen-1' });
    const a = await live(0, stolen);
    const b = await live(1, stolen);
    const other = await live(0, tokenWith({ sub: 'dana', jti: 'laptop-2' }));
    const res = await revoke(d, 1, { jti: 'stolen-1' });
    const sent = Date.now();
    expect(res.status).toBe(202);
    expect(await res.json()).toMatchObject({ jti: 'stolen-1', revoked_until: expect.any(Number) });
    expect(await closedWithin(a, 1000)).toEqual({ code: 4001, reason: 'token revoked' });
    expect(await closedWithin(b, 1000)).toEqual({ code: 4001, reason: 'token revoked' });
    expect(Date.now() - sent).toBeLessThan(1000);
    expect(await refusedAs(d, 0, stolen)).toBe('token_revoked');
    expect(await refusedAs(d, 1, stolen)).toBe('token_revoked');
    other.send({ type: 'ping' });
    await other.ofType('pong');
    expect(await refusedAs(d, 1, tokenWith({ sub: 'dana', jti: 'laptop-3' }))).toBeUndefined();
  });

  it('by user: closes what was issued before, refuses it and tokens without iat; a token issued from issued_before on connects', async () => {
    const cut = now() - 100;
    const old = tokenWith({ sub: 'erin', iat: cut - 1 });
    const conn = await live(0, old);
    const noIat = tokenWith({ sub: 'erin' }, { iat: false });
    const res = await revoke(d, 1, { user: 'erin', issued_before: cut });
    expect(res.status).toBe(202);
    expect(await res.json()).toMatchObject({ user: 'erin', issued_before: cut });
    expect(await closedWithin(conn, 1000)).toEqual({ code: 4001, reason: 'token revoked' });
    for (const i of [0, 1]) {
      expect(await refusedAs(d, i, old)).toBe('token_revoked');
      expect(await refusedAs(d, i, noIat)).toBe('token_revoked');
      expect(await refusedAs(d, i, tokenWith({ sub: 'erin', iat: cut }))).toBeUndefined();
      expect(await refusedAs(d, i, tokenWith({ sub: 'erin-2', iat: cut - 1 }))).toBeUndefined();
    }
  });

  it('by user without issued_before: every token issued up to now, this second included', async () => {
    const current = tokenWith({ sub: 'fay', iat: now() });
    const conn = await live(1, current);
    expect((await revoke(d, 0, { user: 'fay' })).status).toBe(202);
    expect(await closedWithin(conn, 1000)).toEqual({ code: 4001, reason: 'token revoked' });
    expect(await refusedAs(d, 1, current)).toBe('token_revoked');
    // A token minted after this second connects (the client SDK fetches one on 4001).
    const later = tokenWith({ sub: 'fay', iat: now() + 2 });
    expect(await refusedAs(d, 1, later)).toBeUndefined();
  });

  it('lapses after ttl_s: the token gets back in', async () => {
    const bearer = tokenWith({ sub: 'gus', jti: 'short-lived' });
    expect((await revoke(d, 1, { jti: 'short-lived', ttl_s: 1 })).status).toBe(202);
    expect(await refusedAs(d, 0, bearer)).toBe('token_revoked');
    const at = Date.now();
    await eventually(async () => (await refusedAs(d, 0, bearer)) === undefined, 3000, 'the revocation to lapse');
    expect(Date.now() - at).toBeGreaterThan(500);
  });

  it.each<[string, unknown]>([
    ['no user and no jti', { ttl_s: 60 }],
    ['both user and jti', { user: 'hal', jti: 'x' }],
    ['issued_before without user', { jti: 'x', issued_before: 1 }],
    ['an empty user', { user: '' }],
    ['a user with a control character', { user: 'hal\u0007' }],
    ['a jti over 256 bytes', { jti: 'j'.repeat(257) }],
    ['ttl_s 0', { user: 'hal', ttl_s: 0 }],
    ['ttl_s over 30 days', { user: 'hal', ttl_s: 2_592_001 }],
    ['a fractional ttl_s', { user: 'hal', ttl_s: 1.5 }],
    ['issued_before in milliseconds', { user: 'hal', issued_before: Date.now() }],
    ['issued_before as a string', { user: 'hal', issued_before: '1732700000' }],
    ['an unknown field', { user: 'hal', until: 1 }],
    ['an array', [{ user: 'hal' }]],
  ])('answers 400 bad_request to %s', async (_what, body) => {
    const res = await revoke(d, 0, body);
    expect(res.status).toBe(400);
    const answer = (await res.json()) as { error: string; message: string };
    expect(answer.error).toBe('bad_request');
    expect(answer.message.length).toBeGreaterThan(0);
    // Nothing was revoked: hal still connects.
    expect(await refusedAs(d, 0, tokenWith({ sub: 'hal', jti: 'x' }))).toBeUndefined();
  });

  it('refuses a revoked service token at the server API too (401 token_revoked)', async () => {
    const service = tokenWith({ sub: 'billing', role: 'service', jti: 'leaked-service-key' });
    expect((await revoke(d, 1, { jti: 'leaked-service-key' })).status).toBe(202);
    for (const i of [0, 1]) {
      const res = await revoke(d, i, { user: 'someone' }, service);
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toBe('Bearer error="invalid_token"');
      expect(((await res.json()) as { error: string }).error).toBe('token_revoked');
    }
  });

  it('is for service and admin callers only', async () => {
    const res = await revoke(d, 0, { user: 'ivy' }, token({ sub: 'ivy', role: 'authority' }));
    expect(res.status).toBe(403);
    expect(((await res.json()) as { error: string }).error).toBe('forbidden_role');
  });
});

describe('revocations and bans after Redis restarts empty', () => {
  it('are enforced by a replica started after the restart', async () => {
    const d = await clusterDeployment();
    let late: Replica | undefined;
    try {
      const admin = `Bearer ${token({ sub: 'ops', role: 'admin' })}`;
      const post = (path: string, body: unknown) =>
        fetch(d.replicas[0].internal(path), { method: 'POST', headers: { authorization: admin, 'content-type': 'application/json' }, body: JSON.stringify(body) });
      expect((await post('/api/revoke', { jti: 'lost-laptop' })).status).toBe(202);
      expect((await post('/api/revoke', { user: 'jon', issued_before: now() - 10 })).status).toBe(202);
      expect((await post('/api/disconnect', { user: 'kim', ban_seconds: 600 })).status).toBe(202);
      await d.redis.kill();
      await d.redis.restart(); // no persistence: every key is gone
      late = await Replica.start('node-late', d.redis.url);
      await eventually(async () => (await late!.readyStatus()) === 200, 10_000, 'the late replica ready');
      const at = (bearer: string) => refusal(late!.ws('/api/alerts/subscribe'), { protocols: ['bearer', bearer] }).then((r) => r.body.error, () => undefined);
      // The replicas that knew write them back at once; the late one reads them within its 10 s check.
      await eventually(async () => (await at(tokenWith({ sub: 'lee', jti: 'lost-laptop' }))) === 'token_revoked', 15_000, 'the jti revocation on the late replica');
      expect(await at(tokenWith({ sub: 'jon', iat: now() - 20 }))).toBe('token_revoked');
      expect(await at(tokenWith({ sub: 'jon', iat: now() - 5 }))).toBeUndefined();
      expect(await at(tokenWith({ sub: 'kim' }))).toBe('banned');
      expect(await at(tokenWith({ sub: 'lee', jti: 'desktop' }))).toBeUndefined();
    } finally {
      await late?.kill();
      await d.close();
    }
  });
});

/**
 * Events out: the replica that took the request emits `token.revoked` and `user.disconnected` once each, through
 * the events-out contract (EVENTS_OUT); its delivery as webhooks is tested with the webhook sender. The emitted
 * events are recorded on the app's own EVENTS_OUT instance.
 */
describe('events out from the server API', () => {
  it('emits token.revoked and user.disconnected once per request, with the caller as by', async () => {
    const d = await embeddedDeployment();
    try {
      const events = d.gateway.app.get<EventsOut>(EVENTS_OUT);
      const emitted: [string, Record<string, unknown>][] = [];
      events.wants = () => true;
      events.emit = (type, data) => void emitted.push([type, data]);
      const post = (path: string, body: unknown) =>
        fetch(d.gateway.internal(path), { method: 'POST', headers: { authorization: `Bearer ${token({ sub: 'ops-7', role: 'admin' })}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
      expect((await post('/api/revoke', { jti: 'tab-1' })).status).toBe(202);
      expect((await post('/api/revoke', { user: 'mo', issued_before: 1_732_700_000 })).status).toBe(202);
      expect((await post('/api/disconnect', { user: 'mo', reason: 'left the ward', ban_seconds: 60 })).status).toBe(202);
      expect((await post('/api/disconnect', { user: 'ned' })).status).toBe(202);
      expect((await post('/api/revoke', { jti: 'tab-1', user: 'mo' })).status).toBe(400);
      expect(emitted).toEqual([
        ['token.revoked', { jti: 'tab-1', by: 'ops-7' }],
        ['token.revoked', { user: 'mo', issued_before: 1_732_700_000, by: 'ops-7' }],
        ['user.disconnected', { user: 'mo', reason: 'left the ward', ban_seconds: 60, by: 'ops-7' }],
        ['user.disconnected', { user: 'ned', reason: '', ban_seconds: 0, by: 'ops-7' }],
      ]);
    } finally {
      await d.close();
    }
  });
});
