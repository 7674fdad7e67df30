import { connect } from '../support/clients';
import { eventually, startTestGateway, type TestGateway } from '../support/gateway';
import { rawExchange } from '../support/raw-http';
import { sendFrame, SseClient } from '../support/sse-client';
import { token } from '../support/tokens';

/**
 * SSE (SPEC v3 "Reach without WebSocket"), embedded mode: a raw reader on the wire, so what is asserted is what
 * any EventSource would get: the welcome first, `/ws` frames as unnamed events, cursors in `id:`, resume from
 * Last-Event-ID, sends over POST /sse/send, refusals as JSON before the stream starts.
 */
describe('GET /sse and POST /sse/send (embedded)', () => {
  let gw: TestGateway;
  const service = () => ({ authorization: `Bearer ${token({ sub: 'backend', role: 'service' })}`, 'content-type': 'application/json' });
  const publish = async (channel: string, data: Record<string, unknown>) => {
    const res = await fetch(gw.internal('/api/publish'), { method: 'POST', headers: service(), body: JSON.stringify({ channel, data }) });
    expect(res.status).toBe(202);
    return (await res.json()) as { id?: string };
  };
  // Authorities may read `alerts` as well as chat rooms.
  const stream = (query: string, sub = 'alice', headers: Record<string, string> = {}) =>
    SseClient.open(gw.http(`/sse?${query}`), { authorization: `Bearer ${token({ sub, role: 'authority' })}`, ...headers });
  const open: SseClient[] = [];
  const track = (c: SseClient) => (open.push(c), c);

  beforeAll(async () => {
    gw = await startTestGateway({ SSE_HEARTBEAT_MS: '300', LOG_LEVEL: 'info' });
  });
  afterAll(async () => {
    await Promise.all(open.map((c) => c.close()));
    await gw.close();
  });

  it('starts with the welcome (session, every channel\'s position, a cursor), then delivers publications with cursors', async () => {
    await publish('chat:ward-1', { text: 'before' });
    const s = track(await stream('channel=chat:ward-1&channel=alerts'));
    expect(s.headers['content-type']).toBe('text/event-stream; charset=utf-8');
    expect(s.headers['cache-control']).toBe('no-cache');
    expect(s.headers['x-accel-buffering']).toBe('no');
    const welcome = await s.take();
    expect(welcome.data).toEqual({
      type: 'welcome',
      session: expect.stringMatching(/^s1\./),
      channels: { 'chat:ward-1': { epoch: expect.any(String), id: expect.any(String) }, alerts: { epoch: expect.any(String), id: expect.any(String) } },
    });
    expect(welcome.id).toEqual(expect.any(String));
    const { id } = await publish('chat:ward-1', { text: 'hello' });
    const event = await s.ofType('publication');
    expect(event.data).toMatchObject({ type: 'publication', channel: 'chat:ward-1', id, data: { text: 'hello' } });
    expect(event.id).toEqual(expect.any(String));
    expect(event.id).not.toBe(welcome.id);
  });

  it('resumes every channel of a Last-Event-ID: each missed message once, in order, then resumed, then live', async () => {
    const first = track(await stream('channel=chat:ward-2&channel=chat:ward-3'));
    await first.ofType('welcome');
    await publish('chat:ward-2', { n: 1 });
    await first.ofType('publication');
    const cursor = first.lastEventId!;
    await first.close();
    const missed = [];
    for (let n = 2; n <= 4; n++) missed.push((await publish(n % 2 ? 'chat:ward-3' : 'chat:ward-2', { n })).id);
    // A reconnect names no channel: the cursor holds them (as EventSource reconnects to the same URL, here none).
    const again = track(await stream('', 'alice', { 'last-event-id': cursor }));
    const welcome = await again.ofType('welcome');
    expect(Object.keys(welcome.data.channels).sort()).toEqual(['chat:ward-2', 'chat:ward-3']);
    const replay = [await again.ofType('publication'), await again.ofType('publication'), await again.ofType('publication')];
    // In order per channel (the promise is per channel), each once.
    expect(replay.filter((e) => e.data.channel === 'chat:ward-2').map((e) => e.data.data.n)).toEqual([2, 4]);
    expect(replay.filter((e) => e.data.channel === 'chat:ward-3').map((e) => e.data.data.n)).toEqual([3]);
    expect(replay.map((e) => e.data.id).sort()).toEqual([...missed].sort());
    const resumed = [await again.ofType('resumed'), await again.ofType('resumed')];
    expect(resumed.map((e) => e.data).sort((a, b) => a.channel.localeCompare(b.channel))).toEqual([
      { type: 'resumed', channel: 'chat:ward-2', recovered: true },
      { type: 'resumed', channel: 'chat:ward-3', recovered: true },
    ]);
    await publish('chat:ward-3', { n: 5 });
    expect((await again.ofType('publication')).data.data.n).toBe(5);
    expect(again.events.filter((e) => e.data.type === 'publication')).toEqual([]);
  });

  it('starts a garbage cursor over with recovered:false for every channel, never a refusal; checks a cursor\'s channels again', async () => {
    const s = track(await stream('channel=chat:ward-4', 'alice', { 'last-event-id': 'garbage!'.repeat(100) }));
    await s.ofType('welcome');
    expect((await s.ofType('resumed')).data).toEqual({ type: 'resumed', channel: 'chat:ward-4', recovered: false });
    // Bob's cursor (his personal channel and a room) in Alice's hands: the room resumes, his channel is refused.
    const bobs = track(await stream('channel=user:bob&channel=chat:ward-4', 'bob'));
    const cursor = (await bobs.ofType('welcome')).id!;
    const stolen = track(await stream('', 'alice', { 'last-event-id': cursor }));
    expect(Object.keys((await stolen.ofType('welcome')).data.channels)).toEqual(['chat:ward-4']);
    expect((await stolen.ofType('error')).data).toMatchObject({ payload: { code: 'forbidden_channel', channel: 'user:bob' } });
    // From another epoch (another deployment, or history lost): recovered:false, live from here.
    const other = cursor.replace(/~[A-Za-z0-9_-]+~/g, '~otherepoch~');
    const moved = track(await stream('', 'bob', { 'last-event-id': other }));
    await moved.ofType('welcome');
    expect((await moved.ofType('resumed')).data).toMatchObject({ recovered: false });
  });

  it('asks for the URL\'s channels beside a cursor, so an EventSource whose stream held nothing does not reconnect to nothing', async () => {
    // A stream that held no channel has the cursor `c1`; its EventSource reconnects to the same URL with it.
    const s = track(await stream('channel=chat:ward-10', 'alice', { 'last-event-id': 'c1' }));
    expect(Object.keys((await s.ofType('welcome')).data.channels)).toEqual(['chat:ward-10']);
    // A cursor with one channel and a URL naming another: both.
    const first = track(await stream('channel=chat:ward-11'));
    const cursor = (await first.ofType('welcome')).id!;
    const both = track(await stream('channel=chat:ward-12', 'alice', { 'last-event-id': cursor }));
    expect(Object.keys((await both.ofType('welcome')).data.channels).sort()).toEqual(['chat:ward-11', 'chat:ward-12']);
  });

  it('answers a Last-Event-ID of 100 KB with the JSON 431 every oversized request gets', async () => {
    const refused = await SseClient.refusal(gw.http('/sse?channel=chat:ward-4'), { authorization: `Bearer ${token({ sub: 'alice', role: 'user' })}`, 'last-event-id': 'c1.'.padEnd(100_000, 'A') });
    expect(refused).toMatchObject({ status: 431, body: { error: 'headers_too_large' } });
  });

  it('handles a POSTed frame as a WebSocket frame of the stream: subscribe, publish to a WebSocket member, errors on the stream', async () => {
    const aliceToken = token({ sub: 'alice', role: 'user' });
    const s = track(await SseClient.open(gw.http('/sse'), { authorization: `Bearer ${aliceToken}` }));
    const { session } = (await s.ofType('welcome')).data;
    const bob = await connect(gw.ws('/ws'), { protocols: ['bearer', token({ sub: 'bob', role: 'user' })] });
    bob.send({ type: 'subscribe', channel: 'chat:ward-5' });
    await bob.ofType('subscribed');
    expect((await sendFrame(gw.http('/sse/send'), aliceToken, session, { type: 'subscribe', channel: 'chat:ward-5' })).status).toBe(202);
    const subscribed = await s.ofType('subscribed');
    expect(subscribed.data).toMatchObject({ channel: 'chat:ward-5' });
    expect(subscribed.id).toEqual(expect.any(String));
    expect((await sendFrame(gw.http('/sse/send'), aliceToken, session, { type: 'publish', channel: 'chat:ward-5', data: { text: 'from sse' } })).status).toBe(202);
    expect(await bob.take((f) => f.type === 'publication')).toMatchObject({ channel: 'chat:ward-5', user: 'alice', data: { text: 'from sse' } });
    expect((await s.ofType('publication')).data).toMatchObject({ user: 'alice', data: { text: 'from sse' } });
    // Errors come on the stream, as they would on the socket.
    expect((await sendFrame(gw.http('/sse/send'), aliceToken, session, { type: 'subscribe', channel: 'nope:x' })).status).toBe(202);
    expect((await s.ofType('error')).data).toMatchObject({ type: 'error', payload: { code: 'unknown_channel', channel: 'nope:x' } });
    expect((await sendFrame(gw.http('/sse/send'), aliceToken, session, { type: 'ping' })).status).toBe(202);
    await s.ofType('pong');
    await bob.close();
  });

  it('refuses a send for someone else\'s session, an unknown one, and one too large, without harming the stream', async () => {
    const aliceToken = token({ sub: 'alice', role: 'user' });
    const s = track(await SseClient.open(gw.http('/sse?channel=chat:ward-6'), { authorization: `Bearer ${aliceToken}` }));
    const { session } = (await s.ofType('welcome')).data;
    const mallory = token({ sub: 'mallory', role: 'user' });
    const stolen = await sendFrame(gw.http('/sse/send'), mallory, session, { type: 'publish', channel: 'chat:ward-6', data: { text: 'as alice' } });
    expect(stolen).toEqual({ status: 404, body: { error: 'unknown_session', message: expect.any(String) } });
    expect((await sendFrame(gw.http('/sse/send'), aliceToken, 's1.bm9kZQ.zz.AAAAAAAAAAAAAAAA', { type: 'ping' })).body.error).toBe('unknown_session');
    expect((await sendFrame(gw.http('/sse/send'), aliceToken, 'garbage', { type: 'ping' })).body.error).toBe('unknown_session');
    const big = await sendFrame(gw.http('/sse/send'), aliceToken, session, { type: 'publish', channel: 'chat:ward-6', data: { text: 'x'.repeat(70_000) } });
    expect(big).toEqual({ status: 413, body: { error: 'too_large', message: expect.any(String) } });
    const unauthenticated = await fetch(gw.http('/sse/send'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ session, frame: { type: 'ping' } }) });
    expect(unauthenticated.status).toBe(401);
    // Operators see refused sends (someone guessing sessions), counted by code.
    expect(await gw.metric('ws_frame_errors_total', { gateway: 'sse', error: 'unknown_session' })).toBeGreaterThanOrEqual(3);
    expect(await gw.metric('ws_frame_errors_total', { gateway: 'sse', error: 'too_large' })).toBeGreaterThanOrEqual(1);
    // The stream is untouched and saw none of it.
    expect((await sendFrame(gw.http('/sse/send'), aliceToken, session, { type: 'ping' })).status).toBe(202);
    await s.ofType('pong');
    expect(s.events.filter((e) => e.data.type === 'publication')).toEqual([]);
  });

  it('refuses before the stream starts with the upgrade\'s JSON answers; a refused channel is an error event and the stream stays', async () => {
    const none = await SseClient.refusal(gw.http('/sse?channel=alerts'));
    expect(none.status).toBe(401);
    expect(none.body).toEqual({ error: 'token_missing', message: expect.any(String) });
    const many = await SseClient.refusal(gw.http(`/sse?${Array.from({ length: 200 }, (_, i) => `channel=chat:r${i}`).join('&')}`), { authorization: `Bearer ${token({ sub: 'alice', role: 'user' })}` });
    expect(many).toMatchObject({ status: 400, body: { error: 'too_many_subscriptions' } });
    const s = track(await stream('channel=user:bob&channel=alerts'));
    const welcome = await s.ofType('welcome');
    expect(Object.keys(welcome.data.channels)).toEqual(['alerts']);
    expect((await s.ofType('error')).data).toMatchObject({ type: 'error', payload: { code: 'forbidden_channel', channel: 'user:bob' } });
    const user = track(await SseClient.open(gw.http('/sse?channel=alerts&channel=chat:ward-7'), { authorization: `Bearer ${token({ sub: 'dan', role: 'user' })}` }));
    expect(Object.keys((await user.ofType('welcome')).data.channels)).toEqual(['chat:ward-7']);
    expect((await user.ofType('error')).data).toMatchObject({ payload: { code: 'forbidden_channel', channel: 'alerts' } });
  });

  it('answers a stream request pipelined behind another request, never leaves it hanging', async () => {
    const jwt = token({ sub: 'alice', role: 'user' });
    const answer = await rawExchange(
      gw.port,
      `GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /sse?channel=chat:ward-9 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${jwt}\r\nAccept: text/event-stream\r\n\r\n`,
      { closeWithinMs: 2000 },
    );
    expect(answer.status).toBe(200); // /healthz
    expect(answer.raw).toMatch(/HTTP\/1\.1 (400|200) /g);
    const second = answer.raw.slice(answer.raw.indexOf('HTTP/1.1', 10));
    expect(second).toMatch(/^HTTP\/1\.1 400 [^\r]*\r\n[\s\S]*"error":"pipelined_request"/);
  });

  it('sends comment heartbeats, and counts streams under gateway="sse"', async () => {
    const s = track(await stream('channel=alerts'));
    await s.ofType('welcome');
    await s.until(() => s.comments >= 2, 3000);
    expect(await gw.metric('ws_connections_active', { gateway: 'sse' })).toBeGreaterThanOrEqual(1);
    expect(await gw.metric('ws_upgrades_rejected_total', { gateway: 'sse', status: '401' })).toBeGreaterThanOrEqual(1);
  });

  it('applies bans: the stream is told 4003 and ended, a new stream and a send are refused 403 banned', async () => {
    const jwt = token({ sub: 'hank', role: 'user' });
    const s = track(await SseClient.open(gw.http('/sse?channel=chat:ward-8'), { authorization: `Bearer ${jwt}` }));
    const { session } = (await s.ofType('welcome')).data;
    const res = await fetch(gw.internal('/api/disconnect'), { method: 'POST', headers: service(), body: JSON.stringify({ user: 'hank', reason: 'account suspended', ban_seconds: 60 }) });
    expect(res.status).toBe(202);
    expect((await s.ofType('close')).data).toEqual({ type: 'close', code: 4003, reason: 'disconnected: account suspended' });
    await s.ended;
    expect(await SseClient.refusal(gw.http('/sse?channel=chat:ward-8'), { authorization: `Bearer ${jwt}` })).toMatchObject({ status: 403, body: { error: 'banned' } });
    expect(await sendFrame(gw.http('/sse/send'), jwt, session, { type: 'ping' })).toMatchObject({ status: 403, body: { error: 'banned' } });
  });

  it('tells a revoked token\'s stream why it ends (4001) and ends it', async () => {
    const s = track(await SseClient.open(gw.http('/sse?channel=alerts'), { authorization: `Bearer ${token({ sub: 'carol', role: 'user', jti: 'carol-1' })}` }));
    await s.ofType('welcome');
    const res = await fetch(gw.internal('/api/revoke'), { method: 'POST', headers: service(), body: JSON.stringify({ jti: 'carol-1' }) });
    expect(res.status).toBe(202);
    expect((await s.ofType('close')).data).toEqual({ type: 'close', code: 4001, reason: 'token revoked' });
    await s.ended;
    await eventually(async () => (await gw.metric('ws_closes_total', { gateway: 'sse', code: '4001' })) === 1);
  });
});

describe('SSE streams that stall, and a drain', () => {
  let gw: TestGateway;
  const service = { authorization: `Bearer ${token({ sub: 'backend', role: 'service' })}`, 'content-type': 'application/json' };
  const user = (sub: string) => ({ authorization: `Bearer ${token({ sub, role: 'user' })}` });

  beforeAll(async () => {
    gw = await startTestGateway({ SLOW_CONSUMER_BYTES: '65536', MAX_PUBLISH_BYTES: '16384', DRAIN_WINDOW_MS: '0', LOG_LEVEL: 'info' });
  });
  afterAll(async () => {
    await gw.close();
  });

  it('closes a stream that never reads as a slow consumer (1013); the other streams keep every message', async () => {
    const stalled = await SseClient.open(gw.http('/sse?channel=chat:ward-30'), user('slow'));
    const reader = await SseClient.open(gw.http('/sse?channel=chat:ward-30'), user('fast'));
    await stalled.ofType('welcome');
    await reader.ofType('welcome');
    stalled.pause();
    const text = 'x'.repeat(8000);
    let sent = 0;
    // Until the server gives up on the stalled stream: the kernel's buffers take a few MB first.
    while ((await gw.metric('ws_closes_total', { gateway: 'sse', code: '1013' })) !== 1) {
      const res = await fetch(gw.internal('/api/publish'), { method: 'POST', headers: service, body: JSON.stringify({ channel: 'chat:ward-30', data: { n: sent, text } }) });
      expect(res.status).toBe(202);
      sent++;
      expect(sent).toBeLessThan(5000);
    }
    await stalled.close();
    await eventually(() => reader.events.filter((e) => e.data.type === 'publication').length === sent, 10_000, 'every message on the reading stream');
    expect(reader.events.filter((e) => e.data.type === 'publication').map((e) => e.data.data.n)).toEqual(Array.from({ length: sent }, (_, i) => i));
    await reader.close();
  }, 60_000);

  it('tells every stream to reconnect on drain and ends it; a stream asked for while draining is told the same, not refused', async () => {
    // A WebSocket client that stops reading keeps the node draining (its close handshake cannot finish for 5 s).
    const holder = await connect(gw.ws('/ws'), { protocols: ['bearer', token({ sub: 'holder', role: 'user' })] });
    (holder.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    const s = await SseClient.open(gw.http('/sse?channel=chat:ward-31'), user('gina'));
    await s.ofType('welcome');
    const closing = gw.close();
    const reconnect = await s.ofType('reconnect');
    expect(reconnect.data).toEqual({ type: 'reconnect' });
    await s.ended;
    // An EventSource gives up for good on a 503: while draining, a new stream is told to reconnect instead.
    const late = await SseClient.open(gw.http('/sse?channel=chat:ward-31'), user('gina'));
    await late.ended;
    expect(late.events.map((e) => e.data)).toEqual([{ type: 'reconnect' }]);
    await closing;
  });
});
