import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './process';

/** STUN (RFC 5389) constants for the readiness probe. */
const MAGIC_COOKIE = 0x2112a442;
const ALLOCATE_REQUEST = 0x0003;
const ALLOCATE_ERROR = 0x0113;
const REQUESTED_TRANSPORT = 0x0019;
const REALM = 0x0014;

/** An unauthenticated TURN Allocate (UDP relay): coturn answers 401 with its REALM, or nothing while not listening. */
function allocateRequest(transactionId: Buffer): Buffer {
  const message = Buffer.alloc(28);
  message.writeUInt16BE(ALLOCATE_REQUEST, 0);
  message.writeUInt16BE(8, 2);
  message.writeUInt32BE(MAGIC_COOKIE, 4);
  transactionId.copy(message, 8);
  message.writeUInt16BE(REQUESTED_TRANSPORT, 20);
  message.writeUInt16BE(4, 22);
  message.writeUInt8(17, 24); // UDP
  return message;
}

/** The REALM of an Allocate error response to `transactionId`, or undefined for anything else. */
function realmOf(response: Buffer, transactionId: Buffer): string | undefined {
  if (response.length < 20 || response.readUInt16BE(0) !== ALLOCATE_ERROR || !response.subarray(8, 20).equals(transactionId)) return undefined;
  const end = Math.min(response.length, 20 + response.readUInt16BE(2));
  for (let at = 20; at + 4 <= end; ) {
    const type = response.readUInt16BE(at);
    const length = response.readUInt16BE(at + 2);
    if (type === REALM) return response.toString('utf8', at + 4, at + 4 + length);
    at += 4 + Math.ceil(length / 4) * 4;
  }
  return undefined;
}

/**
 * Debian's coturn (`turnserver`) on a free port of 127.0.0.1, UDP and TCP, with the TURN REST API
 * (`use-auth-secret`): its own process, configuration, database, pid file and log in a temp dir, and no CLI,
 * TLS or DTLS listener, so it neither relies on nor collides with a system coturn (Debian's package installs
 * one as a service, with /etc/turnserver.conf, the CLI on 5766 and a pid file in /var/run).
 */
export class Coturn {
  private constructor(
    private readonly child: ChildProcess,
    readonly port: number,
    readonly realm: string,
    private readonly dir: string,
  ) {}

  static async start(secret: string): Promise<Coturn> {
    // freePort() only says a TCP port was free a moment ago, and coturn binds with SO_REUSEPORT: another coturn
    // could share the port. The probe must see our own realm (random per start) before the server counts as ours.
    for (let attempt = 0; ; attempt++) {
      const dir = mkdtempSync(join(tmpdir(), 'rg-coturn-'));
      const port = await freePort();
      const realm = `rg-${randomBytes(6).toString('hex')}.test`;
      const child = spawn(
        'turnserver',
        [
          '-n', // no configuration file: /etc/turnserver.conf is the system service's
          '--verbose', // per-session lines (allocations, 401s) in the log, for the tests' evidence
          '--listening-ip=127.0.0.1',
          '--relay-ip=127.0.0.1',
          `--listening-port=${port}`,
          '--use-auth-secret',
          `--static-auth-secret=${secret}`,
          `--realm=${realm}`,
          '--no-tls',
          '--no-dtls',
          '--no-cli',
          '--allow-loopback-peers', // both ends of the relayed traffic are on this machine
          `--log-file=${join(dir, 'turnserver.log')}`,
          '--simple-log',
          '--no-stdout-log',
          `--userdb=${join(dir, 'turndb')}`,
          `--pidfile=${join(dir, 'turnserver.pid')}`,
        ],
        { stdio: 'ignore' },
      );
      const coturn = new Coturn(child, port, realm, dir);
      try {
        await coturn.probe(5000);
        return coturn;
      } catch (error) {
        await coturn.stop();
        if (attempt === 4) throw error;
      }
    }
  }

  /** Resolves once this coturn answers an Allocate on its UDP port with its own realm. */
  private async probe(ms: number): Promise<void> {
    const socket = createSocket('udp4');
    const transactionId = randomBytes(12);
    const request = allocateRequest(transactionId);
    try {
      await new Promise<void>((resolve, reject) => {
        const exited = () => finish(new Error(`turnserver exited before it answered on ${this.port}: ${this.logTail()}`));
        // Not installed (ENOENT) is an 'error' event, which would otherwise crash the test process.
        const failed = (error: Error) => finish(new Error(`turnserver could not be started (${error.message}); npm test installs Debian's coturn`));
        this.child.once('exit', exited);
        this.child.once('error', failed);
        // UDP: the request is retransmitted (RFC 5389 §7.2.1 does the same) until the listener is up.
        const resend = setInterval(() => socket.send(request, this.port, '127.0.0.1'), 50);
        const deadline = setTimeout(() => finish(new Error(`turnserver did not answer on ${this.port} within ${ms} ms: ${this.logTail()}`)), ms);
        const finish = (error?: Error) => {
          clearInterval(resend);
          clearTimeout(deadline);
          this.child.off('exit', exited);
          this.child.off('error', failed);
          if (error) reject(error);
          else resolve();
        };
        socket.on('message', (response) => {
          const realm = realmOf(response, transactionId);
          if (realm === this.realm) finish();
          else if (realm !== undefined) finish(new Error(`another TURN server (realm ${realm}) answers on ${this.port}`));
        });
        socket.on('error', () => undefined); // ICMP port unreachable while coturn starts: keep retransmitting
        socket.send(request, this.port, '127.0.0.1');
      });
    } finally {
      socket.close();
    }
  }

  /** A TURN URL of this server, as TURN_URLS lists it. */
  url(transport: 'udp' | 'tcp'): string {
    return `turn:127.0.0.1:${this.port}?transport=${transport}`;
  }

  /** coturn's log so far (it names users and session results; never a password or an HMAC). */
  log(): string {
    try {
      return readFileSync(join(this.dir, 'turnserver.log'), 'utf8');
    } catch {
      return '';
    }
  }

  private logTail(): string {
    return this.log().trim().split('\n').slice(-5).join(' | ');
  }

  async stop(): Promise<void> {
    // No pid: it never started (spawn failed), and no 'exit' is sure to follow.
    if (this.child.pid !== undefined && this.child.exitCode === null && this.child.signalCode === null) {
      const exited = once(this.child, 'exit');
      this.child.kill('SIGKILL');
      await exited;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface UclientRun {
  /** Exit code of turnutils_uclient: 0 after allocating and relaying, non-zero when it could not allocate. */
  code: number | null;
  output: string;
  /** The relayed addresses coturn allocated ("Received relay addr: ..."). */
  relays: string[];
  /** Messages the clients received back through the relays ("tot_recv_msgs=N"), 0 when none. */
  received: number;
}

/**
 * `turnutils_uclient` (coturn's test client) against a `turn:` URL with a username and credential: two clients
 * (`-y`, client to client, so no separate peer is needed) each allocate a relay and send `-n` messages to each
 * other through them. `-t` for `?transport=tcp`. `-v` prints each allocation's relayed address.
 */
export function uclient(turnUrl: string, username: string, credential: string, timeoutMs = 20_000): Promise<UclientRun> {
  const match = /^turn:([0-9.]+):(\d+)\?transport=(udp|tcp)$/.exec(turnUrl);
  if (!match) throw new Error(`not a turn:<ipv4>:<port>?transport= URL: ${turnUrl}`);
  const [, host, port, transport] = match;
  const args = ['-v', '-y', '-c', '-n', '3', ...(transport === 'tcp' ? ['-t'] : []), '-p', port, '-u', username, '-w', credential, host];
  return new Promise((resolve, reject) => {
    const child = spawn('turnutils_uclient', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      const relays = [...output.matchAll(/Received relay addr: (\S+)/g)].map((m) => m[1]);
      const received = Number(/tot_recv_msgs=(\d+)\s*$/m.exec(output)?.[1] ?? 0);
      resolve({ code, output, relays, received });
    });
  });
}
