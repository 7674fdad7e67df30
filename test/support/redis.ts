import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './process';

/**
 * A throwaway redis-server on a free port (never the shared one on 6379), which a test can kill and restart
 * on the same port to simulate an outage.
 */
export class RedisProcess {
  private child: ChildProcess | undefined;
  /** This process's working directory, removed when it is killed. */
  private dir: string | undefined;

  private constructor(
    readonly port: number,
    /** Extra arguments: a config file first (a sentinel's), or more options (`--replicaof`). */
    private readonly extra: (port: number) => string[] = () => [],
  ) {}

  static async start(extra?: (port: number) => string[]): Promise<RedisProcess> {
    // freePort() only says the port was free a moment ago: a suite running in parallel can take it first, and
    // then this redis-server exits while the other one answers our PING. Only our own process will do.
    for (let attempt = 0; ; attempt++) {
      const redis = new RedisProcess(await freePort(), extra);
      try {
        await redis.restart();
        return redis;
      } catch (error) {
        await redis.kill();
        if (attempt === 4) throw error;
      }
    }
  }

  /** Whether the redis-server process is up (not killed). */
  get running(): boolean {
    return this.child !== undefined;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}/0`;
  }

  /** Starts (again) on the same port and resolves when it answers PING. */
  async restart(): Promise<void> {
    if (this.child) throw new Error('redis-server is already running');
    const extra = this.extra(this.port);
    // A config file (a sentinel's) must come first; options follow it.
    const [file, rest] = extra[0] && !extra[0].startsWith('--') ? [[extra[0]], extra.slice(1)] : [[], extra];
    // A directory of its own (a later --dir in `extra` wins): --save '' stops periodic snapshots, but a replica's
    // full sync still writes the master's snapshot as dump.rdb in `dir`, which defaults to the working directory
    // (the repository, under jest).
    this.dir = mkdtempSync(join(tmpdir(), 'rg-redis-'));
    this.child = spawn('redis-server', [...file, '--dir', this.dir, '--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no', ...rest], {
      cwd: this.dir,
      stdio: 'ignore',
    });
    const child = this.child;
    const deadline = Date.now() + 5000;
    for (;;) {
      const pid = await this.pid();
      if (pid === child.pid) return;
      if (pid !== undefined || child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`another process answers on ${this.port}; this redis-server could not listen there`);
      }
      if (Date.now() > deadline) throw new Error(`redis-server did not start on ${this.port}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  /** Kills it hard (an outage, not a shutdown). */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.child = undefined;
    const exited = once(child, 'exit');
    child.kill('SIGKILL');
    await exited;
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
    this.dir = undefined;
  }

  stop(): Promise<void> {
    return this.kill();
  }

  /** One command over a raw connection (inline form); resolves with the raw reply. */
  command(line: string): Promise<string> {
    return new Promise((resolve, reject) => {
      let reply = '';
      const socket = connect(this.port, '127.0.0.1', () => socket.write(`${line}\r\n`));
      socket.on('data', (data) => {
        reply += data.toString();
        if (complete(reply)) {
          socket.destroy();
          resolve(reply);
        }
      });
      socket.once('error', reject);
    });
  }

  /** The process id of the redis-server answering on the port (INFO server), or undefined if none answers. */
  private pid(): Promise<number | undefined> {
    return new Promise((resolve) => {
      let reply = '';
      const socket = connect(this.port, '127.0.0.1', () => socket.write('INFO server\r\n'));
      socket.on('data', (data) => {
        reply += data.toString();
        const match = /process_id:(\d+)/.exec(reply);
        if (!match) return;
        socket.destroy();
        resolve(Number(match[1]));
      });
      socket.once('error', () => resolve(undefined));
      socket.once('close', () => resolve(undefined));
    });
  }
}

/** Whether a RESP reply is complete (enough for INFO, simple strings, arrays of bulk strings, errors). */
function complete(reply: string): boolean {
  const type = reply[0];
  if (type === '+' || type === '-' || type === ':') return reply.includes('\r\n');
  if (type === '$') {
    const end = reply.indexOf('\r\n');
    if (end === -1) return false;
    const length = Number(reply.slice(1, end));
    return length < 0 || Buffer.byteLength(reply) >= end + 2 + length + 2;
  }
  if (type === '*') {
    const lines = reply.split('\r\n');
    const count = Number(lines[0].slice(1));
    if (count <= 0) return true;
    // Flat arrays of bulk strings: header, then two lines per element.
    return lines.length >= 1 + count * 2 + 1;
  }
  return false;
}
