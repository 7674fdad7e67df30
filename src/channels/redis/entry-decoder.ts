import type { InvalidMessages } from '../invalid-messages';
import { jsonDepthExceeds, type MessageLimits } from '../message-limits';
import { channelKind, EXTERNAL_ORIGIN, isObject, preciseNow, type Publication } from '../publication';
import { parseStreamId, type StreamId } from '../stream-id';

/** A gateway envelope adds its own fields around the payload. */
const ENVELOPE_BYTES = 512;

/** A stream entry as XRANGE and XREAD return it. */
export type StreamEntry = [id: string, fields: string[]];

/** What a valid pub/sub message on a channel asks of the node. */
export type Notice =
  /** Deliver now, outside any order: a live-only publication, or another service's PUBLISH. */
  | { readonly type: 'live'; readonly publication: Publication }
  /** A service appended to the stream itself and asks the nodes to read it. */
  | { readonly type: 'sync' }
  /** A history publication, to be delivered in id order: `prev` is the id before it on the channel. */
  | { readonly type: 'history'; readonly publication: Publication; readonly prev: StreamId };

const SYNC: Notice = { type: 'sync' };

/** An entry's payload: the gateway's `p` field, or another service's fields (each a JSON value). */
function entryPayload(fields: string[], limits: MessageLimits): { ok: true; data: Record<string, unknown>; ts?: number; origin?: string } | { ok: false; reason: string } {
  let p: string | undefined;
  let ts: number | undefined;
  let origin: string | undefined;
  const other: [string, string][] = [];
  let bytes = 0;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i];
    const value = fields[i + 1];
    if (name === 'p') p = value;
    else if (name === 'ts') ts = Number(value);
    else if (name === 'o') origin = value;
    else {
      // Only the payload counts, in bytes: the gateway's own `ts` and `o` fields are not the message.
      other.push([name, value]);
      bytes += Buffer.byteLength(value);
    }
  }
  if (bytes > limits.maxBytes) return { ok: false, reason: `larger than ${limits.maxBytes} bytes (MAX_PUBLISH_BYTES)` };
  const when = ts !== undefined && Number.isFinite(ts) && ts > 0 ? ts : undefined;
  if (p !== undefined) {
    const verdict = limits.parseObject(p);
    return verdict.ok ? { ok: true, data: verdict.value, ts: when, origin } : { ok: false, reason: verdict.reason };
  }
  if (other.length === 0) return { ok: false, reason: 'no "data" field' };
  const data: Record<string, unknown> = {};
  for (const [name, value] of other) {
    if (jsonDepthExceeds(value, limits.maxDepth - 1)) return { ok: false, reason: `"${name}" nested deeper than ${limits.maxDepth} levels (MAX_JSON_DEPTH)` };
    try {
      data[name] = JSON.parse(value);
    } catch {
      return { ok: false, reason: `"${name}" is not JSON` };
    }
  }
  return { ok: true, data, ts: when, origin: EXTERNAL_ORIGIN };
}

/**
 * Turns what Redis holds into Publications: stream entries (the gateway's own and other services' XADDs) and
 * pub/sub messages (the gateway's envelopes and other services' PUBLISH), within MAX_PUBLISH_BYTES and
 * MAX_JSON_DEPTH. Whatever is malformed is dropped here, counted and logged with its reason (InvalidMessages),
 * and never reaches a handler: callers get undefined.
 */
export class EntryDecoder {
  constructor(
    private readonly limits: MessageLimits,
    private readonly invalid: InvalidMessages,
  ) {}

  /** A stream entry; `epoch` and `prev` are what the reader knows (a live delivery), absent in a client's replay. */
  entry(channel: string, id: string, fields: string[], epoch?: string, prev?: string): Publication | undefined {
    const key = parseStreamId(id);
    const payload = entryPayload(fields, this.limits);
    if (!payload.ok || !key) {
      // Skipped and counted, wherever it is read (live, or in a client's replay); never closes a client.
      this.invalid.drop(channelKind(channel), payload.ok ? `bad id ${id}` : payload.reason);
      return undefined;
    }
    return { channel, id, key, epoch, prev, ts: payload.ts ?? key.ms, origin: payload.origin ?? EXTERNAL_ORIGIN, data: payload.data };
  }

  /** A pub/sub message parsed as a JSON object within the limits (an envelope leaves room for its own fields). */
  message(payload: Buffer, kind: string): Record<string, unknown> | undefined {
    const verdict = this.limits.parseObject(payload, this.limits.maxBytes + ENVELOPE_BYTES);
    if (!verdict.ok) {
      this.invalid.drop(kind, verdict.reason);
      return undefined;
    }
    return verdict.value;
  }

  /**
   * What a parsed pub/sub message asks: `payload` is its raw form (another service's PUBLISH is checked for depth
   * on it), `history` whether the channel keeps history (only then may a message carry an id).
   */
  notice(channel: string, kind: string, message: Record<string, unknown>, payload: Buffer, history: boolean): Notice | undefined {
    if (message.v !== 1) {
      // Another service's PUBLISH: the whole object is the payload, live only.
      if (jsonDepthExceeds(payload, this.limits.maxDepth)) return this.drop(kind, `nested deeper than ${this.limits.maxDepth} levels (MAX_JSON_DEPTH)`);
      return { type: 'live', publication: { channel, ts: preciseNow(), origin: EXTERNAL_ORIGIN, data: message } };
    }
    if (message.sync === true) return SYNC;
    if (!isObject(message.data) || typeof message.ts !== 'number' || typeof message.o !== 'string') {
      return this.drop(kind, 'incomplete envelope');
    }
    if (typeof message.id !== 'string') return { type: 'live', publication: { channel, ts: message.ts, origin: message.o, data: message.data } };
    const key = parseStreamId(message.id);
    const prev = typeof message.prev === 'string' ? parseStreamId(message.prev) : undefined;
    if (!key || !prev || typeof message.epoch !== 'string' || !history) return this.drop(kind, 'incomplete envelope');
    return {
      type: 'history',
      publication: { channel, id: message.id, key, epoch: message.epoch, prev: message.prev as string, ts: message.ts, origin: message.o, data: message.data },
      prev,
    };
  }

  private drop(kind: string, reason: string): undefined {
    this.invalid.drop(kind, reason);
    return undefined;
  }
}
