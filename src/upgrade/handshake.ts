import type { IncomingMessage } from 'node:http';
import { UpgradeRefusal } from './upgrade-refusal';

const KEY = /^[+/0-9A-Za-z]{22}==$/;

function badRequest(message: string): UpgradeRefusal {
  return new UpgradeRefusal(400, 'bad_request', message);
}

/**
 * The checks ws makes in handleUpgrade, made first so that a broken request gets the documented JSON 400
 * instead of ws's plain-text one.
 */
export function validateHandshake(req: IncomingMessage): void {
  if (req.method !== 'GET') throw badRequest('a WebSocket upgrade must be a GET request');
  // RFC 6455 §4.1: HTTP/1.1 or later (ws itself does not check).
  if (req.httpVersionMajor < 1 || (req.httpVersionMajor === 1 && req.httpVersionMinor < 1)) {
    throw badRequest('a WebSocket upgrade needs HTTP/1.1');
  }
  if ((req.headers.upgrade ?? '').toLowerCase() !== 'websocket') {
    throw badRequest('the Upgrade header must be "websocket"');
  }
  const key = req.headers['sec-websocket-key'];
  if (typeof key !== 'string' || !KEY.test(key.trim())) throw badRequest('missing or invalid Sec-WebSocket-Key');
  const version = req.headers['sec-websocket-version'];
  if (version !== '13' && version !== '8') throw badRequest('unsupported Sec-WebSocket-Version (use 13)');
}

/** A comma list of RFC 7230 tokens, as ws parses Sec-WebSocket-Protocol (lib/subprotocol.js). */
const PROTOCOL_LIST = /^[!#$%&'*+\-.^_`|~\w]+(?:[ \t]*,[ \t]*[!#$%&'*+\-.^_`|~\w]+)*$/;

/**
 * The offered subprotocols, refused with the JSON 400 where ws would answer its own plain-text 400 (a
 * character outside the token alphabet, an empty entry, the same protocol twice).
 */
export function offeredProtocols(header: string | undefined): string[] {
  if (header === undefined) return [];
  if (!PROTOCOL_LIST.test(header)) throw badRequest('invalid Sec-WebSocket-Protocol header (a comma list of tokens)');
  const protocols = header.split(',').map((p) => p.trim());
  if (new Set(protocols).size !== protocols.length) {
    throw badRequest('Sec-WebSocket-Protocol names the same subprotocol twice (send "bearer, <jwt>" once)');
  }
  return protocols;
}

/** The request target as the route table and guards need it. */
export interface Target {
  pathname: string;
  query: URLSearchParams;
}

/**
 * A path WHATWG URL parsing returns unchanged: no dot segments, escapes, backslashes or fragments, and no
 * leading `//` (which URL reads as a host).
 */
const PLAIN_PATH = /^\/(?!\/)[\w\-/:@~!$&'()*+,;=]*$/;

/**
 * Parses the request target; the Host header is not trusted for anything. Plain paths (every client of the
 * documented endpoints) skip the URL constructor, which costs several µs per upgrade; anything else goes
 * through it, so both give the same answer (test/unit/handshake.spec.ts compares them).
 */
export function parseTarget(url: string | undefined): Target {
  const raw = url ?? '/';
  const q = raw.indexOf('?');
  const path = q === -1 ? raw : raw.slice(0, q);
  if (PLAIN_PATH.test(path) && raw.indexOf('#') === -1) {
    return { pathname: path, query: new URLSearchParams(q === -1 ? '' : raw.slice(q + 1)) };
  }
  try {
    const parsed = new URL(raw, 'http://gateway.invalid');
    return { pathname: parsed.pathname, query: parsed.searchParams };
  } catch {
    throw badRequest('the request target is not a valid URL');
  }
}
