import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type TestClient } from '../support/clients';
import { clusterDeployment, embeddedDeployment, type Deployment } from '../support/deployment';
import type { RedisProcess } from '../support/redis';
import { token } from '../support/tokens';

jest.setTimeout(60_000);

/**
 * `/ws` (SPEC v3 "One connection, many channels"), and a namespace added in a file with no code (`ward`), used
 * through `/ws`, the server API and Redis, on both modes.
 */
const FILE = join(mkdtempSync(join(tmpdir(), 'rt-ws-')), 'channels.yaml');
writeFileSync(
  FILE,
  [
    'namespaces:',
    '  ward:',
    '    history: { size: 100, ttl_s: 3600 }',
    '    subscribe: { mode: claim, roles: [nurse, doctor] }',
    '    publish: members',
    '    max_message_bytes: 200',
    '  news:',
    '    history: { size: 0 }',
    '  lounge:',
    '    presence: true',
    '    join_leave: true',
    '    publish: members',
  ].join('\n'),
);

type Frame = Record<string, any>;
const modes: [string, () => Promise<Deployment & { redis?: RedisProcess }>][] = [
  ['embedded', () => embeddedDeployment({ CHANNELS_FILE: FILE, MAX_SUBSCRIPTIONS_PER_CONNECTION: '5', RATE_LIMIT_PER_SEC: '100000', RATE_LIMIT_BURST: '100000' })],
  ['cluster', () => clusterDeployment({ CHANNELS_FILE: FILE, MAX_SUBSCRIPTIONS_PER_CONNECTION: '5', RATE_LIMIT_PER_SEC: '100000', RATE_LIMIT_BURST: '100000' })],
];

describe.each(modes)('/ws, %s', (_mode, deploy) => {
  let d: Deployment & { redis?: RedisProcess };
  const open: TestClient[] = [];
  let n = 0;
  beforeAll(async () => {
    d = await deploy();
  });
  afterAll(async () => {
    for (const client of open) client.ws.terminate();
    await d.close();
  });
  const fresh = (prefix: string) => `${prefix}-${++n}-${Date.now()}`;
  const internal = (path: string) => (d.mode === 'cluster' ? (d as any).replicas[0].internal(path) : (d as any).gateway.internal(path));
  async function ws(replica: number, claims: Record<string, unknown>): Promise<TestClient> {
    const client = await connect(d.ws(replica, '/ws'), { protocols: ['bearer', token(claims)] });
    open.push(client);
    return client;
  }
  const forChannel = (client: TestClient, type: string, channel: string) => client.take<Frame>((f) => f.type === type && f.channel === channel);
  const errorFor = (client: TestClient, channel: string) => client.take<Frame>((f) => f.type === 'error' && f.payload?.channel === channel);
  async function subscribe(client: TestClient, channel: string, extra: Record<string, string> = {}): Promise<Frame> {
    client.send({ type: 'subscribe', channel, ...extra });
    return forChannel(client, 'subscribed', channel);
  }
  async function publish(channel: string, data: object): Promise<{ status: number; body: Frame }> {
    const res = await fetch(internal('/api/publish'), {
      method: 'POST',
      headers: { authorization: `Bearer ${token({ sub: 'svc', role: 'service' })}`, 'content-type': 'application/json' },
      body: JSON.stringify({ channel, data }),
    });
    return { status: res.status, body: (await res.json()) as Frame };
  }

  it('serves a namespace added in a file: subscribe by claim, server API publications, member publications with their user', async () => {
    const ward = `ward:${fresh('w')}`;
    const nurse = await ws(0, { sub: 'nurse-1', role: 'nurse', channels: ['ward:*'] });
    const doctor = await ws(1, { sub: 'dr-1', role: 'doctor', channels: [ward] });
    const first = await subscribe(nurse, ward);
    expect(first).toEqual({ type: 'subscribed', channel: ward, epoch: expect.any(String), id: expect.any(String) });
    await subscribe(doctor, ward);
    const sent = await publish(ward, { bed: 4, note: 'fever' });
    expect(sent.status).toBe(202);
    const got = await forChannel(doctor, 'publication', ward);
    expect(got).toEqual({ type: 'publication', channel: ward, id: sent.body.id, data: { bed: 4, note: 'fever' }, ts: expect.any(Number) });
    expect(await forChannel(nurse, 'publication', ward)).toEqual(got);
    nurse.send({ type: 'publish', channel: ward, data: { bed: 4, note: 'seen' } });
    const fromNurse = await forChannel(doctor, 'publication', ward);
    expect(fromNurse).toMatchObject({ channel: ward, data: { bed: 4, note: 'seen' }, user: 'nurse-1', id: expect.any(String) });
    expect(await forChannel(nurse, 'publication', ward)).toEqual(fromNurse);

    // Resume on the other replica from the first publication: the second is replayed, then resumed:true.
    const back = await ws(1, { sub: 'nurse-1', role: 'nurse', channels: ['ward:*'] });
    await subscribe(back, ward, { since: got.id, epoch: first.epoch });
    expect(await forChannel(back, 'publication', ward)).toEqual(fromNurse);
    expect(await forChannel(back, 'resumed', ward)).toEqual({ type: 'resumed', channel: ward, recovered: true });
  });

  it('lists the namespaces of this deployment in the OpenAPI document, the file-added ones included', async () => {
    const doc = (await (await fetch(internal('/api/openapi.json'))).json()) as { info: { description: string; 'x-namespaces': { name: string; channel: string; subscribe: unknown }[] } };
    expect(doc.info['x-namespaces'].map((n) => n.channel)).toEqual(['alerts', 'user:<sub>', 'chat:<name>', 'signaling:<name>', 'ward:<name>', 'news:<name>', 'lounge:<name>']);
    expect(doc.info['x-namespaces'].find((n) => n.name === 'ward')).toEqual({
      name: 'ward', channel: 'ward:<name>', history: 100, ttl_s: 3600, presence: false, join_leave: false,
      subscribe: { mode: 'claim', roles: ['nurse', 'doctor'] }, publish: 'members', max_message_bytes: 200,
    });
    expect(doc.info['x-namespaces'].find((n) => n.name === 'alerts')?.subscribe).toEqual({ mode: 'any', roles: ['authority', 'admin'] });
    expect(doc.info.description).toContain('ward:<name>');
  });

  it('refuses each channel with its own error frame and keeps the connection serving the others', async () => {
    const ward = `ward:${fresh('w')}`;
    const client = await ws(0, { sub: 'nurse-2', role: 'nurse', channels: [ward] });
    const cases: [string, string][] = [
      [`ward:${fresh('other')}`, 'forbidden_channel'],
      ['signaling:c-1', 'forbidden_channel'],
      ['alerts', 'forbidden_channel'],
      ['user:someone-else', 'forbidden_channel'],
      ['nope:x', 'unknown_channel'],
      ['ward:a/b', 'unknown_channel'],
      ['ward:..', 'unknown_channel'],
      ['', 'unknown_channel'],
      [`chat:${'a'.repeat(300)}`, 'unknown_channel'],
    ];
    for (const [channel, code] of cases) {
      client.send({ type: 'subscribe', channel });
      expect([channel, (await errorFor(client, channel)).payload.code]).toEqual([channel, code]);
    }
    client.send({ type: 'subscribe', channel: ward, since: '1-0', epoch: 'not an epoch!' });
    expect((await errorFor(client, ward)).payload.code).toBe('invalid_message');
    await subscribe(client, ward);
    await subscribe(client, 'user:nurse-2');
    // Subscribing again answers subscribed again and delivers nothing twice.
    await subscribe(client, ward);
    const sent = await publish(ward, { once: true });
    expect(await forChannel(client, 'publication', ward)).toMatchObject({ id: sent.body.id });
    client.send({ type: 'ping' });
    await client.ofType('pong');
    expect(client.frames.filter((f: any) => f.type === 'publication')).toEqual([]);

    client.send({ type: 'publish', channel: 'news:today', data: {} });
    expect((await errorFor(client, 'news:today')).payload.code).toBe('not_subscribed');
    await subscribe(client, 'news:today');
    client.send({ type: 'publish', channel: 'news:today', data: {} });
    expect((await errorFor(client, 'news:today')).payload.code).toBe('forbidden_publish');
    client.send({ type: 'publish', channel: ward, data: { text: 'x'.repeat(300) } });
    expect((await errorFor(client, ward)).payload.code).toBe('message_too_long');
    client.send({ type: 'unsubscribe', channel: 'chat:never' });
    expect((await errorFor(client, 'chat:never')).payload.code).toBe('not_subscribed');
    expect(client.ws.readyState).toBe(client.ws.OPEN);
  });

  it('holds at most MAX_SUBSCRIPTIONS_PER_CONNECTION channels, and unsubscribe ends delivery', async () => {
    const client = await ws(0, { sub: 'reader', role: 'user' });
    const rooms = Array.from({ length: 5 }, () => `chat:${fresh('r')}`);
    for (const room of rooms) await subscribe(client, room);
    client.send({ type: 'subscribe', channel: 'news:one-too-many' });
    expect((await errorFor(client, 'news:one-too-many')).payload.code).toBe('too_many_subscriptions');
    client.send({ type: 'unsubscribe', channel: rooms[0] });
    expect(await forChannel(client, 'unsubscribed', rooms[0])).toEqual({ type: 'unsubscribed', channel: rooms[0] });
    await publish(rooms[0], { gone: true });
    const kept = await publish(rooms[1], { kept: true });
    expect(await forChannel(client, 'publication', rooms[1])).toMatchObject({ id: kept.body.id });
    expect(client.frames.filter((f: any) => f.channel === rooms[0] && f.type === 'publication')).toEqual([]);
    await subscribe(client, 'news:now');
  });

  it('answers 10,000 subscribe frames with the limit and one error each, bounded, the connection still serving', async () => {
    const client = await ws(0, { sub: 'flooder', role: 'user' });
    let errors = 0;
    // In batches the client reads as it goes: one that never reads is a slow consumer (closed 1013, documented).
    for (let batch = 0; batch < 20; batch++) {
      for (let i = batch * 500; i < (batch + 1) * 500; i++) client.send({ type: 'subscribe', channel: `news:n-${i}` });
      await errorFor(client, `news:n-${(batch + 1) * 500 - 1}`);
      errors += 1 + client.frames.filter((f: any) => f.type === 'error' && f.payload.code === 'too_many_subscriptions').length;
      client.frames.splice(0, client.frames.length, ...client.frames.filter((f: any) => f.type !== 'error'));
    }
    expect(errors).toBe(9995);
    for (let i = 0; i < 5; i++) expect(await forChannel(client, 'subscribed', `news:n-${i}`)).toEqual({ type: 'subscribed', channel: `news:n-${i}` });
    const sent = await publish('news:n-4', { still: 'here' });
    expect(sent.status).toBe(202);
    expect(await forChannel(client, 'publication', 'news:n-4')).toMatchObject({ data: { still: 'here' } });
  });

  it("answers a since from another channel with recovered:false and replays nothing of it", async () => {
    const [a, b] = [`ward:${fresh('a')}`, `ward:${fresh('b')}`];
    const client = await ws(0, { sub: 'nurse-4', role: 'nurse', channels: ['ward:*'] });
    const first = await subscribe(client, a);
    const sent = await publish(a, { n: 1 });
    await forChannel(client, 'publication', a);
    await publish(b, { n: 2 });
    client.send({ type: 'subscribe', channel: b, since: sent.body.id, epoch: first.epoch });
    await forChannel(client, 'subscribed', b);
    expect(await forChannel(client, 'resumed', b)).toEqual({ type: 'resumed', channel: b, recovered: false });
    expect(client.frames.filter((f: any) => f.channel === b && f.type === 'publication')).toEqual([]);
  });

  it('answers a resume on a live-only channel with recovered:false after subscribed (no positions to prove)', async () => {
    const client = await ws(1, { sub: 'reader-2', role: 'user' });
    client.send({ type: 'subscribe', channel: 'news:live', since: '1700000000000-0' });
    expect(await client.next()).toEqual({ type: 'subscribed', channel: 'news:live' });
    expect(await client.next()).toEqual({ type: 'resumed', channel: 'news:live', recovered: false });
    const sent = await publish('news:live', { headline: 'x' });
    expect(sent.body.id).toBeUndefined();
    expect(await forChannel(client, 'publication', 'news:live')).toEqual({ type: 'publication', channel: 'news:live', data: { headline: 'x' }, ts: expect.any(Number) });
  });

  it('sees chat rooms in the channel vocabulary: messages from the path endpoint, joins and leaves', async () => {
    const room = fresh('room');
    const channel = `chat:${room}`;
    const watcher = await ws(0, { sub: 'watcher', role: 'user' });
    await subscribe(watcher, channel);
    const member = await connect(d.ws(1, `/ws/chat/${room}`), { protocols: ['bearer', token({ sub: 'carol', role: 'user' })] });
    open.push(member);
    // The watcher is a member of the room too (chat has presence): its own join first, then carol's.
    expect(await forChannel(watcher, 'join', channel)).toEqual({ type: 'join', channel, user: 'watcher' });
    expect(await forChannel(watcher, 'join', channel)).toEqual({ type: 'join', channel, user: 'carol' });
    member.send({ type: 'message', message: 'hello' });
    const message = await member.ofType<Frame>('message');
    expect(await forChannel(watcher, 'publication', channel)).toEqual({ type: 'publication', channel, id: message.id, data: { message: 'hello' }, user: 'carol', ts: message.ts });
    watcher.send({ type: 'publish', channel, data: { text: 'from /ws' } });
    expect(await member.ofType('publication')).toMatchObject({ type: 'publication', channel, data: { text: 'from /ws' }, user: 'watcher' });
    await member.close();
    expect(await forChannel(watcher, 'leave', channel)).toEqual({ type: 'leave', channel, user: 'carol' });
  });

  it('tracks the members of a presence namespace cluster-wide: one join per user, a leave only with its last connection', async () => {
    const channel = `lounge:${fresh('l')}`;
    const ann = await ws(0, { sub: 'ann', role: 'user' });
    await subscribe(ann, channel);
    expect(await forChannel(ann, 'join', channel)).toEqual({ type: 'join', channel, user: 'ann' });
    const ben = await ws(1, { sub: 'ben', role: 'user' });
    await subscribe(ben, channel);
    expect(await forChannel(ann, 'join', channel)).toEqual({ type: 'join', channel, user: 'ben' });
    const benPhone = await ws(0, { sub: 'ben', role: 'user' });
    await subscribe(benPhone, channel);
    const presence = async () => {
      const res = await fetch(internal(`/api/channels/${channel}/presence`), { headers: { authorization: `Bearer ${token({ sub: 'svc', role: 'service' })}` } });
      const body = (await res.json()) as { members: { user: string; connections: number }[] };
      const byUser: Record<string, number> = {};
      for (const m of body.members) byUser[m.user] = (byUser[m.user] ?? 0) + m.connections;
      return byUser;
    };
    expect(await presence()).toEqual({ ann: 1, ben: 2 });
    benPhone.send({ type: 'unsubscribe', channel });
    await forChannel(benPhone, 'unsubscribed', channel);
    await ben.close();
    expect(await forChannel(ann, 'leave', channel)).toEqual({ type: 'leave', channel, user: 'ben' });
    // ben joined once and left once, however many connections it had.
    expect(ann.frames.filter((f: any) => f.channel === channel && (f.type === 'join' || f.type === 'leave'))).toEqual([]);
    expect(await presence()).toEqual({ ann: 1 });
  });

  it('makes a /ws subscriber of a chat room one of its users: listed to path members, reachable by private messages', async () => {
    const room = fresh('room');
    const channel = `chat:${room}`;
    const dora = await connect(d.ws(0, `/ws/chat/${room}`), { protocols: ['bearer', token({ sub: 'dora', role: 'user' })] });
    open.push(dora);
    await dora.ofType('welcome');
    const eli = await ws(1, { sub: 'eli', role: 'user' });
    await subscribe(eli, channel);
    expect(await dora.take((f: any) => f.type === 'system' && f.user === 'eli')).toEqual({ type: 'system', event: 'join', user: 'eli', users: ['dora', 'eli'] });
    dora.send({ type: 'private', to: 'eli', message: 'hi eli' });
    expect(await forChannel(eli, 'private', channel)).toEqual({ type: 'private', channel, from: 'dora', to: 'eli', message: 'hi eli', ts: expect.any(Number) });
    await eli.close();
    expect(await dora.take((f: any) => f.type === 'system' && f.event === 'leave')).toEqual({ type: 'system', event: 'leave', user: 'eli', users: ['dora'] });
  });

  it('tells a path connection of a user already in the room on /ws who is there, without a second join for the others', async () => {
    const room = fresh('room');
    const channel = `chat:${room}`;
    const onWs = await ws(0, { sub: 'fay', role: 'user' });
    await subscribe(onWs, channel);
    await forChannel(onWs, 'join', channel);
    const onPath = await connect(d.ws(1, `/ws/chat/${room}`), { protocols: ['bearer', token({ sub: 'fay', role: 'user' })] });
    open.push(onPath);
    expect(await onPath.take((f: any) => f.type === 'system')).toEqual({ type: 'system', event: 'join', user: 'fay', users: ['fay'] });
    onPath.send({ type: 'message', message: 'me again' });
    await forChannel(onWs, 'publication', channel);
    expect(onWs.frames.filter((f: any) => f.type === 'join')).toEqual([]);
  });

  it('takes a namespace publication from Redis, live and durable (cluster)', async () => {
    if (d.mode !== 'cluster') return expect(d.mode).toBe('embedded');
    const ward = `ward:${fresh('w')}`;
    const client = await ws(0, { sub: 'nurse-3', role: 'nurse', channels: [ward] });
    await subscribe(client, ward);
    await d.redis!.command(`PUBLISH rt:{${ward}} "{\\"data\\":{\\"live\\":1}}"`);
    expect(await forChannel(client, 'publication', ward)).toEqual({ type: 'publication', channel: ward, data: { live: 1 }, ts: expect.any(Number) });
    await d.redis!.command(`XADD rt:{${ward}}:stream MAXLEN ~ 100 * data "{\\"durable\\":1}"`);
    await d.redis!.command(`PUBLISH rt:{${ward}} "{\\"v\\":1,\\"sync\\":true}"`);
    expect(await forChannel(client, 'publication', ward)).toMatchObject({ channel: ward, data: { durable: 1 }, id: expect.any(String) });
  });
});

describe('/ws with the default rate limit', () => {
  it('takes a reconnect re-subscribing 128 channels at once (a start credit), and limits what comes after as usual', async () => {
    const d = await embeddedDeployment({ CHANNELS_FILE: FILE });
    try {
      const client = await connect(d.ws(0, '/ws'), { protocols: ['bearer', token({ sub: 'returning', role: 'user' })] });
      for (let i = 0; i < 128; i++) client.send({ type: 'subscribe', channel: `news:r-${i}` });
      for (let i = 0; i < 128; i++) await client.take((f: any) => f.type === 'subscribed' && f.channel === `news:r-${i}`);
      expect(client.frames.filter((f: any) => f.type === 'error')).toEqual([]);
      // The credit is spent: the usual burst (40) holds from here on.
      for (let i = 0; i < 60; i++) client.send({ type: 'ping' });
      expect((await client.take((f: any) => f.type === 'error')) as any).toMatchObject({ payload: { code: 'rate_limited' } });
      client.ws.terminate();
    } finally {
      await d.close();
    }
  });
});
