import type { IncomingMessage } from 'node:http';
import { randomBytes } from 'node:crypto';
import { parseCursor } from '../connection/stream-cursor';
import { UpgradeRefusal } from './upgrade-refusal';

/** The attribute under which the door hands an SSE stream's request to the `/ws` gateway. */
export const STREAM_ATTRIBUTE = 'stream';

/** What `GET /sse` asked for, read by the door and carried out by the `/ws` gateway's handleConnection. */
export interface StreamRequest {
  /** Names the stream for `POST /sse/send`: the node that holds it, the connection, and a secret part. */
  readonly session: string;
  /** Each channel, with the position to resume after when the cursor had one. */
  readonly channels: readonly { channel: string; since?: { id: string; epoch: string } }[];
  /** A cursor was sent but could not be read: every channel starts with `recovered:false`. */
  readonly unreadable: boolean;
}

/** Far above any channel name (a sub is at most 256 characters); bounds what one parameter can cost. */
const MAX_CHANNEL_LENGTH = 4096;

/** `s1.<node in base64url>.<connection id>.<random>`: any replica can tell which node holds a session. */
export function newSession(nodeId: string, connectionId: string): string {
  return `s1.${Buffer.from(nodeId, 'utf8').toString('base64url')}.${connectionId}.${randomBytes(12).toString('base64url')}`;
}

/** The node and connection a session names, or undefined when it is not one this server could have made. */
export function parseSession(session: string): { node: string; connectionId: string } | undefined {
  const parts = session.split('.');
  if (parts.length !== 4 || parts[0] !== 's1' || !/^[A-Za-z0-9_-]{1,400}$/.test(parts[1]) || !/^[a-z0-9]{1,16}$/.test(parts[2]) || !/^[A-Za-z0-9_-]{16}$/.test(parts[3])) return undefined;
  return { node: Buffer.from(parts[1], 'base64url').toString('utf8'), connectionId: parts[2] };
}

/**
 * `?channel=<c>&channel=<c2>`, and the cursor from `Last-Event-ID` (what a reconnecting EventSource sends) or
 * `?last_event_id=`. A readable cursor gives its channels their positions (and brings those subscribed over
 * `/sse/send`); the `channel` parameters are asked for too, so an EventSource reconnecting to its first URL never
 * holds less than that URL names (a channel refused for a passing reason, or a stream that held nothing, asks
 * again). More channels than a connection may hold is 400.
 */
export function readStreamRequest(req: IncomingMessage, query: URLSearchParams, session: string, maxChannels: number): StreamRequest {
  const named = query.getAll('channel');
  if (named.length > maxChannels) {
    throw new UpgradeRefusal(400, 'too_many_subscriptions', `a stream holds at most ${maxChannels} channels (MAX_SUBSCRIPTIONS_PER_CONNECTION); ask for fewer`);
  }
  for (const channel of named) {
    if (channel.length === 0 || channel.length > MAX_CHANNEL_LENGTH) throw new UpgradeRefusal(400, 'invalid_channel', 'each channel parameter is a channel name, e.g. channel=alerts');
  }
  const fromQuery = () => [...new Set(named)].map((channel) => ({ channel }));
  const header = req.headers['last-event-id'];
  const text = (typeof header === 'string' ? header : undefined) ?? query.get('last_event_id') ?? undefined;
  if (text === undefined || text === '') return { session, channels: fromQuery(), unreadable: false };
  const cursor = parseCursor(text, maxChannels);
  if (!cursor) return { session, channels: fromQuery(), unreadable: true };
  const channels: StreamRequest['channels'][number][] = [...cursor.channels].map(([channel, { id, epoch }]) => (id !== undefined && epoch !== undefined ? { channel, since: { id, epoch } } : { channel }));
  for (const channel of named) if (!cursor.channels.has(channel)) channels.push({ channel });
  if (channels.length > maxChannels) {
    throw new UpgradeRefusal(400, 'too_many_subscriptions', `the cursor and the channel parameters name more than ${maxChannels} channels (MAX_SUBSCRIPTIONS_PER_CONNECTION); ask for fewer`);
  }
  return { session, channels, unreadable: false };
}
