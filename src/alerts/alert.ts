import { z } from 'zod';
import type { Publication } from '../channels/publication';
import { isObject } from '../channels/publication';

/** A role or a user's sub: what a token can carry (no control characters, as the server API's `user:<sub>`). */
const name = z.string().min(1).max(256).regex(/^[^\x00-\x1f\x7f]+$/, 'must not hold control characters');

/** Body of POST /api/alerts (and, in cluster mode, of messages published by other services). */
export const AlertInputSchema = z
  .object({
    data: z.record(z.string(), z.unknown(), { message: '"data" must be a JSON object' }),
    roles: z.array(name).min(1).max(64).optional(),
    users: z.array(name).min(1).max(10_000).optional(),
  })
  .strict();

export type AlertInput = z.infer<typeof AlertInputSchema>;

/** A personal publication (`user:<sub>`): `{"data":{...}}`. */
export const PersonalInputSchema = z.object({ data: AlertInputSchema.shape.data }).strict();

/**
 * An alert payload as stored or published: the gateway's own `{data, roles?, users?}`, or what other services
 * put in a stream entry, where `data` may also hold that whole object (`XADD … data '{"data":{..},"roles":[..]}'`).
 */
export function normaliseAlert(payload: Record<string, unknown>): AlertInput | string {
  let candidate: Record<string, unknown> = payload;
  const inner = payload.data;
  if (
    isObject(inner) &&
    isObject(inner.data) &&
    Object.keys(payload).every((k) => k === 'data') &&
    Object.keys(inner).every((k) => k === 'data' || k === 'roles' || k === 'users')
  ) {
    candidate = inner;
  }
  const parsed = AlertInputSchema.safeParse(candidate);
  return parsed.success ? parsed.data : parsed.error.issues[0].message;
}

/**
 * The client frame, serialised once per alert and shared by every socket and every replay. Live-only alerts
 * have no id; `ts` is the publish time in whole ms.
 */
export function encodeAlertFrame(publication: Publication, data: Record<string, unknown>, channel?: string): Buffer {
  const ts = publication.key ? publication.key.ms : Math.floor(publication.ts);
  const frame: Record<string, unknown> = { type: 'alert' };
  if (channel) frame.channel = channel;
  if (publication.id) frame.id = publication.id;
  frame.data = data;
  frame.ts = ts;
  return Buffer.from(JSON.stringify(frame));
}
