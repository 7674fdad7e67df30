import { EventEmitter, once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

/** Resolves when `res` can take more, or is gone; its listeners removed either way. */
function drainedOrClosed(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

/** One question the gateway asked, as the backend received it. */
export interface BackendRequest {
  method: string;
  url: string;
  /** Lower-cased header names. */
  headers: IncomingMessage['headers'];
  /** The body as sent, for "the raw token is not in it" checks. */
  raw: string;
  body: { user?: unknown; role?: unknown; channel?: string; claims?: unknown };
  /** Resolves when the exchange ended: `finished` when the whole answer was handed to the gateway's socket. */
  ended: Promise<{ finished: boolean }>;
}

/** A reason with what a client must never be shown raw: a line break and a right-to-left override. */
export const DENY_REASON = 'Ward closed for cleaning\r\nuntil 14:00\u202e';
/** 10 MB of valid JSON saying allow:true: refused only if the gateway stops reading at its cap. */
export const HUGE_BYTES = 10 * 1024 * 1024;

/**
 * A real HTTP subscribe backend (SUBSCRIBE_PROXY_URL) on a free port, answering by the channel's name (after the
 * colon), its prefix choosing the behaviour:
 * `open` allows; `closed` denies with DENY_REASON; `broken` 500; `hang` never answers; `late` allows `lateMs` after
 * the request (past the gateway's timeout); `huge` 10 MB chunked; `hugedecl` 10 MB with Content-Length; `garbled`
 * invalid JSON; `yes` `{"allow":"yes"}`; `gated` allows when the test calls release(). Every request is recorded; `request` is emitted for each as it arrives and
 * `late` when a late answer was written.
 */
export class SubscribeBackend extends EventEmitter {
  readonly requests: BackendRequest[] = [];
  private readonly open = new Set<ServerResponse>();
  /** `gated` answers waiting for release(), by channel. */
  private readonly gates = new Map<string, () => void>();

  private constructor(
    private readonly server: Server,
    readonly port: number,
    private readonly lateMs: number,
  ) {
    super();
  }

  static async start(lateMs: number): Promise<SubscribeBackend> {
    let backend: SubscribeBackend | undefined;
    const server = createServer((req, res) => backend!.handle(req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    backend = new SubscribeBackend(server, (server.address() as { port: number }).port, lateMs);
    return backend;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/realtime/subscribe`;
  }

  /** The requests about one channel. */
  about(channel: string): BackendRequest[] {
    return this.requests.filter((r) => r.body.channel === channel);
  }

  /** Resolves with the request about `channel`, already received or the next one. */
  async requestAbout(channel: string): Promise<BackendRequest> {
    for (;;) {
      const found = this.about(channel)[0];
      if (found) return found;
      await once(this, 'request');
    }
  }

  /** Closes the listener and every connection: the port is closed from here on (the backend is down). */
  async stop(): Promise<void> {
    if (!this.server.listening) return;
    for (const res of this.open) res.destroy();
    const closed = new Promise((resolve) => this.server.close(resolve));
    this.server.closeAllConnections();
    await closed;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      let body: BackendRequest['body'] = {};
      try {
        body = JSON.parse(raw);
      } catch {
        // recorded as sent; the test asserts on it
      }
      this.open.add(res);
      res.on('error', () => undefined); // the gateway hanging up mid-answer is what some cases test
      const ended = new Promise<{ finished: boolean }>((resolve) => {
        let finished = false;
        res.once('finish', () => (finished = true));
        res.once('close', () => {
          this.open.delete(res);
          resolve({ finished });
        });
      });
      this.requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, raw, body, ended });
      this.emit('request');
      this.answer(String(body.channel ?? ''), res);
    });
  }

  /** Sends the `{"allow":true}` a `gated` channel's question has been waiting for. */
  release(channel: string): void {
    const gate = this.gates.get(channel);
    if (!gate) throw new Error(`no gated question about ${channel}`);
    this.gates.delete(channel);
    gate();
  }

  private answer(channel: string, res: ServerResponse): void {
    const name = channel.split(':')[1] ?? '';
    const json = (status: number, value: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(value));
    };
    if (name.startsWith('open')) return json(200, { allow: true });
    if (name.startsWith('closed')) return json(200, { allow: false, reason: DENY_REASON });
    if (name.startsWith('broken')) return json(500, { allow: true });
    if (name.startsWith('yes')) return json(200, { allow: 'yes' });
    if (name.startsWith('garbled')) {
      res.writeHead(200, { 'content-type': 'application/json' });
      return void res.end('{"allow": true');
    }
    if (name.startsWith('hang')) return; // never answered; the gateway must give up
    if (name.startsWith('gated')) return void this.gates.set(channel, () => json(200, { allow: true }));
    if (name.startsWith('late')) {
      setTimeout(() => {
        json(200, { allow: true });
        this.emit('late');
      }, this.lateMs);
      return;
    }
    if (name.startsWith('huge')) return void this.stream(res, name.startsWith('hugedecl'));
    json(404, { error: 'no rule for this channel name' });
  }

  /** 10 MB of `{"allow":true,"pad":"xxx…"}`, written as fast as the gateway reads it, until it stops reading. */
  private async stream(res: ServerResponse, declared: boolean): Promise<void> {
    const head = '{"allow":true,"pad":"';
    const tail = '"}';
    res.writeHead(200, { 'content-type': 'application/json', ...(declared ? { 'content-length': String(HUGE_BYTES) } : {}) });
    res.write(head);
    const chunk = Buffer.alloc(65_536, 'x');
    let left = HUGE_BYTES - head.length - tail.length;
    while (left > 0 && !res.destroyed) {
      const piece = left >= chunk.length ? chunk : chunk.subarray(0, left);
      left -= piece.length;
      if (!res.write(piece)) await drainedOrClosed(res);
    }
    if (!res.destroyed) res.end(tail);
  }
}
