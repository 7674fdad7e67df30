import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/config/config';
import { eventually } from '../support/gateway';
import { freePort, ROOT, spawnGateway, type GatewayProcess } from '../support/process';
import { RedisProcess } from '../support/redis';
import { sendFrame, SseClient } from '../support/sse-client';
import { TEST_SECRET, token } from '../support/tokens';

jest.setTimeout(60_000);

/**
 * The documented timeouts and the default SSE heartbeat, both divided by this: the same ratio, seconds instead of
 * minutes. A config whose timeouts are not longer than the heartbeat fails here as it would in production.
 */
const SCALE = 30;
const HEARTBEAT_MS = Math.round(loadConfig({}).config.sseHeartbeatMs / SCALE);

/** Per server of the backend: its status (UP, DOWN, ...) and how many sessions HAProxy sent it so far (stot). */
function servers(socket: string): Promise<Record<string, { status: string; sessions: number }>> {
  return new Promise((resolve, reject) => {
    let out = '';
    const conn = netConnect(socket, () => conn.write('show stat\n'));
    conn.on('data', (chunk) => (out += chunk));
    conn.on('end', () => {
      const rows = out.split('\n').filter((l) => l.startsWith('gateways,') && !l.startsWith('gateways,BACKEND')).map((l) => l.split(','));
      resolve(Object.fromEntries(rows.map((f) => [f[1], { status: f[17].split(' ')[0], sessions: Number(f[7]) }])));
    });
    conn.on('error', reject);
  });
}

describe('SSE through HAProxy (docs/examples/haproxy.cfg), two replicas', () => {
  let redis: RedisProcess;
  const replicas: GatewayProcess[] = [];
  const nodeIds = ['sse-a', 'sse-b'].map((name) => `${name}-${Date.now()}`);
  const haproxies: ChildProcess[] = [];
  const streams: SseClient[] = [];
  let dir: string;
  /** The documented timeouts, scaled (ms). */
  const timeouts: Record<string, number> = {};

  /** Starts HAProxy on the documented config: its addresses replaced, its timeouts scaled (or replaced). */
  async function haproxy(name: string, override: Record<string, number> = {}): Promise<{ front: number; socket: string }> {
    const socket = join(dir, `${name}.sock`);
    const front = await freePort();
    let config = readFileSync(join(ROOT, 'docs', 'examples', 'haproxy.cfg'), 'utf8')
      .replace(/^global$/m, `global\n    stats socket ${socket} level admin`)
      .replace(/^(\s*)bind :8000$/m, `$1bind 127.0.0.1:${front}`)
      .replace(/^\s*server c .*$/m, '');
    ['a', 'b'].forEach((server, i) => (config = config.replace(new RegExp(`^(\\s*server ${server}) 127\\.0\\.0\\.1:808${i + 1}`, 'm'), `$1 127.0.0.1:${replicas[i].port}`)));
    for (const which of ['client', 'server']) {
      const line = new RegExp(`^(\\s*timeout ${which}\\s+)(\\d+)s\\b`, 'm');
      const documented = line.exec(config);
      expect([which, documented !== null]).toEqual([which, true]);
      timeouts[which] = Math.round((Number(documented![2]) * 1000) / SCALE);
      config = config.replace(line, `$1${override[which] ?? timeouts[which]}ms`);
    }
    expect(config.match(/^\s*server /gm)).toHaveLength(2);
    const file = join(dir, `${name}.cfg`);
    writeFileSync(file, config);
    haproxies.push(spawn('haproxy', ['-db', '-f', file], { stdio: 'ignore' }));
    await eventually(async () => Object.values(await servers(socket).catch(() => ({}))).filter((s) => s.status === 'UP').length === 2, 10_000, `${name}: HAProxy seeing both replicas up`);
    return { front, socket };
  }

  beforeAll(async () => {
    redis = await RedisProcess.start();
    dir = mkdtempSync(join(tmpdir(), 'rg-haproxy-sse-'));
    for (const nodeId of nodeIds) {
      replicas.push(await spawnGateway({ JWT_SECRET: TEST_SECRET, REDIS_URL: redis.url, NODE_ID: nodeId, SSE_HEARTBEAT_MS: String(HEARTBEAT_MS) }));
    }
  });

  afterAll(async () => {
    await Promise.all(streams.map((s) => s.close()));
    for (const child of haproxies) child.kill('SIGKILL');
    for (const replica of replicas) replica.child.kill('SIGKILL');
    await redis?.stop();
  });

  it('keeps a quiet stream open past timeout client and timeout server on its heartbeats, and a send landing on the other replica reaches it', async () => {
    const { front, socket } = await haproxy('documented');
    expect(HEARTBEAT_MS).toBeLessThan(Math.min(timeouts.client, timeouts.server));
    const reader = token({ sub: 'nurse-1', role: 'user' });
    const stream = await SseClient.open(`http://127.0.0.1:${front}/sse?channel=chat:ward-9`, { authorization: `Bearer ${reader}` });
    streams.push(stream);
    const { session } = (await stream.ofType('welcome')).data as { session: string };
    // The session names the replica holding the stream.
    const holder = nodeIds.indexOf(Buffer.from(session.split('.')[1], 'base64url').toString('utf8'));
    expect(holder).not.toBe(-1);
    const other = ['a', 'b'][1 - holder];

    // After the welcome (and the user's own join), nothing but heartbeats for twice the longer timeout: HAProxy
    // closes a stream quiet for longer than either (the control below), and `until` throws if this one ends.
    const quietMs = 2 * Math.max(timeouts.client, timeouts.server);
    await stream.until(() => stream.comments >= Math.ceil(quietMs / HEARTBEAT_MS), quietMs + 5000);

    // leastconn: the stream's replica has a connection open, so the POST goes to the other one.
    const before = (await servers(socket))[other].sessions;
    const sent = await sendFrame(`http://127.0.0.1:${front}/sse/send`, reader, session, { type: 'publish', channel: 'chat:ward-9', data: { text: 'bed 4 needs help' } });
    expect(sent.status).toBe(202);
    expect((await servers(socket))[other].sessions).toBe(before + 1);
    expect((await stream.ofType('publication')).data).toMatchObject({ channel: 'chat:ward-9', user: 'nurse-1', data: { text: 'bed 4 needs help' } });
  });

  it('(control) has the stream cut when HAProxy\'s server timeout is shorter than the heartbeat', async () => {
    const { front } = await haproxy('short', { server: Math.round(HEARTBEAT_MS / 2) });
    const stream = await SseClient.open(`http://127.0.0.1:${front}/sse?channel=chat:ward-9`, { authorization: `Bearer ${token({ sub: 'nurse-2', role: 'user' })}` });
    streams.push(stream);
    await stream.ofType('welcome');
    // Ended by HAProxy within a few heartbeats (`until` throws "stream ended"; the deadline would say otherwise).
    await expect(stream.until(() => false, 5000)).rejects.toThrow('stream ended');
  });
});
