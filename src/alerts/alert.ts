import { z } from 'zod';
import type { Publication } from '../channels/publication';
import { EXTERNAL_ORIGIN, isObject } from '../channels/publication';
import { parseStreamId } from '../channels/stream-id';

/** A role or a user's sub: what a token can carry (no control characters, as the server API's `user:<sub>`). */
const name = z.string().min(1).max(256).regex(/^[^\x00-\x1f\x7f]+$/, 'must not hold control characters');
const data = z.record(z.string(), z.unknown(), { message: '"data" must be a JSON object' });
const roles = z.array(name).min(1).max(64);
const users = z.array(name).min(1).max(10_000);

/** The longest acknowledgement window (docs/server-api.md: 1–86400 s). */
export const MAX_WITHIN_S = 86_400;

/** `"ack":{"within_s":N}` on POST /api/alerts (docs/server-api.md, receipts). */
export const AckRequestSchema = z
  .object({
    within_s: z
      .number()
      .int()
      .min(1)
      .max(MAX_WITHIN_S)
      .describe('seconds after publication at which the targeted `users` who have not acked are escalated: the alert again on their live connections, Web Push, and the `alert.unacknowledged` event'),
  })
  .strict()
  .describe('ask for acknowledgement: frames carry `"ack":true`, receipts are kept (GET /api/alerts/{id}/receipts)');

/** Body of POST /api/alerts. */
export const AlertInputSchema = z
  .object({
    data,
    roles: roles.optional(),
    users: users.optional(),
    ack: AckRequestSchema.optional(),
  })
  .strict();

export type AlertInput = z.infer<typeof AlertInputSchema>;

/** An alert frame's own id (`redelivery`): a stream id as the first delivery carried it. */
const frameId = z.string().max(64).refine((id) => parseStreamId(id) !== undefined, 'must be a stream id');
/** The alert id a personal publication belongs to (receipts): see AlertsService.publish. */
const alertId = z.string().min(1).max(64);

/**
 * An alert as stored in `alerts` and published there (in cluster mode, also what other services publish): the
 * gateway's own `{data, roles?, users?}`, plus, for its own publications only, `ack` (frames carry `"ack":true`),
 * `track` (deliveries are recorded without ack: a push to users it did not reach) and `redelivery` (a live-only
 * copy of the alert with that id, sent again by an escalation).
 */
export const StoredAlertSchema = z
  .object({
    data,
    roles: roles.optional(),
    users: users.optional(),
    ack: z.literal(true).optional(),
    track: z.literal(true).optional(),
    redelivery: frameId.optional(),
  })
  .strict();

export type StoredAlert = z.infer<typeof StoredAlertSchema>;

/**
 * A personal publication (`user:<sub>`): `{"data":{...}}`; the gateway's own also carry `ack`, `alert` (the id of
 * the alert it is part of, when receipts are kept), `track` and `redelivery`, as in StoredAlertSchema.
 */
export const PersonalInputSchema = z
  .object({
    data,
    ack: z.literal(true).optional(),
    alert: alertId.optional(),
    track: z.literal(true).optional(),
    redelivery: frameId.optional(),
  })
  .strict();

export type PersonalAlert = z.infer<typeof PersonalInputSchema>;

/**
 * An alert payload as stored or published: the gateway's own `{data, roles?, users?, ...}`, or what other
 * services put in a stream entry, where `data` may also hold that whole object (`XADD … data
 * '{"data":{..},"roles":[..]}'`).
 */
export function normaliseAlert(payload: Record<string, unknown>): StoredAlert | string {
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
  const parsed = StoredAlertSchema.safeParse(candidate);
  return parsed.success ? parsed.data : parsed.error.issues[0].message;
}

/**
 * Receipts fields count only on the gateway's own publications: a service that writes to Redis directly cannot
 * make frames ask for an ack no receipt will ever be kept for.
 */
export function ownPublication(publication: Publication): boolean {
  return publication.origin !== EXTERNAL_ORIGIN;
}

/** How a frame is marked: asking for ack, and sent again by an escalation (with the first delivery's id and time). */
export interface AlertMarks {
  ack?: boolean;
  /** The id of the frame being delivered again (the publication itself is live-only). */
  redelivery?: string;
}

/** The frame's id and time: the publication's own, or, for a redelivery, those of the first delivery. */
export function frameIdAndTs(publication: Publication, marks: AlertMarks): { id?: string; ts: number } {
  if (marks.redelivery) return { id: marks.redelivery, ts: parseStreamId(marks.redelivery)!.ms };
  return { id: publication.id, ts: publication.key ? publication.key.ms : Math.floor(publication.ts) };
}

/**
 * The client frame, serialised once per alert and shared by every socket and every replay. Live-only alerts
 * have no id; `ts` is the publish time in whole ms. `"ack":true` when acknowledgement was asked for (only on
 * frames with an id: one without cannot be acked), `"redelivered":true` on an escalation's copy.
 */
export function encodeAlertFrame(publication: Publication, data: Record<string, unknown>, channel?: string, marks: AlertMarks = {}): Buffer {
  const { id, ts } = frameIdAndTs(publication, marks);
  const frame: Record<string, unknown> = { type: 'alert' };
  if (channel) frame.channel = channel;
  if (id) frame.id = id;
  frame.data = data;
  frame.ts = ts;
  if (marks.ack && id) frame.ack = true;
  if (marks.redelivery) frame.redelivered = true;
  return Buffer.from(JSON.stringify(frame));
}
