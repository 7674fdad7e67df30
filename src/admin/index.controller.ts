import { Controller, Get, Header, Inject } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { FAVICON_SVG } from '../http/console-page';

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
      websockets: `on the public port (${config.port === 0 ? 'PORT' : config.port}): /ws (channels), /api/alerts/subscribe, /ws/chat/:room, /ws/signaling/:consultationId/:userType`,
      sse: 'on the public port: GET /sse, POST /sse/send (the same frames as /ws, for clients whose proxies block WebSocket)',
      push: 'on the public port: GET /push/vapid-public-key, POST|DELETE /push/subscriptions',
    };
  }

  @Get()
  @Header('Cache-Control', 'no-store')
  show(): Record<string, string> {
    return this.index;
  }

  /**
   * The consoles' icon. /favicon.ico too, as an SVG: a browser that guesses that path (an old tab, a bookmark)
   * gets the icon instead of a 404 in the console and the logs.
   */
  @Get(['favicon.svg', 'favicon.ico'])
  @Header('Content-Type', 'image/svg+xml')
  @Header('Cache-Control', 'public, max-age=86400')
  favicon(): string {
    return FAVICON_SVG;
  }
}
