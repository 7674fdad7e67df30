import { STATUS_CODES, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';

/**
 * An upgrade refused with an HTTP status before the handshake. Guards throw it; the adapter writes it as
 * `{"error": code, "message": text}` and counts it in ws_upgrades_rejected_total.
 */
export class UpgradeRefusal extends Error {
  constructor(
    readonly status: number,
    readonly error: string,
    message: string,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
  }
}

/** Writes the refusal and closes the TCP connection. Never throws (the peer may already be gone). */
export function writeRefusal(socket: Duplex, refusal: UpgradeRefusal): void {
  if (!socket.writable || socket.destroyed) {
    socket.destroy();
    return;
  }
  const body = JSON.stringify({ error: refusal.error, message: refusal.message });
  const head = [
    `HTTP/1.1 ${refusal.status} ${STATUS_CODES[refusal.status] ?? 'Error'}`,
    'Connection: close',
    'Content-Type: application/json; charset=utf-8',
    `Content-Length: ${Buffer.byteLength(body)}`,
    'Cache-Control: no-store',
    ...Object.entries(refusal.headers).map(([name, value]) => `${name}: ${value}`),
  ];
  socket.once('finish', () => socket.destroy());
  socket.end(`${head.join('\r\n')}\r\n\r\n${body}`);
}

/** The same refusal as an HTTP response (a plain request for a WebSocket path), with extra headers (CORS). */
export function writeRefusalResponse(res: ServerResponse, refusal: UpgradeRefusal, extra: Record<string, string>, headOnly = false): void {
  const body = JSON.stringify({ error: refusal.error, message: refusal.message });
  res.writeHead(refusal.status, {
    ...extra,
    ...refusal.headers,
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
  });
  res.end(headOnly ? undefined : body);
}

/** Node's HTTP parser errors (`clientError`), answered as the documented refusals (README); undefined: just close. */
export function refusalForClientError(code: string | undefined): UpgradeRefusal | undefined {
  switch (code) {
    case 'HPE_HEADER_OVERFLOW':
      return new UpgradeRefusal(431, 'headers_too_large', 'the request headers are larger than 16 KB; send a shorter token or fewer cookies');
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return new UpgradeRefusal(408, 'request_timeout', 'the request was not received in time');
    case 'ECONNRESET':
    case 'EPIPE':
    case undefined:
      return undefined;
    default:
      return new UpgradeRefusal(400, 'bad_request', 'the request is not valid HTTP/1.1');
  }
}
