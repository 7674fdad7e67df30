import { z } from 'zod';

/** Channel names are checked by the namespace registry (unknown_channel); this only bounds the string. */
const channel = z.string().min(1).max(300);
/** A position as received in `subscribed` / a publication: checked again with parseStreamId by the handler. */
const since = z.string().min(3).max(64);
const epoch = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'an epoch as received in the subscribed frame');

/** Client → server frames of `/ws` (SPEC v3 "One connection, many channels"). */
export const WS_FRAMES = {
  subscribe: z.object({ type: z.literal('subscribe'), channel, since: since.optional(), epoch: epoch.optional() }).strict(),
  unsubscribe: z.object({ type: z.literal('unsubscribe'), channel }).strict(),
  publish: z.object({ type: z.literal('publish'), channel, data: z.record(z.string(), z.unknown(), { message: '"data" must be a JSON object' }) }).strict(),
};

export type SubscribeFrame = z.infer<typeof WS_FRAMES.subscribe>;
export type UnsubscribeFrame = z.infer<typeof WS_FRAMES.unsubscribe>;
export type PublishFrame = z.infer<typeof WS_FRAMES.publish>;
