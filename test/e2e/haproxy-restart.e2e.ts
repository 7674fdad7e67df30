import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { RealtimeClient, type AlertFrame, type WebSocketConstructor } from '../../src/client/realtime-client';
import { eventually } from '../support/gateway';
import { freePort, ROOT, spawnGateway, type GatewayProcess } from '../support/process';
import { RedisProcess } from '../support/redis';
import { compareStreamIds, parseStreamId } from '../../src/channels/stream-id';
import { TEST_SECRET, token } from '../support/tokens';

jest.setTimeout(120_000);

const WS = WebSocket as unknown as WebSocketConstructor;
const CLIENTS = 100;
const RATE = 200; // alerts per second
const ENV = { JWT_SECRET: TEST_SECRET, DRAIN_WINDOW_MS: '1000', SHUTDOWN_GRACE_MS: '3000', PRESENCE_TTL_MS: '3000', MAX_UPGRADES_PER_SEC: '0' };

/** One line of HAProxy's `show stat` per server of the backend: name → status (UP, DOWN, ...). */
function serverStatus(socket: string): Promise<Record<string, string>> {
  return new Promise((resolve, reject) => {
    let out = '';
    const conn = netConnect(socket, () => conn.write('show stat\n'));
    conn.on('data', (chunk) => (out += chunk));
    conn.on('end', () => {
      const lines = out.split('\n').filter((l) => l.startsWith('gateways,') && !l.startsWith('gateways,BACKEND'));
      resolve(Object.fromEntries(lines.map((l) => l.split(',')).map((f) => [f[1], f[17].split(' ')[0]])));
    });
    conn.on('error', reject);
  });
}

describe('a rolling restart through HAProxy (docs/examples/haproxy.cfg)', () => {
  let redis: RedisProcess;
  let haproxy: ChildProcess;
  let socket: string;
  let front: number;
  const ports: { port: number; internalPort: number }[] = [];
  const replicas: GatewayProcess[] = [];
  const clients: RealtimeClient[] = [];

  const start = (i: number) =>
    spawnGateway({ ...ENV, REDIS_URL: redis.url, NODE_ID: `lb-${i}-${Date.now()}`, PORT: String(ports[i].port), INTERNAL_PORT: String(ports[i].internalPort) });
  const ready = (i: number) => eventually(async () => (await fetch(`http://127.0.0.1:${ports[i].port}/readyz`).then((r) => r.status, () => 0)) === 200, 10_000, `replica ${i} ready`);

  beforeAll(async () => {
    redis = await RedisProcess.start();
    for (let i = 0; i < 3; i++) ports.push({ port: await freePort(), internalPort: await freePort() });
    for (let i = 0; i < 3; i++) replicas.push(await start(i));
    for (let i = 0; i < 3; i++) await ready(i);
    // The documented config, run as it is but for its addresses (and a stats socket to watch health checks).
    const dir = mkdtempSync(join(tmpdir(), 'rg-haproxy-'));
    socket = join(dir, 'stats.sock');
    front = await freePort();
    let config = readFileSync(join(ROOT, 'docs', 'examples', 'haproxy.cfg'), 'utf8')
      .replace(/^global$/m, `global\n    stats socket ${socket} level admin`)
      .replace(/^(\s*)bind :8000$/m, `$1bind 127.0.0.1:${front}`);
    ['a', 'b', 'c'].forEach((name, i) => (config = config.replace(new RegExp(`^(\\s*server ${name}) 127\\.0\\.0\\.1:808${i + 1}`, 'm'), `$1 127.0.0.1:${ports[i].port}`)));
    expect(config.match(/^\s*server /gm)).toHaveLength(3);
    writeFileSync(join(dir, 'haproxy.cfg'), config);
    haproxy = spawn('haproxy', ['-db', '-f', join(dir, 'haproxy.cfg')], { stdio: 'ignore' });
    await eventually(async () => Object.values(await serverStatus(socket).catch(() => ({}))).filter((s) => s === 'UP').length === 3, 10_000, 'HAProxy seeing three replicas up');
  });

  afterAll(async () => {
    for (const client of clients) client.close();
    haproxy?.kill('SIGKILL');
    for (const replica of replicas) replica.child.kill('SIGKILL');
    await redis?.stop();
  });

  it('refuses no client upgrade, and every client gets every alert once and in order', async () => {
    const received: string[][] = [];
    const refusals: string[] = [];
    const notRecovered: number[] = [];
    const offline: number[] = []; // ms each reconnecting client spent without a connection
    for (let c = 0; c < CLIENTS; c++) {
      const client = new RealtimeClient({ url: `ws://127.0.0.1:${front}/api/alerts/subscribe`, getToken: () => token({ sub: `c${c}`, role: 'authority' }), WebSocket: WS });
      const ids: string[] = (received[c] = []);
      let closedAt: number | undefined;
      client.on('alert', (alert: AlertFrame) => ids.push(alert.id!));
      client.on('resumed', ({ recovered }) => recovered || notRecovered.push(c));
      client.on('close', ({ reason, reconnectInMs }) => {
        if (/^HTTP /.test(reason)) refusals.push(`client ${c}: ${reason}`);
        if (reconnectInMs !== undefined && closedAt === undefined) closedAt = Date.now();
      });
      client.on('open', () => {
        if (closedAt !== undefined) offline.push(Date.now() - closedAt);
        closedAt = undefined;
      });
      client.connect();
      clients.push(client);
    }
    await eventually(() => clients.every((c) => c.position?.id !== undefined), 20_000, 'every client welcomed');

    // The publisher: 200 alerts/s to the internal port of a replica that is up, another one on failure, with an
    // Idempotency-Key so a retried alert is published once.
    const published: string[] = [];
    const down = new Set<number>();
    let publishing = true;
    let n = 0;
    const service = token({ sub: 'svc', role: 'service' });
    const publishOne = async (k: number) => {
      for (let attempt = 0; attempt < 20; attempt++) {
        const i = (k + attempt) % 3;
        if (down.has(i)) continue;
        const res = await fetch(`http://127.0.0.1:${ports[i].internalPort}/api/alerts`, {
          method: 'POST',
          headers: { authorization: `Bearer ${service}`, 'content-type': 'application/json', 'idempotency-key': `a-${k}` },
          body: JSON.stringify({ data: { k } }),
        }).catch(() => undefined);
        if (res?.status === 202) return published.push(((await res.json()) as { id: string }).id);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      throw new Error(`alert ${k} could not be published`);
    };
    const publisher = (async () => {
      const inflight: Promise<unknown>[] = [];
      const t0 = Date.now();
      while (publishing) {
        while (n < ((Date.now() - t0) * RATE) / 1000) inflight.push(publishOne(n++));
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      await Promise.all(inflight);
    })();

    // Restart the replicas one by one, as a rollout does: stop (drain, 1012), start again on the same ports.
    await new Promise((resolve) => setTimeout(resolve, 1000)); // traffic before the first restart
    for (let i = 0; i < 3; i++) {
      down.add(i);
      replicas[i].child.kill('SIGTERM');
      expect(await replicas[i].exited).toBe(0);
      replicas[i] = await start(i);
      await ready(i);
      down.delete(i);
      // A read of the stats socket can fail (EPIPE: HAProxy closed it as the request was written, seen once in CI
      // under load): it is a "not yet", as in the first wait above, and the next poll asks again.
      await eventually(async () => (await serverStatus(socket).catch(() => ({} as Record<string, string>)))[['a', 'b', 'c'][i]] === 'UP', 10_000, `HAProxy seeing replica ${i} up again`);
    }
    publishing = false;
    await publisher;

    const expected = [...published].sort((a, b) => compareStreamIds(parseStreamId(a)!, parseStreamId(b)!));
    await eventually(() => received.every((ids) => ids.length >= expected.length), 20_000, 'every client to catch up');
    expect(refusals).toEqual([]);
    expect(notRecovered).toEqual([]);
    for (const [c, ids] of received.entries()) expect([c, ids]).toEqual([c, expected]);
    expect(offline.length).toBeGreaterThanOrEqual(CLIENTS); // every client was moved at least once
    const sorted = [...offline].sort((a, b) => a - b);
    // Reported, not asserted: how long clients were without a connection across the whole rollout.
    console.log(`haproxy rolling restart: ${published.length} alerts at ${RATE}/s to ${CLIENTS} clients; ${offline.length} reconnects; offline median ${sorted[sorted.length >> 1]} ms, p99 ${sorted[Math.floor(sorted.length * 0.99)]} ms, max ${sorted[sorted.length - 1]} ms`);
  });
});
