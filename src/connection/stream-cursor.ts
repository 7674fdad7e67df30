/**
 * An SSE stream's cursor (the `id:` of its events, sent back by a reconnecting `EventSource` as `Last-Event-ID`):
 * every channel the stream holds and, for history channels, its position. Opaque to clients; a reader of it sees
 * `c1` then, per channel, `.` + the channel name in base64url + `~epoch~id` when it has a position.
 *
 * One segment per channel, kept encoded, so an event's cursor is a join of short strings, not a JSON document per
 * socket per message; streams in the same state share one cursor string per publication (`advance`).
 */

const VERSION = 'c1';
const EPOCH = /^[A-Za-z0-9_-]{1,64}$/;
const STREAM_ID = /^\d{1,16}-\d{1,16}$/;

export interface CursorPosition {
  epoch?: string;
  id?: string;
}

export interface ParsedCursor {
  /** Channels in the order the cursor names them, each with its position when it had one. */
  channels: Map<string, CursorPosition>;
}

function segment(name: string, epoch: string | undefined, id: string | undefined): string {
  return epoch !== undefined && id !== undefined ? `${name}~${epoch}~${id}` : name;
}

/** One channel of a cursor: its base64url name (encoded once), its position, its segment once asked for. */
interface Entry {
  readonly name: string;
  epoch: string | undefined;
  id: string | undefined;
  /** Undefined when the position moved since it was last written. */
  segment: string | undefined;
}

/**
 * The positions of one stream, and its cursor, rebuilt only when a position moved and the cursor is asked for.
 * A publication delivered to many streams moves each the same way: `advance` takes the cursor another stream
 * computed for it (see SseSocket.wrap), so a stream pays no string building at all.
 */
export class StreamCursor {
  private readonly entries = new Map<string, Entry>();
  private text: string | undefined = VERSION;

  /** Sets a channel's position (a `subscribed`, a welcome, or a delivered publication). */
  set(channel: string, position: CursorPosition): void {
    const entry = this.entry(channel);
    // An epoch comes with subscribed frames and history publications; a publication without one keeps the last.
    if (position.epoch !== undefined) entry.epoch = position.epoch;
    if (position.id !== undefined) entry.id = position.id;
    entry.segment = undefined;
    this.text = undefined;
  }

  /**
   * Moves a channel to `epoch` and `id`, knowing the resulting cursor: what `set` and then `toString` would give
   * from this cursor (the caller computed it from a cursor of the same text).
   */
  advance(channel: string, epoch: string | undefined, id: string, text: string): void {
    const entry = this.entry(channel);
    if (epoch !== undefined) entry.epoch = epoch;
    entry.id = id;
    entry.segment = undefined;
    this.text = text;
  }

  /** The epoch a publication without one keeps (see `set`). */
  epochOf(channel: string): string | undefined {
    return this.entries.get(channel)?.epoch;
  }

  delete(channel: string): void {
    if (this.entries.delete(channel)) this.text = undefined;
  }

  clear(): void {
    this.entries.clear();
    this.text = undefined;
  }

  toString(): string {
    if (this.text === undefined) {
      let text = VERSION;
      for (const entry of this.entries.values()) text += '.' + (entry.segment ??= segment(entry.name, entry.epoch, entry.id));
      this.text = text;
    }
    return this.text;
  }

  private entry(channel: string): Entry {
    let entry = this.entries.get(channel);
    if (entry === undefined) {
      entry = { name: Buffer.from(channel, 'utf8').toString('base64url'), epoch: undefined, id: undefined, segment: undefined };
      this.entries.set(channel, entry);
    }
    return entry;
  }
}

/**
 * Reads a cursor; undefined when it cannot be read (garbage, another version, more than `maxChannels`): the
 * stream then starts with `recovered:false` for every channel, never a refusal that would stop a browser.
 */
export function parseCursor(text: string, maxChannels: number): ParsedCursor | undefined {
  const parts = text.split('.');
  if (parts[0] !== VERSION || parts.length - 1 > maxChannels) return undefined;
  const channels = new Map<string, CursorPosition>();
  for (let i = 1; i < parts.length; i++) {
    const [name, epoch, id, extra] = parts[i].split('~');
    if (extra !== undefined || !/^[A-Za-z0-9_-]+$/.test(name)) return undefined;
    const channel = Buffer.from(name, 'base64url').toString('utf8');
    // Not what this server wrote (invalid UTF-8, non-canonical base64): not ours.
    if (Buffer.from(channel, 'utf8').toString('base64url') !== name || channels.has(channel)) return undefined;
    if (epoch === undefined && id === undefined) {
      channels.set(channel, {});
      continue;
    }
    if (epoch === undefined || id === undefined || !EPOCH.test(epoch) || !STREAM_ID.test(id)) return undefined;
    channels.set(channel, { epoch, id });
  }
  return { channels };
}
