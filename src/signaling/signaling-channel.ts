import { publicationFrame, type ChannelPolicy } from '../channels/channel-hub';
import { isObject, type Publication } from '../channels/publication';
import type { Connection } from '../connection/connection';
import type { RoomPolicy } from '../rooms/rooms';
import { otherSeat, SEATS, type Seat } from './signaling.frames';

export const signalingChannel = (consultationId: string) => `signaling:${consultationId}`;

/**
 * A consultation's channel (live only, no history): `{to: <seat>, frame: {...}}` reaches that seat's socket
 * as `frame` (relayed offers, answers and candidates; peer-joined / peer-left); `{data:{...}}` from the server
 * API or another service reaches both seats as `{"type":"publication","channel","data","ts"}`.
 */
export class SignalingChannelPolicy implements ChannelPolicy, RoomPolicy {
  readonly kind = 'signaling';
  /** Members are the doctor and patient seats: a `/ws` subscriber of a consultation observes it, never sits in it. */
  readonly seats = true;
  readonly history = false;

  encode(publication: Publication): Buffer | string {
    const data = publication.data;
    if (data.to !== undefined) {
      if (!SEATS.includes(data.to as Seat) || !isObject(data.frame)) return 'expected {"to": "doctor"|"patient", "frame": {...}}';
      return Buffer.from(JSON.stringify(data.frame));
    }
    const frame = publicationFrame(publication);
    return typeof frame === 'string' ? frame : Buffer.from(JSON.stringify(frame));
  }

  /** On `/ws` a consultation carries publications only: the seat-to-seat relay needs a seat (the path endpoint). */
  encodeForChannel(publication: Publication): object | null | string {
    return publication.data.to !== undefined ? null : publicationFrame(publication);
  }

  audience(publication: Publication): ((conn: Connection) => boolean) | undefined {
    const to = publication.data.to;
    return to === undefined ? undefined : (conn) => conn.params.userType === to;
  }

  memberOf(conn: Connection): string {
    return conn.params.userType;
  }

  announcement(event: 'join' | 'leave', seat: string): Record<string, unknown> {
    return { to: otherSeat(seat as Seat), frame: { type: event === 'join' ? 'peer-joined' : 'peer-left', role: seat } };
  }

  entered(conn: Connection, seats: string[]): void {
    const other = otherSeat(conn.params.userType as Seat);
    if (seats.includes(other)) conn.send({ type: 'peer-joined', role: other });
  }
}
