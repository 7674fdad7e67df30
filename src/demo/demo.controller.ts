import { Controller, Get, Header } from '@nestjs/common';
import { clientBundle } from '../http/client-bundle';
import { Listeners } from '../http/listeners';
import { DEMO_PAGE } from './demo-page';

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

  @Get('client.js')
  @Header('Content-Type', 'text/javascript; charset=utf-8')
  @Header('Cache-Control', 'no-store')
  client(): string {
    return clientBundle();
  }
}
