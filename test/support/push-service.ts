import { execFileSync } from 'node:child_process';
import { createECDH, createPublicKey, randomBytes, verify, type ECDH } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const ece = require('http_ece') as { decrypt(buffer: Buffer, params: Record<string, unknown>): Buffer };

/** What a browser hands the application: `PushSubscription.toJSON()`. */
export interface BrowserSubscription {
  endpoint: string;
  expirationTime: number | null;
  keys: { p256dh: string; auth: string };
}

/** One push the service accepted as well-formed: VAPID verified, payload decrypted. */
export interface ReceivedPush {
  /** The subscription it was for (the last segment of the endpoint). */
  subscription: string;
  /** The decrypted payload, parsed. */
  payload: Record<string, unknown>;
  /** Its size before encryption. */
  plaintextBytes: number;
  ttl: number;
  urgency: string | undefined;
  /** The `Topic` header (RFC 8030 §5.4): a later message with the same topic replaces one not yet delivered. */
  topic: string | undefined;
  /** The VAPID JWT's claims (`sub`: the sender's contact; tests give each replica its own, to tell who sent a push). */
  claims: { aud: string; exp: number; sub: string };
  /** What the service answered (the test's choice). */
  answered: number | 'hang';
  at: number;
}

/** What the service answers a well-formed push: a status (201 by default), `hang` (never), or a status with Retry-After. */
export type PushAnswer = number | 'hang' | { status: number; retryAfter: string };

/**
 * A local push service doing what a browser vendor's does (RFC 8030 §5, RFC 8292 §4, RFC 8291), over HTTPS with a
 * certificate from a CA this object makes (openssl) and throws away on stop: a gateway process trusts it through
 * NODE_EXTRA_CA_CERTS=`caFile`. For each POST /push/<id> it checks the `Authorization: vapid t=<JWT>, k=<key>`
 * header (ES256 signature verified with node:crypto against `k`, `k` equal to the application server key the
 * subscription was made with, `aud` its own origin, `exp` in the future and at most 24 h ahead), the TTL and
 * Content-Encoding headers, then decrypts the body with the subscription's private key using the `http_ece`
 * package (an implementation no one here wrote; test/unit/push.spec.ts checks it against RFC 8291's example).
 * Anything that fails is recorded in `invalid` and refused as a real service would (400, 401, 403, 413).
 */
export class PushService {
  readonly received: ReceivedPush[] = [];
  /** Requests refused as malformed (bad JWT, wrong key, undecryptable): a test expects none. */
  readonly invalid: string[] = [];
  /** Every POST that reached the service, well-formed or not, by subscription. */
  readonly hits = new Map<string, number>();
  /** Decides each answer; 201 Created by default. */
  answer: (push: ReceivedPush) => PushAnswer = () => 201;
  private readonly keys = new Map<string, { ecdh: ECDH; auth: Buffer }>();
  private readonly events = new EventEmitter();
  private readonly sockets = new Set<Socket>();
  private readonly hanging = new Set<ServerResponse>();
  private server!: Server;
  private port = 0;

  private constructor(
    /** The VAPID public key (base64url) subscriptions are made with: the browser's `applicationServerKey`. */
    readonly applicationServerKey: string,
    private readonly dir: string,
  ) {
    this.events.setMaxListeners(100);
  }

  static async start(applicationServerKey: string): Promise<PushService> {
    const dir = mkdtempSync(join(tmpdir(), 'push-service-'));
    const run = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
    // A throwaway CA, and a server certificate for 127.0.0.1 and localhost signed by it.
    run('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1', '-subj', '/CN=realtime-gateway test push CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign');
    run('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1');
    writeFileSync(join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
    run('x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '1', '-extfile', 'server.ext');
    const service = new PushService(applicationServerKey, dir);
    service.server = createServer({ key: readFileSync(join(dir, 'server.key')), cert: readFileSync(join(dir, 'server.crt')) }, (req, res) => service.onRequest(req, res));
    service.server.on('connection', (socket: Socket) => {
      service.sockets.add(socket);
      socket.on('close', () => service.sockets.delete(socket));
    });
    await new Promise<void>((resolve) => service.server.listen(0, '127.0.0.1', resolve));
    service.port = (service.server.address() as AddressInfo).port;
    return service;
  }

  /** The CA certificate (PEM file) a gateway process must trust: NODE_EXTRA_CA_CERTS. */
  get caFile(): string {
    return join(this.dir, 'ca.crt');
  }

  get origin(): string {
    return `https://127.0.0.1:${this.port}`;
  }

  /** A new subscription as a browser makes one: a P-256 key pair and a 16-byte auth secret of its own. */
  subscribe(): BrowserSubscription {
    const id = randomBytes(12).toString('base64url');
    const ecdh = createECDH('prime256v1');
    ecdh.generateKeys();
    const auth = randomBytes(16);
    this.keys.set(id, { ecdh, auth });
    return { endpoint: `${this.origin}/push/${id}`, expirationTime: null, keys: { p256dh: ecdh.getPublicKey().toString('base64url'), auth: auth.toString('base64url') } };
  }

  /** The subscription id of an endpoint. */
  static idOf(subscription: BrowserSubscription): string {
    return subscription.endpoint.slice(subscription.endpoint.lastIndexOf('/') + 1);
  }

  /** Pushes received for a subscription. */
  for(subscription: BrowserSubscription): ReceivedPush[] {
    const id = PushService.idOf(subscription);
    return this.received.filter((push) => push.subscription === id);
  }

  /** Resolves when `check` holds, tested on every request that arrives (no polling). */
  async until(check: () => boolean, ms = 10_000, what = 'pushes'): Promise<void> {
    if (check()) return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.events.off('request', listener);
        reject(new Error(`timed out waiting for ${what}: ${this.received.length} received, invalid: ${JSON.stringify(this.invalid)}`));
      }, ms);
      const listener = () => {
        if (!check()) return;
        clearTimeout(timer);
        this.events.off('request', listener);
        resolve();
      };
      this.events.on('request', listener);
    });
  }

  /** Requests held open by `hang` right now. */
  get hangingCount(): number {
    return this.hanging.size;
  }

  async stop(): Promise<void> {
    for (const res of this.hanging) res.destroy();
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    rmSync(this.dir, { recursive: true, force: true });
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const push = this.check(req, Buffer.concat(chunks), res);
      if (push) {
        const answer = this.answer(push);
        push.answered = typeof answer === 'object' ? answer.status : answer;
        this.received.push(push);
        if (answer === 'hang') {
          this.hanging.add(res);
          res.on('close', () => this.hanging.delete(res));
        } else if (typeof answer === 'object') {
          res.writeHead(answer.status, { 'Retry-After': answer.retryAfter, 'Content-Length': 0 });
          res.end();
        } else {
          // RFC 8030 §5: 201 Created with the message's Location.
          res.writeHead(answer, answer === 201 ? { Location: `${this.origin}/message/${randomBytes(8).toString('hex')}`, 'Content-Length': 0 } : { 'Content-Length': 0 });
          res.end();
        }
      }
      this.events.emit('request');
    });
  }

  /** The checks of a real push service; a refusal is answered here and recorded in `invalid`. */
  private check(req: IncomingMessage, body: Buffer, res: ServerResponse): ReceivedPush | undefined {
    const refuse = (status: number, reason: string): undefined => {
      this.invalid.push(reason);
      res.writeHead(status, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(reason) });
      res.end(reason);
      return undefined;
    };
    const match = /^\/push\/([A-Za-z0-9_-]+)$/.exec(req.url ?? '');
    if (req.method !== 'POST' || !match) return refuse(404, `not a subscription: ${req.method} ${req.url}`);
    const id = match[1];
    this.hits.set(id, (this.hits.get(id) ?? 0) + 1);
    const keys = this.keys.get(id);
    if (!keys) return refuse(404, `unknown subscription ${id}`);
    const ttl = Number(req.headers.ttl);
    if (req.headers.ttl === undefined || !Number.isInteger(ttl) || ttl < 0) return refuse(400, 'TTL header missing or not a non-negative integer (RFC 8030 §5.2)');
    if (req.headers['content-encoding'] !== 'aes128gcm') return refuse(415, `Content-Encoding ${req.headers['content-encoding']} is not aes128gcm (RFC 8291)`);
    if (body.length > 4096) return refuse(413, `payload of ${body.length} bytes is over 4096 (RFC 8030 §7.2)`);
    // RFC 8292 §3: Authorization: vapid t=<JWT>, k=<base64url public key>.
    const auth = /^vapid t=([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+),\s*k=([A-Za-z0-9_-]+)$/.exec(req.headers.authorization ?? '');
    if (!auth) return refuse(401, 'Authorization is not "vapid t=<jwt>, k=<key>" (RFC 8292 §3)');
    const [jwt, k] = [auth[1], auth[2]];
    if (k !== this.applicationServerKey) return refuse(403, 'k is not the applicationServerKey this subscription was made with (RFC 8292 §4)');
    const [h, p, s] = jwt.split('.');
    let header: { alg?: string };
    let claims: { aud?: unknown; exp?: unknown; sub?: unknown };
    try {
      header = JSON.parse(Buffer.from(h, 'base64url').toString());
      claims = JSON.parse(Buffer.from(p, 'base64url').toString());
    } catch {
      return refuse(401, 'the JWT does not parse');
    }
    if (header.alg !== 'ES256') return refuse(401, `JWT alg ${header.alg} is not ES256 (RFC 8292 §2)`);
    const point = Buffer.from(k, 'base64url');
    const publicKey = createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: point.subarray(1, 33).toString('base64url'), y: point.subarray(33).toString('base64url') }, format: 'jwk' });
    if (!verify('sha256', Buffer.from(`${h}.${p}`), { key: publicKey, dsaEncoding: 'ieee-p1363' }, Buffer.from(s, 'base64url'))) return refuse(401, 'the JWT signature does not verify with k');
    const now = Math.floor(Date.now() / 1000);
    if (claims.aud !== this.origin) return refuse(401, `JWT aud ${String(claims.aud)} is not this push service's origin ${this.origin}`);
    if (typeof claims.exp !== 'number' || claims.exp <= now) return refuse(401, 'JWT exp is missing or past');
    if (claims.exp > now + 86_400) return refuse(401, 'JWT exp is more than 24 h ahead (RFC 8292 §2)');
    if (typeof claims.sub !== 'string' || !/^(mailto:|https:)/.test(claims.sub)) return refuse(401, 'JWT sub is not a mailto: or https: contact');
    let plaintext: Buffer;
    try {
      plaintext = ece.decrypt(body, { version: 'aes128gcm', privateKey: keys.ecdh, authSecret: keys.auth.toString('base64url') });
    } catch (error) {
      return refuse(400, `payload does not decrypt with the subscription's keys: ${(error as Error).message}`);
    }
    let payload: Record<string, unknown>;
    try {
      payload = JSON.parse(plaintext.toString('utf8'));
    } catch {
      return refuse(400, 'decrypted payload is not JSON');
    }
    return {
      subscription: id,
      payload,
      plaintextBytes: plaintext.length,
      ttl,
      urgency: req.headers.urgency as string | undefined,
      topic: req.headers.topic as string | undefined,
      claims: claims as ReceivedPush['claims'],
      answered: 201,
      at: Date.now(),
    };
  }
}
