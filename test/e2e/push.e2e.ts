import { randomBytes, randomUUID, createECDH } from 'node:crypto';
import { join } from 'node:path';
import { vapidKeys } from '../../src/cli/vapid';
import type { PushPayload } from '../../src/push/push-out';
import { connect } from '../support/clients';
import { Replica } from '../support/cluster';
import { eventually, metricValue, startTestGateway, type TestGateway } from '../support/gateway';
import { spawnGateway, type GatewayProcess } from '../support/process';
import { PushService, type BrowserSubscription } from '../support/push-service';
import { RedisProcess } from '../support/redis';
import { TEST_SECRET, token } from '../support/tokens';

/**
 * Web Push (SPEC v3 "Receipts and offline delivery"): the public port's /push endpoints and every bad input, and
 * pushes received by a local push service that checks the VAPID JWT and decrypts each payload (test/support/
 * push-service.ts), from gateway processes that trust its throwaway CA through NODE_EXTRA_CA_CERTS.
 */

const HARNESS = join(__dirname, '..', 'support', 'push-harness.js');
const VAPID = vapidKeys();
const VAPID_ENV = { VAPID_PUBLIC_KEY: VAPID.publicKey, VAPID_PRIVATE_KEY: VAPID.privateKey, VAPID_SUBJECT: 'mailto:ops@example.com' };

const bearer = (sub: string) => ({ authorization: `Bearer ${token({ sub, role: 'authority' })}` });

interface Answer {
  status: number;
  body: Record<string, unknown> | undefined;
  headers: Headers;
}

async function call(base: (path: string) => string, method: string, path: string, options: { user?: string; body?: unknown; raw?: string; type?: string; headers?: Record<string, string> } = {}): Promise<Answer> {
  const res = await fetch(base(path), {
    method,
    headers: {
      ...(options.user ? bearer(options.user) : {}),
      ...(options.body !== undefined || options.raw !== undefined ? { 'content-type': options.type ?? 'application/json' } : {}),
      ...options.headers,
    },
    body: options.raw ?? (options.body === undefined ? undefined : JSON.stringify(options.body)),
  });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : undefined, headers: res.headers };
}

/** A subscription as a browser would hand it over, for a push service that is never called. */
function browserSubscription(endpoint = `https://push.example.net/send/${randomBytes(12).toString('base64url')}`): BrowserSubscription {
  const ecdh = createECDH('prime256v1');
  ecdh.generateKeys();
  return { endpoint, expirationTime: null, keys: { p256dh: ecdh.getPublicKey().toString('base64url'), auth: randomBytes(16).toString('base64url') } };
}

describe('push endpoints on the public port (in-process gateway)', () => {
  let gateway: TestGateway | undefined;

  afterEach(async () => {
    await gateway?.close();
    gateway = undefined;
  });

  it('without VAPID_*: 404 push_disabled for the key and for subscriptions, after the token check', async () => {
    gateway = await startTestGateway({ LOG_LEVEL: 'warn' });
    expect(await call(gateway.http, 'GET', '/push/vapid-public-key')).toMatchObject({ status: 404, body: { error: 'push_disabled' } });
    expect(await call(gateway.http, 'POST', '/push/subscriptions', { body: browserSubscription() })).toMatchObject({ status: 401, body: { error: 'token_missing' } });
    expect(await call(gateway.http, 'POST', '/push/subscriptions', { user: 'u1', body: browserSubscription() })).toMatchObject({ status: 404, body: { error: 'push_disabled' } });
    // The series exist at 0 all the same.
    expect(await gateway.metric('ws_push_sent_total', { result: 'sent' })).toBe(0);
  });

  it('serves the key; subscribes (201, then 200 for the same endpoint), unsubscribes (204), with CORS', async () => {
    gateway = await startTestGateway({ LOG_LEVEL: 'warn', ...VAPID_ENV });
    const key = await call(gateway.http, 'GET', '/push/vapid-public-key', { headers: { origin: 'https://app.example.com' } });
    expect(key.status).toBe(200);
    expect(key.body).toEqual({ key: VAPID.publicKey });
    expect(key.headers.get('access-control-allow-origin')).toBe('*');

    const preflight = await fetch(gateway.http('/push/subscriptions'), { method: 'OPTIONS', headers: { origin: 'https://app.example.com', 'access-control-request-method': 'POST' } });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-methods')).toBe('POST, DELETE');
    expect(preflight.headers.get('access-control-allow-headers')).toContain('Authorization');

    const sub = browserSubscription();
    expect(await call(gateway.http, 'POST', '/push/subscriptions', { user: 'u1', body: sub })).toMatchObject({ status: 201, body: { subscribed: true, subscriptions: 1, max: 10 } });
    expect(await call(gateway.http, 'POST', '/push/subscriptions', { user: 'u1', body: sub })).toMatchObject({ status: 200, body: { subscriptions: 1 } });
    // Registered by another user (the same browser, someone else signed in): it moves to that user.
    expect(await call(gateway.http, 'POST', '/push/subscriptions', { user: 'u2', body: sub })).toMatchObject({ status: 200, body: { subscriptions: 1 } });
    expect(await call(gateway.http, 'POST', '/push/subscriptions', { user: 'u1', body: browserSubscription() })).toMatchObject({ status: 201, body: { subscriptions: 1 } });
    // u1 no longer holds it: u1's DELETE leaves it; u2's removes it; a second DELETE is no error.
    expect((await call(gateway.http, 'DELETE', '/push/subscriptions', { user: 'u1', body: { endpoint: sub.endpoint } })).status).toBe(204);
    expect(await call(gateway.http, 'POST', '/push/subscriptions', { user: 'u2', body: sub })).toMatchObject({ status: 200 });
    const removed = await call(gateway.http, 'DELETE', '/push/subscriptions', { user: 'u2', body: { endpoint: sub.endpoint }, headers: { origin: 'https://app.example.com' } });
    expect(removed.status).toBe(204);
    expect(removed.body).toBeUndefined();
    expect(removed.headers.get('access-control-allow-origin')).toBe('*');
    expect((await call(gateway.http, 'DELETE', '/push/subscriptions', { user: 'u2', body: { endpoint: sub.endpoint } })).status).toBe(204);
    // Gone from storage: registering it again creates it.
    expect(await call(gateway.http, 'POST', '/push/subscriptions', { user: 'u2', body: sub })).toMatchObject({ status: 201 });
  });

  it('refuses every bad input with a clear 4xx, never a 500, never echoing the endpoint', async () => {
    gateway = await startTestGateway({ LOG_LEVEL: 'warn', ...VAPID_ENV, ALLOWED_ORIGINS: 'https://app.example.com' });
    const good = browserSubscription();
    const point = Buffer.from(good.keys.p256dh, 'base64url');
    const offCurve = Buffer.from(point);
    offCurve[64] ^= 1;
    const cases: [string, { body?: unknown; raw?: string; type?: string; user?: string | null; headers?: Record<string, string>; method?: string }, number, string][] = [
      ['no token', { body: good, user: null }, 401, 'token_missing'],
      ['an Origin not allowed', { body: good, headers: { origin: 'https://evil.example' } }, 403, 'forbidden_origin'],
      ['a revoked-looking token (bad signature)', { body: good, user: null, headers: { authorization: `Bearer ${token({ sub: 'u1' }, { secret: 'another-secret-of-at-least-thirty-two-bytes' })}` } }, 401, 'token_invalid'],
      ['not JSON', { raw: '{"endpoint":' }, 400, 'invalid_json'],
      ['text/plain', { raw: JSON.stringify(good), type: 'text/plain' }, 415, 'unsupported_media_type'],
      ['an array', { body: [good] }, 400, 'invalid_subscription'],
      ['no endpoint', { body: { keys: good.keys } }, 400, 'invalid_subscription'],
      ['a malformed endpoint', { body: { ...good, endpoint: 'https//push.example.net/x' } }, 400, 'invalid_subscription'],
      ['an http:// endpoint', { body: { ...good, endpoint: 'http://push.example.net/x' } }, 400, 'invalid_subscription'],
      ['credentials in the endpoint', { body: { ...good, endpoint: 'https://user:secret@push.example.net/x' } }, 400, 'invalid_subscription'],
      ['an endpoint of 3,000 characters', { body: { ...good, endpoint: `https://push.example.net/${'a'.repeat(3000)}` } }, 400, 'invalid_subscription'],
      ['no keys', { body: { endpoint: good.endpoint } }, 400, 'invalid_subscription'],
      ['p256dh of 64 bytes', { body: { ...good, keys: { ...good.keys, p256dh: point.subarray(1).toString('base64url') } } }, 400, 'invalid_subscription'],
      ['p256dh compressed (33 bytes)', { body: { ...good, keys: { ...good.keys, p256dh: Buffer.concat([Buffer.from([2]), point.subarray(1, 33)]).toString('base64url') } } }, 400, 'invalid_subscription'],
      ['p256dh off the curve', { body: { ...good, keys: { ...good.keys, p256dh: offCurve.toString('base64url') } } }, 400, 'invalid_subscription'],
      ['p256dh not base64url', { body: { ...good, keys: { ...good.keys, p256dh: `${good.keys.p256dh.slice(1)}!` } } }, 400, 'invalid_subscription'],
      ['auth of 15 bytes', { body: { ...good, keys: { ...good.keys, auth: randomBytes(15).toString('base64url') } } }, 400, 'invalid_subscription'],
      ['auth of 32 bytes', { body: { ...good, keys: { ...good.keys, auth: randomBytes(32).toString('base64url') } } }, 400, 'invalid_subscription'],
      ['expirationTime a string', { body: { ...good, expirationTime: 'soon' } }, 400, 'invalid_subscription'],
      ['expirationTime past', { body: { ...good, expirationTime: Date.now() - 1000 } }, 400, 'invalid_subscription'],
      ['a body over 4 KB', { raw: JSON.stringify({ ...good, padding: 'x'.repeat(5000) }) }, 413, 'too_large'],
      ['PUT', { body: good, method: 'PUT' }, 405, 'method_not_allowed'],
      ['DELETE without an endpoint', { body: {}, method: 'DELETE' }, 400, 'invalid_subscription'],
      ['DELETE of a malformed endpoint', { body: { endpoint: 'nope' }, method: 'DELETE' }, 400, 'invalid_subscription'],
    ];
    for (const [what, options, status, error] of cases) {
      const answer = await call(gateway.http, options.method ?? 'POST', '/push/subscriptions', { ...options, user: options.user === null ? undefined : (options.user ?? 'u1') });
      expect([what, answer.status, answer.body?.error]).toEqual([what, status, error]);
      expect([what, typeof answer.body?.message]).toEqual([what, 'string']);
      expect(JSON.stringify(answer.body)).not.toContain('push.example.net');
    }
    expect((await call(gateway.http, 'POST', '/push/vapid-public-key', { body: {} })).status).toBe(405);
    // Nothing above was stored: the good one is new.
    expect((await call(gateway.http, 'POST', '/push/subscriptions', { user: 'u1', body: good })).status).toBe(201);
    expect(gateway.logs.filter((line) => Number(line.level) >= 50)).toEqual([]);
  });

  it('keeps at most 10 subscriptions per user: 1,000 registrations leave the 10 newest', async () => {
    gateway = await startTestGateway({ LOG_LEVEL: 'warn', ...VAPID_ENV });
    const counts: number[] = [];
    for (let i = 0; i < 1000; i++) {
      const answer = await call(gateway.http, 'POST', '/push/subscriptions', { user: 'hoarder', body: browserSubscription(`https://push.example.net/send/${i}`) });
      expect(answer.status).toBe(201);
      counts.push(answer.body!.subscriptions as number);
    }
    expect(counts.slice(0, 10)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(new Set(counts.slice(10))).toEqual(new Set([10]));
    // The newest are kept (200: still registered), the oldest dropped (201: registered anew).
    expect((await call(gateway.http, 'POST', '/push/subscriptions', { user: 'hoarder', body: browserSubscription('https://push.example.net/send/999') })).status).toBe(200);
    expect((await call(gateway.http, 'POST', '/push/subscriptions', { user: 'hoarder', body: browserSubscription('https://push.example.net/send/990') })).status).toBe(200);
    expect((await call(gateway.http, 'POST', '/push/subscriptions', { user: 'hoarder', body: browserSubscription('https://push.example.net/send/989') })).status).toBe(201);
    // Another user is not affected.
    expect(await call(gateway.http, 'POST', '/push/subscriptions', { user: 'other', body: browserSubscription() })).toMatchObject({ status: 201, body: { subscriptions: 1 } });
  });

  it('in production: refuses private, loopback and link-local endpoints, by literal and by resolution; accepts a public one', async () => {
    gateway = await startTestGateway({ LOG_LEVEL: 'warn', ...VAPID_ENV, NODE_ENV: 'production' });
    const cases: [string, number, string][] = [
      ['http://push.example.net/x', 400, 'invalid_subscription'],
      ['https://127.0.0.1/x', 400, 'endpoint_not_allowed'],
      ['https://10.1.2.3/x', 400, 'endpoint_not_allowed'],
      ['https://172.20.0.5:8443/x', 400, 'endpoint_not_allowed'],
      ['https://192.168.1.1/x', 400, 'endpoint_not_allowed'],
      ['https://169.254.169.254/latest/meta-data', 400, 'endpoint_not_allowed'],
      ['https://100.64.0.1/x', 400, 'endpoint_not_allowed'],
      ['https://0.0.0.0/x', 400, 'endpoint_not_allowed'],
      ['https://[::1]/x', 400, 'endpoint_not_allowed'],
      ['https://[fd00::1]/x', 400, 'endpoint_not_allowed'],
      ['https://[fe80::1]/x', 400, 'endpoint_not_allowed'],
      ['https://[::ffff:192.168.0.1]/x', 400, 'endpoint_not_allowed'],
      ['https://2130706433/x', 400, 'endpoint_not_allowed'],
      ['https://push.localhost/x', 400, 'endpoint_not_allowed'],
    ];
    for (const [endpoint, status, error] of cases) {
      const answer = await call(gateway.http, 'POST', '/push/subscriptions', { user: 'u1', body: browserSubscription(endpoint) });
      expect([endpoint, answer.status, answer.body?.error]).toEqual([endpoint, status, error]);
    }
    // A name is resolved: localhost resolves to loopback.
    const resolved = await call(gateway.http, 'POST', '/push/subscriptions', { user: 'u1', body: browserSubscription('https://localhost/x') });
    expect(resolved).toMatchObject({ status: 400, body: { error: 'endpoint_not_allowed' } });
    expect(resolved.body!.message).toContain('resolves to');
    // A public address is a push service as far as the gateway can tell (no DNS needed for a literal).
    expect((await call(gateway.http, 'POST', '/push/subscriptions', { user: 'u1', body: browserSubscription('https://1.1.1.1/push/abc') })).status).toBe(201);
  });
});

/** Calls PUSH_OUT.pushToUsers in a harness process (test/support/push-harness.js), as the alerts code does. */
function pushVia(gw: GatewayProcess, users: string[], payload: PushPayload): Promise<void> {
  const rid = randomUUID();
  return new Promise((resolve) => {
    const listener = (message: { op?: string; rid?: string }) => {
      if (message.rid !== rid) return;
      gw.child.off('message', listener);
      resolve();
    };
    gw.child.on('message', listener);
    gw.child.send({ op: 'push', rid, users, payload });
  });
}

const publicUrl = (gw: GatewayProcess) => (path: string) => `http://127.0.0.1:${gw.port}${path}`;
const pushMetric = async (gw: GatewayProcess, result: string) => metricValue(await (await fetch(`http://127.0.0.1:${gw.internalPort}/metrics`)).text(), 'ws_push_sent_total', { result }) ?? NaN;

describe('push delivery (a gateway process trusting the test push service through NODE_EXTRA_CA_CERTS)', () => {
  let service: PushService;
  let gw: GatewayProcess;

  beforeAll(async () => {
    service = await PushService.start(VAPID.publicKey);
    gw = await spawnGateway({ JWT_SECRET: TEST_SECRET, LOG_LEVEL: 'info', NODE_EXTRA_CA_CERTS: service.caFile, ...VAPID_ENV }, { entry: HARNESS, ipc: true });
  });

  afterAll(async () => {
    gw.child.kill('SIGTERM');
    await gw.exited;
    await service.stop();
  });

  beforeEach(() => {
    service.answer = () => 201;
  });

  async function subscribe(user: string, subscription = service.subscribe()): Promise<BrowserSubscription> {
    const answer = await call(publicUrl(gw), 'POST', '/push/subscriptions', { user, body: subscription });
    expect([answer.status, answer.body]).toEqual([answer.status === 200 ? 200 : 201, expect.objectContaining({ subscribed: true })]);
    return subscription;
  }

  /** Waits until `result` reached `value` (pushes are counted when their answer is in). */
  const settled = (result: string, value: number, ms = 10_000) => eventually(async () => (await pushMetric(gw, result)) === value, ms, `ws_push_sent_total{result="${result}"} = ${value}`);

  it('pushes to every subscription of the user, encrypted (RFC 8291) and signed (RFC 8292) as a push service checks them', async () => {
    const phone = await subscribe('ana');
    const laptop = await subscribe('ana');
    const sentBefore = await pushMetric(gw, 'sent');
    const before = Math.floor(Date.now() / 1000);
    const payload: PushPayload = { type: 'alert', id: '1732700000000-0', data: { level: 'critical', text: 'Ward 3: oxygen supply alarm ☢' } };
    await pushVia(gw, ['ana', 'nobody-subscribed'], payload);
    await service.until(() => service.for(phone).length === 1 && service.for(laptop).length === 1);
    expect(service.invalid).toEqual([]);
    for (const push of [...service.for(phone), ...service.for(laptop)]) {
      expect(push.payload).toEqual(payload);
      expect(push.urgency).toBe('high');
      expect(push.ttl).toBeGreaterThan(86_000);
      expect(push.ttl).toBeLessThanOrEqual(86_400);
      expect(push.claims.aud).toBe(service.origin);
      expect(push.claims.sub).toBe('mailto:ops@example.com');
      expect(push.claims.exp).toBeGreaterThan(before + 3600);
      expect(push.claims.exp).toBeLessThanOrEqual(before + 86_400 + 5);
    }
    await settled('sent', sentBefore + 2);
  });

  it('trims an alert too large for a push message to {type, id}; one that fits is sent whole', async () => {
    const sub = await subscribe('bo');
    const fits = { type: 'alert' as const, id: 'fits', data: { text: 'x'.repeat(3900) } };
    const large = { type: 'alert' as const, id: 'large', data: { text: 'x'.repeat(5000) } };
    await pushVia(gw, ['bo'], fits);
    await pushVia(gw, ['bo'], large);
    await service.until(() => service.for(sub).length === 2);
    expect(service.invalid).toEqual([]);
    const byId = Object.fromEntries(service.for(sub).map((push) => [push.payload.id, push]));
    expect(byId.fits.payload).toEqual(fits);
    expect(byId.large.payload).toEqual({ type: 'alert', id: 'large' });
  });

  it('removes a subscription its push service answers 404 or 410 for, and keeps the others', async () => {
    const [gone404, gone410, alive] = [service.subscribe(), service.subscribe(), service.subscribe()];
    for (const sub of [gone404, gone410, alive]) await subscribe('cy', sub);
    const removedBefore = await pushMetric(gw, 'removed');
    service.answer = (push) => (push.subscription === PushService.idOf(gone404) ? 404 : push.subscription === PushService.idOf(gone410) ? 410 : 201);
    await pushVia(gw, ['cy'], { type: 'alert', id: 'first' });
    await service.until(() => [gone404, gone410, alive].every((sub) => service.for(sub).length === 1));
    await settled('removed', removedBefore + 2);
    service.answer = () => 201;
    await pushVia(gw, ['cy'], { type: 'alert', id: 'second' });
    await service.until(() => service.for(alive).length === 2);
    // The alert went only to the subscription still registered...
    expect(service.for(gone404).map((p) => p.payload.id)).toEqual(['first']);
    expect(service.for(gone410).map((p) => p.payload.id)).toEqual(['first']);
    // ...and the two are gone from storage: registering them again creates them.
    for (const sub of [gone404, gone410]) expect((await call(publicUrl(gw), 'POST', '/push/subscriptions', { user: 'cy', body: sub })).status).toBe(201);
    expect((await call(publicUrl(gw), 'POST', '/push/subscriptions', { user: 'cy', body: alive })).status).toBe(200);
  });

  it('retries a 429 after its Retry-After and a 503 with backoff, and sends the same message', async () => {
    const limited = await subscribe('di');
    const flaky = await subscribe('di');
    const retriedBefore = await pushMetric(gw, 'retried');
    const answers = new Map<string, PushAnswerList>([
      [PushService.idOf(limited), [{ status: 429, retryAfter: '2' }]],
      [PushService.idOf(flaky), [503, 503]],
    ]);
    service.answer = (push) => answers.get(push.subscription)?.shift() ?? 201;
    await pushVia(gw, ['di'], { type: 'alert', id: 'retry-me', data: { n: 1 } });
    await service.until(() => service.for(limited).length === 2 && service.for(flaky).length === 3, 15_000);
    expect(service.invalid).toEqual([]);
    const [first, second] = service.for(limited);
    expect([first.answered, second.answered]).toEqual([429, 201]);
    expect(second.at - first.at).toBeGreaterThanOrEqual(2000);
    expect(second.payload).toEqual({ type: 'alert', id: 'retry-me', data: { n: 1 } });
    const [a, b, c] = service.for(flaky);
    expect([a.answered, b.answered, c.answered]).toEqual([503, 503, 201]);
    // Backoff: 1 s, then 2 s.
    expect(b.at - a.at).toBeGreaterThanOrEqual(900);
    expect(c.at - b.at).toBeGreaterThanOrEqual(1900);
    await settled('retried', retriedBefore + 3);
  }, 30_000);

  it('sends to a moved endpoint once, to its new user only; at most 10 subscriptions per user are pushed to', async () => {
    const shared = await subscribe('ed');
    await subscribe('fay', shared);
    const many: BrowserSubscription[] = [];
    for (let i = 0; i < 12; i++) many.push(await subscribe('gus'));
    const sentBefore = await pushMetric(gw, 'sent');
    await pushVia(gw, ['ed', 'fay', 'gus'], { type: 'alert', id: 'moved' });
    await service.until(() => service.for(shared).length === 1 && many.slice(2).every((sub) => service.for(sub).length === 1));
    await settled('sent', sentBefore + 11);
    expect(service.for(shared)).toHaveLength(1);
    expect(many.slice(0, 2).map((sub) => service.hits.get(PushService.idOf(sub)))).toEqual([undefined, undefined]);
  });

  it('a push service that hangs does not delay a WebSocket delivery, and times out after 10 s (retried)', async () => {
    const users = Array.from({ length: 20 }, (_, i) => `hang-${i}`);
    for (const user of users) await subscribe(user);
    const retriedBefore = await pushMetric(gw, 'retried');
    const watcher = await connect(`ws://127.0.0.1:${gw.port}/api/alerts/subscribe`, { headers: bearer('watcher') });
    await watcher.ofType('welcome');
    service.answer = () => 'hang';
    const hungAt = Date.now();
    await pushVia(gw, users, { type: 'alert', id: 'hang' });
    // Every slot (16) is held by a push service that never answers.
    await service.until(() => service.hangingCount === 16);
    const start = Date.now();
    const published = await fetch(`http://127.0.0.1:${gw.internalPort}/api/alerts`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token({ sub: 'svc', role: 'service' })}`, 'content-type': 'application/json' },
      body: JSON.stringify({ data: { text: 'while push hangs' } }),
    });
    expect(published.status).toBe(202);
    const alert = await watcher.ofType('alert', 2000);
    expect(alert.data).toEqual({ text: 'while push hangs' });
    const latency = Date.now() - start;
    expect(latency).toBeLessThan(500);
    expect(service.hangingCount).toBe(16);
    await watcher.close();
    // Each hanging request is cut at 10 s and retried.
    service.answer = () => 201;
    await settled('retried', retriedBefore + 16, 15_000);
    expect(Date.now() - hungAt).toBeGreaterThanOrEqual(10_000);
  }, 40_000);
});

type PushAnswerList = (number | { status: number; retryAfter: string })[];

describe('push subscriptions in Redis, across two replicas', () => {
  let redis: RedisProcess;
  let service: PushService;
  let a: Replica;
  let b: Replica;

  beforeAll(async () => {
    redis = await RedisProcess.start();
    service = await PushService.start(VAPID.publicKey);
    const env = { NODE_EXTRA_CA_CERTS: service.caFile, LOG_LEVEL: 'info', ...VAPID_ENV };
    [a, b] = await Promise.all([Replica.start('push-a', redis.url, env, { entry: HARNESS, ipc: true }), Replica.start('push-b', redis.url, env, { entry: HARNESS, ipc: true })]);
    // Listening comes before the Redis links are up (until then /push/subscriptions answers 503 + Retry-After).
    await eventually(async () => (await a.readyStatus()) === 200 && (await b.readyStatus()) === 200, 10_000, 'both replicas ready');
  });

  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await service?.stop();
    await redis?.stop();
  });

  it('a subscription made on one replica is pushed to, recognised, removed and dropped on 410 by the other', async () => {
    const sub = service.subscribe();
    expect((await call(a.http.bind(a), 'POST', '/push/subscriptions', { user: 'hal', body: sub })).status).toBe(201);
    // The endpoint is registered cluster-wide.
    expect((await call(b.http.bind(b), 'POST', '/push/subscriptions', { user: 'hal', body: sub })).status).toBe(200);
    expect(await redis.command('HLEN {rt}:push:subs')).toBe(':1\r\n');
    await pushVia(b.process, ['hal'], { type: 'alert', id: 'from-b' });
    await service.until(() => service.for(sub).length === 1);
    expect(service.for(sub)[0].payload).toEqual({ type: 'alert', id: 'from-b' });
    expect(service.invalid).toEqual([]);

    expect((await call(b.http.bind(b), 'DELETE', '/push/subscriptions', { user: 'hal', body: { endpoint: sub.endpoint } })).status).toBe(204);
    expect(await redis.command('HLEN {rt}:push:subs')).toBe(':0\r\n');
    expect((await call(a.http.bind(a), 'POST', '/push/subscriptions', { user: 'hal', body: sub })).status).toBe(201);

    service.answer = () => 410;
    await pushVia(a.process, ['hal'], { type: 'alert', id: 'gone' });
    await service.until(() => service.for(sub).length === 2);
    await eventually(async () => (await a.metric('ws_push_sent_total', { result: 'removed' })) === 1, 5000, 'removed on A');
    await eventually(async () => (await redis.command('HLEN {rt}:push:subs')) === ':0\r\n', 5000, 'removed from Redis');
    expect((await call(b.http.bind(b), 'POST', '/push/subscriptions', { user: 'hal', body: sub })).status).toBe(201);
  });

  it('in production, never sends to a private address, even one a subscription made elsewhere names or resolves to: removed', async () => {
    // A replica outside production accepts loopback endpoints; the production replica sharing its Redis must not
    // reach them (as with a public name that resolves to an internal address by the time a push is sent).
    const prod = await Replica.start('push-prod', redis.url, { NODE_EXTRA_CA_CERTS: service.caFile, LOG_LEVEL: 'info', NODE_ENV: 'production', ...VAPID_ENV }, { entry: HARNESS, ipc: true });
    try {
      await eventually(async () => (await prod.readyStatus()) === 200, 10_000, 'the production replica ready');
      const literal = service.subscribe();
      const named = { ...service.subscribe() };
      named.endpoint = named.endpoint.replace('https://127.0.0.1:', 'https://localhost:');
      for (const sub of [literal, named]) expect((await call(a.http.bind(a), 'POST', '/push/subscriptions', { user: 'jo', body: sub })).status).toBe(201);
      // The production replica refuses them at its own door.
      expect((await call(prod.http.bind(prod), 'POST', '/push/subscriptions', { user: 'jo', body: literal })).body?.error).toBe('endpoint_not_allowed');
      const hitsBefore = [...service.hits.values()].reduce((n, v) => n + v, 0);
      await pushVia(prod.process, ['jo'], { type: 'alert', id: 'internal' });
      await eventually(async () => (await prod.metric('ws_push_sent_total', { result: 'removed' })) === 2, 5000, 'both removed by the production replica');
      expect([...service.hits.values()].reduce((n, v) => n + v, 0)).toBe(hitsBefore);
      expect(await prod.metric('ws_push_sent_total', { result: 'sent' })).toBe(0);
      await eventually(async () => (await redis.command('ZCARD {rt}:push:user:jo')) === ':0\r\n', 5000, 'removed from Redis');
    } finally {
      await prod.stop();
    }
  });

  it('keeps the cap cluster-wide and answers 503 while Redis is down', async () => {
    for (let i = 0; i < 12; i++) {
      const replica = i % 2 ? a : b;
      const answer = await call(replica.http.bind(replica), 'POST', '/push/subscriptions', { user: 'ivy', body: browserSubscription(`https://push.example.net/ivy/${i}`) });
      expect([answer.status, answer.body!.subscriptions]).toEqual([201, Math.min(i + 1, 10)]);
    }
    expect(await redis.command('ZCARD {rt}:push:user:ivy')).toBe(':10\r\n');
    await redis.kill();
    try {
      const down = await call(a.http.bind(a), 'POST', '/push/subscriptions', { user: 'ivy', body: browserSubscription() });
      expect(down).toMatchObject({ status: 503, body: { error: 'unavailable' } });
      expect(down.headers.get('retry-after')).toBe('2');
    } finally {
      await redis.restart();
    }
  });
});
