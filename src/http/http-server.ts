import type { NestApplicationOptions } from '@nestjs/common';
import { ExpressAdapter } from '@nestjs/platform-express';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

/**
 * Bounds on how long a client may take to send a request (Node's defaults are 60 s for the headers and
 * 300 s for the whole request, checked every 30 s: a client could hold a socket for minutes by trickling).
 * Upgrade requests are GETs without a body, so only the header bound concerns them; a 64 KB publish body
 * takes well under a second on any network that can use the gateway.
 */
export const HEADERS_TIMEOUT_MS = 10_000;
export const REQUEST_TIMEOUT_MS = 30_000;
/** How often Node checks those timeouts; its 30 s default would let a slow client overstay by up to 30 s. */
const TIMEOUT_CHECK_MS = 1_000;
/**
 * After answering a request whose body has not been read (a refusal: 401, 404, 413), the rest of the body
 * is read and dropped for at most this long, then the socket is closed. Closing at once could reset the
 * connection before the client reads the answer (it is still sending); never closing let a client trickle a
 * declared 10 MB body for minutes.
 */
export const LINGER_MS = 1_000;

/** An HTTP server with the bounds above (both listeners use one). */
export function createBoundedServer(): Server {
  return createServer({
    headersTimeout: HEADERS_TIMEOUT_MS,
    requestTimeout: REQUEST_TIMEOUT_MS,
    connectionsCheckingInterval: TIMEOUT_CHECK_MS,
  });
}

/**
 * Nest's Express adapter (the internal listener), with a server created with the bounds above and without
 * `X-Powered-By`.
 */
export class GatewayHttpAdapter extends ExpressAdapter {
  constructor() {
    super();
    this.getInstance().disable('x-powered-by');
  }

  override initHttpServer(_options: NestApplicationOptions): void {
    this.httpServer = createBoundedServer();
    this.httpServer.on('request', this.getInstance());
    // No trackOpenConnections (Nest's forceCloseConnections): it keeps a Set entry and a close listener per
    // socket, upgraded WebSocket sockets included (0.5% of an upgrade's CPU). close() below asks Node, which
    // tracks its HTTP connections anyway; WebSocket sockets are closed by the drain before.
  }

  /** Keep-alive HTTP clients must not hold the shutdown. */
  override close(): Promise<void> | undefined {
    (this.httpServer as Server | undefined)?.closeAllConnections();
    return super.close() as Promise<void> | undefined;
  }
}

function lingerThenClose(req: IncomingMessage): void {
  if (req.complete) return;
  const socket = req.socket as Socket;
  const timer = setTimeout(() => socket.destroy(), LINGER_MS);
  timer.unref();
  // Node reads the rest of the body to reuse the connection; if it arrives in time, the connection stays.
  req.once('end', () => clearTimeout(timer));
  socket.once('close', () => clearTimeout(timer));
}

export type RequestHandler = (req: IncomingMessage, res: ServerResponse) => boolean;

export function jsonAnswer(res: ServerResponse, status: number, error: string, message: string): void {
  const body = JSON.stringify({ error, message });
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store', Connection: 'close' });
  res.end(body);
}

/**
 * Puts `handlers` in front of the framework on the server's `request` event: the first that returns true has
 * answered; then the framework, or (a server without one) `fallback`. Every response to a request whose body
 * was not read in full closes its socket within LINGER_MS.
 */
export function dispatch(server: Server, handlers: RequestHandler[], maxBodyBytes: number, fallback?: (req: IncomingMessage, res: ServerResponse) => void): void {
  const framework = server.listeners('request') as ((req: IncomingMessage, res: ServerResponse) => void)[];
  server.removeAllListeners('request');
  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    if (!req.complete) res.once('finish', () => lingerThenClose(req));
    for (const handler of handlers) if (handler(req, res)) return;
    if (framework.length === 0) return fallback?.(req, res);
    for (const listener of framework) listener.call(server, req, res);
  };
  server.on('request', onRequest);
  // `Expect: 100-continue`: a body no endpoint would take is refused before the client sends it (Node would
  // invite it with 100 Continue, then the endpoint answers 413 after reading a second of it).
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    if (Number(req.headers['content-length']) > maxBodyBytes) {
      jsonAnswer(res, 413, 'too_large', `request body larger than ${maxBodyBytes} bytes (MAX_PUBLISH_BYTES)`);
      return;
    }
    res.writeContinue();
    onRequest(req, res);
  });
  // Any other Expect: Node's own answer is an empty 417.
  server.on('checkExpectation', (_req: IncomingMessage, res: ServerResponse) =>
    jsonAnswer(res, 417, 'expectation_failed', 'the only Expect this server understands is 100-continue'),
  );
}

/**
 * The body, or undefined as soon as it (or its declared length) passes `limit` (the caller answers 413; the rest of the
 * body is read and dropped by dispatch's linger). Used by the public port's POST endpoints (/sse/send, /push).
 */
export function readLimited(req: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    if (Number(req.headers['content-length']) > limit) return resolve(undefined);
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) return resolve(undefined);
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}
