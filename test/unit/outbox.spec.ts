import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import WebSocket, { WebSocketServer } from 'ws';
import { loadConfig } from '../../src/config/config';
import { ConnectionManager } from '../../src/connection/connection-manager';
import { Metrics } from '../../src/metrics/metrics';

/** The outbox over a real ws server socket: how many syscall-level writes reach the TCP socket. */
describe('Outbox write coalescing', () => {
  let wss: WebSocketServer;
  let manager: ConnectionManager;
  beforeAll(async () => {
    wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    await once(wss, 'listening');
    manager = new ConnectionManager(loadConfig({}).config, new Metrics(), pino({ level: 'silent' }));
  });
  afterAll(() => {
    manager.onModuleDestroy();
    wss.close();
  });

  it('writes the frames queued in one event-loop turn with one write, in order, sharing the buffers', async () => {
    const client = new WebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`);
    const [serverSocket] = (await once(wss, 'connection')) as [WebSocket];
    await once(client, 'open');
    const conn = manager.accept(serverSocket, {
      connectionId: manager.newConnectionId(),
      gateway: 'chat',
      user: { sub: 'u', role: 'r' },
      params: {},
      attributes: {},
    } as never);
    const raw = (serverSocket as unknown as { _socket: { _writev: Function; _write: Function } })._socket;
    let writes = 0;
    for (const method of ['_writev', '_write'] as const) {
      const original = raw[method];
      raw[method] = function (this: unknown, ...args: unknown[]) {
        writes++;
        return original.apply(this, args);
      };
    }
    const received: string[] = [];
    client.on('message', (data) => received.push(data.toString()));
    const shared = Buffer.from('{"type":"shared"}');
    for (let i = 0; i < 8; i++) conn.send({ type: 'n', i });
    conn.sendEncoded(shared);
    await new Promise((resolve) => setImmediate(resolve));
    expect(writes).toBe(1);
    while (received.length < 9) await once(client, 'message');
    expect(received).toEqual([...Array.from({ length: 8 }, (_, i) => `{"type":"n","i":${i}}`), '{"type":"shared"}']);
    client.close();
    await once(client, 'close');
  });
});
