import { STATUS_CODES } from 'node:http';
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
