import Redis from 'ioredis';
import pino from 'pino';
import type { BusEnvelope } from '../../src/bus/message-bus';
import { RedisBus } from '../../src/bus/redis-bus';
import { loadConfig } from '../../src/config/config';
import { Metrics } from '../../src/metrics/metrics';
import { RedisConnections, RedisUnavailableError } from '../../src/redis/redis-connections';
import { eventually } from '../support/gateway';
import { RedisProcess } from '../support/redis';

/** A node's bus, as the app would build it, against the throwaway Redis. */
function bus(redis: RedisProcess, nodeId: string) {
  const { config } = loadConfig({ REDIS_URL: redis.url, REDIS_PREFIX: 'tst', NODE_ID: nodeId, JWT_SECRET: 'x'.repeat(32) });
  const metrics = new Metrics();
  const log = pino({ level: 'silent' });
  const connections = new RedisConnections(config, metrics, log);
  return { bus: new RedisBus(config, connections, metrics, log), connections, metrics };
}

async function metric(metrics: Metrics, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  const json = await metrics.registry.getSingleMetric(name)?.get();
  return json?.values.find((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val))?.value;
}

/** Collects what a subscription receives and lets a test await the n-th message. */
function inbox() {
  const got: BusEnvelope[] = [];
  return {
    got,
    handler: (envelope: BusEnvelope) => void got.push(envelope),
    until: (n: number) => eventually(() => got.length >= n, 5000, `${n} bus messages`),
  };
}

describe('RedisBus (real redis-server on a free port)', () => {
  let redis: RedisProcess;
  let a: ReturnType<typeof bus>;
  let b: ReturnType<typeof bus>;
  let raw: Redis;

  beforeAll(async () => {
    redis = await RedisProcess.start();
    a = bus(redis, 'node-a');
    b = bus(redis, 'node-b');
    raw = new Redis(redis.url);
    await eventually(() => a.bus.isReady() && b.bus.isReady(), 5000, 'both buses ready');
  });
  afterAll(async () => {
    raw.disconnect();
    await Promise.all([a.connections.close(), b.connections.close()]);
    await redis.stop();
  });

  it('delivers a publish once to each subscribed node, under REDIS_PREFIX, with the envelope', async () => {
    const onA = inbox();
    const onB = inbox();
    const offA = a.bus.subscribe('alerts', onA.handler);
    const offB = b.bus.subscribe('alerts', onB.handler);
    await eventually(async () => ((await raw.pubsub('NUMSUB', 'tst:alerts')) as [string, number])[1] === 2);
    const sent = await a.bus.publish('alerts', { hello: 'world' });
    await Promise.all([onA.until(1), onB.until(1)]);
    expect(onB.got).toEqual([{ id: sent.id, channel: 'alerts', origin: 'node-a', ts: sent.ts, data: { hello: 'world' } }]);
    expect(onA.got).toHaveLength(1);
    expect(await metric(a.metrics, 'ws_bus_published_total', { channel: 'alerts' })).toBe(1);
    expect(await metric(b.metrics, 'ws_bus_received_total', { channel: 'alerts' })).toBe(1);
    expect(await metric(a.metrics, 'ws_redis_up')).toBe(1);
    offA();
    offB();
  });

  it('subscribes a channel on the first local handler and leaves it after the last', async () => {
    const channels = () => raw.pubsub('CHANNELS', 'tst:*') as Promise<string[]>;
    const off1 = b.bus.subscribe('chat:lobby', () => undefined);
    const off2 = b.bus.subscribe('chat:lobby', () => undefined);
    await eventually(async () => (await channels()).includes('tst:chat:lobby'));
    off1();
    expect(await raw.pubsub('NUMSUB', 'tst:chat:lobby')).toEqual(['tst:chat:lobby', 1]);
    off2();
    await eventually(async () => !(await channels()).includes('tst:chat:lobby'), 5000, 'the unsubscribe');
  });

  it('takes messages other services PUBLISH directly, and drops malformed ones without harm', async () => {
    const onB = inbox();
    const off = b.bus.subscribe('alerts', onB.handler);
    await eventually(async () => ((await raw.pubsub('NUMSUB', 'tst:alerts')) as [string, number])[1] === 1);
    await raw.publish('tst:alerts', 'not json at all');
    await raw.publish('tst:alerts', '[1,2,3]');
    await raw.publish('tst:alerts', '{"v":1,"id":5}');
    await raw.publish('tst:alerts', '{"data":{"level":"red"},"roles":["admin"]}');
    await onB.until(1);
    expect(onB.got[0]).toMatchObject({ origin: 'external', channel: 'alerts', data: { data: { level: 'red' }, roles: ['admin'] } });
    expect(await metric(b.metrics, 'ws_bus_invalid_total', { channel: 'alerts' })).toBe(3);
    off();
  });

  it('fails publishes at once while Redis is down, reports it, and recovers without a restart', async () => {
    const onB = inbox();
    const off = b.bus.subscribe('alerts', onB.handler);
    await redis.kill();
    await eventually(() => !a.bus.isReady() && !b.bus.isReady(), 5000, 'the buses to notice');
    await expect(a.bus.publish('alerts', { during: 'outage' })).rejects.toBeInstanceOf(RedisUnavailableError);
    expect(await metric(a.metrics, 'ws_redis_up')).toBe(0);
    await redis.restart();
    await eventually(() => a.bus.isReady() && b.bus.isReady(), 10_000, 'reconnect');
    await eventually(async () => ((await raw.pubsub('NUMSUB', 'tst:alerts')) as [string, number])[1] === 1, 5000, 'resubscribe');
    await a.bus.publish('alerts', { after: 'outage' });
    await onB.until(1);
    expect(onB.got.map((e) => e.data)).toEqual([{ after: 'outage' }]);
    expect(await metric(a.metrics, 'ws_redis_up')).toBe(1);
    off();
  });
});
