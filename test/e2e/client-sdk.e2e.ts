import { spawnSync } from 'node:child_process';
import WebSocket from 'ws';
import { backoffDelay } from '../../src/client/backoff';
import type { GatewayError } from '../../src/client/errors';
import { RealtimeClient, type AlertFrame, type ChatFrame, type SignalFrame, type WebSocketConstructor } from '../../src/client/realtime-client';
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
    expect(stdout.split(',').sort()).toEqual(['GatewayError', 'RealtimeClient', 'backoffDelay']);
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
        new RealtimeClient({ url: gw.ws(`/ws/signaling/sdk-call/${role}`), getToken: () => token({ sub: role, role }), WebSocket: WS });
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
