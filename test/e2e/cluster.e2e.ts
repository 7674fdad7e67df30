import Redis from 'ioredis';
import { connect, refusal, type TestClient } from '../support/clients';
import { Replica } from '../support/cluster';
import { eventually } from '../support/gateway';
import { promtool } from '../support/promtool';
import { RedisProcess } from '../support/redis';
import { TcpProxy } from '../support/tcp-proxy';
import { token } from '../support/tokens';

/**
 * Cluster mode as SREs run it: three real gateway processes on one throwaway redis-server (replica C reaches
 * it through a TCP proxy so its link alone can be cut), real WebSocket clients, and other services simulated
 * with a raw Redis client.
 */
jest.setTimeout(60_000);

const TTL_MS = 1500;
const ENV = { PRESENCE_TTL_MS: String(TTL_MS), MAX_CONNECTIONS_PER_USER: '2' };

interface AlertFrame {
  type: 'alert';
  id: string;
  data: Record<string, unknown>;
  ts: number;
}

const isAlert = (frame: { type?: string }) => frame.type === 'alert';

describe('cluster mode: three replicas, one redis-server', () => {
  let redis: RedisProcess;
  let proxy: TcpProxy;
  let a: Replica;
  let b: Replica;
  let c: Replica;
  let raw: Redis;
  const clients: TestClient[] = [];

  async function subscriber(replica: Replica, sub: string, options: { role?: string; since?: string } = {}): Promise<TestClient> {
    const since = options.since ? `&since=${options.since}` : '';
    const client = await connect(replica.ws(`/api/alerts/subscribe?token=${token({ sub, role: options.role ?? 'authority' })}${since}`));
    clients.push(client);
    return client;
  }

  /** The data of the next `n` alerts a client receives, in arrival order. */
  async function alerts(client: TestClient, n: number, timeoutMs = 10_000): Promise<AlertFrame[]> {
    const got: AlertFrame[] = [];
    while (got.length < n) got.push(await client.take<AlertFrame>(isAlert, timeoutMs));
    return got;
  }

  /** Publishes a marker to everyone and returns the alerts each client got before it (and consumes the marker). */
  async function untilMarker(list: TestClient[], via: Replica = a): Promise<Record<string, unknown>[][]> {
    const marker = `m-${Math.random()}`;
    expect((await via.publish({ data: { marker } })).status).toBe(202);
    return Promise.all(
      list.map(async (client) => {
        const seen: Record<string, unknown>[] = [];
        for (;;) {
          const frame = await client.take<AlertFrame>(isAlert);
          if (frame.data.marker === marker) return seen;
          seen.push(frame.data);
        }
      }),
    );
  }

  beforeAll(async () => {
    redis = await RedisProcess.start();
    proxy = await TcpProxy.start(redis.port);
    [a, b, c] = await Promise.all([
      Replica.start('node-a', redis.url, ENV),
      Replica.start('node-b', redis.url, ENV),
      Replica.start('node-c', proxy.url, ENV),
    ]);
    raw = new Redis(redis.url);
    for (const replica of [a, b, c]) await eventually(async () => (await replica.readyStatus()) === 200, 10_000, `${replica.name} ready`);
    // Every replica listens for live alerts that other services PUBLISH.
    await eventually(async () => ((await raw.pubsub('NUMSUB', 'rt:alerts')) as [string, number])[1] === 3, 5000, 'three subscribers');
  });

  afterAll(async () => {
    for (const client of clients) client.ws.terminate();
    await Promise.all([a, b, c].filter(Boolean).map((replica) => replica.kill()));
    raw?.disconnect();
    await proxy?.stop();
    await redis?.stop();
  });

  it('delivers an alert POSTed on one replica to the subscribers of every replica exactly once', async () => {
    const subs = [await subscriber(a, 'ua'), await subscriber(b, 'ub'), await subscriber(c, 'uc')];
    const first = await a.publish({ data: { n: 1 } });
    const second = await b.publish({ data: { n: 2 } });
    expect(first).toMatchObject({ status: 202, body: { id: expect.stringMatching(/^\d+-\d+$/) } });
    for (const client of subs) {
      const got = await alerts(client, 2);
      expect(got.map((f) => [f.id, f.data.n])).toEqual([
        [first.body.id, 1],
        [second.body.id, 2],
      ]);
    }
    // Exactly once: nothing else arrived before the next broadcast.
    expect(await untilMarker(subs)).toEqual([[], [], []]);
    // The alert id is the stream id.
    const [[streamId]] = (await raw.xrange('rt:alerts:stream', String(first.body.id), String(first.body.id))) as [string, string[]][];
    expect(streamId).toBe(first.body.id);
    for (const replica of [a, b, c]) expect(await replica.metric('ws_delivery_seconds_count')).toBeGreaterThanOrEqual(2);
    const { status, output } = promtool(['check', 'metrics'], await (await fetch(b.internal('/metrics'))).text());
    expect([status, output.trim()]).toEqual([0, '']);
    for (const client of subs) await client.close();
  });

  it('takes PUBLISH (live) and XADD (durable) from other services, with roles and users targeting', async () => {
    const onA = await subscriber(a, 'u1');
    const onB = await subscriber(b, 'u2', { role: 'admin' });
    const onC = await subscriber(c, 'u3');
    await raw.publish('rt:alerts', JSON.stringify({ data: { via: 'publish' } }));
    await raw.xadd('rt:alerts:stream', 'MAXLEN', '~', '10000', '*', 'data', JSON.stringify({ via: 'xadd' }));
    await raw.xadd('rt:alerts:stream', '*', 'data', JSON.stringify({ via: 'xadd-admins' }), 'roles', JSON.stringify(['admin']));
    await raw.publish('rt:alerts', JSON.stringify({ data: { via: 'publish-u3' }, users: ['u3'] }));
    await raw.xadd('rt:alerts:stream', '*', 'data', JSON.stringify({ data: { via: 'xadd-wrapped-u1' }, users: ['u1'] }));
    // Live and durable alerts reach a replica on two Redis connections, so a marker on each path.
    await raw.publish('rt:alerts', JSON.stringify({ data: { via: 'publish-marker' } }));
    const seen = await untilMarker([onA, onB, onC]);
    const [seenA, seenB, seenC] = await Promise.all(
      seen.map(async (got, i) => {
        const client = [onA, onB, onC][i];
        while (!got.some((d) => d.via === 'publish-marker')) got.push((await client.take<AlertFrame>(isAlert)).data);
        return got.filter((d) => d.via !== 'publish-marker');
      }),
    );
    // Live and durable alerts travel separate paths, so only their order within each path is fixed.
    const durable = (seen: Record<string, unknown>[]) => seen.map((d) => d.via).filter((v) => String(v).startsWith('xadd'));
    const live = (seen: Record<string, unknown>[]) => seen.map((d) => d.via).filter((v) => String(v).startsWith('publish'));
    expect([durable(seenA), live(seenA)]).toEqual([['xadd', 'xadd-wrapped-u1'], ['publish']]);
    expect([durable(seenB), live(seenB)]).toEqual([['xadd', 'xadd-admins'], ['publish']]);
    expect([durable(seenC), live(seenC)]).toEqual([['xadd'], ['publish', 'publish-u3']]);
    for (const client of [onA, onB, onC]) await client.close();
  });

  it('drops malformed external messages, counts them, logs them rate-limited, and harms nothing', async () => {
    const before = await Promise.all([a, b, c].map((r) => r.metric('ws_bus_invalid_total', { channel: 'alerts' })));
    const onB = await subscriber(b, 'victim');
    await raw.publish('rt:alerts', 'not json');
    await raw.publish('rt:alerts', JSON.stringify({ data: 'not an object' }));
    await raw.publish('rt:alerts', JSON.stringify({ data: {}, roles: 'admin' }));
    await raw.xadd('rt:alerts:stream', '*', 'data', '{broken');
    await raw.xadd('rt:alerts:stream', '*', 'payload', '{}');
    expect(await untilMarker([onB])).toEqual([[]]);
    for (const [i, replica] of [a, b, c].entries()) {
      await eventually(
        async () => (await replica.metric('ws_bus_invalid_total', { channel: 'alerts' }))! - (before[i] ?? 0) === 5,
        5000,
        `${replica.name} to count 5 invalid messages`,
      );
    }
    expect(a.logs({ event: 'bus_invalid' }).length).toBeLessThanOrEqual(2); // one line per channel per 5 s
    for (const replica of [a, b, c]) expect(await replica.readyStatus()).toBe(200);
    await onB.close();
  });

  it('resumes on another replica from the stream, then live, without a gap or a duplicate', async () => {
    const first = await subscriber(b, 'resumer');
    const published = await a.publish({ data: { step: 'seen' } });
    const [seen] = await alerts(first, 1);
    expect(seen.id).toBe(published.body.id);
    await first.close();
    const missed = [];
    for (let i = 0; i < 3; i++) missed.push((await a.publish({ data: { step: `missed-${i}` } })).body.id);
    const again = await subscriber(c, 'resumer', { since: seen.id });
    expect((await alerts(again, 3)).map((f) => f.id)).toEqual(missed);
    expect(await again.ofType('resumed')).toEqual({ type: 'resumed', recovered: true });
    expect(await untilMarker([again])).toEqual([[]]);
    await again.close();

    // An id older than what the stream still holds: the client is told to refetch.
    await raw.xtrim('rt:alerts:stream', 'MAXLEN', 1);
    const stale = await subscriber(a, 'resumer', { since: seen.id });
    expect(await stale.ofType('resumed')).toEqual({ type: 'resumed', recovered: false });
    await stale.close();
  });

  it('enforces MAX_CONNECTIONS_PER_USER across replicas (429) and frees the slot on close', async () => {
    const one = await subscriber(a, 'limited');
    await subscriber(b, 'limited');
    const refused = await refusal(c.ws(`/api/alerts/subscribe?token=${token({ sub: 'limited' })}`));
    expect(refused).toMatchObject({ status: 429, body: { error: 'too_many_connections' } });
    expect(refused.body.message).toContain('2 open connections');
    await one.close();
    await eventually(async () => (await raw.hget('{rt}:conns:limited', 'node-a')) === null, 5000, 'the slot to be released');
    await subscriber(c, 'limited');
  });

  it("catches up after one replica's Redis link is cut: every alert, in order, once", async () => {
    const onC = await subscriber(c, 'far');
    const onA = await subscriber(a, 'near');
    proxy.cut();
    await eventually(async () => (await c.readyStatus()) === 503, 5000, 'c to report Redis unreachable');
    expect(await c.metric('ws_redis_up')).toBe(0);
    const ids: string[] = [];
    const cutUntil = Date.now() + 2000; // the link stays down this long while A keeps publishing
    while (Date.now() < cutUntil) ids.push(String((await a.publish({ data: { i: ids.length } })).body.id));
    expect((await alerts(onA, ids.length)).map((f) => f.id)).toEqual(ids);
    proxy.restore();
    await eventually(async () => (await c.readyStatus()) === 200, 10_000, 'c to reconnect');
    expect((await alerts(onC, ids.length)).map((f) => f.id)).toEqual(ids);
    expect(await untilMarker([onC, onA])).toEqual([[], []]);
    expect(onC.ws.readyState).toBe(onC.ws.OPEN);
    expect(await c.metric('ws_redis_up')).toBe(1);
  });

  it('survives a replica being SIGKILLed: others unaffected, its presence gone after the TTL, its clients resume elsewhere', async () => {
    const victim = await subscriber(c, 'crash-1');
    const bystander = await subscriber(a, 'bystander');
    const last = (await a.publish({ data: { before: 'crash' } })).body.id as string;
    expect((await alerts(victim, 1))[0].id).toBe(last);
    await alerts(bystander, 1);
    expect(await raw.hget('{rt}:conns:crash-1', 'node-c')).toBe('1');

    await c.kill();
    expect((await victim.closed).code).toBe(1006);
    const missed = [];
    for (let i = 0; i < 3; i++) missed.push((await b.publish({ data: { during: i } })).body.id);
    expect((await alerts(bystander, 3)).map((f) => f.id)).toEqual(missed);

    await eventually(async () => (await raw.sismember('{rt}:nodes', 'node-c')) === 0, TTL_MS * 4, 'node-c to be reaped');
    expect(await raw.hget('{rt}:conns:crash-1', 'node-c')).toBeNull();
    expect(await raw.exists('{rt}:node:node-c', '{rt}:node:node-c:holds')).toBe(0);
    expect([...a.logs({ event: 'node_gone', gone: 'node-c' }), ...b.logs({ event: 'node_gone', gone: 'node-c' })]).toHaveLength(1);

    const resumed = await subscriber(b, 'crash-1', { since: last });
    expect((await alerts(resumed, 3)).map((f) => f.id)).toEqual(missed);
    expect(await resumed.ofType('resumed')).toEqual({ type: 'resumed', recovered: true });
    expect(await a.readyStatus()).toBe(200);
  });

  it('rides out a Redis restart: not ready and 503 on publish meanwhile, sockets kept, live again without a restart', async () => {
    const onA = await subscriber(a, 'steady-a');
    const onB = await subscriber(b, 'steady-b');
    await redis.kill();
    for (const replica of [a, b]) await eventually(async () => (await replica.readyStatus()) === 503, 5000, `${replica.name} not ready`);
    const started = Date.now();
    const refused = await a.publish({ data: { during: 'outage' } });
    expect(refused).toMatchObject({ status: 503, body: { error: 'redis_unavailable' } });
    expect(Date.now() - started).toBeLessThan(1000); // answered at once, not queued
    const resume = await refusal(a.ws(`/api/alerts/subscribe?token=${token({ sub: 'x' })}&since=1-0`));
    expect(resume).toMatchObject({ status: 503, body: { error: 'redis_unavailable' } });

    await redis.restart();
    for (const replica of [a, b]) await eventually(async () => (await replica.readyStatus()) === 200, 10_000, `${replica.name} ready again`);
    // Redis came back empty: the history is gone, and connected clients are told so (new epoch, refetch).
    for (const client of [onA, onB]) {
      expect(await client.ofType('welcome', 10_000)).toMatchObject({ epoch: expect.any(String) });
      expect(await client.ofType('resumed')).toEqual({ type: 'resumed', recovered: false });
    }
    expect(await untilMarker([onA, onB], b)).toEqual([[], []]);
    await raw.publish('rt:alerts', JSON.stringify({ data: { live: 'after restart' } }));
    for (const client of [onA, onB]) expect((await alerts(client, 1))[0].data).toEqual({ live: 'after restart' });
    expect([onA, onB].every((client) => client.ws.readyState === client.ws.OPEN)).toBe(true);
  });

  it('drains a replica on SIGTERM: 1012 to its clients, exit 0, and its presence removed at once', async () => {
    const onB = await subscriber(b, 'leaving');
    expect(await raw.hget('{rt}:conns:leaving', 'node-b')).toBe('1');
    expect(await b.stop()).toBe(0);
    expect(await onB.closed).toEqual({ code: 1012, reason: 'server restarting' });
    // No waiting for the TTL after a clean stop.
    expect(await raw.exists('{rt}:node:node-b', '{rt}:node:node-b:holds')).toBe(0);
    expect(await raw.sismember('{rt}:nodes', 'node-b')).toBe(0);
    expect(await raw.hget('{rt}:conns:leaving', 'node-b')).toBeNull();
    expect(await a.readyStatus()).toBe(200);
  });
});
