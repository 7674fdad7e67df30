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
 * answer; `hold`: it is held without an answer; `pass`: it goes through (the network got better). Only the
 * first request of a connection is looked at (a WebSocket client opens a fresh connection for its upgrade).
 */
export class UpgradeBlocker {
  mode: BlockMode;
  /** Request heads seen, in order. */
  readonly seen: SeenRequest[] = [];
  private readonly sockets = new Set<Socket>();

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

  async stop(): Promise<void> {
    this.cut();
    await new Promise((resolve) => this.server.close(resolve));
  }

  private accept(client: Socket, targetPort: number): void {
    this.sockets.add(client);
    client.on('error', () => undefined).on('close', () => this.sockets.delete(client));
    let head = Buffer.alloc(0);
    const inspect = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end === -1 && head.length < 65536) return;
      client.off('data', inspect);
      client.pause();
      const lines = head.subarray(0, end === -1 ? head.length : end).toString('latin1').split('\r\n');
      const headers = lines.slice(1).map((line) => line.slice(0, line.indexOf(':')).trim().toLowerCase());
      const upgrade = lines.slice(1).some((line) => /^upgrade\s*:\s*websocket\s*$/i.test(line));
      this.seen.push({ line: lines[0].split(' ').slice(0, 2).join(' ').replace(/\?.*$/, ''), headers });
      if (upgrade && this.mode === 'reset') return void client.resetAndDestroy();
      if (upgrade && this.mode === 'hold') return; // no answer, ever (until stop)
      this.relay(client, targetPort, head);
    };
    client.on('data', inspect);
  }

  private relay(client: Socket, targetPort: number, head: Buffer): void {
    const upstream = connect(targetPort, '127.0.0.1');
    this.sockets.add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      this.sockets.delete(client);
      this.sockets.delete(upstream);
    };
    upstream.on('error', drop).on('close', drop);
    client.on('close', drop);
    upstream.write(head);
    client.pipe(upstream);
    upstream.pipe(client);
    client.resume();
  }
}
