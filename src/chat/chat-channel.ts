import { publicationFrame, type ChannelPolicy } from '../channels/channel-hub';
import type { Publication } from '../channels/publication';
import type { Connection } from '../connection/connection';
import type { RoomPolicy } from '../rooms/rooms';

export const chatChannel = (room: string) => `chat:${room}`;

/**
 * What travels on a `chat:<room>` channel, and the frame each becomes:
 * - `{type:"message", user, message}` (kept in history) → `{"type":"message","id","user","message","ts"}`
 * - `{type:"private", from, to, message}` (live, `to`'s sockets only) → `{"type":"private","from","to","message","ts"}`,
 *   with no `id`: it is not kept, so no client may resume from it (docs/protocol.md)
 * - `{type:"system", event, user, users}` (live) → as is
 * - `{data:{...}}` from the server API or another service (or a `/ws` member's `{data, user}`) →
 *   `{"type":"publication","channel","id"?,"data","ts","user"?}`
 */
export class ChatChannelPolicy implements ChannelPolicy, RoomPolicy {
  readonly kind = 'chat';
  readonly history = true;

  encode(publication: Publication): Buffer | string {
    const data = publication.data;
    const ts = publication.key ? publication.key.ms : Math.floor(publication.ts);
    switch (data.type) {
      case 'message':
        if (typeof data.user !== 'string' || typeof data.message !== 'string') return 'chat message without user or message';
        return json({ type: 'message', id: publication.id, user: data.user, message: data.message, ts });
      case 'private':
        if (typeof data.to !== 'string' || typeof data.from !== 'string' || typeof data.message !== 'string') return 'private message without from, to or message';
        return json({ type: 'private', from: data.from, to: data.to, message: data.message, ts });
      case 'system':
        return json({ type: 'system', event: data.event, user: data.user, users: data.users });
      case undefined: {
        // The server API's and Redis's {"data"}, or a `/ws` member's {"data","user"}.
        const frame = publicationFrame(publication);
        return typeof frame === 'string' ? frame : json(frame as Record<string, unknown>);
      }
      default:
        return `unknown chat payload type`;
    }
  }

  /** The same room on `/ws`: messages as publications from their user, joins and leaves as `join` / `leave`. */
  encodeForChannel(publication: Publication): object | null | string {
    const data = publication.data;
    const channel = publication.channel;
    const ts = publication.key ? publication.key.ms : Math.floor(publication.ts);
    switch (data.type) {
      case 'message':
        return { type: 'publication', channel, id: publication.id, data: { message: data.message }, user: data.user, ts };
      case 'private':
        return { type: 'private', channel, from: data.from, to: data.to, message: data.message, ts };
      case 'system':
        return { type: data.event, channel, user: data.user };
      default:
        return publicationFrame(publication);
    }
  }

  audience(publication: Publication): ((conn: Connection) => boolean) | undefined {
    if (publication.data.type !== 'private') return undefined;
    const to = publication.data.to;
    return (conn) => conn.user.sub === to;
  }

  memberOf(conn: Connection): string {
    return conn.user.sub;
  }

  announcement(event: 'join' | 'leave', user: string, users: string[]): Record<string, unknown> {
    return { type: 'system', event, user, users };
  }
}

function json(frame: Record<string, unknown>): Buffer {
  return Buffer.from(JSON.stringify(frame));
}
