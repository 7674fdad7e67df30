import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, type AddressInfo, type Socket as TcpSocket } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
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
  /** The request and response of the last stream opened, held weakly. */
  let requests = 0;
  let lastExchange: { req: WeakRef<IncomingMessage>; res: WeakRef<ServerResponse> } | undefined;
  beforeAll(async () => {
    server = createServer((req, res: ServerResponse) => {
      requests++;
      res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', Connection: 'close' });
      const socket = SseSocket.open(req, res);
      lastExchange = { req: new WeakRef(req), res: new WeakRef(res) };
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

  /** A raw HTTP/1.1 stream request; resolves with its server side once open, and what the client reads. */
  async function rawStream(request = 'GET / HTTP/1.1\r\nHost: x\r\n\r\n'): Promise<{ tcp: TcpSocket; socket: SseSocket; wire: () => string }> {
    const accepted = new Promise<SseSocket>((resolve) => (onOpen = resolve));
    const tcp = connect(port, '127.0.0.1');
    let wire = '';
    tcp.on('data', (chunk) => (wire += chunk.toString('latin1')));
    tcp.write(request);
    const socket = await accepted;
    // Taken off node:http on the turn after it opened.
    await new Promise((resolve) => setImmediate(resolve));
    return { tcp, socket, wire: () => wire };
  }
  const closeOf = (socket: SseSocket) => new Promise<number>((resolve) => socket.once('close', (code: number) => resolve(code)));

  it('ends the connection with the stream: the last event, the terminating chunk, then the end (no keep-alive reuse)', async () => {
    const { tcp, socket, wire } = await rawStream();
    const closed = closeOf(socket);
    socket.close(4000, 'bye');
    await once(tcp, 'end'); // before: node:http kept the connection for another request
    expect(wire()).toMatch(/\r\n\r\n[0-9a-f]+\r\ndata: \{"type":"close","code":4000,"reason":"bye"\}\n\n\r\n0\r\n\r\n$/);
    expect(await closed).toBe(4000);
    tcp.destroy();
  });

  it('counts a client that goes away as 1001, and ignores what it sends after its request', async () => {
    const { tcp, socket, wire } = await rawStream();
    const before = requests;
    tcp.write('GET /other HTTP/1.1\r\nHost: x\r\n\r\nmore bytes that are no request');
    socket.send(socket.wrap(frame(7)));
    await new Promise<void>((resolve) => tcp.on('data', () => wire().includes('"n":7') && resolve()));
    expect(requests).toBe(before); // before: node:http read it as a request and handled it
    expect(wire()).not.toMatch(/HTTP\/1\.1 [^2]/); // no answer to it nor an error for the garbage
    const closed = closeOf(socket);
    tcp.end();
    expect(await closed).toBe(1001);
    expect(socket.readyState).toBe(3);
  });

  it('keeps neither the request nor the response of an open stream (node:http lets go of its socket)', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const { tcp, socket } = await rawStream();
    const exchange = lastExchange!;
    // A WeakRef's target is kept until the end of the job that made or read it: collect in a later one.
    const turn = () => new Promise((resolve) => setImmediate(resolve));
    for (let i = 0; i < 5; i++) {
      await turn();
      gc();
      await turn();
      if (!exchange.req.deref() && !exchange.res.deref()) break;
    }
    expect(exchange.req.deref()).toBeUndefined();
    expect(exchange.res.deref()).toBeUndefined();
    // And the stream still works both ways.
    socket.comment();
    const closed = closeOf(socket);
    tcp.end();
    expect(await closed).toBe(1001);
  });
});
