import { connect, refusal } from '../support/clients';
import { Replica } from '../support/cluster';
import { eventually } from '../support/gateway';
import { AlertPublisher, expectEveryAlertOnceInOrderOrTold, resumingSubscribers } from '../support/failover';
import { RedisClusterProcesses } from '../support/redis-cluster';
import { token } from '../support/tokens';
import { WebhookReceiver } from '../support/webhook-receiver';

// Redis Cluster (redis+cluster://): 3 masters and 3 replicas, real processes on free ports, two gateway
// replicas. Every channel's keys share a hash slot, chat/user/signaling travel on shard channels (SPUBLISH /
// SSUBSCRIBE), presence lives in one slot; the gateway's cross-replica behaviours hold, and a master killed
// during publishing is followed (a replica of it takes its slots over).

jest.setTimeout(120_000);

const ENV = { PRESENCE_TTL_MS: '3000', REDIS_TIMEOUT_MS: '3000', MAX_CONNECTIONS_PER_USER: '2' };

describe('Redis Cluster', () => {
  let cluster: RedisClusterProcesses;
  let a: Replica;
  let b: Replica;
  let receiver: WebhookReceiver;

  beforeAll(async () => {
    cluster = await RedisClusterProcesses.start();
    receiver = await WebhookReceiver.start();
    const env = receiver.env({ ...ENV, WEBHOOK_EVENTS: 'connection.opened' });
    [a, b] = await Promise.all([Replica.start('rc-a', cluster.url, env), Replica.start('rc-b', cluster.url, env)]);
    await eventually(async () => (await a.readyStatus()) === 200 && (await b.readyStatus()) === 200, 20_000, 'both replicas ready');
  });
  afterAll(async () => {
    await Promise.all([a?.kill(), b?.kill()]);
    await cluster?.stop();
    await receiver?.stop();
  });

  it('carries alerts and their resume across replicas', async () => {
    const subscriber = await connect(b.ws(`/api/alerts/subscribe?token=${token({ sub: 'watcher' })}`));
    const welcome = await subscriber.ofType('welcome');
    const sent = await a.publish({ data: { via: 'cluster' } });
    expect(sent.status).toBe(202);
    expect(await subscriber.ofType('alert')).toMatchObject({ id: sent.body.id, data: { via: 'cluster' } });
    await subscriber.close();
    const resumed = await connect(a.ws(`/api/alerts/subscribe?token=${token({ sub: 'watcher' })}&since=${welcome.id}&epoch=${welcome.epoch}`));
    expect(await resumed.ofType('alert')).toMatchObject({ id: sent.body.id });
    expect(await resumed.ofType('resumed')).toMatchObject({ recovered: true });
    await resumed.close();
  });

  it("delivers an alert for users through those users' channels only: a replica without them receives nothing", async () => {
    const solo = await connect(a.ws(`/api/alerts/subscribe?token=${token({ sub: 'solo' })}`));
    await solo.ofType('welcome');
    const before = { alerts: (await b.metric('ws_bus_received_total', { channel: 'alerts' })) ?? 0, user: (await b.metric('ws_bus_received_total', { channel: 'user' })) ?? 0 };
    const sent = await b.publish({ data: { for: 'solo' }, users: ['solo'] });
    expect(sent.status).toBe(202);
    expect(await solo.ofType('alert')).toMatchObject({ channel: 'user:solo', id: sent.body.id, data: { for: 'solo' } });
    // b published it but holds no connection of solo: it never received it back, on alerts or on user:solo.
    expect({ alerts: (await b.metric('ws_bus_received_total', { channel: 'alerts' })) ?? 0, user: (await b.metric('ws_bus_received_total', { channel: 'user' })) ?? 0 }).toEqual(before);
    await solo.close();
  });

  it('carries chat with history on shard channels, and keeps seats, memberships and per-user limits cluster-wide', async () => {
    const alice = await connect(a.ws(`/ws/chat/lobby?token=${token({ sub: 'alice' })}`));
    const bob = await connect(b.ws(`/ws/chat/lobby?token=${token({ sub: 'bob' })}`));
    const room = await bob.ofType('welcome');
    alice.send({ type: 'message', message: 'hello over the cluster' });
    const message = await bob.ofType('message');
    expect(message).toMatchObject({ user: 'alice', message: 'hello over the cluster' });
    const carol = await connect(a.ws(`/ws/chat/lobby?token=${token({ sub: 'carol' })}&since=${room.id}&epoch=${room.epoch}`));
    expect(await carol.ofType('message')).toMatchObject({ id: message.id });
    expect(await carol.ofType('resumed')).toMatchObject({ recovered: true });
    // The room's messages travel on a shard channel, not on classic pub/sub (which every node would carry).
    const shard = (await Promise.all(cluster.nodes.map((n) => n.command('PUBSUB SHARDCHANNELS')))).join('\n');
    const classic = (await Promise.all(cluster.nodes.map((n) => n.command('PUBSUB CHANNELS')))).join('\n');
    expect(shard).toContain('rt:{chat:lobby}');
    expect(classic).not.toContain('rt:{chat:lobby}');
    const twice = await refusal(b.ws(`/ws/chat/lobby?token=${token({ sub: 'alice' })}`));
    expect([twice.status, twice.body.error]).toEqual([409, 'duplicate_user']);
    const doctor = await connect(a.ws(`/ws/signaling/c9/doctor?token=${token({ sub: 'dr', role: 'doctor', channels: ['signaling:c9'] })}`));
    const seat = await refusal(b.ws(`/ws/signaling/c9/doctor?token=${token({ sub: 'dr2', role: 'doctor', channels: ['signaling:c9'] })}`));
    expect([seat.status, seat.body.error]).toEqual([409, 'role_taken']);
    const patient = await connect(b.ws(`/ws/signaling/c9/patient?token=${token({ sub: 'pt', role: 'patient', channels: ['signaling:c9'] })}`));
    expect(await doctor.ofType('peer-joined')).toMatchObject({ role: 'patient' });
    doctor.send({ type: 'offer', payload: { sdp: 'v=0' } });
    expect(await patient.ofType('offer')).toMatchObject({ from: 'doctor', payload: { sdp: 'v=0' } });
    const [one, two] = [await connect(a.ws(`/api/alerts/subscribe?token=${token({ sub: 'limited' })}`)), await connect(b.ws(`/api/alerts/subscribe?token=${token({ sub: 'limited' })}`))];
    const third = await refusal(a.ws(`/api/alerts/subscribe?token=${token({ sub: 'limited' })}`));
    expect([third.status, third.body.error]).toEqual([429, 'too_many_connections']);
    await Promise.all([alice, bob, carol, doctor, patient, one, two].map((c) => c.close()));
  });

  it('queues webhooks in one slot and sends each event from one replica', async () => {
    const before = receiver.received.length;
    const clients = await Promise.all(['hook-0', 'hook-1', 'hook-2', 'hook-3'].map((sub, i) => connect((i % 2 ? b : a).ws(`/ws?token=${token({ sub, role: 'user' })}`))));
    await receiver.until(() => receiver.received.slice(before).filter((r) => String(r.data.user).startsWith('hook-')).length >= 4);
    const hooks = receiver.received.filter((r) => String(r.data.user).startsWith('hook-'));
    expect(hooks.map((r) => r.data.user).sort()).toEqual(['hook-0', 'hook-1', 'hook-2', 'hook-3']);
    expect(new Set(hooks.map((r) => r.id)).size).toBe(4);
    expect(receiver.invalid).toEqual([]);
    await eventually(async () => (await a.metric('ws_webhook_queue')) === 0, 5000, 'an empty queue');
    await Promise.all(clients.map((c) => c.close()));
  });

  it('keeps receipts and acks in one slot: delivered and acked across replicas, an escalation once', async () => {
    const service = { authorization: `Bearer ${token({ sub: 'svc', role: 'service' })}` };
    const receipts = async (replica: Replica, id: string) => (await (await fetch(replica.internal(`/api/alerts/${id}/receipts`), { headers: service })).json()) as Record<string, any>;
    const ann = await connect(a.ws(`/api/alerts/subscribe?token=${token({ sub: 'rcp-ann', role: 'authority' })}`));
    const bob = await connect(b.ws(`/api/alerts/subscribe?token=${token({ sub: 'rcp-bob', role: 'authority' })}`));
    await Promise.all([ann.ofType('welcome'), bob.ofType('welcome')]);
    // To users' own channels (shard channels here), with an id of its own; acked by ann on a.
    const personal = await a.publish({ data: { text: 'on the cluster' }, users: ['rcp-ann', 'rcp-bob'], ack: { within_s: 2 } });
    expect(personal.status).toBe(202);
    const id = personal.body.id as string;
    const [annFrame, bobFrame] = await Promise.all([ann.ofType('alert'), bob.ofType('alert')]);
    expect([annFrame.ack, bobFrame.ack]).toEqual([true, true]);
    ann.send({ type: 'ack', id: annFrame.id });
    await eventually(async () => (await receipts(b, id)).acked?.length === 1, 5000, 'ann\'s ack, read on b');
    const read = await receipts(b, id);
    expect(read.delivered.map((e: { user: string }) => e.user).sort()).toEqual(['rcp-ann', 'rcp-bob']);
    expect(read.acked.map((e: { user: string }) => e.user)).toEqual(['rcp-ann']);
    expect(read.pending).toEqual(['rcp-bob']);
    // bob never acks: the escalation comes once, from one of the two replicas.
    const again = await bob.take((f) => f.type === 'alert' && f.redelivered === true, 10_000);
    expect(again.id).toBe(bobFrame.id);
    // A role-only alert through `alerts` (its stream in one slot), acked by bob on b, read on a.
    const broadcast = await b.publish({ data: { text: 'all authorities' }, roles: ['authority'], ack: { within_s: 600 } });
    const bobBroadcast = await bob.take((f) => f.type === 'alert' && f.id === broadcast.body.id);
    bob.send({ type: 'ack', id: bobBroadcast.id });
    await eventually(async () => (await receipts(a, broadcast.body.id as string)).acked?.length === 1, 5000, 'bob\'s ack, read on a');
    // Two more poll rounds on both replicas: no second redelivery.
    const later = Date.now() + 1500;
    await eventually(() => Date.now() > later, 3000, 'more poll rounds');
    expect(bob.frames.filter((f: any) => f.redelivered === true)).toEqual([]);
    expect([...ann.frames, ...bob.frames].filter((f: any) => f.type === 'error')).toEqual([]);
    await Promise.all([ann.close(), bob.close()]);
  });

  it('follows a master killed during publishing: every acknowledged alert once and in order, or recovered:false', async () => {
    const subscribers = await resumingSubscribers('rc-failover', [a, b], 2);
    const publisher = new AlertPublisher([a, b]);
    await publisher.more(30, 10_000, 'alerts before the failover');
    await cluster.killMasterOf('rt:alerts:stream');
    await publisher.more(30, 40_000, 'alerts after the failover');
    await publisher.stop();
    await expectEveryAlertOnceInOrderOrTold(subscribers, publisher.published);
  });
});
