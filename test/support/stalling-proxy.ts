import { connect, createServer, type Server, type Socket } from 'node:net';

/**
 * A TCP relay in front of a gateway that holds what the server sends on a new connection for `holdMs` after
 * its first byte, then hands it over in one write: the 101 response and the frames right behind it (welcome,
 * a replay) reach the client in the same read, as they do on a loaded machine.
 */
export class StallingProxy {
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(targetPort: number, holdMs: number): Promise<StallingProxy> {
    let proxy: StallingProxy | undefined;
    const server = createServer((client) => proxy!.accept(client, targetPort, holdMs));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    proxy = new StallingProxy(server, (server.address() as { port: number }).port);
    return proxy;
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise((resolve) => this.server.close(resolve));
  }

  private accept(client: Socket, targetPort: number, holdMs: number): void {
    const upstream = connect(targetPort, '127.0.0.1');
    for (const socket of [client, upstream]) {
      this.sockets.add(socket);
      socket.on('error', () => undefined).on('close', () => {
        client.destroy();
        upstream.destroy();
        this.sockets.delete(socket);
      });
    }
    client.pipe(upstream);
    const held: Buffer[] = [];
    let releasing: NodeJS.Timeout | undefined;
    const hold = (chunk: Buffer) => {
      held.push(chunk);
      releasing ??= setTimeout(() => {
        upstream.off('data', hold);
        client.write(Buffer.concat(held));
        upstream.pipe(client);
      }, holdMs);
    };
    upstream.on('data', hold);
  }
}
