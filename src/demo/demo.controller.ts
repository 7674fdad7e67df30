import { Controller, Get, Header } from '@nestjs/common';
import { clientBundle } from '../http/client-bundle';
import { Listeners } from '../http/listeners';
import { DEMO_PAGE } from './demo-page';
import { DEMO_PUSH_SCRIPT, DEMO_SERVICE_WORKER } from './demo-push';

/** A console for trying the endpoints from a browser: `GET /demo`. Static; tokens stay in the page. */
@Controller('demo')
export class DemoController {

  constructor(private readonly listeners: Listeners) {}

  @Get()
  @Header('Content-Type', 'text/html; charset=utf-8')
  @Header('Cache-Control', 'no-store')
  page(): string {
    return DEMO_PAGE.replace('__PUBLIC_PORT__', String(this.listeners.publicPort));
  }

  /** The Web Push section's script (src/demo/demo-push.ts). */
  @Get('push.js')
  @Header('Content-Type', 'text/javascript; charset=utf-8')
  @Header('Cache-Control', 'no-store')
  pushScript(): string {
    return DEMO_PUSH_SCRIPT;
  }

  /**
   * Its service worker, registered with scope /demo: the page itself is /demo, outside the /demo/ a worker's own
   * folder allows, hence Service-Worker-Allowed.
   */
  @Get('sw.js')
  @Header('Content-Type', 'text/javascript; charset=utf-8')
  @Header('Service-Worker-Allowed', '/demo')
  @Header('Cache-Control', 'no-store')
  serviceWorker(): string {
    return DEMO_SERVICE_WORKER;
  }

  @Get('client.js')
  @Header('Content-Type', 'text/javascript; charset=utf-8')
  @Header('Cache-Control', 'no-store')
  client(): string {
    return clientBundle();
  }
}
