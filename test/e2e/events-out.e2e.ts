import { Replica } from '../support/cluster';
import { connect, type TestClient } from '../support/clients';
import { eventually } from '../support/gateway';
import { RedisProcess } from '../support/redis';
import { token } from '../support/tokens';
import { WebhookReceiver, type ReceivedWebhook } from '../support/webhook-receiver';

/**
 * Events out end to end (SPEC v3): what users and the server API do on two replica processes reaches a real
 * receiver, which verifies every signature with the `standardwebhooks` package, as one event each: presence
 * with its grace, occupancy, disconnects and revocations. The producers and the delivery are tested apart in
 * presence-grace, revoke and webhooks; this proves they meet.
 */

/** Long enough that a reconnect on the other replica lands inside it on a loaded machine. */
const GRACE_MS = 2000;

const user = (sub: string, extra: Record<string, unknown> = {}) => ({ protocols: ['bearer', token({ sub, role: 'user', ...extra })] });
const service = { authorization: `Bearer ${token({ sub: 'billing-backend', role: 'service' })}`, 'content-type': 'application/json' };

describe('events out, end to end (two replica processes, a real redis-server, a verifying receiver)', () => {
  let redis: RedisProcess;
  let receiver: WebhookReceiver;
  let a: Replica;
  let b: Replica;
  const open: TestClient[] = [];

  beforeAll(async () => {
    redis = await RedisProcess.start();
    receiver = await WebhookReceiver.start();
    const env = receiver.env({ PRESENCE_GRACE_MS: String(GRACE_MS), LOG_LEVEL: 'info' });
    [a, b] = await Promise.all([Replica.start('node-a', redis.url, env), Replica.start('node-b', redis.url, env)]);
    for (const replica of [a, b]) await eventually(async () => (await replica.readyStatus()) === 200, 10_000, `${replica.name} ready`);
  });

  afterAll(async () => {
    await Promise.all(open.map((c) => c.close()));
    await Promise.all([a?.kill(), b?.kill()]);
    await receiver?.stop();
    await redis?.stop();
  });

  const of = (type: string, match: Record<string, unknown> = {}): ReceivedWebhook[] =>
    [...receiver.distinct().values()].map((attempts) => attempts[0]).filter((r) => r.type === type && Object.entries(match).every(([k, v]) => r.data[k] === v));
  const arrived = (type: string, match: Record<string, unknown> = {}, ms = 10_000) => receiver.until(() => of(type, match).length > 0, ms, `${type} ${JSON.stringify(match)}`);

  it('tells a room\'s occupancy and each user\'s presence once, a return within the grace on another replica as nothing', async () => {
    const alice = await connect(a.ws('/ws/chat/ward-7'), user('alice'));
    open.push(alice);
    await arrived('presence.joined', { channel: 'chat:ward-7', user: 'alice' });
    await arrived('channel.occupied', { channel: 'chat:ward-7' });

    // A dropped connection and a reconnect on the other replica, within the grace: nothing left, nothing joined.
    await alice.close();
    // One connection per user per room: until replica a has released the first one (its close is processed a
    // moment after the client saw it), the room answers 409 duplicate_user, and a client tries again.
    let back!: TestClient;
    await eventually(async () => {
      try {
        back = await connect(b.ws('/ws/chat/ward-7'), user('alice'));
        return true;
      } catch (error) {
        if ((error as { status?: number }).status === 409) return false;
        throw error;
      }
    }, 5000, 'the room to take alice back');
    open.push(back);
    // A marker: bob joins and leaves after alice's return; leaves are told in due order, so once bob's
    // presence.left is here, a presence.left for alice's dropped connection would have come before it.
    const bob = await connect(a.ws('/ws/chat/ward-7'), user('bob'));
    await bob.take((f) => f.type === 'system' && f.event === 'join' && f.user === 'bob');
    await bob.close();
    await arrived('presence.left', { channel: 'chat:ward-7', user: 'bob' }, GRACE_MS * 5);
    expect(of('presence.left', { user: 'alice' })).toEqual([]);
    expect(of('presence.joined', { channel: 'chat:ward-7', user: 'alice' })).toHaveLength(1);
    expect(of('channel.vacated')).toEqual([]);

    // Gone for good: left once, and the room vacated once, after the grace.
    const closedAt = Date.now();
    await back.close();
    await arrived('channel.vacated', { channel: 'chat:ward-7' }, GRACE_MS * 5);
    // Up to 4 requests are in flight at once: the two events may reach the receiver in either order.
    await arrived('presence.left', { channel: 'chat:ward-7', user: 'alice' });
    const left = of('presence.left', { channel: 'chat:ward-7', user: 'alice' });
    expect(left).toHaveLength(1);
    expect(left[0].at - closedAt).toBeGreaterThanOrEqual(GRACE_MS - 50);
    expect(of('channel.occupied', { channel: 'chat:ward-7' })).toHaveLength(1);
    expect(of('channel.vacated', { channel: 'chat:ward-7' })).toHaveLength(1);
    expect(receiver.invalid).toEqual([]);
  }, 30_000);

  it('tells user.disconnected and token.revoked once each, with the caller as by, whichever replica was asked', async () => {
    const carol = await connect(b.ws('/ws/chat/ward-8'), user('carol', { jti: 'carol-phone' }));
    open.push(carol);
    let res = await fetch(a.internal('/api/disconnect'), { method: 'POST', headers: service, body: JSON.stringify({ user: 'carol', reason: 'shift ended', ban_seconds: 5 }) });
    expect(res.status).toBe(202);
    expect((await carol.closed).code).toBe(4003);
    await arrived('user.disconnected', { user: 'carol' });
    expect(of('user.disconnected', { user: 'carol' }).map((r) => r.data)).toEqual([{ user: 'carol', reason: 'shift ended', ban_seconds: 5, by: 'billing-backend' }]);

    const dave = await connect(a.ws('/ws/chat/ward-8'), user('dave', { jti: 'dave-laptop' }));
    open.push(dave);
    res = await fetch(b.internal('/api/revoke'), { method: 'POST', headers: service, body: JSON.stringify({ jti: 'dave-laptop' }) });
    expect(res.status).toBe(202);
    expect(await dave.closed).toEqual({ code: 4001, reason: 'token revoked' });
    await arrived('token.revoked', { jti: 'dave-laptop' });
    const revoked = of('token.revoked');
    expect(revoked).toHaveLength(1);
    expect(revoked[0].data).toMatchObject({ jti: 'dave-laptop', by: 'billing-backend' });
    expect(receiver.invalid).toEqual([]);
    // Every event was one request: a 200 each time, so no retries and no duplicates.
    expect(receiver.received.length).toBe(receiver.distinct().size);
  }, 30_000);
});
