import { Inject, Injectable } from '@nestjs/common';
import { lookup } from 'node:dns/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import { BrokerUnavailableError } from '../channels/broker';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { LOGGER, type Logger } from '../logging/logger';
import { AuthenticateGuard } from '../upgrade/guards/authenticate.guard';
import { OriginGuard } from '../upgrade/guards/origin.guard';
import { parseTarget } from '../upgrade/handshake';
import type { UpgradeContext } from '../upgrade/upgrade-guard';
import { UpgradeRefusal, writeRefusalResponse } from '../upgrade/upgrade-refusal';
import { checkEndpoint, hostOf, isPrivateAddress, MAX_SUBSCRIPTION_BODY_BYTES, parseSubscription, SubscriptionProblem } from './subscription';
import { PUSH_SUBSCRIPTIONS, type PushSubscriptionStore } from './subscription-store';
import { MAX_SUBSCRIPTIONS_PER_USER } from './web-push-out';
import { readLimited } from '../http/http-server';

export const VAPID_KEY_PATH = '/push/vapid-public-key';
export const SUBSCRIPTIONS_PATH = '/push/subscriptions';
/** How long the production check waits for DNS before answering 503. */
const LOOKUP_TIMEOUT_MS = 3000;
const JSON_TYPE = /^application\/json\s*(;\s*charset\s*=\s*"?utf-8"?\s*)?$/i;

interface Answer {
  status: number;
  body?: Record<string, unknown>;
}

/**
 * Web Push on the public port (docs/push.md): the VAPID public key a browser
 * subscribes with, and a user's push subscriptions. The door is the SSE send's: Origin (ALLOWED_ORIGINS), the
 * user token (revocations, bans), CORS headers, JSON refusals `{error, message}`.
 */
@Injectable()
export class PushEndpoints {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @Inject(PUSH_SUBSCRIPTIONS) private readonly store: PushSubscriptionStore,
    private readonly origin: OriginGuard,
    private readonly authenticate: AuthenticateGuard,
    @Inject(LOGGER) private readonly log: Logger,
  ) {}

  /** The public port's handler: false when the path is not one of these. */
  handle(req: IncomingMessage, res: ServerResponse, cors: Record<string, string>): boolean {
    let pathname: string;
    let query: URLSearchParams;
    try {
      ({ pathname, query } = parseTarget(req.url));
    } catch {
      return false;
    }
    if (pathname !== VAPID_KEY_PATH && pathname !== SUBSCRIPTIONS_PATH) return false;
    const methods = pathname === VAPID_KEY_PATH ? 'GET, HEAD' : 'POST, DELETE';
    if (req.method === 'OPTIONS') {
      res.writeHead(204, { ...cors, 'Access-Control-Allow-Methods': methods, 'Access-Control-Allow-Headers': 'Authorization, Content-Type', 'Access-Control-Max-Age': '600' });
      res.end();
      return true;
    }
    const headOnly = req.method === 'HEAD';
    this.answer(req, pathname, query).then(
      ({ status, body }) => {
        const text = body === undefined ? undefined : JSON.stringify(body);
        res.writeHead(status, {
          ...cors,
          ...(text === undefined ? {} : { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text) }),
          'Cache-Control': 'no-store',
        });
        res.end(headOnly ? undefined : text);
      },
      (error: unknown) => {
        if (error instanceof SubscriptionProblem) error = new UpgradeRefusal(400, error.code, error.message);
        else if (error instanceof BrokerUnavailableError) error = new UpgradeRefusal(503, 'unavailable', 'push subscriptions cannot be stored right now (Redis is unreachable); retry shortly', { 'Retry-After': '2' });
        else if (!(error instanceof UpgradeRefusal)) {
          this.log.error({ err: error }, `unexpected error in ${req.method} ${pathname}`);
          error = new UpgradeRefusal(500, 'internal_error', 'unexpected server error');
        }
        if (!res.headersSent) writeRefusalResponse(res, error as UpgradeRefusal, cors, headOnly);
      },
    );
    return true;
  }

  private async answer(req: IncomingMessage, pathname: string, query: URLSearchParams): Promise<Answer> {
    const vapid = this.config.vapid;
    if (pathname === VAPID_KEY_PATH) {
      if (req.method !== 'GET' && req.method !== 'HEAD') throw new UpgradeRefusal(405, 'method_not_allowed', `read the key with GET ${VAPID_KEY_PATH}`, { Allow: 'GET, HEAD, OPTIONS' });
      if (!vapid) throw disabled();
      return { status: 200, body: { key: vapid.publicKey } };
    }
    if (req.method !== 'POST' && req.method !== 'DELETE') {
      throw new UpgradeRefusal(405, 'method_not_allowed', `register a subscription with POST ${SUBSCRIPTIONS_PATH}, remove one with DELETE`, { Allow: 'POST, DELETE, OPTIONS' });
    }
    // The door first (as every refusal of a stranger should be the same whether push is on or not), then push.
    const ctx = { req, query, protocols: [], gateway: 'push', attributes: {}, releases: [] } as unknown as UpgradeContext;
    this.origin.canUpgrade(ctx);
    await this.authenticate.canUpgrade(ctx);
    const user = ctx.user!.sub;
    if (!vapid) throw disabled();
    const body = await this.readJson(req);
    const production = this.config.nodeEnv === 'production';
    if (req.method === 'DELETE') {
      const endpoint = (typeof body === 'object' && body !== null && !Array.isArray(body) ? (body as Record<string, unknown>).endpoint : undefined);
      if (typeof endpoint !== 'string') throw new UpgradeRefusal(400, 'invalid_subscription', 'send {"endpoint":"<the subscription\'s endpoint>"}');
      let url: URL;
      try {
        url = checkEndpoint(endpoint, false);
      } catch (error) {
        throw new UpgradeRefusal(400, 'invalid_subscription', (error as Error).message);
      }
      // 204 whether or not it was there (a second unsubscribe is no error) or someone else's (not removed).
      await this.store.remove(user, url.href);
      return { status: 204 };
    }
    const subscription = parseSubscription(body, user, production);
    if (production) await this.checkResolution(new URL(subscription.endpoint));
    const added = await this.store.add(subscription, MAX_SUBSCRIPTIONS_PER_USER);
    return { status: added.created ? 201 : 200, body: { subscribed: true, subscriptions: added.count, max: MAX_SUBSCRIPTIONS_PER_USER } };
  }

  /** Production: a host name must not resolve to a private address (checked again on every connection). */
  private async checkResolution(url: URL): Promise<void> {
    const host = hostOf(url);
    if (isIP(host)) return;
    let timer: NodeJS.Timeout | undefined;
    let addresses: { address: string }[];
    try {
      addresses = await Promise.race([
        lookup(host, { all: true }),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(Object.assign(new Error('timeout'), { code: 'ETIMEOUT' })), LOOKUP_TIMEOUT_MS);
        }),
      ]);
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (code === 'ENOTFOUND' || code === 'ENODATA') throw new UpgradeRefusal(400, 'endpoint_not_allowed', '"endpoint" names a host that does not resolve');
      throw new UpgradeRefusal(503, 'unavailable', 'the endpoint\'s host could not be resolved right now; retry shortly', { 'Retry-After': '2' });
    } finally {
      clearTimeout(timer);
    }
    if (addresses.some((a) => isPrivateAddress(a.address))) {
      throw new UpgradeRefusal(400, 'endpoint_not_allowed', '"endpoint" resolves to a private, loopback or link-local address: in production a push service is a public host');
    }
  }

  private async readJson(req: IncomingMessage): Promise<unknown> {
    if (!JSON_TYPE.test(req.headers['content-type'] ?? '')) {
      throw new UpgradeRefusal(415, 'unsupported_media_type', 'send the body as application/json (UTF-8): the browser\'s PushSubscription, JSON.stringify(subscription)');
    }
    const body = await readLimited(req, MAX_SUBSCRIPTION_BODY_BYTES);
    if (body === undefined) throw new UpgradeRefusal(413, 'too_large', `a push subscription is at most ${MAX_SUBSCRIPTION_BODY_BYTES} bytes of JSON`);
    try {
      return JSON.parse(body.toString('utf8'));
    } catch {
      throw new UpgradeRefusal(400, 'invalid_json', 'the body is not valid JSON');
    }
  }
}

function disabled(): UpgradeRefusal {
  return new UpgradeRefusal(404, 'push_disabled', 'Web Push is not configured on this server (VAPID_PUBLIC_KEY, VAPID_PRIVATE_KEY and VAPID_SUBJECT are not set)');
}
