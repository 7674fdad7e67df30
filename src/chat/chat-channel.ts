import type { ChannelPolicy } from '../channels/channel-hub';
import { isObject, type Publication } from '../channels/publication';
import type { Connection } from '../connection/connection';
import type { RoomPolicy } from '../rooms/rooms';

export const chatChannel = (room: string) => `chat:${room}`;

/**
 * What travels on a `chat:<room>` channel, and the frame each becomes:
 * - `{type:"message", user, message}` (kept in history) → `{"type":"message","id","user","message","ts"}`
 * - `{type:"private", from, to, message, pid}` (live, `to`'s sockets only) → `{"type":"private","id":pid,…}`
 * - `{type:"system", event, user, users}` (live) → as is
 * - `{data:{...}}` from the server API or another service → `{"type":"publication","channel","id"?,"data","ts"}`
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
        return json({ type: 'private', id: data.pid, from: data.from, to: data.to, message: data.message, ts });
      case 'system':
        return json({ type: 'system', event: data.event, user: data.user, users: data.users });
      case undefined:
        if (!isObject(data.data) || Object.keys(data).length !== 1) return 'expected {"data":{...}}';
        return json({ type: 'publication', channel: publication.channel, id: publication.id, data: data.data, ts });
      default:
        return `unknown chat payload type`;
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
