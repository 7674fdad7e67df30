import { createServer, connect, type Server, type Socket } from 'node:net';

/**
 * A TCP front with failover, as a load balancer with health checks behaves for new connections: each one goes to
 * the first of its targets that accepts it. A killed replica's clients reconnect through the same address and
 * land on the next one.
 */
export class FailoverFront {
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(targets: () => number[]): Promise<FailoverFront> {
    let front: FailoverFront | undefined;
    const server = createServer((client) => front!.relay(client, targets(), 0));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    front = new FailoverFront(server, (server.address() as { port: number }).port);
    return front;
  }

  http(path: string): string {
    return `http://127.0.0.1:${this.port}${path}`;
  }

  private relay(client: Socket, ports: number[], i: number): void {
    if (i >= ports.length) return void client.destroy();
    client.pause();
    const upstream = connect(ports[i], '127.0.0.1');
    // An error before `connect` is a refused or unreachable target: the next one gets the client.
    upstream.once('error', () => this.relay(client, ports, i + 1));
    upstream.once('connect', () => {
      upstream.removeAllListeners('error');
      this.sockets.add(client).add(upstream);
      const drop = () => {
        client.destroy();
        upstream.destroy();
        this.sockets.delete(client);
        this.sockets.delete(upstream);
      };
      client.on('error', drop).on('close', drop);
      upstream.on('error', drop).on('close', drop);
      client.pipe(upstream);
      upstream.pipe(client);
      client.resume();
    });
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
