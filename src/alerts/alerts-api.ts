import { Injectable, type OnModuleInit } from '@nestjs/common';
import { z } from 'zod';
import { JsonApi } from '../http/json-api';
import { AlertInputSchema } from './alert';
import { AlertsService } from './alerts.service';

export const PUBLISHER_ROLES = ['service', 'admin'] as const;

export const AlertAcceptedSchema = z
  .object({
    id: z.string().describe('the stream id of the alert (in the first listed user\'s channel when it went to users)'),
    ts: z.number().describe('ms since the epoch'),
    ids: z.record(z.string(), z.string()).optional().describe('with several users: the id in each user\'s channel'),
  })
  .meta({ example: { id: '1732700000000-0', ts: 1732700000000 } });

/** `POST /api/alerts`: the alerts feature's route on the server API. */
@Injectable()
export class AlertsApi implements OnModuleInit {
  constructor(
    private readonly api: JsonApi,
    private readonly alerts: AlertsService,
  ) {}

  onModuleInit(): void {
    this.api.add({
      method: 'POST',
      path: '/api/alerts',
      operationId: 'publishAlert',
      summary: 'Publish an alert',
      description:
        'To every alerts subscriber, or only those with one of `roles`, or only `users` (up to 100 users without roles go to their `user:<sub>` channels, so only the replicas holding them receive it).',
      body: AlertInputSchema.describe('{"data": {...}, "roles"?: [...], "users"?: [...]}').meta({ example: { data: { level: 'critical', text: 'Ward 3: oxygen supply alarm' }, roles: ['authority'] } }),
      status: 202,
      response: AlertAcceptedSchema,
      idempotent: true,
      roles: PUBLISHER_ROLES,
      errors: [413, 415, 503],
      handle: async ({ body, idempotencyKey }) => ({ status: 202, body: await this.alerts.publish(body, idempotencyKey) }),
    });
  }
}
