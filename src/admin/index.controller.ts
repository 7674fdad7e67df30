import { Controller, Get, Header, Inject } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '../config/config';

/** `GET /` on the internal port: where things are, for a person who just opened it. */
@Controller()
export class IndexController {
  private readonly index: Record<string, string>;

  constructor(@Inject(APP_CONFIG) config: AppConfig) {
    this.index = {
      service: 'realtime-gateway (internal port)',
      admin: '/admin',
      ...(config.demo ? { demo: '/demo' } : {}),
      metrics: '/metrics',
      openapi: '/api/openapi.json',
      health: '/healthz',
      ready: '/readyz',
      websockets: `on the public port (${config.port === 0 ? 'PORT' : config.port}): /api/alerts/subscribe, /ws/chat/:room, /ws/signaling/:consultationId/:userType`,
    };
  }

  @Get()
  @Header('Cache-Control', 'no-store')
  show(): Record<string, string> {
    return this.index;
  }
}
