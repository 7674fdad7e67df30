import Redis from 'ioredis';
import { once } from 'node:events';
import pino from 'pino';
import { BrokerUnavailableError } from '../../src/channels/broker';
import { MessageLimits } from '../../src/channels/message-limits';
import type { Publication } from '../../src/channels/publication';
import { RedisBroker } from '../../src/channels/redis/redis-broker';
import { loadConfig } from '../../src/config/config';
import { Metrics } from '../../src/metrics/metrics';
import { RedisConnections } from '../../src/redis/redis-connections';
import { eventually } from '../support/gateway';
import { RedisProcess } from '../support/redis';
import { TcpProxy } from '../support/tcp-proxy';

/** A node's broker, as the app builds it, against the throwaway Redis (directly or through a proxy). */
function node(url: string, nodeId: string, env: Record<string, string> = {}) {
  const { config } = loadConfig({ REDIS_URL: url, REDIS_PREFIX: 'tst', NODE_ID: nodeId, JWT_SECRET: 'x'.repeat(32), ...env });
  const metrics = new Metrics();
  const log = pino({ level: process.env.TEST_LOG ?? 'silent', base: { node: nodeId } });
  const connections = new RedisConnections(config, metrics, log);
  const broker = new RedisBroker(config, connections, metrics, new MessageLimits(config.maxPublishBytes, config.maxJsonDepth), log);
  broker.onApplicationBootstrap();
  return {
    broker,
    connections,
    metrics,
    close: async () => {
      broker.onModuleDestroy();
      await connections.close();
    },
  };
}

async function metric(metrics: Metrics, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  const json = await metrics.registry.getSingleMetric(name)?.get();
  return json?.values.find((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val))?.value;
}

/** Collects what a subscription receives and lets a test await the n-th message. */
function inbox() {
  const got: Publication[] = [];
  return {
    got,
    handler: (publication: Publication) => void got.push(publication),
    until: (n: number, ms = 5000) => eventually(() => got.length >= n, ms, `${n} publications (have ${got.length})`),
  };
}

const HISTORY = { history: true } as const;
const LIVE = { history: false } as const;

describe('RedisBroker (real redis-server on a free port)', () => {
  let redis: RedisProcess;
  let a: ReturnType<typeof node>;
  let b: ReturnType<typeof node>;
  let raw: Redis;
  const numsub = async (channel: string) => ((await raw.pubsub('NUMSUB', channel)) as [string, number])[1];

  beforeAll(async () => {
    redis = await RedisProcess.start();
    a = node(redis.url, 'node-a');
    b = node(redis.url, 'node-b');
    raw = new Redis(redis.url);
    await eventually(() => a.broker.isReady() && b.broker.isReady(), 5000, 'both brokers ready');
  });
  afterAll(async () => {
    raw.disconnect();
    await Promise.all([a.close(), b.close()]);
    await redis.stop();
  });

  it('delivers a live publish once to each subscribed node, under REDIS_PREFIX, without an id', async () => {
    const onA = inbox();
    const onB = inbox();
    const offA = a.broker.subscribe('signaling:c1', onA.handler, LIVE);
    const offB = b.broker.subscribe('signaling:c1', onB.handler, LIVE);
    await Promise.all([offA.ready, offB.ready]);
    const sent = await a.broker.publish('signaling:c1', { hello: 'world' }, LIVE);
    await Promise.all([onA.until(1), onB.until(1)]);
    expect(onB.got).toEqual([{ channel: 'signaling:c1', origin: 'node-a', ts: sent.ts, data: { hello: 'world' } }]);
    expect(onA.got).toHaveLength(1);
    expect(await metric(a.metrics, 'ws_bus_published_total', { channel: 'signaling' })).toBe(1);
    expect(await metric(b.metrics, 'ws_bus_received_total', { channel: 'signaling' })).toBe(1);
    expect(await metric(a.metrics, 'ws_redis_up')).toBe(1);
    offA();
    offB();
  });

  it('delivers on channels subscribed while its Redis links are still connecting', async () => {
    for (let round = 0; round < 5; round++) {
      const early = node(redis.url, `early-${round}`);
      try {
        const got = inbox();
        // As the app does at bootstrap: the subscriber link has its TCP connection, not yet its handshake.
        await once(early.connections.subscriber, 'connect');
        const off = early.broker.subscribe('chat:early', got.handler, HISTORY);
        await off.ready;
        const sent = await a.broker.publish('chat:early', { round }, HISTORY);
        await got.until(1);
        expect(got.got.map((p) => p.id)).toEqual([sent.id]);
        off();
      } finally {
        await early.close();
      }
    }
  });

  it('subscribes a channel on the first local handler and leaves it after the last', async () => {
    const channels = () => raw.pubsub('CHANNELS', 'tst:*') as Promise<string[]>;
    const off1 = b.broker.subscribe('chat:lobby', () => undefined, HISTORY);
    const off2 = b.broker.subscribe('chat:lobby', () => undefined, HISTORY);
    await off2.ready;
    expect(await channels()).toContain('tst:{chat:lobby}');
    off1();
    expect(await numsub('tst:{chat:lobby}')).toBe(1);
    off2();
    await eventually(async () => !(await channels()).includes('tst:{chat:lobby}'), 5000, 'the unsubscribe');
  });

  it('gives history publications increasing ids and an epoch, and replays them after an id', async () => {
    const onB = inbox();
    const off = b.broker.subscribe('chat:hist', onB.handler, HISTORY);
    await off.ready;
    const first = await a.broker.publish('chat:hist', { n: 1 }, HISTORY);
    const second = await a.broker.publish('chat:hist', { n: 2 }, HISTORY);
    await onB.until(2);
    expect(onB.got.map((p) => [p.id, p.data])).toEqual([
      [first.id, { n: 1 }],
      [second.id, { n: 2 }],
    ]);
    const page = await b.broker.history('chat:hist', { id: first.id!, epoch: first.epoch });
    expect(page).toMatchObject({ epoch: first.epoch, recovered: true, top: second.id });
    expect(page.publications.map((p) => p.data)).toEqual([{ n: 2 }]);
    expect(b.broker.knownPosition('chat:hist')).toEqual({ id: second.id, epoch: first.epoch });
    expect((await b.broker.history('chat:hist', { id: first.id!, epoch: 'another' })).recovered).toBe(false);
    expect((await b.broker.history('chat:hist', { id: '9999999999999-0' })).recovered).toBe(false);
    off();
  });

  it('takes messages other services PUBLISH directly, and drops malformed ones without harm', async () => {
    const onB = inbox();
    const off = b.broker.subscribe('alerts', onB.handler, { history: true, externalAppends: true });
    await off.ready;
    const before = (await metric(b.metrics, 'ws_bus_invalid_total', { channel: 'alerts' })) ?? 0;
    await raw.publish('tst:alerts', 'not json at all');
    await raw.publish('tst:alerts', '[1,2,3]');
    await raw.publish('tst:alerts', '{"v":1,"id":5}');
    await raw.publish('tst:alerts', `{"data":${'['.repeat(40)}${']'.repeat(40)}}`);
    await raw.publish('tst:alerts', `{"data":{"big":"${'x'.repeat(70_000)}"}}`);
    await raw.publish('tst:alerts', '{"data":{"level":"red"},"roles":["admin"]}');
    await onB.until(1);
    expect(onB.got[0]).toMatchObject({ origin: 'external', channel: 'alerts', data: { data: { level: 'red' }, roles: ['admin'] } });
    expect(onB.got[0].id).toBeUndefined();
    expect(await metric(b.metrics, 'ws_bus_invalid_total', { channel: 'alerts' })).toBe(before + 5);
    off();
  });

  it("reads what other services XADD to a tailed stream, merged with the gateway's own publishes in order", async () => {
    const onB = inbox();
    const off = b.broker.subscribe('alerts', onB.handler, { history: true, externalAppends: true });
    await off.ready;
    const x1 = await raw.xadd('tst:alerts:stream', '*', 'data', '{"n":1}');
    const g2 = await a.broker.publish('alerts', { data: { n: 2 } }, { history: true, externalAppends: true });
    const x3 = await raw.xadd('tst:alerts:stream', '*', 'data', '{"n":3}', 'roles', '["admin"]');
    await onB.until(3);
    expect(onB.got.map((p) => [p.id, p.data])).toEqual([
      [x1, { data: { n: 1 } }],
      [g2.id, { data: { n: 2 } }],
      [x3, { data: { n: 3 }, roles: ['admin'] }],
    ]);
    off();
  });

  it('catches up a service XADD on a pub/sub history channel when poked, and fills gaps a prev reveals', async () => {
    const onB = inbox();
    const off = b.broker.subscribe('user:bob', onB.handler, HISTORY);
    await off.ready;
    const x1 = await raw.xadd('tst:{user:bob}:stream', '*', 'data', '{"n":1}');
    await raw.publish('tst:{user:bob}', '{"v":1,"sync":true}');
    await onB.until(1);
    // No poke this time: the next publish names x2 as its prev, so b reads it first.
    const x2 = await raw.xadd('tst:{user:bob}:stream', '*', 'data', '{"n":2}');
    await raw.hset('tst:{user:bob}:meta', 'last', x2!);
    const g3 = await a.broker.publish('user:bob', { data: { n: 3 } }, HISTORY);
    await onB.until(3);
    expect(onB.got.map((p) => p.id)).toEqual([x1, x2, g3.id]);
    off();
  });

  it('fails publishes at once while Redis is down, and a history subscriber catches up after it is back', async () => {
    const onB = inbox();
    const off = b.broker.subscribe('chat:outage', onB.handler, HISTORY);
    await off.ready;
    await a.broker.publish('chat:outage', { n: 1 }, HISTORY);
    await onB.until(1);
    await redis.kill();
    await eventually(() => !a.broker.isReady() && !b.broker.isReady(), 5000, 'the brokers to notice');
    await expect(a.broker.publish('chat:outage', { during: 'outage' }, HISTORY)).rejects.toBeInstanceOf(BrokerUnavailableError);
    expect(await metric(a.metrics, 'ws_redis_up')).toBe(0);
    await redis.restart();
    await eventually(() => a.broker.isReady() && b.broker.isReady(), 10_000, 'reconnect');
    // Redis came back empty: the history was lost, so b tells its subscribers (they resume: recovered false).
    await onB.until(2);
    expect(onB.got[1]).toMatchObject({ lost: true });
    await eventually(async () => (await numsub('tst:{chat:outage}')) === 1, 5000, 'resubscribe');
    await a.broker.publish('chat:outage', { after: 'outage' }, HISTORY);
    await onB.until(3);
    expect(onB.got[2].data).toEqual({ after: 'outage' });
    expect(await metric(a.metrics, 'ws_redis_up')).toBe(1);
    off();
  });
});

describe('RedisBroker behind a link that freezes', () => {
  it('notices within REDIS_TIMEOUT_MS, reports it, reconnects and delivers what was published meanwhile, once and in order', async () => {
    const redis = await RedisProcess.start();
    const proxy = await TcpProxy.start(redis.port);
    const frozen = node(proxy.url, 'frozen', { REDIS_TIMEOUT_MS: '1000' });
    const publisher = node(redis.url, 'publisher');
    try {
      await eventually(() => frozen.broker.isReady() && publisher.broker.isReady(), 5000, 'ready');
      const got = inbox();
      const off = frozen.broker.subscribe('chat:f', got.handler, HISTORY);
      await off.ready;
      await publisher.broker.publish('chat:f', { n: 0 }, HISTORY);
      await got.until(1);
      proxy.freeze();
      const sent: string[] = [];
      for (let n = 1; n <= 20; n++) sent.push((await publisher.broker.publish('chat:f', { n }, HISTORY)).id!);
      await eventually(() => !frozen.broker.isReady(), 3000, 'the frozen link to count as down');
      expect(await metric(frozen.metrics, 'ws_redis_up')).toBe(0);
      await eventually(() => frozen.broker.isReady(), 10_000, 'a new link');
      await got.until(21);
      expect(got.got.slice(1).map((p) => p.id)).toEqual(sent);
      off();
    } finally {
      await Promise.all([frozen.close(), publisher.close()]);
      await proxy.stop();
      await redis.stop();
    }
  });
});
