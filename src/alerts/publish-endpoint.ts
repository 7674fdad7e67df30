import { Inject, Injectable } from '@nestjs/common';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { extractToken } from '../auth/token-extractor';
import { AuthError, JwtVerifier, KeysUnavailableError, WWW_AUTHENTICATE } from '../auth/jwt-verifier';
import { BrokerUnavailableError, NotReplicatedError } from '../channels/broker';
import { MESSAGE_LIMITS, type MessageLimits } from '../channels/message-limits';
import { LOGGER, type Logger } from '../logging/logger';
import { AlertInputSchema } from './alert';
import { AlertsService } from './alerts.service';

const PATH = '/api/alerts';
const PUBLISHER_ROLES = ['service', 'admin'];
/** Idempotency-Key values: printable ASCII, at most this long (they are hashed before they reach Redis). */
const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,256}$/;

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

function reply(res: ServerResponse, status: number, body: object, headers: Record<string, string> = {}): void {
  const json = JSON.stringify(body);
  res.writeHead(status, { ...headers, 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(json) });
  res.end(json);
}

function tooLarge(limit: number): HttpError {
  return new HttpError(413, 'too_large', `request body larger than ${limit} bytes (MAX_PUBLISH_BYTES)`);
}

function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    if (declared > limit) return reject(tooLarge(limit));
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      if (size > limit) return; // refused already; the rest is read and dropped
      size += chunk.length;
      if (size > limit) {
        chunks.length = 0;
        reject(tooLarge(limit));
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/**
 * `POST /api/alerts`, served straight from the HTTP server's request event rather than through Express and
 * Nest's pipeline: publishing is the hot HTTP path (thousands per second from other services), and the
 * framework's per-request allocations made its p99 five times Socket.IO's (docs/benchmarks.md). Same rules
 * and answers as every other endpoint: bearer token (header or ?token=), role service/admin, JSON body.
 */
@Injectable()
export class PublishEndpoint {
  constructor(
    private readonly verifier: JwtVerifier,
    private readonly alerts: AlertsService,
    @Inject(MESSAGE_LIMITS) private readonly limits: MessageLimits,
    @Inject(LOGGER) private readonly log: Logger,
  ) {}

  handles(req: IncomingMessage): boolean {
    if (req.method !== 'POST') return false;
    const url = req.url ?? '';
    return url === PATH || (url.startsWith(PATH) && url[PATH.length] === '?');
  }

  handle(req: IncomingMessage, res: ServerResponse): void {
    this.publish(req).then(
      (alert) => reply(res, 202, alert),
      (error: unknown) => {
        if (error instanceof HttpError) return reply(res, error.status, { error: error.code, message: error.message }, error.headers);
        this.log.error({ err: error }, 'unhandled error in POST /api/alerts');
        reply(res, 500, { error: 'internal_error', message: 'unexpected server error' });
      },
    );
  }

  private async publish(req: IncomingMessage): Promise<{ id: string; ts: number }> {
    const url = req.url!;
    const query = new URLSearchParams(url.length > PATH.length ? url.slice(PATH.length + 1) : '');
    const found = extractToken(req.headers, query);
    let role: string;
    let caller: string;
    try {
      if (found.token === undefined) throw new AuthError('token_missing', `no token: ${found.hint}`);
      ({ role, sub: caller } = await this.verifier.verifyOrRefresh(found.token));
    } catch (error) {
      if (error instanceof KeysUnavailableError) throw new HttpError(503, 'keys_unavailable', error.message, { 'Retry-After': '2' });
      if (!(error instanceof AuthError)) throw error;
      throw new HttpError(401, error.code, error.message, { 'WWW-Authenticate': WWW_AUTHENTICATE });
    }
    if (!PUBLISHER_ROLES.includes(role)) {
      throw new HttpError(403, 'forbidden_role', `role "${role}" may not call this endpoint (allowed: ${PUBLISHER_ROLES.join(', ')})`);
    }
    const type = req.headers['content-type'] ?? '';
    if (!/^application\/([\w.+-]*\+)?json\b/i.test(type)) {
      throw new HttpError(415, 'unsupported_media_type', 'send the body as application/json');
    }
    const idempotencyKey = req.headers['idempotency-key'];
    if (idempotencyKey !== undefined && (typeof idempotencyKey !== 'string' || !IDEMPOTENCY_KEY.test(idempotencyKey))) {
      throw new HttpError(400, 'bad_request', 'Idempotency-Key must be 1-256 printable ASCII characters');
    }
    const verdict = this.limits.parseObject(await readBody(req, this.limits.maxBytes));
    if (!verdict.ok) {
      if (verdict.status === 413) throw tooLarge(this.limits.maxBytes);
      throw new HttpError(400, 'bad_request', `request body is ${verdict.reason}`);
    }
    const body = verdict.value;
    const parsed = AlertInputSchema.safeParse(body);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const where = issue.path.length ? `${issue.path.join('.')}: ` : '';
      throw new HttpError(400, 'bad_request', `${where}${issue.message} (expected {"data": {...}, "roles"?: [...], "users"?: [...]})`);
    }
    try {
      // Scoped to the caller: two services that pick the same key must not swallow each other's alerts.
      return await this.alerts.publish(parsed.data, idempotencyKey === undefined ? undefined : `${caller}\u0000${idempotencyKey}`);
    } catch (error) {
      // Fail fast: an alert we cannot store durably is refused, never queued in memory.
      if (error instanceof NotReplicatedError) {
        throw new HttpError(503, 'redis_unavailable', `the alert was ${error.message}; retry with the same Idempotency-Key (it publishes nothing new)`, { 'Retry-After': '2' });
      }
      if (error instanceof BrokerUnavailableError) {
        throw new HttpError(503, 'redis_unavailable', 'the alert could not be stored: Redis is unreachable; retry shortly', { 'Retry-After': '2' });
      }
      throw error;
    }
  }
}
