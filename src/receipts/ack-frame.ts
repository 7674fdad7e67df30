import { z } from 'zod';

/**
 * The client's `ack` of an alert frame (docs/protocol.md "Acknowledgements"): the frame's `id`, and on `/ws` and SSE also
 * its `channel` (accepted on the alerts endpoint too: a personal frame there names its channel). Only bounded
 * here; an id that names no alert delivered to the user is `unknown_alert`, answered by Receipts.ack.
 */
export const AckFrameSchema = z
  .object({
    type: z.literal('ack'),
    id: z.string().min(1).max(256),
    channel: z.string().max(4096).optional(),
  })
  .strict();

export type AckFrame = z.infer<typeof AckFrameSchema>;
