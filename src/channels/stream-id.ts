/**
 * Ids in Redis Streams form, `<ms>-<seq>`, in both modes, so that a client's resume id means the same thing
 * whether the node keeps history in memory or in a Redis stream.
 */
export interface StreamId {
  ms: number;
  seq: number;
}

const FORMAT = /^(\d{1,15})-(\d{1,15})$/;

export function parseStreamId(id: string): StreamId | undefined {
  const match = FORMAT.exec(id);
  return match ? { ms: Number(match[1]), seq: Number(match[2]) } : undefined;
}

export function compareStreamIds(a: StreamId, b: StreamId): number {
  return a.ms - b.ms || a.seq - b.seq;
}

export function formatStreamId(id: StreamId): string {
  return `${id.ms}-${id.seq}`;
}

/** Strictly increasing ids, even when the wall clock steps back. */
export class StreamIdGenerator {
  private last: StreamId = { ms: 0, seq: 0 };

  next(now = Date.now()): StreamId {
    this.last = now > this.last.ms ? { ms: now, seq: 0 } : { ms: this.last.ms, seq: this.last.seq + 1 };
    return this.last;
  }
}
