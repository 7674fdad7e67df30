import { connect as netConnect, type Socket } from 'node:net';

/** One HTTP answer read off a raw socket, with everything the client saw. */
export interface RawAnswer {
  status: number;
  /** Lower-cased header names. */
  headers: Record<string, string>;
  body: string;
  /** The whole answer as bytes on the wire (for "nothing was echoed" checks). */
  raw: string;
  /** ms from the first byte sent to the server closing the connection (undefined if it stayed open). */
  closedAfterMs?: number;
}

export interface RawOptions {
  /** After the request: keep writing `data` (default one byte) every `everyMs` (a client trickling a body). */
  trickle?: { everyMs: number; data?: string };
  /** Give up waiting for the server to close after this long (the answer is still returned). */
  closeWithinMs?: number;
}

/**
 * Sends `request` as raw bytes (requests a real client would never make) and resolves once the server has
 * answered and closed, or `closeWithinMs` after the answer.
 */
export function rawExchange(port: number, request: string | Buffer, options: RawOptions = {}): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const socket: Socket = netConnect(port, '127.0.0.1', () => socket.write(request));
    let raw = '';
    let trickle: NodeJS.Timeout | undefined;
    let giveUp: NodeJS.Timeout | undefined;
    const finish = (closed: boolean) => {
      clearInterval(trickle);
      clearTimeout(giveUp);
      const headEnd = raw.indexOf('\r\n\r\n');
      if (headEnd === -1) {
        reject(new Error(`no HTTP answer (got ${JSON.stringify(raw.slice(0, 200))})`));
        return;
      }
      const [statusLine, ...lines] = raw.slice(0, headEnd).split('\r\n');
      const headers: Record<string, string> = {};
      for (const line of lines) {
        const colon = line.indexOf(':');
        headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      resolve({
        status: Number(statusLine.split(' ')[1]),
        headers,
        body: raw.slice(headEnd + 4),
        raw,
        closedAfterMs: closed ? Date.now() - started : undefined,
      });
      socket.destroy();
    };
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      const first = raw === '';
      raw += chunk;
      if (first && options.closeWithinMs !== undefined) giveUp = setTimeout(() => finish(false), options.closeWithinMs);
    });
    if (options.trickle) trickle = setInterval(() => socket.writable && socket.write(options.trickle!.data ?? 'a'), options.trickle.everyMs);
    socket.on('error', () => undefined); // a reset after the answer is the server closing; judged by `raw`
    socket.on('close', () => finish(true));
  });
}

/** A WebSocket upgrade request as a client library would send it, with extra headers. */
export function upgradeRequest(path: string, headers: Record<string, string> = {}): string {
  const all: Record<string, string> = {
    Host: 'gateway.test',
    Connection: 'Upgrade',
    Upgrade: 'websocket',
    'Sec-WebSocket-Version': '13',
    'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
    ...headers,
  };
  return `GET ${path} HTTP/1.1\r\n${Object.entries(all).map(([k, v]) => `${k}: ${v}`).join('\r\n')}\r\n\r\n`;
}

/** A plain HTTP/1.1 request. */
export function plainRequest(method: string, path: string, headers: Record<string, string> = {}, body = ''): string {
  const all: Record<string, string> = { Host: 'gateway.test', Connection: 'close', ...headers };
  return `${method} ${path} HTTP/1.1\r\n${Object.entries(all).map(([k, v]) => `${k}: ${v}`).join('\r\n')}\r\n\r\n${body}`;
}
