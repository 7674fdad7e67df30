import Redis from 'ioredis';
import { EVENTS_OUT, type EventsOut, type EventType } from '../../src/events/events-out';
import { connect, type TestClient } from '../support/clients';
import { Replica } from '../support/cluster';
import { eventually, startTestGateway, type TestGateway } from '../support/gateway';
import { RedisProcess } from '../support/redis';
import { token } from '../support/tokens';

jest.setTimeout(60_000);

const GRACE_MS = 1500;
const TTL_MS = 1000;

interface Captured {
  type: EventType;
  data: Record<string, unknown>;
  at: number;
  node: string;
}

/**
 * What the backend would be sent: every replica's EVENTS_OUT, captured in this process (the webhook delivery
 * behind it is another part's; what is emitted, and how often, is this one's).
 */
class Capture {
  readonly events: Captured[] = [];
  private waiters: (() => void)[] = [];

  /**
   * Makes the gateway's EVENTS_OUT (whatever implementation it has) want every type and record what it is given,
   * before any client connects. A module overriding the token would lose to the global EventsModule (Nest
   * resolves a global provider from the first global module that exports it).
   */
  attach(gw: TestGateway, node: string): TestGateway {
    const out = gw.app.get<EventsOut>(EVENTS_OUT);
    Object.assign(out, {
      wants: () => true,
      emit: (type: EventType, data: Record<string, unknown>) => {
        this.events.push({ type, data, at: Date.now(), node });
        for (const wake of this.waiters.splice(0)) wake();
      },
    });
    return gw;
  }

  /** Events of `type` about `channel` (and `user`), however many replicas emitted them. */
  of(type: EventType, channel: string, user?: string): Captured[] {
    return this.events.filter((e) => e.type === type && e.data.channel === channel && (user === undefined || e.data.user === user));
  }

  /** Resolves with the first such event, waiting for it (no sleep). */
  async next(type: EventType, channel: string, user?: string, timeoutMs = 10_000): Promise<Captured> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.of(type, channel, user)[0];
      if (found) return found;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${type} for ${channel} ${user ?? ''} within ${timeoutMs} ms; have ${JSON.stringify(this.events.map((e) => [e.type, e.data]))}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }
}

const user = (sub: string) => ({ protocols: ['bearer', token({ sub, role: 'user' })] });

/** The frames a chat member saw about `sub` joining or leaving. */
const aboutUser = (client: TestClient, sub: string) => client.frames.filter((f: any) => f.type === 'system' && f.user === sub);

/**
 * A user who leaves and is back before PRESENCE_GRACE_MS ends must look, to the backend and to the room, as if it
 * never left; the events are emitted exactly once deployment-wide. `marker` proves "nothing happened" without a
 * blind sleep: a user who leaves after `sub` did has a later due time, and leaves are popped in due order, so once
 * the marker's presence.left arrived, `sub`'s would have arrived before it.
 */
async function marker(capture: Capture, url: (path: string) => string, room: string, sub: string): Promise<void> {
  const m = await connect(url(`/ws/chat/${room}`), user(sub));
  await m.take((f) => f.type === 'system' && f.event === 'join' && f.user === sub);
  await m.close();
  await capture.next('presence.left', `chat:${room}`, sub, GRACE_MS * 4);
}

describe('presence grace across two replicas (real redis-server)', () => {
  let redis: RedisProcess;
  let a: TestGateway;
  let b: TestGateway;
  const capture = new Capture();
  const open: TestClient[] = [];
  const env = (node: string) => ({ REDIS_URL: redis.url, NODE_ID: node, PRESENCE_GRACE_MS: String(GRACE_MS), PRESENCE_TTL_MS: String(TTL_MS), LOG_LEVEL: 'warn' });
  const member = async (gw: TestGateway, room: string, sub: string) => {
    const client = await connect(gw.ws(`/ws/chat/${room}`), user(sub));
    open.push(client);
    return client;
  };

  beforeAll(async () => {
    redis = await RedisProcess.start();
    a = capture.attach(await startTestGateway(env('node-a')), 'node-a');
    b = capture.attach(await startTestGateway(env('node-b')), 'node-b');
    for (const gw of [a, b]) await eventually(async () => (await fetch(gw.http('/readyz'))).status === 200, 10_000, 'ready');
  });
  afterAll(async () => {
    for (const client of open) client.ws.terminate();
    await Promise.allSettled([a?.close(), b?.close()]);
    await redis?.stop();
  });

  it('a join is told once, a return within the grace on another replica is not a leave, a longer absence is, after the grace', async () => {
    const bob = await member(b, 'lobby', 'bob');
    await bob.take((f) => f.event === 'join' && f.user === 'bob');
    await capture.next('channel.occupied', 'chat:lobby');
    const alice = await member(a, 'lobby', 'alice');
    await bob.take((f) => f.event === 'join' && f.user === 'alice');
    await capture.next('presence.joined', 'chat:lobby', 'alice');

    // Gone from replica A, back through replica B well within the grace.
    await alice.close();
    // Until replica A released its claim the room is held (409 duplicate_user), as a reconnecting client finds.
    let back: TestClient | undefined;
    await eventually(async () => (back = await member(b, 'lobby', 'alice').catch(() => undefined)) !== undefined, 5000, 'alice back');
    // The returning connection still learns who is here...
    expect(await back!.take((f) => f.type === 'system')).toEqual({ type: 'system', event: 'join', user: 'alice', users: ['alice', 'bob'] });
    await marker(capture, (p) => a.ws(p), 'lobby', 'carl');
    // ...but the room saw neither a leave nor a second join, and the backend heard of one join only.
    expect(aboutUser(bob, 'alice')).toEqual([]);
    expect(capture.of('presence.joined', 'chat:lobby', 'alice')).toHaveLength(1);
    expect(capture.of('presence.left', 'chat:lobby', 'alice')).toEqual([]);
    expect(capture.of('channel.occupied', 'chat:lobby')).toHaveLength(1);

    // Gone for good: the leave is told once the grace is over, not before.
    const closedAt = Date.now();
    await back!.close();
    expect(await bob.take((f) => f.event === 'leave' && f.user === 'alice', GRACE_MS * 4)).toEqual({ type: 'system', event: 'leave', user: 'alice', users: ['bob'] });
    const left = await capture.next('presence.left', 'chat:lobby', 'alice');
    expect(left.at - closedAt).toBeGreaterThanOrEqual(GRACE_MS - 50);
    await bob.close();
    const vacated = await capture.next('channel.vacated', 'chat:lobby', undefined, GRACE_MS * 4);
    expect(vacated.data).toEqual({ channel: 'chat:lobby' });
    await marker(capture, (p) => b.ws(p), 'other', 'dora');
    expect(capture.of('presence.left', 'chat:lobby', 'alice')).toHaveLength(1);
    expect(capture.of('presence.left', 'chat:lobby', 'bob')).toHaveLength(1);
    expect(capture.of('channel.vacated', 'chat:lobby')).toHaveLength(1);
    expect(capture.of('presence.left', 'chat:lobby', 'alice')[0].data).toEqual({ channel: 'chat:lobby', user: 'alice' });
  });

  it('a user on the path endpoint and on /ws (two replicas) joins once and leaves once', async () => {
    const path = await member(a, 'twice', 'erin');
    await path.take((f) => f.event === 'join' && f.user === 'erin');
    const ws = await connect(b.ws('/ws'), user('erin'));
    open.push(ws);
    ws.send({ type: 'subscribe', channel: 'chat:twice' });
    await ws.take((f) => f.type === 'subscribed');
    await capture.next('presence.joined', 'chat:twice', 'erin');
    await path.close();
    await ws.close();
    await capture.next('channel.vacated', 'chat:twice', undefined, GRACE_MS * 4);
    await marker(capture, (p) => a.ws(p), 'other2', 'finn');
    expect(capture.of('presence.joined', 'chat:twice', 'erin')).toHaveLength(1);
    expect(capture.of('presence.left', 'chat:twice', 'erin')).toHaveLength(1);
    expect(capture.of('channel.occupied', 'chat:twice')).toHaveLength(1);
    expect(capture.of('channel.vacated', 'chat:twice')).toHaveLength(1);
  });

  it('a leave whose replica was killed (SIGKILL) during the grace, or that died with its members, is told once by a survivor', async () => {
    // The replica to kill is a real process: SIGKILL, no goodbye. Its own events are not captured; it has no
    // WEBHOOK_URL, so it sends none: whatever the backend hears comes from a survivor.
    const doomed = await Replica.start('node-doomed', redis.url, { PRESENCE_GRACE_MS: String(GRACE_MS), PRESENCE_TTL_MS: String(TTL_MS) });
    const raw = new Redis(redis.url);
    try {
      await eventually(async () => (await doomed.readyStatus()) === 200, 10_000, 'doomed ready');
      const gina = await member(b, 'ward', 'gina');
      await gina.take((f) => f.event === 'join' && f.user === 'gina');
      const frank = await connect(doomed.ws('/ws/chat/ward'), user('frank'));
      const harry = await connect(doomed.ws('/ws/chat/ward'), user('harry'));
      await gina.take((f) => f.event === 'join' && f.user === 'frank');
      await gina.take((f) => f.event === 'join' && f.user === 'harry');
      // frank leaves; its replica released it (the leave is pending in Redis) and dies before the grace ends.
      await frank.close();
      await eventually(async () => (await raw.zscore('{rt}:leaving', 'chat:ward\0frank')) !== null, 5000, 'frank pending');
      const killedAt = Date.now();
      await doomed.kill();
      harry.ws.terminate();
      await gina.take((f) => f.event === 'leave' && f.user === 'frank', GRACE_MS * 4);
      await capture.next('presence.left', 'chat:ward', 'frank');
      // harry was still connected when its replica died: reaped after about the TTL, then the grace.
      await gina.take((f) => f.event === 'leave' && f.user === 'harry', (TTL_MS + GRACE_MS) * 4);
      const harryLeft = await capture.next('presence.left', 'chat:ward', 'harry');
      // Its liveness key, refreshed every TTL/3, ran out at least 2/3 of the TTL after the kill; then the grace.
      expect(harryLeft.at - killedAt).toBeGreaterThanOrEqual(Math.floor((TTL_MS * 2) / 3) + GRACE_MS - 50);
      await gina.close();
      await capture.next('channel.vacated', 'chat:ward', undefined, GRACE_MS * 4);
      await marker(capture, (p) => a.ws(p), 'other3', 'ida');
      expect(capture.of('presence.left', 'chat:ward', 'frank')).toHaveLength(1);
      expect(capture.of('presence.left', 'chat:ward', 'harry')).toHaveLength(1);
      expect(capture.of('channel.vacated', 'chat:ward')).toHaveLength(1);
      expect(aboutUser(gina, 'frank')).toEqual([]);
      expect(aboutUser(gina, 'harry')).toEqual([]);
      // Nothing of the leaves is left in Redis.
      expect(await raw.zcard('{rt}:leaving')).toBe(0);
      expect(await raw.keys('*frank*')).toEqual([]);
    } finally {
      raw.disconnect();
      await doomed.kill();
    }
  });
});

describe('presence grace, embedded', () => {
  let gw: TestGateway;
  const capture = new Capture();
  const open: TestClient[] = [];

  beforeAll(async () => {
    gw = capture.attach(await startTestGateway({ PRESENCE_GRACE_MS: String(GRACE_MS), LOG_LEVEL: 'warn' }), 'embedded');
  });
  afterAll(async () => {
    for (const client of open) client.ws.terminate();
    await gw?.close();
  });

  it('joins once, a return within the grace is nothing, a longer absence leaves after the grace', async () => {
    const member = async (sub: string) => {
      const client = await connect(gw.ws('/ws/chat/den'), user(sub));
      open.push(client);
      return client;
    };
    const bob = await member('bob');
    await bob.take((f) => f.event === 'join' && f.user === 'bob');
    const alice = await member('alice');
    await bob.take((f) => f.event === 'join' && f.user === 'alice');
    await alice.close();
    const back = await member('alice');
    expect(await back.take((f) => f.type === 'system')).toEqual({ type: 'system', event: 'join', user: 'alice', users: ['alice', 'bob'] });
    await marker(capture, (p) => gw.ws(p), 'den', 'carl');
    expect(aboutUser(bob, 'alice')).toEqual([]);
    expect(capture.of('presence.joined', 'chat:den', 'alice')).toHaveLength(1);
    expect(capture.of('presence.left', 'chat:den', 'alice')).toEqual([]);

    const closedAt = Date.now();
    await back.close();
    await bob.take((f) => f.event === 'leave' && f.user === 'alice', GRACE_MS * 4);
    expect((await capture.next('presence.left', 'chat:den', 'alice')).at - closedAt).toBeGreaterThanOrEqual(GRACE_MS - 50);
    await bob.close();
    await capture.next('channel.vacated', 'chat:den', undefined, GRACE_MS * 4);
    expect(capture.of('channel.occupied', 'chat:den')).toHaveLength(1);
    expect(capture.of('channel.vacated', 'chat:den')).toHaveLength(1);
    expect(capture.of('presence.left', 'chat:den', 'alice')).toHaveLength(1);
  });

  it("a signaling seat is its holder's presence: peer-left at once for the other seat, presence.left after the grace", async () => {
    const seat = async (role: 'doctor' | 'patient', sub: string) => {
      const client = await connect(gw.ws(`/ws/signaling/c1/${role}`), { protocols: ['bearer', token({ sub, role, channels: ['signaling:c1'] })] });
      open.push(client);
      return client;
    };
    const patient = await seat('patient', 'pat');
    const doctor = await seat('doctor', 'dr-who');
    await patient.take((f) => f.type === 'peer-joined' && f.role === 'doctor');
    expect((await capture.next('presence.joined', 'signaling:c1', 'dr-who')).data).toEqual({ channel: 'signaling:c1', user: 'dr-who' });
    const closedAt = Date.now();
    await doctor.close();
    // The relay needs to know now: the next doctor is a new peer connection.
    await patient.take((f) => f.type === 'peer-left' && f.role === 'doctor');
    expect(capture.of('presence.left', 'signaling:c1', 'dr-who')).toEqual([]);
    expect((await capture.next('presence.left', 'signaling:c1', 'dr-who', GRACE_MS * 4)).at - closedAt).toBeGreaterThanOrEqual(GRACE_MS - 50);
    await patient.close();
    await capture.next('channel.vacated', 'signaling:c1', undefined, GRACE_MS * 4);
    expect(capture.of('channel.occupied', 'signaling:c1')).toHaveLength(1);
  });
});

describe('presence grace through a Redis outage', () => {
  let redis: RedisProcess;
  let gw: TestGateway;
  const capture = new Capture();

  beforeAll(async () => {
    redis = await RedisProcess.start();
    gw = capture.attach(await startTestGateway({ REDIS_URL: redis.url, NODE_ID: 'node-o', PRESENCE_GRACE_MS: String(GRACE_MS), LOG_LEVEL: 'warn' }), 'node-o');
    await eventually(async () => (await fetch(gw.http('/readyz'))).status === 200, 10_000, 'ready');
  });
  afterAll(async () => {
    await gw?.close();
    await redis?.stop();
  });

  it('a member who leaves while Redis is down (restarted empty) is still told gone once Redis is back, and nothing crashes', async () => {
    const alice = await connect(gw.ws('/ws/chat/storm'), user('alice'));
    await alice.take((f) => f.event === 'join' && f.user === 'alice');
    await capture.next('presence.joined', 'chat:storm', 'alice');
    await redis.kill();
    await eventually(async () => (await fetch(gw.http('/readyz'))).status === 503, 10_000, 'not ready');
    await alice.close();
    await redis.restart();
    await eventually(async () => (await fetch(gw.http('/readyz'))).status === 200, 15_000, 'ready again');
    // Redis lost everything: the hold whose release failed is written back and ended, and its leave swept.
    await capture.next('presence.left', 'chat:storm', 'alice', 15_000);
    await capture.next('channel.vacated', 'chat:storm', undefined, GRACE_MS * 4);
    expect((await fetch(gw.http('/healthz'))).status).toBe(200);
    await marker(capture, (p) => gw.ws(p), 'after-storm', 'bea');
    expect(capture.of('presence.left', 'chat:storm', 'alice')).toHaveLength(1);
    expect(capture.of('channel.vacated', 'chat:storm')).toHaveLength(1);
  });
});
