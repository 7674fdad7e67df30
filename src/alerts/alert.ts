import { z } from 'zod';

const name = z.string().min(1).max(256);

/** Body of POST /api/alerts (and, in cluster mode, of messages published by other services). */
export const AlertInputSchema = z
  .object({
    data: z.record(z.string(), z.unknown(), { message: '"data" must be a JSON object' }),
    roles: z.array(name).min(1).max(64).optional(),
    users: z.array(name).min(1).max(10_000).optional(),
  })
  .strict();

export type AlertInput = z.infer<typeof AlertInputSchema>;

/** An accepted alert; `id` increases within the channel and is what clients resume from. */
export interface Alert extends AlertInput {
  id: string;
  ts: number;
}

/** The client frame, serialised once per alert and shared by every socket and every replay. */
export function encodeAlertFrame(alert: Alert): Buffer {
  return Buffer.from(JSON.stringify({ type: 'alert', id: alert.id, data: alert.data, ts: alert.ts }));
}
