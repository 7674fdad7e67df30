import { randomBytes } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { Webhook } from 'standardwebhooks';

/** One request the receiver got, checked with the `standardwebhooks` package (an implementation no one here wrote). */
export interface ReceivedWebhook {
  id: string;
  /** The `webhook-timestamp` header: unix seconds of this attempt. */
  timestamp: number;
  type: string;
  /** The body's own `timestamp` (ISO 8601, when it happened). */
  happenedAt: string;
  data: Record<string, unknown>;
  /** What the receiver answered (undefined: it never answered). */
  answered?: number;
  at: number;
}

/** What the receiver does with the next request: a status, `hang` (never answers; the socket stays open), or a status after a delay. */
export type Answer = number | 'hang' | { status: number; afterMs: number };

/**
 * A webhook receiver on a real HTTP server: verifies every request's Standard Webhooks signature with
 * `Webhook.verify`, answers what the test says (200 by default, 500, 429, 400, or nothing at all), and can be
 * stopped for a while (connections refused) and started again on the same port.
 */
export class WebhookReceiver {
  /** Every request with a valid signature, in arrival order (retries included). */
  readonly received: ReceivedWebhook[] = [];
  /** Requests whose signature, headers or body did not verify: a test expects none. */
  readonly invalid: string[] = [];
  readonly secret: string;
  /** Decides each answer; the default answers 200. */
  answer: (request: ReceivedWebhook) => Answer = () => 200;
  private readonly verifier: Webhook;
  private readonly events = new EventEmitter();
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private readonly hanging = new Set<ServerResponse>();

  private constructor(
    readonly port: number,
    secret?: string,
  ) {
    this.secret = secret ?? `whsec_${randomBytes(32).toString('base64')}`;
    this.verifier = new Webhook(this.secret);
    this.events.setMaxListeners(100);
  }

  static async start(secret?: string): Promise<WebhookReceiver> {
    const receiver = new WebhookReceiver(0, secret);
    await receiver.listen(0);
    return receiver;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/events`;
  }

  /** The gateway's environment for this receiver. */
  env(extra: Record<string, string> = {}): Record<string, string> {
    return { WEBHOOK_URL: this.url, WEBHOOK_SECRET: this.secret, ...extra };
  }

  /** Distinct events (by webhook-id) received so far. */
  distinct(): Map<string, ReceivedWebhook[]> {
    const byId = new Map<string, ReceivedWebhook[]>();
    for (const request of this.received) {
      const list = byId.get(request.id) ?? [];
      list.push(request);
      byId.set(request.id, list);
    }
    return byId;
  }

  /** Resolves when `check` holds, tested on every request that arrives (no polling). */
  async until(check: () => boolean, ms = 10_000, what = 'webhook requests'): Promise<void> {
    if (check()) return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.events.off('request', listener);
        reject(new Error(`timed out waiting for ${what}; got ${JSON.stringify(this.received.map((r) => [r.type, r.id, r.answered]))}`));
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

  /** Stops listening and cuts every connection: the gateway's next attempts are refused. */
  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    for (const response of this.hanging) response.destroy();
    this.hanging.clear();
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Listens again on the same port. */
  async restart(): Promise<void> {
    await this.listen(this.port);
  }

  private async listen(port: number): Promise<void> {
    const server = createServer((req, res) => this.handle(req, res));
    server.keepAliveTimeout = 60_000;
    server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    server.listen(port, '127.0.0.1');
    await once(server, 'listening');
    (this as { port: number }).port = (server.address() as { port: number }).port;
    this.server = server;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const headers = { 'webhook-id': String(req.headers['webhook-id']), 'webhook-timestamp': String(req.headers['webhook-timestamp']), 'webhook-signature': String(req.headers['webhook-signature']) };
      let payload: { type: string; timestamp: string; data: Record<string, unknown> };
      try {
        if (req.method !== 'POST' || req.headers['content-type'] !== 'application/json') throw new Error(`${req.method} with ${req.headers['content-type']}`);
        payload = this.verifier.verify(body, headers) as typeof payload;
        if (typeof payload.type !== 'string' || Number.isNaN(Date.parse(payload.timestamp)) || typeof payload.data !== 'object') throw new Error(`body ${body}`);
      } catch (error) {
        this.invalid.push(`${headers['webhook-id']}: ${(error as Error).message}`);
        res.writeHead(400).end();
        this.events.emit('request');
        return;
      }
      const request: ReceivedWebhook = {
        id: headers['webhook-id'],
        timestamp: Number(headers['webhook-timestamp']),
        type: payload.type,
        happenedAt: payload.timestamp,
        data: payload.data,
        at: Date.now(),
      };
      const answer = this.answer(request);
      if (answer === 'hang') {
        this.hanging.add(res);
      } else if (typeof answer === 'object') {
        this.hanging.add(res);
        setTimeout(() => {
          if (!this.hanging.delete(res)) return; // stopped meanwhile
          request.answered = answer.status;
          res.writeHead(answer.status).end();
        }, answer.afterMs);
      } else {
        request.answered = answer;
        res.writeHead(answer, { 'content-type': 'text/plain' }).end(answer < 300 ? 'ok' : 'no');
      }
      this.received.push(request);
      this.events.emit('request');
    });
  }
}
