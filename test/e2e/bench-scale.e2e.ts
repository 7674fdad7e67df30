import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// `npm run bench:scale` at 2,000 connections with short phases, so the harness behind docs/benchmarks.md's scale
// table cannot rot: every peer opens every connection, every connection gets the broadcast, the gateway's drain
// brings every client back on a second replica, and no process the run started outlives it (also when it is
// interrupted).
const SCALE = join(__dirname, '..', '..', 'bench', 'scale.js');
const CONNECTIONS = 2000;

interface Broadcast { expected: number; deliveries: number; socketsComplete: number; complete: boolean; lastMs: number; p50Ms: number; p99Ms: number }
interface Round {
  connections: number;
  upgradesPerCpuSec: number;
  rssPerConn: number;
  heapPerConn: number;
  idleCoreShare: number;
  broadcast: Broadcast;
  rate: Broadcast;
  drain?: { sockets: number; reconnected: number; onSurvivor: number; closeCodes: Record<string, number>; reconnectsPerBin: number[] };
}
interface Scale {
  connections: number;
  limits: { nofile: number; nofileHard: string };
  peers: Record<string, Round[]>;
  targets: { name: string; goal: string; value: number }[];
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Process groups the run started that still exist (a moment for the kernel to reap the last ones). */
async function leftBehind(pidsFile: string): Promise<number[]> {
  const pids = readFileSync(pidsFile, 'utf8').split('\n').filter(Boolean).map(Number);
  expect(pids.length).toBeGreaterThan(0);
  for (let i = 0; i < 50 && pids.some(alive); i++) await new Promise((resolve) => setTimeout(resolve, 100));
  return pids.filter(alive);
}

describe('npm run bench:scale', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'rt-bench-scale-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('holds 2,000 distinct users per peer, delivers every broadcast to every socket, and leaves no process behind', async () => {
    const out = join(dir, 'scale.json');
    const pidsFile = join(dir, 'pids');
    const run = spawn(process.execPath, [SCALE, '--connections', String(CONNECTIONS), '--idle-seconds', '1', '--rate-seconds', '1', '--out', out], {
      env: { ...process.env, SCALE_PIDS_FILE: pidsFile },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    run.stderr.on('data', (chunk) => (stderr += chunk));
    run.stdout.resume();
    const [code] = await once(run, 'exit');
    if (code !== 0) throw new Error(`bench:scale exited with ${code}: ${stderr}`);
    expect(stderr).toMatch(/open files soft \d+ -> \d+ \(hard \w+\)/);

    const scale = JSON.parse(readFileSync(out, 'utf8')) as Scale;
    expect(scale.connections).toBe(CONNECTIONS);
    expect(scale.limits.nofile).toBeGreaterThanOrEqual(CONNECTIONS);
    expect(Object.keys(scale.peers).sort()).toEqual(['gateway', 'socketio', 'ws']);
    for (const [peer, [round]] of Object.entries(scale.peers)) {
      expect({ peer, connections: round.connections }).toEqual({ peer, connections: CONNECTIONS });
      for (const key of ['upgradesPerCpuSec', 'rssPerConn', 'heapPerConn'] as const) expect(round[key]).toBeGreaterThan(0);
      expect(round.idleCoreShare).toBeGreaterThanOrEqual(0);
      // Every connection got the broadcast, and every frame of the 10/s phase.
      expect({ peer, ...round.broadcast }).toMatchObject({ peer, expected: CONNECTIONS, deliveries: CONNECTIONS, socketsComplete: CONNECTIONS, complete: true });
      expect(round.broadcast.lastMs).toBeGreaterThanOrEqual(round.broadcast.p99Ms);
      expect({ peer, deliveries: round.rate.deliveries, complete: round.rate.complete }).toEqual({ peer, deliveries: round.rate.expected, complete: true });
    }
    const drain = scale.peers.gateway[0].drain!;
    expect(drain).toMatchObject({ sockets: CONNECTIONS, reconnected: CONNECTIONS, onSurvivor: CONNECTIONS, closeCodes: { 1012: CONNECTIONS } });
    expect(drain.reconnectsPerBin.reduce((a, b) => a + b, 0)).toBe(CONNECTIONS);
    expect(scale.targets.map((t) => t.goal)).toEqual(['≤ 1.3', '≤ 5', '≥ 0.7', '≤ 1.15', '≤ 5 %']);
    for (const t of scale.targets) expect(Number.isFinite(t.value)).toBe(true);

    expect(await leftBehind(pidsFile)).toEqual([]);
  }, 240_000);

  it('kills every process it started when interrupted', async () => {
    const pidsFile = join(dir, 'pids-interrupted');
    const run = spawn(process.execPath, [SCALE, '--connections', '500', '--idle-seconds', '30', '--peers', 'gateway', '--out', join(dir, 'never.json')], {
      env: { ...process.env, SCALE_PIDS_FILE: pidsFile },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    // Interrupted in the idle phase: the server and its clients are all up.
    await new Promise<void>((resolve) => {
      let stderr = '';
      run.stderr.on('data', (chunk) => {
        stderr += chunk;
        if (stderr.includes('idle 30 s')) resolve();
      });
    });
    run.kill('SIGINT');
    const [code] = await once(run, 'exit');
    expect(code).toBe(130);
    expect(await leftBehind(pidsFile)).toEqual([]);
  }, 120_000);
});
