import { jsonDepthExceeds } from '../connection/json-depth';
import { isObject } from './publication';

export { jsonDepthExceeds };

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
