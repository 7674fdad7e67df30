import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, refusal } from '../support/clients';
import { Replica } from '../support/cluster';
import { eventually } from '../support/gateway';
import { AlertPublisher, expectEveryAlertOnceInOrderOrTold, resumingSubscribers } from '../support/failover';
import { RedisProcess } from '../support/redis';
import { SentinelGroup } from '../support/sentinel';
import { token } from '../support/tokens';

// Redis behind Sentinel (redis+sentinel://): one master, one replica, three sentinels, all real processes on
// free ports; two gateway replicas. The gateway's cross-replica behaviours work through it, and a failover
// (the master SIGKILLed while a service publishes) is followed without a restart, readiness 503 meanwhile, and
// every resuming client ends with every acknowledged alert once and in order, or was told recovered:false.

jest.setTimeout(90_000);

const ENV = { PRESENCE_TTL_MS: '3000', REDIS_TIMEOUT_MS: '2000', MAX_CONNECTIONS_PER_USER: '2' };

describe('Redis with Sentinel', () => {
  let group: SentinelGroup;
  let a: Replica;
  let b: Replica;

  beforeAll(async () => {
    group = await SentinelGroup.start();
    [a, b] = await Promise.all([Replica.start('sentinel-a', group.url, ENV), Replica.start('sentinel-b', group.url, ENV)]);
    await eventually(async () => (await a.readyStatus()) === 200 && (await b.readyStatus()) === 200, 15_000, 'both replicas ready');
  });
  afterAll(async () => {
    await Promise.all([a?.kill(), b?.kill()]);
    await group?.stop();
  });

  it('carries alerts, resume, chat history, signaling, and cluster-wide seats and per-user limits across replicas', async () => {
    const subscriber = await connect(b.ws(`/api/alerts/subscribe?token=${token({ sub: 'watcher' })}`));
    const welcome = await subscriber.ofType('welcome');
    const sent = await a.publish({ data: { via: 'sentinel' } });
    expect(sent.status).toBe(202);
    expect(await subscriber.ofType('alert')).toMatchObject({ id: sent.body.id, data: { via: 'sentinel' } });
    await subscriber.close();
    // Resume on the other replica from the welcome's position: the alert is replayed, recovered.
    const resumed = await connect(a.ws(`/api/alerts/subscribe?token=${token({ sub: 'watcher' })}&since=${welcome.id}&epoch=${welcome.epoch}`));
    expect(await resumed.ofType('alert')).toMatchObject({ id: sent.body.id });
    expect(await resumed.ofType('resumed')).toMatchObject({ recovered: true });
    await resumed.close();

    const alice = await connect(a.ws(`/ws/chat/lobby?token=${token({ sub: 'alice' })}`));
    const bob = await connect(b.ws(`/ws/chat/lobby?token=${token({ sub: 'bob' })}`));
    const room = await bob.ofType('welcome');
    alice.send({ type: 'message', message: 'hello over sentinel' });
    const message = await bob.ofType('message');
    expect(message).toMatchObject({ user: 'alice', message: 'hello over sentinel', id: expect.any(String) });
    // Chat history through the Sentinel-managed master: a late joiner resumes and gets it.
    const carol = await connect(a.ws(`/ws/chat/lobby?token=${token({ sub: 'carol' })}&since=${room.id}&epoch=${room.epoch}`));
    expect(await carol.ofType('message')).toMatchObject({ id: message.id, message: 'hello over sentinel' });
    expect(await carol.ofType('resumed')).toMatchObject({ recovered: true });
    // The same user in the same room on the other replica: 409, cluster-wide.
    const twice = await refusal(b.ws(`/ws/chat/lobby?token=${token({ sub: 'alice' })}`));
    expect([twice.status, twice.body.error]).toEqual([409, 'duplicate_user']);
    // Signaling seats are exclusive across replicas too.
    const doctor = await connect(a.ws(`/ws/signaling/c1/doctor?token=${token({ sub: 'dr', role: 'doctor', channels: ['signaling:c1'] })}`));
    const second = await refusal(b.ws(`/ws/signaling/c1/doctor?token=${token({ sub: 'dr2', role: 'doctor', channels: ['signaling:c1'] })}`));
    expect([second.status, second.body.error]).toEqual([409, 'role_taken']);
    // Signaling relays across replicas.
    const patient = await connect(b.ws(`/ws/signaling/c1/patient?token=${token({ sub: 'pt', role: 'patient', channels: ['signaling:c1'] })}`));
    expect(await doctor.ofType('peer-joined')).toMatchObject({ role: 'patient' });
    doctor.send({ type: 'offer', payload: { sdp: 'v=0' } });
    expect(await patient.ofType('offer')).toMatchObject({ from: 'doctor', payload: { sdp: 'v=0' } });
    // MAX_CONNECTIONS_PER_USER counts the user's connections on both replicas together.
    const one = await connect(a.ws(`/api/alerts/subscribe?token=${token({ sub: 'limited' })}`));
    const two = await connect(b.ws(`/api/alerts/subscribe?token=${token({ sub: 'limited' })}`));
    const third = await refusal(a.ws(`/api/alerts/subscribe?token=${token({ sub: 'limited' })}`));
    expect([third.status, third.body.error]).toEqual([429, 'too_many_connections']);
    await Promise.all([alice.close(), bob.close(), carol.close(), doctor.close(), patient.close(), one.close(), two.close()]);
  });

  it('with REDIS_MIN_REPLICAS_ACK, answers 202 only once a replica has the alert, and 503 when none confirms in time', async () => {
    const durable = await Replica.start('sentinel-durable', group.url, { ...ENV, REDIS_MIN_REPLICAS_ACK: '1' });
    try {
      await eventually(async () => (await durable.readyStatus()) === 200, 15_000, 'ready');
      expect((await durable.publish({ data: { n: 1 } })).status).toBe(202);
      await group.replica.kill();
      const refused = await durable.publish({ data: { n: 2 } });
      expect(refused.status).toBe(503);
      expect(refused.body).toMatchObject({ error: 'redis_unavailable', message: expect.stringMatching(/confirmed by 0 of the 1 replicas REDIS_MIN_REPLICAS_ACK requires.*same Idempotency-Key/) });
      await group.replica.restart();
      await eventually(async () => (await durable.publish({ data: { n: 3 } })).status === 202, 15_000, 'a 202 once the replica has synced again');
    } finally {
      await durable.kill();
    }
  });

  it('follows a failover during publishing: 503 while it cannot write, then every acknowledged alert once and in order, or recovered:false', async () => {
    const subscribers = await resumingSubscribers('failover', [a, b], 3);
    const publisher = new AlertPublisher([a, b]);
    // Readiness, sampled through the failover: it must say 503 while the master is gone.
    const readiness: number[] = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        readiness.push(await a.readyStatus().catch(() => 0));
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })();

    await publisher.more(30, 10_000, 'alerts before the failover');
    await group.failover();
    await eventually(async () => (await a.readyStatus()) === 200 && (await b.readyStatus()) === 200, 30_000, 'both replicas ready on the new master').catch((error: Error) => {
      // Say why: each replica's Redis events since the failover.
      const events = (r: Replica) => r.process.stdout.filter((l) => /"event":"(redis_|history_)/.test(l)).slice(-12).map((l) => l.slice(0, 200));
      throw new Error(`${error.message}; master now on ${group.master.port}; a: ${events(a).join(' | ')}; b: ${events(b).join(' | ')}`);
    });
    await publisher.more(30, 20_000, 'alerts after the failover');
    await publisher.stop();
    sampling = false;
    await sampler;
    expect(readiness).toContain(503);
    await expectEveryAlertOnceInOrderOrTold(subscribers, publisher.published);
    // The replicas said what happened, at warn, not only at debug.
    expect([...a.logs({ event: 'redis_down' }), ...b.logs({ event: 'redis_down' })].length).toBeGreaterThan(0);
  });
});

describe('an acknowledged write that Redis lost (what a failover to a lagging replica does)', () => {
  // Deterministically: a Redis that comes back from an older snapshot holds the same stream and epoch, minus
  // the newest entries, which clients had already received. New entries get later ids, so only a node that
  // remembers what it delivered can see the hole.
  it('renews the epoch, so connected clients and every resume across the hole are told recovered:false', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'rg-rdb-'));
    const redis = await RedisProcess.start(() => ['--dir', dir]);
    const replica = await Replica.start('rewind', redis.url, ENV);
    try {
      await eventually(async () => (await replica.readyStatus()) === 200, 10_000, 'ready');
      const watcher = await connect(replica.ws(`/api/alerts/subscribe?token=${token({ sub: 'watcher' })}`));
      const welcome = await watcher.ofType('welcome');
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) {
        const sent = await replica.publish({ data: { i } });
        ids.push(String(sent.body.id));
        expect(await watcher.ofType('alert')).toMatchObject({ id: sent.body.id });
        if (i === 2) await redis.command('SAVE'); // the "replica" has the first three
      }
      await redis.kill();
      await redis.restart(); // loads the snapshot: entries 4 and 5 are gone, the epoch is the same
      // The connected client is told: a new welcome (new epoch), then resumed:false.
      const renewed = await watcher.ofType('welcome', 15_000);
      expect(renewed.epoch).not.toBe(welcome.epoch);
      expect(await watcher.ofType('resumed')).toEqual({ type: 'resumed', recovered: false });
      await watcher.close();
      await eventually(() => replica.logs({ event: 'history_rewound' }).length > 0, 5000, 'a history_rewound warn line');
      // A client that saw entry 2 and resumes with the old epoch would otherwise get entry 3 and recovered:true,
      // missing 4 and 5 without a word.
      const late = await connect(replica.ws(`/api/alerts/subscribe?token=${token({ sub: 'late' })}&since=${ids[1]}&epoch=${welcome.epoch}`));
      expect(await late.ofType('resumed')).toEqual({ type: 'resumed', recovered: false });
      await late.close();
    } finally {
      await replica.kill();
      await redis.stop();
    }
  });
});

describe('a REDIS_URL that points at the wrong thing', () => {
  // Never a silent embedded mode or a hang: readiness 503 and a warn line with the reason.
  let standalone: RedisProcess;
  let group: SentinelGroup;
  beforeAll(async () => {
    [standalone, group] = await Promise.all([RedisProcess.start(), SentinelGroup.start()]);
  });
  afterAll(async () => {
    await standalone?.stop();
    await group?.stop();
  });

  it.each([
    ['a cluster URL at a standalone Redis', () => `redis+cluster://127.0.0.1:${standalone.port}`],
    ['a Sentinel URL with a master name the sentinels do not know', () => group.url.replace(/\/rtmaster$/, '/nosuchmaster')],
    ['a Sentinel URL whose sentinels are all down', () => 'redis+sentinel://127.0.0.1:1,127.0.0.1:2/rtmaster'],
  ])('%s: readiness 503 and a redis_error warn line naming the reason', async (_what, url) => {
    const replica = await Replica.start('misconfigured', url(), ENV);
    try {
      await eventually(() => replica.logs({ event: 'redis_error' }).length > 0, 10_000, 'a redis_error line');
      const res = await fetch(replica.http('/readyz'));
      expect([res.status, await res.json()]).toEqual([503, { status: 'redis_unavailable' }]);
      const line = replica.logs({ event: 'redis_error' })[0];
      expect(line).toMatchObject({ level: 'warn', reason: expect.any(String) });
      expect(String(line.reason)).not.toContain('password');
      expect(replica.logs({ event: 'listening', mode: 'cluster' })).toHaveLength(1);
    } finally {
      await replica.kill();
    }
  });
});
