import { once } from 'node:events';
import { createServer, type Server, type ServerResponse } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import type { FramePosition } from '../../src/connection/connection';
import { SseSocket } from '../../src/connection/sse-socket';
import { parseCursor } from '../../src/connection/stream-cursor';
import { SseClient } from '../support/sse-client';

/**
 * SseSocket on real HTTP responses, read by a real client: each stream's events carry that stream's own cursor
 * even when a broadcast shares one wrapped event between the streams in the same state (bench/sse.js: what makes
 * SSE fan-out cost what WebSocket's does), and the events are framed for the response's transfer coding.
 */
describe('SseSocket', () => {
  let server: Server;
  let port: number;
  const opened: SseSocket[] = [];
  let onOpen: ((socket: SseSocket) => void) | undefined;
  beforeAll(async () => {
    server = createServer((_req, res: ServerResponse) => {
      res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8' });
      const socket = new SseSocket(res);
      opened.push(socket);
      onOpen?.(socket);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    for (const socket of opened) socket.terminate();
    await new Promise((resolve) => server.close(resolve));
  });

  /** A stream and its server side, the welcome (which sets the cursor) sent. */
  async function stream(channels: Record<string, { epoch?: string; id?: string }>): Promise<{ client: SseClient; socket: SseSocket }> {
    const accepted = new Promise<SseSocket>((resolve) => (onOpen = resolve));
    const opening = SseClient.open(`http://127.0.0.1:${port}/`);
    const socket = await accepted;
    socket.send(socket.wrapObject({ type: 'welcome', session: 's', channels }));
    const client = await opening;
    await client.ofType('welcome');
    return { client, socket };
  }
  const frame = (n: number) => Buffer.from(JSON.stringify({ type: 'publication', channel: 'alerts', data: { n } }));
  const positions = (id: string | undefined) => Object.fromEntries(parseCursor(id!, 10)!.channels);

  it("gives each stream its own cursor, sharing one event between the streams in the same state", async () => {
    const a = await stream({ alerts: { epoch: 'e1', id: '1-0' } });
    const b = await stream({ alerts: { epoch: 'e1', id: '1-0' }, 'chat:x': { epoch: 'e9', id: '7-0' } });
    const c = await stream({ alerts: { epoch: 'e1', id: '1-0' } });
    // A broadcast: one frame and one publication, wrapped for each stream in turn.
    const data = frame(2);
    const publication: FramePosition = { channel: 'alerts', epoch: 'e1', id: '2-0' };
    const wrapped = [a, b, c].map(({ socket }) => socket.wrap(data, publication));
    [a, b, c].forEach(({ socket }, i) => socket.send(wrapped[i]));
    expect(wrapped[2]).toBe(wrapped[0]); // the same bytes: written, not built again
    expect(wrapped[1]).not.toBe(wrapped[0]);
    const [ea, eb, ec] = await Promise.all([a, b, c].map(({ client }) => client.ofType('publication')));
    expect(ea.data).toEqual({ type: 'publication', channel: 'alerts', data: { n: 2 } });
    expect(positions(ea.id)).toEqual({ alerts: { epoch: 'e1', id: '2-0' } });
    expect(ec.id).toBe(ea.id);
    expect(positions(eb.id)).toEqual({ alerts: { epoch: 'e1', id: '2-0' }, 'chat:x': { epoch: 'e9', id: '7-0' } });
    // The next publication goes on from each stream's own cursor.
    const next: FramePosition = { channel: 'chat:x', epoch: 'e9', id: '8-0' };
    b.socket.send(b.socket.wrap(frame(3), next));
    expect(positions((await b.client.ofType('publication')).id)).toEqual({ alerts: { epoch: 'e1', id: '2-0' }, 'chat:x': { epoch: 'e9', id: '8-0' } });
    expect(a.socket.position).toBe(ea.id);
    await Promise.all([a, b, c].map(({ client }) => client.close()));
  });

  it('keeps each stream\'s own epoch for a publication that carries none', async () => {
    const a = await stream({ alerts: { epoch: 'e1', id: '1-0' } });
    const b = await stream({ alerts: { epoch: 'e2', id: '1-0' } });
    const data = frame(4);
    const publication: FramePosition = { channel: 'alerts', id: '2-0' };
    for (const { socket } of [a, b]) socket.send(socket.wrap(data, publication));
    expect(positions((await a.client.ofType('publication')).id)).toEqual({ alerts: { epoch: 'e1', id: '2-0' } });
    expect(positions((await b.client.ofType('publication')).id)).toEqual({ alerts: { epoch: 'e2', id: '2-0' } });
    await Promise.all([a, b].map(({ client }) => client.close()));
  });

  it('frames events, comments and the last event as chunks of a chunked response, and ends it', async () => {
    const a = await stream({ alerts: {} });
    a.socket.send(a.socket.wrap(frame(5))); // a live-only channel's publication: no id
    a.socket.comment();
    a.socket.close(1012, 'server restarting');
    await a.client.ended;
    expect(a.client.events.map((e) => e.data)).toEqual([{ type: 'publication', channel: 'alerts', data: { n: 5 } }, { type: 'reconnect' }]);
    expect(a.client.events[0].id).toBeUndefined();
    expect(a.client.comments).toBe(1);
  });

  it('writes events unframed to an HTTP/1.0 client (the body ends with the connection)', async () => {
    const accepted = new Promise<SseSocket>((resolve) => (onOpen = resolve));
    const tcp = connect(port, '127.0.0.1');
    tcp.write('GET / HTTP/1.0\r\n\r\n');
    const socket = await accepted;
    let wire = '';
    tcp.on('data', (chunk) => (wire += chunk.toString('latin1')));
    socket.send(socket.wrapObject({ type: 'welcome', session: 's', channels: { alerts: { epoch: 'e1', id: '1-0' } } }));
    socket.send(socket.wrap(frame(6), { channel: 'alerts', epoch: 'e1', id: '2-0' }));
    socket.comment();
    socket.close(4000, 'bye');
    await once(tcp, 'close');
    const body = wire.slice(wire.indexOf('\r\n\r\n') + 4);
    expect(wire).not.toMatch(/transfer-encoding/i);
    expect(body).toBe(
      `id: ${'c1.YWxlcnRz~e1~1-0'}\ndata: {"type":"welcome","session":"s","channels":{"alerts":{"epoch":"e1","id":"1-0"}}}\n\n` +
        `id: c1.YWxlcnRz~e1~2-0\ndata: {"type":"publication","channel":"alerts","data":{"n":6}}\n\n` +
        ':\n\n' +
        'data: {"type":"close","code":4000,"reason":"bye"}\n\n',
    );
  });
});
