import WebSocket from 'ws';
import type { ChannelEvents, ChannelSubscription, PublicationFrame } from '../../src/client/channel-subscription';
import type { ChannelError, GatewayError } from '../../src/client/errors';
import { RealtimeClient, type ClientOptions, type WebSocketConstructor } from '../../src/client/realtime-client';
import { clusterDeployment } from '../support/deployment';
import { eventually, startTestGateway, type TestGateway } from '../support/gateway';
import { freePort } from '../support/process';
import { token } from '../support/tokens';
import { UpgradeBlocker } from '../support/upgrade-blocker';

jest.setTimeout(60_000);

const WS = WebSocket as unknown as WebSocketConstructor;

/** The first time `handle` emits `event`. */
function nextEvent<K extends keyof ChannelEvents>(handle: ChannelSubscription, event: K): Promise<ChannelEvents[K]> {
  return new Promise((resolve) => {
    const off = handle.on(event, (value) => {
      off();
      resolve(value);
    });
  });
}

async function post(url: string, body: object): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { authorization: `Bearer ${token({ sub: 'svc', role: 'service' })}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

type Close = { code: number; reason: string; reconnectInMs: number | undefined };

describe('client SDK on /ws behind a middlebox that breaks WebSocket', () => {
  let gw: TestGateway;
  let blocker: UpgradeBlocker;
  const clients: RealtimeClient[] = [];
  beforeAll(async () => {
    gw = await startTestGateway({ LOG_LEVEL: 'warn' });
  });
  beforeEach(async () => {
    blocker = await UpgradeBlocker.start(gw.port, 'reset');
  });
  afterEach(async () => {
    clients.splice(0).forEach((client) => client.close());
    await blocker.stop();
  });
  afterAll(() => gw.close());

  const client = (sub: string, options: Partial<ClientOptions> = {}) => {
    const made = new RealtimeClient({ url: blocker.ws('/ws'), getToken: () => token({ sub, role: 'authority' }), WebSocket: WS, backoff: { baseMs: 50, capMs: 100 }, ...options });
    const closes: Close[] = [];
    made.on('close', (close) => closes.push(close));
    clients.push(made);
    return { client: made, closes };
  };

  it('upgrades reset before open: switches to SSE by itself, and subscribes, receives, publishes and is refused a channel as on WebSocket', async () => {
    const { client: c, closes } = client('behind-middlebox');
    const alerts = c.subscribe('alerts');
    const room = c.subscribe('chat:sse-room');
    const subscribed = Promise.all([nextEvent(alerts, 'subscribed'), nextEvent(room, 'subscribed')]);
    const opened = new Promise<string>((resolve) => c.on('open', () => resolve(c.transport)));
    c.connect();
    expect(await opened).toBe('sse');
    const [a, r] = await subscribed;
    // Two upgrades reset in a row while a plain GET reached the gateway, then SSE at once.
    expect(blocker.upgrades).toBe(2);
    expect(closes).toEqual([
      { code: 1006, reason: '', reconnectInMs: expect.any(Number) },
      { code: 1006, reason: 'WebSocket unavailable (the upgrade was cut before open twice in a row; plain HTTP gets through): switching to SSE', reconnectInMs: 0 },
    ]);
    expect(a).toEqual({ type: 'subscribed', channel: 'alerts', epoch: expect.any(String), id: expect.any(String) });
    expect(alerts.position).toEqual({ id: a.id, epoch: a.epoch });
    expect(await gw.metric('ws_connections_active', { gateway: 'sse' })).toBe(1);
    expect(await gw.metric('ws_connections_active', { gateway: 'ws' })).toBe(0);

    // Received: an alert published over HTTP, on its handle, moving its position.
    const got = { alerts: [] as PublicationFrame[], room: [] as PublicationFrame[] };
    alerts.on('publication', (frame) => got.alerts.push(frame));
    room.on('publication', (frame) => got.room.push(frame));
    const alert = await post(gw.internal('/api/alerts'), { data: { level: 'red' } });
    await eventually(() => got.alerts.length === 1, 5000, 'the alert over SSE');
    expect(got.alerts[0]).toEqual({ type: 'publication', channel: 'alerts', id: alert.body.id, data: { level: 'red' }, ts: expect.any(Number) });
    expect(alerts.position).toEqual({ id: alert.body.id, epoch: a.epoch });

    // Published: through POST /sse/send, back on the stream with our user.
    room.publish({ text: 'through the proxy' });
    await eventually(() => got.room.length === 1, 5000, 'our own publication');
    expect(got.room[0]).toEqual({ type: 'publication', channel: 'chat:sse-room', id: expect.any(String), data: { text: 'through the proxy' }, user: 'behind-middlebox', ts: expect.any(Number) });
    expect(room.position).toEqual({ id: got.room[0].id, epoch: r.epoch });

    // A channel this token may not hold: its own fatal error, the stream and the other channels stay.
    const consultation = c.subscribe('signaling:c-1');
    const refused: ChannelError = await nextEvent(consultation, 'error');
    expect(refused).toMatchObject({ channel: 'signaling:c-1', code: 'forbidden_channel', fatal: true });
    expect(consultation.state).toBe('ended');

    // A plain send (the ping every endpoint answers) goes the same way; its answer comes on the stream.
    const pong = new Promise<Record<string, unknown>>((resolve) => c.on('frame', (frame) => frame.type === 'pong' && resolve(frame)));
    c.send({ type: 'ping' });
    expect(await pong).toEqual({ type: 'pong', ts: expect.any(Number) });

    // Unsubscribed: the server lets go, so nothing more of the room comes.
    room.unsubscribe();
    await eventually(async () => (await gw.metric('ws_subscriptions_active', { channel: 'chat' })) === 0, 5000, 'the server to drop the room');
    expect(c.transport).toBe('sse');
    expect(blocker.requests('GET /sse')).toHaveLength(1); // one stream throughout
    expect(blocker.requests('POST /sse/send').length).toBeGreaterThanOrEqual(4); // signaling subscribe, publish, ping, unsubscribe
    // The token travels in Authorization, never in a URL.
    expect(blocker.requests('GET /sse')[0].headers).toContain('authorization');
  });

  it('sends the server does not take: 404 unknown_session goes again on the next stream, once; 413 is an error on its handle', async () => {
    const { client: c, closes } = client('sends-again', { transport: 'sse' });
    const room = c.subscribe('chat:sse-sends');
    const got: PublicationFrame[] = [];
    room.on('publication', (frame) => got.push(frame));
    const errors: ChannelError[] = [];
    room.on('error', (error) => errors.push(error));
    c.connect();
    await nextEvent(room, 'subscribed');

    // Too large for MAX_MESSAGE_BYTES: refused with 413 for the frame; the stream stays, nothing is retried.
    room.publish({ text: 'x'.repeat(70_000) });
    await eventually(() => errors.length === 1, 5000, 'the refused send');
    expect(errors[0]).toMatchObject({ channel: 'chat:sse-sends', code: 'too_large', fatal: false });
    expect(room.state).toBe('subscribed');

    // The gateway's side of the stream goes; the client's stays open and silent. The next send is 404
    // unknown_session: the SDK closes that stream, opens another with its cursor, and sends the frame there.
    blocker.orphanStreams();
    await eventually(async () => (await gw.metric('ws_connections_active', { gateway: 'sse' })) === 0, 5000, 'the gateway to see the stream go');
    const resubscribed = nextEvent(room, 'subscribed');
    room.publish({ text: 'sent twice, delivered once' });
    await resubscribed;
    await eventually(() => got.length === 1, 5000, 'the publication through the second stream');
    expect(got[0]).toMatchObject({ data: { text: 'sent twice, delivered once' }, user: 'sends-again' });
    expect(closes).toEqual([{ code: 1006, reason: 'the server no longer knows this stream', reconnectInMs: expect.any(Number) }]);
    expect(blocker.requests('GET /sse')).toHaveLength(2);
    expect(blocker.requests('GET /sse')[1].headers).toContain('last-event-id');
    await post(gw.internal('/api/publish'), { channel: 'chat:sse-sends', data: { after: true } });
    await eventually(() => got.length === 2, 5000, 'a later publication');
    expect(got.map((frame) => frame.data)).toEqual([{ text: 'sent twice, delivered once' }, { after: true }]);
    expect(errors).toHaveLength(1);
  });

  it('an upgrade held without an answer: SSE after upgradeTimeoutMs', async () => {
    blocker.mode = 'hold';
    const { client: c, closes } = client('held', { upgradeTimeoutMs: 300 });
    const alerts = c.subscribe('alerts');
    c.connect();
    await nextEvent(alerts, 'subscribed');
    expect(c.transport).toBe('sse');
    expect(closes).toEqual([{ code: 1006, reason: 'WebSocket unavailable (no open within 300 ms; plain HTTP gets through): switching to SSE', reconnectInMs: 0 }]);
  });

  it('a refusal the gateway explains (a forged token) is not a reason to switch: the typed fatal error, no stream', async () => {
    const forged = token({ sub: 'forger', role: 'authority' }, { secret: 'another-secret-of-at-least-32-bytes!!' });
    const c = new RealtimeClient({ url: blocker.ws('/ws'), getToken: () => forged, WebSocket: WS, backoff: { baseMs: 50, capMs: 100 } });
    clients.push(c);
    const error = new Promise<GatewayError>((resolve) => c.on('error', resolve));
    c.subscribe('alerts');
    c.connect();
    // The upgrade was reset; the SDK asked the gateway why, over plain HTTP, and got the refusal.
    expect(await error).toMatchObject({ kind: 'http', code: 401, error: 'token_invalid', fatal: true });
    expect(c.transport).toBe('websocket');
    expect(blocker.requests('GET /sse')).toEqual([]);
    expect(blocker.requests('GET /ws')).toHaveLength(2); // the upgrade, and the question
  });

  it('transport "websocket" never switches; "sse" never tries WebSocket', async () => {
    const only = client('ws-only', { transport: 'websocket' });
    only.client.subscribe('alerts');
    only.client.connect();
    await eventually(() => only.closes.length >= 4, 5000, 'four failed attempts');
    // Each a plain close with a retry scheduled (a switch to SSE has its reason text). The delay itself may be 0:
    // full jitter draws it from [0, ceiling), 1 in 50 per attempt at this test's 50 ms base (failed CI once).
    expect(only.closes.every((close) => close.reason === '' && typeof close.reconnectInMs === 'number')).toBe(true);
    expect(blocker.requests('GET /sse')).toEqual([]);
    only.client.close();

    const sse = client('sse-only', { transport: 'sse', WebSocket: undefined });
    const alerts = sse.client.subscribe('alerts');
    const upgradesBefore = blocker.upgrades;
    sse.client.connect();
    await nextEvent(alerts, 'subscribed');
    expect(sse.client.transport).toBe('sse');
    expect(sse.closes).toEqual([]);
    expect(blocker.upgrades).toBe(upgradesBefore);

    // "sse" on a path endpoint (WebSocket only) is told at once, not tried over a WebSocket the proxy blocks.
    const path = new RealtimeClient({ url: blocker.ws('/api/alerts/subscribe'), getToken: () => token({ sub: 'path-sse', role: 'authority' }), WebSocket: WS, transport: 'sse' });
    clients.push(path);
    const upgradesThen = blocker.upgrades;
    const error = new Promise<GatewayError>((resolve) => path.on('error', resolve));
    path.connect();
    expect(await error).toMatchObject({ fatal: true, message: expect.stringContaining("transport 'sse' needs the /ws endpoint") });
    expect(blocker.upgrades).toBe(upgradesThen);
  });

  it('tries WebSocket again at the first reconnect after retryWebSocketAfterMs, resuming each channel from its position', async () => {
    const { client: c, closes } = client('comes-back', { retryWebSocketAfterMs: 300 });
    const alerts = c.subscribe('alerts');
    const got: string[] = [];
    alerts.on('publication', (frame) => got.push(frame.id!));
    const resumed: boolean[] = [];
    alerts.on('resumed', ({ recovered }) => resumed.push(recovered));
    c.connect();
    await nextEvent(alerts, 'subscribed');
    expect(c.transport).toBe('sse');
    const published = [String((await post(gw.internal('/api/alerts'), { data: { n: 1 } })).body.id)];
    await eventually(() => got.length === 1, 5000, 'the first alert');

    blocker.mode = 'pass'; // the network got better
    await new Promise((resolve) => setTimeout(resolve, 400)); // past retryWebSocketAfterMs: the point of this test is the time
    const opened = new Promise<string>((resolve) => c.on('open', () => resolve(c.transport)));
    const before = closes.length;
    blocker.cut(); // the stream drops: the next attempt is WebSocket again
    published.push(String((await post(gw.internal('/api/alerts'), { data: { n: 2 } })).body.id)); // while it reconnects
    expect(await opened).toBe('websocket');
    published.push(String((await post(gw.internal('/api/alerts'), { data: { n: 3 } })).body.id));
    await eventually(() => got.length >= 3, 5000, 'the alerts after the switch');
    expect(got).toEqual(published); // every alert once, in order, across the change of transport
    expect(resumed).toEqual([true]);
    expect(closes.slice(before).map((close) => close.code)).toEqual([1006]);
  });

  it('a WebSocket connection lost, then upgrades blocked: each channel resumes over SSE from its own position', async () => {
    blocker.mode = 'pass';
    const { client: c, closes } = client('loses-websocket');
    const alerts = c.subscribe('alerts');
    const got: string[] = [];
    alerts.on('publication', (frame) => got.push(frame.id!));
    const resumed: boolean[] = [];
    alerts.on('resumed', ({ recovered }) => resumed.push(recovered));
    c.connect();
    await nextEvent(alerts, 'subscribed');
    expect(c.transport).toBe('websocket');
    const published = [String((await post(gw.internal('/api/alerts'), { data: { n: 1 } })).body.id)];
    await eventually(() => got.length === 1, 5000, 'the first alert');

    blocker.mode = 'reset'; // the network changed: upgrades are cut from now on
    const opened = new Promise<string>((resolve) => c.on('open', () => resolve(c.transport)));
    blocker.cut();
    published.push(String((await post(gw.internal('/api/alerts'), { data: { n: 2 } })).body.id)); // while it switches
    expect(await opened).toBe('sse');
    published.push(String((await post(gw.internal('/api/alerts'), { data: { n: 3 } })).body.id));
    await eventually(() => got.length >= 3, 5000, 'the alerts over SSE');
    expect(got).toEqual(published);
    expect(resumed).toEqual([true]);
    expect(closes.at(-1)!.reason).toMatch(/switching to SSE$/);
  });

  it('a switch with many channels subscribes them side by side: about one round trip, not one per channel', async () => {
    blocker.mode = 'pass';
    const { client: c } = client('many-channels');
    const handles = Array.from({ length: 20 }, (_, i) => c.subscribe(`chat:many-${i}`));
    c.connect();
    await eventually(() => handles.every((handle) => handle.state === 'subscribed'), 5000, 'twenty channels over WebSocket');
    let openedAt = 0;
    c.on('open', () => (openedAt = performance.now()));
    blocker.mode = 'reset';
    blocker.latencyMs = 100; // a distant network: every request reaches the gateway 100 ms after it was sent
    blocker.cut();
    await eventually(() => c.transport === 'sse' && openedAt > 0 && handles.every((handle) => handle.state === 'subscribed'), 15_000, 'twenty channels over SSE');
    // Each has a position, so each is a POST subscribe with since. One after the other they would take at least
    // 20 × 100 ms; side by side, about one.
    expect(performance.now() - openedAt).toBeLessThan(1000);
    expect(blocker.requests('POST /sse/send')).toHaveLength(20);
  });

  it('close codes told in the stream are the WebSocket ones: 4001 gets a new token and resumes, 4003 stops', async () => {
    let issued = 0;
    const jtis = ['laptop-1', 'laptop-2'];
    const c = new RealtimeClient({
      url: gw.ws('/ws'),
      getToken: () => token({ sub: 'sse-codes', role: 'authority', jti: jtis[Math.min(issued++, 1)] }),
      transport: 'sse',
      backoff: { baseMs: 50, capMs: 100 },
    });
    clients.push(c);
    const closes: Close[] = [];
    c.on('close', (close) => closes.push(close));
    const alerts = c.subscribe('alerts');
    const resumed: boolean[] = [];
    alerts.on('resumed', ({ recovered }) => resumed.push(recovered));
    c.connect();
    await nextEvent(alerts, 'subscribed');
    const admin = { authorization: `Bearer ${token({ sub: 'ops', role: 'admin' })}`, 'content-type': 'application/json' };
    expect((await fetch(gw.internal('/api/revoke'), { method: 'POST', headers: admin, body: JSON.stringify({ jti: 'laptop-1' }) })).status).toBe(202);
    await eventually(() => resumed.length === 1, 5000, 'the stream again, with a new token');
    expect(closes).toEqual([{ code: 4001, reason: 'token revoked', reconnectInMs: expect.any(Number) }]);
    expect(closes[0].reconnectInMs).toBeLessThan(250); // at once (with jitter), as after a WebSocket 4001
    expect(resumed).toEqual([true]);
    expect(issued).toBe(2);

    const disconnected = new Promise<{ reason: string }>((resolve) => c.on('disconnected', resolve));
    const fatal = new Promise<GatewayError>((resolve) => c.on('error', resolve));
    expect((await fetch(gw.internal('/api/disconnect'), { method: 'POST', headers: admin, body: JSON.stringify({ user: 'sse-codes', reason: 'policy' }) })).status).toBe(202);
    expect(await disconnected).toEqual({ reason: 'disconnected: policy' });
    expect(await fatal).toMatchObject({ kind: 'close', code: 4003, fatal: true });
    expect(closes.at(-1)).toEqual({ code: 4003, reason: 'disconnected: policy', reconnectInMs: undefined });
  });

  it('nothing answers at all (the gateway is down): backs off on WebSocket, never switches', async () => {
    const port = await freePort(); // nothing listens there
    const c = new RealtimeClient({ url: `ws://127.0.0.1:${port}/ws`, getToken: () => token(), WebSocket: WS, backoff: { baseMs: 40, capMs: 80 } });
    clients.push(c);
    const closes: Close[] = [];
    c.on('close', (close) => closes.push(close));
    c.subscribe('alerts');
    c.connect();
    await eventually(() => closes.length >= 4, 5000, 'four retries');
    expect(c.transport).toBe('websocket');
    expect(closes.every((close) => !close.reason.includes('SSE'))).toBe(true);
  });
});

describe('client SDK over SSE across a drain (two replicas, each behind a middlebox that resets upgrades)', () => {
  it('reconnects with Last-Event-ID to the other replica: every message of each channel once and in order, recovered', async () => {
    const d = await clusterDeployment({ DRAIN_WINDOW_MS: '0', SHUTDOWN_GRACE_MS: '2000' });
    const blockers = await Promise.all(d.replicas.map((replica) => UpgradeBlocker.start(Number(new URL(replica.http('/')).port))));
    let client: RealtimeClient | undefined;
    try {
      const [a, b] = d.replicas;
      let target = 0;
      client = new RealtimeClient({
        url: () => blockers[target].ws('/ws'),
        getToken: () => token({ sub: 'sse-drain', role: 'authority' }),
        WebSocket: WS,
        backoff: { baseMs: 50, capMs: 100 },
      });
      const alerts = client.subscribe('alerts');
      const room = client.subscribe('chat:sse-drain');
      const received = { alerts: [] as string[], room: [] as string[] };
      const resumed = { alerts: [] as boolean[], room: [] as boolean[] };
      alerts.on('publication', (frame) => received.alerts.push(frame.id!));
      room.on('publication', (frame) => received.room.push(frame.id!));
      alerts.on('resumed', ({ recovered }) => resumed.alerts.push(recovered));
      room.on('resumed', ({ recovered }) => resumed.room.push(recovered));
      const closes: Close[] = [];
      client.on('close', (close) => {
        closes.push(close);
        if (close.code === 1012) target = 1; // the load balancer sends the reconnect to the surviving replica
      });
      client.connect();
      await eventually(() => alerts.state === 'subscribed' && room.state === 'subscribed', 10_000, 'both channels over SSE');
      expect(client.transport).toBe('sse');

      const published = { alerts: [] as string[], room: [] as string[] };
      const publish = async (i: number) => {
        published.alerts.push(String((await b.publish({ data: { i } })).body.id));
        published.room.push(String((await post(b.internal('/api/publish'), { channel: 'chat:sse-drain', data: { i } })).body.id));
      };
      for (let i = 0; i < 5; i++) await publish(i);
      await eventually(() => received.alerts.length === 5 && received.room.length === 5, 5000, 'the first messages');

      const stopping = a.stop(); // drain: the stream gets {"type":"reconnect"}
      for (let i = 5; i < 20; i++) await publish(i);
      expect(await stopping).toBe(0);
      await eventually(() => received.alerts.length >= 20 && received.room.length >= 20, 10_000, 'the missed messages');
      await eventually(() => resumed.alerts.length === 1 && resumed.room.length === 1, 5000, 'resumed for both');

      expect(closes.filter((close) => close.code === 1012)).toEqual([{ code: 1012, reason: 'server restarting', reconnectInMs: expect.any(Number) }]);
      expect(received).toEqual(published);
      expect(resumed).toEqual({ alerts: [true], room: [true] });
      // Still on SSE (no new WebSocket attempt within retryWebSocketAfterMs), resumed by the cursor alone.
      expect(blockers[1].upgrades).toBe(0);
      const [second] = blockers[1].requests('GET /sse');
      expect(second.headers).toContain('last-event-id');
      expect(blockers[1].requests('POST /sse/send')).toEqual([]); // nothing to subscribe again: the cursor named both

      // Publishing works on the new stream too.
      room.publish({ text: 'after the drain' });
      await eventually(() => received.room.length === 21, 5000, 'our publication on the second replica');
    } finally {
      client?.close();
      await Promise.all(blockers.map((blocker) => blocker.stop()));
      await d.close();
    }
  });

  it('a stream asked of a node that is draining is told to reconnect (no welcome): the SDK goes elsewhere at once', async () => {
    const d = await clusterDeployment({ DRAIN_WINDOW_MS: '4000', SHUTDOWN_GRACE_MS: '8000' });
    const holders: WebSocket[] = [];
    let client: RealtimeClient | undefined;
    try {
      const [a, b] = d.replicas;
      // A few sockets whose closes the drain spreads over its window: the node stays draining meanwhile.
      for (let i = 0; i < 4; i++) {
        const ws = new WebSocket(a.ws('/ws'), ['bearer', token({ sub: `holder-${i}`, role: 'authority' })]);
        ws.on('error', () => undefined);
        await new Promise((resolve) => ws.once('open', resolve));
        holders.push(ws);
      }
      const stopping = a.stop();
      await eventually(async () => (await a.readyStatus()) === 503, 5000, 'the node to drain');
      const targets = [a, b];
      let target = 0;
      client = new RealtimeClient({ url: () => targets[target].ws('/ws'), getToken: () => token({ sub: 'late', role: 'authority' }), transport: 'sse' });
      const closes: Close[] = [];
      client.on('close', (close) => {
        closes.push(close);
        target = 1; // the load balancer sends the reconnect to another replica
      });
      const alerts = client.subscribe('alerts');
      client.connect();
      await nextEvent(alerts, 'subscribed');
      expect(closes).toEqual([{ code: 1012, reason: 'server restarting', reconnectInMs: expect.any(Number) }]);
      expect(closes[0].reconnectInMs).toBeLessThan(250);
      expect(await b.metric('ws_connections_active', { gateway: 'sse' })).toBe(1);
      expect(await stopping).toBe(0);
    } finally {
      client?.close();
      holders.forEach((ws) => ws.terminate());
      await d.close();
    }
  });
});
