import { Inject, Injectable, type OnModuleInit } from '@nestjs/common';
import { z } from 'zod';
import { EVENT_TYPES } from '../events/events-out';
import { WEBHOOK_STATUS, type WebhookStatusSource } from '../events/webhooks';
import { JsonApi } from '../http/json-api';

const WebhookFailureSchema = z.object({
  at: z.string().describe('ISO 8601'),
  type: z.enum(EVENT_TYPES),
  id: z.string().describe('the webhook-id header of the event'),
  result: z.enum(['retried', 'failed', 'dropped']).describe('retried later; failed: given up after a 4xx; dropped: WEBHOOK_RETRY_S over or the queue full'),
  status: z.number().int().optional().describe("the receiver's answer"),
  error: z.string().optional().describe('why there was no answer: timeout, ECONNREFUSED, ...'),
});

export const WebhookStatusSchema = z
  .object({
    enabled: z.boolean().describe('WEBHOOK_URL is set'),
    queue: z.number().int().nullable().describe("events waiting (cluster mode: the cluster's queue); null while Redis cannot be asked"),
    in_flight: z.number().int().describe('requests to the receiver open on this replica (at most 4)'),
    events: z.array(z.enum(EVENT_TYPES)).describe('the event types sent (WEBHOOK_EVENTS)'),
    failures: z.array(WebhookFailureSchema).describe("this replica's most recent failed attempts (at most 50), newest first"),
  })
  .meta({
    example: {
      enabled: true,
      queue: 2,
      in_flight: 1,
      events: ['channel.occupied', 'channel.vacated'],
      failures: [{ at: '2026-12-07T06:50:00.000Z', type: 'channel.occupied', id: 'msg_1f0c9d3b8a7e4c2d9b6a5f4e3d2c1b0a', result: 'retried', status: 503 }],
    },
  });

/** `GET /api/webhooks`: the webhook queue and recent failures, for the admin console (never the URL or secret). */
@Injectable()
export class WebhooksApi implements OnModuleInit {
  constructor(
    private readonly api: JsonApi,
    @Inject(WEBHOOK_STATUS) private readonly webhooks: WebhookStatusSource,
  ) {}

  onModuleInit(): void {
    this.api.add({
      method: 'GET',
      path: '/api/webhooks',
      operationId: 'webhooks',
      summary: 'The webhook queue and the recent failed deliveries',
      description: 'Events out (WEBHOOK_URL): how many events wait, requests in flight on this replica, and its recent failed attempts. Never shows the URL or the secret.',
      status: 200,
      response: WebhookStatusSchema,
      roles: ['service', 'admin'],
      handle: async () => ({ status: 200, body: await this.webhooks.status() }),
    });
  }
}
