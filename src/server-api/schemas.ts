import { z } from 'zod';
import { subProblem } from '../auth/principal';

/** A lone UTF-16 surrogate: it would become U+FFFD on the way to Redis, so two names would collide. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const wellFormed = (text: string) => !LONE_SURROGATE.test(text);

/**
 * `<namespace>[:<name>]`. Which namespaces exist and what a name may hold is the namespace registry's to say (400
 * unknown_channel, for every malformed name alike): the configured set changes without this schema changing.
 */
export const ChannelName = z
  .string()
  .max(1024, 'must be a channel such as chat:lobby (at most 1024 characters)')
  .refine(wellFormed, 'must be well-formed Unicode (no lone surrogates)')
  .meta({ example: 'chat:lobby' });

/** The door's rule exactly (auth/principal.ts): every user that can connect can be named here. */
export const UserSub = z.string().min(1, 'must not be empty').superRefine((sub, ctx) => {
  const problem = subProblem(sub);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});

const Data = z.record(z.string(), z.unknown(), { message: '"data" must be a JSON object' }).describe('the message, any JSON object');

export const PublishInput = z
  .object({ channel: ChannelName, data: Data })
  .strict()
  .describe('{"channel": "<channel>", "data": {...}}')
  .meta({ example: { channel: 'chat:lobby', data: { text: 'The ward round starts in 10 minutes' } } });

export const PublishAccepted = z
  .object({
    id: z.string().optional().describe('the stream id; absent on channels without history (signaling)'),
    ts: z.number().describe('ms since the epoch'),
  })
  .meta({ example: { id: '1732700000000-0', ts: 1732700000000 } });

/** The close reason holds `disconnected: <reason>`, and a close reason is at most 123 bytes. */
const REASON_BYTES = 100;

export const DisconnectInput = z
  .object({
    user: UserSub.describe('the `sub` of the user whose connections close'),
    reason: z
      .string()
      .refine((r) => Buffer.byteLength(r) <= REASON_BYTES, `must be at most ${REASON_BYTES} bytes of UTF-8 (it travels in the close frame)`)
      .optional()
      .describe('sent in the close frame as `disconnected: <reason>`'),
    ban_seconds: z.number().int().min(1).max(30 * 86_400).optional().describe('refuse this user\'s upgrades with 403 banned for this long (at most 30 days)'),
  })
  .strict()
  .describe('{"user": "<sub>", "reason"?: "...", "ban_seconds"?: N}')
  .meta({ example: { user: 'u-1042', reason: 'account suspended', ban_seconds: 3600 } });

export const DisconnectAccepted = z
  .object({
    user: z.string(),
    banned_until: z.number().optional().describe('ms since the epoch, with ban_seconds'),
  })
  .meta({ example: { user: 'u-1042', banned_until: 1732703600000 } });

/** At most 30 days, as a ban: a revocation needs to outlive only the tokens it names. */
export const MAX_REVOKE_TTL_S = 30 * 86_400;
export const DEFAULT_REVOKE_TTL_S = 86_400;
/** 9999-12-31T23:59:59Z: any later `issued_before` is a typo, not a date. */
const MAX_UNIX_S = 253_402_300_799;

export const RevokeInput = z
  .object({
    user: UserSub.optional().describe('revoke this user\'s tokens issued before `issued_before` (and those without `iat`)'),
    issued_before: z
      .number()
      .int('must be a whole number of seconds since the epoch')
      .min(0)
      .max(MAX_UNIX_S, 'must be seconds since the epoch (not milliseconds)')
      .optional()
      .describe('unix seconds; tokens with `iat` before it are revoked (default: now, the current second included)'),
    jti: z
      .string()
      .superRefine((jti, ctx) => {
        const problem = subProblem(jti);
        if (problem) ctx.addIssue({ code: 'custom', message: problem });
      })
      .optional()
      .describe('revoke every token with this `jti` claim'),
    ttl_s: z
      .number()
      .int('must be a whole number of seconds')
      .min(1)
      .max(MAX_REVOKE_TTL_S, `must be at most ${MAX_REVOKE_TTL_S} (30 days)`)
      .optional()
      .describe(`how long the revocation holds, in seconds (default ${DEFAULT_REVOKE_TTL_S}, at most ${MAX_REVOKE_TTL_S}): longer than the tokens it names live`),
  })
  .strict()
  .superRefine((body, ctx) => {
    if ((body.user === undefined) === (body.jti === undefined)) ctx.addIssue({ code: 'custom', message: 'give either "user" (with "issued_before"?) or "jti", not both and not neither' });
    else if (body.issued_before !== undefined && body.user === undefined) ctx.addIssue({ code: 'custom', path: ['issued_before'], message: 'only meaningful with "user"' });
  })
  .describe('{"user": "<sub>", "issued_before"?: <unix s>} or {"jti": "<jti>"}, with "ttl_s"?: N')
  .meta({ example: { user: 'u-1042', issued_before: 1732700000, ttl_s: 86_400 } });

export const RevokeAccepted = z
  .object({
    user: z.string().optional(),
    issued_before: z.number().int().optional().describe('unix seconds, with user'),
    jti: z.string().optional(),
    revoked_until: z.number().describe('ms since the epoch: when the revocation lapses'),
  })
  .meta({ example: { user: 'u-1042', issued_before: 1732700000, revoked_until: 1732786400000 } });

export const ChannelParam = { channel: ChannelName };

export const PresenceAnswer = z
  .object({
    members: z.array(
      z.object({
        user: z.string().describe('chat: the member\'s sub; signaling: the seat (doctor or patient)'),
        node: z.string().describe('the replica it is connected to'),
        connections: z.number().int(),
      }),
    ),
  })
  .meta({ example: { members: [{ user: 'u-1042', node: 'gateway-7c9f-1', connections: 1 }] } });

export const HistoryQuery = z
  .object({
    since: z.string().regex(/^\d{1,15}-\d{1,15}$/, 'must be a message id such as 1732700000000-0').optional().describe('only messages after this id (omit: from the oldest kept)'),
    epoch: z.string().max(64).optional().describe('the epoch `since` belongs to: a different one makes recovered false'),
    limit: z
      .string()
      .regex(/^[0-9]{1,4}$/, 'must be a whole number from 1 to 1000')
      .transform(Number)
      .pipe(z.number().int().min(1, 'must be a whole number from 1 to 1000').max(1000, 'must be a whole number from 1 to 1000'))
      .default(100)
      .describe('at most this many messages (1–1000, default 100)'),
  })
  .strict()
  .refine((q) => q.epoch === undefined || q.since !== undefined, { message: 'epoch is only meaningful with since (the id it belongs to)', path: ['epoch'] });

export const HistoryAnswer = z
  .object({
    epoch: z.string(),
    messages: z.array(z.object({ id: z.string(), ts: z.number(), data: z.record(z.string(), z.unknown()) })),
    recovered: z.boolean().describe('true only when nothing between `since` and the first message returned was lost'),
  })
  .meta({ example: { epoch: 'a1b2c3d4e5f6', messages: [{ id: '1732700000000-0', ts: 1732700000000, data: { text: 'hello' } }], recovered: true } });

export const NodesAnswer = z
  .object({
    nodes: z.array(
      z.object({
        id: z.string(),
        version: z.string(),
        uptime_s: z.number().int(),
        connections: z.record(z.string(), z.number().int()).describe('open connections per gateway (alerts, chat, signaling)'),
        channels: z.array(z.object({ channel: z.string(), members: z.number().int() })).describe('its 10 busiest channels by members connected to it'),
        messages_sent: z.number().describe('frames sent to clients since it started'),
        connections_opened: z.number().describe('connections accepted since it started'),
      }),
    ),
  })
  .meta({
    example: {
      nodes: [
        {
          id: 'gateway-7c9f-1',
          version: '0.1.0',
          uptime_s: 3600,
          connections: { alerts: 120, chat: 40, signaling: 2 },
          channels: [{ channel: 'alerts', members: 120 }, { channel: 'chat:ward-3', members: 12 }],
          messages_sent: 481_220,
          connections_opened: 1_904,
        },
      ],
    },
  });
