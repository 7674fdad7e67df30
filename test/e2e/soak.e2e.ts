import Redis from 'ioredis';
import WebSocket from 'ws';
import { RealtimeClient, type WebSocketConstructor } from '../../src/client/realtime-client';
import { Replica } from '../support/cluster';
import { eventually } from '../support/gateway';
import { RedisProcess } from '../support/redis';
import { TcpProxy } from '../support/tcp-proxy';
import { token } from '../support/tokens';

jest.setTimeout(240_000);

const WS = WebSocket as unknown as WebSocketConstructor;

function compareIds(a: string, b: string): number {
  const [am, as] = a.split('-').map(Number);
  const [bm, bs] = b.split('-').map(Number);
  return am - bm || as - bs;
}
const CLIENTS = 16;
const RESTARTS = 20;
const ENV = { DRAIN_WINDOW_MS: '300', SHUTDOWN_GRACE_MS: '1500', PRESENCE_TTL_MS: '1500', REDIS_TIMEOUT_MS: '1000' };

interface Watcher {
  client: RealtimeClient;
  /** Alert ids in arrival order. */
  received: string[];
  /** How many alerts had been acknowledged when the server said recovered:false (what came before may be gone). */
  toldLostAt: number[];
  /**
   * The newest id each recovered:false covers: what the publisher had been acknowledged by then, the client's
   * position, or the position the server named in the welcome before it (stored before the notice, even if
   * its 202 was still on the way; a client told to refetch gets those from its refetch).
   */
  coveredUpTo: string;
  /** The position the server named in its latest welcome (a mid-stream one comes with recovered:false). */
  lastWelcomeId?: string;
  /** How many alerts had been acknowledged when this client first connected. */
  startedAt: number;
  /** What happened to it, for the failure message: `<acknowledged so far>:<event>`. */
  events: string[];
}

/**
 * The delivery promise under churn: 16 SDK clients resuming through three replica slots while a service
 * publishes; 20 replica restarts (SIGTERM and SIGKILL alternating), one Redis restart that loses everything,
 * one frozen Redis link. At the end each client holds every acknowledged alert exactly once and in order,
 * except where it was told recovered:false, and every alert acknowledged since the Redis restart is in the
 * stream itself.
 */
describe('soak: resuming clients through replica restarts, a Redis restart and a frozen link', () => {
  let redis: RedisProcess;
  let proxy: TcpProxy;
  let raw: Redis;
  const slots: (Replica | undefined)[] = [undefined, undefined, undefined];
  const everyReplica: Replica[] = [];

  afterAll(async () => {
    await Promise.all(everyReplica.map((replica) => replica.kill()));
    raw?.disconnect();
    await proxy?.stop();
    await redis?.stop();
  });

  const live = () => slots.filter((replica): replica is Replica => replica !== undefined);
  const pick = () => {
    const replicas = live();
    return replicas[Math.floor(Math.random() * replicas.length)];
  };

  async function start(slot: number, generation: number): Promise<void> {
    // Slot 2 reaches Redis through the proxy, so its link alone can freeze.
    const replica = await Replica.start(`s${slot}-g${generation}`, slot === 2 ? proxy.url : redis.url, ENV);
    everyReplica.push(replica);
    await eventually(async () => (await replica.readyStatus()) === 200, 15_000, `${replica.name} ready`);
    slots[slot] = replica;
  }

  it('ends with every alert once and in order for every client, or a recovered:false that covers the gap', async () => {
    redis = await RedisProcess.start();
    proxy = await TcpProxy.start(redis.port);
    raw = new Redis(redis.url);
    await Promise.all([0, 1, 2].map((slot) => start(slot, 0)));

    // The publisher: about 100 alerts/s through any live replica; a failed POST is retried elsewhere with the
    // same Idempotency-Key, so an alert stored before its 202 was lost is not published twice.
    const published: string[] = [];
    let publishing = true;
    let restartedRedisAt = -1;
    const publisher = (async () => {
      for (let n = 0; publishing; n++) {
        const key = `soak-${n}`;
        for (;;) {
          const replica = pick();
          const res = replica
            ? await fetch(replica.internal('/api/alerts'), {
                method: 'POST',
                headers: { authorization: `Bearer ${token({ sub: 'svc', role: 'service' })}`, 'content-type': 'application/json', 'idempotency-key': key },
                body: JSON.stringify({ data: { n } }),
              }).catch(() => undefined)
            : undefined;
          if (res?.status === 202) {
            published.push(((await res.json()) as { id: string }).id);
            break;
          }
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    })();

    const watchers: Watcher[] = [];
    const timeline: string[] = [];
    for (let i = 0; i < CLIENTS; i++) {
      const watcher: Watcher = {
        client: new RealtimeClient({
          url: () => pick()?.http('/api/alerts/subscribe').replace('http:', 'ws:') ?? 'ws://127.0.0.1:1/none',
          getToken: () => token({ sub: `soak-${i}`, role: 'authority' }),
          WebSocket: WS,
          backoff: { baseMs: 100, capMs: 500 },
        }),
        received: [],
        toldLostAt: [],
        startedAt: published.length,
        events: [],
        coveredUpTo: '0-0',
      };
      watcher.client.on('alert', (alert) => void (alert.id && watcher.received.push(alert.id)));
      watcher.client.on('resumed', ({ recovered }) => {
        watcher.events.push(`${Date.now() % 100000} ${published.length}:resumed ${recovered}`);
        if (recovered) return;
        watcher.toldLostAt.push(published.length);
        for (const id of [published[published.length - 1], watcher.client.position?.id, watcher.lastWelcomeId]) {
          if (id && compareIds(id, watcher.coveredUpTo) > 0) watcher.coveredUpTo = id;
        }
      });
      watcher.client.on('welcome', (w) => void (watcher.lastWelcomeId = w.id));
      watcher.client.on('welcome', (w) => void watcher.events.push(`${Date.now() % 100000} ${published.length}:welcome ${w.epoch} ${w.id}`));
      watcher.client.on('close', ({ code }) => void watcher.events.push(`${Date.now() % 100000} ${published.length}:close ${code} (last ${watcher.received[watcher.received.length - 1]})`));
      watcher.client.on('error', (error) => {
        throw error; // a fatal refusal would end the client: fail loudly
      });
      watcher.client.connect();
      watchers.push(watcher);
    }
    await eventually(() => watchers.every((w) => w.client.connected), 10_000, 'every client connected');
    for (const watcher of watchers) watcher.startedAt = published.length;
    await eventually(() => published.length >= 50, 10_000, 'alerts flowing');

    for (let k = 0; k < RESTARTS; k++) {
      const slot = k % 3;
      const old = slots[slot]!;
      timeline.push(`${published.length}:${k % 2 === 0 ? 'stop' : 'kill'} ${old.name}`);
      slots[slot] = undefined; // the balancer stops routing to it
      if (k % 2 === 0) expect(await old.stop()).toBe(0);
      else await old.kill();
      if (k === 7) {
        // Redis restarts empty: acknowledged alerts not yet delivered are gone; clients must be told.
        await redis.kill();
        await redis.restart();
        restartedRedisAt = published.length;
      }
      if (k === 13 && slots[2]) {
        // Slot 2's link freezes: it must notice within REDIS_TIMEOUT_MS and catch up afterwards.
        const frozen = slots[2];
        proxy.freeze();
        await eventually(async () => (await frozen.readyStatus()) === 503, 5000, 'the frozen link noticed');
        await eventually(async () => (await frozen.readyStatus()) === 200, 15_000, 'the frozen replica back');
      }
      await start(slot, k + 1);
      const mark = published.length;
      await eventually(() => published.length >= mark + 10, 15_000, 'alerts after the restart');
    }

    publishing = false;
    await publisher;
    const last = published[published.length - 1];
    await eventually(() => watchers.every((w) => w.received[w.received.length - 1] === last), 30_000, 'every client caught up').catch((error: Error) => {
      const behind = watchers.map((w, i) => `${i}:${w.received.length}`).join(' ');
      throw new Error(`${error.message} (published ${published.length}; received ${behind})`);
    });
    for (const watcher of watchers) watcher.client.close();

    expect(restartedRedisAt).toBeGreaterThan(0);
    const index = new Map(published.map((id, i) => [id, i]));
    for (const [i, watcher] of watchers.entries()) {
      // Exactly once and in order: every id received is a published one, strictly later than the previous.
      const positions = watcher.received.map((id) => index.get(id));
      expect({ client: i, unknown: positions.filter((p) => p === undefined).length }).toEqual({ client: i, unknown: 0 });
      const outOfOrder = positions.flatMap((p, j) => (j > 0 && p! <= positions[j - 1]! ? [`#${positions[j - 1]} then #${p}`] : []));
      if (outOfOrder.length) {
        throw new Error(
          `client ${i} received out of order or twice: ${outOfOrder.join(', ')}; Redis restarted at #${restartedRedisAt}; ` +
            `events: ${watcher.events.join(' | ')}; replicas: ${timeline.join(' | ')}`,
        );
      }
      // Complete, except what a recovered:false this client was told covers (ids increase across the run:
      // one publisher, one Redis clock).
      const got = new Set(watcher.received);
      const missing = published.slice(watcher.startedAt).filter((id) => !got.has(id) && compareIds(id, watcher.coveredUpTo) > 0);
      if (missing.length) {
        const at = missing.map((id) => index.get(id));
        throw new Error(
          `client ${i} missed ${missing.join(', ')} (published #${at.join(', #')}); Redis restarted at #${restartedRedisAt}; ` +
            `events: ${watcher.events.join(' | ')}; replicas: ${timeline.join(' | ')}; ` +
            `broker warnings: ${everyReplica.flatMap((r) => [...r.logs({ event: 'history_lost' }), ...r.logs({ event: 'history_trimmed' })].map((l) => `${r.name} ${JSON.stringify(l)}`)).join(' | ')}`,
        );
      }
      // The Redis restart lost history: every client was told.
      expect({ client: i, told: watcher.toldLostAt.some((at) => at >= restartedRedisAt) }).toEqual({ client: i, told: true });
    }
    // Against the stream itself: every alert acknowledged since the Redis restart is stored, once, in order.
    const stream = (await raw.xrange('rt:alerts:stream', '-', '+')).map(([id]) => id);
    const since = published.slice(restartedRedisAt);
    expect(stream.filter((id) => index.has(id) && index.get(id)! >= restartedRedisAt)).toEqual(since);
  });
});
