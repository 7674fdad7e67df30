import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import WebSocket from 'ws';
import { backoffDelay } from '../../src/client/backoff';
import type { ChannelEvents, ChannelSubscription, PublicationFrame } from '../../src/client/channel-subscription';
import type { ChannelError, GatewayError } from '../../src/client/errors';
import { RealtimeClient, type AlertFrame, type ChatFrame, type SignalFrame, type WebSocketConstructor } from '../../src/client/realtime-client';
import { connect } from '../support/clients';
import { clusterDeployment } from '../support/deployment';
import { eventually, startTestGateway, type TestGateway } from '../support/gateway';
import { freePort, ROOT } from '../support/process';
import { TcpProxy } from '../support/tcp-proxy';
import { token } from '../support/tokens';

jest.setTimeout(30_000);

const WS = WebSocket as unknown as WebSocketConstructor;

describe('client SDK: packaging', () => {
  it('is importable as realtime-gateway/client', () => {
    const { stdout } = spawnSync(process.execPath, ['-e', "process.stdout.write(Object.keys(require('realtime-gateway/client')).join(','))"], { cwd: ROOT, encoding: 'utf8' });
    expect(stdout.split(',').sort()).toEqual(['ChannelError', 'ChannelSubscription', 'GatewayError', 'RealtimeClient', 'backoffDelay']);
  });
});

describe('client SDK: backoff', () => {
  it('draws every delay from [0, min(cap, base × 2^attempt))', () => {
    const options = { baseMs: 100, capMs: 1000 };
    for (let attempt = 0; attempt < 12; attempt++) {
      const ceiling = Math.min(1000, 100 * 2 ** attempt);
      expect(backoffDelay(attempt, options, () => 0)).toBe(0);
      expect(backoffDelay(attempt, options, () => 0.999999)).toBe(ceiling - 1);
      for (let i = 0; i < 50; i++) {
        const delay = backoffDelay(attempt, options);
        expect(delay).toBeGreaterThanOrEqual(0);
        expect(delay).toBeLessThan(ceiling);
      }
    }
  });

  it('backs off within those bounds while the server is unreachable', async () => {
    const port = await freePort(); // nothing listens there
    const client = new RealtimeClient({ url: `ws://127.0.0.1:${port}/api/alerts/subscribe`, getToken: () => token(), WebSocket: WS, backoff: { baseMs: 40, capMs: 200 } });
    const delays: number[] = [];
    client.on('close', ({ reconnectInMs }) => delays.push(reconnectInMs!));
    client.connect();
    await eventually(() => delays.length >= 5, 5000, 'five retries');
    client.close();
    delays.slice(0, 5).forEach((delay, attempt) => {
      expect(delay).toBeGreaterThanOrEqual(0);
      expect(delay).toBeLessThan(Math.min(200, 40 * 2 ** attempt));
    });
  });
});

describe('client SDK against the gateway', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway();
  });
  afterAll(() => gw.close());

  it('stops and reports a typed error on 403 instead of retrying', async () => {
    const client = new RealtimeClient({ url: gw.ws('/api/alerts/subscribe'), getToken: () => token({ role: 'user' }), WebSocket: WS });
    const closes: (number | undefined)[] = [];
    client.on('close', ({ reconnectInMs }) => closes.push(reconnectInMs));
    const error = new Promise<GatewayError>((resolve) => client.on('error', resolve));
    client.connect();
    expect(await error).toMatchObject({ kind: 'http', code: 403, error: 'forbidden_role', fatal: true });
    expect(closes).toEqual([undefined]); // no reconnect scheduled
    expect(() => client.send({ type: 'ping' })).toThrow(/closed/);
  });

  it('stays closed after an operator disconnects the user (4003), and reports a ban as its own event', async () => {
    const open = (sub: string) => {
      const client = new RealtimeClient({ url: gw.ws('/api/alerts/subscribe'), getToken: () => token({ sub, role: 'authority' }), WebSocket: WS });
      const closes: { code: number; reconnectInMs: number | undefined }[] = [];
      client.on('close', ({ code, reconnectInMs }) => closes.push({ code, reconnectInMs }));
      return { client, closes, opened: new Promise<void>((resolve) => client.on('open', () => resolve())) };
    };
    const disconnect = (body: object) =>
      fetch(gw.internal('/api/disconnect'), { method: 'POST', headers: { authorization: `Bearer ${token({ sub: 'ops', role: 'admin' })}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });

    const kicked = open('kicked');
    const disconnected = new Promise<{ reason: string }>((resolve) => kicked.client.on('disconnected', resolve));
    const fatal = new Promise<GatewayError>((resolve) => kicked.client.on('error', resolve));
    kicked.client.connect();
    await kicked.opened;
    expect((await disconnect({ user: 'kicked', reason: 'policy' })).status).toBe(202);
    expect(await disconnected).toEqual({ reason: 'disconnected: policy' });
    expect(await fatal).toMatchObject({ kind: 'close', code: 4003, fatal: true });
    expect(kicked.closes).toEqual([{ code: 4003, reconnectInMs: undefined }]); // no reconnect scheduled

    expect((await disconnect({ user: 'barred', ban_seconds: 60 })).status).toBe(202);
    const barred = open('barred');
    const banned = new Promise<{ retryAfterMs: number | undefined }>((resolve) => barred.client.on('banned', resolve));
    const refused = new Promise<GatewayError>((resolve) => barred.client.on('error', resolve));
    barred.client.connect();
    expect((await banned).retryAfterMs).toBeGreaterThan(50_000);
    expect(await refused).toMatchObject({ kind: 'http', code: 403, error: 'banned', fatal: true });
    expect(barred.closes.map((c) => c.reconnectInMs)).toEqual([undefined]);
  });

  it('gets one fresh token after a refused token_expired (Node path), and gives up after a second one', async () => {
    const expired = (sub: string) => token({ sub, role: 'authority' }, { ttl: -30 });
    const tokens = [expired('a'), token({ sub: 'a', role: 'authority' })];
    let calls = 0;
    const client = new RealtimeClient({ url: gw.ws('/api/alerts/subscribe'), getToken: () => tokens[Math.min(calls++, 1)], WebSocket: WS });
    const closes: (string | number | undefined)[][] = [];
    client.on('close', ({ reason, reconnectInMs }) => closes.push([reason, reconnectInMs]));
    client.connect();
    await eventually(() => client.connected, 5000, 'the retry with the fresh token');
    expect(closes).toEqual([['HTTP 401 token_expired', 0]]);
    client.close();

    // A provider that only has expired tokens: one retry, then the typed error.
    let n = 0;
    const stale = new RealtimeClient({ url: gw.ws('/api/alerts/subscribe'), getToken: () => expired(`s${n++}`), WebSocket: WS });
    const error = new Promise<GatewayError>((resolve) => stale.on('error', resolve));
    stale.connect();
    expect(await error).toMatchObject({ kind: 'http', code: 401, error: 'token_expired', fatal: true });
    expect((await error).message).toMatch(/^refused: 401 token_expired — token expired at /);
    expect(n).toBe(2); // the first token and one fresh one: no third attempt
  });

  it('after a revocation (4001 token revoked, or a refused token_revoked) gets a new token and reconnects', async () => {
    let issued = 0;
    const tokens = ['phone-1', 'phone-1', 'phone-2', 'phone-3'];
    const client = new RealtimeClient({
      url: gw.ws('/api/alerts/subscribe'),
      getToken: () => token({ sub: 'nia', role: 'authority', jti: tokens[Math.min(issued++, tokens.length - 1)] }),
      WebSocket: WS,
    });
    const closes: (string | number | undefined)[][] = [];
    client.on('close', ({ code, reason }) => closes.push([code, reason]));
    client.connect();
    await eventually(() => client.connected, 5000, 'connected');
    const res = await fetch(gw.internal('/api/revoke'), {
      method: 'POST',
      headers: { authorization: `Bearer ${token({ sub: 'ops', role: 'admin' })}`, 'content-type': 'application/json' },
      body: JSON.stringify({ jti: 'phone-1' }),
    });
    expect(res.status).toBe(202);
    // Closed 4001; the next getToken() still gives the revoked token (refused token_revoked), the one after connects.
    await eventually(() => client.connected && issued === 3, 5000, 'reconnected with a new token');
    expect(closes).toEqual([[4001, 'token revoked'], [1006, 'HTTP 401 token_revoked']]);
    client.close();
  });

  it('notices a dead link with its heartbeat and reconnects', async () => {
    const proxy = await TcpProxy.start(gw.port);
    try {
      const client = new RealtimeClient({ url: `ws://127.0.0.1:${proxy.port}/api/alerts/subscribe`, getToken: () => token(), WebSocket: WS, heartbeatMs: 100 });
      const closes: string[] = [];
      client.on('close', ({ reason }) => closes.push(reason));
      let opens = 0;
      client.on('open', () => opens++);
      client.connect();
      await eventually(() => opens === 1, 5000, 'connected');
      proxy.freeze(); // packets vanish; TCP on either side does not notice
      await eventually(() => closes.includes('no answer to pings'), 2000, 'the dead link to be noticed');
      await eventually(() => opens === 2, 5000, 'the reconnect through a fresh connection');
      client.close();
    } finally {
      await proxy.stop();
    }
  });

  it('gets a fresh token and reconnects after 4001, queueing frames meanwhile', async () => {
    let calls = 0;
    const client = new RealtimeClient({
      url: gw.ws('/ws/chat/sdk-room'),
      getToken: () => token({ sub: 'sdk-user', role: 'user' }, { ttl: ++calls === 1 ? 1 : 3600 }),
      WebSocket: WS,
    });
    const closes: number[] = [];
    client.on('close', ({ code }) => {
      closes.push(code);
      // Sent while disconnected: queued, then delivered once the new connection is open.
      if (code === 4001) client.send({ type: 'message', message: 'after refresh' });
    });
    const chat: ChatFrame[] = [];
    client.on('chat', (frame) => chat.push(frame));
    const rejected: string[] = [];
    client.on('rejected', (frame) => rejected.push(frame.payload.code));
    client.connect();
    await eventually(() => closes.includes(4001), 5000, 'the 4001');
    await eventually(() => client.connected, 5000, 'the reconnect');
    expect(calls).toBe(2);
    await eventually(() => chat.some((f) => f.type === 'message' && f.message === 'after refresh'), 5000, 'the echo');
    expect(chat.filter((f) => f.type === 'system').map((f) => (f as { event: string }).event)).toEqual(expect.arrayContaining(['join']));
    client.send({ type: 'message', message: 'x'.repeat(501) });
    await eventually(() => rejected.includes('message_too_long'), 5000, 'the typed error frame');
    client.close();
  });
});

describe('client SDK: typed signaling events', () => {
  it('delivers peer-joined and a relayed offer as signal events', async () => {
    const gw = await startTestGateway();
    try {
      const seat = (role: 'doctor' | 'patient') =>
        new RealtimeClient({ url: gw.ws(`/ws/signaling/sdk-call/${role}`), getToken: () => token({ sub: role, role, channels: ['signaling:sdk-call'] }), WebSocket: WS });
      const doctor = seat('doctor');
      const patient = seat('patient');
      const signals: SignalFrame[] = [];
      patient.on('signal', (frame) => signals.push(frame));
      doctor.connect();
      await eventually(() => doctor.connected, 5000, 'the doctor');
      patient.connect();
      await eventually(() => signals.some((f) => f.type === 'peer-joined'), 5000, 'peer-joined');
      doctor.send({ type: 'offer', payload: { type: 'offer', sdp: 'v=0' } });
      await eventually(() => signals.some((f) => f.type === 'offer'), 5000, 'the offer');
      expect(signals).toEqual([
        { type: 'peer-joined', role: 'doctor' },
        { type: 'offer', from: 'doctor', payload: { type: 'offer', sdp: 'v=0' } },
      ]);
      doctor.close();
      patient.close();
    } finally {
      await gw.close();
    }
  });
});

describe('client SDK across a drain (two replicas)', () => {
  it('resumes on the other replica with since: no alert missed, none twice', async () => {
    const d = await clusterDeployment({ DRAIN_WINDOW_MS: '0', SHUTDOWN_GRACE_MS: '2000' });
    try {
      const [a, b] = d.replicas;
      let target = 0;
      const client = new RealtimeClient({
        url: () => d.ws(target, '/api/alerts/subscribe'),
        getToken: () => token({ sub: 'sdk-watch', role: 'authority' }),
        WebSocket: WS,
      });
      const got: string[] = [];
      const resumed: boolean[] = [];
      client.on('alert', (alert: AlertFrame) => got.push(alert.id!));
      client.on('resumed', ({ recovered }) => resumed.push(recovered));
      const closes: number[] = [];
      client.on('close', ({ code }) => {
        closes.push(code);
        target = 1; // the load balancer sends the reconnect to the surviving replica
      });
      client.connect();
      await eventually(() => client.connected, 5000, 'connected');
      const published: string[] = [];
      for (let i = 0; i < 10; i++) published.push(String((await b.publish({ data: { i } })).body.id));
      await eventually(() => got.length === 10, 5000, 'the first alerts');
      const stopping = a.stop();
      for (let i = 10; i < 30; i++) published.push(String((await b.publish({ data: { i } })).body.id));
      expect(await stopping).toBe(0);
      await eventually(() => got.length >= published.length, 10_000, 'the missed alerts');
      expect(closes[0]).toBe(1012);
      expect(resumed).toEqual([true]);
      expect(got).toEqual(published);
      client.close();
    } finally {
      await d.close();
    }
  });
});

/** The first time `handle` emits `event`. */
function nextEvent<K extends keyof ChannelEvents>(handle: ChannelSubscription, event: K): Promise<ChannelEvents[K]> {
  return new Promise((resolve) => {
    const off = handle.on(event, (value) => {
      off();
      resolve(value);
    });
  });
}

/** POST to the server API as a service; resolves with the status and body. */
async function post(url: string, body: object): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { authorization: `Bearer ${token({ sub: 'svc', role: 'service' })}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe('client SDK on /ws: many channels on one connection', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({ LOG_LEVEL: 'warn' });
  });
  afterAll(() => gw.close());
  /** Closed after each test, also a failed one: a client left open would keep reconnecting after the gateway stops. */
  const clients: RealtimeClient[] = [];
  afterEach(() => clients.splice(0).forEach((client) => client.close()));
  const wsClient = (sub: string, role: string) => {
    const client = new RealtimeClient({ url: gw.ws('/ws'), getToken: () => token({ sub, role }), WebSocket: WS });
    clients.push(client);
    return client;
  };

  it('holds two channels, publishes through a handle, refuses one channel without disturbing the others, and stops on unsubscribe', async () => {
    const client = wsClient('multi', 'authority');
    const frames: Record<string, unknown>[] = [];
    client.on('frame', (frame) => frames.push(frame));
    let opens = 0;
    client.on('open', () => opens++);
    // Made before connect(): subscribed once the connection opens.
    const alerts = client.subscribe('alerts');
    const room = client.subscribe('chat:sdk-multi');
    expect(client.subscribe('alerts')).toBe(alerts); // the same channel twice: the same handle
    const got = { alerts: [] as PublicationFrame[], room: [] as PublicationFrame[] };
    alerts.on('publication', (frame) => got.alerts.push(frame));
    room.on('publication', (frame) => got.room.push(frame));
    const subscribed = Promise.all([nextEvent(alerts, 'subscribed'), nextEvent(room, 'subscribed')]);
    client.connect();
    const [a, r] = await subscribed;
    expect(a).toEqual({ type: 'subscribed', channel: 'alerts', epoch: expect.any(String), id: expect.any(String) });
    expect(alerts.position).toEqual({ id: a.id, epoch: a.epoch });
    expect(room.position).toEqual({ id: r.id, epoch: r.epoch });

    // A channel this token may not hold: an error on its handle, which ends; the connection and the others stay.
    const consultation = client.subscribe('signaling:c-1');
    const refused = await nextEvent(consultation, 'error');
    expect(refused).toMatchObject({ name: 'ChannelError', channel: 'signaling:c-1', code: 'forbidden_channel', fatal: true });
    expect(refused.message).toBe('forbidden_channel on signaling:c-1 — role "authority" may not subscribe to signaling channels (allowed: doctor, patient)');
    expect(consultation.state).toBe('ended');
    expect(() => consultation.publish({ text: 'x' })).toThrow('the subscription to signaling:c-1 has ended (unsubscribed or refused): call client.subscribe("signaling:c-1") again');

    const alert = await post(gw.internal('/api/alerts'), { data: { level: 'red' } });
    await eventually(() => got.alerts.length === 1, 5000, 'the alert');
    expect(got.alerts[0]).toEqual({ type: 'publication', channel: 'alerts', id: alert.body.id, data: { level: 'red' }, ts: expect.any(Number) });
    expect(alerts.position).toEqual({ id: alert.body.id, epoch: a.epoch });

    room.publish({ text: 'hello' });
    await eventually(() => got.room.length === 1, 5000, 'our own publication');
    expect(got.room[0]).toEqual({ type: 'publication', channel: 'chat:sdk-multi', id: expect.any(String), data: { text: 'hello' }, user: 'multi', ts: expect.any(Number) });
    expect(room.position).toEqual({ id: got.room[0].id, epoch: r.epoch });
    expect(got.alerts).toHaveLength(1); // nothing crossed channels

    const ended = nextEvent(room, 'unsubscribed');
    room.unsubscribe();
    expect(await ended).toEqual({});
    // The server let go of it (a gauge of held channels), so nothing is sent for it any more.
    await eventually(async () => (await gw.metric('ws_subscriptions_active', { channel: 'chat' })) === 0, 5000, 'the server to drop the room');
    expect((await post(gw.internal('/api/publish'), { channel: 'chat:sdk-multi', data: { after: true } })).status).toBe(202);
    // Published after the room's message: once it is here, the room's would have been too (one socket, in order).
    await post(gw.internal('/api/alerts'), { data: { after: true } });
    await eventually(() => got.alerts.length === 2, 5000, 'the second alert');
    expect(got.room).toHaveLength(1);
    // chat has presence: the subscriber is a member of the room, and its own join comes right after subscribed.
    expect(frames.filter((f) => f.channel === 'chat:sdk-multi').map((f) => f.type)).toEqual(['subscribed', 'join', 'publication', 'unsubscribed']);
    expect(() => room.publish({})).toThrow(/call client\.subscribe\("chat:sdk-multi"\) again/);
    expect(opens).toBe(1);
  });

  it('reports joins, leaves and private messages of a room, none of which moves its position', async () => {
    const client = wsClient('watcher', 'user');
    const room = client.subscribe('chat:sdk-events');
    const events: string[] = [];
    for (const type of ['join', 'leave', 'private', 'publication'] as const) room.on(type, (frame) => events.push(`${type}:${JSON.stringify(frame)}`));
    const subscribed = nextEvent(room, 'subscribed');
    client.connect();
    const { epoch } = await subscribed;
    const member = (sub: string) => connect(gw.ws('/ws/chat/sdk-events'), { protocols: ['bearer', token({ sub, role: 'user' })] });

    // The subscriber is a member of the room (chat has presence): its own join first.
    await eventually(() => events.length === 1, 5000, 'our own join');
    expect(events).toEqual(['join:{"type":"join","channel":"chat:sdk-events","user":"watcher"}']);
    const carol = await member('carol');
    expect(await nextEvent(room, 'join')).toEqual({ type: 'join', channel: 'chat:sdk-events', user: 'carol' });
    // The same user on the path endpoint too: already in the room, so no second join.
    const me = await member('watcher');
    carol.send({ type: 'message', message: 'hi' });
    const message = await nextEvent(room, 'publication');
    expect(message).toMatchObject({ channel: 'chat:sdk-events', id: expect.any(String), data: { message: 'hi' }, user: 'carol' });
    expect(room.position).toEqual({ id: message.id, epoch });
    carol.send({ type: 'private', to: 'watcher', message: 'psst' });
    expect(await nextEvent(room, 'private')).toEqual({ type: 'private', channel: 'chat:sdk-events', from: 'carol', to: 'watcher', message: 'psst', ts: expect.any(Number) });
    await carol.close();
    expect(await nextEvent(room, 'leave')).toEqual({ type: 'leave', channel: 'chat:sdk-events', user: 'carol' });
    expect(room.position).toEqual({ id: message.id, epoch }); // only the message had an id
    expect(events.map((e) => e.split(':')[0])).toEqual(['join', 'join', 'publication', 'private', 'leave']);
    expect(events.filter((e) => e.includes('"user":"watcher"'))).toHaveLength(1); // one join, however many connections
    await me.close();
  });

  it('refuses subscribe() on a path endpoint, saying which URL to use', () => {
    const client = new RealtimeClient({ url: gw.ws('/ws/chat/lobby'), getToken: () => token(), WebSocket: WS });
    expect(() => client.subscribe('chat:lobby')).toThrow('subscribe() needs the /ws endpoint (this client\'s URL is /ws/chat/lobby): create the client with url "wss://<host>/ws"');
  });
});

/** A namespace without history (no ids, no resume), added by file like an operator would. */
const NEWS_FILE = join(mkdtempSync(join(tmpdir(), 'rt-sdk-')), 'channels.yaml');
writeFileSync(NEWS_FILE, ['namespaces:', '  news:', '    history: { size: 0 }'].join('\n'));

describe('client SDK on /ws across a drain (two replicas)', () => {
  it('resumes each channel from its own position on the other replica, and never from a message without id', async () => {
    const d = await clusterDeployment({ CHANNELS_FILE: NEWS_FILE, DRAIN_WINDOW_MS: '0', SHUTDOWN_GRACE_MS: '2000' });
    let client: RealtimeClient | undefined;
    try {
      const [a, b] = d.replicas;
      /** The frames the SDK really wrote to its socket: what it resumed from is what the server was asked. */
      const sent: Record<string, unknown>[] = [];
      class RecordingWebSocket extends WebSocket {
        override send(data: any, ...rest: any[]): void {
          if (typeof data === 'string' && data.startsWith('{')) sent.push(JSON.parse(data) as Record<string, unknown>);
          (super.send as (...args: unknown[]) => void)(data, ...rest);
        }
      }
      let target = 0;
      client = new RealtimeClient({
        url: () => d.ws(target, '/ws'),
        getToken: () => token({ sub: 'sdk-multi-watch', role: 'authority' }),
        WebSocket: RecordingWebSocket as unknown as WebSocketConstructor,
      });
      const handles = { alerts: client.subscribe('alerts'), chat: client.subscribe('chat:sdk-drain'), news: client.subscribe('news:sdk-drain') };
      const received = { alerts: [] as string[], chat: [] as string[], news: [] as number[] };
      const resumed = { alerts: [] as boolean[], chat: [] as boolean[], news: [] as boolean[] };
      handles.alerts.on('publication', (frame) => received.alerts.push(frame.id!));
      handles.chat.on('publication', (frame) => received.chat.push(frame.id!));
      const newsIds: unknown[] = [];
      handles.news.on('publication', (frame) => {
        newsIds.push(frame.id);
        received.news.push(frame.data.i as number);
      });
      for (const name of ['alerts', 'chat', 'news'] as const) handles[name].on('resumed', ({ recovered }) => resumed[name].push(recovered));
      const closes: number[] = [];
      let atClose: { alerts: unknown; chat: unknown; news: unknown; last: { alerts?: string; chat?: string } } | undefined;
      client.on('close', ({ code }) => {
        closes.push(code);
        atClose ??= { alerts: handles.alerts.position, chat: handles.chat.position, news: handles.news.position, last: { alerts: received.alerts.at(-1), chat: received.chat.at(-1) } };
        target = 1; // the load balancer sends the reconnect to the surviving replica
      });
      client.connect();
      await eventually(() => Object.values(handles).every((h) => h.state === 'subscribed'), 5000, 'the three channels');
      expect(handles.news.position).toBeUndefined();

      const published = { alerts: [] as string[], chat: [] as string[] };
      const publish = async (i: number) => {
        published.alerts.push(String((await b.publish({ data: { i } })).body.id));
        published.chat.push(String((await post(b.internal('/api/publish'), { channel: 'chat:sdk-drain', data: { i } })).body.id));
        expect((await post(b.internal('/api/publish'), { channel: 'news:sdk-drain', data: { i } })).status).toBe(202);
      };
      for (let i = 0; i < 5; i++) await publish(i);
      await eventually(() => received.news.length === 5 && received.chat.length === 5 && received.alerts.length === 5, 5000, 'the first messages');
      // The last thing this client got was a live-only message: it is not a position of anything.
      expect(handles.news.position).toBeUndefined();
      expect(handles.chat.position!.id).toBe(published.chat[4]);

      const stopping = a.stop(); // drain: 1012
      for (let i = 5; i < 20; i++) await publish(i);
      expect(await stopping).toBe(0);
      await eventually(() => received.alerts.length >= 20 && received.chat.length >= 20, 10_000, 'the missed messages of both history channels');
      await eventually(() => resumed.alerts.length === 1 && resumed.chat.length === 1, 5000, 'resumed for both');

      expect(closes[0]).toBe(1012);
      expect(received.alerts).toEqual(published.alerts); // every message of each channel, in order, once
      expect(received.chat).toEqual(published.chat);
      expect(resumed).toEqual({ alerts: [true], chat: [true], news: [] });

      // What the SDK asked for: first plain subscribes; after the drain each history channel from its own last id
      // and epoch, and the live-only channel from nothing.
      const { alerts, chat, news } = atClose!;
      expect(news).toBeUndefined();
      expect(alerts).toEqual({ id: atClose!.last.alerts, epoch: expect.any(String) });
      expect(chat).toEqual({ id: atClose!.last.chat, epoch: expect.any(String) });
      expect(sent.filter((f) => f.type === 'subscribe')).toEqual([
        { type: 'subscribe', channel: 'alerts' },
        { type: 'subscribe', channel: 'chat:sdk-drain' },
        { type: 'subscribe', channel: 'news:sdk-drain' },
        { type: 'subscribe', channel: 'alerts', since: (alerts as { id: string }).id, epoch: (alerts as { epoch: string }).epoch },
        { type: 'subscribe', channel: 'chat:sdk-drain', since: (chat as { id: string }).id, epoch: (chat as { epoch: string }).epoch },
        { type: 'subscribe', channel: 'news:sdk-drain' },
      ]);

      // The live-only channel is held again: live messages flow, in order, each at most once.
      await post(b.internal('/api/publish'), { channel: 'news:sdk-drain', data: { i: 100 } });
      await eventually(() => received.news.includes(100), 5000, 'a live news message after the reconnect');
      expect(received.news.slice(0, 5)).toEqual([0, 1, 2, 3, 4]);
      expect(received.news.every((i, k) => k === 0 || i > received.news[k - 1])).toBe(true);
      expect(received.news.at(-1)).toBe(100);
      expect(newsIds.every((id) => id === undefined)).toBe(true);
      expect(handles.news.position).toBeUndefined();
    } finally {
      client?.close();
      await d.close();
    }
  });
});

describe('client SDK on /ws while Redis is down', () => {
  it('retries a subscribe refused with unavailable, with its backoff, until Redis is back', async () => {
    const d = await clusterDeployment({}, 1);
    let client: RealtimeClient | undefined;
    try {
      const [replica] = d.replicas;
      const before = String((await replica.publish({ data: { before: true } })).body.id);
      client = new RealtimeClient({ url: d.ws(0, '/ws'), getToken: () => token({ sub: 'sdk-outage', role: 'authority' }), WebSocket: WS, backoff: { baseMs: 100, capMs: 400 } });
      const opened = new Promise((resolve) => client!.on('open', resolve));
      client.connect();
      await opened;
      await d.redis.kill();
      await eventually(async () => (await replica.readyStatus()) === 503, 10_000, 'the replica to see Redis gone');

      // Resuming needs the history, which is in Redis: refused for the moment, and tried again by the SDK.
      const alerts = client.subscribe('alerts', { since: before });
      const errors: ChannelError[] = [];
      alerts.on('error', (error) => errors.push(error));
      const resumed = nextEvent(alerts, 'resumed');
      await eventually(() => errors.length >= 3, 10_000, 'three refused subscribes');
      expect(errors.map((e) => [e.code, e.fatal])).toEqual(errors.map(() => ['unavailable', false]));
      const delays = errors.map((e) => Number(/\(retrying in (\d+) ms\)$/.exec(e.message)![1]));
      delays.forEach((delay, attempt) => expect(delay).toBeLessThan(Math.min(400, 100 * 2 ** attempt)));
      expect(alerts.state).not.toBe('ended');

      // Redis is back, empty: the subscribe goes through, and says the history it resumed from is gone.
      await d.redis.restart();
      expect(await resumed).toEqual({ recovered: false });
      expect(alerts.state).toBe('subscribed');
      expect(client.connected).toBe(true); // the connection stayed throughout
    } finally {
      client?.close();
      await d.close();
    }
  });
});

/** Debian's chromium; `.ci/run` installs it when missing (no browser download is possible here). */
const CHROMIUM = '/usr/bin/chromium';

interface Outcome {
  events: Array<{ open?: true; close?: { code: number; reason: string; reconnectInMs?: number }; error?: Record<string, unknown> }>;
  calls: number;
}

/**
 * Runs the SDK bundle (/demo/client.js) in the page: connects to `url` with getToken() handing out `tokens` in
 * turn (the last one again and again), and resolves at the first open or fatal error with what was emitted.
 */
function inBrowser(page: Page, url: string, tokens: string[], backoff = { baseMs: 100, capMs: 200 }): Promise<Outcome> {
  return page.evaluate(
    ({ url, tokens, backoff }) =>
      new Promise<Outcome>((resolve) => {
        const { RealtimeClient } = (globalThis as unknown as { RealtimeGateway: typeof import('../../src/client') }).RealtimeGateway;
        let calls = 0;
        const events: Outcome['events'] = [];
        const client = new RealtimeClient({ url, getToken: () => tokens[Math.min(calls++, tokens.length - 1)], backoff });
        const done = () => resolve({ events, calls });
        client.on('open', () => {
          events.push({ open: true });
          client.close();
          done();
        });
        client.on('close', ({ code, reason, reconnectInMs }) => events.push({ close: { code, reason, reconnectInMs } }));
        client.on('error', (e) => {
          events.push({ error: { name: e.name, kind: e.kind, code: e.code, error: e.error, fatal: e.fatal, message: e.message } });
          if (e.fatal) done();
        });
        client.connect();
      }),
    { url, tokens, backoff },
  );
}

describe('client SDK in headless Chromium: why an upgrade was refused', () => {
  let browser: Browser;
  let home: TestGateway; // serves the page and the bundle
  let gw: TestGateway; // another origin: the gateway the page connects to (CORS)
  let page: Page;
  beforeAll(async () => {
    [home, gw] = await Promise.all([startTestGateway(), startTestGateway()]);
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
  });
  afterAll(async () => {
    await browser?.close();
    await Promise.all([home?.close(), gw?.close()]);
  });
  beforeEach(async () => {
    page = await browser.newPage();
    await page.goto(home.internal('/healthz')); // the SDK bundle is served on the internal port
    await page.addScriptTag({ url: '/demo/client.js' });
  });
  afterEach(() => page.close());

  it('reports a forged token as the typed fatal error (401 token_invalid), across origins, without the token', async () => {
    const forged = token({}, { secret: 'another-secret-of-at-least-32-bytes!!' });
    const { events } = await inBrowser(page, gw.ws('/api/alerts/subscribe'), [forged]);
    expect(events).toEqual([
      { close: { code: 1006, reason: 'HTTP 401 token_invalid', reconnectInMs: undefined } },
      { error: expect.objectContaining({ name: 'GatewayError', kind: 'http', code: 401, error: 'token_invalid', fatal: true }) },
    ]);
    expect(events[1].error!.message).toMatch(/^refused: 401 token_invalid — /);
    expect(JSON.stringify(events)).not.toContain(forged);
    expect(gw.rawLogs.join('\n')).not.toContain(forged);
  });

  it('also when the token is in the query: the question carries it in Authorization, not the URL', async () => {
    const asked: { url: string; authorization?: string }[] = [];
    page.on('request', (request) => {
      if (request.resourceType() === 'fetch') void request.allHeaders().then((h) => asked.push({ url: request.url(), authorization: h.authorization }));
    });
    const jwt = token({ role: 'patient' });
    const { events } = await page.evaluate(
      ({ url, jwt }) =>
        new Promise<Outcome>((resolve) => {
          const { RealtimeClient } = (globalThis as unknown as { RealtimeGateway: typeof import('../../src/client') }).RealtimeGateway;
          const events: Outcome['events'] = [];
          const client = new RealtimeClient({ url, getToken: () => jwt, tokenIn: 'query' });
          client.on('error', (e) => {
            events.push({ error: { kind: e.kind, code: e.code, error: e.error, fatal: e.fatal } });
            resolve({ events, calls: 0 });
          });
          client.connect();
        }),
      { url: gw.ws('/api/alerts/subscribe'), jwt },
    );
    expect(events).toEqual([{ error: { kind: 'http', code: 403, error: 'forbidden_role', fatal: true } }]);
    await eventually(() => asked.length > 0, 2000, 'the recorded question');
    expect(asked).toEqual([{ url: gw.http('/api/alerts/subscribe'), authorization: `Bearer ${jwt}` }]);
  });

  it('token_expired: one fresh token from getToken(), then connected; a provider with nothing fresher gives up', async () => {
    const expired = token({ sub: 'late' }, { ttl: -30 });
    const fresh = await inBrowser(page, gw.ws('/api/alerts/subscribe'), [expired, token({ sub: 'late' })]);
    expect(fresh.events).toEqual([{ close: { code: 1006, reason: 'HTTP 401 token_expired', reconnectInMs: 0 } }, { open: true }]);
    expect(fresh.calls).toBe(2);

    const same = await inBrowser(page, gw.ws('/api/alerts/subscribe'), [expired]);
    expect(same.events).toEqual([
      { close: { code: 1006, reason: 'HTTP 401 token_expired', reconnectInMs: undefined } },
      { error: expect.objectContaining({ kind: 'http', code: 401, error: 'token_expired', fatal: true }) },
    ]);
    expect(same.events[1].error!.message).toMatch(/^refused: 401 token_expired — token expired at .*; get a new one$/);
  });

  it('retryable refusals keep retrying: 429 honours Retry-After; a taken seat (the question answers 426) backs off as before', async () => {
    const limited = await startTestGateway({ MAX_UPGRADES_PER_IP_PER_SEC: '1' });
    try {
      await page.evaluate((url) => fetch(url, { mode: 'no-cors' }).then(() => undefined), limited.http('/api/alerts/subscribe')); // uses this second's one
      const { events } = await inBrowser(page, limited.ws('/api/alerts/subscribe'), [token()]);
      expect(events[0].close).toMatchObject({ code: 1006, reason: 'HTTP 429 too_many_upgrades' });
      expect(events[0].close!.reconnectInMs).toBeGreaterThanOrEqual(1000);
      expect(events.at(-1)).toEqual({ open: true });
    } finally {
      await limited.close();
    }

    const twin = new RealtimeClient({ url: gw.ws('/ws/chat/sdk-seat'), getToken: () => token({ sub: 'twin', role: 'user' }), WebSocket: WS });
    twin.connect();
    await eventually(() => twin.connected, 5000, 'the first seat');
    setTimeout(() => twin.close(), 1000); // the seat frees up after a few retries
    const { events } = await inBrowser(page, gw.ws('/ws/chat/sdk-seat'), [token({ sub: 'twin', role: 'user' })]);
    const closes = events.filter((e) => e.close).map((e) => e.close!);
    expect(closes.length).toBeGreaterThanOrEqual(2);
    for (const close of closes) expect(close).toMatchObject({ code: 1006, reason: '' });
    for (const close of closes) expect(close.reconnectInMs).toBeLessThan(200);
    expect(events.at(-1)).toEqual({ open: true });
    expect(await gw.metric('ws_upgrades_rejected_total', { gateway: 'chat', status: '426', error: 'upgrade_required' })).toBeGreaterThanOrEqual(2);
  });
});

describe('client SDK: acknowledging alerts (SPEC v3 receipts)', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({ LOG_LEVEL: 'warn' });
  });
  afterAll(() => gw.close());
  const clients: RealtimeClient[] = [];
  afterEach(() => clients.splice(0).forEach((client) => client.close()));
  const make = (path: string, sub: string, role: string, extra: Partial<ConstructorParameters<typeof RealtimeClient>[0]> = {}) => {
    const client = new RealtimeClient({ url: gw.ws(path), getToken: () => token({ sub, role }), WebSocket: WS, ...extra });
    clients.push(client);
    return client;
  };
  const acked = async (id: string) => {
    const res = await fetch(gw.internal(`/api/alerts/${id}/receipts`), { headers: { authorization: `Bearer ${token({ sub: 'svc', role: 'service' })}` } });
    return res.status === 200 ? ((await res.json()) as { acked: { user: string }[] }).acked.map((a) => a.user) : [];
  };
  const nextAlert = (client: RealtimeClient) => new Promise<AlertFrame>((resolve) => {
    const off = client.on('alert', (alert) => (off(), resolve(alert)));
  });
  const once = <T>(client: RealtimeClient, event: 'welcome' | 'rejected') =>
    new Promise<T>((resolve) => {
      const off = client.on(event, (value) => (off(), resolve(value as T)));
    });

  it('alerts endpoint: ack(id, channel) of a personal alert is recorded; an unknown id comes back as rejected unknown_alert', async () => {
    const client = make('/api/alerts/subscribe', 'sdk-ack-ann', 'authority');
    client.connect();
    await once(client, 'welcome');
    const alert = nextAlert(client);
    const published = await post(gw.internal('/api/alerts'), { data: { text: 'confirm' }, users: ['sdk-ack-ann'], ack: { within_s: 600 } });
    const frame = await alert;
    expect(frame).toMatchObject({ channel: 'user:sdk-ack-ann', ack: true });
    client.ack(frame.id!, frame.channel);
    await eventually(async () => (await acked(published.body.id as string)).length === 1, 5000, 'the ack');
    const rejected = once<{ payload: { code: string } }>(client, 'rejected');
    client.ack('1-0');
    expect((await rejected).payload.code).toBe('unknown_alert');
    expect(() => client.ack('')).toThrow(TypeError);
  });

  it('alerts endpoint: autoAck acks what asks for it, and a redelivered alert does not move the resume position', async () => {
    const client = make('/api/alerts/subscribe', 'sdk-auto', 'authority', { autoAck: true });
    client.connect();
    await once(client, 'welcome');
    const first = nextAlert(client);
    const plain = await post(gw.internal('/api/alerts'), { data: { n: 1 }, roles: ['authority'] });
    expect((await first).ack).toBeUndefined();
    const second = nextAlert(client);
    const asking = await post(gw.internal('/api/alerts'), { data: { n: 2 }, roles: ['authority'], ack: { within_s: 600 } });
    expect((await second).ack).toBe(true);
    await eventually(async () => (await acked(asking.body.id as string)).includes('sdk-auto'), 5000, 'the automatic ack');
    expect(client.lastAlertId).toBe(asking.body.id);
    expect(plain.status).toBe(202);
    // An escalation's copy: a user who never acks gets it again; the position stays where it was.
    const other = make('/api/alerts/subscribe', 'sdk-late', 'authority');
    other.connect();
    await once(other, 'welcome');
    const original = nextAlert(other);
    const late = await post(gw.internal('/api/alerts'), { data: { n: 3 }, users: ['sdk-late'], ack: { within_s: 1 } });
    const delivered = await original;
    const later = await post(gw.internal('/api/alerts'), { data: { n: 4 }, users: ['sdk-late'] });
    await eventually(() => other.userPosition?.id === later.body.id, 5000, 'the position after the later alert');
    const again = await nextAlert(other);
    expect(again).toMatchObject({ id: delivered.id, redelivered: true });
    expect(other.userPosition?.id).toBe(later.body.id);
    expect(late.status).toBe(202);
  });

  it('/ws: a handle\'s ack(id), and autoAck over WebSocket and over SSE', async () => {
    const manual = make('/ws', 'sdk-ws-bob', 'patient');
    manual.connect();
    const handle = manual.subscribe('user:sdk-ws-bob');
    await nextEvent(handle, 'subscribed');
    const publication = nextEvent(handle, 'publication');
    const one = await post(gw.internal('/api/alerts'), { data: { text: 'ws' }, users: ['sdk-ws-bob'], ack: { within_s: 600 } });
    const frame = await publication;
    expect(frame.ack).toBe(true);
    handle.ack(frame.id!);
    await eventually(async () => (await acked(one.body.id as string)).length === 1, 5000, 'the handle ack');
    const refused = nextEvent(handle, 'error');
    handle.ack('1-0');
    expect(await refused).toMatchObject({ code: 'unknown_alert', fatal: false });
    expect(handle.state).toBe('subscribed');

    for (const transport of ['websocket', 'sse'] as const) {
      const sub = `sdk-auto-${transport}`;
      const client = make('/ws', sub, 'patient', { autoAck: true, transport });
      client.connect();
      const auto = client.subscribe(`user:${sub}`);
      await nextEvent(auto, 'subscribed');
      expect(client.transport).toBe(transport);
      const got = nextEvent(auto, 'publication');
      const published = await post(gw.internal('/api/alerts'), { data: { text: transport }, users: [sub], ack: { within_s: 600 } });
      await got;
      await eventually(async () => (await acked(published.body.id as string)).includes(sub), 5000, `the automatic ack over ${transport}`);
    }
  });

  it('autoAck after a resume that replays 50 alerts asking for ack: all acked, none refused by the rate limit', async () => {
    const sub = 'sdk-replay';
    const ids: string[] = [];
    const first = make('/api/alerts/subscribe', sub, 'authority');
    first.connect();
    await once(first, 'welcome');
    const position = first.userPosition!;
    first.close();
    for (let i = 0; i < 50; i++) ids.push((await post(gw.internal('/api/alerts'), { data: { i }, users: [sub], ack: { within_s: 600 } })).body.id as string);
    const rejected: unknown[] = [];
    const client = make(`/api/alerts/subscribe?user_since=${position.id}&user_epoch=${position.epoch}`, sub, 'authority', { autoAck: true });
    client.on('rejected', (frame) => rejected.push(frame));
    client.connect();
    await eventually(async () => (await Promise.all(ids.map(acked))).every((users) => users.includes(sub)), 15_000, 'every replayed alert acked');
    expect(rejected).toEqual([]);
  });
});
