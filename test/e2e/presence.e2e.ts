import Redis from 'ioredis';
import pino from 'pino';
import { MessageLimits } from '../../src/channels/message-limits';
import { RedisBroker } from '../../src/channels/redis/redis-broker';
import { loadConfig } from '../../src/config/config';
import { Metrics } from '../../src/metrics/metrics';
import type { Claim } from '../../src/presence/presence';
import { RedisPresence } from '../../src/presence/redis-presence';
import { BrokerUnavailableError } from '../../src/channels/broker';
import { RedisConnections } from '../../src/redis/redis-connections';
import { eventually } from '../support/gateway';
import { RedisProcess } from '../support/redis';
import { TcpProxy } from '../support/tcp-proxy';

const TTL_MS = 1000;

/** A node's presence as the app builds it (its own Redis connections and bus), against the throwaway Redis. */
async function node(redis: RedisProcess | TcpProxy, nodeId: string) {
  const { config } = loadConfig({ REDIS_URL: redis.url, NODE_ID: nodeId, PRESENCE_TTL_MS: String(TTL_MS), JWT_SECRET: 'x'.repeat(32) });
  const metrics = new Metrics();
  const log = pino({ level: 'silent' });
  const connections = new RedisConnections(config, metrics, log);
  const broker = new RedisBroker(config, connections, metrics, new MessageLimits(config.maxPublishBytes, config.maxJsonDepth), log);
  const presence = new RedisPresence(config, connections, broker, log);
  presence.onApplicationBootstrap();
  await eventually(() => connections.isReady(), 5000, `${nodeId} connected`);
  await eventually(async () => (await connections.command.exists(`{rt}:node:${nodeId}`)) === 1, 5000, `${nodeId} heartbeat`);
  return {
    presence,
    /** Gone without a goodbye: no release, no heartbeat, links dropped. */
    crash: () => {
      presence.stopHeartbeat();
      for (const c of [connections.command, connections.subscriber, connections.blocking]) c.disconnect();
    },
    stop: async () => {
      await presence.onModuleDestroy();
      broker.onModuleDestroy();
      await connections.close();
    },
  };
}

describe('RedisPresence (real redis-server, two nodes)', () => {
  let redis: RedisProcess;
  let raw: Redis;
  let x: Awaited<ReturnType<typeof node>>;
  let y: Awaited<ReturnType<typeof node>>;

  beforeAll(async () => {
    redis = await RedisProcess.start();
    raw = new Redis(redis.url);
    [x, y] = await Promise.all([node(redis, 'node-x'), node(redis, 'node-y')]);
  });
  afterAll(async () => {
    await Promise.allSettled([x.stop(), y.stop()]);
    raw.disconnect();
    await redis.stop();
  });

  it('grants a claim to one connection cluster-wide, names the holder to the next, and frees it on release', async () => {
    const [first, second] = await Promise.all([
      x.presence.claim('seat:c1', 'doctor', 'conn-1'),
      y.presence.claim('seat:c1', 'doctor', 'conn-2'),
    ]);
    const winner = first.ok ? first : second;
    const loser = first.ok ? second : first;
    expect(winner.ok).toBe(true);
    expect(loser).toEqual({ ok: false, holder: first.ok ? 'node-x|conn-1' : 'node-y|conn-2' });
    expect(await y.presence.members('seat:c1')).toEqual(new Map([['doctor', first.ok ? 'node-x|conn-1' : 'node-y|conn-2']]));
    if (winner.ok) winner.release();
    await eventually(async () => (await raw.hlen('{rt}:claims:seat:c1')) === 0, 2000, 'the release');
    expect(await y.presence.claim('seat:c1', 'doctor', 'conn-3')).toMatchObject({ ok: true });
  });

  it('counts a user across nodes up to the limit', async () => {
    const one = await x.presence.acquireUserSlot('carol', 2);
    const two = await y.presence.acquireUserSlot('carol', 2);
    expect([one.ok, two.ok]).toEqual([true, true]);
    expect(await x.presence.acquireUserSlot('carol', 2)).toEqual({ ok: false, open: 2 });
    if (one.ok) one.release();
    await eventually(async () => (await raw.hget('{rt}:conns:carol', 'node-x')) === null, 2000, 'the slot release');
    expect((await y.presence.acquireUserSlot('carol', 2)).ok).toBe(true);
  });

  it('writes back what a node holds after Redis restarts empty', async () => {
    const held = await x.presence.claim('room:lobby', 'dave', 'conn-9');
    expect(held.ok).toBe(true);
    const slot = await x.presence.acquireUserSlot('dave', 5);
    expect(slot.ok).toBe(true);
    await redis.kill();
    await expect(y.presence.claim('room:lobby', 'erin', 'conn-10')).rejects.toBeInstanceOf(BrokerUnavailableError);
    await redis.restart(); // no persistence: every key is gone
    await eventually(async () => (await raw.hget('{rt}:claims:room:lobby', 'dave').catch(() => null)) === 'node-x|conn-9', 10_000, 'the claim to be written back');
    await eventually(async () => (await raw.hget('{rt}:conns:dave', 'node-x')) === '1', 5000, 'the slot count to be written back');
    expect(await y.presence.claim('room:lobby', 'dave', 'conn-11')).toEqual({ ok: false, holder: 'node-x|conn-9' });
  });

  it("removes a crashed node's registrations after about the TTL and tells every node what vanished", async () => {
    const z = await node(redis, 'node-z');
    const gone: [string, Claim[]][] = [];
    y.presence.onNodeGone((nodeId, claims) => gone.push([nodeId, claims]));
    expect((await z.presence.claim('seat:c2', 'patient', 'conn-5')).ok).toBe(true);
    expect((await z.presence.acquireUserSlot('frank', 1)).ok).toBe(true);
    expect(await y.presence.acquireUserSlot('frank', 1)).toEqual({ ok: false, open: 1 });
    const crashedAt = Date.now();
    z.crash();
    await eventually(() => gone.length > 0, TTL_MS * 5, 'the node-gone announcement');
    const took = Date.now() - crashedAt;
    expect(took).toBeGreaterThanOrEqual(TTL_MS * 0.5);
    expect(took).toBeLessThan(TTL_MS * 3);
    expect(gone).toEqual([['node-z', [{ group: 'seat:c2', member: 'patient', owner: 'node-z|conn-5' }]]]);
    expect(await raw.sismember('{rt}:nodes', 'node-z')).toBe(0);
    expect(await y.presence.members('seat:c2')).toEqual(new Map());
    expect((await y.presence.acquireUserSlot('frank', 1)).ok).toBe(true);
  });

  it('tells a node that was cut off long enough that its claim was taken over', async () => {
    const proxy = await TcpProxy.start(redis.port);
    const p = await node(proxy, 'node-p');
    let lost = 0;
    expect((await p.presence.claim('seat:c3', 'doctor', 'conn-7', () => lost++)).ok).toBe(true);
    expect((await y.presence.claim('seat:c3', 'doctor', 'conn-8')).ok).toBe(false);
    proxy.cut();
    await eventually(async () => (await y.presence.claim('seat:c3', 'doctor', 'conn-8')).ok, TTL_MS * 5, 'the seat to free up');
    proxy.restore();
    await eventually(() => lost === 1, 10_000, 'the lost-claim callback');
    expect(await y.presence.members('seat:c3')).toEqual(new Map([['doctor', 'node-y|conn-8']]));
    await p.stop();
    await proxy.stop();
  });
});
