import { Injectable, type OnModuleInit } from '@nestjs/common';
import { z } from 'zod';
import { HttpError, JsonApi } from '../http/json-api';
import { Receipts } from '../receipts/receipts';
import { AlertInputSchema } from './alert';
import { AlertsService } from './alerts.service';

export const PUBLISHER_ROLES = ['service', 'admin'] as const;

export const AlertAcceptedSchema = z
  .object({
    id: z
      .string()
      .describe(
        'the alert\'s id: the stream id of the alert (in the first listed user\'s channel when it went to users); with `ack`, for an alert that went to users\' channels, an id of its own (each user\'s frame carries the id in `ids`). Receipts, `alert.unacknowledged` and push payloads name the alert by it',
      ),
    ts: z.number().describe('ms since the epoch'),
    ids: z.record(z.string(), z.string()).optional().describe('with several users, or with `ack` and users: the id of the frame in each user\'s channel'),
  })
  .meta({ example: { id: '1732700000000-0', ts: 1732700000000 } });

const receiptEntry = z.object({ user: z.string(), ts: z.number().describe('ms since the epoch') });

export const ReceiptsSchema = z
  .object({
    id: z.string(),
    delivered: z.array(receiptEntry).describe('each user a frame of the alert was written to (a socket or an SSE stream), first time, oldest first'),
    acked: z.array(receiptEntry).describe('each user who sent `ack` for it, first time, oldest first'),
    pending: z.array(z.string()).describe('the targeted `users` who have not acked (empty for an alert targeted by role only)'),
  })
  .meta({
    example: {
      id: '1732700000000-0',
      delivered: [
        { user: 'dr-ana', ts: 1732700000012 },
        { user: 'dr-ben', ts: 1732700000015 },
      ],
      acked: [{ user: 'dr-ana', ts: 1732700004200 }],
      pending: ['dr-ben'],
    },
  });

/** An alert id as the POST answered it: a stream id, or an alert to users' own id (hex). */
const AlertIdSchema = z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'must be an alert id as POST /api/alerts answered it');

/** `POST /api/alerts`: the alerts feature's route on the server API. */
@Injectable()
export class AlertsApi implements OnModuleInit {
  constructor(
    private readonly api: JsonApi,
    private readonly alerts: AlertsService,
    private readonly receipts: Receipts,
  ) {}

  onModuleInit(): void {
    this.api.add({
      method: 'POST',
      path: '/api/alerts',
      operationId: 'publishAlert',
      summary: 'Publish an alert',
      description:
        'To every alerts subscriber, or only those with one of `roles`, or only `users` (up to 100 users without roles go to their `user:<sub>` channels, so only the replicas holding them receive it).',
      body: AlertInputSchema.describe('{"data": {...}, "roles"?: [...], "users"?: [...], "ack"?: {"within_s": 1-86400}}').meta({ example: { data: { level: 'critical', text: 'Ward 3: oxygen supply alarm' }, roles: ['authority'] } }),
      status: 202,
      response: AlertAcceptedSchema,
      idempotent: true,
      roles: PUBLISHER_ROLES,
      errors: [413, 415, 503],
      handle: async ({ body, idempotencyKey }) => ({ status: 202, body: await this.alerts.publish(body, idempotencyKey) }),
    });
    this.api.add({
      method: 'GET',
      path: '/api/alerts/:id/receipts',
      operationId: 'alertReceipts',
      summary: 'Who got an alert, who acknowledged it, who is pending',
      description:
        'For an alert published with `ack`, cluster-wide: each user it was delivered to and each user who acked it, with the first time of each, and the targeted `users` who have not acked. Kept as long as the alert\'s history.',
      params: { id: AlertIdSchema },
      status: 200,
      response: ReceiptsSchema,
      roles: PUBLISHER_ROLES,
      errors: [503],
      errorText: { 404: '`unknown_alert`: no alert with this id asked for ack, or its receipts are gone with its history (`unknown_path` for a path that is no endpoint)' },
      handle: async ({ params }) => {
        const body = await this.receipts.view(params.id);
        if (!body) throw new HttpError(404, 'unknown_alert', 'no alert with this id asked for ack (or its receipts are gone with its history)');
        return { status: 200, body };
      },
    });
  }
}
