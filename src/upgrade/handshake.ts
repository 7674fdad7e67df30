import type { IncomingMessage } from 'node:http';
import { UpgradeRefusal } from './upgrade-refusal';

const KEY = /^[+/0-9A-Za-z]{22}==$/;

function badRequest(message: string): UpgradeRefusal {
  return new UpgradeRefusal(400, 'bad_request', message);
}

/**
 * The checks ws makes in handleUpgrade, made first so that a broken request gets the SPEC's JSON 400
 * instead of ws's plain-text one.
 */
export function validateHandshake(req: IncomingMessage): void {
  if (req.method !== 'GET') throw badRequest('a WebSocket upgrade must be a GET request');
  if ((req.headers.upgrade ?? '').toLowerCase() !== 'websocket') {
    throw badRequest('the Upgrade header must be "websocket"');
  }
  const key = req.headers['sec-websocket-key'];
  if (typeof key !== 'string' || !KEY.test(key.trim())) throw badRequest('missing or invalid Sec-WebSocket-Key');
  const version = req.headers['sec-websocket-version'];
  if (version !== '13' && version !== '8') throw badRequest('unsupported Sec-WebSocket-Version (use 13)');
}

/** Parses the request target; the Host header is not trusted for anything. */
export function parseTarget(url: string | undefined): URL {
  try {
    return new URL(url ?? '/', 'http://gateway.invalid');
  } catch {
    throw badRequest('the request target is not a valid URL');
  }
}
