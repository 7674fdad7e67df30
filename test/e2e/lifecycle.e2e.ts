import { allowedRoles } from '../../src/cli/doctor';
import { GATEWAYS } from '../../src/gateways';
import { connect, refusal, type TestClient } from '../support/clients';
import { EchoGateway, EchoModule } from '../support/echo.gateway';
import { eventually, startTestGateway, type TestGateway } from '../support/gateway';
import { token } from '../support/tokens';

const echo = (gw: TestGateway, sub = 'alice', room = 'r1') => connect(gw.ws(`/test/echo/${room}?token=${token({ sub, role: 'user' })}`));
const subscriber = (gw: TestGateway, sub = 'watcher') => connect(gw.ws(`/api/alerts/subscribe?token=${token({ sub, role: 'authority' })}`));
const publish = (gw: TestGateway, data: object) =>
  fetch(gw.internal('/api/alerts'), {
    method: 'POST',
    headers: { authorization: `Bearer ${token({ sub: 'svc', role: 'service' })}`, 'content-type': 'application/json' },
    body: JSON.stringify({ data }),
  });

async function stillOpen(client: TestClient): Promise<void> {
  client.send('ping');
  expect(await client.take((f) => f === 'pong')).toBe('pong');
}

describe('connection lifecycle', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({ MAX_MESSAGE_BYTES: '1024', RATE_LIMIT_PER_SEC: '1000', RATE_LIMIT_BURST: '1000' }, { imports: [EchoModule] });
  });
  afterAll(() => gw.close());

  it('hands handleConnection the verified user and the path params', async () => {
    const client = await echo(gw, 'carol', 'lobby');
    expect(await client.ofType('welcome')).toEqual({ type: 'welcome', room: 'lobby', user: 'carol' });
    await client.close();
  });

  it('answers text ping with pong and {"type":"ping"} with a timestamped pong', async () => {
    const client = await echo(gw);
    client.send('ping');
    expect(await client.take((f) => f === 'pong')).toBe('pong');
    const before = Date.now();
    client.send({ type: 'ping' });
    const pong = await client.ofType<{ ts: number }>('pong');
    expect(pong.ts).toBeGreaterThanOrEqual(before - 5);
    await client.close();
  });

  it.each([
    ['not json', '{oops', 'invalid_json'],
    ['an array', '[1,2]', 'invalid_message'],
    ['no type', '{"text":"x"}', 'invalid_message'],
    ['an unknown type', '{"type":"dance"}', 'unknown_type'],
    ['a schema violation', JSON.stringify({ type: 'say', text: 42 }), 'invalid_message'],
    ['a handler refusal', '{"type":"refuse"}', 'message_too_long'],
    ['a frame nested deeper than MAX_JSON_DEPTH', `{"type":"say","text":${'['.repeat(40)}${']'.repeat(40)}}`, 'invalid_message'],
  ])('answers %s with an error frame and keeps the socket open', async (_what, raw, code) => {
    const client = await echo(gw);
    client.send(raw);
    const error = await client.ofType<{ payload: { code: string; message: string } }>('error');
    expect(error.payload.code).toBe(code);
    expect(error.payload.message.length).toBeGreaterThan(0);
    await stillOpen(client);
    expect(await gw.metric('ws_frame_errors_total', { gateway: 'echo', error: code })).toBeGreaterThanOrEqual(1);
    await client.close();
  });

  it('names the offending field of an invalid frame and lists the accepted types for an unknown one', async () => {
    const client = await echo(gw);
    client.send({ type: 'say', text: 'x'.repeat(101) });
    expect((await client.ofType<{ payload: { message: string } }>('error')).payload.message).toMatch(/^invalid "say" frame: text: /);
    client.send({ type: 'dance' });
    expect((await client.ofType<{ payload: { message: string } }>('error')).payload.message).toMatch(/accepts: ping, say, refuse, boom, later, flood/);
    await client.close();
  });

  it('sends a handler\'s returned frame back to the sender', async () => {
    const client = await echo(gw, 'dave');
    client.send({ type: 'say', text: 'hello' });
    expect(await client.ofType('said')).toEqual({ type: 'said', text: 'hello', by: 'dave' });
    await client.close();
  });

  it.each([
    ['a handler throws', { type: 'boom' }],
    ['an async handler rejects', { type: 'later' }],
  ])('closes only that socket with 1011 when %s, and logs it', async (_what, frame) => {
    const victim = await echo(gw, 'victim');
    const bystander = await echo(gw, 'bystander');
    victim.send(frame);
    expect(await victim.closed).toEqual({ code: 1011, reason: 'internal error' });
    await stillOpen(bystander);
    expect(gw.logs.some((l) => l.level === 50 && l.sub === 'victim' && /1011/.test(String(l.msg)))).toBe(true);
    await bystander.close();
  });

  it('closes with 1011 when handleConnection throws, without taking the process down', async () => {
    const client = await echo(gw, 'explode-on-connect');
    expect((await client.closed).code).toBe(1011);
    const after = await echo(gw, 'after');
    await stillOpen(after);
    await after.close();
  });

  it('closes 1009 for a frame over MAX_MESSAGE_BYTES', async () => {
    const client = await echo(gw);
    client.send({ type: 'say', text: 'x'.repeat(2000) });
    expect((await client.closed).code).toBe(1009);
    await eventually(async () => ((await gw.metric('ws_closes_total', { gateway: 'echo', code: '1009' })) ?? 0) >= 1);
  });

  it('closes 1003 for a binary frame', async () => {
    const client = await echo(gw);
    client.send(Buffer.from([1, 2, 3]));
    expect((await client.closed).code).toBe(1003);
  });

  it('closes 1007 for invalid UTF-8 in a text frame', async () => {
    const client = await echo(gw);
    client.ws.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false });
    expect((await client.closed).code).toBe(1007);
    await eventually(async () => ((await gw.metric('ws_closes_total', { gateway: 'echo', code: '1007' })) ?? 0) >= 1);
  });

  it('closes a slow consumer with 1013 while other sockets keep receiving', async () => {
    const slow = await echo(gw, 'slow');
    const healthy = await subscriber(gw);
    // Stop reading: the kernel buffers fill, then the server's unsent buffer grows past SLOW_CONSUMER_BYTES (1 MiB).
    (slow.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    slow.send({ type: 'flood', count: 400, size: 60_000 });
    const slowOnServer = () => [...gw.connections.registry.all()].find((c) => c.user.sub === 'slow');
    await eventually(() => slowOnServer()?.closeCode === 1013, 10_000, 'the server to give up on the slow socket');
    expect((await publish(gw, { after: 'slow' })).status).toBe(202);
    expect(await healthy.ofType('alert')).toMatchObject({ data: { after: 'slow' } });
    (slow.ws as unknown as { _socket: { resume(): void } })._socket.resume();
    expect((await slow.closed).code).toBe(1013);
    await eventually(async () => ((await gw.metric('ws_closes_total', { gateway: 'echo', code: '1013' })) ?? 0) >= 1);
    await healthy.close();
  });

  it('runs cleanup for every socket, also after abrupt disconnects: 200 destroyed clients leave nothing behind', async () => {
    const clients = await Promise.all(Array.from({ length: 200 }, (_, i) => subscriber(gw, `crowd-${i % 20}`)));
    expect(gw.connections.registry.size).toBeGreaterThanOrEqual(200);
    for (const client of clients) (client.ws as unknown as { _socket: { destroy(): void } })._socket.destroy();
    await eventually(() => gw.connections.registry.size === 0, 10_000, 'registry to empty');
    expect(gw.connections.registry.stats()).toEqual({ connections: 0, gateways: 0, users: 0, rooms: 0 });
    expect(await gw.metric('ws_connections_active', { gateway: 'alerts' })).toBe(0);
    expect(await gw.metric('ws_closes_total', { gateway: 'alerts', code: '1006' })).toBeGreaterThanOrEqual(200);
  });

  it('calls handleDisconnect for every closed socket', async () => {
    const gateway = gw.app.get(EchoGateway);
    const client = await echo(gw, 'leaver');
    await client.close();
    await eventually(() => gateway.disconnected.includes('leaver'));
  });
});

describe('timers: heartbeat, idle timeout, token expiry', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({ HEARTBEAT_INTERVAL_MS: '150', IDLE_TIMEOUT_MS: '400' }, { imports: [EchoModule] });
  });
  afterAll(() => gw.close());

  it('terminates a socket that does not answer pings and counts it as 1006', async () => {
    const client = await connect(gw.ws(`/test/echo/r?token=${token({ role: 'user' })}`), { autoPong: false });
    expect((await client.closed).code).toBe(1006);
    await eventually(async () => ((await gw.metric('ws_closes_total', { gateway: 'echo', code: '1006' })) ?? 0) >= 1);
  });

  it('keeps a socket that answers pings and sends frames', async () => {
    const client = await echo(gw);
    for (let i = 0; i < 6; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      await stillOpen(client);
    }
    await client.close();
  });

  it('closes 1001 "idle timeout" after IDLE_TIMEOUT_MS without a client frame', async () => {
    const client = await echo(gw);
    const started = Date.now();
    expect(await client.closed).toEqual({ code: 1001, reason: 'idle timeout' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(350);
  });

  it('closes 4001 "token expired" when the token expires while connected', async () => {
    const g2 = await startTestGateway({}, { imports: [EchoModule] });
    try {
      const client = await connect(g2.ws(`/test/echo/r?token=${token({ role: 'user' }, { ttl: 1 })}`));
      expect(await client.closed).toEqual({ code: 4001, reason: 'token expired' });
    } finally {
      await g2.close();
    }
  });
});

describe('rate limiting', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({ RATE_LIMIT_PER_SEC: '5', RATE_LIMIT_BURST: '10' }, { imports: [EchoModule] });
  });
  afterAll(() => gw.close());

  it('answers a flood with rate_limited, then closes it 1008, while another client receives every alert', async () => {
    const flooder = await echo(gw, 'flooder');
    const watcher = await subscriber(gw);
    const published: number[] = [];
    for (let i = 0; i < 100; i++) {
      flooder.send({ type: 'say', text: `spam ${i}` });
      if (i % 10 === 0) {
        expect((await publish(gw, { n: i })).status).toBe(202);
        published.push(i);
      }
    }
    expect(await flooder.closed).toEqual({ code: 1008, reason: 'rate limit exceeded' });
    const limited = flooder.frames.filter((f) => (f as { payload?: { code?: string } }).payload?.code === 'rate_limited');
    expect(limited.length).toBeGreaterThanOrEqual(10);
    // Exactly the burst got through.
    expect(flooder.frames.filter((f) => (f as { type?: string }).type === 'said')).toHaveLength(10);
    const received: number[] = [];
    for (const _ of published) received.push((await watcher.ofType<{ data: { n: number } }>('alert')).data.n);
    expect(received).toEqual(published);
    await watcher.close();
  });

  it('lets a client that respects the rate keep going', async () => {
    const client = await echo(gw, 'polite');
    for (let i = 0; i < 12; i++) {
      client.send({ type: 'say', text: String(i) });
      expect(await client.ofType('said')).toMatchObject({ text: String(i) });
      await new Promise((resolve) => setTimeout(resolve, 220));
    }
    await client.close();
  });
});

describe('a fourth gateway', () => {
  it('is one folder and one line: its metrics label, the 404 path list and the doctor follow from the registry', async () => {
    const gw = await startTestGateway({}, { imports: [EchoModule] });
    try {
      const metrics = await gw.metrics();
      expect(metrics).toContain('ws_connections_active{gateway="echo"} 0');
      const miss = await refusal(gw.ws(`/test/echoes/r1?token=${token()}`));
      expect(miss).toMatchObject({ status: 404, body: { error: 'unknown_path', message: expect.stringContaining('/test/echo/:room') } });
      expect(allowedRoles('/test/echo/r1', [...GATEWAYS, EchoModule])).toEqual({ endpoint: 'echo' });
      expect(allowedRoles('/ws/signaling/c1/doctor')).toEqual({ roles: ['doctor'], endpoint: 'signaling (your role must equal the userType in the path)' });
      expect(allowedRoles('/api/alerts/subscribe')).toEqual({ roles: ['authority', 'admin'], endpoint: 'alerts' });
    } finally {
      await gw.close();
    }
  });
});
