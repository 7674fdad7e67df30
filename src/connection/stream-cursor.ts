/**
 * An SSE stream's cursor (the `id:` of its events, sent back by a reconnecting `EventSource` as `Last-Event-ID`):
 * every channel the stream holds and, for history channels, its position. Opaque to clients; a reader of it sees
 * `c1` then, per channel, `.` + the channel name in base64url + `~epoch~id` when it has a position.
 *
 * One segment per channel, kept encoded, so an event's cursor is a join of short strings (an alerts stream with
 * one channel pays one template string per event), not a JSON document per socket per message.
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

function segment(name: string, position: CursorPosition): string {
  return position.epoch !== undefined && position.id !== undefined ? `${name}~${position.epoch}~${position.id}` : name;
}

/** The positions of one stream, and its cursor, rebuilt only when a position moved. */
export class StreamCursor {
  /** Per channel: its base64url name (encoded once) and its current segment. */
  private readonly entries = new Map<string, { name: string; segment: string; position: CursorPosition }>();
  private text: string | undefined = VERSION;

  /** Sets a channel's position (a `subscribed`, a welcome, or a delivered publication). */
  set(channel: string, position: CursorPosition): void {
    let entry = this.entries.get(channel);
    if (entry === undefined) {
      const name = Buffer.from(channel, 'utf8').toString('base64url');
      entry = { name, segment: '', position };
      this.entries.set(channel, entry);
    }
    // An epoch comes with subscribed frames and history publications; a publication without one keeps the last.
    const merged = { epoch: position.epoch ?? entry.position.epoch, id: position.id ?? entry.position.id };
    entry.position = merged;
    entry.segment = segment(entry.name, merged);
    this.text = undefined;
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
      for (const entry of this.entries.values()) text += '.' + entry.segment;
      this.text = text;
    }
    return this.text;
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
