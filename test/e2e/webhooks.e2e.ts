import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EVENTS_OUT, type EventsOut, type EventType } from '../../src/events/events-out';
import { Replica } from '../support/cluster';
import { freePort, ROOT } from '../support/process';
import { connect, type TestClient } from '../support/clients';
import { eventually, startTestGateway, type TestGateway } from '../support/gateway';
import { RedisProcess } from '../support/redis';
import { token } from '../support/tokens';
import { promtool } from '../support/promtool';
import { WebhookReceiver } from '../support/webhook-receiver';

/**
 * Events out (SPEC v3): every event reaches a real receiver that checks each signature with the
 * `standardwebhooks` package, at least once, through 500s, 429s, a receiver that is down, and the SIGKILL of
 * the replica holding a retry.
 */

const admin = () => ({ authorization: `Bearer ${token({ sub: 'ops', role: 'admin' })}` });

async function webhookStatus(internal: (path: string) => string): Promise<{ queue: number | null; in_flight: number; failures: Record<string, unknown>[] }> {
  const res = await fetch(internal('/api/webhooks'), { headers: admin() });
  expect(res.status).toBe(200);
  return res.json() as never;
}

describe('webhooks, embedded (one in-process gateway)', () => {
  let receiver: WebhookReceiver;
  let gateway: TestGateway | undefined;
  let events: EventsOut;

  beforeEach(async () => {
    receiver = await WebhookReceiver.start();
  });

  afterEach(async () => {
    await gateway?.close();
    gateway = undefined;
    await receiver.stop();
  });

  async function start(env: Record<string, string> = {}): Promise<void> {
    gateway = await startTestGateway(receiver.env({ LOG_LEVEL: 'warn', ...env }));
    events = gateway.app.get(EVENTS_OUT);
  }

  it('delivers every event once with a valid signature, a unique webhook-id and the SPEC body', async () => {
    await start();
    expect(events.wants('channel.occupied')).toBe(true);
    // The connection.* pair is opt-in: not sent unless WEBHOOK_EVENTS names it.
    expect(events.wants('connection.opened')).toBe(false);
    const before = Date.now();
    const types: EventType[] = ['channel.occupied', 'presence.joined', 'presence.left', 'channel.vacated', 'user.disconnected', 'token.revoked', 'alert.unacknowledged'];
    for (let i = 0; i < 21; i++) events.emit(types[i % types.length], { channel: `chat:room-${i}`, n: i });
    events.emit('connection.opened', { user: 'not-wanted' });
    await receiver.until(() => receiver.received.length >= 21);
    expect(receiver.invalid).toEqual([]);
    const byId = receiver.distinct();
    expect(byId.size).toBe(21);
    for (const [id, requests] of byId) {
      expect(id).toMatch(/^msg_[0-9a-f]{32}$/);
      expect(requests).toHaveLength(1);
    }
    expect(receiver.received.map((r) => r.data.n).sort((a, b) => Number(a) - Number(b))).toEqual(Array.from({ length: 21 }, (_, i) => i));
    for (const request of receiver.received) {
      expect(request.type).toBe(types[Number(request.data.n) % types.length]);
      expect(request.data).toEqual({ channel: `chat:room-${request.data.n}`, n: request.data.n });
      expect(Date.parse(request.happenedAt)).toBeGreaterThanOrEqual(before);
      expect(Math.abs(request.timestamp - Date.now() / 1000)).toBeLessThan(5);
    }
    expect(await gateway!.metric('ws_webhook_events_total', { event: 'channel.occupied', result: 'delivered' })).toBe(3);
    await eventually(async () => (await gateway!.metric('ws_webhook_queue')) === 0, 5000, 'an empty queue');
    // Every series visible from the start (0 for each wanted event and result), in a valid exposition.
    expect(await gateway!.metric('ws_webhook_events_total', { event: 'alert.unacknowledged', result: 'failed' })).toBe(0);
    expect(await gateway!.metric('ws_webhook_events_total', { event: 'connection.opened' })).toBeUndefined();
    const { status, output } = promtool(['check', 'metrics'], await gateway!.metrics());
    expect([status, output]).toEqual([0, '']);
  });

  it('retries after 500, 429 and a receiver that is down, with the same webhook-id and each attempt\'s own timestamp; the first retry within 1 s', async () => {
    await start();
    const answers: Record<string, number[]> = { a: [500, 500], b: [429] };
    receiver.answer = (request) => answers[String(request.data.name)]?.shift() ?? 200;
    events.emit('channel.occupied', { name: 'a' });
    events.emit('channel.occupied', { name: 'b' });
    await receiver.until(() => receiver.received.filter((r) => r.answered === 200).length === 2);
    const attempts = (name: string) => receiver.received.filter((r) => r.data.name === name);
    expect(attempts('a').map((r) => r.answered)).toEqual([500, 500, 200]);
    expect(attempts('b').map((r) => r.answered)).toEqual([429, 200]);
    for (const name of ['a', 'b']) expect(new Set(attempts(name).map((r) => r.id)).size).toBe(1);
    expect(attempts('a')[0].id).not.toBe(attempts('b')[0].id);
    // Backoff: the first retry within 1 s, the second later than the first (doubling).
    const [first, second, third] = attempts('a').map((r) => r.at);
    expect(second - first).toBeLessThan(1000);
    expect(third - second).toBeGreaterThan(second - first);
    expect(await gateway!.metric('ws_webhook_events_total', { event: 'channel.occupied', result: 'retried' })).toBe(3);

    // The receiver is down: refused connections are retried until it is back.
    await receiver.stop();
    events.emit('presence.joined', { name: 'c' });
    await eventually(async () => ((await gateway!.metric('ws_webhook_events_total', { event: 'presence.joined', result: 'retried' })) ?? 0) >= 2, 5000, 'two refused attempts');
    const refused = await webhookStatus(gateway!.internal);
    expect(refused.failures[0]).toMatchObject({ type: 'presence.joined', result: 'retried', error: 'ECONNREFUSED' });
    await receiver.restart();
    await receiver.until(() => attempts('c').length === 1);
    expect(attempts('c')[0].timestamp).toBeGreaterThanOrEqual(Math.floor(attempts('a')[0].at / 1000));
    expect(await gateway!.metric('ws_webhook_events_total', { event: 'presence.joined', result: 'delivered' })).toBe(1);
    expect(receiver.invalid).toEqual([]);
  });

  it('gives up at once on a 400, counts it failed and shows it in GET /api/webhooks without the URL or secret', async () => {
    await start();
    receiver.answer = (request) => (request.data.name === 'bad' ? 400 : 200);
    events.emit('token.revoked', { name: 'bad' });
    await receiver.until(() => receiver.received.length === 1);
    await eventually(async () => (await gateway!.metric('ws_webhook_events_total', { event: 'token.revoked', result: 'failed' })) === 1, 5000, 'failed counted');
    const status = await webhookStatus(gateway!.internal);
    expect(status).toMatchObject({ enabled: true, queue: 0, in_flight: 0 });
    expect(status.failures).toEqual([{ at: expect.any(String), type: 'token.revoked', id: receiver.received[0].id, result: 'failed', status: 400 }]);
    const text = JSON.stringify(status);
    expect(text).not.toContain(receiver.secret.slice(6));
    expect(text).not.toContain(String(receiver.port));
    // Not tried again: a retry would come 0.5 s after the failure; an event emitted 1.2 s later is the next request.
    await new Promise((resolve) => setTimeout(resolve, 1200));
    events.emit('token.revoked', { name: 'next' });
    await receiver.until(() => receiver.received.length === 2);
    expect(receiver.received.map((r) => r.data.name)).toEqual(['bad', 'next']);
    expect(await gateway!.metric('ws_webhook_events_total', { event: 'token.revoked', result: 'retried' })).toBe(0);
  });

  it('drops an event the receiver has not taken within WEBHOOK_RETRY_S, and counts it', async () => {
    await start({ WEBHOOK_RETRY_S: '1' });
    receiver.answer = () => 503;
    events.emit('channel.vacated', { channel: 'chat:x' });
    await eventually(async () => (await gateway!.metric('ws_webhook_events_total', { event: 'channel.vacated', result: 'dropped' })) === 1, 5000, 'dropped counted');
    // Tried at 0, 0.5 s and at the end of the 1 s window, then dropped.
    expect(receiver.received.length).toBeGreaterThanOrEqual(2);
    expect(receiver.received.at(-1)!.at - receiver.received[0].at).toBeGreaterThanOrEqual(900);
    expect(new Set(receiver.received.map((r) => r.id)).size).toBe(1);
    expect(await gateway!.metric('ws_webhook_queue')).toBe(0);
    expect((await webhookStatus(gateway!.internal)).failures[0]).toMatchObject({ type: 'channel.vacated', result: 'dropped', status: 503 });
  });

  it('holds at most WEBHOOK_QUEUE_MAX events and drops (and counts) the rest', async () => {
    await start({ WEBHOOK_QUEUE_MAX: '3' });
    receiver.answer = () => 'hang';
    for (let i = 0; i < 10; i++) events.emit('presence.left', { n: i });
    await eventually(async () => (await gateway!.metric('ws_webhook_events_total', { event: 'presence.left', result: 'dropped' })) === 7, 5000, 'seven dropped');
    expect(await gateway!.metric('ws_webhook_queue')).toBe(3);
  });

  it('never throws from emit: data that is not JSON is dropped and counted, the next event still goes', async () => {
    await start();
    const cyclic: Record<string, unknown> = { channel: 'chat:x' };
    cyclic.self = cyclic;
    expect(() => events.emit('channel.occupied', cyclic)).not.toThrow();
    expect(() => events.emit('channel.occupied', { big: 1n })).not.toThrow();
    events.emit('channel.occupied', { channel: 'chat:y' });
    await receiver.until(() => receiver.received.length === 1);
    expect(receiver.received[0].data).toEqual({ channel: 'chat:y' });
    expect(await gateway!.metric('ws_webhook_events_total', { event: 'channel.occupied', result: 'dropped' })).toBe(2);
    // One warn line for both (at most one per 10 s of a kind).
    expect(gateway!.logs.filter((l) => l.event === 'webhook_unserialisable')).toHaveLength(1);
  });

  it('sends connection.opened and connection.closed when WEBHOOK_EVENTS names them', async () => {
    await start({ WEBHOOK_EVENTS: 'connection.opened,connection.closed', NODE_ID: 'gw-1' });
    const client = await connect(gateway!.ws('/ws'), { protocols: ['bearer', token({ sub: 'carol', role: 'user' })] });
    await receiver.until(() => receiver.received.length === 1);
    expect(receiver.received[0]).toMatchObject({ type: 'connection.opened', data: { user: 'carol', gateway: 'ws', node: 'gw-1' } });
    await client.close(4000);
    await receiver.until(() => receiver.received.length === 2);
    expect(receiver.received[1]).toMatchObject({ type: 'connection.closed', data: { user: 'carol', gateway: 'ws', node: 'gw-1', code: 4000 } });
    expect(receiver.received[1].data.duration_ms).toEqual(expect.any(Number));
  });

  it('a receiver that never answers does not delay WebSocket delivery', async () => {
    await start({ WEBHOOK_EVENTS: 'connection.opened,connection.closed' });
    receiver.answer = () => 'hang';
    const subscriber = await connect(gateway!.ws('/ws'), { protocols: ['bearer', token({ sub: 'watcher', role: 'user' })] });
    subscriber.send({ type: 'subscribe', channel: 'chat:lobby' });
    await subscriber.ofType('subscribed');
    // 200 more connections: 400 events queued behind 4 requests that never end.
    const churn: TestClient[] = [];
    for (let i = 0; i < 100; i++) churn.push(await connect(gateway!.ws('/ws'), { protocols: ['bearer', token({ sub: `u${i}`, role: 'user' })] }));
    await Promise.all(churn.map((c) => c.close()));
    await eventually(async () => (await webhookStatus(gateway!.internal)).in_flight === 4, 5000, 'four requests hanging');
    const latencies: number[] = [];
    for (let i = 0; i < 20; i++) {
      const sent = Date.now();
      const res = await fetch(gateway!.internal('/api/publish'), {
        method: 'POST',
        headers: { ...admin(), 'content-type': 'application/json' },
        body: JSON.stringify({ channel: 'chat:lobby', data: { i } }),
      });
      expect(res.status).toBeLessThan(300);
      await subscriber.take((f) => f.type === 'publication' && f.data?.i === i);
      latencies.push(Date.now() - sent);
    }
    latencies.sort((a, b) => a - b);
    // A publish round trip over loopback takes a few ms; a delivery held behind the receiver would take 10 s.
    expect(latencies[latencies.length - 1]).toBeLessThan(250);
    const status = await webhookStatus(gateway!.internal);
    expect(status.queue).toBeGreaterThanOrEqual(190);
    await subscriber.close();
  });
});

// python3 is one of the tools `npm test` checks for (scripts/test-tools.js): this never skips.
describe('the Python receiver of docs/deploy.md', () => {
  it('accepts every event the gateway signs and refuses a forged one', async () => {
    const docs = readFileSync(join(ROOT, 'docs', 'deploy.md'), 'utf8');
    const code = /Python, with the standard library[\s\S]*?```python\n([\s\S]*?)```/.exec(docs)![1];
    const file = join(mkdtempSync(join(tmpdir(), 'rg-receiver-')), 'receiver.py');
    writeFileSync(file, code);
    const secret = `whsec_${Buffer.alloc(32, 5).toString('base64')}`;
    const port = await freePort();
    const child = spawn('python3', ['-u', file], { env: { ...process.env, WEBHOOK_SECRET: secret, PORT: String(port) }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const gateway = await startTestGateway({ WEBHOOK_URL: `http://127.0.0.1:${port}/realtime/events`, WEBHOOK_SECRET: secret, LOG_LEVEL: 'warn' });
    try {
      const events = gateway.app.get<EventsOut>(EVENTS_OUT);
      events.emit('presence.joined', { channel: 'chat:ward-3', user: 'ann' });
      events.emit('channel.vacated', { channel: 'chat:ward-é' });
      // The receiver may still be starting: the gateway retries refused connections until it listens.
      await eventually(async () => ((await gateway.metric('ws_webhook_events_total', { event: 'channel.vacated', result: 'delivered' })) ?? 0) === 1, 10_000, 'accepted by the Python receiver');
      await eventually(async () => (await gateway.metric('ws_webhook_events_total', { event: 'presence.joined', result: 'delivered' })) === 1, 5000, 'both accepted');
      expect(out).toContain("presence.joined");
      expect(out).toContain("'user': 'ann'");
      const body = JSON.stringify({ type: 'token.revoked', timestamp: new Date().toISOString(), data: { by: 'mallory' } });
      const forged = await fetch(`http://127.0.0.1:${port}/realtime/events`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'webhook-id': 'msg_forged', 'webhook-timestamp': String(Math.floor(Date.now() / 1000)), 'webhook-signature': `v1,${Buffer.alloc(32).toString('base64')}` },
        body,
      });
      expect(forged.status).toBe(400);
      expect(out).not.toContain('mallory');
    } finally {
      await gateway.close();
      child.kill();
    }
  });
});

describe('webhooks, cluster (two replicas as processes on a real redis-server)', () => {
  let redis: RedisProcess;
  let receiver: WebhookReceiver;
  let replicas: Replica[] = [];

  beforeEach(async () => {
    redis = await RedisProcess.start();
    receiver = await WebhookReceiver.start();
  });

  afterEach(async () => {
    await Promise.all(replicas.map((r) => r.kill()));
    replicas = [];
    await receiver.stop();
    await redis.stop();
  });

  async function startReplicas(env: Record<string, string>): Promise<void> {
    replicas = await Promise.all(['node-a', 'node-b'].map((name) => Replica.start(name, redis.url, receiver.env({ LOG_LEVEL: 'info', ...env }))));
    for (const replica of replicas) await eventually(async () => (await replica.readyStatus()) === 200, 10_000, `${replica.name} ready`);
  }

  const opened = (replica: Replica, sub: string) => connect(replica.ws('/ws'), { protocols: ['bearer', token({ sub, role: 'user' })] });

  it('sends each event from exactly one replica', async () => {
    await startReplicas({ WEBHOOK_EVENTS: 'connection.opened' });
    const clients: TestClient[] = [];
    for (let i = 0; i < 20; i++) clients.push(await opened(replicas[i % 2], `user-${i}`));
    await receiver.until(() => receiver.received.length >= 20);
    expect(receiver.invalid).toEqual([]);
    expect(receiver.received.map((r) => r.data.user).sort()).toEqual(Array.from({ length: 20 }, (_, i) => `user-${i}`).sort());
    expect(new Set(receiver.received.map((r) => r.data.node))).toEqual(new Set(['node-a', 'node-b']));
    const delivered = await Promise.all(replicas.map((r) => r.metric('ws_webhook_events_total', { event: 'connection.opened', result: 'delivered' })));
    expect(delivered[0]! + delivered[1]!).toBe(20);
    expect(receiver.distinct().size).toBe(20);
    for (const replica of replicas) expect(await replica.metric('ws_webhook_queue')).toBe(0);
    await Promise.all(clients.map((c) => c.close()));
  });

  it('keeps events emitted while Redis is down and queues them when it is back', async () => {
    await startReplicas({ WEBHOOK_EVENTS: 'connection.closed' });
    const clients = await Promise.all([0, 1, 2].map((i) => opened(replicas[0], `ed-${i}`)));
    await redis.kill();
    await eventually(async () => (await replicas[0].readyStatus()) === 503, 10_000, 'the replica sees Redis gone');
    // Closed while Redis is down: three events that can only wait in the replica's memory.
    await Promise.all(clients.map((c) => c.close()));
    expect(receiver.received).toEqual([]);
    await redis.restart();
    await receiver.until(() => receiver.received.length >= 3, 15_000, 'the buffered events');
    expect(receiver.received.map((r) => r.data.user).sort()).toEqual(['ed-0', 'ed-1', 'ed-2']);
    expect(receiver.distinct().size).toBe(3);
    expect(receiver.invalid).toEqual([]);
  }, 40_000);

  it('lets the requests in flight finish on SIGTERM, so their events leave the queue instead of waiting out the lease', async () => {
    await startReplicas({ WEBHOOK_EVENTS: 'connection.opened' });
    receiver.answer = () => ({ status: 200, afterMs: 500 });
    const client = await opened(replicas[0], 'erin');
    await receiver.until(() => receiver.received.length >= 1);
    const holder = replicas[(await webhookStatus(replicas[0].internal.bind(replicas[0]))).in_flight === 1 ? 0 : 1];
    client.ws.terminate();
    expect(await holder.stop()).toBe(0);
    expect(receiver.received[0].answered).toBe(200);
    // Nothing left for the other replica to send again in 30 s: the event was taken and recorded before exit.
    expect(await redis.command('ZCARD {rt}:webhooks:due')).toBe(':0\r\n');
    expect(receiver.distinct().size).toBe(1);
  });

  it('loses nothing when the replica holding a retry is killed with SIGKILL: the other delivers it', async () => {
    await startReplicas({ WEBHOOK_EVENTS: 'connection.opened' });
    // The first attempt fails (a retry is scheduled), the second hangs: that replica holds it mid-retry.
    let attempt = 0;
    receiver.answer = () => (++attempt === 1 ? 500 : attempt === 2 ? 'hang' : 200);
    const client = await opened(replicas[0], 'dora');
    await receiver.until(() => receiver.received.length === 2, 10_000);
    const holding = await Promise.all(replicas.map(async (r) => (await webhookStatus(r.internal.bind(r))).in_flight));
    expect(holding.sort()).toEqual([0, 1]);
    const holder = replicas[(await webhookStatus(replicas[0].internal.bind(replicas[0]))).in_flight === 1 ? 0 : 1];
    const survivor = replicas.find((r) => r !== holder)!;
    await holder.kill();
    // The event stays in Redis under the dead replica's 30 s lease, then the survivor takes it.
    expect(await survivor.metric('ws_webhook_queue')).toBe(1);
    await receiver.until(() => receiver.received.some((r) => r.answered === 200), 45_000, 'the retry from the survivor');
    expect(new Set(receiver.received.map((r) => r.id)).size).toBe(1);
    expect(receiver.received[0].data).toMatchObject({ user: 'dora', node: 'node-a' });
    await eventually(async () => (await survivor.metric('ws_webhook_events_total', { event: 'connection.opened', result: 'delivered' })) === 1, 5000, 'delivered by the survivor');
    expect(await survivor.metric('ws_webhook_queue')).toBe(0);
    expect(receiver.invalid).toEqual([]);
    client.ws.terminate();
  }, 70_000);
});
