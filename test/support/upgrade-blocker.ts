import { connect, createServer, type Server, type Socket } from 'node:net';

/** What the middlebox does to a request that asks for `Upgrade: websocket`. */
export type BlockMode = 'reset' | 'hold' | 'pass';

/** One request head the middlebox saw: its request line and its header names (never a value: tokens travel there). */
export interface SeenRequest {
  line: string;
  headers: string[];
}

/**
 * A TCP middlebox in front of a gateway, as some networks have: plain HTTP goes through untouched, a WebSocket
 * upgrade does not. `reset`: the connection is reset (RST) as soon as the upgrade request is seen, before any
 * answer; `hold`: it is held without an answer; `pass`: it goes through (the network got better). Every request of a connection is looked at (fetch
 * keeps connections alive); bodies are framed by Content-Length (chunked requests are not expected here).
 */
export class UpgradeBlocker {
  mode: BlockMode;
  /** Each byte from a client reaches the gateway this much later (a distant network); 0 by default. */
  latencyMs = 0;
  /** Request heads seen, in order. */
  readonly seen: SeenRequest[] = [];
  private readonly sockets = new Set<Socket>();
  /** Relayed connections whose last request was `GET /sse`: the client side, and the gateway side. */
  private readonly streams = new Map<Socket, Socket>();

  private constructor(
    private readonly server: Server,
    readonly port: number,
    mode: BlockMode,
  ) {
    this.mode = mode;
  }

  static async start(targetPort: number, mode: BlockMode = 'reset'): Promise<UpgradeBlocker> {
    let blocker: UpgradeBlocker | undefined;
    const server = createServer((client) => blocker!.accept(client, targetPort));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    blocker = new UpgradeBlocker(server, (server.address() as { port: number }).port, mode);
    return blocker;
  }

  ws(path: string): string {
    return `ws://127.0.0.1:${this.port}${path}`;
  }

  /** Upgrade requests seen (blocked or not). */
  get upgrades(): number {
    return this.seen.filter((request) => request.headers.includes('upgrade')).length;
  }

  /** Requests whose line starts with `method path` (e.g. `GET /sse`). */
  requests(prefix: string): SeenRequest[] {
    return this.seen.filter((request) => request.line.startsWith(prefix));
  }

  /** Drops every relayed connection (a network blip): open streams end without a word. */
  cut(): void {
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
  }

  /**
   * Ends every relayed event stream on the gateway's side only: the gateway sees its stream go, the client sees
   * nothing (its connection stays open and silent), as when a middlebox drops a long-lived connection one way.
   */
  orphanStreams(): void {
    for (const [client, upstream] of this.streams) {
      upstream.unpipe(client);
      upstream.removeAllListeners('close').removeAllListeners('error').on('error', () => undefined);
      upstream.destroy();
      client.removeAllListeners('data');
    }
    this.streams.clear();
  }

  async stop(): Promise<void> {
    this.cut();
    await new Promise((resolve) => this.server.close(resolve));
  }

  private accept(client: Socket, targetPort: number): void {
    this.sockets.add(client);
    client.on('error', () => undefined).on('close', () => this.sockets.delete(client));
    let upstream: Socket | undefined;
    // Every request of the connection is read (keep-alive: fetch sends several on one): its head is held
    // until complete, looked at, then forwarded with its body (Content-Length bytes).
    let pending = Buffer.alloc(0);
    let body = 0;
    client.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length > 0) {
        if (body > 0) {
          const part = pending.subarray(0, body);
          body -= part.length;
          pending = pending.subarray(part.length);
          this.forward(upstream!, part);
          continue;
        }
        const end = pending.indexOf('\r\n\r\n');
        if (end === -1) return;
        const head = pending.subarray(0, end + 4);
        pending = pending.subarray(end + 4);
        const lines = head.subarray(0, end).toString('latin1').split('\r\n');
        const fields = lines.slice(1).map((line) => [line.slice(0, line.indexOf(':')).trim().toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]);
        const upgrade = fields.some(([name, value]) => name === 'upgrade' && /^websocket$/i.test(value));
        // The request line without its query (a token may travel there), and the header names only.
        this.seen.push({ line: lines[0].split(' ').slice(0, 2).join(' ').replace(/\?.*$/, ''), headers: fields.map(([name]) => name) });
        if (upgrade && this.mode === 'reset') return void client.resetAndDestroy();
        if (upgrade && this.mode === 'hold') return void client.pause(); // no answer, ever (until stop)
        body = Number(fields.find(([name]) => name === 'content-length')?.[1] ?? 0);
        upstream ??= this.relay(client, targetPort);
        if (/^GET \/sse(\?|$)/.test(lines[0].split(' ').slice(0, 2).join(' '))) this.streams.set(client, upstream);
        else this.streams.delete(client);
        this.forward(upstream, head);
        if (upgrade) {
          // Upgraded: from here on the connection carries WebSocket frames, not requests.
          client.removeAllListeners('data');
          if (pending.length) this.forward(upstream, pending);
          const to = upstream;
          client.on('data', (chunk: Buffer) => this.forward(to, chunk));
          return;
        }
      }
    });
  }

  /** Timers of one duration fire in the order they were set: the bytes keep their order. */
  private forward(upstream: Socket, bytes: Buffer): void {
    if (this.latencyMs === 0) upstream.write(bytes);
    else setTimeout(() => upstream.destroyed || upstream.write(bytes), this.latencyMs);
  }

  private relay(client: Socket, targetPort: number): Socket {
    const upstream = connect(targetPort, '127.0.0.1');
    // A request's head and body go up in two writes: without this, Nagle holds the body for the gateway's delayed ACK.
    upstream.setNoDelay(true);
    client.setNoDelay(true);
    this.sockets.add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      this.sockets.delete(client);
      this.sockets.delete(upstream);
      this.streams.delete(client);
    };
    upstream.on('error', drop).on('close', drop);
    client.on('close', drop);
    upstream.pipe(client);
    return upstream;
  }
}
