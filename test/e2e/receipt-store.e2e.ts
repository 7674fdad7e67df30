import pino from 'pino';
import { loadConfig } from '../../src/config/config';
import { Metrics } from '../../src/metrics/metrics';
import { RedisConnections } from '../../src/redis/redis-connections';
import { MemoryReceiptStore, type AlertRecord, type ReceiptStore } from '../../src/receipts/receipt-store';
import { RedisReceiptStore } from '../../src/receipts/redis-receipt-store';
import { eventually } from '../support/gateway';
import { RedisProcess } from '../support/redis';

/**
 * The receipt store's contract, run on both implementations: the memory one (embedded) and the Redis one on a
 * real redis-server (its Lua scripts are where cluster mode's "once" comes from).
 */

const record = (id: string, over: Partial<AlertRecord> = {}): AlertRecord => ({
  id,
  ts: Date.now(),
  ack: true,
  users: ['ann', 'bob'],
  withinS: 60,
  route: 'alerts',
  refs: {},
  data: { text: id },
  nonce: `nonce-${id}`,
  expiresAt: 0,
  ...over,
});

function contract(name: string, make: () => Promise<{ store: ReceiptStore; done: () => Promise<void> }>) {
  describe(`${name} receipt store`, () => {
    let store: ReceiptStore;
    let done: () => Promise<void>;
    beforeEach(async () => {
      ({ store, done } = await make());
    });
    afterEach(() => done());

    it('records each user\'s first delivery and first ack, and nothing for a user it was not delivered to', async () => {
      await store.create([{ record: record('a1'), keep: 100 }]);
      await store.delivered([{ alert: 'a1', users: ['ann', 'ann'], ack: true }], 1000);
      await store.delivered([{ alert: 'a1', users: ['ann', 'bob'], ack: true }], 2000);
      expect(await store.ack({ user: 'carl', frameId: 'a1' }, 2500)).toEqual({ result: 'unknown' });
      expect(await store.ack({ user: 'ann', frameId: 'a1', route: 'alerts' }, 3000)).toEqual({ result: 'recorded', alert: 'a1' });
      expect(await store.ack({ user: 'ann', frameId: 'a1' }, 4000)).toEqual({ result: 'repeated', alert: 'a1' });
      const view = (await store.read('a1'))!;
      expect(view).toMatchObject({ id: 'a1', ack: true, described: true, users: ['ann', 'bob'] });
      expect([...view.delivered].sort()).toEqual([['ann', 1000], ['bob', 2000]]);
      expect([...view.acked]).toEqual([['ann', 3000]]);
      expect(await store.read('nope')).toBeUndefined();
    });

    it('writes several descriptions and several alerts\' deliveries in one call each', async () => {
      await store.create([
        { record: record('m1', { users: ['ann'] }), keep: 100 },
        { record: record('m2', { route: 'user', users: ['bob'], refs: { bob: '7-0' } }), keep: 100 },
      ]);
      await store.delivered([{ alert: 'm1', users: ['ann'], ack: true }, { alert: 'm2', users: ['bob', 'bob'], ack: true }, { alert: 'm3', users: ['cy'], ack: false }], 1234);
      expect([...(await store.read('m1'))!.delivered]).toEqual([['ann', 1234]]);
      expect((await store.read('m2'))!).toMatchObject({ users: ['bob'], delivered: new Map([['bob', 1234]]) });
      expect(await store.ack({ user: 'bob', frameId: '7-0' }, 2000)).toEqual({ result: 'recorded', alert: 'm2' });
      expect((await store.read('m3'))!).toMatchObject({ ack: false, described: false });
    });

    it('recognises an ack that overtakes the description, and refuses acks of an alert that asked for none', async () => {
      await store.delivered([{ alert: 'early', users: ['ann'], ack: true }], 1000);
      expect(await store.ack({ user: 'ann', frameId: 'early' }, 1500)).toEqual({ result: 'recorded', alert: 'early' });
      expect((await store.read('early'))!.described).toBe(false);
      await store.create([{ record: record('early'), keep: 100 }]);
      expect((await store.read('early'))!).toMatchObject({ described: true, acked: new Map([['ann', 1500]]) });
      await store.create([{ record: record('plain', { ack: false, withinS: undefined, expiresAt: Date.now() + 60_000 }), keep: 0 }]);
      await store.delivered([{ alert: 'plain', users: ['ann'], ack: false }], 1000);
      expect(await store.ack({ user: 'ann', frameId: 'plain' }, 1500)).toEqual({ result: 'unknown' });
      expect((await store.read('plain'))!.ack).toBe(false);
    });

    it('maps a personal frame\'s id to its alert, for that user only', async () => {
      await store.create([{ record: record('p1', { route: 'user', refs: { ann: '100-0', bob: '100-0' } }), keep: 100 }]);
      await store.delivered([{ alert: 'p1', users: ['ann', 'bob'], ack: true }], 1000);
      expect(await store.ack({ user: 'ann', frameId: '100-0' }, 2000)).toEqual({ result: 'recorded', alert: 'p1' });
      // The same id on `alerts` is another alert's.
      expect(await store.ack({ user: 'bob', frameId: '100-0', route: 'alerts' }, 2000)).toEqual({ result: 'unknown' });
      expect(await store.ack({ user: 'carl', frameId: '100-0' }, 2000)).toEqual({ result: 'unknown' });
      expect(await store.ack({ user: 'bob', frameId: 'x', alert: 'p1' }, 2100)).toEqual({ result: 'recorded', alert: 'p1' });
    });

    it('writes a description once (a retried publish changes nothing) and keeps at most `keep` records', async () => {
      await store.create([{ record: record('k1'), keep: 2 }]);
      await store.create([{ record: record('k1', { users: ['zed'] }), keep: 2 }]);
      expect((await store.read('k1'))!.users).toEqual(['ann', 'bob']);
      await store.create([{ record: record('k2', { route: 'user', refs: { ann: '5-0' } }), keep: 2 }]);
      await store.delivered([{ alert: 'k2', users: ['ann'], ack: true }], 1);
      await store.create([{ record: record('k3'), keep: 2 }]);
      await store.create([{ record: record('k4'), keep: 2 }]);
      expect(await store.read('k1')).toBeUndefined();
      expect(await store.read('k2')).toBeUndefined();
      // Its ref went with it.
      expect(await store.ack({ user: 'ann', frameId: '5-0' }, 2)).toEqual({ result: 'unknown' });
      expect(await store.read('k4')).toBeDefined();
    });

    it('hands a due escalation to one claimer until its lease ends, with the users still pending, and never after it is completed', async () => {
      const now = Date.now();
      await store.create([{ record: record('e1', { ts: now - 61_000 }), keep: 100 }]);
      await store.create([{ record: record('e2', { ts: now - 61_000 }), keep: 100 }]);
      await store.create([{ record: record('e3', { ts: now + 60_000 }), keep: 100 }]);
      await store.delivered([{ alert: 'e1', users: ['ann', 'bob'], ack: true }], now);
      await store.ack({ user: 'ann', frameId: 'e1' }, now);
      await store.delivered([{ alert: 'e2', users: ['ann', 'bob'], ack: true }], now);
      await store.ack({ user: 'ann', frameId: 'e2' }, now);
      await store.ack({ user: 'bob', frameId: 'e2' }, now);
      const first = await store.claimDue(now, now + 10_000, 10);
      expect(first).toEqual([
        { kind: 'escalation', id: 'e1', answerId: 'e1', withinS: 60, pending: ['bob'], redeliver: ['bob'], push: ['bob'], notified: false, route: 'alerts', refs: {}, data: { text: 'e1' }, nonce: 'nonce-e1' },
      ]);
      // Held: nobody else gets it before the lease ends; after it, the next claimer does.
      expect(await store.claimDue(now + 1, now + 10_001, 10)).toEqual([]);
      expect((await store.claimDue(now + 10_000, now + 20_000, 10)).map((e) => e.id)).toEqual(['e1']);
      await store.complete('e1', 'escalation', now);
      expect(await store.claimDue(now + 30_000, now + 40_000, 10)).toEqual([]);
      // e2 had nobody pending: settled without an escalation; e3 is not due.
      expect(await store.claimDue(now + 50_000, now + 60_000, 10)).toEqual([]);
    });

    it('leaves the steps a dead claimer recorded out of the next claim, and keeps a renewed lease', async () => {
      const now = Date.now();
      await store.create([{ record: record('s1', { ts: now - 61_000, users: ['ann', 'bob', 'cy'] }), keep: 100 }]);
      expect((await store.claimDue(now, now + 10_000, 10)).map((e) => [e.redeliver, e.push, e.notified])).toEqual([[['ann', 'bob', 'cy'], ['ann', 'bob', 'cy'], false]]);
      await store.progress('s1', 'escalation', { redelivered: ['ann', 'bob', 'cy'] });
      await store.progress('s1', 'escalation', { notified: true });
      await store.progress('s1', 'escalation', { pushed: ['bob'] });
      await store.progress('s1', 'escalation', { pushed: ['ann'] });
      // Renewed by its claimer: not taken when the first lease would have ended.
      await store.renew([{ id: 's1', kind: 'escalation' }], now + 20_000);
      expect(await store.claimDue(now + 15_000, now + 25_000, 10)).toEqual([]);
      const again = await store.claimDue(now + 20_000, now + 30_000, 10);
      expect(again).toMatchObject([{ id: 's1', pending: ['ann', 'bob', 'cy'], redeliver: [], push: ['cy'], notified: true }]);
    });

    it('hands out the push-at-once of users an alert reached on no socket, once, with its answer id', async () => {
      const now = Date.now();
      await store.create([{ record: record('o1', { ack: false, withinS: undefined, users: ['ann', 'bob', 'cy'], answerId: '9-0', pushAt: now - 1, expiresAt: now + 60_000 }), keep: 0 }]);
      await store.create([{ record: record('o2', { ack: false, withinS: undefined, users: ['ann'], pushAt: now - 1, expiresAt: now + 60_000 }), keep: 0 }]);
      await store.delivered([{ alert: 'o1', users: ['bob'], ack: false }, { alert: 'o2', users: ['ann'], ack: false }], now);
      const [task, ...rest] = await store.claimDue(now, now + 10_000, 10);
      expect(rest).toEqual([]);
      expect(task).toMatchObject({ kind: 'push', id: 'o1', answerId: '9-0', push: ['ann', 'cy'], data: { text: 'o1' } });
      await store.progress('o1', 'push', { pushed: ['ann'] });
      expect((await store.claimDue(now + 10_000, now + 20_000, 10)).map((e) => e.push)).toEqual([['cy']]);
      await store.complete('o1', 'push', now);
      expect(await store.claimDue(now + 30_000, now + 40_000, 10)).toEqual([]);
    });
  });
}

contract('memory', async () => ({ store: new MemoryReceiptStore(), done: () => Promise.resolve() }));

describe('on Redis', () => {
  let redis: RedisProcess;
  beforeAll(async () => {
    redis = await RedisProcess.start();
  });
  afterAll(() => redis.stop());

  contract('Redis', async () => {
    const { config } = loadConfig({ JWT_SECRET: 'a-test-secret-of-at-least-thirty-two-bytes', REDIS_URL: redis.url, REDIS_PREFIX: `t${Date.now()}${Math.random().toString(36).slice(2, 6)}` });
    const links = new RedisConnections(config, new Metrics(), pino({ level: 'silent' }));
    await eventually(() => links.isCommandReady(), 5000, 'the command link');
    return { store: new RedisReceiptStore(() => links, config.redisPrefix), done: () => links.close() };
  });

  it('lets Redis expire an alert\'s keys with its history, and deliveries that were never described', async () => {
    const { config } = loadConfig({ JWT_SECRET: 'a-test-secret-of-at-least-thirty-two-bytes', REDIS_URL: redis.url, REDIS_PREFIX: 'ttl' });
    const links = new RedisConnections(config, new Metrics(), pino({ level: 'silent' }));
    try {
      await eventually(() => links.isCommandReady(), 5000, 'the command link');
      const store = new RedisReceiptStore(() => links, 'ttl');
      const expiresAt = Date.now() + 300;
      await store.create([{ record: record('t1', { route: 'user', refs: { ann: '9-0' }, expiresAt }), keep: 100 }]);
      await store.delivered([{ alert: 't1', users: ['ann'], ack: true }], Date.now());
      await store.ack({ user: 'ann', frameId: '9-0' }, Date.now());
      const ttls = await Promise.all(['{ttl}:receipt:t1', '{ttl}:receipt:t1:delivered', '{ttl}:receipt:t1:acked', '{ttl}:receipt-ref:ann\u00009-0'].map((k) => links.command.pexpiretime(k)));
      expect(ttls).toEqual([expiresAt, expiresAt, expiresAt, expiresAt]);
      await eventually(async () => (await store.read('t1')) === undefined, 3000, 'the keys expired');
      // Deliveries of an alert never described carry the provisional TTL.
      await store.delivered([{ alert: 'orphan', users: ['ann'], ack: true }], Date.now());
      expect(await links.command.pttl('{ttl}:receipt:orphan:delivered')).toBeGreaterThan(50_000);
      expect(await links.command.pttl('{ttl}:receipt:orphan')).toBeGreaterThan(50_000);
    } finally {
      await links.close();
    }
  });
});
