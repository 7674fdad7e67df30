import { z } from 'zod';
import { AckFrameSchema } from '../receipts/ack-frame';

/**
 * Channel names are checked by the namespace registry (unknown_channel, with the channel): this only bounds the
 * string, far above any valid name (a user's sub is up to 256 characters), so a malformed one still gets the
 * error frame that names it.
 */
const channel = z.string().max(4096);
/** A position as received in `subscribed` / a publication: checked again with parseStreamId by the handler. */
const since = z.string().min(3).max(64);
/** Checked by the handler, so that a malformed one is answered for its channel. */
const epoch = z.string().max(4096);

/** Client → server frames of `/ws` (docs/protocol.md "One connection, many channels"). */
export const WS_FRAMES = {
  subscribe: z.object({ type: z.literal('subscribe'), channel, since: since.optional(), epoch: epoch.optional() }).strict(),
  unsubscribe: z.object({ type: z.literal('unsubscribe'), channel }).strict(),
  publish: z.object({ type: z.literal('publish'), channel, data: z.record(z.string(), z.unknown(), { message: '"data" must be a JSON object' }) }).strict(),
  /** docs/protocol.md "Acknowledgements": the ack of an alert received with `"ack":true`, naming its channel (`alerts` or `user:<sub>`). */
  ack: AckFrameSchema,
};

export type SubscribeFrame = z.infer<typeof WS_FRAMES.subscribe>;
export type UnsubscribeFrame = z.infer<typeof WS_FRAMES.unsubscribe>;
export type PublishFrame = z.infer<typeof WS_FRAMES.publish>;
export type AckFrame = z.infer<typeof WS_FRAMES.ack>;
