import { connect as tcpConnect, type Socket } from 'node:net';
import { connect, refusal, type TestClient } from '../support/clients';
import { eventually } from '../support/gateway';
import { spawnGateway } from '../support/process';
import { TEST_SECRET, token } from '../support/tokens';

jest.setTimeout(30_000);

/** A client that completes the handshake and then ignores everything, including the server's close frame. */
async function deafClient(port: number, jwt: string): Promise<{ socket: Socket; received: Buffer[]; closedAt: Promise<number> }> {
  const socket = tcpConnect(port, '127.0.0.1');
  const received: Buffer[] = [];
  const closedAt = new Promise<number>((resolve) => socket.on('close', () => resolve(Date.now())));
  socket.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    socket.write(
      'GET /api/alerts/subscribe HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer ${jwt}\r\n\r\n`,
    );
    socket.once('data', (data) => {
      const text = data.toString('latin1');
      if (!text.startsWith('HTTP/1.1 101')) return reject(new Error(text));
      // Frames may arrive in the same read as the response head (the welcome frame does).
      received.push(data.subarray(text.indexOf('\r\n\r\n') + 4));
      resolve();
    });
  });
  socket.on('data', (data) => received.push(data));
  return { socket, received, closedAt };
}

describe('drain on SIGTERM (node dist/main.js)', () => {
  it('turns unready, refuses new upgrades with 503 draining, closes every socket 1012 spread over the window, and exits 0', async () => {
    const WINDOW = 1000;
    const gw = await spawnGateway({ JWT_SECRET: TEST_SECRET, DRAIN_WINDOW_MS: String(WINDOW), SHUTDOWN_GRACE_MS: '5000', MAX_UPGRADES_PER_SEC: '0' });
    const url = `ws://127.0.0.1:${gw.port}/api/alerts/subscribe?token=${token()}`;
    const clients: TestClient[] = [];
    for (let i = 0; i < 20; i++) clients.push(...(await Promise.all(Array.from({ length: 10 }, () => connect(url)))));
    const closedAt: number[] = [];
    for (const client of clients) void client.closed.then(() => closedAt.push(Date.now()));

    const signalledAt = Date.now();
    gw.child.kill('SIGTERM');
    await eventually(async () => (await fetch(`http://127.0.0.1:${gw.port}/readyz`)).status === 503, 2000, 'readiness to flip');
    const late = await refusal(url);
    expect(late).toMatchObject({ status: 503, body: { error: 'draining' } });
    expect(late.headers['retry-after']).toBe('1');

    const closes = await Promise.all(clients.map((c) => c.closed));
    expect(closes).toEqual(Array(clients.length).fill({ code: 1012, reason: 'server restarting' }));
    expect(await gw.exited).toBe(0);
    // Spread: the first and the last close are most of the window apart, and no instant holds more than a
    // small share of them.
    const span = Math.max(...closedAt) - Math.min(...closedAt);
    expect(span).toBeGreaterThan(WINDOW * 0.6);
    expect(Math.max(...closedAt) - signalledAt).toBeLessThan(WINDOW + 2000);
    const perMs = new Map<number, number>();
    for (const t of closedAt) perMs.set(t, (perMs.get(t) ?? 0) + 1);
    expect(Math.max(...perMs.values())).toBeLessThan(clients.length / 4);
    expect(gw.stdout.join('\n')).toContain('"event":"shutdown"');
  });

  it('terminates a client that ignores the close frame at SHUTDOWN_GRACE_MS, counted under 1012', async () => {
    const GRACE = 1500;
    const gw = await spawnGateway({ JWT_SECRET: TEST_SECRET, DRAIN_WINDOW_MS: '0', SHUTDOWN_GRACE_MS: String(GRACE) });
    const deaf = await deafClient(gw.port, token());
    const polite = await connect(`ws://127.0.0.1:${gw.port}/api/alerts/subscribe?token=${token()}`);
    const signalledAt = Date.now();
    gw.child.kill('SIGTERM');
    expect(await polite.closed).toEqual({ code: 1012, reason: 'server restarting' });
    const droppedAfter = (await deaf.closedAt) - signalledAt;
    expect(droppedAfter).toBeGreaterThanOrEqual(GRACE - 100);
    expect(droppedAfter).toBeLessThan(GRACE + 1500);
    // After its welcome frame, it was sent the close frame (opcode 8, status 1012) before being dropped.
    let bytes = Buffer.concat(deaf.received);
    expect(JSON.parse(bytes.subarray(2, 2 + bytes[1]).toString())).toMatchObject({ type: 'welcome' });
    bytes = bytes.subarray(2 + bytes[1]);
    expect(bytes[0] & 0x0f).toBe(0x8);
    expect(bytes.readUInt16BE(2)).toBe(1012);
    expect(await gw.exited).toBe(0);
    // At the default level (info) the closes are told in the connections summary, the last one written on exit.
    const summaries = gw.stdout.filter((l) => l.includes('"event":"connections"')).map((l) => JSON.parse(l) as { closes: Record<string, number> });
    expect(summaries.reduce((n, l) => n + (l.closes['1012'] ?? 0), 0)).toBe(2);
    expect(gw.stdout.filter((l) => l.includes('"event":"close"'))).toEqual([]);
  });

  it('exits at once on a second signal', async () => {
    const gw = await spawnGateway({ JWT_SECRET: TEST_SECRET, DRAIN_WINDOW_MS: '0', SHUTDOWN_GRACE_MS: '20000' });
    const deaf = await deafClient(gw.port, token());
    gw.child.kill('SIGTERM');
    await eventually(() => gw.stdout.some((l) => l.includes('"event":"shutdown"')), 2000, 'the drain to start');
    const second = Date.now();
    gw.child.kill('SIGINT');
    expect(await gw.exited).toBe(1);
    expect(Date.now() - second).toBeLessThan(2000);
    deaf.socket.destroy();
  });
});

describe('admission limit (MAX_UPGRADES_PER_SEC)', () => {
  it('sheds a burst of upgrades with 503 at_capacity + Retry-After, and admits again a second later', async () => {
    const gw = await spawnGateway({ JWT_SECRET: TEST_SECRET, MAX_UPGRADES_PER_SEC: '20' });
    try {
      const url = `ws://127.0.0.1:${gw.port}/api/alerts/subscribe?token=${token()}`;
      const outcomes = await Promise.all(
        Array.from({ length: 100 }, () =>
          connect(url).then(
            (client) => ({ ok: true as const, client }),
            (error: { status?: number; headers?: Record<string, string>; body?: { error: string } }) => ({ ok: false as const, error }),
          ),
        ),
      );
      const accepted = outcomes.filter((o) => o.ok);
      const shed = outcomes.filter((o) => !o.ok).map((o) => (o as { error: { status?: number; headers?: Record<string, string>; body?: { error: string } } }).error);
      expect(accepted.length).toBeGreaterThanOrEqual(20);
      expect(accepted.length).toBeLessThan(40);
      expect(shed.length).toBe(100 - accepted.length);
      for (const error of shed) expect([error.status, error.body?.error, error.headers?.['retry-after']]).toEqual([503, 'at_capacity', '1']);
      // The bucket refills: a client that waits as told gets in.
      await new Promise((resolve) => setTimeout(resolve, 1000)); // Retry-After: 1
      const later = await connect(url);
      for (const o of accepted) if (o.ok) o.client.ws.terminate();
      later.ws.terminate();
    } finally {
      gw.child.kill('SIGKILL');
    }
  });
});
