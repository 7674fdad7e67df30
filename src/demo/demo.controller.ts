import { BadRequestException, Controller, Get, Header, HttpCode, Inject, NotFoundException, Post, Query } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import { JwtService } from '@nestjs/jwt';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { clientBundle } from '../http/client-bundle';
import { Listeners } from '../http/listeners';
import { DEMO_PAGE } from './demo-page';
import { DEMO_PUSH_SCRIPT, DEMO_SERVICE_WORKER } from './demo-push';

/** How long a development token from the demo lasts: a sitting. */
const DEV_TOKEN_TTL_S = 3600;
/** The roles the demo's endpoints take (alerts: authority; signaling: doctor, patient; chat: any). */
const DEV_ROLES = new Set(['authority', 'admin', 'doctor', 'patient']);

/**
 * A console for trying the endpoints from a browser: `GET /demo`. Static; tokens stay in the page.
 * `POST /demo/dev-token?role=<role>[&channel=<c>]...` hands out a token for the endpoint picked, but only while the
 * service runs on the public development key and not in production (as the admin console's): anyone can sign
 * tokens with that key anyway, so the button adds no power, only convenience.
 */
@Controller('demo')
export class DemoController {
  private readonly devTokens: boolean;
  private readonly page: string;

  constructor(
    @Inject(APP_CONFIG) config: AppConfig,
    private readonly jwt: JwtService,
    private readonly listeners: Listeners,
  ) {
    this.devTokens = config.jwt.usingDevKey && config.nodeEnv !== 'production';
    this.page = DEMO_PAGE.replace('__DEV_TOKEN__', String(this.devTokens));
  }

  @Get()
  @Header('Content-Type', 'text/html; charset=utf-8')
  @Header('Cache-Control', 'no-store')
  show(): string {
    return this.page.replace('__PUBLIC_PORT__', String(this.listeners.publicPort));
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

  @Post('dev-token')
  @HttpCode(200)
  @Header('Cache-Control', 'no-store')
  devToken(@Query('role') role: unknown, @Query('channel') channel: unknown): { token: string; expires_in: number } {
    if (!this.devTokens) throw new NotFoundException();
    if (typeof role !== 'string' || !DEV_ROLES.has(role)) throw new BadRequestException(`role must be one of ${[...DEV_ROLES].join(', ')}`);
    const channels = (Array.isArray(channel) ? channel : channel === undefined ? [] : [channel]).filter((c): c is string => typeof c === 'string' && c.length > 0 && c.length <= 256);
    // A sub of its own per click: two tabs of the demo are two users (a chat between them, a doctor and a patient).
    const claims = { sub: `demo-${role}-${randomBytes(3).toString('hex')}`, role, ...(channels.length > 0 ? { channels } : {}) };
    return { token: this.jwt.sign(claims, { expiresIn: DEV_TOKEN_TTL_S }), expires_in: DEV_TOKEN_TTL_S };
  }
}
