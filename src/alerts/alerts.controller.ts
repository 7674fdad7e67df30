import { Body, Controller, HttpCode, Post, UseGuards } from '@nestjs/common';
import { HttpAuthGuard } from '../auth/http-auth.guard';
import { AllowRoles } from '../gateway/gateway-metadata';
import { ApiError } from '../http/api-error';
import { RedisUnavailableError } from '../redis/redis-connections';
import { AlertInputSchema } from './alert';
import { AlertsService } from './alerts.service';

@Controller('api/alerts')
export class AlertsController {
  constructor(private readonly alerts: AlertsService) {}

  /** Publishes an alert to every subscriber (optionally only `roles` / `users`); 202 with its id. */
  @Post()
  @HttpCode(202)
  @UseGuards(HttpAuthGuard)
  @AllowRoles('service', 'admin')
  async publish(@Body() body: unknown): Promise<{ id: string; ts: number }> {
    const parsed = AlertInputSchema.safeParse(body);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const where = issue.path.length ? `${issue.path.join('.')}: ` : '';
      throw new ApiError(400, 'bad_request', `${where}${issue.message} (expected {"data": {...}, "roles"?: [...], "users"?: [...]})`);
    }
    try {
      const alert = await this.alerts.publish(parsed.data);
      return { id: alert.id, ts: alert.ts };
    } catch (error) {
      // Fail fast: an alert we cannot store durably is refused, never queued in memory.
      if (error instanceof RedisUnavailableError) {
        throw new ApiError(503, 'redis_unavailable', 'the alert could not be stored: Redis is unreachable; retry shortly', {
          'Retry-After': '2',
        });
      }
      throw error;
    }
  }
}
