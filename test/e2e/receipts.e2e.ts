import { vapidKeys } from '../../src/cli/vapid';
import { connect, type TestClient } from '../support/clients';
import { Replica } from '../support/cluster';
import { eventually, startTestGateway, type TestGateway } from '../support/gateway';
import { PushService, type BrowserSubscription } from '../support/push-service';
import { RedisProcess } from '../support/redis';
import { sendFrame, SseClient } from '../support/sse-client';
import { token } from '../support/tokens';
import { WebhookReceiver } from '../support/webhook-receiver';

/**
 * SPEC v3 "Receipts and offline delivery": `ack` on POST /api/alerts, frames that carry `"ack":true`, the client's
 * `ack` frame on every transport, GET /api/alerts/<id>/receipts, and the escalation (redelivery and
 * `alert.unacknowledged`) once per alert cluster-wide.
 */

interface Receipt {
  id: string;
  delivered: { user: string; ts: number }[];
  acked: { user: string; ts: number }[];
  pending: string[];
}

const serviceHeaders = () => ({ authorization: `Bearer ${token({ sub: 'svc', role: 'service' })}`, 'content-type': 'application/json' });

async function postAlert(internal: (path: string) => string, body: unknown): Promise<{ status: number; body: Record<string, any> }> {
  const res = await fetch(internal('/api/alerts'), { method: 'POST', headers: serviceHeaders(), body: JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as Record<string, any> };
}

async function receipts(internal: (path: string) => string, id: string): Promise<{ status: number; body: any }> {
  const res = await fetch(internal(`/api/alerts/${encodeURIComponent(id)}/receipts`), { headers: serviceHeaders() });
  return { status: res.status, body: await res.json() };
}

const users = (list: { user: string }[]) => list.map((e) => e.user).sort();

/** An authority on the alerts endpoint (alerts and its own user:<sub>). */
const alertsEndpoint = (ws: (path: string) => string, sub: string) => connect(ws(`/api/alerts/subscribe?token=${token({ sub, role: 'authority' })}`));

/** A `/ws` connection subscribed to its own personal channel (and `alerts` when it is an authority). */
async function wsUser(ws: (path: string) => string, sub: string, role = 'patient'): Promise<TestClient> {
  const client = await connect(ws('/ws'), { protocols: ['bearer', token({ sub, role })] });
  client.send({ type: 'subscribe', channel: `user:${sub}` });
  await client.take((f) => f.type === 'subscribed' && f.channel === `user:${sub}`);
  if (role === 'authority') {
    client.send({ type: 'subscribe', channel: 'alerts' });
    await client.take((f) => f.type === 'subscribed' && f.channel === 'alerts');
  }
  return client;
}

describe('receipts (embedded)', () => {
  let gw: TestGateway;
  let receiver: WebhookReceiver;
  const open: TestClient[] = [];
  const track = <T extends TestClient>(c: T) => (open.push(c), c);
  const internal = (path: string) => gw.internal(path);

  beforeAll(async () => {
    receiver = await WebhookReceiver.start();
    gw = await startTestGateway(receiver.env({ WEBHOOK_EVENTS: 'alert.unacknowledged', RATE_LIMIT_PER_SEC: '5', RATE_LIMIT_BURST: '10' }));
  });
  afterAll(async () => {
    await Promise.all(open.map((c) => c.close()));
    await gw.close();
    await receiver.stop();
  });

  it.each([
    ['0', { within_s: 0 }],
    ['86401', { within_s: 86401 }],
    ['a string', { within_s: '10' }],
    ['a fraction', { within_s: 1.5 }],
    ['no within_s', {}],
    ['true', true],
  ])('refuses ack with within_s of %s: 400 bad_request naming the field', async (_name, ack) => {
    const res = await postAlert(internal, { data: { text: 'x' }, users: ['ann'], ack });
    expect(res.status).toBe(400);
    expect(res.body).toEqual({ error: 'bad_request', message: expect.stringMatching(/^ack/) });
  });

  it('accepts within_s from 1 to 86400 and lists ack in the OpenAPI document', async () => {
    expect((await postAlert(internal, { data: { text: 'x' }, users: ['ann'], ack: { within_s: 1 } })).status).toBe(202);
    expect((await postAlert(internal, { data: { text: 'x' }, roles: ['authority'], ack: { within_s: 86400 } })).status).toBe(202);
    const doc = (await (await fetch(gw.internal('/api/openapi.json'))).json()) as any;
    const body = doc.paths['/api/alerts'].post.requestBody.content['application/json'].schema;
    expect(body.properties.ack.properties.within_s).toMatchObject({ type: 'integer', minimum: 1, maximum: 86400 });
    expect(doc.paths['/api/alerts/{id}/receipts'].get.responses['200']).toBeDefined();
    expect(doc.paths['/api/alerts/{id}/receipts'].get.responses['404']).toBeDefined();
  });

  it('marks the frames of an alert that asks for ack, on the alerts endpoint and on /ws, and no others', async () => {
    const ann = track(await alertsEndpoint(gw.ws.bind(gw), 'mark-ann'));
    await ann.ofType('welcome');
    const bob = track(await wsUser(gw.ws.bind(gw), 'mark-bob', 'authority'));
    const plain = await postAlert(internal, { data: { n: 0 }, roles: ['authority'] });
    expect((await ann.ofType('alert')).ack).toBeUndefined();
    expect((await bob.ofType('publication')).ack).toBeUndefined();

    const broadcast = await postAlert(internal, { data: { n: 1 }, roles: ['authority'], ack: { within_s: 60 } });
    expect(broadcast.status).toBe(202);
    expect(broadcast.body.id).not.toBe(plain.body.id);
    expect(await ann.ofType('alert')).toEqual({ type: 'alert', id: broadcast.body.id, data: { n: 1 }, ts: broadcast.body.ts, ack: true });
    expect(await bob.ofType('publication')).toEqual({ type: 'publication', channel: 'alerts', id: broadcast.body.id, data: { n: 1 }, ts: broadcast.body.ts, ack: true });

    const personal = await postAlert(internal, { data: { n: 2 }, users: ['mark-ann', 'mark-bob'], ack: { within_s: 60 } });
    expect(personal.status).toBe(202);
    const { ids } = personal.body as { ids: Record<string, string> };
    // An alert to users' channels has an id of its own; each user's frame carries its channel's id.
    expect(personal.body.id).toMatch(/^[0-9a-f]{24}$/);
    expect(Object.keys(ids).sort()).toEqual(['mark-ann', 'mark-bob']);
    expect(await ann.ofType('alert')).toEqual({ type: 'alert', channel: 'user:mark-ann', id: ids['mark-ann'], data: { n: 2 }, ts: expect.any(Number), ack: true });
    expect(await bob.ofType('publication')).toEqual({ type: 'publication', channel: 'user:mark-bob', id: ids['mark-bob'], data: { n: 2 }, ts: expect.any(Number), ack: true });
  });

  it('records delivered then acked per user, maps a personal frame\'s id to the alert, and answers GET receipts', async () => {
    const before = (await gw.metric('ws_acks_total')) ?? 0;
    const ann = track(await alertsEndpoint(gw.ws.bind(gw), 'rc-ann'));
    await ann.ofType('welcome');
    const bob = track(await wsUser(gw.ws.bind(gw), 'rc-bob'));
    const published = await postAlert(internal, { data: { text: 'oxygen' }, users: ['rc-ann', 'rc-bob', 'rc-absent'], ack: { within_s: 600 } });
    const { id, ids } = published.body as { id: string; ids: Record<string, string> };
    const annFrame = await ann.ofType('alert');
    const bobFrame = await bob.ofType('publication');
    expect(annFrame.id).toBe(ids['rc-ann']);
    expect(bobFrame.id).toBe(ids['rc-bob']);
    expect([annFrame.id, bobFrame.id]).not.toContain(id);

    await eventually(async () => (await receipts(internal, id)).body.delivered?.length === 2, 5000, 'both deliveries recorded');
    let receipt = (await receipts(internal, id)).body as Receipt;
    expect(users(receipt.delivered)).toEqual(['rc-ann', 'rc-bob']);
    expect(receipt).toMatchObject({ id, acked: [], pending: ['rc-ann', 'rc-bob', 'rc-absent'] });
    for (const d of receipt.delivered) expect(d.ts).toBeGreaterThanOrEqual(published.body.ts);

    ann.send({ type: 'ack', id: annFrame.id });
    bob.send({ type: 'ack', id: bobFrame.id, channel: 'user:rc-bob' });
    await eventually(async () => (await receipts(internal, id)).body.acked?.length === 2, 5000, 'both acks recorded');
    receipt = (await receipts(internal, id)).body as Receipt;
    expect(users(receipt.acked)).toEqual(['rc-ann', 'rc-bob']);
    expect(receipt.pending).toEqual(['rc-absent']);
    for (const a of receipt.acked) expect(a.ts).toBeGreaterThanOrEqual(receipt.delivered.find((d) => d.user === a.user)!.ts);
    expect(await gw.metric('ws_acks_total')).toBe(before + 2);
    // Neither got an error frame.
    expect(ann.frames.filter((f: any) => f.type === 'error')).toEqual([]);
    expect(bob.frames.filter((f: any) => f.type === 'error')).toEqual([]);
  });

  it('answers unknown_alert to an ack of an unknown id or of someone else\'s alert, and records a repeated ack once', async () => {
    const ann = track(await alertsEndpoint(gw.ws.bind(gw), 'bad-ann'));
    await ann.ofType('welcome');
    const carl = track(await alertsEndpoint(gw.ws.bind(gw), 'bad-carl'));
    await carl.ofType('welcome');
    const { body } = await postAlert(internal, { data: { text: 'for ann' }, users: ['bad-ann'], ack: { within_s: 600 } });
    const frame = await ann.ofType('alert');

    carl.send({ type: 'ack', id: body.id });
    expect((await carl.ofType('error')).payload).toEqual({ code: 'unknown_alert', message: expect.any(String) });
    carl.send({ type: 'ack', id: '1-0' });
    expect((await carl.ofType('error')).payload).toMatchObject({ code: 'unknown_alert' });
    carl.send({ type: 'ack', id: 'not-an-id' });
    expect((await carl.ofType('error')).payload).toMatchObject({ code: 'unknown_alert' });
    // A plain alert (no ack asked) cannot be acked either.
    const plain = await postAlert(internal, { data: { text: 'plain' }, users: ['bad-carl'] });
    const plainFrame = await carl.ofType('alert');
    expect(plainFrame.id).toBe(plain.body.id);
    carl.send({ type: 'ack', id: plain.body.id });
    expect((await carl.ofType('error')).payload).toMatchObject({ code: 'unknown_alert' });
    expect((await receipts(internal, plain.body.id)).status).toBe(404);

    const before = (await gw.metric('ws_acks_total')) ?? 0;
    ann.send({ type: 'ack', id: frame.id });
    await eventually(async () => (await receipts(internal, body.id)).body.acked?.length === 1, 5000, 'the ack');
    const first = ((await receipts(internal, body.id)).body as Receipt).acked[0];
    ann.send({ type: 'ack', id: frame.id });
    ann.send({ type: 'ping' });
    await ann.ofType('pong');
    // Recorded once: the same time, counted once, and no error for the repeat.
    expect(((await receipts(internal, body.id)).body as Receipt).acked).toEqual([first]);
    expect(await gw.metric('ws_acks_total')).toBe(before + 1);
    expect(ann.frames.filter((f: any) => f.type === 'error')).toEqual([]);
    // Nor does carl's refused ack show up.
    expect(users(((await receipts(internal, body.id)).body as Receipt).acked)).toEqual(['bad-ann']);
  });

  it('refuses a malformed ack frame with invalid_message', async () => {
    const ann = track(await alertsEndpoint(gw.ws.bind(gw), 'shape-ann'));
    await ann.ofType('welcome');
    ann.send({ type: 'ack' });
    expect((await ann.ofType('error')).payload).toMatchObject({ code: 'invalid_message' });
    ann.send({ type: 'ack', id: 5 });
    expect((await ann.ofType('error')).payload).toMatchObject({ code: 'invalid_message' });
  });

  it('rate limits acks like any frame: a flood is answered rate_limited and the ack is recorded once', async () => {
    const ann = track(await alertsEndpoint(gw.ws.bind(gw), 'flood-ann'));
    await ann.ofType('welcome');
    const { body } = await postAlert(internal, { data: { text: 'flood' }, users: ['flood-ann'], ack: { within_s: 600 } });
    const frame = await ann.ofType('alert');
    const before = (await gw.metric('ws_acks_total')) ?? 0;
    // Burst 10: the rest of 25 are refused (and 3 x burst would close the socket, so stay under it).
    for (let i = 0; i < 25; i++) ann.send({ type: 'ack', id: frame.id });
    expect((await ann.ofType('error')).payload).toMatchObject({ code: 'rate_limited' });
    await eventually(async () => (await receipts(internal, body.id)).body.acked?.length === 1, 5000, 'the ack');
    expect(await gw.metric('ws_acks_total')).toBe(before + 1);
  });

  it('takes acks over SSE (POST /sse/send with the channel)', async () => {
    const sseToken = token({ sub: 'sse-dee', role: 'patient' });
    const stream = await SseClient.open(gw.http('/sse?channel=user:sse-dee'), { authorization: `Bearer ${sseToken}` });
    try {
      const welcome = await stream.ofType('welcome');
      const { body } = await postAlert(internal, { data: { text: 'sse' }, users: ['sse-dee'], ack: { within_s: 600 } });
      const event = await stream.ofType('publication');
      expect(event.data).toMatchObject({ channel: 'user:sse-dee', id: body.ids['sse-dee'], ack: true });
      expect((await sendFrame(gw.http('/sse/send'), sseToken, welcome.data.session, { type: 'ack', id: event.data.id, channel: 'user:sse-dee' })).status).toBe(202);
      await eventually(async () => (await receipts(internal, body.id)).body.acked?.length === 1, 5000, 'the ack over SSE');
      expect((await sendFrame(gw.http('/sse/send'), sseToken, welcome.data.session, { type: 'ack', id: '1-0', channel: 'user:sse-dee' })).status).toBe(202);
      expect((await stream.ofType('error')).data.payload).toMatchObject({ code: 'unknown_alert' });
    } finally {
      await stream.close();
    }
  });

  it('escalates once when a user never acks: the same frame again on their live connection, and alert.unacknowledged', async () => {
    const ann = track(await alertsEndpoint(gw.ws.bind(gw), 'esc-ann'));
    await ann.ofType('welcome');
    const bob = track(await wsUser(gw.ws.bind(gw), 'esc-bob'));
    const { body } = await postAlert(internal, { data: { text: 'ack me' }, users: ['esc-ann', 'esc-bob'], ack: { within_s: 1 } });
    const { id, ids } = body as { id: string; ids: Record<string, string> };
    const first = await bob.ofType('publication');
    ann.send({ type: 'ack', id: (await ann.ofType('alert')).id });
    await receiver.until(() => receiver.received.some((r) => r.type === 'alert.unacknowledged' && r.data.id === id), 5000, 'alert.unacknowledged');
    const events = () => receiver.received.filter((r) => r.type === 'alert.unacknowledged' && r.data.id === id);
    expect(events().map((r) => r.data)).toEqual([{ id, pending: ['esc-bob'], within_s: 1 }]);
    expect(events()[0].at - body.ts).toBeGreaterThanOrEqual(1000);
    // The same frame again (same id and time), for bob only.
    const again = await bob.ofType('publication');
    expect(again).toEqual({ ...first, redelivered: true });
    expect(again.id).toBe(ids['esc-bob']);
    // Told once: two more poll rounds bring nothing.
    const pollsLater = Date.now() + 2500;
    await eventually(() => Date.now() > pollsLater, 4000, 'two more poll rounds');
    expect(events()).toHaveLength(1);
    expect(ann.frames.filter((f: any) => f.type === 'alert')).toEqual([]);
    expect(bob.frames.filter((f: any) => f.type === 'publication')).toEqual([]);
    // Acking the redelivered frame still counts.
    bob.send({ type: 'ack', id: again.id, channel: again.channel });
    await eventually(async () => (await receipts(internal, id)).body.pending?.length === 0, 5000, 'bob acked');
  });

  it('does not escalate an alert every target acked in time, nor a role-only one', async () => {
    const ann = track(await alertsEndpoint(gw.ws.bind(gw), 'calm-ann'));
    await ann.ofType('welcome');
    const acked = await postAlert(internal, { data: { text: 'ok' }, users: ['calm-ann'], ack: { within_s: 1 } });
    ann.send({ type: 'ack', id: (await ann.ofType('alert')).id });
    const roleOnly = await postAlert(internal, { data: { text: 'all' }, roles: ['authority'], ack: { within_s: 1 } });
    await ann.ofType('alert');
    const role = await receipts(internal, roleOnly.body.id);
    expect(role.body.pending).toEqual([]);
    const after = Date.now() + 2500;
    await eventually(() => Date.now() > after, 4000, 'past both deadlines');
    expect(receiver.received.filter((r) => r.data.id === acked.body.id || r.data.id === roleOnly.body.id)).toEqual([]);
    expect(ann.frames.filter((f: any) => f.type === 'alert')).toEqual([]);
  });

  it('GET /api/alerts/<id>/receipts: 404 unknown_alert for an unknown id, 400 for a malformed one, 401 without a token', async () => {
    const unknown = await receipts(internal, '1-0');
    expect(unknown).toEqual({ status: 404, body: { error: 'unknown_alert', message: expect.any(String) } });
    expect((await receipts(internal, 'no pe')).body).toEqual({ error: 'bad_request', message: expect.stringMatching(/^id: /) });
    expect((await fetch(gw.internal('/api/alerts/1-0/receipts'))).status).toBe(401);
  });
});

describe('receipts across replicas (cluster: processes on a real redis-server)', () => {
  let redis: RedisProcess;
  let receiver: WebhookReceiver;
  let replicas: Replica[] = [];
  const clients: TestClient[] = [];

  let push: PushService;
  const vapid = vapidKeys();

  beforeAll(async () => {
    redis = await RedisProcess.start();
    receiver = await WebhookReceiver.start();
    // Web Push to a local push service that checks each push's VAPID JWT and decrypts it (test/support/push-service.ts).
    push = await PushService.start(vapid.publicKey);
    const env = receiver.env({
      LOG_LEVEL: 'info',
      WEBHOOK_EVENTS: 'alert.unacknowledged',
      NODE_EXTRA_CA_CERTS: push.caFile,
      VAPID_PUBLIC_KEY: vapid.publicKey,
      VAPID_PRIVATE_KEY: vapid.privateKey,
      VAPID_SUBJECT: 'mailto:ops@example.com',
    });
    replicas = await Promise.all(['rc-a', 'rc-b', 'rc-c'].map((name) => Replica.start(name, redis.url, env)));
    for (const replica of replicas) await eventually(async () => (await replica.readyStatus()) === 200, 10_000, `${replica.name} ready`);
  }, 30_000);
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await Promise.all(replicas.map((r) => r.kill()));
    await receiver.stop();
    await push.stop();
    await redis.stop();
  });

  /** A browser's push subscription for `sub`, registered on a replica's public port. */
  async function subscribePush(replica: Replica, sub: string): Promise<BrowserSubscription> {
    const subscription = push.subscribe();
    const res = await fetch(replica.http('/push/subscriptions'), {
      method: 'POST',
      headers: { authorization: `Bearer ${token({ sub, role: 'authority' })}`, 'content-type': 'application/json' },
      body: JSON.stringify(subscription),
    });
    expect(res.status).toBe(201);
    return subscription;
  }

  it('shows delivered then acked for two users on two replicas, read on either', async () => {
    const [a, b] = replicas;
    const ann = await alertsEndpoint((p) => a.ws(p), 'cl-ann');
    clients.push(ann);
    await ann.ofType('welcome');
    const bob = await wsUser((p) => b.ws(p), 'cl-bob', 'authority');
    clients.push(bob);
    const published = await postAlert((p) => a.internal(p), { data: { text: 'cluster' }, users: ['cl-ann', 'cl-bob'], ack: { within_s: 600 } });
    expect(published.status).toBe(202);
    const { id, ids } = published.body as { id: string; ids: Record<string, string> };
    const annFrame = await ann.ofType('alert');
    const bobFrame = await bob.ofType('publication');
    expect([annFrame.ack, bobFrame.ack]).toEqual([true, true]);

    await eventually(async () => (await receipts((p) => b.internal(p), id)).body.delivered?.length === 2, 5000, 'both deliveries, read on b');
    const delivered = (await receipts((p) => a.internal(p), id)).body as Receipt;
    expect(users(delivered.delivered)).toEqual(['cl-ann', 'cl-bob']);
    expect(delivered).toMatchObject({ id, acked: [], pending: ['cl-ann', 'cl-bob'] });

    ann.send({ type: 'ack', id: annFrame.id });
    bob.send({ type: 'ack', id: ids['cl-bob'], channel: 'user:cl-bob' });
    await eventually(async () => (await receipts((p) => a.internal(p), id)).body.acked?.length === 2, 5000, 'both acks, read on a');
    const acked = (await receipts((p) => b.internal(p), id)).body as Receipt;
    expect(users(acked.acked)).toEqual(['cl-ann', 'cl-bob']);
    expect(acked.pending).toEqual([]);
    expect(acked.delivered).toEqual(delivered.delivered);
    for (const e of acked.acked) expect(e.ts).toBeGreaterThanOrEqual(acked.delivered.find((d) => d.user === e.user)!.ts);
    expect(((await a.metric('ws_acks_total')) ?? 0) + ((await b.metric('ws_acks_total')) ?? 0)).toBe(2);

    // A role-only alert on `alerts`: acked on /ws with its channel, on the other replica.
    const broadcast = await postAlert((p) => b.internal(p), { data: { text: 'all authorities' }, roles: ['authority'], ack: { within_s: 600 } });
    expect((await ann.ofType('alert')).id).toBe(broadcast.body.id);
    const onWs = await bob.take((f) => f.type === 'publication' && f.channel === 'alerts');
    bob.send({ type: 'ack', id: onWs.id, channel: 'alerts' });
    await eventually(async () => (await receipts((p) => a.internal(p), broadcast.body.id)).body.acked?.length === 1, 5000, 'the ack on /ws of an alerts frame');
    const roleOnly = (await receipts((p) => a.internal(p), broadcast.body.id)).body as Receipt;
    expect(users(roleOnly.delivered)).toEqual(['cl-ann', 'cl-bob']);
    expect(roleOnly.acked.map((e) => e.user)).toEqual(['cl-bob']);
    expect(roleOnly.pending).toEqual([]);
    expect(bob.frames.filter((f: any) => f.type === 'error')).toEqual([]);
  });

  it('escalates exactly once when the replica that published (and owns the deadline) is killed before it', async () => {
    const [a, b, c] = replicas;
    const bobPush = await subscribePush(c, 'esc-bob');
    const carlPush = await subscribePush(a, 'esc-carl');
    const bob = await alertsEndpoint((p) => b.ws(p), 'esc-bob');
    clients.push(bob);
    await bob.ofType('welcome');
    const carl = await wsUser((p) => c.ws(p), 'esc-carl');
    clients.push(carl);
    const published = await postAlert((p) => a.internal(p), { data: { text: 'who is on duty?' }, users: ['esc-bob', 'esc-carl'], ack: { within_s: 3 } });
    expect(published.status).toBe(202);
    const { id, ids } = published.body as { id: string; ids: Record<string, string> };
    const first = await bob.ofType('alert');
    const carlFirst = await carl.ofType('publication');
    await eventually(async () => (await receipts((p) => c.internal(p), id)).body.delivered?.length === 2, 5000, 'both deliveries');
    carl.send({ type: 'ack', id: carlFirst.id, channel: carlFirst.channel });
    await eventually(async () => (await receipts((p) => c.internal(p), id)).body.acked?.length === 1, 5000, 'carl acked');
    // The publisher dies half a second before the deadline it set.
    const killAt = published.body.ts + 2500;
    await eventually(() => Date.now() >= killAt, 5000, 'just before the deadline');
    await a.kill();
    await receiver.until(() => receiver.received.some((r) => r.type === 'alert.unacknowledged' && r.data.id === id), 8000, 'alert.unacknowledged from b or c');
    const again = await bob.ofType('alert', 5000);
    expect(again).toEqual({ ...first, redelivered: true });
    expect(again.id).toBe(ids['esc-bob']);
    const events = () => receiver.received.filter((r) => r.type === 'alert.unacknowledged' && r.data.id === id);
    expect(events()[0].data).toEqual({ id, pending: ['esc-bob'], within_s: 3 });
    expect(events()[0].at - published.body.ts).toBeGreaterThanOrEqual(3000);
    // Once: several more poll rounds on both survivors bring no second event and no second redelivery.
    const later = Date.now() + 3000;
    await eventually(() => Date.now() > later, 5000, 'more poll rounds');
    expect(events()).toHaveLength(1);
    expect(receiver.distinct().size).toBe(receiver.received.length);
    expect(bob.frames.filter((f: any) => f.type === 'alert')).toEqual([]);
    expect(carl.frames.filter((f: any) => f.type === 'publication')).toEqual([]);
    const receipt = (await receipts((p) => b.internal(p), id)).body as Receipt;
    expect(receipt.pending).toEqual(['esc-bob']);
    // Web Push: bob, pending, got the escalation's push (decrypted by the push service) once; carl, who acked, none;
    // neither was pushed at publication (both had the alert on a socket).
    await push.until(() => push.for(bobPush).length > 0, 5000, 'the escalation push to bob');
    expect(push.for(bobPush).map((p) => p.payload)).toEqual([{ type: 'alert', id, data: { text: 'who is on duty?' } }]);
    expect(push.for(carlPush)).toEqual([]);
    expect(push.invalid).toEqual([]);
  }, 40_000);

  it('pushes an alert at once to a targeted user it reached on no socket, and not to a connected one', async () => {
    // rc-a was killed by the test before.
    const [, b, c] = replicas;
    const annPush = await subscribePush(c, 'wp-ann');
    const zedPush = await subscribePush(b, 'wp-zed');
    const ann = await alertsEndpoint((p) => b.ws(p), 'wp-ann');
    clients.push(ann);
    await ann.ofType('welcome');
    for (const body of [
      { data: { text: 'to users' }, users: ['wp-ann', 'wp-zed'] },
      { data: { text: 'with ack' }, users: ['wp-ann', 'wp-zed'], ack: { within_s: 600 } },
      { data: { text: 'roles and users' }, roles: ['nobody'], users: ['wp-ann', 'wp-zed'] },
    ]) {
      const published = await postAlert((p) => c.internal(p), body);
      expect(published.status).toBe(202);
      await ann.ofType('alert');
      const before = Date.now();
      await push.until(() => push.for(zedPush).some((p) => p.payload.id === published.body.id), 5000, `the push of ${JSON.stringify(body)} to wp-zed`);
      expect(push.for(zedPush).find((p) => p.payload.id === published.body.id)!.payload).toEqual({ type: 'alert', id: published.body.id, data: body.data });
      expect(Date.now() - before).toBeLessThan(3000);
    }
    expect(push.for(annPush)).toEqual([]);
    expect(push.for(zedPush)).toHaveLength(3);
    expect(push.invalid).toEqual([]);
  });
});

describe('escalation and push-at-once when the replica doing them is killed (processes on a real redis-server)', () => {
  let redis: RedisProcess;
  let receiver: WebhookReceiver;
  let push: PushService;
  let replicas: Replica[] = [];
  const clients: TestClient[] = [];
  const vapid = vapidKeys();

  beforeAll(async () => {
    redis = await RedisProcess.start();
    receiver = await WebhookReceiver.start();
    push = await PushService.start(vapid.publicKey);
    // Each replica signs its pushes with its own VAPID `sub`: the push service tells which replica sent a push.
    replicas = await Promise.all(
      ['kl-a', 'kl-b', 'kl-c'].map((name) =>
        Replica.start(
          name,
          redis.url,
          receiver.env({
            WEBHOOK_EVENTS: 'alert.unacknowledged',
            NODE_EXTRA_CA_CERTS: push.caFile,
            VAPID_PUBLIC_KEY: vapid.publicKey,
            VAPID_PRIVATE_KEY: vapid.privateKey,
            VAPID_SUBJECT: `mailto:${name}@example.com`,
          }),
        ),
      ),
    );
    for (const replica of replicas) await eventually(async () => (await replica.readyStatus()) === 200, 10_000, `${replica.name} ready`);
  }, 30_000);
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await Promise.all(replicas.map((r) => r.kill()));
    await receiver.stop();
    await push.stop();
    await redis.stop();
  });

  const live = () => replicas.filter((r) => r.process.child.exitCode === null && r.process.child.signalCode === null);
  const sender = (p: { claims: { sub: string } }) => replicas.find((r) => p.claims.sub === `mailto:${r.name}@example.com`)!;

  async function subscribePush(replica: Replica, sub: string): Promise<BrowserSubscription> {
    const subscription = push.subscribe();
    const res = await fetch(replica.http('/push/subscriptions'), {
      method: 'POST',
      headers: { authorization: `Bearer ${token({ sub, role: 'authority' })}`, 'content-type': 'application/json' },
      body: JSON.stringify(subscription),
    });
    expect(res.status).toBe(201);
    return subscription;
  }

  it('a claimer killed mid-push: the next one does only what is left (each pending user one redelivery, one accepted push; one event)', async () => {
    const [a] = replicas;
    const bobPush = await subscribePush(a, 'kl-bob');
    const danPush = await subscribePush(a, 'kl-dan');
    const carlPush = await subscribePush(a, 'kl-carl');
    // bob's push service holds the first push open (the claimer is mid-push when killed), then accepts; dan's accepts.
    let bobHeld = false;
    push.answer = (p) => {
      if (p.subscription !== PushService.idOf(bobPush) || bobHeld) return 201;
      bobHeld = true;
      return 'hang';
    };
    // bob and dan on every replica: whichever claims (and dies), the others' connections show what was redelivered.
    const sockets: Record<string, Map<string, TestClient>> = { 'kl-bob': new Map(), 'kl-dan': new Map() };
    for (const sub of ['kl-bob', 'kl-dan']) {
      for (const replica of replicas) {
        const client = await alertsEndpoint((p) => replica.ws(p), sub);
        clients.push(client);
        await client.ofType('welcome');
        sockets[sub].set(replica.name, client);
      }
    }
    const carl = await alertsEndpoint((p) => a.ws(p), 'kl-carl');
    clients.push(carl);
    await carl.ofType('welcome');

    const published = await postAlert((p) => a.internal(p), { data: { text: 'mid-push' }, users: ['kl-bob', 'kl-dan', 'kl-carl'], ack: { within_s: 2 } });
    expect(published.status).toBe(202);
    const { id } = published.body as { id: string };
    for (const sub of ['kl-bob', 'kl-dan']) for (const client of sockets[sub].values()) await client.ofType('alert');
    carl.send({ type: 'ack', id: (await carl.ofType('alert')).id });
    await eventually(async () => (await receipts((p) => a.internal(p), id)).body.acked?.length === 1, 5000, 'carl acked');

    // The controlled point: bob's push held open by the push service, dan's accepted.
    await push.until(() => push.hangingCount === 1 && push.for(danPush).length === 1, 10_000, 'bob\'s push held, dan\'s accepted');
    const claimer = sender(push.for(bobPush)[0]);
    expect(sender(push.for(danPush)[0])).toBe(claimer);
    // Its record of dan's push reaches Redis a moment after the push service answered: wait for the claimer's line.
    await eventually(() => claimer.logs({ event: 'alert_escalation_progress', alert: id, step: 'pushed' }).length > 0, 3000, 'dan\'s push recorded').catch(() => undefined);
    await claimer.kill();

    // Another replica takes the escalation over when the lease ends, and pushes to bob again.
    await push.until(() => push.for(bobPush).some((p) => p.answered === 201), 20_000, 'bob\'s push accepted, sent by a survivor');
    const retaken = push.for(bobPush).find((p) => p.answered === 201)!;
    expect(sender(retaken)).not.toBe(claimer);
    await eventually(() => live().some((r) => r.logs({ event: 'alert_escalated', alert: id }).length > 0), 5000, 'a survivor settled the escalation');
    // More poll rounds on the survivors bring nothing more.
    const later = Date.now() + 2000;
    await eventually(() => Date.now() > later, 4000, 'more poll rounds');

    expect(push.invalid).toEqual([]);
    // bob: the held push and the one the survivor sent, the same message under the same Topic (a push service
    // that still holds the first replaces it, RFC 8030 §5.4); accepted once. dan: once. carl acked: none.
    expect(push.for(bobPush).map((p) => p.answered)).toEqual(['hang', 201]);
    expect(push.for(bobPush)[1].payload).toEqual(push.for(bobPush)[0].payload);
    expect(push.for(bobPush)[0].topic).toMatch(/^[A-Za-z0-9_-]{1,32}$/);
    expect(push.for(bobPush)[1].topic).toBe(push.for(bobPush)[0].topic);
    expect(push.for(danPush).map((p) => p.payload)).toEqual([{ type: 'alert', id, data: { text: 'mid-push' } }]);
    expect(push.for(carlPush)).toEqual([]);
    // One redelivery per surviving connection of each pending user.
    for (const sub of ['kl-bob', 'kl-dan']) {
      for (const replica of live()) {
        const redelivered = sockets[sub].get(replica.name)!.frames.filter((f: any) => f.type === 'alert' && f.redelivered === true);
        expect([sub, replica.name, redelivered.length]).toEqual([sub, replica.name, 1]);
      }
    }
    const events = receiver.received.filter((r) => r.type === 'alert.unacknowledged' && r.data.id === id);
    expect(events).toHaveLength(1);
    expect(events[0].data).toEqual({ id, pending: ['kl-bob', 'kl-dan'], within_s: 2 });
  }, 60_000);

  it('pushes at once to a user it reached on no socket even when the publishing replica dies within that second', async () => {
    push.answer = () => 201;
    const [publisher, survivor] = live();
    const zedPush = await subscribePush(survivor, 'kl-zed');
    const annPush = await subscribePush(survivor, 'kl-ann');
    const ann = await alertsEndpoint((p) => survivor.ws(p), 'kl-ann');
    clients.push(ann);
    await ann.ofType('welcome');
    const published = await postAlert((p) => publisher.internal(p), { data: { text: 'publisher dies' }, users: ['kl-zed', 'kl-ann'] });
    expect(published.status).toBe(202);
    await publisher.kill();
    await ann.ofType('alert');
    await push.until(() => push.for(zedPush).length > 0, 5000, 'the push to kl-zed, from the survivor');
    expect(push.for(zedPush)[0].payload).toEqual({ type: 'alert', id: published.body.id, data: { text: 'publisher dies' } });
    expect(sender(push.for(zedPush)[0])).toBe(survivor);
    const later = Date.now() + 2000;
    await eventually(() => Date.now() > later, 4000, 'more poll rounds');
    expect(push.for(zedPush)).toHaveLength(1);
    expect(push.for(annPush)).toEqual([]);
    expect(push.invalid).toEqual([]);
  }, 30_000);

  it('answers an ack unavailable while Redis is down, and records a new one once it is back', async () => {
    const [replica] = live();
    const eve = await alertsEndpoint((p) => replica.ws(p), 'kl-eve');
    clients.push(eve);
    await eve.ofType('welcome');
    const before = await postAlert((p) => replica.internal(p), { data: { text: 'before the outage' }, users: ['kl-eve'], ack: { within_s: 600 } });
    const frame = await eve.ofType('alert');
    await redis.kill();
    await eventually(async () => (await replica.readyStatus()) === 503, 10_000, 'the replica sees Redis gone');
    eve.send({ type: 'ack', id: frame.id });
    const error = await eve.ofType('error');
    expect(error.payload).toEqual({ code: 'unavailable', message: 'acks cannot be recorded right now (Redis is unreachable); send it again shortly' });
    expect((await receipts((p) => replica.internal(p), before.body.id)).status).toBe(503);

    await redis.restart();
    await eventually(async () => (await replica.readyStatus()) === 200, 15_000, 'the replica back on Redis');
    // This redis-server keeps nothing across a restart (no persistence): the receipts of before are gone with it.
    const after = await postAlert((p) => replica.internal(p), { data: { text: 'after the outage' }, users: ['kl-eve'], ack: { within_s: 600 } });
    expect(after.status).toBe(202);
    const next = await eve.take((f) => f.type === 'alert' && f.data?.text === 'after the outage');
    eve.send({ type: 'ack', id: next.id });
    await eventually(async () => (await receipts((p) => replica.internal(p), after.body.id)).body.acked?.length === 1, 5000, 'the ack after the outage');
    expect(eve.frames.filter((f: any) => f.type === 'error')).toEqual([]);
  }, 40_000);
});
