import Redis from 'ioredis';
import { connect, type TestClient } from '../support/clients';
import { Replica } from '../support/cluster';
import { eventually } from '../support/gateway';
import { RedisProcess } from '../support/redis';
import { SseClient } from '../support/sse-client';
import { TcpProxy } from '../support/tcp-proxy';
import { token } from '../support/tokens';

/**
 * The delivery promise against what broke it on the first round's code (issue 13), each on real processes:
 * two gateway replicas on a throwaway redis-server, replica B reaching it through a TCP proxy that can freeze,
 * real WebSocket clients, and other services played by a raw Redis client.
 */
jest.setTimeout(60_000);

interface Frame {
  type: string;
  id?: string;
  epoch?: string;
  channel?: string;
  data?: Record<string, unknown>;
  recovered?: boolean;
  [key: string]: unknown;
}

const service = () => token({ sub: 'svc', role: 'service' });

describe('the delivery promise (cluster mode, real replicas)', () => {
  let redis: RedisProcess;
  let proxy: TcpProxy;
  let a: Replica;
  let b: Replica;
  let raw: Redis;
  const clients: TestClient[] = [];

  async function subscriber(replica: Replica, sub: string, query = ''): Promise<TestClient> {
    const client = await connect(replica.ws(`/api/alerts/subscribe?token=${token({ sub, role: 'authority' })}${query}`));
    clients.push(client);
    return client;
  }

  async function post(replica: Replica, body: string, headers: Record<string, string> = {}): Promise<{ status: number; body: Record<string, unknown> }> {
    const res = await fetch(replica.internal('/api/alerts'), {
      method: 'POST',
      headers: { authorization: `Bearer ${service()}`, 'content-type': 'application/json', ...headers },
      body,
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  }

  /** Alerts a client receives until (and without) the one whose data.marker is `marker`. */
  async function until(client: TestClient, marker: string): Promise<Frame[]> {
    const got: Frame[] = [];
    for (;;) {
      const frame = await client.take<Frame>((f) => f.type === 'alert', 10_000);
      if (frame.data?.marker === marker) return got;
      got.push(frame);
    }
  }

  async function marker(replica: Replica = a): Promise<string> {
    const value = `m-${Math.random()}`;
    expect((await replica.publish({ data: { marker: value } })).status).toBe(202);
    return value;
  }

  beforeAll(async () => {
    redis = await RedisProcess.start();
    proxy = await TcpProxy.start(redis.port);
    [a, b] = await Promise.all([Replica.start('node-a', redis.url), Replica.start('node-b', proxy.url, { REDIS_TIMEOUT_MS: '1000' })]);
    raw = new Redis(redis.url);
    for (const replica of [a, b]) await eventually(async () => (await replica.readyStatus()) === 200, 10_000, `${replica.name} ready`);
  });

  afterAll(async () => {
    for (const client of clients) client.ws.terminate();
    await Promise.all([a, b].filter(Boolean).map((replica) => replica.kill()));
    raw?.disconnect();
    await proxy?.stop();
    await redis?.stop();
  });

  it('skips a poison stream entry (1.1 MB) everywhere: no client closed, counted, and a resume across it recovers', async () => {
    const onA = await subscriber(a, 'p1');
    const onB = await subscriber(b, 'p2');
    const welcome = await onA.ofType<Frame>('welcome');
    const before = (await raw.xrevrange('rt:alerts:stream', '+', '-', 'COUNT', 1))[0]?.[0] ?? welcome.id!;
    await raw.xadd('rt:alerts:stream', '*', 'data', JSON.stringify({ blob: 'x'.repeat(1_100_000) }));
    const after = (await a.publish({ data: { after: 'poison' } })).body.id as string;
    for (const client of [onA, onB]) {
      const alert = await client.ofType<Frame>('alert', 10_000);
      expect(alert).toMatchObject({ id: after, data: { after: 'poison' } });
      expect(client.ws.readyState).toBe(client.ws.OPEN);
    }
    for (const replica of [a, b]) {
      await eventually(async () => ((await replica.metric('ws_bus_invalid_total', { channel: 'alerts' })) ?? 0) >= 1, 5000, `${replica.name} counts it`);
    }
    const resumed = await subscriber(b, 'p3', `&since=${before}&epoch=${welcome.epoch}`);
    expect(await resumed.ofType<Frame>('alert')).toMatchObject({ id: after });
    expect(await resumed.ofType('resumed')).toEqual({ type: 'resumed', recovered: true });
    expect(resumed.ws.readyState).toBe(resumed.ws.OPEN);
  });

  it('refuses at the door what cannot be delivered: too large (413), too deep (400), never 202-then-lost or 500', async () => {
    const deep = (levels: number) => `{"data":${'{"a":'.repeat(levels)}1${'}'.repeat(levels)}}`;
    expect(await post(a, deep(4110))).toMatchObject({ status: 400, body: { error: 'bad_request', message: expect.stringContaining('MAX_JSON_DEPTH') } });
    expect(await post(a, deep(10_000))).toMatchObject({ status: 400, body: { error: 'bad_request' } });
    expect(await post(a, deep(30))).toMatchObject({ status: 202 });
    const big = JSON.stringify({ data: { blob: 'x'.repeat(70_000) } });
    expect(await post(a, big)).toMatchObject({ status: 413, body: { error: 'too_large' } });
    expect(a.logs({ level: 50 })).toEqual([]); // no error (stack trace) logged for client input
  });

  it("says recovered:false when Redis restarted empty and took acknowledged alerts with it", async () => {
    const client = await subscriber(a, 'lost-1');
    const { epoch } = await client.ofType<Frame>('welcome');
    const seen = (await a.publish({ data: { n: 0 } })).body.id as string;
    expect((await client.ofType<Frame>('alert')).id).toBe(seen);
    await client.close();
    for (const n of [1, 2]) expect((await a.publish({ data: { n } })).status).toBe(202);
    await redis.kill();
    await redis.restart();
    for (const replica of [a, b]) await eventually(async () => (await replica.readyStatus()) === 200, 15_000, `${replica.name} ready again`);
    const resumed = await subscriber(a, 'lost-1', `&since=${seen}&epoch=${epoch}`);
    const welcome = await resumed.ofType<Frame>('welcome');
    expect(welcome.epoch).not.toBe(epoch);
    expect(await resumed.ofType('resumed')).toEqual({ type: 'resumed', recovered: false });
    // Live delivery continues.
    const next = (await b.publish({ data: { n: 3 } })).body.id;
    expect((await resumed.ofType<Frame>('alert', 10_000)).id).toBe(next);
  });

  it('says recovered:false for a since ahead of the stream, and holds nothing back after it', async () => {
    const client = await subscriber(b, 'ahead', '&since=9999999999999-0');
    expect((await client.ofType<Frame>('welcome')).id).not.toBe('9999999999999-0'); // the channel's real end
    expect(await client.ofType('resumed')).toEqual({ type: 'resumed', recovered: false });
    const id = (await a.publish({ data: { after: 'ahead' } })).body.id;
    expect((await client.ofType<Frame>('alert', 10_000)).id).toBe(id);
  });

  it('delivers alerts other services PUBLISH without an id, so no client resumes from a replica clock', async () => {
    const client = await subscriber(a, 'live');
    await client.ofType('welcome');
    await raw.publish('rt:alerts', JSON.stringify({ data: { live: true } }));
    const alert = await client.ofType<Frame>('alert');
    expect(alert).toEqual({ type: 'alert', data: { live: true }, ts: expect.any(Number) });
  });

  it('publishes once per Idempotency-Key, cluster-wide, and answers the retry with the first answer', async () => {
    const client = await subscriber(a, 'idem');
    await client.ofType('welcome');
    const key = `key-${Math.random()}`;
    const body = JSON.stringify({ data: { idem: true } });
    const first = await post(a, body, { 'idempotency-key': key });
    const retry = await post(b, body, { 'idempotency-key': key });
    expect(first.status).toBe(202);
    expect(retry).toEqual(first);
    const end = await marker();
    expect((await until(client, end)).map((f) => f.id)).toEqual([first.body.id]);
    expect(await post(a, body, { 'idempotency-key': 'x'.repeat(300) })).toMatchObject({ status: 400, body: { error: 'bad_request' } });
  });

  it("scopes an Idempotency-Key to its caller: another service's same key publishes its own alert", async () => {
    const key = `shared-${Math.random()}`;
    const as = (sub: string) => ({ authorization: `Bearer ${token({ sub, role: 'service' })}`, 'idempotency-key': key });
    const billing = await post(a, JSON.stringify({ data: { from: 'billing' } }), as('billing'));
    const shipping = await post(b, JSON.stringify({ data: { from: 'shipping' } }), as('shipping'));
    expect([billing.status, shipping.status]).toEqual([202, 202]);
    expect(shipping.body.id).not.toBe(billing.body.id);
  });

  it('delivers a body of exactly MAX_PUBLISH_BYTES (what the door accepts, every replica delivers)', async () => {
    const client = await subscriber(b, 'edge');
    await client.ofType('welcome');
    const skeleton = JSON.stringify({ data: { x: '' } });
    const body = JSON.stringify({ data: { x: 'é'.repeat(10) + 'a'.repeat(65_536 - Buffer.byteLength(skeleton) - 20) } });
    expect(Buffer.byteLength(body)).toBe(65_536);
    const accepted = await post(a, body);
    expect(accepted.status).toBe(202);
    // Earlier tests' alerts may still be on their way to this replica: wait for this one by its id.
    expect(await client.take<Frame>((f) => f.type === 'alert' && f.id === accepted.body.id, 10_000)).toMatchObject({ data: { x: expect.any(String) } });
  });

  it('drops malformed messages on room channels: counted, logged once without a stack trace, never delivered', async () => {
    const alice = await connect(a.ws(`/ws/chat/lobby?token=${token({ sub: 'alice', role: 'user' })}`));
    clients.push(alice);
    await alice.ofType('system');
    const before = (await a.metric('ws_bus_invalid_total', { channel: 'chat' })) ?? 0;
    for (let i = 0; i < 20; i++) await raw.publish('rt:{chat:lobby}', '<garbage>');
    await raw.publish('rt:{chat:lobby}', '{"frame":"x"}');
    await raw.publish('rt:{chat:lobby}', JSON.stringify({ data: { notice: 'valid' } }));
    expect(await alice.ofType('publication')).toMatchObject({ channel: 'chat:lobby', data: { notice: 'valid' } });
    await eventually(async () => (await a.metric('ws_bus_invalid_total', { channel: 'chat' })) === before + 21, 5000, 'all 21 counted');
    const lines = a.logs({ event: 'bus_invalid' });
    expect(lines.length).toBeLessThanOrEqual(2);
    for (const line of lines) expect(line).not.toHaveProperty('err');
    expect(alice.frames.filter((f) => f === 'x')).toEqual([]);
  });

  it('keeps chat history and resumes a member on another replica', async () => {
    const user = (sub: string) => token({ sub, role: 'user' });
    const bob = await connect(a.ws(`/ws/chat/history?token=${user('bob')}`));
    const carol = await connect(b.ws(`/ws/chat/history?token=${user('carol')}`));
    clients.push(bob, carol);
    const { epoch } = await carol.ofType<Frame>('welcome');
    await bob.take((f) => f.type === 'system' && f.user === 'carol');
    bob.send({ type: 'message', message: 'first' });
    const first = await carol.ofType<Frame>('message');
    await carol.close();
    await bob.take((f) => f.type === 'system' && f.event === 'leave' && f.user === 'carol');
    for (const message of ['second', 'third']) bob.send({ type: 'message', message });
    await bob.take((f) => f.type === 'message' && f.message === 'third');
    // Carol's membership is released just after her leave is announced: a reconnect may meet 409 for a moment.
    let back: TestClient | undefined;
    await eventually(async () => {
      back = await connect(a.ws(`/ws/chat/history?token=${user('carol')}&since=${first.id}&epoch=${epoch}`)).catch((error: { status?: number }) => {
        if (error.status !== 409) throw error;
        return undefined;
      });
      return back !== undefined;
    }, 5000, 'carol back in the room');
    clients.push(back!);
    expect(await back!.ofType<Frame>('welcome')).toMatchObject({ epoch, id: first.id });
    expect((await back!.ofType<Frame>('message')).message).toBe('second');
    expect((await back!.ofType<Frame>('message')).message).toBe('third');
    expect(await back!.ofType('resumed')).toEqual({ type: 'resumed', recovered: true });
  });

  it('notices a frozen Redis link within REDIS_TIMEOUT_MS (503, ws_redis_up 0, a warn line), then catches up once and in order', async () => {
    const far = await subscriber(b, 'frozen-far');
    await far.ofType('welcome');
    // The same on /ws: one channel of a multiplexed connection keeps the same promise.
    const multi = await connect(b.ws(`/ws?token=${token({ sub: 'frozen-ws', role: 'authority' })}`));
    clients.push(multi);
    multi.send({ type: 'subscribe', channel: 'alerts' });
    await multi.ofType('subscribed');
    // And over SSE (SPEC v3): the same channel, the same promise.
    const stream = await SseClient.open(b.http('/sse?channel=alerts'), { authorization: `Bearer ${token({ sub: 'frozen-sse', role: 'authority' })}` });
    await stream.ofType('welcome');
    proxy.freeze();
    const frozenAt = Date.now();
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) ids.push((await a.publish({ data: { i } })).body.id as string);
    await eventually(async () => (await b.readyStatus()) === 503, 5000, 'b to report the frozen link');
    expect(Date.now() - frozenAt).toBeLessThan(4000);
    await eventually(() => b.logs({ event: 'redis_silent' }).length >= 1, 5000, 'the warn line');
    // A stream asked for meanwhile is refused before it starts (its welcome would wait for Redis, saying nothing).
    expect(await SseClient.refusal(b.http('/sse?channel=alerts'), { authorization: `Bearer ${token({ sub: 'frozen-late', role: 'authority' })}` })).toMatchObject({
      status: 503,
      headers: expect.objectContaining({ 'retry-after': '2' }),
      body: { error: 'unavailable' },
    });
    await eventually(async () => (await b.readyStatus()) === 200, 15_000, 'b to reconnect');
    const end = await marker();
    expect((await until(far, end)).map((f) => f.id)).toEqual(ids);
    expect(far.ws.readyState).toBe(far.ws.OPEN);
    const onWs: string[] = [];
    for (;;) {
      const frame = await multi.take<Frame>((f) => f.type === 'publication' && f.channel === 'alerts', 10_000);
      if (frame.data?.marker === end) break;
      onWs.push(frame.id!);
    }
    expect(onWs).toEqual(ids);
    expect(multi.frames.filter((f: any) => f.type === 'resumed' || f.type === 'error')).toEqual([]);
    const onSse: string[] = [];
    for (;;) {
      const event = await stream.take((d) => d.type === 'publication', 10_000);
      if (event.data.data?.marker === end) break;
      onSse.push(event.data.id);
    }
    expect(onSse).toEqual(ids);
    expect(stream.events.filter((e) => e.data.type === 'resumed' || e.data.type === 'error')).toEqual([]);
    await stream.close();
    expect(await b.metric('ws_redis_up')).toBe(1);
  });
});
