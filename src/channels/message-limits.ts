import { isObject } from './publication';

const OPEN_BRACE = 0x7b;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACE = 0x7d;
const CLOSE_BRACKET = 0x5d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * Nesting depth of a JSON text, read byte by byte without parsing it (`{}` is 1, `{"a":[1]}` is 2). Checked
 * before JSON.parse: V8 parses a 10,000-level document, but JSON.stringify of it overflows the stack near
 * 4,175 levels, and zod recurses too, so depth must be refused before anything walks the value. Stops at the
 * first level over `max`; malformed text is left to JSON.parse.
 */
export function jsonDepthExceeds(text: Buffer | string, max: number): boolean {
  // Strings are read by char code (the ASCII brackets and quotes are the same code units), not copied.
  const isString = typeof text === 'string';
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = isString ? (text as string).charCodeAt(i) : (text as Buffer)[i];
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
    } else if (c === QUOTE) {
      inString = true;
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (++depth > max) return true;
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      depth--;
    }
  }
  return false;
}

export type LimitVerdict =
  | { ok: true; value: Record<string, unknown> }
  | { ok: false; status: 400 | 413; reason: string };

/**
 * MAX_PUBLISH_BYTES and MAX_JSON_DEPTH in one place, for every way a message comes in: the HTTP publish
 * endpoints, Redis pub/sub, Redis streams (live and during a replay) and client frames. A message that passes
 * can be serialised, stored and delivered; one that does not is refused where it enters (HTTP 413/400) or
 * dropped and counted (`ws_bus_invalid_total`), never accepted and then lost.
 */
export class MessageLimits {
  constructor(
    readonly maxBytes: number,
    readonly maxDepth: number,
  ) {}

  /** Parses a JSON object within both limits. */
  parseObject(raw: Buffer | string, maxBytes = this.maxBytes): LimitVerdict {
    const size = typeof raw === 'string' ? Buffer.byteLength(raw) : raw.length;
    if (size > maxBytes) return { ok: false, status: 413, reason: `larger than ${maxBytes} bytes (MAX_PUBLISH_BYTES)` };
    if (jsonDepthExceeds(raw, this.maxDepth)) {
      return { ok: false, status: 400, reason: `nested deeper than ${this.maxDepth} levels (MAX_JSON_DEPTH)` };
    }
    let value: unknown;
    try {
      value = JSON.parse(typeof raw === 'string' ? raw : raw.toString('utf8'));
    } catch {
      return { ok: false, status: 400, reason: 'not valid JSON' };
    }
    if (!isObject(value)) return { ok: false, status: 400, reason: 'not a JSON object' };
    return { ok: true, value };
  }

  /**
   * Checks a value built in this process (a chat message, a parsed request's `data`) and returns its JSON.
   * Depth is checked on the serialised text, which JSON.stringify produces for any depth a parse let through.
   */
  serialise(value: Record<string, unknown>): { ok: true; json: string } | { ok: false; status: 400 | 413; reason: string } {
    const json = JSON.stringify(value);
    if (Buffer.byteLength(json) > this.maxBytes) return { ok: false, status: 413, reason: `larger than ${this.maxBytes} bytes (MAX_PUBLISH_BYTES)` };
    if (jsonDepthExceeds(json, this.maxDepth)) {
      return { ok: false, status: 400, reason: `nested deeper than ${this.maxDepth} levels (MAX_JSON_DEPTH)` };
    }
    return { ok: true, json };
  }
}

export const MESSAGE_LIMITS = Symbol('MESSAGE_LIMITS');
