import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';

export const ROOT = join(__dirname, '..', '..');
export const MAIN = join(ROOT, 'dist', 'main.js');

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

export interface GatewayProcess {
  child: ChildProcess;
  /** The public port (WebSocket endpoints, health). */
  port: number;
  /** The internal port (metrics, server API, /admin, /demo). */
  internalPort: number;
  stdout: string[];
  stderr: () => string;
  exited: Promise<number | null>;
}

/**
 * Runs `node dist/main.js` (the built service) with `env`, resolving once it logs that it listens. `entry`: another
 * script that starts the same service (test/support/push-harness.js), with an IPC channel when `ipc` is set.
 */
export async function spawnGateway(env: Record<string, string>, options: { waitForListening?: boolean; entry?: string; ipc?: boolean } = {}): Promise<GatewayProcess> {
  // A port freePort() found free can be taken before the gateway binds it (by another worker's listener, or as the
  // local port of an outgoing connection: both come from the ephemeral range): with ports of our own choosing, a
  // start that fails on a taken port is retried on new ones (seen once in CI: INTERNAL_PORT already in use).
  const ours = !env.PORT && !env.INTERNAL_PORT && options.waitForListening !== false;
  for (let attempt = 1; ; attempt++) {
    try {
      return await spawnOnce(env, options);
    } catch (error) {
      if (!ours || attempt >= 3 || !/is already in use on/.test((error as Error).message)) throw error;
    }
  }
}

async function spawnOnce(env: Record<string, string>, { waitForListening = true, entry = MAIN, ipc = false } = {}): Promise<GatewayProcess> {
  const port = env.PORT ? Number(env.PORT) : await freePort();
  const internalPort = env.INTERNAL_PORT ? Number(env.INTERNAL_PORT) : await freePort();
  const child = spawn(process.execPath, [entry], {
    cwd: ROOT,
    // PRESENCE_GRACE_MS 0 unless a test asks for a grace: leaves are told at once, as the suite's timings expect.
    env: { PATH: process.env.PATH, HOME: process.env.HOME, HOST: '127.0.0.1', PORT: String(port), INTERNAL_HOST: '127.0.0.1', INTERNAL_PORT: String(internalPort), PRESENCE_GRACE_MS: '0', ...env },
    stdio: ipc ? ['ignore', 'pipe', 'pipe', 'ipc'] : ['ignore', 'pipe', 'pipe'],
  });
  const stdout: string[] = [];
  let stderr = '';
  let buffered = '';
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const listening = new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      let newline: number;
      while ((newline = buffered.indexOf('\n')) !== -1) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        stdout.push(line);
        if (process.env.DUMP_LOGS) appendFileSync(`${process.env.DUMP_LOGS}/gateway-${env.NODE_ID ?? 'embedded'}-${child.pid}.log`, `${line}\n`);
        if (line.includes('"event":"listening"')) resolve();
      }
    });
    void exited.then((code) => reject(new Error(`exited with ${code} before listening: ${stderr}`)));
  });
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  if (waitForListening) await listening;
  else listening.catch(() => undefined);
  return { child, port, internalPort, stdout, stderr: () => stderr, exited };
}
